//! Real DDS peers inside the test namespaces: Debian's `ddsperf` (Cyclone DDS 0.10) and a ROS 2 style
//! talker/listener on PyPI `cyclonedds` 11 (`tests/dds/chatter.py`), plus the DDS discovery benchmark.
//!
//! Every peer runs with zero DDS configuration: `CYCLONEDDS_URI` (and `ROS_DOMAIN_ID`) are removed from
//! its environment, so what it does depends only on the namespace roslan (or the reference plugins)
//! built. The only exception is [`UDP6_URI`], which the IPv6 topology needs and says so.
//!
//! Each peer is a [`Peer`] (see [`crate::peer`]) started with `ip netns exec`, so it works from any
//! namespace the caller is in (the benchmark's main thread lives in the node namespace). Its output is
//! read line by line as it comes (ddsperf under `stdbuf -oL`, Python with `-u`). `ip netns exec` and
//! `stdbuf` exec the program, so the child is the DDS process itself. These peers share the machine's
//! mount namespace: fine for Cyclone, which uses no shared memory by default; the ROS 2 nodes on Fast
//! DDS run in containers instead ([`crate::ros2`]).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use serde_json::{Value, json};

use crate::bench::{Stats, round};
use crate::lan::{Lan, MASTER, Pod, SUBNET};
use crate::netns::{Netns, try_sh};
use crate::plugin::{Call, Reference};
use crate::process::{Finished, Line, Peer, Stop};

/// The one piece of DDS configuration the tests use: Cyclone speaks IPv4 unless its transport is set to
/// `udp6`, and no CNI plugin can choose that for it. Nothing else (interface, addresses, peers) is set.
pub const UDP6_URI: &str = "<CycloneDDS><Domain><General><Transport>udp6</Transport></General></Domain></CycloneDDS>";

/// Environment variables that would configure DDS behind the test's back; removed from every peer.
const DDS_ENV: [&str; 5] = [
    "CYCLONEDDS_URI",
    "ROS_DOMAIN_ID",
    "ROS_LOCALHOST_ONLY",
    "ROS_AUTOMATIC_DISCOVERY_RANGE",
    "ROS_STATIC_PEERS",
];

/// Debian's `ddsperf` (package cyclonedds-tools); panics with the fix when it is missing.
pub fn ddsperf_bin() -> PathBuf {
    find_program("ddsperf")
        .unwrap_or_else(|| panic!("ddsperf is missing: apt-get install -y cyclonedds-tools (`make test` installs it)"))
}

/// `stdbuf` (coreutils), which makes ddsperf's stdout line-buffered into a pipe.
fn stdbuf_bin() -> PathBuf {
    find_program("stdbuf").unwrap_or_else(|| panic!("stdbuf is missing: apt-get install -y coreutils"))
}

fn find_program(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/bin".into(), "/usr/sbin".into(), "/usr/local/bin".into()])
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
}

/// The workspace root (where the Makefile keeps `.venv`).
fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf()
}

/// `tests/dds/chatter.py`.
pub fn chatter_script() -> PathBuf {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("dds").join("chatter.py");
    assert!(path.is_file(), "{} is missing", path.display());
    path
}

/// The project venv's Python with PyPI `cyclonedds` importable (`ROSLAN_VENV` overrides the venv
/// directory, default `<workspace>/.venv`); panics with the fix when it is not there. Checked once.
pub fn venv_python() -> PathBuf {
    static CHECKED: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    CHECKED
        .get_or_init(|| {
            let venv = std::env::var_os("ROSLAN_VENV")
                .map(PathBuf::from)
                .unwrap_or_else(|| workspace_root().join(".venv"));
            let python = venv.join("bin").join("python");
            let fix = "run `make venv` (it installs tests/requirements.txt, which pins cyclonedds==11.0.1)";
            if !python.is_file() {
                return Err(format!("the Python venv is missing ({}): {fix}", python.display()));
            }
            let out = Command::new(&python)
                .args(["-c", "import cyclonedds.domain"])
                .output()
                .map_err(|e| format!("cannot run {}: {e}", python.display()))?;
            if !out.status.success() {
                return Err(format!(
                    "{} cannot import cyclonedds ({}): {fix}",
                    python.display(),
                    String::from_utf8_lossy(&out.stderr).trim()
                ));
            }
            Ok(python)
        })
        .clone()
        .unwrap_or_else(|err| panic!("{err}"))
}

