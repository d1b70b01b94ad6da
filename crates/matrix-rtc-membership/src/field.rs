//! Converting single raw JSON fields, each on its own, with bounded cost.
use std::{fmt, marker::PhantomData};

use serde::{
    Deserialize, Deserializer,
    de::{MapAccess, Visitor, value::MapAccessDeserializer},
};
use serde_json::value::RawValue;

/// Why a field could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FieldError {
    /// The field is missing (or `null`).
    Absent,
    /// The field has another JSON type.
    WrongType,
}

/// A string field.
pub(crate) fn string(raw: Option<&RawValue>) -> Result<String, FieldError> {
    let raw = raw.ok_or(FieldError::Absent)?;
    serde_json::from_str(raw.get()).map_err(|_| FieldError::WrongType)
}

/// An optional string field: absent is `Ok(None)`.
pub(crate) fn opt_string(raw: Option<&RawValue>) -> Result<Option<String>, FieldError> {
    match string(raw) {
        Ok(value) => Ok(Some(value)),
        Err(FieldError::Absent) => Ok(None),
        Err(err) => Err(err),
    }
}

/// A non-negative number of milliseconds. Floats are truncated (JavaScript senders have no
/// integer type); negative, non-finite and non-numeric values are wrong.
pub(crate) fn millis(raw: Option<&RawValue>) -> Result<u64, FieldError> {
    let raw = raw.ok_or(FieldError::Absent)?;
    let number: serde_json::Number =
        serde_json::from_str(raw.get()).map_err(|_| FieldError::WrongType)?;
    if let Some(value) = number.as_u64() {
        return Ok(value);
    }
    match number.as_f64() {
        // `as` saturates at u64::MAX, which the callers add with saturation.
        Some(value) if value.is_finite() && value >= 0.0 => Ok(value as u64),
        _ => Err(FieldError::WrongType),
    }
}

/// Reads a JSON object into `T`. Arrays are refused: serde would read a struct from an
/// array by position, which would let `["id", ...]` pass for an object.
pub(crate) fn object<'a, T: Deserialize<'a>>(raw: &'a RawValue) -> Option<T> {
    if !is_object(raw) {
        return None;
    }
    serde_json::from_str(raw.get()).ok()
}

/// `deserialize_with` helper: reads `T` from a JSON object only (serde would otherwise read
/// a struct from an array by position). `null` and every other type are errors.
pub(crate) fn map_only<'de, D, T>(deserializer: D) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    struct ObjectVisitor<T>(PhantomData<T>);

    impl<'de, T: Deserialize<'de>> Visitor<'de> for ObjectVisitor<T> {
        type Value = T;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a JSON object")
        }

        fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<T, A::Error> {
            T::deserialize(MapAccessDeserializer::new(map))
        }
    }

    deserializer
        .deserialize_map(ObjectVisitor(PhantomData))
        .map(Some)
}

/// Whether the raw JSON is an object (cheap: looks at the first byte only).
pub(crate) fn is_object(raw: &RawValue) -> bool {
    raw.get().trim_start().starts_with('{')
}

/// Whether the raw JSON is an empty object.
pub(crate) fn is_empty_object(raw: &RawValue) -> bool {
    let text = raw.get().trim();
    text.strip_prefix('{')
        .and_then(|rest| rest.strip_suffix('}'))
        .is_some_and(|inner| inner.trim().is_empty())
}

/// Debug output of a possibly huge string, cut after [`Truncated::LIMIT`] characters.
pub(crate) struct Truncated<'a>(pub(crate) &'a str);

impl Truncated<'_> {
    const LIMIT: usize = 64;
}

impl fmt::Debug for Truncated<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0.char_indices().nth(Self::LIMIT) {
            None => fmt::Debug::fmt(self.0, f),
            Some((cut, _)) => write!(f, "{:?}… ({} bytes)", &self.0[..cut], self.0.len()),
        }
    }
}

impl fmt::Display for Truncated<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0.char_indices().nth(Self::LIMIT) {
            None => f.write_str(self.0),
            Some((cut, _)) => write!(f, "{}… ({} bytes)", &self.0[..cut], self.0.len()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(json: &str) -> Box<RawValue> {
        RawValue::from_string(json.to_owned()).unwrap()
    }

    #[test]
    fn millis_accepts_integers_and_truncates_floats() {
        assert_eq!(millis(Some(&raw("14400000"))), Ok(14_400_000));
        assert_eq!(millis(Some(&raw("12.75"))), Ok(12));
        assert_eq!(millis(Some(&raw("-1"))), Err(FieldError::WrongType));
        assert_eq!(millis(Some(&raw("\"5\""))), Err(FieldError::WrongType));
        assert_eq!(millis(None), Err(FieldError::Absent));
    }

    #[test]
    fn empty_object_detection() {
        assert!(is_empty_object(&raw("{}")));
        assert!(is_empty_object(&raw("{ \n }")));
        assert!(!is_empty_object(&raw("{\"a\":1}")));
        assert!(!is_empty_object(&raw("[]")));
    }

    #[test]
    fn truncation_keeps_char_boundaries() {
        let long = "é".repeat(100);
        let shown = format!("{}", Truncated(&long));
        assert!(shown.starts_with(&"é".repeat(64)));
        assert!(shown.ends_with("(200 bytes)"));
        assert_eq!(format!("{}", Truncated("short")), "short");
    }
}
