//! Real ROS 2 nodes in containers ([`crate::container`]): the seed's talker and listener
//! (`manifests/examples/scripts/publisher.py` and `subscriber.py`, run unmodified, topic
//! `microk8s_chatter`) on rclpy with Fast DDS (`rmw_fastrtps_cpp`, ROS 2's default middleware) from the
//! pinned PyPI wheels; and, for Cyclone DDS, which has no ROS 2 wheel, `tests/dds/chatter.py --tag` on
//! PyPI `cyclonedds`, which sends the same topic, type and message text.
//!
//! Every talker sends `TAG:HOSTNAME:PID: COUNT` (HOSTNAME is the pod's name, PID is 1 in a container);
//! the listener prints each message it hears, so [`parse_heard`] tells which talker, in which pod, it
//! came from. A [`Chat`] starts one listener and any number of talkers and records, per talker, whether
//! and when the listener heard it.
//!
//! No DDS configuration: a container's environment holds only `PATH`, `HOME`, what rclpy needs to log
//! unbuffered, and what a test passes explicitly (only the IPv6 transport, which no CNI plugin can
//! choose). The domain is 0 (`ROS_DOMAIN_ID` unset): every test has namespaces and `/dev/shm`s of its own,
//! so tests running at the same time never meet.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use crate::container::Sandbox;
use crate::dds::{chatter_script, namespace_state, venv_python};
use crate::process::{Finished, Peer};

/// Fast DDS' environment variable for its transports; `UDPv6` is the IPv6 counterpart of Cyclone's
/// `udp6` (Fast DDS speaks UDPv4 and shared memory unless told otherwise).
pub const FASTDDS_UDPV6: (&str, &str) = ("FASTDDS_BUILTIN_TRANSPORTS", "UDPv6");

/// The DDS implementation under the nodes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Middleware {
    /// rclpy on `rmw_fastrtps_cpp` (Fast DDS 3.2), the seed's scripts.
    FastDds,
    /// `tests/dds/chatter.py` on PyPI `cyclonedds` 11.
    Cyclone,
}

impl Middleware {
    /// For tables and messages.
    pub fn name(self) -> &'static str {
        match self {
            Middleware::FastDds => "ROS 2 (rclpy, Fast DDS)",
            Middleware::Cyclone => "Cyclone DDS (chatter.py)",
        }
    }
}

/// The directory of the seed's scripts, `manifests/examples/scripts`.
pub fn scripts_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../manifests/examples/scripts");
    assert!(
        dir.join("publisher.py").is_file(),
        "{} has no publisher.py",
        dir.display()
    );
    dir
}

/// The venv's Python, checked once to have rclpy, std_msgs and `rmw_fastrtps_cpp`; panics
/// with the fix when it cannot.
pub fn ros_python() -> PathBuf {
    static CHECKED: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    CHECKED
        .get_or_init(|| {
            let python = venv_python();
            // Found, not imported: loading rclpy's libraries here, in the machine's mount namespace, would
            // leave LTTng's files in the machine's /dev/shm. The nodes import it in their containers.
            let probe = "import os, sys, importlib.util as u\n\
                 for m in ('rclpy', 'std_msgs.msg'): assert u.find_spec(m), m + ' is missing'\n\
                 lib = os.path.join(sys.prefix, 'lib', 'librmw_fastrtps_cpp.so')\n\
                 assert os.path.isfile(lib), lib + ' is missing'";
            let out = Command::new(&python)
                .args(["-c", probe])
                .output()
                .map_err(|e| format!("cannot run {}: {e}", python.display()))?;
            if out.status.success() {
                Ok(python)
            } else {
                Err(format!(
                    "{} has no rclpy with rmw_fastrtps_cpp ({}): run `make venv` (it installs \
                     tests/requirements-ros.txt)",
                    python.display(),
                    String::from_utf8_lossy(&out.stderr).trim()
                ))
            }
        })
        .clone()
        .unwrap_or_else(|err| panic!("{err}"))
}

/// Fails at once, with the fix, unless both kinds of node can run.
pub fn require_nodes() {
    ros_python();
    chatter_script();
    scripts_dir();
}

/// A talker in `pod`, as container `tag`.
pub fn talker(middleware: Middleware, pod: &Sandbox, tag: &str, env: &[(&str, &str)]) -> Peer {
    node(middleware, pod, tag, "talker", env)
}

/// A listener in `pod`, as container `tag`.
pub fn listener(middleware: Middleware, pod: &Sandbox, tag: &str, env: &[(&str, &str)]) -> Peer {
    node(middleware, pod, tag, "listener", env)
}