/// Fails at once, with the fix, unless both DDS peers can run: `ddsperf` and the venv's `cyclonedds`.
pub fn require_peers() {
    ddsperf_bin();
    stdbuf_bin();
    venv_python();
    chatter_script();
}

/// Starts `program args...` inside `ns` (`ip netns exec`, which execs it) with the DDS variables removed
/// and `env` added.
fn spawn(label: &str, ns: &Netns, program: &Path, args: &[&str], env: &[(&str, &str)]) -> Peer {
    spawn_in(label, ns.name(), program, args, env)
}

/// [`spawn`] in the namespace named `ns`.
fn spawn_in(label: &str, ns: &str, program: &Path, args: &[&str], env: &[(&str, &str)]) -> Peer {
    let mut cmd = Command::new("ip");
    cmd.args(["netns", "exec", ns]).arg(program).args(args);
    for key in DDS_ENV {
        cmd.env_remove(key);
    }
    cmd.envs(env.iter().copied());
    Peer::start(label, ns, cmd, Stop::Process)
}

/// The participants other than its own that ddsperf announced ("participant NAME: new").
pub fn discoveries(peer: &Finished) -> Vec<Line> {
    peer.lines
        .iter()
        .filter(|l| matches!(participant_new(&l.text), Some((_, false))))
        .cloned()
        .collect()
}

/// Parses ddsperf's `[PID] participant NAME: new` / `... new (self)` line: the name and whether it is
/// the process's own participant.
pub fn participant_new(line: &str) -> Option<(String, bool)> {
    let rest = &line[line.find("participant ")? + "participant ".len()..];
    if let Some(name) = rest.strip_suffix(": new (self)") {
        Some((name.to_string(), true))
    } else {
        rest.strip_suffix(": new").map(|name| (name.to_string(), false))
    }
}

/// `ddsperf` with a pass/fail verdict: `-Qminmatch:1 -Qmaxwait:W` makes it exit non-zero unless another
/// ddsperf participant matches within W seconds; the subscriber also needs `samples` messages
/// (`-Qsamples`). The publisher sends at 100 Hz. Domain 0 (ddsperf's default, ROS' default).
#[derive(Clone, Debug)]
pub struct Ddsperf {
    /// `-Qmaxwait`, seconds.
    pub maxwait: u32,
    /// `-D` of the publisher, seconds; the subscriber runs one second longer.
    pub duration: u32,
    /// `-Qsamples` of the subscriber.
    pub samples: u32,
    /// `CYCLONEDDS_URI`, for IPv6 only ([`UDP6_URI`]).
    pub uri: Option<&'static str>,
}

impl Default for Ddsperf {
    /// Discovery takes 10-30 ms here; 5 s is a bound for a loaded 2-CPU machine, not an expectation.
    fn default() -> Self {
        Ddsperf {
            maxwait: 5,
            duration: 6,
            samples: 50,
            uri: None,
        }
    }
}

impl Ddsperf {
    fn spawn(&self, label: &str, ns: &Netns, args: &[&str]) -> Peer {
        let ddsperf = ddsperf_bin();
        let mut full = vec!["-oL", ddsperf.to_str().expect("utf-8")];
        full.extend_from_slice(args);
        let env: Vec<(&str, &str)> = self.uri.iter().map(|u| ("CYCLONEDDS_URI", *u)).collect();
        spawn(label, ns, &stdbuf_bin(), &full, &env)
    }

