//! The Synapse child process (and the JWT service stand-in's): spawned so that it dies with the
//! test process, ended by its pid.
//!
//! Every Synapse is spawned from one long-lived thread of our own, with `PR_SET_PDEATHSIG`
//! set in the child. Linux sends that signal when the *thread* that spawned the child ends, so
//! spawning from a tokio worker or a test thread would kill the server when that thread ends; our
//! spawner thread lives as long as the process, so the server dies exactly when the test process
//! does (a nextest timeout, a SIGKILL, a panic that aborts), leaving no orphan behind.

use std::fs::OpenOptions;
use std::io;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::OnceLock;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

/// Synapse's stdout and stderr (startup errors land here, before logging is set up).
pub(crate) const OUTPUT_FILE: &str = "synapse.out";

/// How often a stopping process is checked for exit.
const EXIT_POLL: Duration = Duration::from_millis(10);

type SpawnJob = (Command, oneshot::Sender<io::Result<Child>>);

/// The spawner thread's queue, or why the thread could not be started.
static SPAWNER: OnceLock<Result<mpsc::Sender<SpawnJob>, String>> = OnceLock::new();

fn spawner() -> io::Result<&'static mpsc::Sender<SpawnJob>> {
    let spawner = SPAWNER.get_or_init(|| {
        let (sender, receiver) = mpsc::channel::<SpawnJob>();
        std::thread::Builder::new()
            .name("rtc-test-homeserver-spawner".to_owned())
            .spawn(move || {
                // Runs for the whole life of the process: the static sender is never dropped.
                for (mut command, reply) in receiver {
                    // When the caller gave up waiting (its future was dropped), nobody owns
                    // the child: end it here.
                    if let Err(Ok(mut orphan)) = reply.send(command.spawn()) {
                        let _ = orphan.kill();
                        let _ = orphan.wait();
                    }
                }
            })
            .map(|_| sender)
            .map_err(|e| format!("could not start the spawner thread: {e}"))
    });
    spawner.as_ref().map_err(|e| io::Error::other(e.clone()))
}

/// A running (or exited but not yet reaped) Synapse. Dropping it kills the process (SIGKILL) and
/// reaps it.
#[derive(Debug)]
pub(crate) struct SynapseProcess {
    child: Option<Child>,
}

impl SynapseProcess {
    /// Starts `python -m synapse.app.homeserver -c <config>` in `run_dir`, with its output
    /// appended to [`OUTPUT_FILE`].
    pub(crate) async fn spawn(python: &Path, config: &Path, run_dir: &Path) -> io::Result<Self> {
        let mut command = Command::new(python);
        command
            .args(["-m", "synapse.app.homeserver", "-c"])
            .arg(config);
        Self::spawn_command(command, run_dir, OUTPUT_FILE).await
    }

    /// Starts `command` in `run_dir` (the JWT service stand-in uses this too), with its output
    /// appended to `output_file` there, dying with the test process like Synapse.
    pub(crate) async fn spawn_command(
        mut command: Command,
        run_dir: &Path,
        output_file: &str,
    ) -> io::Result<Self> {
        let output = OpenOptions::new()
            .create(true)
            .append(true)
            .open(run_dir.join(output_file))?;
        command
            .current_dir(run_dir)
            .stdin(Stdio::null())
            .stdout(output.try_clone()?)
            .stderr(output);
        let parent = std::process::id();
        // SAFETY: the closure runs in the forked child before exec, where only async-signal-safe
        // calls are allowed. `die_with_parent` makes two system calls (prctl, getppid) and builds
        // errors without allocating.
        unsafe {
            command.pre_exec(move || die_with_parent(parent));
        }
        let (reply, answer) = oneshot::channel();
        spawner()?
            .send((command, reply))
            .map_err(|_| io::Error::other("the spawner thread has ended"))?;
        let child = answer
            .await
            .map_err(|_| io::Error::other("the spawner thread has ended"))??;
        Ok(Self { child: Some(child) })
    }

