//! [`TestHomeserver`]: one Synapse on 127.0.0.1, from start to drop.

mod api;

use std::net::{Ipv4Addr, TcpListener};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::Mutex;

pub use self::api::{CreateRoomOptions, TestUser};
use crate::config::{HomeserverConfig, LIVEKIT_APPSERVICE_FILE, LOG_FILE};
use crate::error::{Error, Result};
use crate::install::{ensure_synapse, tail, workspace_root};
use crate::names::{sanitize_label, unique_id};
use crate::process::{OUTPUT_FILE, SynapseProcess};
use crate::wire;

/// How often readiness is polled.
const READY_POLL: Duration = Duration::from_millis(50);
/// How long `stop` waits after SIGTERM before SIGKILL.
const STOP_GRACE: Duration = Duration::from_secs(3);
/// Fresh starts retried when another process took the chosen port in the meantime.
const PORT_ATTEMPTS: u32 = 3;
/// Lines of each log file quoted in errors.
const LOG_TAIL_LINES: usize = 40;
/// Set to keep every run directory, even after passing tests.
pub(crate) const KEEP_RUNS_ENV_VAR: &str = "RTC_SYNAPSE_KEEP_RUNS";

/// A Synapse homeserver on `127.0.0.1` for one test (or several tests in parallel: every
/// name the helpers make is unique).
///
/// - [`start`](Self::start) installs Synapse when needed, writes a fresh config into
///   `<workspace>/.build/synapse-runs/<test name>-<pid>-<n>/`, picks a free port, spawns
///   Synapse and waits until `/_matrix/client/versions` answers.
/// - [`stop`](Self::stop) and [`restart`](Self::restart) keep the port and the database.
/// - Dropping it kills the process (also on panic, and even outside a runtime). The run
///   directory is deleted, unless the thread is panicking (a failed test), the run dir was
///   [kept](Self::keep_run_dir) or `RTC_SYNAPSE_KEEP_RUNS` is set: then its path and the log's
///   are printed to stderr.
/// - If the test process dies, the kernel kills Synapse too (`PR_SET_PDEATHSIG`).
#[derive(Debug)]
pub struct TestHomeserver {
    config: HomeserverConfig,
    python: PathBuf,
    run_dir: PathBuf,
    port: u16,
    base_url: String,
    http: reqwest::Client,
    /// `None` while stopped. A tokio mutex so stop and restart never interleave.
    process: Mutex<Option<SynapseProcess>>,
    /// The running process's pid, 0 while stopped.
    pid: AtomicU32,
    keep_run_dir: AtomicBool,
}

impl TestHomeserver {
    /// Starts a server with the [default config](HomeserverConfig::default).
    pub async fn start() -> Result<Self> {
        Self::start_with(HomeserverConfig::default()).await
    }

    /// Starts a server with `config`. Installs Synapse first when needed (see
    /// [`ensure_synapse`](crate::ensure_synapse)). Fails with the log tail when Synapse exits or
    /// does not answer within the config's start timeout; its run directory is then kept.
    pub async fn start_with(config: HomeserverConfig) -> Result<Self> {
        let started = Instant::now();
        let python = ensure_synapse().await?;
        let run_dir = create_run_dir(config.label())?;
        write_json(
            &run_dir.join("log_config.yaml"),
            &HomeserverConfig::log_config_yaml(&run_dir),
        )?;
        let http = reqwest::Client::builder()
            .no_proxy()
            // A restart closes every connection: never reuse a pooled one.
            .pool_max_idle_per_host(0)
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(120))
            .build()?;

