//! Event sends with the sticky and delay query parameters (docs/protocol.md §2, §6.1, §6.2).

use std::time::Duration;

use matrix_sdk::ruma::{EventId, OwnedEventId};

use super::{
    DelayId, RequestError,
    endpoint::endpoint,
    error::shorten,
    millis,
    wire::{self, SendResponse},
};

endpoint!(
    /// `PUT /rooms/{room_id}/send/{event_type}/{txn_id}`.
    SendEventEndpoint: PUT wire::SEND_EVENT_PATH => SendResponse
);
endpoint!(
    /// `PUT /rooms/{room_id}/state/{event_type}/{state_key}` (only the tests of this layer
    /// send state).
    SendStateEndpoint: PUT wire::SEND_STATE_PATH => SendResponse
);

/// The query parameters of a send: the sticky duration and the delay, each optional.
pub(crate) fn send_query(
    sticky_duration: Option<Duration>,
    delay: Option<Duration>,
) -> Vec<(&'static str, String)> {
    let mut query = Vec::new();
    if let Some(delay) = delay {
        query.push((wire::DELAY_QUERY, millis(delay).to_string()));
    }
    if let Some(duration) = sticky_duration {
        query.push((wire::STICKY_DURATION_QUERY, millis(duration).to_string()));
    }
    query
}

/// Reads the answer to a send without delay: the event id.
pub(crate) fn sent_event_id(response: SendResponse) -> Result<OwnedEventId, RequestError> {
    let Some(event_id) = response.event_id else {
        return Err(RequestError::InvalidResponse(
            "send answer without event_id".to_owned(),
        ));
    };
    parse_event_id(&event_id)
}

/// Reads the answer to a delayed send: the delay id, or [`RequestError::DelayIgnored`] when the
/// server sent the event at once.
pub(crate) fn scheduled_delay_id(response: SendResponse) -> Result<DelayId, RequestError> {
    match response {
        SendResponse {
            delay_id: Some(delay_id),
            ..
        } => Ok(DelayId::new(delay_id)),
        SendResponse {
            delay_id: None,
            event_id: Some(event_id),
        } => Err(RequestError::DelayIgnored {
            event_id: parse_event_id(&event_id)?,
        }),
        SendResponse {
            delay_id: None,
            event_id: None,
        } => Err(RequestError::InvalidResponse(
            "delayed send answer without delay_id".to_owned(),
        )),
    }
}

fn parse_event_id(event_id: &str) -> Result<OwnedEventId, RequestError> {
    EventId::parse(event_id)
        .map_err(|error| RequestError::InvalidResponse(shorten(&format!("bad event_id: {error}"))))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::{scheduled_delay_id, send_query, sent_event_id};
    use crate::requests::{RequestError, wire::SendResponse};

    fn response(json: &str) -> SendResponse {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn query_parameters() {
        assert!(send_query(None, None).is_empty());
        assert_eq!(
            send_query(
                Some(Duration::from_secs(3600)),
                Some(Duration::from_millis(8000))
            ),
            vec![
                ("org.matrix.msc4140.delay", "8000".to_owned()),
                (
                    "org.matrix.msc4354.sticky_duration_ms",
                    "3600000".to_owned()
                ),
            ]
        );
    }

    #[test]
    fn event_id_answer() {
        assert_eq!(
            sent_event_id(response(r#"{"event_id":"$abc"}"#))
                .unwrap()
                .as_str(),
            "$abc"
        );
        assert!(matches!(
            sent_event_id(response(r#"{"event_id":"no-sigil"}"#)),
            Err(RequestError::InvalidResponse(_))
        ));
        assert!(matches!(
            sent_event_id(response("{}")),
            Err(RequestError::InvalidResponse(_))
        ));
    }

    #[test]
    fn delay_id_answer() {
        assert_eq!(
            scheduled_delay_id(response(r#"{"delay_id":"syd_x"}"#))
                .unwrap()
                .as_str(),
            "syd_x"
        );
    }

    #[test]
    fn ignored_delay_is_reported_distinctly() {
        let Err(RequestError::DelayIgnored { event_id }) =
            scheduled_delay_id(response(r#"{"event_id":"$sent"}"#))
        else {
            panic!("expected DelayIgnored");
        };
        assert_eq!(event_id.as_str(), "$sent");
        assert!(matches!(
            scheduled_delay_id(response("{}")),
            Err(RequestError::InvalidResponse(_))
        ));
    }
}
