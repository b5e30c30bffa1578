//! Running another program and giving up on it at a deadline: an IPAM delegate, the installed plugin
//! the doctor checks, a copy the installer proves before renaming it into place.
//!
//! Every caller runs a program it does not control (a delegate waiting for an API server that is gone,
//! a truncated copy, a binary for another architecture), so none may hang on it. One implementation
//! also means one answer to the awkward cases: both pipes are drained while the child runs (a chatty
//! child never blocks on a full pipe), only the first [`MAX_STDOUT`] / [`MAX_STDERR`] bytes are kept (a
//! child printing without end must not grow its caller without end), and a child still running at
//! the deadline is killed and reaped through its own handle, never by a pid that may have been reused.

use std::io::{Read, Write};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::Value;

/// The most of a child's stdout kept: a CNI result, like a configuration, is a few KiB, and a plugin
/// accepts at most this much on stdin.
pub const MAX_STDOUT: u64 = crate::cni::env::MAX_STDIN as u64;
/// The most of a child's stderr kept.
pub const MAX_STDERR: u64 = 1 << 20;

/// What a child left behind when it ended before its deadline.
#[derive(Debug)]
pub struct Output {
    /// How it ended.
    pub status: ExitStatus,
    /// The first [`MAX_STDOUT`] bytes of its stdout.
    pub stdout: Vec<u8>,
    /// Whether it printed more than that.
    pub stdout_cut: bool,
    /// The first [`MAX_STDERR`] bytes of its stderr.
    pub stderr: Vec<u8>,
}

/// Why a child gave no [`Output`]. Each caller words these for its own reader (the delegate as a CNI
/// error, the doctor as a finding, the installer as a rejected copy), so they carry facts, not prose.
#[derive(Debug, thiserror::Error)]
pub enum ChildError {
    /// It could not be started.
    #[error("{0}")]
    Spawn(std::io::Error),
    /// Waiting for it failed.
    #[error("{0}")]
    Wait(std::io::Error),
    /// It was still running at the deadline, and has been killed.
    #[error("no answer within {} s", .0.as_secs())]
    Deadline(Duration),
}

/// Runs `command` with `stdin` (none: `/dev/null`) and waits at most `deadline` for it to end.
///
/// The command's environment and arguments are the caller's; its three standard streams are set here.
pub fn run_with_deadline(
    command: &mut Command,
    stdin: Option<&[u8]>,
    deadline: Duration,
) -> Result<Output, ChildError> {
    let until = Instant::now() + deadline;
    command
        .stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = spawn(command).map_err(ChildError::Spawn)?;
    if let (Some(mut pipe), Some(bytes)) = (child.stdin.take(), stdin) {
        // On a thread of its own: a child that prints before it reads must not wait for us to read
        // while we wait for it to read. A child may exit without reading; the EPIPE is no failure.
        let bytes = bytes.to_vec();
        std::thread::spawn(move || {
            let _ = pipe.write_all(&bytes);
        });
    }
    let (tx, rx) = mpsc::channel();
    let (out_pipe, err_pipe) = (child.stdout.take(), child.stderr.take());
    let out_tx = tx.clone();
    std::thread::spawn(move || {
        let _ = out_tx.send((true, out_pipe.map(|p| keep_first(p, MAX_STDOUT)).unwrap_or_default()));
    });
    std::thread::spawn(move || {
        let _ = tx.send((false, err_pipe.map(|p| keep_first(p, MAX_STDERR)).unwrap_or_default()));
    });
    let (mut stdout, mut stderr) = ((Vec::new(), false), Vec::new());
    for _ in 0..2 {
        match rx.recv_timeout(until.saturating_duration_since(Instant::now())) {
            Ok((true, kept)) => stdout = kept,
            Ok((false, (kept, _))) => stderr = kept,
            // A reader left blocked (a grandchild holding the pipe) ends with this process.
            Err(_) => return Err(kill(&mut child, deadline)),
        }
    }
    // Both pipes are closed: the child has exited, or is about to (its files close before it becomes
    // a zombie), or closed them and runs on, which the deadline still bounds.
    let mut pause = Duration::from_micros(50);
    loop {
        match child.try_wait() {
            Ok(Some(status)) => {
                return Ok(Output {
                    status,
                    stdout: stdout.0,
                    stdout_cut: stdout.1,
                    stderr,
                });
            }
            Ok(None) if Instant::now() >= until => return Err(kill(&mut child, deadline)),
            Ok(None) => {
                std::thread::sleep(pause);
                pause = (pause * 2).min(Duration::from_millis(10));
            }
            Err(err) => return Err(ChildError::Wait(err)),
        }
    }
}

/// A binary's answer to CNI VERSION.
#[derive(Debug)]
pub struct VersionAnswer {
    /// How it ran.
    pub output: Output,
    /// Its stdout as JSON, or why it is not.
    pub reply: Result<Value, serde_json::Error>,
}

