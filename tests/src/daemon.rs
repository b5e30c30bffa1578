//! Long-running peers a test starts (etcd, kube-apiserver, controllers): output to a log file, stopped on
//! drop (SIGTERM, then SIGKILL after a grace time, then reaped), and killed by the kernel if the test
//! process dies first, so no run leaves one behind.
//!
//! The kernel's parent-death signal (`setpriv --pdeathsig KILL`) fires when the *thread* that spawned the
//! daemon exits: start and drop a daemon on the same test thread, never share one across tests.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

/// A background process with its log.
#[derive(Debug)]
pub struct Daemon {
    name: String,
    child: Option<Child>,
    log: PathBuf,
    grace: Duration,
}

impl Daemon {
    /// Starts `program args` with stdin closed and stdout and stderr appended to `log`.
    pub fn spawn(name: &str, program: &Path, args: &[String], log: &Path) -> Daemon {
        let mut cmd = Command::new("setpriv");
        cmd.args(["--pdeathsig", "KILL", "--"]).arg(program).args(args);
        Daemon::spawn_command(name, cmd, log)
    }

    /// Starts a prepared command (which should itself run under `setpriv --pdeathsig KILL`), logging to `log`.
    pub fn spawn_command(name: &str, mut cmd: Command, log: &Path) -> Daemon {
        let out = File::options()
            .create(true)
            .append(true)
            .open(log)
            .unwrap_or_else(|err| panic!("cannot open {}: {err}", log.display()));
        let err = out.try_clone().expect("clone log handle");
        let child = cmd
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .unwrap_or_else(|err| panic!("cannot start {name} ({cmd:?}): {err}"));
        Daemon {
            name: name.to_string(),
            child: Some(child),
            log: log.to_path_buf(),
            grace: Duration::from_secs(5),
        }
    }

    /// How long [`Daemon::stop`] waits after SIGTERM before SIGKILL (5 s unless changed).
    pub fn with_grace(mut self, grace: Duration) -> Daemon {
        self.grace = grace;
        self
    }

    /// The name given at start.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The process id while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// The log file.
    pub fn log(&self) -> &Path {
        &self.log
    }

    /// Whether the process is still running (reaps it if it exited).
    pub fn running(&mut self) -> bool {
        self.child.as_mut().is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// The last `lines` lines of the log, for failure messages.
    pub fn log_tail(&self, lines: usize) -> String {
        log_tail(&self.log, lines)
    }

    /// Stops the process: SIGTERM, SIGKILL after the grace time, and waits for it. Idempotent.
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        if matches!(child.try_wait(), Ok(Some(_))) {
            return;
        }
        let pid = Pid::from_raw(child.id() as i32);
        let _ = kill(pid, Signal::SIGTERM);
        let deadline = Instant::now() + self.grace;
        while Instant::now() < deadline {
            if matches!(child.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = child.kill();
        let _ = child.wait();
    }
}

/// The last `lines` lines of a log file (empty when it cannot be read), for failure messages.
pub fn log_tail(log: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.stop();
    }
}