    /// `ddsperf -D <duration+1> -Qminmatch:1 -Qmaxwait:W -Qsamples:S sub` in `ns`.
    pub fn sub(&self, ns: &Netns) -> Peer {
        let args = [
            "-D".to_string(),
            (self.duration + 1).to_string(),
            "-Qminmatch:1".into(),
            format!("-Qmaxwait:{}", self.maxwait),
            format!("-Qsamples:{}", self.samples),
            "sub".into(),
        ];
        self.spawn("ddsperf sub", ns, &args.iter().map(String::as_str).collect::<Vec<_>>())
    }

    /// `ddsperf -D <duration> -Qminmatch:1 -Qmaxwait:W pub 100Hz` in `ns`.
    pub fn publisher(&self, ns: &Netns) -> Peer {
        let args = [
            "-D".to_string(),
            self.duration.to_string(),
            "-Qminmatch:1".into(),
            format!("-Qmaxwait:{}", self.maxwait),
            "pub".into(),
            "100Hz".into(),
        ];
        self.spawn("ddsperf pub", ns, &args.iter().map(String::as_str).collect::<Vec<_>>())
    }

    /// Starts the subscriber in `sub_ns`, waits until its participant exists, starts the publisher in
    /// `pub_ns` (which may be the same namespace), and waits for both verdicts.
    pub fn run(&self, sub_ns: &Netns, pub_ns: &Netns) -> Pair {
        let sub = self.sub(sub_ns);
        let ready = sub.wait_line(|l| l.contains(": new (self)"), Duration::from_secs(20));
        let publisher = self.publisher(pub_ns);
        let limit = Duration::from_secs(u64::from(self.duration) + 15);
        let publisher = publisher.finish(limit);
        let sub = sub.finish(limit);
        let mut pair = Pair::new(PairKind::Ddsperf, sub, publisher, &[sub_ns, pub_ns], self.uri);
        if ready.is_none() {
            pair.notes
                .push("the subscriber never printed its own participant within 20 s".into());
        }
        pair
    }
}

/// `tests/dds/chatter.py` (ROS 2 `rt/microk8s_chatter`, `std_msgs::msg::dds_::String_`).
#[derive(Clone, Debug)]
pub struct Chatter {
    /// Messages the talker sends and the listener must hear.
    pub count: u32,
    /// The talker's wait for a matched subscription, seconds; the listener waits 5 s longer.
    pub timeout: u32,
    /// `CYCLONEDDS_URI`, for IPv6 only ([`UDP6_URI`]).
    pub uri: Option<&'static str>,
}

impl Default for Chatter {
    fn default() -> Self {
        Chatter {
            count: 5,
            timeout: 10,
            uri: None,
        }
    }
}

impl Chatter {
    fn spawn(&self, role: &str, ns: &Netns, timeout: u32) -> Peer {
        let script = chatter_script();
        let (count, timeout) = (self.count.to_string(), timeout.to_string());
        let args = [
            "-u",
            script.to_str().expect("utf-8"),
            role,
            "--count",
            &count,
            "--timeout",
            &timeout,
        ];
        let env: Vec<(&str, &str)> = self.uri.iter().map(|u| ("CYCLONEDDS_URI", *u)).collect();
        spawn(role, ns, &venv_python(), &args, &env)
    }

    /// The listener in `ns`.
    pub fn listener(&self, ns: &Netns) -> Peer {
        self.spawn("listener", ns, self.timeout + 5)
    }

    /// The talker in `ns`.
    pub fn talker(&self, ns: &Netns) -> Peer {
        self.spawn("talker", ns, self.timeout)
    }

    /// Starts the listener, waits until its reader exists, starts the talker, waits for both.
    pub fn run(&self, listener_ns: &Netns, talker_ns: &Netns) -> Pair {
        let listener = self.listener(listener_ns);
        let ready = listener.wait_line(|l| l == "listener: ready", Duration::from_secs(30));
        let talker = self.talker(talker_ns);
        let limit = Duration::from_secs(u64::from(self.timeout) + 25);
        let talker = talker.finish(limit);
        let listener = listener.finish(limit);
        let mut pair = Pair::new(PairKind::Chatter, listener, talker, &[listener_ns, talker_ns], self.uri);
        if ready.is_none() {
            pair.notes
                .push("the listener never printed \"listener: ready\" within 30 s".into());
        }
        pair
    }
}

