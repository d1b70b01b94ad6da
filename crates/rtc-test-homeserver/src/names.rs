//! Unique names (so one server can serve tests in parallel) and path encoding.

use std::sync::atomic::{AtomicU64, Ordering};

static COUNTER: AtomicU64 = AtomicU64::new(0);

/// A name no other call in any running process returns: `<prefix>-<pid>-<n>`. Useful for
/// transaction ids and anything else a test needs unique on a shared server.
pub fn unique_id(prefix: &str) -> String {
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("{prefix}-{}-{n}", std::process::id())
}

/// A Matrix user localpart from `base`: lower-cased, with characters outside `a-z 0-9 . _ = -`
/// replaced by `_`, then made unique with [`unique_id`].
pub(crate) fn unique_localpart(base: &str) -> String {
    let clean: String = base
        .chars()
        .map(|c| c.to_ascii_lowercase())
        .map(|c| {
            if c.is_ascii_alphanumeric() || "._=-".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect();
    unique_id(if clean.is_empty() { "user" } else { &clean })
}

/// A directory-name-safe version of `label` (at most 80 characters).
pub(crate) fn sanitize_label(label: &str) -> String {
    label
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .take(80)
        .collect()
}

/// Percent-encodes one URL path segment (a room id, an event type, a transaction id): every
/// byte outside the RFC 3986 unreserved set `A-Z a-z 0-9 - . _ ~` becomes `%XX`.
pub fn encode_path_segment(segment: &str) -> String {
    let mut out = String::with_capacity(segment.len());
    for byte in segment.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unique_ids_differ() {
        assert_ne!(unique_id("a"), unique_id("a"));
        assert!(unique_id("txn").starts_with(&format!("txn-{}-", std::process::id())));
    }

    #[test]
    fn localparts_are_valid() {
        let localpart = unique_localpart("Alice Smith!");
        assert!(localpart.starts_with("alice_smith_-"), "{localpart}");
        assert!(
            localpart
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "._=-".contains(c))
        );
    }

    #[test]
    fn path_segments_are_encoded() {
        assert_eq!(encode_path_segment("!abc:localhost"), "%21abc%3Alocalhost");
        assert_eq!(encode_path_segment("m.rtc.member"), "m.rtc.member");
        assert_eq!(encode_path_segment("a/b é"), "a%2Fb%20%C3%A9");
    }
}
