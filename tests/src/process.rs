//! A process the tests talk to only through its output: a DDS peer or a ROS 2 node, started in a
//! namespace, its stdout and stderr read line by line as they come and each line stamped with the time
//! since the spawn. Dropping it kills it and reaps it.
//!
//! Two kinds of process tree, told apart by [`Stop`]:
//! - the spawned process is the program itself (`ip netns exec` and `stdbuf` exec it): killing it is
//!   enough;
//! - the spawned process is `unshare --pid --fork` and the program is its child, PID 1 of a new PID
//!   namespace (a container, see [`crate::container`]). unshare forwards no signal, and killed first it
//!   would leave its child to the machine's PID 1, which here reaps nothing. So the namespace's PID 1 is
//!   killed first (the kernel then kills everything else in that namespace), unshare reaps it and exits by
//!   itself, and only then is unshare reaped.

use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

/// One line of a peer's output and when it was read, measured from the peer's spawn.
#[derive(Clone, Debug)]
pub struct Line {
    /// Time since the process was spawned.
    pub at: Duration,
    /// The text, without the newline.
    pub text: String,
}

#[derive(Default)]
struct Output {
    lines: Vec<Line>,
    closed: usize,
}

type Shared = Arc<(Mutex<Output>, Condvar)>;

/// How a [`Peer`]'s process tree is stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stop {
    /// The spawned process is the program: kill it.
    Process,
    /// The spawned process is `unshare --pid --fork --kill-child`: kill its child, the namespace's PID 1,
    /// first.
    PidNamespace,
}

/// A process running in a namespace; killed and reaped when dropped.
pub struct Peer {
    label: String,
    ns: String,
    child: Child,
    stop: Stop,
    started: Instant,
    shared: Shared,
    readers: Vec<JoinHandle<()>>,
}

impl std::fmt::Debug for Peer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Peer({} in {}, pid {})", self.label, self.ns, self.child.id())
    }
}

impl Peer {
    /// Spawns `cmd` (stdin closed, stdout and stderr read by this peer). `ns` names where it runs, for
    /// messages only.
    pub fn start(label: &str, ns: &str, mut cmd: Command, stop: Stop) -> Peer {
        cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
        let started = Instant::now();
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {label} ({cmd:?}) in {ns}: {e}"));
        let shared: Shared = Arc::default();
        let stdout = child.stdout.take().expect("stdout");
        let stderr = child.stderr.take().expect("stderr");
        let readers = vec![
            reader(Box::new(stdout), started, shared.clone()),
            reader(Box::new(stderr), started, shared.clone()),
        ];
        Peer {
            label: label.to_string(),
            ns: ns.to_string(),
            child,
            stop,
            started,
            shared,
            readers,
        }
    }

    /// The pid of the spawned process.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// What it is, as given to [`Peer::start`].
    pub fn label(&self) -> &str {
        &self.label
    }

    /// When the process was spawned.
    pub fn started(&self) -> Instant {
        self.started
    }

    /// The pid of the program in the machine's PID namespace: the spawned process, or for
    /// [`Stop::PidNamespace`] its child, the namespace's PID 1, waiting at most `timeout` for unshare to
    /// fork it. `None` if there is none (yet, or any more).
    pub fn program_pid(&self, timeout: Duration) -> Option<u32> {
        match self.stop {
            Stop::Process => Some(self.child.id()),
            Stop::PidNamespace => only_child(self.child.id(), timeout),
        }
    }

    /// True while the spawned process has not exited.
    pub fn running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Waits until a line matches, at most `timeout`; the line if one did.
    pub fn wait_line(&self, matches: impl Fn(&str) -> bool, timeout: Duration) -> Option<Line> {
        let deadline = Instant::now() + timeout;
        let (lock, cvar) = &*self.shared;
        let mut out = lock.lock().expect("output lock");
        let mut seen = 0;
        loop {
            if let Some(line) = out.lines[seen..].iter().find(|l| matches(&l.text)) {
                return Some(line.clone());
            }
            seen = out.lines.len();
            let now = Instant::now();
            if out.closed == 2 || now >= deadline {
                return None;
            }
            out = cvar.wait_timeout(out, deadline - now).expect("output lock").0;
        }
    }