/// Which peers a [`Pair`] ran.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PairKind {
    /// ddsperf sub + pub.
    Ddsperf,
    /// chatter listener + talker.
    Chatter,
}

/// Two peers that ran against each other: the receiving one (sub, listener) started first.
#[derive(Debug)]
pub struct Pair {
    /// ddsperf or chatter.
    pub kind: PairKind,
    /// The subscriber or listener.
    pub receiver: Finished,
    /// The publisher or talker.
    pub sender: Finished,
    /// Namespaces involved, for diagnostics.
    namespaces: Vec<String>,
    /// Remarks from the run itself.
    pub notes: Vec<String>,
    /// The peers ran with [`UDP6_URI`].
    pub udp6: bool,
}

impl Pair {
    fn new(kind: PairKind, receiver: Finished, sender: Finished, namespaces: &[&Netns], uri: Option<&str>) -> Pair {
        let mut names: Vec<String> = namespaces.iter().map(|n| n.name().to_string()).collect();
        names.dedup();
        Pair {
            kind,
            receiver,
            sender,
            namespaces: names,
            notes: Vec::new(),
            udp6: uri == Some(UDP6_URI),
        }
    }

    /// Each side found the other: ddsperf printed the other participant; the talker matched the
    /// listener's reader and the listener matched the talker's writer.
    pub fn both_discovered(&self) -> bool {
        match self.kind {
            PairKind::Ddsperf => !discoveries(&self.receiver).is_empty() && !discoveries(&self.sender).is_empty(),
            PairKind::Chatter => {
                self.sender.printed("talker: matched subscriber")
                    && self.receiver.printed("listener: matched publisher")
            }
        }
    }

    /// Neither side found anything.
    pub fn nothing_discovered(&self) -> bool {
        match self.kind {
            PairKind::Ddsperf => discoveries(&self.receiver).is_empty() && discoveries(&self.sender).is_empty(),
            PairKind::Chatter => {
                !self.sender.printed("talker: matched subscriber")
                    && !self.receiver.printed("listener: matched publisher")
            }
        }
    }

    /// Panics unless both peers discovered each other, the receiver got what was sent, and both
    /// exited 0 (ddsperf's own verdict: matched within -Qmaxwait and enough samples).
    pub fn assert_works(&self, topology: &str) {
        let delivered = match self.kind {
            PairKind::Ddsperf => self.receiver.success(),
            PairKind::Chatter => self.receiver.lines.iter().any(|l| {
                l.text
                    .strip_prefix("listener: received ")
                    .and_then(|r| r.split_once('/'))
                    .is_some_and(|(got, want)| got == want)
            }),
        };
        if !(self.both_discovered() && delivered && self.receiver.success() && self.sender.success()) {
            panic!(
                "{topology}: DDS peers did not discover each other and exchange data (zero DDS configuration)\n{}",
                self.report()
            );
        }
    }

    /// Panics unless neither peer discovered the other and both reported failure (the negative
    /// controls).
    pub fn assert_isolated(&self, topology: &str) {
        if !(self.nothing_discovered() && !self.receiver.success() && !self.sender.success()) {
            panic!(
                "{topology}: expected no discovery at all, but the peers found each other\n{}",
                self.report()
            );
        }
    }

    /// Both transcripts, the run's notes and the namespaces' links and routes.
    pub fn report(&self) -> String {
        let mut text = String::new();
        for note in &self.notes {
            text.push_str(&format!("note: {note}\n"));
        }
        text.push_str(&self.receiver.transcript());
        text.push_str(&self.sender.transcript());
        for ns in &self.namespaces {
            text.push_str(&namespace_state(ns));
            match cyclone_selection_in(ns, self.udp6) {
                Some(sel) => text.push_str(&format!(
                    "  Cyclone (config trace, separate run) selects {} from: {}\n",
                    sel.selected, sel.candidates
                )),
                None => text.push_str("  Cyclone (config trace, separate run) printed no selection\n"),
            }
        }
        text
    }
}

