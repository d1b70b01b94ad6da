//! Snapshots: persisting the map with absolute wall-clock expiries, and restoring it.
//!
//! A remaining lifetime from the server is a snapshot of its own, valid only from the moment it
//! was received, so it is never stored: every candidate is stored with its absolute wall-clock
//! deadline (`expires_wall_ms`), and monotonic deadlines are derived again on restore.
//!
//! The tombstones of redacted events are stored like any candidate, with their content `{}`
//! and their sticky key beside it (`redacted_key`), so a restored map keeps the key removed.
//! Snapshots written before tombstones existed (without that field) read as before.
use std::time::{Duration, Instant};

use ruma_common::{EventId, OwnedDeviceId, RoomId, UserId};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use tracing::debug;

use crate::{
    Change, EventOrigin, Limits, StickyEvent, StickyMap, StickyMeta,
    event::{EMPTY_OBJECT, empty_object},
    map::REMEMBER_FOR,
    parse,
    wire::MAX_DURATION_MS,
};

/// The snapshot format version written by this crate.
const VERSION: u32 = 1;

/// A serializable copy of a [`StickyMap`]: every candidate (superseded ones, deletion markers and
/// the tombstones of redacted events included) with its absolute wall-clock deadline, and the
/// remembered redactions.
///
/// Serialize it with any serde format (the content is stored as a JSON string). The order of
/// entries is deterministic (by room, then event ID), so equal maps give equal snapshots.
/// Stored snapshots are not encrypted by this crate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Snapshot {
    version: u32,
    events: Vec<SnapshotEvent>,
    redactions: Vec<SnapshotRedaction>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct SnapshotEvent {
    room_id: String,
    event_id: String,
    sender: String,
    origin_server_ts: u64,
    duration_ms: u64,
    expires_wall_ms: u64,
    event_type: String,
    content: String,
    /// `None` for plaintext, `Some(device)` for decrypted events (`Some(None)`: device unknown).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    encrypted: Option<Option<String>>,
    /// The sticky key of a tombstone (a redacted candidate, whose content `{}` no longer holds
    /// it); absent for every other candidate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    redacted_key: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct SnapshotRedaction {
    room_id: String,
    event_id: String,
    forget_wall_ms: u64,
}

/// Why a snapshot could not be restored.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SnapshotError {
    /// The snapshot was written by an unknown format version.
    #[error("unsupported snapshot version {0}")]
    UnsupportedVersion(u32),
}

impl Snapshot {
    /// Number of candidates stored.
    pub fn len(&self) -> usize {
        self.events.len()
    }

    /// Whether no candidate is stored.
    pub fn is_empty(&self) -> bool {
        self.events.is_empty()
    }
}

impl StickyMap {
    /// A snapshot of every candidate and remembered redaction. `now` and `now_wall_ms` (read at
    /// the same moment) convert the redactions' monotonic deadlines to wall-clock time;
    /// candidates already carry their wall-clock deadline.
    pub fn snapshot(&self, now: Instant, now_wall_ms: u64) -> Snapshot {
        let mut events: Vec<SnapshotEvent> = self
            .candidates()
            .map(|event| SnapshotEvent {
                room_id: event.meta.room_id.to_string(),
                event_id: event.meta.event_id.to_string(),
                sender: event.meta.sender.to_string(),
                origin_server_ts: event.meta.origin_server_ts,
                duration_ms: event.meta.duration_ms,
                expires_wall_ms: event.meta.expires_wall_ms,
                event_type: event.event_type.clone(),
                content: event.content.get().to_owned(),
                encrypted: match &event.origin {
                    EventOrigin::Plaintext => None,
                    EventOrigin::Encrypted { sender_device } => {
                        Some(sender_device.as_ref().map(ToString::to_string))
                    }
                },
                redacted_key: event
                    .is_tombstone()
                    .then(|| event.sticky_key.clone())
                    .flatten(),
            })
            .collect();
        events.sort_by(|a, b| (&a.room_id, &a.event_id).cmp(&(&b.room_id, &b.event_id)));
        let mut redactions: Vec<SnapshotRedaction> = self
            .remembered_redactions()
            .map(|r| SnapshotRedaction {
                room_id: r.room_id.to_string(),
                event_id: r.event_id.to_string(),
                forget_wall_ms: now_wall_ms
                    .saturating_add(millis(r.forget_at.saturating_duration_since(now))),
            })
            .collect();
        redactions.sort_by(|a, b| (&a.room_id, &a.event_id).cmp(&(&b.room_id, &b.event_id)));
        Snapshot {
            version: VERSION,
            events,
            redactions,
        }
    }