        if let Some(registration) = config.livekit_appservice_yaml() {
            write_json(&run_dir.join(LIVEKIT_APPSERVICE_FILE), &registration)?;
        }
        let mut attempt = 1;
        loop {
            let port = free_port()?;
            write_json(
                &run_dir.join("homeserver.yaml"),
                &config.homeserver_yaml(&run_dir, port),
            )?;
            let base_url = format!("http://127.0.0.1:{port}");
            let launched =
                launch(&http, &python, &run_dir, &base_url, config.start_timeout()).await;
            match launched {
                Ok(process) => {
                    tracing::info!(
                        port,
                        run_dir = %run_dir.display(),
                        elapsed = ?started.elapsed(),
                        "synapse is ready"
                    );
                    return Ok(Self {
                        base_url,
                        config,
                        python,
                        run_dir,
                        port,
                        http,
                        pid: AtomicU32::new(process.id().unwrap_or(0)),
                        process: Mutex::new(Some(process)),
                        keep_run_dir: AtomicBool::new(false),
                    });
                }
                Err(Error::Exited { log_tail, .. })
                    if attempt < PORT_ATTEMPTS && log_tail.contains("Address already in use") =>
                {
                    tracing::warn!(port, "another process took the port; trying another one");
                    attempt += 1;
                    for file in [LOG_FILE, OUTPUT_FILE] {
                        let _ = std::fs::remove_file(run_dir.join(file));
                    }
                }
                // The run dir stays, for its logs.
                Err(error) => return Err(error),
            }
        }
    }

    /// The base URL of the client API, `http://127.0.0.1:<port>` (no trailing slash).
    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    /// The TCP port on 127.0.0.1 (the same across restarts).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The server name in user ids (`@name:localhost`).
    pub fn server_name(&self) -> &str {
        wire::SERVER_NAME
    }

    /// The config the server was started with.
    pub fn config(&self) -> &HomeserverConfig {
        &self.config
    }

    /// This server's directory: `homeserver.yaml`, the sqlite database, the signing key, the
    /// media store and the logs.
    pub fn run_dir(&self) -> &Path {
        &self.run_dir
    }

    /// Synapse's log file (INFO level; startup errors are in `synapse.out` beside it).
    pub fn log_path(&self) -> PathBuf {
        self.run_dir.join(LOG_FILE)
    }

    /// The Synapse process id, or `None` after [`stop`](Self::stop).
    pub fn pid(&self) -> Option<u32> {
        Some(self.pid.load(Ordering::Relaxed)).filter(|pid| *pid != 0)
    }

    /// Keeps the run directory when the server is dropped, even if the test passes.
    pub fn keep_run_dir(&self) {
        self.keep_run_dir.store(true, Ordering::Relaxed);
    }

    /// Stops the server: SIGTERM, then SIGKILL after 3 s. The port and the run directory stay
    /// reserved for [`restart`](Self::restart). Stopping a stopped server does nothing.
    pub async fn stop(&self) -> Result<()> {
        let mut process = self.process.lock().await;
        self.stop_locked(&mut process).await
    }

    /// Stops the server (as [`stop`](Self::stop); nothing happens if it is stopped) and starts
    /// it again on the same port with the same database, waiting until it answers.
    /// Scheduled delayed events survive; overdue ones fire at startup. Fails if another process
    /// took the port in between.
    pub async fn restart(&self) -> Result<()> {
        let started = Instant::now();
        let mut process = self.process.lock().await;
        self.stop_locked(&mut process).await?;
        let new = launch(
            &self.http,
            &self.python,
            &self.run_dir,
            &self.base_url,
            self.config.start_timeout(),
        )
        .await?;
        self.pid.store(new.id().unwrap_or(0), Ordering::Relaxed);
        *process = Some(new);
        tracing::info!(port = self.port, elapsed = ?started.elapsed(), "synapse restarted");
        Ok(())
    }

    async fn stop_locked(&self, process: &mut Option<SynapseProcess>) -> Result<()> {
        let Some(mut running) = process.take() else {
            return Ok(());
        };
        let started = Instant::now();
        let status = running
            .terminate(STOP_GRACE)
            .await
            .map_err(|e| Error::io("stopping synapse", e))?;
        self.pid.store(0, Ordering::Relaxed);
        tracing::info!(port = self.port, ?status, elapsed = ?started.elapsed(), "synapse stopped");
        Ok(())
    }
}

impl Drop for TestHomeserver {
    fn drop(&mut self) {
        if let Some(mut process) = self.process.get_mut().take() {
            // Synapse ends within about 50 ms of SIGTERM, even with requests in flight.
            if let Err(error) = process.terminate_blocking(STOP_GRACE) {
                tracing::warn!(%error, "could not kill synapse");
            }
        }
        let failed = std::thread::panicking();
        let keep = failed
            || self.keep_run_dir.load(Ordering::Relaxed)
            || std::env::var_os(KEEP_RUNS_ENV_VAR).is_some_and(|v| !v.is_empty() && v != "0");
        if keep {
            eprintln!(
                "rtc-test-homeserver: {}synapse run dir kept at {} (log: {})",
                if failed { "test failed; " } else { "" },
                self.run_dir.display(),
                self.log_path().display(),
            );
        } else if let Err(error) = std::fs::remove_dir_all(&self.run_dir) {
            tracing::warn!(%error, run_dir = %self.run_dir.display(), "could not delete run dir");
        }
    }
}