impl VersionAnswer {
    /// The `supportedVersions` it lists (empty when it lists none or its reply is not JSON).
    pub fn supported(&self) -> Vec<String> {
        self.reply
            .as_ref()
            .ok()
            .and_then(|reply| reply.get("supportedVersions"))
            .and_then(Value::as_array)
            .map(|list| list.iter().filter_map(Value::as_str).map(str::to_string).collect())
            .unwrap_or_default()
    }

    /// Its stdout as text, for messages.
    pub fn stdout_text(&self) -> String {
        String::from_utf8_lossy(&self.output.stdout).into_owned()
    }
}

/// Asks the binary at `path` its CNI VERSION as a runtime does: nothing in the environment but
/// `CNI_COMMAND=VERSION`, a configuration naming a version on stdin, at most `deadline` to answer.
pub fn ask_version(path: &Path, deadline: Duration) -> Result<VersionAnswer, ChildError> {
    let mut command = Command::new(path);
    command.env_clear().env("CNI_COMMAND", "VERSION");
    let output = run_with_deadline(&mut command, Some(br#"{"cniVersion":"1.0.0"}"#), deadline)?;
    let reply = serde_json::from_slice(&output.stdout);
    Ok(VersionAnswer { output, reply })
}

/// Kills a child that outlived its deadline and reaps it.
fn kill(child: &mut Child, deadline: Duration) -> ChildError {
    let _ = child.kill();
    let _ = child.wait();
    ChildError::Deadline(deadline)
}

/// Starts `command`. ETXTBSY is retried briefly: a file that was just written can still be open for
/// writing in a child that another thread forked before the writer closed it (that child closes it at
/// its own exec, microseconds later); the installer runs every copy it writes at once.
fn spawn(command: &mut Command) -> std::io::Result<Child> {
    const ETXTBSY: i32 = nix::errno::Errno::ETXTBSY as i32;
    let mut attempts = 0;
    loop {
        match command.spawn() {
            Err(err) if err.raw_os_error() == Some(ETXTBSY) && attempts < 50 => {
                attempts += 1;
                std::thread::sleep(Duration::from_millis(10));
            }
            other => return other,
        }
    }
}

/// Reads `pipe` to its end and keeps the first `limit` bytes; `true` when more came.
fn keep_first(mut pipe: impl Read, limit: u64) -> (Vec<u8>, bool) {
    let mut kept = Vec::new();
    let _ = (&mut pipe).take(limit).read_to_end(&mut kept);
    let rest = std::io::copy(&mut pipe, &mut std::io::sink()).unwrap_or(0);
    (kept, rest > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sh(script: &str) -> Command {
        let mut command = Command::new("/bin/sh");
        command.arg("-c").arg(script);
        command
    }

    #[test]
    fn output_and_status_come_back() {
        let out = run_with_deadline(
            &mut sh("cat; echo err >&2; exit 3"),
            Some(b"in"),
            Duration::from_secs(10),
        )
        .unwrap();
        assert_eq!(out.status.code(), Some(3));
        assert_eq!(out.stdout, b"in");
        assert_eq!(out.stderr, b"err\n");
        assert!(!out.stdout_cut);
    }

    #[test]
    fn a_child_past_its_deadline_is_killed() {
        let start = Instant::now();
        let err = run_with_deadline(&mut sh("exec sleep 30"), None, Duration::from_millis(200)).unwrap_err();
        assert!(matches!(err, ChildError::Deadline(_)), "{err:?}");
        assert!(start.elapsed() < Duration::from_secs(5));
    }

    #[test]
    fn a_child_that_closes_its_pipes_and_runs_on_is_still_bounded() {
        let start = Instant::now();
        let err = run_with_deadline(
            &mut sh("exec >&- 2>&-; exec sleep 30"),
            None,
            Duration::from_millis(200),
        )
        .unwrap_err();
        assert!(matches!(err, ChildError::Deadline(_)), "{err:?}");
        assert!(start.elapsed() < Duration::from_secs(5));
    }

    #[test]
    fn endless_output_is_cut() {
        let out = run_with_deadline(
            &mut sh(&format!("head -c {} /dev/zero", MAX_STDOUT + 10)),
            None,
            Duration::from_secs(20),
        )
        .unwrap();
        assert!(out.stdout_cut);
        assert_eq!(out.stdout.len() as u64, MAX_STDOUT);
    }

    #[test]
    fn a_missing_program_is_a_spawn_error() {
        let err =
            run_with_deadline(&mut Command::new("/nonexistent/roslan"), None, Duration::from_secs(1)).unwrap_err();
        assert!(matches!(err, ChildError::Spawn(_)), "{err:?}");
    }
}
