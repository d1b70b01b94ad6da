//! Borrowed serde shape of one sliding-sync sticky-events extension response:
//! `{"rooms": {"<room id>": {"events": [<event>, ...]}}, "next_batch": "<token>"}`.
//!
//! The envelope is read in a single pass. Each event is captured raw, to be parsed on its own,
//! and a defect in the envelope (a room that is not an object, `events` that is not an array,
//! ...) is recorded instead of failing the whole response, so good rooms beside a bad one are
//! kept. Values of the wrong type are skipped with `IgnoredAny`, which never recurses.
use std::{borrow::Cow, fmt, marker::PhantomData};

use serde::{
    Deserialize, Deserializer,
    de::{DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor},
};
use serde_json::value::RawValue;

use super::event::{FieldSet, Ident};

/// A defect of the envelope, costing one room or the whole `rooms` map.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Defect<'a> {
    /// `rooms` is not an object.
    RoomsNotObject,
    /// The value of this room is not an object.
    RoomNotObject(Cow<'a, str>),
    /// This room has no `events`.
    EventsMissing(Cow<'a, str>),
    /// The `events` of this room is not an array.
    EventsNotArray(Cow<'a, str>),
}

/// The events of one room, each still raw.
#[derive(Debug)]
pub(crate) struct RawRoom<'a> {
    /// The room ID as sent (not validated yet).
    pub(crate) key: Cow<'a, str>,
    /// The raw events, in order.
    pub(crate) events: Vec<&'a RawValue>,
}

/// One extension response, still raw.
#[derive(Debug, Default)]
pub(crate) struct RawBatch<'a> {
    pub(crate) rooms: Vec<RawRoom<'a>>,
    pub(crate) next_batch: Option<&'a RawValue>,
    pub(crate) defects: Vec<Defect<'a>>,
}

enum BatchField {
    Rooms,
    NextBatch,
    Other,
}

impl FieldSet for BatchField {
    fn from_name(name: &str) -> Self {
        match name {
            "rooms" => Self::Rooms,
            "next_batch" => Self::NextBatch,
            _ => Self::Other,
        }
    }
}

enum RoomField {
    Events,
    Other,
}

impl FieldSet for RoomField {
    fn from_name(name: &str) -> Self {
        match name {
            "events" => Self::Events,
            _ => Self::Other,
        }
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for RawBatch<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct BatchVisitor<'a>(PhantomData<&'a ()>);

        impl<'de: 'a, 'a> Visitor<'de> for BatchVisitor<'a> {
            type Value = RawBatch<'a>;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a sticky events extension response object")
            }

            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<RawBatch<'a>, A::Error> {
                let mut batch = RawBatch::default();
                while let Some(Ident(field)) = map.next_key::<Ident<BatchField>>()? {
                    match field {
                        BatchField::Rooms => map.next_value_seed(RoomsSeed(&mut batch))?,
                        BatchField::NextBatch => batch.next_batch = Some(map.next_value()?),
                        BatchField::Other => {
                            map.next_value::<IgnoredAny>()?;
                        }
                    }
                }
                Ok(batch)
            }
        }

        deserializer.deserialize_map(BatchVisitor(PhantomData))
    }
}

/// Implements the listed visit methods (the JSON types a value must not have) as "record the
/// defect, skip the value".
macro_rules! wrong_types {
    ($defect:expr; $($method:ident($($arg:ty)?)),* $(,)?) => {
        $(
            fn $method<E: serde::de::Error>(mut self $(, _: $arg)?) -> Result<(), E> {
                let defect = ($defect)(&self);
                self.batch().defects.push(defect);
                Ok(())
            }
        )*
    };
}

/// Skip a sequence, recording nothing.
fn skip_seq<'de, A: SeqAccess<'de>>(mut seq: A) -> Result<(), A::Error> {
    while seq.next_element::<IgnoredAny>()?.is_some() {}
    Ok(())
}

/// Skip a map, recording nothing.
fn skip_map<'de, A: MapAccess<'de>>(mut map: A) -> Result<(), A::Error> {
    while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
    Ok(())
}

/// A map key kept borrowed when it has no escapes.
struct Key<'a>(Cow<'a, str>);

impl<'de: 'a, 'a> Deserialize<'de> for Key<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct KeyVisitor<'a>(PhantomData<&'a ()>);

        impl<'de: 'a, 'a> Visitor<'de> for KeyVisitor<'a> {
            type Value = Key<'a>;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a room ID")
            }

            fn visit_borrowed_str<E: serde::de::Error>(self, v: &'de str) -> Result<Key<'a>, E> {
                Ok(Key(Cow::Borrowed(v)))
            }

            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Key<'a>, E> {
                Ok(Key(Cow::Owned(v.to_owned())))
            }
        }

        deserializer.deserialize_str(KeyVisitor(PhantomData))
    }
}

/// The `rooms` map.
struct RoomsSeed<'b, 'a>(&'b mut RawBatch<'a>);

impl<'a> RoomsSeed<'_, 'a> {
    fn batch(&mut self) -> &mut RawBatch<'a> {
        self.0
    }
}

impl<'de: 'a, 'a> DeserializeSeed<'de> for RoomsSeed<'_, 'a> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de: 'a, 'a> Visitor<'de> for RoomsSeed<'_, 'a> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a map of rooms")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while let Some(Key(key)) = map.next_key::<Key<'a>>()? {
            map.next_value_seed(RoomSeed {
                batch: &mut *self.0,
                key,
            })?;
        }
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<(), A::Error> {
        self.0.defects.push(Defect::RoomsNotObject);
        skip_seq(seq)
    }

    wrong_types!(|_: &Self| Defect::RoomsNotObject;
        visit_unit(), visit_bool(bool), visit_i64(i64), visit_u64(u64), visit_f64(f64), visit_str(&str));
}