    /// A new map holding what `snapshot` stored, minus what expired meanwhile.
    pub fn from_snapshot(
        limits: Limits,
        snapshot: &Snapshot,
        now: Instant,
        now_wall_ms: u64,
    ) -> Result<Self, SnapshotError> {
        let mut map = Self::new(limits);
        let _restored = map.restore(snapshot, now, now_wall_ms)?;
        Ok(map)
    }

    /// Merge a snapshot into this map, as if its events and redactions arrived now.
    ///
    /// Entries whose wall-clock deadline is `now_wall_ms` or earlier are dropped; the others get
    /// the monotonic deadline `now + (expires_wall_ms - now_wall_ms)`, capped at one hour.
    /// Redactions are applied first. Tombstones come back as tombstones (a live candidate of the
    /// same event ID is redacted by them), so a key removed by a redaction stays removed.
    /// Invalid entries (a tampered or corrupted snapshot) are skipped. The merge follows the
    /// map's usual rules, so restoring into a map that already holds some of the events is
    /// harmless.
    pub fn restore(
        &mut self,
        snapshot: &Snapshot,
        now: Instant,
        now_wall_ms: u64,
    ) -> Result<Vec<Change>, SnapshotError> {
        if snapshot.version != VERSION {
            return Err(SnapshotError::UnsupportedVersion(snapshot.version));
        }
        let mut out = Vec::new();
        self.expire_now(now, &mut out);

        let mut redactions: Vec<&SnapshotRedaction> = snapshot
            .redactions
            .iter()
            .filter(|r| r.forget_wall_ms > now_wall_ms)
            .collect();
        redactions.sort_by_key(|r| r.forget_wall_ms);
        for redaction in redactions {
            let (Ok(room_id), Ok(event_id)) = (
                RoomId::parse(&redaction.room_id),
                EventId::parse(&redaction.event_id),
            ) else {
                debug!("skipping an invalid redaction in a snapshot");
                continue;
            };
            let left =
                Duration::from_millis(redaction.forget_wall_ms - now_wall_ms).min(REMEMBER_FOR);
            let forget_at = now.checked_add(left).unwrap_or(now);
            self.remember_redaction(&room_id, &event_id, forget_at, &mut out);
        }

        for stored in &snapshot.events {
            if stored.expires_wall_ms <= now_wall_ms {
                continue;
            }
            match restored_event(stored, now, now_wall_ms) {
                Some(event) => self.insert(event, now, &mut out),
                None => {
                    debug!(event_id = %stored.event_id, "skipping an invalid event in a snapshot")
                }
            }
        }
        self.finish();
        Ok(out)
    }
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

/// Rebuild one stored candidate, with its deadline derived again from the wall clock.
fn restored_event(stored: &SnapshotEvent, now: Instant, now_wall_ms: u64) -> Option<StickyEvent> {
    if stored.duration_ms == 0 {
        return None;
    }
    let left_ms = (stored.expires_wall_ms - now_wall_ms).min(MAX_DURATION_MS);
    let meta = StickyMeta {
        room_id: RoomId::parse(&stored.room_id).ok()?,
        event_id: EventId::parse(&stored.event_id).ok()?,
        sender: UserId::parse(&stored.sender).ok()?,
        origin_server_ts: stored.origin_server_ts,
        duration_ms: stored.duration_ms.min(MAX_DURATION_MS),
        expires_at: now.checked_add(Duration::from_millis(left_ms))?,
        expires_wall_ms: now_wall_ms + left_ms,
    };
    let (content, sticky_key, key_only) = match &stored.redacted_key {
        // A tombstone: its content is `{}` (any other is a corrupted entry), its key is beside it
        // (any string is a valid sticky key).
        Some(key) if stored.content == EMPTY_OBJECT => (empty_object(), Some(key.clone()), true),
        Some(_) => return None,
        None => {
            let content = RawValue::from_string(stored.content.clone()).ok()?;
            let info = parse::content_info(&content).ok()?;
            (content, info.sticky_key, info.key_only)
        }
    };
    let origin = match &stored.encrypted {
        None => EventOrigin::Plaintext,
        Some(device) => EventOrigin::Encrypted {
            sender_device: device.as_deref().map(OwnedDeviceId::from),
        },
    };
    Some(StickyEvent {
        meta,
        event_type: stored.event_type.clone(),
        sticky_key,
        key_only,
        content,
        origin,
    })
}
