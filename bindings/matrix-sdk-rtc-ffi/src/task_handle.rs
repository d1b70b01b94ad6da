//! [`TaskHandle`]: what every subscription returns.
use tokio::task::JoinHandle;

/// A background task delivering updates to a listener. Dropping the handle (or closing it on
/// the foreign side) stops the task, and releases the listener.
#[derive(Debug, uniffi::Object)]
pub struct TaskHandle {
    handle: JoinHandle<()>,
}

impl TaskHandle {
    pub(crate) fn new(handle: JoinHandle<()>) -> Self {
        Self { handle }
    }
}

#[uniffi::export]
impl TaskHandle {
    /// Stops the task: the listener gets no more updates. Calling it again does nothing.
    pub fn cancel(&self) {
        self.handle.abort();
    }

    /// Whether the task has ended: cancelled (shortly after [`cancel`](Self::cancel)), or its
    /// stream ended.
    pub fn is_finished(&self) -> bool {
        self.handle.is_finished()
    }
}

impl Drop for TaskHandle {
    fn drop(&mut self) {
        self.handle.abort();
    }
}
