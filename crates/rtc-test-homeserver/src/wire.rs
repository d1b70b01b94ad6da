//! Wire names: HTTP paths, JSON bodies and Synapse config keys used by the harness.

use serde::{Deserialize, Serialize};

/// The server name every test server uses.
pub(crate) const SERVER_NAME: &str = "localhost";
/// The shared secret for admin registration (a loopback-only throwaway server).
pub(crate) const REGISTRATION_SHARED_SECRET: &str = "rtc-test-homeserver-shared-secret";

pub(crate) const VERSIONS_PATH: &str = "/_matrix/client/versions";
pub(crate) const ADMIN_REGISTER_PATH: &str = "/_synapse/admin/v1/register";
pub(crate) const LOGIN_PATH: &str = "/_matrix/client/v3/login";
pub(crate) const CREATE_ROOM_PATH: &str = "/_matrix/client/v3/createRoom";

pub(crate) fn join_path(room_id: &str) -> String {
    format!(
        "/_matrix/client/v3/join/{}",
        crate::encode_path_segment(room_id)
    )
}

pub(crate) fn invite_path(room_id: &str) -> String {
    format!(
        "/_matrix/client/v3/rooms/{}/invite",
        crate::encode_path_segment(room_id)
    )
}

/// The Megolm algorithm for the `m.room.encryption` initial state of encrypted rooms.
pub(crate) const MEGOLM_ALGORITHM: &str = "m.megolm.v1.aes-sha2";
pub(crate) const ROOM_ENCRYPTION_EVENT: &str = "m.room.encryption";

/// `GET /_synapse/admin/v1/register`.
#[derive(Debug, Deserialize)]
pub(crate) struct NonceResponse {
    pub(crate) nonce: String,
}

/// `POST /_synapse/admin/v1/register`.
#[derive(Debug, Serialize)]
pub(crate) struct AdminRegisterRequest<'a> {
    pub(crate) nonce: &'a str,
    pub(crate) username: &'a str,
    pub(crate) password: &'a str,
    pub(crate) admin: bool,
    pub(crate) mac: &'a str,
}

/// The answer to admin registration and to password login.
#[derive(Debug, Deserialize)]
pub(crate) struct SessionResponse {
    pub(crate) user_id: String,
    pub(crate) access_token: String,
    pub(crate) device_id: String,
}

/// `POST /_matrix/client/v3/createRoom`.
#[derive(Debug, Deserialize)]
pub(crate) struct CreateRoomResponse {
    pub(crate) room_id: String,
}

/// The Synapse rate-limit settings the default config raises, as dotted config paths.
pub(crate) const RATE_LIMIT_KEYS: &[&str] = &[
    "rc_message",
    "rc_delayed_event_mgmt",
    "rc_registration",
    "rc_login.address",
    "rc_login.account",
    "rc_login.failed_attempts",
    "rc_joins.local",
    "rc_joins.remote",
    "rc_joins_per_room",
    "rc_invites.per_room",
    "rc_invites.per_user",
    "rc_invites.per_issuer",
    "rc_room_creation",
    "rc_key_requests",
    "rc_presence.per_user",
    "rc_profile",
    "rc_user_directory",
    "rc_media_create",
    "rc_admin_redaction",
    "rc_reports",
];
