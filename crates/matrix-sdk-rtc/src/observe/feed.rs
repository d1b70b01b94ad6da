//! [`Feed`]: a broadcast whose slow readers never lose silently. Every item carries a sequence
//! number; a reader that falls behind gets one resync item (built from the current state,
//! under the feed's lock) and then only the items published after that state.
use std::sync::{Arc, Mutex, MutexGuard};

use futures_util::Stream;
use tokio::sync::broadcast;

/// A broadcast of `T` with resync on lag.
#[derive(Debug)]
pub(crate) struct Feed<T> {
    /// The sequence number of the latest item; held while publishing a batch and while a
    /// lagging reader builds its resync item, so a resync sees whole batches.
    seq: Arc<Mutex<u64>>,
    sender: broadcast::Sender<(u64, T)>,
}

/// The feed, locked for publishing.
#[derive(Debug)]
pub(crate) struct FeedGuard<'a, T> {
    seq: MutexGuard<'a, u64>,
    sender: &'a broadcast::Sender<(u64, T)>,
}

impl<T> FeedGuard<'_, T> {
    /// Sends one item (nobody listening is fine).
    pub(crate) fn send(&mut self, item: T) {
        *self.seq += 1;
        let _ = self.sender.send((*self.seq, item));
    }
}

impl<T: Clone + Send + 'static> Feed<T> {
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            seq: Arc::new(Mutex::new(0)),
            sender: broadcast::channel(capacity).0,
        }
    }

    /// Locks the feed: state changes made while the guard lives, and the items sent through
    /// it, are seen by a resyncing reader all or none.
    pub(crate) fn lock(&self) -> FeedGuard<'_, T> {
        FeedGuard {
            seq: self
                .seq
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner()),
            sender: &self.sender,
        }
    }

    /// Every item from now on; when the reader falls behind, `resync(missed)` (called under
    /// the feed's lock) stands in for what it missed.
    pub(crate) fn subscribe<F>(&self, resync: F) -> impl Stream<Item = T> + Send + Unpin + use<T, F>
    where
        F: FnMut(u64) -> T + Send + 'static,
    {
        use futures_util::StreamExt as _;
        struct Reader<T, F> {
            receiver: broadcast::Receiver<(u64, T)>,
            seq: Arc<Mutex<u64>>,
            /// Items up to this sequence number are in the last resync.
            seen: u64,
            resync: F,
        }
        // Subscribed under the lock: a subscription falls wholly before or after a published
        // step, so a reader never gets a change it could already see in the state.
        let guard = self.lock();
        let receiver = self.sender.subscribe();
        drop(guard);
        let reader = Reader {
            receiver,
            seq: self.seq.clone(),
            seen: 0,
            resync,
        };
        futures_util::stream::unfold(reader, |mut reader| async move {
            loop {
                match reader.receiver.recv().await {
                    Ok((seq, _)) if seq <= reader.seen => {}
                    Ok((_, item)) => return Some((item, reader)),
                    Err(broadcast::error::RecvError::Lagged(missed)) => {
                        let guard = reader
                            .seq
                            .lock()
                            .unwrap_or_else(|poisoned| poisoned.into_inner());
                        let item = (reader.resync)(missed);
                        reader.seen = *guard;
                        drop(guard);
                        tracing::debug!(missed, "a slow reader fell behind: resync");
                        return Some((item, reader));
                    }
                    Err(broadcast::error::RecvError::Closed) => return None,
                }
            }
        })
        .boxed()
    }
}
