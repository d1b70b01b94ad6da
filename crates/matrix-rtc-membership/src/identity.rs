//! LiveKit participant identities (`protocol.md` §5.11).
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
    // of strings; writing into the hasher avoids building the string.
    let mut hasher = Sha256::new();
    // Serialising a string slice array cannot fail; on the impossible error the hash of the
    // partial input is still a well-formed (if useless) identity, never a panic.
    let _ = serde_json::to_writer(HashWriter(&mut hasher), &[user_id, device_id, member_id]);
    STANDARD_NO_PAD.encode(hasher.finalize())
}

/// The LiveKit identity of a legacy (format C) member: `"{user_id}:{device_id}"`.
pub fn legacy_livekit_identity(user_id: &str, device_id: &str) -> String {
    format!("{user_id}:{device_id}")
}

struct HashWriter<'a>(&'a mut Sha256);

impl std::io::Write for HashWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.update(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
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
