//! Where Synapse lives, and installing it on first use.
//!
//! The install itself is `scripts/install-synapse.sh`: the crate runs that very script, so there is
//! one install procedure for people, CI and tests. The script takes an flock(1) on
//! `<venv>.lock`, which serialises installs across test processes.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Instant;

use tokio::sync::OnceCell;

use crate::error::{Error, Result};

/// The Synapse version the harness installs and runs (`matrix-synapse` on PyPI).
pub const SYNAPSE_VERSION: &str = "1.163.2";

/// The LiveKit server library (`livekit-api` on PyPI) installed beside Synapse, with which the
/// [JWT service stand-in](crate::JwtService) mints its tokens.
pub const LIVEKIT_API_VERSION: &str = "1.2.2";

/// The environment variable that overrides where the Synapse venv lives.
pub const VENV_ENV_VAR: &str = "RTC_SYNAPSE_VENV";

/// The file in the venv that the install script writes after a verified install.
const MARKER_FILE: &str = ".rtc-synapse-version";

/// The outcome of this process's install check, shared by every server it starts.
/// A failure is cached too: a second `pip install` in the same process would fail the same way.
static INSTALLED: OnceCell<Result<PathBuf, String>> = OnceCell::const_new();

/// The workspace root: the directory that holds `scripts/` and the git-ignored `.build/`.
pub fn workspace_root() -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join("..");
    root.canonicalize().unwrap_or(root)
}

/// The directory of the Synapse virtual environment: `$RTC_SYNAPSE_VENV` when set, else
/// `<workspace root>/.build/synapse-venv`.
pub fn venv_dir() -> PathBuf {
    match std::env::var_os(VENV_ENV_VAR) {
        Some(dir) if !dir.is_empty() => PathBuf::from(dir),
        _ => workspace_root().join(".build").join("synapse-venv"),
    }
}

/// Makes sure Synapse [`SYNAPSE_VERSION`] (and `livekit-api` [`LIVEKIT_API_VERSION`]) is
/// installed in [`venv_dir`], installing what is missing, and returns the venv's Python
/// interpreter.
///
/// The first call in a process checks the venv's version marker; when it is missing or stale it
/// runs `scripts/install-synapse.sh` (about 20 s; parallel processes wait for one another on the
/// script's file lock). Later calls return the cached outcome. A failed install is an
/// [`Error::Install`], never a skip.
pub async fn ensure_synapse() -> Result<PathBuf> {
    let venv = venv_dir();
    let outcome = INSTALLED
        .get_or_init(|| install_if_missing(venv.clone()))
        .await;
    match outcome {
        Ok(python) => Ok(python.clone()),
        Err(reason) => Err(Error::Install {
            venv,
            reason: reason.clone(),
        }),
    }
}

/// What the script writes into the marker after a verified install of both pinned packages.
fn install_stamp() -> String {
    format!("matrix-synapse=={SYNAPSE_VERSION} livekit-api=={LIVEKIT_API_VERSION}")
}

/// True when the venv holds the pinned versions, judged by the marker the script writes.
fn is_installed(venv: &Path) -> bool {
    let python = venv.join("bin").join("python");
    let marker = std::fs::read_to_string(venv.join(MARKER_FILE)).unwrap_or_default();
    python.is_file() && marker.trim() == install_stamp()
}

async fn install_if_missing(venv: PathBuf) -> Result<PathBuf, String> {
    let python = venv.join("bin").join("python");
    if is_installed(&venv) {
        return Ok(python);
    }
    let script = workspace_root().join("scripts").join("install-synapse.sh");
    if !script.is_file() {
        return Err(format!(
            "the install script {} is missing",
            script.display()
        ));
    }
    tracing::info!(venv = %venv.display(), "installing synapse {SYNAPSE_VERSION}");
    let started = Instant::now();
    // Not killed when this future is dropped: an interrupted pip would leave a broken venv.
    let output = tokio::process::Command::new("bash")
        .arg(&script)
        .env(VENV_ENV_VAR, &venv)
        .stdin(Stdio::null())
        .output()
        .await
        .map_err(|e| format!("could not run {}: {e}", script.display()))?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    if !output.status.success() {
        return Err(format!(
            "{} ended with {}:\n{}",
            script.display(),
            output.status,
            tail(&text, 30)
        ));
    }
    if !is_installed(&venv) {
        return Err(format!(
            "{} succeeded but left no version marker:\n{}",
            script.display(),
            tail(&text, 30)
        ));
    }
    tracing::info!(elapsed = ?started.elapsed(), "synapse {SYNAPSE_VERSION} is installed");
    Ok(python)
}

/// The last `lines` lines of `text`.
pub(crate) fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_install_script_pins_the_same_version() {
        let script = include_str!("../../../scripts/install-synapse.sh");
        assert!(script.contains(&format!("SYNAPSE_VERSION=\"{SYNAPSE_VERSION}\"")));
        assert!(script.contains(&format!("LIVEKIT_API_VERSION=\"{LIVEKIT_API_VERSION}\"")));
        assert!(script.contains(
            r#"STAMP="matrix-synapse==$SYNAPSE_VERSION livekit-api==$LIVEKIT_API_VERSION""#
        ));
        assert_eq!(
            install_stamp(),
            format!("matrix-synapse=={SYNAPSE_VERSION} livekit-api=={LIVEKIT_API_VERSION}")
        );
        assert!(script.contains(MARKER_FILE));
        assert!(script.contains(VENV_ENV_VAR));
    }

    #[test]
    fn tail_keeps_the_last_lines() {
        assert_eq!(tail("a\nb\nc\n", 2), "b\nc");
        assert_eq!(tail("a", 5), "a");
    }
}