    /// Everything printed so far.
    pub fn lines(&self) -> Vec<Line> {
        self.shared.0.lock().expect("output lock").lines.clone()
    }

    /// Waits for the process to exit, at most `timeout` (then kills it), and collects its output.
    pub fn finish(mut self, timeout: Duration) -> Finished {
        let deadline = Instant::now() + timeout;
        let status = loop {
            match self.child.try_wait() {
                Ok(Some(status)) => break status.code(),
                Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
                _ => break None,
            }
        };
        self.kill();
        Finished {
            label: self.label.clone(),
            ns: self.ns.clone(),
            status,
            lines: self.lines(),
        }
    }

    /// Kills the process tree now and collects its output; the status is `None` if it was still
    /// running.
    pub fn stop(self) -> Finished {
        self.finish(Duration::ZERO)
    }

    fn kill(&mut self) {
        if self.running() && self.stop == Stop::PidNamespace {
            // unshare forks its child right after starting; give it that moment, no more.
            if let Some(init) = only_child(self.child.id(), Duration::from_secs(2)) {
                let _ = kill(Pid::from_raw(init as i32), Signal::SIGKILL);
                let deadline = Instant::now() + Duration::from_secs(5);
                while self.running() && Instant::now() < deadline {
                    std::thread::sleep(Duration::from_millis(5));
                }
            }
        }
        if self.running() {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
        for handle in self.readers.drain(..) {
            let _ = handle.join();
        }
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The one child of `pid` (from /proc/PID/task/PID/children), polled for at most `timeout` while `pid`
/// exists.
pub fn only_child(pid: u32, timeout: Duration) -> Option<u32> {
    let deadline = Instant::now() + timeout;
    loop {
        let text = std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).ok()?;
        if let Some(child) = text.split_whitespace().next().and_then(|c| c.parse().ok()) {
            return Some(child);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn reader(stream: Box<dyn Read + Send>, started: Instant, shared: Shared) -> JoinHandle<()> {
    std::thread::spawn(move || {
        for text in BufReader::new(stream).lines().map_while(Result::ok) {
            let at = started.elapsed();
            let (lock, cvar) = &*shared;
            lock.lock().expect("output lock").lines.push(Line { at, text });
            cvar.notify_all();
        }
        let (lock, cvar) = &*shared;
        lock.lock().expect("output lock").closed += 1;
        cvar.notify_all();
    })
}

/// A peer that has exited (or was killed at its deadline).
#[derive(Clone, Debug)]
pub struct Finished {
    /// What it was ("ddsperf sub", "listener"...).
    pub label: String,
    /// The namespace it ran in.
    pub ns: String,
    /// Exit status; `None` if it had to be killed.
    pub status: Option<i32>,
    /// Its output, stdout and stderr interleaved as read.
    pub lines: Vec<Line>,
}

impl Finished {
    /// Exit status 0.
    pub fn success(&self) -> bool {
        self.status == Some(0)
    }

    /// True if any line contains `text`.
    pub fn printed(&self, text: &str) -> bool {
        self.lines.iter().any(|l| l.text.contains(text))
    }

    /// The output with timestamps, for failure messages.
    pub fn transcript(&self) -> String {
        let status = self
            .status
            .map_or_else(|| "killed at its deadline".to_string(), |s| format!("exit {s}"));
        let mut text = format!("--- {} in {} ({status}):\n", self.label, self.ns);
        for line in &self.lines {
            text.push_str(&format!(
                "  {:>8.1} ms  {}\n",
                line.at.as_secs_f64() * 1000.0,
                line.text
            ));
        }
        text
    }
}
