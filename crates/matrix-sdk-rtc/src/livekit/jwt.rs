//! Reading a LiveKit JWT's payload, without verifying it.
//!
//! We are not the party that trusts the token (the SFU verifies it); we only read when it
//! expires (to cache it), whose identity it carries and which LiveKit room it grants.

use base64::{Engine as _, engine::general_purpose::URL_SAFE_NO_PAD};

use super::wire::JwtClaims;

/// Longest JWT we accept, in bytes (a LiveKit token is well under 2 KiB).
const MAX_JWT_LEN: usize = 16 * 1024;

/// What we read from a JWT.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct JwtFacts {
    /// Expiry, in milliseconds since the Unix epoch.
    pub(crate) expires_at_ms: u64,
    /// `sub`: the LiveKit participant identity.
    pub(crate) identity: String,
    /// `video.room`: the LiveKit room.
    pub(crate) room: String,
}

/// Reads `exp`, `sub` and `video.room` from a compact JWS (`header.payload.signature`).
///
/// The error says what is wrong and never quotes the token.
pub(crate) fn read(jwt: &str) -> Result<JwtFacts, String> {
    if jwt.len() > MAX_JWT_LEN {
        return Err(format!("the JWT is longer than {MAX_JWT_LEN} bytes"));
    }
    let mut parts = jwt.split('.');
    let (Some(_header), Some(payload), Some(_signature), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err("the JWT does not have three parts".to_owned());
    };
    // Base64url without padding (RFC 7515); tolerate padding some encoders add.
    let bytes = URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .map_err(|_| "the JWT payload is not base64url".to_owned())?;
    let claims: JwtClaims = serde_json::from_slice(&bytes)
        .map_err(|error| format!("the JWT payload is not the JSON we expect: {error}"))?;
    let exp = claims
        .exp
        .filter(|exp| exp.is_finite() && *exp > 0.0)
        .ok_or_else(|| "the JWT has no valid `exp`".to_owned())?;
    let identity = claims
        .sub
        .filter(|sub| !sub.is_empty())
        .ok_or_else(|| "the JWT has no `sub` (identity)".to_owned())?;
    let room = claims
        .video
        .and_then(|video| video.room)
        .filter(|room| !room.is_empty())
        .ok_or_else(|| "the JWT has no `video.room`".to_owned())?;
    // `exp` is in seconds; the cast saturates on absurd values.
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let expires_at_ms = (exp * 1000.0) as u64;
    Ok(JwtFacts {
        expires_at_ms,
        identity,
        room,
    })
}

#[cfg(test)]
mod tests {
    use base64::{Engine as _, engine::general_purpose::URL_SAFE_NO_PAD};
    use serde_json::json;

    use super::*;

    fn token(payload: &serde_json::Value) -> String {
        let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"HS256","typ":"JWT"}"#);
        let payload = URL_SAFE_NO_PAD.encode(payload.to_string());
        format!("{header}.{payload}.c2lnbmF0dXJl")
    }

    #[test]
    fn reads_expiry_identity_and_room() {
        let jwt = token(&json!({
            "exp": 1_900_000_000, "nbf": 0, "iss": "key", "sub": "NIhr9StCx5JXUvm+Str08ZFLjNkeQEHX6vQW0l14ZGw",
            "video": { "room": "O8437W3+jmzMVjoIP3tNwbm+XxHQk2iKpOA7aqw3qSc", "roomJoin": true },
        }));
        assert_eq!(
            read(&jwt).unwrap(),
            JwtFacts {
                expires_at_ms: 1_900_000_000_000,
                identity: "NIhr9StCx5JXUvm+Str08ZFLjNkeQEHX6vQW0l14ZGw".to_owned(),
                room: "O8437W3+jmzMVjoIP3tNwbm+XxHQk2iKpOA7aqw3qSc".to_owned(),
            }
        );
    }

    #[test]
    fn refuses_what_it_cannot_read_without_quoting_it() {
        let cases = [
            "not-a-jwt".to_owned(),
            "a.b.c.d".to_owned(),
            "e30.!!!.c2ln".to_owned(),
            token(&json!({ "sub": "x", "video": { "room": "r" } })),
            token(&json!({ "exp": -5, "sub": "x", "video": { "room": "r" } })),
            token(&json!({ "exp": 5, "video": { "room": "r" } })),
            token(&json!({ "exp": 5, "sub": "x" })),
            token(&json!({ "exp": "soon", "sub": "x", "video": { "room": "r" } })),
            "x".repeat(MAX_JWT_LEN + 1),
        ];
        for jwt in cases {
            let error = read(&jwt).unwrap_err();
            assert!(!error.contains(&jwt), "{error}");
        }
    }
}
