//! Optional logging to stderr, for apps and tests that want the library's `tracing` output.

use crate::{Result, RtcFfiError};

/// Sends the library's logs to stderr, filtered by `filter` (`tracing` directives such as
/// `warn,matrix_sdk_rtc=debug`). Only the first call installs the logger; later calls do
/// nothing. Access tokens are never logged.
#[uniffi::export]
pub fn init_logging(filter: String) -> Result<()> {
    let filter = tracing_subscriber::EnvFilter::try_new(&filter).map_err(|error| {
        RtcFfiError::InvalidArgument(format!("invalid log filter {filter:?}: {error}"))
    })?;
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
    Ok(())
}
