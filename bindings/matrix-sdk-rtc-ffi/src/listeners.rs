//! The listeners the foreign side implements, one per stream. Each is called once with the
//! current value when subscribing, then with every change, from a background thread. The
//! streams across rooms never lose silently: a listener that falls behind gets a resync (or a
//! count of what it missed) in place of the items it missed.

use crate::{CallEvent, DiagnosticEvent, OwnStatus, ParticipantsDiff, SessionUpdate};

/// Receives the participant list of one call: first one `Reset` with the whole list, then
/// each batch of changes.
#[uniffi::export(with_foreign)]
pub trait ParticipantsListener: Send + Sync {
    /// Apply `diffs`, in order.
    fn on_update(&self, diffs: Vec<ParticipantsDiff>);
}

/// Receives whether one call is active (has at least one participant).
#[uniffi::export(with_foreign)]
pub trait CallActiveListener: Send + Sync {
    /// The call is now active (`true`) or not.
    fn on_update(&self, active: bool);
}

/// Receives our own status in one call.
#[uniffi::export(with_foreign)]
pub trait OwnStatusListener: Send + Sync {
    /// Our status is now `status`.
    fn on_update(&self, status: OwnStatus);
}

/// Receives calls starting and ending, across rooms.
#[uniffi::export(with_foreign)]
pub trait CallEventsListener: Send + Sync {
    /// A call started or ended; or (`Resync`) the listener fell behind: here are the calls
    /// active now.
    fn on_update(&self, event: CallEvent);
}

/// Receives every membership change across rooms: joins, refreshes, leaves with their reason.
#[uniffi::export(with_foreign)]
pub trait SessionChangesListener: Send + Sync {
    /// A membership changed (`Change`); or (`Resync`) the listener fell behind: here is every
    /// active call with its participants.
    fn on_update(&self, update: SessionUpdate);
}

/// Receives events that did not count, and why.
#[uniffi::export(with_foreign)]
pub trait DiagnosticsListener: Send + Sync {
    /// An event was rejected, ignored or flagged, or a cap dropped events (`Reported`); or
    /// (`Missed`) the listener fell behind and this many diagnostics were skipped.
    fn on_update(&self, event: DiagnosticEvent);
}
