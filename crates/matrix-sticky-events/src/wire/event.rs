//! Borrowed serde shapes of one event: its top level, its sticky object and its `unsigned`.
//!
//! Each known field is captured as a borrowed `&RawValue` and checked afterwards, so every defect
//! can be reported as its own typed reason. Unknown fields are skipped with `IgnoredAny`, which
//! serde_json runs iteratively: no nesting depth can overflow the stack here.
use std::{fmt, marker::PhantomData};

use serde::{
    Deserialize, Deserializer,
    de::{IgnoredAny, MapAccess, Visitor},
};
use serde_json::value::RawValue;

/// A set of known field names, plus "anything else".
pub(crate) trait FieldSet: Sized {
    /// Classify one field name.
    fn from_name(name: &str) -> Self;
}

/// A map key classified into a [`FieldSet`], without allocating.
pub(crate) struct Ident<F>(pub(crate) F);

impl<'de, F: FieldSet> Deserialize<'de> for Ident<F> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct IdentVisitor<F>(PhantomData<F>);

        impl<F: FieldSet> Visitor<'_> for IdentVisitor<F> {
            type Value = Ident<F>;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a field name")
            }

            fn visit_str<E: serde::de::Error>(self, name: &str) -> Result<Ident<F>, E> {
                Ok(Ident(F::from_name(name)))
            }
        }

        deserializer.deserialize_identifier(IdentVisitor(PhantomData))
    }
}

/// Store `value` in `slot`, or note the duplicate field `name` (the first value is kept).
pub(crate) fn put<'a>(
    slot: &mut Option<&'a RawValue>,
    value: &'a RawValue,
    name: &'static str,
    duplicate: &mut Option<&'static str>,
) {
    if slot.is_some() {
        duplicate.get_or_insert(name);
    } else {
        *slot = Some(value);
    }
}

enum EventField {
    Type,
    EventId,
    Sender,
    OriginServerTs,
    Content,
    Sticky,
    StickyUnstable,
    Unsigned,
    Redacts,
    Other,
}

impl FieldSet for EventField {
    fn from_name(name: &str) -> Self {
        match name {
            "type" => Self::Type,
            "event_id" => Self::EventId,
            "sender" => Self::Sender,
            "origin_server_ts" => Self::OriginServerTs,
            "content" => Self::Content,
            super::STICKY => Self::Sticky,
            super::STICKY_UNSTABLE => Self::StickyUnstable,
            "unsigned" => Self::Unsigned,
            super::REDACTS => Self::Redacts,
            _ => Self::Other,
        }
    }
}

/// The top-level fields of one event that matter here, each still raw.
#[derive(Debug, Default)]
pub(crate) struct RawEvent<'a> {
    pub(crate) event_type: Option<&'a RawValue>,
    pub(crate) event_id: Option<&'a RawValue>,
    pub(crate) sender: Option<&'a RawValue>,
    pub(crate) origin_server_ts: Option<&'a RawValue>,
    pub(crate) content: Option<&'a RawValue>,
    pub(crate) sticky: Option<&'a RawValue>,
    pub(crate) sticky_unstable: Option<&'a RawValue>,
    pub(crate) unsigned: Option<&'a RawValue>,
    pub(crate) redacts: Option<&'a RawValue>,
    /// The first known field that appeared twice.
    pub(crate) duplicate: Option<&'static str>,
}

impl<'de: 'a, 'a> Deserialize<'de> for RawEvent<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct EventVisitor<'a>(PhantomData<&'a ()>);

        impl<'de: 'a, 'a> Visitor<'de> for EventVisitor<'a> {
            type Value = RawEvent<'a>;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an event object")
            }

            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<RawEvent<'a>, A::Error> {
                let mut ev = RawEvent::default();
                while let Some(Ident(field)) = map.next_key::<Ident<EventField>>()? {
                    let (slot, name) = match field {
                        EventField::Type => (&mut ev.event_type, "type"),
                        EventField::EventId => (&mut ev.event_id, "event_id"),
                        EventField::Sender => (&mut ev.sender, "sender"),
                        EventField::OriginServerTs => {
                            (&mut ev.origin_server_ts, "origin_server_ts")
                        }
                        EventField::Content => (&mut ev.content, "content"),
                        EventField::Sticky => (&mut ev.sticky, super::STICKY),
                        EventField::StickyUnstable => {
                            (&mut ev.sticky_unstable, super::STICKY_UNSTABLE)
                        }
                        EventField::Unsigned => (&mut ev.unsigned, "unsigned"),
                        EventField::Redacts => (&mut ev.redacts, super::REDACTS),
                        EventField::Other => {
                            map.next_value::<IgnoredAny>()?;
                            continue;
                        }
                    };
                    let value: &'a RawValue = map.next_value()?;
                    put(slot, value, name, &mut ev.duplicate);
                }
                Ok(ev)
            }
        }

        deserializer.deserialize_map(EventVisitor(PhantomData))
    }
}

