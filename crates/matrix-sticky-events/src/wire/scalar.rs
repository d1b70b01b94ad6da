//! Reading single JSON scalars out of already validated raw values, without a second parse.
//!
//! A `&RawValue` handed out by serde_json is known to be exactly one valid JSON value with no
//! surrounding whitespace, so its first byte tells its type.
use std::borrow::Cow;

use serde_json::value::RawValue;

/// A JSON value read as an integer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Int {
    /// A non-negative integer literal. Literals beyond `u64::MAX` saturate to `u64::MAX`.
    Value(u64),
    /// A negative integer literal (`-0` counts as zero, not negative).
    Negative,
    /// A float, a string, a boolean, `null`, an array or an object.
    NotInteger,
}

/// Read `raw` as an integer literal.
pub(crate) fn int(raw: &RawValue) -> Int {
    let text = raw.get().as_bytes();
    let (negative, digits) = match text.split_first() {
        Some((b'-', rest)) => (true, rest),
        Some((first, _)) if first.is_ascii_digit() => (false, text),
        _ => return Int::NotInteger,
    };
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        // Fractions and exponents make it a float.
        return Int::NotInteger;
    }
    let is_zero = digits.iter().all(|&b| b == b'0');
    if negative && !is_zero {
        return Int::Negative;
    }
    let mut value: u64 = 0;
    for &digit in digits {
        value = value
            .saturating_mul(10)
            .saturating_add(u64::from(digit - b'0'));
    }
    Int::Value(value)
}

/// Read `raw` as a string: `None` when it is not a string, or holds an escape that does not
/// decode to valid Unicode (a lone surrogate).
pub(crate) fn string(raw: &RawValue) -> Option<Cow<'_, str>> {
    let text = raw.get();
    let inner = text.strip_prefix('"')?.strip_suffix('"')?;
    if inner.contains('\\') {
        serde_json::from_str::<String>(text).ok().map(Cow::Owned)
    } else {
        // No escapes: the validated literal is the string itself.
        Some(Cow::Borrowed(inner))
    }
}

/// Whether `raw` is a JSON object.
pub(crate) fn is_object(raw: &RawValue) -> bool {
    raw.get().starts_with('{')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(s: &str) -> Box<RawValue> {
        RawValue::from_string(s.to_owned()).expect("valid json")
    }

    #[test]
    fn integers() {
        assert_eq!(int(&raw("0")), Int::Value(0));
        assert_eq!(int(&raw("-0")), Int::Value(0));
        assert_eq!(int(&raw("3600000")), Int::Value(3_600_000));
        assert_eq!(int(&raw("-5")), Int::Negative);
        assert_eq!(int(&raw("18446744073709551615")), Int::Value(u64::MAX));
        assert_eq!(int(&raw("1000000000000000000000000")), Int::Value(u64::MAX));
        assert_eq!(int(&raw("3600000.5")), Int::NotInteger);
        assert_eq!(int(&raw("1e3")), Int::NotInteger);
        assert_eq!(int(&raw("-1.5")), Int::NotInteger);
        assert_eq!(int(&raw("\"3600000\"")), Int::NotInteger);
        assert_eq!(int(&raw("null")), Int::NotInteger);
        assert_eq!(int(&raw("true")), Int::NotInteger);
        assert_eq!(int(&raw("[1]")), Int::NotInteger);
    }

    #[test]
    fn strings() {
        assert_eq!(string(&raw("\"abc\"")).as_deref(), Some("abc"));
        assert!(matches!(string(&raw("\"abc\"")), Some(Cow::Borrowed(_))));
        assert_eq!(string(&raw(r#""a\"b\u00e9""#)).as_deref(), Some("a\"bé"));
        assert_eq!(string(&raw(r#""\ud800""#)), None);
        assert_eq!(string(&raw("12")), None);
        assert_eq!(string(&raw("null")), None);
        assert!(is_object(&raw("{}")));
        assert!(!is_object(&raw("[]")));
    }
}