/// Links, addresses and routes (both families, IPv6 local table included) of a namespace, for messages.
pub fn namespace_state(ns: &str) -> String {
    let mut text = format!("--- namespace {ns}:\n");
    for args in [
        &["-br", "addr"][..],
        &["-br", "link"][..],
        &["-4", "route", "show", "table", "all"][..],
        &["-6", "route", "show", "table", "all"][..],
    ] {
        let mut full = vec!["-n", ns];
        full.extend_from_slice(args);
        let out = try_sh("ip", &full);
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            if !line.starts_with("local ") && !line.starts_with("broadcast ") && !line.starts_with("anycast ") {
                text.push_str(&format!("  {line}\n"));
            }
        }
    }
    text
}

/// What Cyclone DDS sees in a namespace and which interface it picks.
#[derive(Clone, Debug)]
pub struct Selection {
    /// The candidates with their quality scores, e.g. `lo udp/127.0.0.1(q1) eth0 udp/10.244.1.2(q8) ...`.
    pub candidates: String,
    /// The selected interface's name.
    pub selected: String,
}

/// Asks Cyclone DDS (ddsperf) which interface it selects in `ns`: a separate, short ddsperf run whose
/// `CYCLONEDDS_URI` only turns on the `config` trace category (observation, not configuration: it
/// changes nothing Cyclone does on the network), optionally with `udp6`. Used to explain the results
/// of the zero-configuration runs.
pub fn cyclone_selection(ns: &Netns, udp6: bool) -> Selection {
    cyclone_selection_in(ns.name(), udp6)
        .unwrap_or_else(|| panic!("Cyclone printed no interface selection in {}", ns.name()))
}

/// [`cyclone_selection`] in the namespace named `ns`; `None` if Cyclone printed no selection.
pub fn cyclone_selection_in(ns: &str, udp6: bool) -> Option<Selection> {
    let transport = if udp6 {
        "<General><Transport>udp6</Transport></General>"
    } else {
        ""
    };
    let uri = selection_trace_uri(transport);
    let ddsperf = ddsperf_bin();
    let peer = spawn_in(
        "ddsperf (config trace)",
        ns,
        &stdbuf_bin(),
        &["-oL", ddsperf.to_str().expect("utf-8"), "-D", "10", "sub"],
        &[("CYCLONEDDS_URI", uri.as_str())],
    );
    peer.wait_line(|l| l.contains("selected interfaces: "), Duration::from_secs(20));
    let lines: Vec<String> = peer.lines().into_iter().map(|l| l.text).collect();
    drop(peer);
    parse_selection(&lines)
}

/// The `CYCLONEDDS_URI` that makes Cyclone print its interface selection (the `config` trace category) on
/// stdout, and nothing else; `transport` is empty or a `<General>` element.
pub fn selection_trace_uri(transport: &str) -> String {
    format!(
        "<CycloneDDS><Domain>{transport}<Tracing><Category>config</Category><OutputFile>stdout</OutputFile></Tracing></Domain></CycloneDDS>"
    )
}

/// The candidates and the selected interface from the lines of a `config` trace.
pub fn parse_selection(lines: &[String]) -> Option<Selection> {
    let after = |line: &str, key: &str| line.split_once(key).map(|(_, rest)| rest.trim().to_string());
    let candidates = lines
        .iter()
        .find_map(|l| after(l, "interfaces: ").filter(|_| !l.contains("selected")))
        .unwrap_or_default();
    let selected = lines
        .iter()
        .find_map(|l| after(l, "selected interfaces: "))
        .and_then(|s| s.split_whitespace().next().map(str::to_string))?;
    Some(Selection { candidates, selected })
}