enum StickyField {
    DurationMs,
    Other,
}

impl FieldSet for StickyField {
    fn from_name(name: &str) -> Self {
        match name {
            super::DURATION_MS => Self::DurationMs,
            _ => Self::Other,
        }
    }
}

/// The sticky object (`{duration_ms}`), still raw.
#[derive(Debug, Default)]
pub(crate) struct RawSticky<'a> {
    pub(crate) duration_ms: Option<&'a RawValue>,
    pub(crate) duplicate: Option<&'static str>,
}

impl<'de: 'a, 'a> Deserialize<'de> for RawSticky<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct StickyVisitor<'a>(PhantomData<&'a ()>);

        impl<'de: 'a, 'a> Visitor<'de> for StickyVisitor<'a> {
            type Value = RawSticky<'a>;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a sticky object")
            }

            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<RawSticky<'a>, A::Error> {
                let mut sticky = RawSticky::default();
                while let Some(Ident(field)) = map.next_key::<Ident<StickyField>>()? {
                    match field {
                        StickyField::DurationMs => {
                            let value: &'a RawValue = map.next_value()?;
                            put(
                                &mut sticky.duration_ms,
                                value,
                                super::DURATION_MS,
                                &mut sticky.duplicate,
                            );
                        }
                        StickyField::Other => {
                            map.next_value::<IgnoredAny>()?;
                        }
                    }
                }
                Ok(sticky)
            }
        }

        deserializer.deserialize_map(StickyVisitor(PhantomData))
    }
}

enum UnsignedField {
    Ttl,
    TtlUnstable,
    RedactedBecause,
    Other,
}

impl FieldSet for UnsignedField {
    fn from_name(name: &str) -> Self {
        match name {
            super::TTL => Self::Ttl,
            super::TTL_UNSTABLE => Self::TtlUnstable,
            super::REDACTED_BECAUSE => Self::RedactedBecause,
            _ => Self::Other,
        }
    }
}

/// The parts of `unsigned` that matter here, still raw.
#[derive(Debug, Default)]
pub(crate) struct RawUnsigned<'a> {
    pub(crate) ttl: Option<&'a RawValue>,
    pub(crate) ttl_unstable: Option<&'a RawValue>,
    pub(crate) redacted_because: Option<&'a RawValue>,
    pub(crate) duplicate: Option<&'static str>,
}

impl<'de: 'a, 'a> Deserialize<'de> for RawUnsigned<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct UnsignedVisitor<'a>(PhantomData<&'a ()>);

        impl<'de: 'a, 'a> Visitor<'de> for UnsignedVisitor<'a> {
            type Value = RawUnsigned<'a>;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an unsigned object")
            }

            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<RawUnsigned<'a>, A::Error> {
                let mut unsigned = RawUnsigned::default();
                while let Some(Ident(field)) = map.next_key::<Ident<UnsignedField>>()? {
                    let (slot, name) = match field {
                        UnsignedField::Ttl => (&mut unsigned.ttl, super::TTL),
                        UnsignedField::TtlUnstable => {
                            (&mut unsigned.ttl_unstable, super::TTL_UNSTABLE)
                        }
                        UnsignedField::RedactedBecause => {
                            (&mut unsigned.redacted_because, super::REDACTED_BECAUSE)
                        }
                        UnsignedField::Other => {
                            map.next_value::<IgnoredAny>()?;
                            continue;
                        }
                    };
                    let value: &'a RawValue = map.next_value()?;
                    put(slot, value, name, &mut unsigned.duplicate);
                }
                Ok(unsigned)
            }
        }

        deserializer.deserialize_map(UnsignedVisitor(PhantomData))
    }
}
