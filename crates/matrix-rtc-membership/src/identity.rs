//! LiveKit participant identities (`docs/protocol.md` §5.11).
use base64::{Engine as _, engine::general_purpose::STANDARD_NO_PAD};
use sha2::{Digest, Sha256};

/// The LiveKit identity of a sticky (format A or B) member: unpadded standard base64 of
/// SHA-256 over the canonical JSON array `[user_id, device_id, member_id]`.
///
/// ```
/// use matrix_rtc_membership::livekit_identity;
///
/// assert_eq!(
///     livekit_identity("@alice:example.org", "DEVICEA", "c0ffee00-0000-4000-8000-000000000001"),
///     "NIhr9StCx5JXUvm+Str08ZFLjNkeQEHX6vQW0l14ZGw",
/// );
/// ```
pub fn livekit_identity(user_id: &str, device_id: &str, member_id: &str) -> String {
    // serde_json writes compact JSON (no whitespace), which is the canonical form of an array
    // of strings. Writing into a buffer and hashing it once is much cheaper than feeding the
    // hasher the many small pieces serde_json writes.
    let mut json = Vec::with_capacity(user_id.len() + device_id.len() + member_id.len() + 16);
    // Writing strings into a Vec cannot fail; were it to, the hash of the partial buffer is
    // still a well-formed (if useless) identity, never a panic.
    let _ = serde_json::to_writer(&mut json, &[user_id, device_id, member_id]);
    STANDARD_NO_PAD.encode(Sha256::digest(&json))
}

/// The LiveKit identity of a legacy (format C) member: `"{user_id}:{device_id}"`.
pub fn legacy_livekit_identity(user_id: &str, device_id: &str) -> String {
    format!("{user_id}:{device_id}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_hashes_the_compact_array() {
        let json = serde_json::to_string(&["@a:b", "D", "m\"1"]).unwrap();
        assert_eq!(json, r#"["@a:b","D","m\"1"]"#);
        let expected = STANDARD_NO_PAD.encode(Sha256::digest(json.as_bytes()));
        assert_eq!(livekit_identity("@a:b", "D", "m\"1"), expected);
    }

    #[test]
    fn legacy_identity_joins_user_and_device() {
        assert_eq!(legacy_livekit_identity("@a:b", "DEV"), "@a:b:DEV");
    }
}