/// Spawns Synapse on the config already in `run_dir` and waits until `/versions` answers.
async fn launch(
    http: &reqwest::Client,
    python: &Path,
    run_dir: &Path,
    base_url: &str,
    timeout: Duration,
) -> Result<SynapseProcess> {
    let config_path = run_dir.join("homeserver.yaml");
    let mut process = SynapseProcess::spawn(python, &config_path, run_dir)
        .await
        .map_err(|e| Error::io(format!("spawning {}", python.display()), e))?;
    let deadline = Instant::now() + timeout;
    let url = format!("{base_url}{}", wire::VERSIONS_PATH);
    loop {
        let exited = process
            .try_wait()
            .map_err(|e| Error::io("checking on synapse", e))?;
        if let Some(status) = exited {
            return Err(Error::Exited {
                status: status.to_string(),
                run_dir: run_dir.to_owned(),
                log_tail: log_tail(run_dir),
            });
        }
        let answer = http.get(&url).timeout(Duration::from_secs(2)).send().await;
        if answer.is_ok_and(|answer| answer.status().is_success()) {
            return Ok(process);
        }
        if Instant::now() >= deadline {
            let _ = process.kill();
            return Err(Error::StartTimeout {
                timeout,
                run_dir: run_dir.to_owned(),
                log_tail: log_tail(run_dir),
            });
        }
        tokio::time::sleep(READY_POLL).await;
    }
}

/// The ends of `synapse.out` and `homeserver.log`, for error messages.
fn log_tail(run_dir: &Path) -> String {
    let mut out = String::new();
    for name in [OUTPUT_FILE, LOG_FILE] {
        let path = run_dir.join(name);
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        out.push_str(&format!(
            "==> {} <==\n{}\n",
            path.display(),
            tail(&text, LOG_TAIL_LINES)
        ));
    }
    out
}

/// A port on 127.0.0.1 that was free a moment ago.
pub(crate) fn free_port() -> Result<u16> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .map_err(|e| Error::io("binding 127.0.0.1:0", e))?;
    let port = listener
        .local_addr()
        .map_err(|e| Error::io("reading a local address", e))?
        .port();
    Ok(port)
}

/// Creates `<workspace>/.build/synapse-runs/<label>-<pid>-<n>`.
pub(crate) fn create_run_dir(label: Option<&str>) -> Result<PathBuf> {
    let base = workspace_root().join(".build").join("synapse-runs");
    std::fs::create_dir_all(&base)
        .map_err(|e| Error::io(format!("creating {}", base.display()), e))?;
    let thread = std::thread::current();
    let label = label
        .or_else(|| thread.name().filter(|name| *name != "main"))
        .map(sanitize_label)
        .filter(|label| !label.is_empty())
        .unwrap_or_else(|| "server".to_owned());
    loop {
        let dir = base.join(unique_id(&label));
        match std::fs::create_dir(&dir) {
            // A kept dir of an earlier process with the same pid: take the next number.
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(Error::io(format!("creating {}", dir.display()), e)),
            Ok(()) => return dir.canonicalize().or(Ok(dir)),
        }
    }
}

/// Writes `value` as pretty JSON, which is also valid YAML.
pub(crate) fn write_json(path: &Path, value: &serde_json::Value) -> Result<()> {
    let text = serde_json::to_string_pretty(value).unwrap_or_default();
    std::fs::write(path, text).map_err(|e| Error::io(format!("writing {}", path.display()), e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_can_be_shared_between_tasks() {
        fn assert_send_sync<T: Send + Sync + 'static>() {}
        assert_send_sync::<TestHomeserver>();
        assert_send_sync::<TestUser>();
    }

    #[test]
    fn free_ports_are_on_loopback_and_bindable() {
        let port = free_port().expect("a port");
        assert_ne!(port, 0);
        TcpListener::bind((Ipv4Addr::LOCALHOST, port)).expect("still free");
    }
}
