//! What the server offers: its capabilities and its RTC transports (docs/protocol.md §6.6, §5.10).

use serde_json::value::RawValue;

use super::{endpoint::endpoint, wire};

endpoint!(
    /// `GET /_matrix/client/v3/capabilities`, kept raw.
    CapabilitiesEndpoint: GET wire::CAPABILITIES_PATH => wire::CapabilitiesResponse
);
endpoint!(
    /// `GET .../org.matrix.msc4143/rtc/transports`.
    RtcTransportsEndpoint: GET wire::RTC_TRANSPORTS_PATH => wire::RtcTransportsResponse
);

/// The transports of an answer, each raw; `{}` means none.
pub(crate) fn transports(response: wire::RtcTransportsResponse) -> Vec<Box<RawValue>> {
    response.rtc_transports.unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::transports;

    #[test]
    fn transports_raw_and_empty() {
        let list = transports(
            serde_json::from_str(
                r#"{"rtc_transports":[{"type":"livekit","livekit_service_url":"https://lk"},"odd"]}"#,
            )
            .unwrap(),
        );
        assert_eq!(list.len(), 2);
        assert_eq!(
            list[0].get(),
            r#"{"type":"livekit","livekit_service_url":"https://lk"}"#
        );
        assert!(transports(serde_json::from_str("{}").unwrap()).is_empty());
    }
}