/// One room's value.
struct RoomSeed<'b, 'a> {
    batch: &'b mut RawBatch<'a>,
    key: Cow<'a, str>,
}

impl<'a> RoomSeed<'_, 'a> {
    fn batch(&mut self) -> &mut RawBatch<'a> {
        self.batch
    }
}

impl<'de: 'a, 'a> DeserializeSeed<'de> for RoomSeed<'_, 'a> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de: 'a, 'a> Visitor<'de> for RoomSeed<'_, 'a> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a room object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let mut seen_events = false;
        while let Some(Ident(field)) = map.next_key::<Ident<RoomField>>()? {
            match field {
                RoomField::Events => {
                    seen_events = true;
                    map.next_value_seed(EventsSeed {
                        batch: &mut *self.batch,
                        key: self.key.clone(),
                    })?;
                }
                RoomField::Other => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        if !seen_events {
            self.batch.defects.push(Defect::EventsMissing(self.key));
        }
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<(), A::Error> {
        self.batch.defects.push(Defect::RoomNotObject(self.key));
        skip_seq(seq)
    }

    wrong_types!(|s: &Self| Defect::RoomNotObject(s.key.clone());
        visit_unit(), visit_bool(bool), visit_i64(i64), visit_u64(u64), visit_f64(f64), visit_str(&str));
}

/// One room's `events`.
struct EventsSeed<'b, 'a> {
    batch: &'b mut RawBatch<'a>,
    key: Cow<'a, str>,
}

impl<'a> EventsSeed<'_, 'a> {
    fn batch(&mut self) -> &mut RawBatch<'a> {
        self.batch
    }
}

impl<'de: 'a, 'a> DeserializeSeed<'de> for EventsSeed<'_, 'a> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de: 'a, 'a> Visitor<'de> for EventsSeed<'_, 'a> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an array of events")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let mut events = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(128));
        while let Some(event) = seq.next_element::<&'a RawValue>()? {
            events.push(event);
        }
        self.batch.rooms.push(RawRoom {
            key: self.key,
            events,
        });
        Ok(())
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<(), A::Error> {
        self.batch.defects.push(Defect::EventsNotArray(self.key));
        skip_map(map)
    }

    wrong_types!(|s: &Self| Defect::EventsNotArray(s.key.clone());
        visit_unit(), visit_bool(bool), visit_i64(i64), visit_u64(u64), visit_f64(f64), visit_str(&str));
}

enum ResponseField {
    Extensions,
    Other,
}

impl FieldSet for ResponseField {
    fn from_name(name: &str) -> Self {
        match name {
            "extensions" => Self::Extensions,
            _ => Self::Other,
        }
    }
}

/// A whole simplified sliding sync response: only `extensions` matters here.
#[derive(Debug, Default)]
pub(crate) struct RawResponse<'a> {
    pub(crate) extensions: Option<&'a RawValue>,
}

impl<'de: 'a, 'a> Deserialize<'de> for RawResponse<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ResponseVisitor<'a>(PhantomData<&'a ()>);

        impl<'de: 'a, 'a> Visitor<'de> for ResponseVisitor<'a> {
            type Value = RawResponse<'a>;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a sliding sync response object")
            }

            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<RawResponse<'a>, A::Error> {
                let mut response = RawResponse::default();
                while let Some(Ident(field)) = map.next_key::<Ident<ResponseField>>()? {
                    match field {
                        ResponseField::Extensions => response.extensions = Some(map.next_value()?),
                        ResponseField::Other => {
                            map.next_value::<IgnoredAny>()?;
                        }
                    }
                }
                Ok(response)
            }
        }

        deserializer.deserialize_map(ResponseVisitor(PhantomData))
    }
}

enum ExtensionField {
    Sticky,
    StickyUnstable,
    Other,
}

impl FieldSet for ExtensionField {
    fn from_name(name: &str) -> Self {
        match name {
            super::SSS_EXTENSION => Self::Sticky,
            super::SSS_EXTENSION_UNSTABLE => Self::StickyUnstable,
            _ => Self::Other,
        }
    }
}

/// The `extensions` object of a sliding sync response.
#[derive(Debug, Default)]
pub(crate) struct RawExtensions<'a> {
    pub(crate) sticky: Option<&'a RawValue>,
    pub(crate) sticky_unstable: Option<&'a RawValue>,
}

impl<'de: 'a, 'a> Deserialize<'de> for RawExtensions<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ExtensionsVisitor<'a>(PhantomData<&'a ()>);

        impl<'de: 'a, 'a> Visitor<'de> for ExtensionsVisitor<'a> {
            type Value = RawExtensions<'a>;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an extensions object")
            }

            fn visit_map<A: MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<RawExtensions<'a>, A::Error> {
                let mut extensions = RawExtensions::default();
                while let Some(Ident(field)) = map.next_key::<Ident<ExtensionField>>()? {
                    match field {
                        ExtensionField::Sticky => extensions.sticky = Some(map.next_value()?),
                        ExtensionField::StickyUnstable => {
                            extensions.sticky_unstable = Some(map.next_value()?);
                        }
                        ExtensionField::Other => {
                            map.next_value::<IgnoredAny>()?;
                        }
                    }
                }
                Ok(extensions)
            }
        }

        deserializer.deserialize_map(ExtensionsVisitor(PhantomData))
    }
}
