//! Signals: waiting for Ctrl-C (or SIGTERM), and sending signals to our children.
use anyhow::{Context as _, Result};
use tokio::signal::unix::{SignalKind, signal};

/// Resolves on the first SIGINT (Ctrl-C) or SIGTERM.
pub(crate) async fn interrupted() -> Result<()> {
    let mut interrupt = signal(SignalKind::interrupt()).context("listening for Ctrl-C")?;
    let mut terminate = signal(SignalKind::terminate()).context("listening for SIGTERM")?;
    tokio::select! {
        _ = interrupt.recv() => {}
        _ = terminate.recv() => {}
    }
    Ok(())
}

/// Sends SIGINT (what Ctrl-C sends) to the process `pid`: `rtc join` then leaves cleanly.
pub(crate) fn send_interrupt(pid: u32) -> Result<()> {
    let pid = libc::pid_t::try_from(pid).context("process id out of range")?;
    // SAFETY: kill(2) takes plain integers and touches no memory of ours; `pid` is a child we
    // spawned and have not reaped yet, so it cannot name another process.
    let status = unsafe { libc::kill(pid, libc::SIGINT) };
    if status != 0 {
        return Err(std::io::Error::last_os_error()).context("sending SIGINT");
    }
    Ok(())
}