fn node(middleware: Middleware, pod: &Sandbox, tag: &str, role: &str, env: &[(&str, &str)]) -> Peer {
    let python = match middleware {
        Middleware::FastDds => ros_python(),
        Middleware::Cyclone => venv_python(),
    };
    let home = pod.container_dir(tag);
    let ros_home = home.join(".ros");
    let mut full: Vec<(&str, &str)> = vec![
        ("PYTHONUNBUFFERED", "1"),
        ("RCUTILS_LOGGING_BUFFERED_STREAM", "0"),
        ("RMW_IMPLEMENTATION", "rmw_fastrtps_cpp"),
        ("ROS_HOME", ros_home.to_str().expect("utf-8")),
    ];
    full.extend_from_slice(env);
    match middleware {
        Middleware::FastDds => {
            let script = scripts_dir().join(if role == "talker" {
                "publisher.py"
            } else {
                "subscriber.py"
            });
            pod.container(tag, &python, &[script.to_str().expect("utf-8"), tag], &full)
        }
        Middleware::Cyclone => {
            // Sends until killed (10 Hz once matched) and listens until killed; the Chat decides when.
            let script = chatter_script();
            let args = [
                script.to_str().expect("utf-8"),
                role,
                "--tag",
                tag,
                "--count",
                "1000000",
                "--timeout",
                "3600",
            ];
            pod.container(tag, &python, &args, &full)
        }
    }
}

/// A message as the talkers send it, `TAG:HOSTNAME:PID: COUNT`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message {
    /// The talker's tag (`t1`).
    pub tag: String,
    /// Its pod's name.
    pub host: String,
    /// Its PID (1: PID 1 of its container).
    pub pid: u32,
    /// Its counter.
    pub count: u64,
}

/// The message a listener's output line reports, if it reports one: the seed's listener logs
/// `[INFO] [<time>] [listener_l1]: l1:l:1: "t1:t:1: 7"` (rclpy's logger), the chatter prints
/// `listener: I heard: 't1:t:1: 7'`.
pub fn parse_heard(line: &str) -> Option<Message> {
    let payload = if let Some(rest) = line.strip_prefix("listener: I heard: '") {
        rest.strip_suffix('\'')?
    } else {
        let (_, rest) = line.split_once("]: ")?;
        let (_, quoted) = rest.split_once(": \"")?;
        quoted.strip_suffix('"')?
    };
    let mut parts = payload.splitn(3, ':');
    let (tag, host, rest) = (parts.next()?, parts.next()?, parts.next()?);
    let (pid, count) = rest.split_once(": ")?;
    Some(Message {
        tag: tag.to_string(),
        host: host.to_string(),
        pid: pid.parse().ok()?,
        count: count.trim().parse().ok()?,
    })
}

/// True when a talker's line shows it is up: the seed's talker logs each `publishing ...`; the chatter
/// prints `talker: ready` once its writer exists (it publishes only once matched).
fn talker_up(line: &str) -> bool {
    line.contains("]: publishing ") || line == "talker: ready"
}

/// The UDP sockets the process `pid` holds in `ns`, as `ss -Hulpn` lists them (`UNCONN 0 0
/// 0.0.0.0:7400 0.0.0.0:* users:(("python",pid=..,fd=..))`).
pub fn udp_sockets(ns: &str, pid: u32) -> Vec<String> {
    let out = Command::new("ip")
        .args(["netns", "exec", ns, "ss", "-Hulpn"])
        .output()
        .expect("run ss");
    let owner = format!("pid={pid},");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.contains(&owner))
        .map(str::to_string)
        .collect()
}

/// True if one of `sockets` ([`udp_sockets`]) is on the DDS discovery port of domain 0 (7400): the
/// process's participant exists. Works for any DDS and needs nothing printed.
pub fn has_participant(sockets: &[String]) -> bool {
    sockets
        .iter()
        .any(|l| l.split_whitespace().any(|f| f.ends_with(":7400")))
}

/// One listener and its talkers, each a container in a pod, all started at once (the listener first,
/// once its participant exists).
pub struct Chat<'a> {
    /// Fast DDS or Cyclone.
    pub middleware: Middleware,
    /// The listener's pod and tag.
    pub listener: (&'a Sandbox, &'a str),
    /// Each talker's pod and tag.
    pub talkers: Vec<(&'a Sandbox, &'a str)>,
    /// Added to every node's environment (IPv6 transports only).
    pub env: Vec<(&'a str, &'a str)>,
    /// The run ends early once the listener heard this many messages from every talker.
    pub enough: usize,
    /// Otherwise it ends this long after the last talker is up: a Fast DDS participant re-announces
    /// itself every 3 s, so 6 s covers two announcements after every node exists.
    pub window: Duration,
}