/// One benchmark round: times from the publisher's spawn to the first "participant ... new" line (not
/// "(self)") of each process; `None` when it did not come within the wait.
#[derive(Clone, Copy, Debug)]
pub struct Round {
    /// The publisher (the late joiner) announces the subscriber.
    pub publisher: Option<Duration>,
    /// The subscriber (running already) announces the publisher.
    pub subscriber: Option<Duration>,
}

/// Starts `ddsperf sub` in `sub_ns`, waits until its participant exists and has settled, starts
/// `ddsperf pub` in `pub_ns`, and times both discoveries from the publisher's spawn (which includes
/// `ip netns exec` and `stdbuf`, about 3 ms, the same for every configuration). At most `wait`.
pub fn discovery_round(sub_ns: &Netns, pub_ns: &Netns, wait: Duration) -> Round {
    let ddsperf = ddsperf_bin();
    let start = |label: &str, ns: &Netns, mode: &[&str]| {
        let mut args = vec!["-oL", ddsperf.to_str().expect("utf-8"), "-D", "60"];
        args.extend_from_slice(mode);
        spawn(label, ns, &stdbuf_bin(), &args, &[])
    };
    let sub = start("ddsperf sub", sub_ns, &["sub"]);
    let ready = sub.wait_line(|l| l.contains(": new (self)"), Duration::from_secs(20));
    assert!(
        ready.is_some(),
        "ddsperf sub did not start in {}: {:?}",
        sub_ns.name(),
        sub.lines()
    );
    std::thread::sleep(Duration::from_millis(500));
    let publisher = start("ddsperf pub", pub_ns, &["pub", "100Hz"]);
    let t0 = publisher.started();
    let other = |l: &str| matches!(participant_new(l), Some((_, false)));
    let seen_by_pub = publisher.wait_line(other, wait).map(|l| l.at);
    let remaining = wait.saturating_sub(t0.elapsed());
    let seen_by_sub = sub
        .wait_line(other, remaining)
        .map(|l| (sub.started() + l.at).saturating_duration_since(t0));
    Round {
        publisher: seen_by_pub,
        subscriber: seen_by_sub,
    }
}

fn ms(d: Option<Duration>) -> Value {
    d.map_or(Value::Null, |d| json!(round(d.as_secs_f64() * 1000.0)))
}

fn stats(samples: &[Option<Duration>]) -> Value {
    let found: Vec<Duration> = samples.iter().flatten().copied().collect();
    if found.is_empty() {
        Value::Null
    } else {
        Stats::of(&found).json()
    }
}

/// The DDS discovery benchmark (issue 4): two pods attached to the LAN, `ddsperf sub` in one and
/// `ddsperf pub` in the other, time from the publisher's process start to each side's first
/// "participant ... new" line. Single-homed and dual-homed pods with roslan, and dual-homed pods with
/// the upstream reference macvlan + host-local and the usual `224.0.0.0/4` route (which never discover: reported
/// as such, with the bounded wait). Configurations are interleaved round by round after one discarded
/// warm-up round; the reference runs `min(rounds, 3)` rounds, each costing the whole wait.
///
/// Works from any namespace (the benchmark's main thread is in `lan.node`): pods, plugins and peers are
/// all reached through `ip netns exec` and namespace paths. Uses its own address slice
/// (10.77.240.10-250) and IPAM directory, so it can share the LAN with other sections.
pub fn discovery_bench(lan: &Lan, rounds: usize) -> Value {
    discovery_bench_with(lan, rounds, &crate::plugin::roslan_bin())
}

