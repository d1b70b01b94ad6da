//! The tokio runtime this library owns: a static multi-thread runtime, so that the sync loop,
//! the rtc driver and every listener keep running between calls from the foreign side.
use std::{future::Future, sync::OnceLock};

use tokio::runtime::Runtime;

use crate::RtcFfiError;

static RUNTIME: OnceLock<Runtime> = OnceLock::new();

/// The library's runtime, started on first use.
pub(crate) fn get() -> &'static Runtime {
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .thread_name("matrix-sdk-rtc-ffi")
            .build()
            // Only fails when the OS refuses threads or timers: nothing can run without them.
            // uniffi turns the panic into an exception on the foreign side.
            .expect("the matrix-sdk-rtc-ffi tokio runtime starts")
    })
}

/// Runs `future` on the library's runtime and waits for it from any executor (the foreign
/// side polls the returned future). Everything `future` spawns lands on the library's runtime.
///
/// If the foreign side drops the call before it ends, `future` still runs to completion.
pub(crate) async fn run<F, T>(future: F) -> Result<T, RtcFfiError>
where
    F: Future<Output = Result<T, RtcFfiError>> + Send + 'static,
    T: Send + 'static,
{
    get()
        .spawn(future)
        .await
        .map_err(|error| RtcFfiError::Other(format!("the background task failed: {error}")))?
}

/// A value dropped inside the library's runtime context. matrix-sdk's stores hand clean-up
/// work to tokio when they drop, which panics on a thread without a runtime, and the foreign
/// side drops our objects on threads of its own (a garbage collector's, a finalizer's).
#[derive(Debug)]
pub(crate) struct RuntimeDropped<T>(Option<T>);

impl<T> RuntimeDropped<T> {
    pub(crate) fn new(value: T) -> Self {
        Self(Some(value))
    }
}

impl<T> std::ops::Deref for RuntimeDropped<T> {
    type Target = T;

    fn deref(&self) -> &T {
        // Only `drop` takes the value out.
        self.0
            .as_ref()
            .expect("a RuntimeDropped value is present until dropped")
    }
}

impl<T> Drop for RuntimeDropped<T> {
    fn drop(&mut self) {
        let _runtime = get().enter();
        drop(self.0.take());
    }
}