impl<'a> Chat<'a> {
    /// A chat with the defaults (2 messages from each talker, 6 s window).
    pub fn new(
        middleware: Middleware,
        listener: (&'a Sandbox, &'a str),
        talkers: Vec<(&'a Sandbox, &'a str)>,
    ) -> Chat<'a> {
        Chat {
            middleware,
            listener,
            talkers,
            env: Vec::new(),
            enough: 2,
            window: Duration::from_secs(6),
        }
    }

    /// Runs it; everything it started is stopped and reaped before it returns.
    pub fn run(&self) -> ChatOutcome {
        const START_LIMIT: Duration = Duration::from_secs(30);
        let mut notes = Vec::new();
        let (lpod, ltag) = self.listener;
        let listener = listener(self.middleware, lpod, ltag, &self.env);
        let t0 = listener.started();
        let pid = listener.program_pid(Duration::from_secs(2));
        let sockets = || pid.map(|pid| udp_sockets(lpod.netns(), pid)).unwrap_or_default();
        let ready = loop {
            if has_participant(&sockets()) {
                break Some(t0.elapsed());
            }
            if t0.elapsed() > START_LIMIT {
                notes.push(format!(
                    "the listener had no DDS participant after {} s",
                    START_LIMIT.as_secs()
                ));
                break None;
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let talkers: Vec<Peer> = self
            .talkers
            .iter()
            .map(|(pod, tag)| talker(self.middleware, pod, tag, &self.env))
            .collect();
        let hard_limit = Instant::now() + START_LIMIT + self.window;
        loop {
            std::thread::sleep(Duration::from_millis(50));
            let heard = heard_messages(&listener.lines());
            if self
                .talkers
                .iter()
                .all(|(_, tag)| heard.iter().filter(|(m, _)| &m.tag == tag).count() >= self.enough)
            {
                break;
            }
            let ups: Vec<Option<Instant>> = talkers
                .iter()
                .map(|t| {
                    t.lines()
                        .iter()
                        .find(|l| talker_up(&l.text))
                        .map(|l| t.started() + l.at)
                })
                .collect();
            if ups.iter().all(Option::is_some)
                && ups
                    .iter()
                    .flatten()
                    .max()
                    .is_some_and(|last| last.elapsed() > self.window)
            {
                break;
            }
            if Instant::now() > hard_limit {
                notes.push("not every talker was up within 30 s".to_string());
                break;
            }
        }
        let listener_sockets = sockets();
        let talker_starts: Vec<Instant> = talkers.iter().map(Peer::started).collect();
        let talkers: Vec<Finished> = talkers.into_iter().map(Peer::stop).collect();
        let listener = listener.stop();
        let heard = heard_messages(&listener.lines);
        let outcomes = self
            .talkers
            .iter()
            .zip(talkers)
            .zip(talker_starts)
            .map(|(((pod, tag), finished), started)| {
                let spawned = started.saturating_duration_since(t0);
                let mine: Vec<&(Message, Duration)> = heard.iter().filter(|(m, _)| &m.tag == tag).collect();
                TalkerOutcome {
                    tag: tag.to_string(),
                    pod: pod.name().to_string(),
                    up: finished.lines.iter().find(|l| talker_up(&l.text)).map(|l| l.at),
                    heard: mine.len(),
                    first: mine.first().map(|(_, at)| at.saturating_sub(spawned)),
                    finished,
                }
            })
            .collect();
        let mut namespaces: Vec<String> = std::iter::once(lpod.netns())
            .chain(self.talkers.iter().map(|(p, _)| p.netns()))
            .map(str::to_string)
            .collect();
        namespaces.sort();
        namespaces.dedup();
        ChatOutcome {
            middleware: self.middleware,
            listener_ready: ready,
            listener_sockets,
            listener,
            talkers: outcomes,
            notes,
            namespaces,
        }
    }
}

/// `t1 1.2 s, t2 1.4 s` for the talkers heard first after those times, or `none`.
pub fn heard_summary<'a>(talkers: impl Iterator<Item = (&'a str, Option<Duration>)>) -> String {
    let heard: Vec<String> = talkers
        .filter_map(|(tag, first)| first.map(|f| format!("{tag} {:.1} s", f.as_secs_f64())))
        .collect();
    if heard.is_empty() {
        "none".to_string()
    } else {
        heard.join(", ")
    }
}