/// [`discovery_bench`] with a given `roslan` binary (e.g. roslan-bench's `--bin-dir`).
pub fn discovery_bench_with(lan: &Lan, rounds: usize, roslan_bin: &Path) -> Value {
    const WAIT: Duration = Duration::from_secs(5);
    eprintln!("DDS discovery (ddsperf), {rounds} rounds...");
    let ipam = json!({
        "type": "host-local",
        "dataDir": lan.dir().join("dds-ipam"),
        "ranges": [[{"subnet": SUBNET, "rangeStart": "10.77.240.10", "rangeEnd": "10.77.240.250"}]]
    });
    let roslan = json!({"cniVersion": "0.3.1", "name": "ros-lan-dds", "type": "roslan", "master": MASTER, "logLevel": "warn", "ipam": ipam});
    let mut reference = roslan.clone();
    reference["type"] = json!("macvlan");
    reference["ipam"]["routes"] = json!([{"dst": "224.0.0.0/4"}]);

    // The reference is the upstream release (what users run), with its own host-local.
    let upstream = Reference::upstream();
    let attach = |pod: &Pod, conf: &Value, plugin: &Path| {
        let mut call = Call::new(plugin.to_path_buf(), "ADD", &pod.id, &pod.path(), "net1", conf);
        call.cni_path = upstream.dir.to_string_lossy().into_owned();
        let reply = lan.call(&call);
        assert_eq!(reply.status, 0, "ADD for the DDS benchmark failed: {reply}");
    };
    let roslan_bin = roslan_bin.to_path_buf();
    let macvlan = upstream.bin("macvlan");
    let single = [lan.pod(), lan.pod()];
    let dual = [lan.dual_homed_pod(), lan.dual_homed_pod()];
    let refdual = [lan.dual_homed_pod(), lan.dual_homed_pod()];
    for pod in single.iter().chain(&dual) {
        attach(pod, &roslan, &roslan_bin);
    }
    for pod in &refdual {
        attach(pod, &reference, &macvlan);
    }

    let reference_rounds = rounds.min(3);
    let mut samples: [Vec<Round>; 3] = Default::default();
    for r in 0..=rounds {
        let mut one = |k: usize, pods: &[Pod; 2]| {
            let round = discovery_round(&pods[0].ns, &pods[1].ns, WAIT);
            if r > 0 {
                samples[k].push(round);
            }
        };
        one(0, &single);
        one(1, &dual);
        if r > 0 && r <= reference_rounds {
            one(2, &refdual);
        }
    }
    for (pods, conf, plugin) in [
        (&single, &roslan, &roslan_bin),
        (&dual, &roslan, &roslan_bin),
        (&refdual, &reference, &macvlan),
    ] {
        for pod in pods.iter() {
            let _ = lan.call(&Call::new(plugin.clone(), "DEL", &pod.id, &pod.path(), "net1", conf));
        }
    }

    let section = |name: &str, plugin: &str, rounds: &[Round]| {
        let publisher: Vec<Option<Duration>> = rounds.iter().map(|r| r.publisher).collect();
        let subscriber: Vec<Option<Duration>> = rounds.iter().map(|r| r.subscriber).collect();
        let both: Vec<Option<Duration>> = rounds.iter().map(|r| Some(r.publisher?.max(r.subscriber?))).collect();
        json!({
            "pods": name,
            "plugin": plugin,
            "rounds": rounds.len(),
            "discovered": both.iter().filter(|b| b.is_some()).count(),
            "publisher": stats(&publisher),
            "subscriber": stats(&subscriber),
            "both": stats(&both),
            "samples_ms": {
                "publisher": publisher.iter().map(|d| ms(*d)).collect::<Vec<_>>(),
                "subscriber": subscriber.iter().map(|d| ms(*d)).collect::<Vec<_>>(),
            },
        })
    };
    let single = section("single-homed", "roslan", &samples[0]);
    let dual = section("dual-homed", "roslan", &samples[1]);
    let refdual = section("dual-homed", "reference + 224.0.0.0/4 route", &samples[2]);
    let median = |v: &Value| v["both"]["median_ms"].as_f64();
    let gap = median(&dual).zip(median(&single)).map(|(d, s)| round(d - s));
    json!({
        "wait_ms": WAIT.as_millis() as u64,
        "rounds": rounds,
        "single_homed": single,
        "dual_homed": dual,
        "reference_dual_homed": refdual,
        "dual_minus_single_ms": gap,
        "goal_ms": 20,
        "goal_met": gap.is_some_and(|g| g <= 20.0)
            && dual["discovered"] == dual["rounds"]
            && single["discovered"] == single["rounds"],
    })
}

