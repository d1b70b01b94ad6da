//! Parsing one whole sliding-sync sticky-events extension response (MSC4480).
use ruma_common::{OwnedRoomId, RoomId};

use super::{MAX_BATCH_BYTES, Parsed, Rejection, parse_event, read_object};
use crate::{
    Receipt,
    wire::{
        batch::{Defect, RawBatch, RawExtensions, RawResponse},
        scalar,
    },
};

/// Longest room key kept in a [`BatchError`], in bytes (longer keys are cut at a character
/// boundary).
const MAX_REPORTED_KEY_BYTES: usize = 255;

/// The events of one room of an extension response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoomBatch {
    /// The room.
    pub room_id: OwnedRoomId,
    /// Each event of the room, in the order received, parsed on its own.
    pub events: Vec<Result<Parsed, Rejection>>,
}

/// A defect of an extension response that cost more than one event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchError {
    /// The room key as sent (cut to 255 bytes), when the defect is about one room.
    pub room: Option<String>,
    /// What was wrong.
    pub reason: Rejection,
}

/// One parsed sliding-sync sticky-events extension response.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct StickyBatch {
    /// Rooms with a well-formed `events` array, in the order received.
    pub rooms: Vec<RoomBatch>,
    /// Defects of the envelope: rooms or fields that could not be read. The rest of the
    /// response is still usable.
    pub errors: Vec<BatchError>,
    /// The `next_batch` token to send back as `since`; `None` when absent or not a string
    /// (then keep the previous one).
    pub next_batch: Option<String>,
}

impl StickyBatch {
    /// Every event of the response with its room, in order.
    pub fn iter(&self) -> impl Iterator<Item = (&RoomId, &Result<Parsed, Rejection>)> + '_ {
        self.rooms
            .iter()
            .flat_map(|room| room.events.iter().map(move |event| (&*room.room_id, event)))
    }

    /// Number of events in the response, parsed or rejected.
    pub fn event_count(&self) -> usize {
        self.rooms.iter().map(|room| room.events.len()).sum()
    }
}

/// Parse one sliding-sync sticky-events extension response: the value of
/// `extensions["org.matrix.msc4354.sticky_events"]`, i.e.
/// `{"rooms": {"<room id>": {"events": [...]}}, "next_batch": "..."}`.
///
/// Every event is parsed on its own with [`parse_event`] and the same `receipt`, so a bad event
/// costs only itself; a bad room (invalid room ID, a value that is not an object, `events` that
/// is not an array) costs only that room and is listed in [`StickyBatch::errors`]. Only a
/// response that is not a JSON object, or larger than [`MAX_BATCH_BYTES`], fails as a whole.
/// A missing `rooms` is an empty response.
///
/// The envelope is read in one pass and each event once more; the cost is linear in the input.
pub fn parse_sticky_batch(line: &str, receipt: Receipt) -> Result<StickyBatch, Rejection> {
    if line.len() > MAX_BATCH_BYTES {
        return Err(Rejection::TooLarge { bytes: line.len() });
    }
    let raw: RawBatch<'_> = read_object(line)?;
    let mut batch = StickyBatch::default();

    match raw.next_batch.map(scalar::string) {
        None => {}
        Some(Some(token)) => batch.next_batch = Some(token.into_owned()),
        Some(None) => batch.errors.push(BatchError {
            room: None,
            reason: Rejection::NextBatchNotString,
        }),
    }
    for defect in raw.defects {
        let (room, reason) = match defect {
            Defect::RoomsNotObject => (None, Rejection::RoomsNotObject),
            Defect::RoomNotObject(key) => (Some(key), Rejection::RoomNotObject),
            Defect::EventsMissing(key) => (Some(key), Rejection::MissingField("events")),
            Defect::EventsNotArray(key) => (Some(key), Rejection::EventsNotArray),
        };
        batch.errors.push(BatchError {
            room: room.map(|key| reported_key(&key)),
            reason,
        });
    }
    for room in raw.rooms {
        let Ok(room_id) = RoomId::parse(room.key.as_ref()) else {
            batch.errors.push(BatchError {
                room: Some(reported_key(&room.key)),
                reason: Rejection::InvalidRoomId,
            });
            continue;
        };
        let events = room
            .events
            .iter()
            .map(|event| parse_event(event.get(), &room_id, receipt))
            .collect();
        batch.rooms.push(RoomBatch { room_id, events });
    }
    Ok(batch)
}

/// Parse the sticky-events extension out of a whole simplified sliding sync response body
/// (`{"pos": ..., "lists": ..., "extensions": {"org.matrix.msc4354.sticky_events": {...}}}`).
///
/// `Ok(None)` when the extension is absent, which is how the server says "nothing new": keep the
/// previous `since`. The stable extension name is preferred when both are present. Otherwise as
/// [`parse_sticky_batch`].
pub fn parse_sliding_sync_response(
    body: &str,
    receipt: Receipt,
) -> Result<Option<StickyBatch>, Rejection> {
    let response: RawResponse<'_> = read_object(body)?;
    let Some(extensions) = response.extensions else {
        return Ok(None);
    };
    if !scalar::is_object(extensions) {
        return Err(Rejection::NotAnObject);
    }
    let extensions: RawExtensions<'_> = read_object(extensions.get())?;
    match extensions.sticky.or(extensions.sticky_unstable) {
        None => Ok(None),
        Some(extension) => parse_sticky_batch(extension.get(), receipt).map(Some),
    }
}

/// A room key cut to [`MAX_REPORTED_KEY_BYTES`] at a character boundary.
fn reported_key(key: &str) -> String {
    let mut end = key.len().min(MAX_REPORTED_KEY_BYTES);
    while !key.is_char_boundary(end) {
        end -= 1;
    }
    key[..end].to_owned()
}