/// Every message in a listener's output with when it was printed (since the listener's spawn).
fn heard_messages(lines: &[crate::process::Line]) -> Vec<(Message, Duration)> {
    lines
        .iter()
        .filter_map(|l| parse_heard(&l.text).map(|m| (m, l.at)))
        .collect()
}

/// What one talker of a [`Chat`] did.
#[derive(Debug)]
pub struct TalkerOutcome {
    /// Its tag.
    pub tag: String,
    /// Its pod.
    pub pod: String,
    /// When it was up (first `publishing`, or `ready`), since its spawn.
    pub up: Option<Duration>,
    /// How many of its messages the listener heard.
    pub heard: usize,
    /// When the listener heard its first message, since the talker's spawn.
    pub first: Option<Duration>,
    /// Its output.
    pub finished: Finished,
}

/// The result of a [`Chat`].
#[derive(Debug)]
pub struct ChatOutcome {
    /// What ran.
    pub middleware: Middleware,
    /// When the listener's participant existed, since its spawn.
    pub listener_ready: Option<Duration>,
    /// The listener's UDP sockets at the end of the run ([`udp_sockets`]): which transports it used.
    pub listener_sockets: Vec<String>,
    /// The listener's output.
    pub listener: Finished,
    /// Per talker, in the order given.
    pub talkers: Vec<TalkerOutcome>,
    /// Remarks from the run itself (a node that did not come up).
    pub notes: Vec<String>,
    namespaces: Vec<String>,
}

impl ChatOutcome {
    /// The tags of the talkers the listener heard at least once, in the order given.
    pub fn heard(&self) -> Vec<&str> {
        self.talkers
            .iter()
            .filter(|t| t.heard > 0)
            .map(|t| t.tag.as_str())
            .collect()
    }

    /// True if every node came up (the listener's participant existed and every talker was up): only
    /// then does hearing nothing mean the network carried nothing.
    pub fn all_up(&self) -> bool {
        self.listener_ready.is_some() && self.talkers.iter().all(|t| t.up.is_some())
    }

    /// Panics, with [`ChatOutcome::report`], unless every node came up and the listener heard exactly
    /// the talkers `want`.
    pub fn assert_heard(&self, want: &[&str], context: &str) {
        if !self.all_up() || self.heard() != want {
            panic!(
                "{context} ({}): expected the listener to hear {want:?}, it heard {:?}\n{}",
                self.middleware.name(),
                self.heard(),
                self.report()
            );
        }
    }

    /// One line: who was heard and when, e.g. `t1 1.2 s, t2 1.4 s` or `none`.
    pub fn summary(&self) -> String {
        let mut text = heard_summary(self.talkers.iter().map(|t| (t.tag.as_str(), t.first)));
        if !self.all_up() {
            text.push_str(" (a node did not come up)");
        }
        text
    }

    /// Transcripts of every node, the notes and the namespaces' links and routes.
    pub fn report(&self) -> String {
        let mut text = String::new();
        for note in &self.notes {
            let _ = writeln!(text, "note: {note}");
        }
        let ready = self
            .listener_ready
            .map_or("never".to_string(), |r| format!("{:.0} ms", r.as_secs_f64() * 1000.0));
        let _ = writeln!(text, "listener participant after {ready}; its UDP sockets at the end:");
        for socket in &self.listener_sockets {
            let _ = writeln!(text, "  {socket}");
        }
        for t in &self.talkers {
            let _ = writeln!(
                text,
                "talker {} in pod {}: up {:?}, heard {} times, first {:?}",
                t.tag, t.pod, t.up, t.heard, t.first
            );
        }
        text.push_str(&self.listener.transcript());
        for t in &self.talkers {
            text.push_str(&t.finished.transcript());
        }
        for ns in &self.namespaces {
            text.push_str(&namespace_state(ns));
        }
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listener_lines_of_both_kinds_parse() {
        let ros = r#"[INFO] [1796412365.632122953] [listener_l1]: l1:podA:1: "t1:podA:1: 0""#;
        let want = Message {
            tag: "t1".into(),
            host: "podA".into(),
            pid: 1,
            count: 0,
        };
        assert_eq!(parse_heard(ros), Some(want.clone()));
        assert_eq!(parse_heard("listener: I heard: 't1:podA:1: 0'"), Some(want));
        assert_eq!(parse_heard("[INFO] [1.0] [talker_t1]: publishing t1:podA:1: 0"), None);
        assert_eq!(parse_heard("listener: I heard: 'Hello World: 3'"), None);
        assert!(talker_up("[INFO] [1.0] [talker_t1]: publishing t1:podA:1: 0"));
        assert!(talker_up("talker: ready"));
    }
}
