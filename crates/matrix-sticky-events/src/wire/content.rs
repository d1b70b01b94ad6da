//! Borrowed serde shape of an event's `content`: only its top-level keys are visited.
//!
//! The sticky keys, the megolm `session_id` of an envelope and the `redacts` of a redaction are
//! captured raw; every other value is skipped, and only counted, so that key-only content (a
//! deletion marker) can be recognised without building the content.
use std::{fmt, marker::PhantomData};

use serde::{
    Deserialize, Deserializer,
    de::{IgnoredAny, MapAccess, Visitor},
};
use serde_json::value::RawValue;

use super::event::{FieldSet, Ident, put};

enum ContentField {
    StickyKey,
    StickyKeyUnstable,
    SessionId,
    Redacts,
    Other,
}

impl FieldSet for ContentField {
    fn from_name(name: &str) -> Self {
        match name {
            super::STICKY_KEY => Self::StickyKey,
            super::STICKY_KEY_UNSTABLE => Self::StickyKeyUnstable,
            super::SESSION_ID => Self::SessionId,
            super::REDACTS => Self::Redacts,
            _ => Self::Other,
        }
    }
}

/// The top-level keys of a content object that matter here.
#[derive(Debug, Default)]
pub(crate) struct RawContent<'a> {
    /// `sticky_key`, raw.
    pub(crate) sticky_key: Option<&'a RawValue>,
    /// `msc4354_sticky_key`, raw.
    pub(crate) sticky_key_unstable: Option<&'a RawValue>,
    /// `session_id` (encrypted envelopes), raw.
    pub(crate) session_id: Option<&'a RawValue>,
    /// `redacts` (redactions from room version 11 on), raw.
    pub(crate) redacts: Option<&'a RawValue>,
    /// How many keys are neither sticky key (`session_id` and `redacts` count here too).
    pub(crate) other_keys: usize,
    /// The first captured key that appeared twice.
    pub(crate) duplicate: Option<&'static str>,
}

impl<'de: 'a, 'a> Deserialize<'de> for RawContent<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ContentVisitor<'a>(PhantomData<&'a ()>);

        impl<'de: 'a, 'a> Visitor<'de> for ContentVisitor<'a> {
            type Value = RawContent<'a>;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a content object")
            }

            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<RawContent<'a>, A::Error> {
                let mut content = RawContent::default();
                while let Some(Ident(field)) = map.next_key::<Ident<ContentField>>()? {
                    let (slot, name) = match field {
                        ContentField::StickyKey => (&mut content.sticky_key, super::STICKY_KEY),
                        ContentField::StickyKeyUnstable => {
                            (&mut content.sticky_key_unstable, super::STICKY_KEY_UNSTABLE)
                        }
                        ContentField::SessionId => {
                            content.other_keys += 1;
                            (&mut content.session_id, super::SESSION_ID)
                        }
                        ContentField::Redacts => {
                            content.other_keys += 1;
                            (&mut content.redacts, super::REDACTS)
                        }
                        ContentField::Other => {
                            content.other_keys += 1;
                            map.next_value::<IgnoredAny>()?;
                            continue;
                        }
                    };
                    let value: &'a RawValue = map.next_value()?;
                    put(slot, value, name, &mut content.duplicate);
                }
                Ok(content)
            }
        }

        deserializer.deserialize_map(ContentVisitor(PhantomData))
    }
}