    /// The process id, while the process is not reaped.
    pub(crate) fn id(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// `Some(status)` once the process has exited (it is then reaped).
    pub(crate) fn try_wait(&mut self) -> io::Result<Option<ExitStatus>> {
        let Some(child) = self.child.as_mut() else {
            return Ok(None);
        };
        let status = child.try_wait()?;
        if status.is_some() {
            self.child = None;
        }
        Ok(status)
    }

    /// Asks the process to stop (SIGTERM), waits up to `grace` for it to exit, then kills it
    /// (SIGKILL). Returns how it ended, or `None` when it was already reaped.
    pub(crate) async fn terminate(&mut self, grace: Duration) -> io::Result<Option<ExitStatus>> {
        let Some(child) = self.child.as_mut() else {
            return Ok(None);
        };
        if child.try_wait()?.is_none() {
            send_sigterm(child.id())?;
            let deadline = Instant::now() + grace;
            while Instant::now() < deadline {
                if let Some(status) = child.try_wait()? {
                    self.child = None;
                    return Ok(Some(status));
                }
                tokio::time::sleep(EXIT_POLL).await;
            }
            tracing::warn!(
                pid = child.id(),
                ?grace,
                "synapse ignored SIGTERM; killing it"
            );
        }
        self.kill()
    }

    /// [`terminate`](Self::terminate) for places without a runtime (`Drop`): blocks the thread
    /// while it waits.
    pub(crate) fn terminate_blocking(&mut self, grace: Duration) -> io::Result<Option<ExitStatus>> {
        let Some(child) = self.child.as_mut() else {
            return Ok(None);
        };
        if child.try_wait()?.is_none() {
            send_sigterm(child.id())?;
            let deadline = Instant::now() + grace;
            while Instant::now() < deadline {
                if let Some(status) = child.try_wait()? {
                    self.child = None;
                    return Ok(Some(status));
                }
                std::thread::sleep(EXIT_POLL);
            }
            tracing::warn!(
                pid = child.id(),
                ?grace,
                "synapse ignored SIGTERM; killing it"
            );
        }
        self.kill()
    }

    /// Kills the process (SIGKILL) and reaps it; blocks only for the kernel to end it.
    pub(crate) fn kill(&mut self) -> io::Result<Option<ExitStatus>> {
        let Some(mut child) = self.child.take() else {
            return Ok(None);
        };
        if let Some(status) = child.try_wait()? {
            return Ok(Some(status));
        }
        child.kill()?;
        child.wait().map(Some)
    }
}

impl Drop for SynapseProcess {
    fn drop(&mut self) {
        if let Err(error) = self.kill() {
            tracing::warn!(%error, "could not kill synapse");
        }
    }
}

/// Sends SIGTERM to our own, not yet reaped, child: its pid cannot have been reused.
fn send_sigterm(pid: u32) -> io::Result<()> {
    let pid = libc::pid_t::try_from(pid).map_err(io::Error::other)?;
    // SAFETY: kill(2) has no memory-safety preconditions.
    if unsafe { libc::kill(pid, libc::SIGTERM) } == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// In the child, before exec: have the kernel SIGKILL us when the spawner thread (and so the
/// test process) ends, and give up if the parent already ended before the request took effect.
fn die_with_parent(parent: u32) -> io::Result<()> {
    let signal = libc::c_ulong::try_from(libc::SIGKILL).unwrap_or(9);
    // SAFETY: prctl(PR_SET_PDEATHSIG) only sets a flag on the calling process.
    if unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, signal) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: getppid(2) has no preconditions.
    let current_parent = unsafe { libc::getppid() };
    if u32::try_from(current_parent).ok() != Some(parent) {
        return Err(io::Error::from_raw_os_error(libc::ESRCH));
    }
    Ok(())
}