/// The markdown section for [`discovery_bench`]'s result: method, table, verdict.
pub fn discovery_report(v: &Value) -> String {
    let mut md = String::from("## DDS discovery time\n\n");
    let wait = v["wait_ms"].as_u64().unwrap_or(0);
    md.push_str(
        "Real Cyclone DDS peers (Debian's `ddsperf`, Cyclone 0.10) with zero DDS configuration, in two pods attached \
         to the LAN before the measurement. Each round starts `ddsperf sub` in pod A, waits until its participant \
         exists plus 0.5 s, then starts `ddsperf pub` in pod B, and times, from the publisher's process start \
         (`ip netns exec` and `stdbuf` included, about 3 ms), the first `participant ... new` line (not `(self)`) \
         printed by each process: the publisher discovering the subscriber, the subscriber discovering the \
         publisher, and both (the later of the two). ",
    );
    md.push_str(&format!(
        "Configurations are interleaved round by round after one discarded warm-up round; a round that has not \
         discovered within {:.0} s counts as not discovered. Dual-homed pods have `eth0` with the default route \
         into an overlay that carries no multicast, as Calico gives. Medians, 10th-90th percentiles in brackets.\n\n",
        wait as f64 / 1000.0
    ));
    md.push_str(
        "| pods | plugin | discovered | publisher finds subscriber ms | subscriber finds publisher ms | both ms |\n",
    );
    md.push_str("|---|---|---|---|---|---|\n");
    let cell = |s: &Value| {
        if s.is_null() {
            "never".to_string()
        } else {
            format!("{} ({}-{})", s["median_ms"], s["p10_ms"], s["p90_ms"])
        }
    };
    for key in ["single_homed", "dual_homed", "reference_dual_homed"] {
        let row = &v[key];
        md.push_str(&format!(
            "| {} | {} | {} of {} rounds | {} | {} | {} |\n",
            row["pods"].as_str().unwrap_or(""),
            row["plugin"].as_str().unwrap_or(""),
            row["discovered"],
            row["rounds"],
            cell(&row["publisher"]),
            cell(&row["subscriber"]),
            cell(&row["both"])
        ));
    }
    md.push('\n');
    match v["dual_minus_single_ms"].as_f64() {
        Some(gap) => md.push_str(&format!(
            "- Dual-homed pods with roslan discover each other {} ms {} than single-homed ones (goal: within 20 ms): \
             **{}**. roslan clears IFF_MULTICAST on `eth0` (`multicast.exclusive`), so Cyclone scores `net1` higher \
             and picks it without configuration.\n",
            round(gap.abs()),
            if gap >= 0.0 { "later" } else { "sooner" },
            if v["goal_met"] == json!(true) { "met" } else { "not met" }
        )),
        None => md.push_str("- **Goal not met**: roslan's pods did not discover each other in every round.\n"),
    }
    let reference = &v["reference_dual_homed"];
    if reference["discovered"] == json!(0) {
        md.push_str(&format!(
            "- The reference plugins in dual-homed pods never discovered anything ({} rounds, {:.0} s each): Cyclone \
             sees `eth0` and `net1` with the same score, takes `eth0` (enumerated first) and sends its discovery \
             into the overlay; the gateway that host-local attaches to the `224.0.0.0/4` route would also keep it \
             from sibling pods on `net1`.\n",
            reference["rounds"],
            wait as f64 / 1000.0
        ));
    } else {
        md.push_str(&format!(
            "- Unexpected: the reference plugins discovered in {} of {} rounds.\n",
            reference["discovered"], reference["rounds"]
        ));
    }
    md
}
