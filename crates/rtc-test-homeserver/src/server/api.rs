//! Client-API helpers: users, devices, rooms and raw authenticated requests.

use std::fmt;

use hmac::{Hmac, Mac};
use reqwest::Method;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value, json};
use sha1::Sha1;

use super::TestHomeserver;
use crate::error::{Error, Result};
use crate::names::unique_localpart;
use crate::wire;

/// A registered user with one logged-in device.
///
/// `Debug` leaves out the password and the access token.
#[derive(Clone, PartialEq, Eq)]
pub struct TestUser {
    /// The full user id, `@<localpart>:localhost`.
    pub user_id: String,
    /// The localpart (unique per call, e.g. `alice-4242-7`).
    pub localpart: String,
    /// The account password (for [`TestHomeserver::login`]).
    pub password: String,
    /// The access token of this device.
    pub access_token: String,
    /// This device's id.
    pub device_id: String,
}

impl fmt::Debug for TestUser {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TestUser")
            .field("user_id", &self.user_id)
            .field("device_id", &self.device_id)
            .finish_non_exhaustive()
    }
}

/// What [`TestHomeserver::create_room`] creates: a `private_chat` room (invited users may join;
/// the creator is the only admin; Synapse's default room version, 12, whose room ids have no
/// `:server` part).
#[derive(Clone, Debug, Default)]
pub struct CreateRoomOptions {
    /// Adds an `m.room.encryption` (Megolm) initial state event.
    pub encrypted: bool,
    /// User ids to invite.
    pub invite: Vec<String>,
    /// The room name (`m.room.name`), if any.
    pub name: Option<String>,
    /// Further `createRoom` body fields, merged last (e.g. `power_level_content_override`,
    /// `room_version`, more `initial_state`).
    pub extra: Map<String, Value>,
}

