//! The harness against a real Synapse: lifecycle, helpers and config switches.

mod features;
mod jwt_service;
mod lifecycle;

use rtc_test_homeserver::{
    Method, Result, TestHomeserver, TestUser, encode_path_segment, unique_id,
};
use serde_json::Value;

/// `GET /account/whoami` as `user`.
async fn whoami(server: &TestHomeserver, user: &TestUser) -> Result<(u16, Value)> {
    server
        .request(
            Method::GET,
            "/_matrix/client/v3/account/whoami",
            Some(&user.access_token),
            None,
        )
        .await
}

/// `PUT /rooms/{room}/send/{type}/{txn}{query}` as `user`.
async fn send(
    server: &TestHomeserver,
    user: &TestUser,
    room_id: &str,
    event_type: &str,
    query: &str,
    content: &Value,
) -> Result<(u16, Value)> {
    let path = format!(
        "/_matrix/client/v3/rooms/{}/send/{}/{}{query}",
        encode_path_segment(room_id),
        encode_path_segment(event_type),
        unique_id("txn"),
    );
    server
        .request(Method::PUT, &path, Some(&user.access_token), Some(content))
        .await
}

/// Whether a process with this pid exists and has not ended (a zombie has ended).
fn process_exists(pid: u32) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    // "<pid> (<comm>) <state> ...": the state follows the last ')'.
    let state = stat
        .rsplit_once(')')
        .and_then(|(_, rest)| rest.trim_start().chars().next());
    state.is_some_and(|state| state != 'Z' && state != 'X')
}