impl TestHomeserver {
    /// Sends one request and returns the status and the JSON answer, whatever the status
    /// (only transport failures are errors). `path` starts with `/` and may carry a query
    /// string; percent-encode ids with [`encode_path_segment`](crate::encode_path_segment).
    /// An empty answer is `Value::Null`; an answer that is not JSON is a `Value::String`.
    pub async fn request(
        &self,
        method: Method,
        path: &str,
        access_token: Option<&str>,
        body: Option<&Value>,
    ) -> Result<(u16, Value)> {
        let mut request = self
            .http
            .request(method, format!("{}{path}", self.base_url));
        if let Some(token) = access_token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = request.send().await?;
        let status = response.status().as_u16();
        let bytes = response.bytes().await?;
        let value = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes)
                .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()))
        };
        Ok((status, value))
    }

    /// `GET /_matrix/client/versions`: the `versions` and `unstable_features` Synapse
    /// advertises.
    pub async fn versions(&self) -> Result<Value> {
        self.request_ok(Method::GET, wire::VERSIONS_PATH, None, None)
            .await
    }

    /// Registers a new user through the shared-secret admin API. The localpart is `localpart`
    /// made unique (`alice` → `alice-<pid>-<n>`), so tests sharing a server never collide.
    /// The user gets a device and an access token; no login is needed.
    pub async fn register_user(&self, localpart: &str) -> Result<TestUser> {
        let username = unique_localpart(localpart);
        let password = format!("pw-{username}");
        let nonce: wire::NonceResponse = self
            .request_typed(Method::GET, wire::ADMIN_REGISTER_PATH, None, None)
            .await?;
        let mac = registration_mac(&nonce.nonce, &username, &password, false);
        let body = serde_json::to_value(wire::AdminRegisterRequest {
            nonce: &nonce.nonce,
            username: &username,
            password: &password,
            admin: false,
            mac: &mac,
        })
        .unwrap_or_default();
        let session: wire::SessionResponse = self
            .request_typed(Method::POST, wire::ADMIN_REGISTER_PATH, None, Some(&body))
            .await?;
        Ok(TestUser {
            user_id: session.user_id,
            localpart: username,
            password,
            access_token: session.access_token,
            device_id: session.device_id,
        })
    }

    /// Logs `user` in again with the device id `device_id` (a second device of the same user,
    /// or the same device with a new token) and returns that session.
    pub async fn login(&self, user: &TestUser, device_id: &str) -> Result<TestUser> {
        let body = json!({
            "type": "m.login.password",
            "identifier": { "type": "m.id.user", "user": user.localpart },
            "password": user.password,
            "device_id": device_id,
            "initial_device_display_name": device_id,
        });
        let session: wire::SessionResponse = self
            .request_typed(Method::POST, wire::LOGIN_PATH, None, Some(&body))
            .await?;
        Ok(TestUser {
            user_id: session.user_id,
            localpart: user.localpart.clone(),
            password: user.password.clone(),
            access_token: session.access_token,
            device_id: session.device_id,
        })
    }

    /// Creates a room as `creator` and returns its id.
    pub async fn create_room(
        &self,
        creator: &TestUser,
        options: CreateRoomOptions,
    ) -> Result<String> {
        let mut body = Map::new();
        body.insert("preset".into(), json!("private_chat"));
        body.insert("invite".into(), json!(options.invite));
        if let Some(name) = options.name {
            body.insert("name".into(), json!(name));
        }
        if options.encrypted {
            body.insert(
                "initial_state".into(),
                json!([{
                    "type": wire::ROOM_ENCRYPTION_EVENT,
                    "state_key": "",
                    "content": { "algorithm": wire::MEGOLM_ALGORITHM },
                }]),
            );
        }
        body.extend(options.extra);
        let created: wire::CreateRoomResponse = self
            .request_typed(
                Method::POST,
                wire::CREATE_ROOM_PATH,
                Some(&creator.access_token),
                Some(&Value::Object(body)),
            )
            .await?;
        Ok(created.room_id)
    }

    /// Invites `user_id` to `room_id` as `inviter`.
    pub async fn invite(&self, inviter: &TestUser, room_id: &str, user_id: &str) -> Result<()> {
        let body = json!({ "user_id": user_id });
        self.request_ok(
            Method::POST,
            &wire::invite_path(room_id),
            Some(&inviter.access_token),
            Some(&body),
        )
        .await
        .map(drop)
    }

    /// Joins `room_id` as `user` (who must be invited, for rooms from
    /// [`create_room`](Self::create_room)).
    pub async fn join_room(&self, user: &TestUser, room_id: &str) -> Result<()> {
        self.request_ok(
            Method::POST,
            &wire::join_path(room_id),
            Some(&user.access_token),
            Some(&json!({})),
        )
        .await
        .map(drop)
    }

    /// [`request`](Self::request), but a non-2xx status is an [`Error::Status`].
    async fn request_ok(
        &self,
        method: Method,
        path: &str,
        access_token: Option<&str>,
        body: Option<&Value>,
    ) -> Result<Value> {
        let (status, value) = self
            .request(method.clone(), path, access_token, body)
            .await?;
        if (200..300).contains(&status) {
            Ok(value)
        } else {
            Err(Error::Status {
                method: method.to_string(),
                path: path.to_owned(),
                status,
                body: value,
            })
        }
    }

    /// [`request_ok`](Self::request_ok), decoding the answer as `T`.
    async fn request_typed<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        access_token: Option<&str>,
        body: Option<&Value>,
    ) -> Result<T> {
        let value = self.request_ok(method, path, access_token, body).await?;
        serde_json::from_value(value).map_err(|e| Error::InvalidResponse {
            path: path.to_owned(),
            reason: e.to_string(),
        })
    }
}

/// `hex(HMAC-SHA1(secret, nonce \0 username \0 password \0 "admin"|"notadmin"))`.
fn registration_mac(nonce: &str, username: &str, password: &str, admin: bool) -> String {
    // HMAC takes keys of any length, so this never fails.
    let Ok(mut mac) = Hmac::<Sha1>::new_from_slice(wire::REGISTRATION_SHARED_SECRET.as_bytes())
    else {
        return String::new();
    };
    for (i, part) in [
        nonce,
        username,
        password,
        if admin { "admin" } else { "notadmin" },
    ]
    .into_iter()
    .enumerate()
    {
        if i > 0 {
            mac.update(b"\0");
        }
        mac.update(part.as_bytes());
    }
    hex::encode(mac.finalize().into_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mac_matches_a_hand_computed_value() {
        // Computed independently with Python's hmac module:
        // hmac.new(b"rtc-test-homeserver-shared-secret",
        //          b"abc\x00alice\x00pw\x00notadmin", hashlib.sha1).hexdigest()
        assert_eq!(
            registration_mac("abc", "alice", "pw", false),
            "3b1adc250939ec3323609eef62323e0405fd1890"
        );
    }

    #[test]
    fn user_debug_hides_secrets() {
        let user = TestUser {
            user_id: "@a:localhost".into(),
            localpart: "a".into(),
            password: "secret-password".into(),
            access_token: "secret-token".into(),
            device_id: "DEV".into(),
        };
        let debug = format!("{user:?}");
        assert!(debug.contains("@a:localhost") && debug.contains("DEV"));
        assert!(!debug.contains("secret"));
    }
}
