//! `roslan probe`: a multicast exchange between places on this machine, so that a network problem can
//! be told apart from a DDS one. Between machines, `--listen` and `--send` (`cli/remote.rs`) do the
//! same with an echo.
//!
//! A place is the current namespace (`node`) or a network namespace (a pod's `/proc/<pid>/ns/net`, a
//! `/run/netns/<name>` path, or just `<name>`). Receivers join the group the way an unconfigured DDS
//! does: on "any interface" (INADDR_ANY, interface index 0), so the kernel picks the interface by a
//! route lookup. The sender sets no IP_MULTICAST_IF either, so the route table decides where datagrams
//! leave. The probe reports both decisions next to what arrived: the cause of a silent receiver is
//! nearly always visible in one of them (multicast leaving through the pod's `eth0`, a route with a
//! gateway, a join on the wrong interface).
//!
//! Everything runs in this one process: one thread per receiver, each entering its namespace only to
//! create its socket (a socket stays in the namespace it was created in) and then receiving from the
//! same thread; the sender does the same on the main thread. One process means one clock, so each
//! datagram carries its send time and the receiver computes the latency directly. The default port,
//! 7399, sits next to DDS's 7400 without disturbing a running DDS.

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use nix::sys::socket::{AddressFamily, SockFlag, SockType, SockaddrStorage, bind, setsockopt, socket, sockopt};
use serde_json::{Value, json};

use super::args::{self, Spec};
use super::route::{self, LookupError, RouteAnswer};
use crate::netlink::{Link, Runtime};
use crate::netns::Netns;
use crate::sysctl::{self, Key};

const SPEC: Spec = &[
    ("--from", true),
    ("--to", true),
    ("--group", true),
    ("--port", true),
    ("--count", true),
    ("--interval-ms", true),
    ("--timeout-ms", true),
    ("--json", false),
];

/// Usage of `roslan probe`.
pub const USAGE: &str = "roslan probe --from PLACE --to PLACE [--to PLACE ...] [--group 239.255.0.1] [--port 7399]
             [--count 10] [--interval-ms 100] [--timeout-ms 2000] [--json]
  PLACE: node (this namespace), a namespace path (/proc/<pid>/ns/net, /run/netns/<name>) or a name
  under /run/netns. Receivers join without choosing an interface and the sender sets none, as an
  unconfigured DDS does. --timeout-ms: how long receivers wait after the last datagram.
  Exit code: 0 when every receiver got at least one datagram, 1 otherwise, 2 on usage error.";

const MAGIC: &[u8; 8] = b"RLPROBE1";
const PAYLOAD_LEN: usize = 28;
/// How long receivers may take to open their sockets before the probe gives up on them.
const SETUP_WAIT: Duration = Duration::from_secs(10);
/// How often a waiting receiver looks at the clock.
const POLL: Duration = Duration::from_millis(20);
/// The pause between the receivers' joins and the first datagram. A host in IGMPv2 mode (one that has
/// heard a v2 query) delays its first report by up to 200 ms, and a snooping switch or bridge forwards
/// the group to it only once the report arrived: without the pause the first datagrams would count as
/// lost for a reason no DDS peer notices.
const SETTLE: Duration = Duration::from_millis(250);

/// Where a probe end runs.
#[derive(Debug)]
pub(super) struct Place {
    /// As the user wrote it, for the report.
    pub(super) label: String,
    /// `None`: the namespace the probe runs in.
    netns: Option<Netns>,
}

impl Place {
    pub(super) fn open(text: &str) -> Result<Place, String> {
        if text == "node" {
            return Ok(Place {
                label: text.to_string(),
                netns: None,
            });
        }
        let path = if text.starts_with('/') {
            text.to_string()
        } else if !text.is_empty() && !text.contains('/') && text != "." && text != ".." {
            format!("/run/netns/{text}")
        } else {
            return Err(format!(
                "{text:?} is not a place: use node, a namespace path or a name under /run/netns"
            ));
        };
        let netns = Netns::open(&path).map_err(|err| err.to_string())?;
        Ok(Place {
            label: text.to_string(),
            netns: Some(netns),
        })
    }

    /// Runs `work` inside the place.
    pub(super) fn enter<T>(&self, work: impl FnOnce() -> T) -> Result<T, String> {
        match &self.netns {
            None => Ok(work()),
            Some(ns) => ns.run(work).map_err(|err| err.to_string()),
        }
    }
}

/// What the command line asked for.
#[derive(Debug)]
struct Options {
    from: String,
    to: Vec<String>,
    group: IpAddr,
    port: u16,
    count: u32,
    interval: Duration,
    timeout: Duration,
    json: bool,
}

fn options(argv: &[String]) -> Result<Options, String> {
    let parsed = args::parse(argv, SPEC)?;
    let from = parsed.value("--from").ok_or("--from is required")?.to_string();
    let to: Vec<String> = parsed.values("--to").into_iter().map(str::to_string).collect();
    if to.is_empty() {
        return Err("at least one --to is required".into());
    }
    let group: IpAddr = parsed.number("--group", IpAddr::V4(Ipv4Addr::new(239, 255, 0, 1)), "an address")?;
    if !group.is_multicast() {
        return Err(format!(
            "--group {group} is not a multicast address (224.0.0.0/4 or ff00::/8)"
        ));
    }
    let port: u16 = parsed.number("--port", 7399, "a port number")?;
    if port == 0 {
        return Err("--port 0: expected 1 to 65535".into());
    }
    let count: u32 = parsed.number("--count", 10, "a number of datagrams")?;
    if !(1..=100_000).contains(&count) {
        return Err(format!("--count {count}: expected 1 to 100000"));
    }
    let interval: u64 = parsed.number("--interval-ms", 100, "milliseconds")?;
    let timeout: u64 = parsed.number("--timeout-ms", 2000, "milliseconds")?;
    if interval > 60_000 || timeout > 600_000 {
        return Err("--interval-ms at most 60000, --timeout-ms at most 600000".into());
    }
    Ok(Options {
        from,
        to,
        group,
        port,
        count,
        interval: Duration::from_millis(interval),
        timeout: Duration::from_millis(timeout),
        json: parsed.flag("--json"),
    })
}

/// What the probe learns about a place besides traffic: enough to explain silence.
#[derive(Debug, Default)]
pub(super) struct Facts {
    /// Links of the namespace.
    pub(super) links: Vec<Link>,
    /// rp_filter of `all` and of the interface used for the group.
    pub(super) rp_filter: Option<(u8, u8)>,
}

impl Facts {
    pub(super) fn gather(dev: Option<&str>) -> Facts {
        let links = Runtime::new()
            .and_then(|rt| rt.connect().and_then(|nl| nl.links()))
            .unwrap_or_default();
        let read = |ifname: &str| {
            sysctl::read(&Key::interface("ipv4", ifname, "rp_filter"))
                .ok()
                .and_then(|v| v.parse::<u8>().ok())
        };
        let rp_filter = dev.and_then(|dev| Some((read("all")?, read(dev)?)));
        Facts { links, rp_filter }
    }

    /// Interfaces roslan attached (their alias starts with `roslan `).
    pub(super) fn roslan_links(&self) -> Vec<&str> {
        self.links
            .iter()
            .filter(|l| crate::alias::is_roslan(l.alias.as_deref()))
            .map(|l| l.name.as_str())
            .collect()
    }

    pub(super) fn has_macvlan(&self) -> bool {
        self.links.iter().any(|l| l.macvlan_mode.is_some())
    }

    pub(super) fn strict_rp_filter(&self) -> bool {
        self.rp_filter.is_some_and(|(all, dev)| all.max(dev) == 1)
    }
}

/// One receiver's outcome.
#[derive(Debug)]
struct Received {
    label: String,
    join: Result<RouteAnswer, LookupError>,
    facts: Facts,
    /// Setting up failed (bind or join refused): nothing was received.
    error: Option<String>,
    /// Distinct sequence numbers received.
    received: u32,
    duplicates: u32,
    /// Datagrams on the port that were not this probe's.
    others: u32,
    latencies: Vec<Duration>,
    sources: BTreeSet<IpAddr>,
}

/// The sender's outcome.
#[derive(Debug)]
struct Sent {
    label: String,
    route: Result<RouteAnswer, LookupError>,
    facts: Facts,
    sent: u32,
    error: Option<String>,
}

fn encode(run: u64, seq: u32, sent_ns: u64) -> [u8; PAYLOAD_LEN] {
    let mut payload = [0u8; PAYLOAD_LEN];
    payload[..8].copy_from_slice(MAGIC);
    payload[8..16].copy_from_slice(&run.to_be_bytes());
    payload[16..20].copy_from_slice(&seq.to_be_bytes());
    payload[20..28].copy_from_slice(&sent_ns.to_be_bytes());
    payload
}

/// (run, seq, sent_ns) if the datagram is a probe's.
fn decode(data: &[u8]) -> Option<(u64, u32, u64)> {
    if data.len() != PAYLOAD_LEN || &data[..8] != MAGIC {
        return None;
    }
    let run = u64::from_be_bytes(data[8..16].try_into().ok()?);
    let seq = u32::from_be_bytes(data[16..20].try_into().ok()?);
    let sent = u64::from_be_bytes(data[20..28].try_into().ok()?);
    Some((run, seq, sent))
}

/// A socket bound to the group's port on every address, with SO_REUSEADDR so that several receivers
/// (or another listener) in one namespace can share the port, joined on interface 0 as DDS does.
pub(super) fn receiver_socket(group: IpAddr, port: u16) -> Result<UdpSocket, String> {
    let (family, any) = match group {
        IpAddr::V4(_) => (AddressFamily::Inet, IpAddr::V4(Ipv4Addr::UNSPECIFIED)),
        IpAddr::V6(_) => (AddressFamily::Inet6, IpAddr::V6(Ipv6Addr::UNSPECIFIED)),
    };
    let fd = socket(family, SockType::Datagram, SockFlag::SOCK_CLOEXEC, None).map_err(|e| format!("socket: {e}"))?;
    setsockopt(&fd, sockopt::ReuseAddr, &true).map_err(|e| format!("SO_REUSEADDR: {e}"))?;
    if group.is_ipv6() {
        // IPv6 only, so that an IPv4 socket on the same port gets the IPv4 datagrams.
        setsockopt(&fd, sockopt::Ipv6V6Only, &true).map_err(|e| format!("IPV6_V6ONLY: {e}"))?;
    }
    let address = SockaddrStorage::from(SocketAddr::new(any, port));
    bind(std::os::fd::AsRawFd::as_raw_fd(&fd), &address).map_err(|e| format!("bind port {port}: {e}"))?;
    let socket = UdpSocket::from(fd);
    match group {
        IpAddr::V4(g) => socket.join_multicast_v4(&g, &Ipv4Addr::UNSPECIFIED),
        IpAddr::V6(g) => socket.join_multicast_v6(&g, 0),
    }
    .map_err(|e| format!("join {group}: {e}"))?;
    socket
        .set_read_timeout(Some(POLL))
        .map_err(|e| format!("set a receive timeout: {e}"))?;
    Ok(socket)
}

struct Shared {
    run: u64,
    epoch: Instant,
    count: u32,
    /// Set by the sender when it is done: receivers stop at this instant.
    deadline: Mutex<Option<Instant>>,
}

fn spawn_receiver(
    place: Place,
    options: &Options,
    shared: Arc<Shared>,
    ready: mpsc::Sender<()>,
) -> JoinHandle<Received> {
    let (group, port) = (options.group, options.port);
    std::thread::spawn(move || {
        let setup = place.enter(|| {
            let join = route::lookup(None, group);
            let dev = join.as_ref().ok().and_then(|j| j.dev.clone());
            let facts = Facts::gather(dev.as_deref());
            (join, facts, receiver_socket(group, port))
        });
        let mut report = Received {
            label: place.label.clone(),
            join: Err(LookupError {
                errno: None,
                text: "not looked up".into(),
            }),
            facts: Facts::default(),
            error: None,
            received: 0,
            duplicates: 0,
            others: 0,
            latencies: Vec::new(),
            sources: BTreeSet::new(),
        };
        let socket = match setup {
            Err(err) => {
                report.error = Some(err);
                None
            }
            Ok((join, facts, socket)) => {
                report.join = join;
                report.facts = facts;
                socket.map_err(|err| report.error = Some(err)).ok()
            }
        };
        let _ = ready.send(());
        let Some(socket) = socket else { return report };
        let mut seen = vec![false; shared.count as usize];
        let mut buf = [0u8; 2048];
        loop {
            if report.received == shared.count {
                break;
            }
            let deadline = *shared.deadline.lock().unwrap_or_else(|e| e.into_inner());
            if deadline.is_some_and(|d| Instant::now() >= d) {
                break;
            }
            let Ok((len, from)) = socket.recv_from(&mut buf) else {
                continue;
            };
            let now = Instant::now();
            match decode(&buf[..len]) {
                Some((run, seq, sent_ns)) if run == shared.run && seq < shared.count => {
                    if std::mem::replace(&mut seen[seq as usize], true) {
                        report.duplicates += 1;
                        continue;
                    }
                    report.received += 1;
                    report.sources.insert(from.ip());
                    let sent_at = shared.epoch + Duration::from_nanos(sent_ns);
                    report.latencies.push(now.saturating_duration_since(sent_at));
                }
                _ => report.others += 1,
            }
        }
        report
    })
}

fn send(place: &Place, options: &Options, shared: &Shared) -> Sent {
    let group = options.group;
    let setup = place.enter(|| {
        let route = route::lookup(None, group);
        let dev = route.as_ref().ok().and_then(|r| r.dev.clone());
        let facts = Facts::gather(dev.as_deref());
        let any = if group.is_ipv4() {
            IpAddr::V4(Ipv4Addr::UNSPECIFIED)
        } else {
            IpAddr::V6(Ipv6Addr::UNSPECIFIED)
        };
        (route, facts, UdpSocket::bind((any, 0)))
    });
    let mut report = Sent {
        label: place.label.clone(),
        route: Err(LookupError {
            errno: None,
            text: "not looked up".into(),
        }),
        facts: Facts::default(),
        sent: 0,
        error: None,
    };
    let socket = match setup {
        Err(err) => {
            report.error = Some(err);
            return report;
        }
        Ok((route, facts, socket)) => {
            report.route = route;
            report.facts = facts;
            match socket {
                Ok(socket) => socket,
                Err(err) => {
                    report.error = Some(format!("open a socket: {err}"));
                    return report;
                }
            }
        }
    };
    let to = SocketAddr::new(group, options.port);
    for seq in 0..options.count {
        if seq > 0 {
            std::thread::sleep(options.interval);
        }
        let sent_ns = u64::try_from(shared.epoch.elapsed().as_nanos()).unwrap_or(u64::MAX);
        match socket.send_to(&encode(shared.run, seq, sent_ns), to) {
            Ok(_) => report.sent += 1,
            Err(err) => {
                // The same error would repeat for every datagram (no route, no permission).
                report.error = Some(err.to_string());
                break;
            }
        }
    }
    report
}

/// A run identifier, so that two probes on the same group and port do not count each other's datagrams.
pub(super) fn run_id() -> u64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    nanos ^ (u64::from(std::process::id()) << 32)
}

/// Runs the probe; returns the exit code.
pub fn run(argv: &[String]) -> i32 {
    let options = match options(argv) {
        Ok(options) => options,
        Err(msg) => {
            eprintln!("roslan probe: {msg}\nusage: {USAGE}");
            return 2;
        }
    };
    let opened = std::iter::once(&options.from)
        .chain(&options.to)
        .map(|text| Place::open(text).map_err(|err| format!("{text}: {err}")))
        .collect::<Result<Vec<Place>, String>>();
    let mut places = match opened {
        Ok(places) => places,
        Err(msg) => {
            eprintln!("roslan probe: {msg}");
            return 2;
        }
    };
    let from = places.remove(0);
    let shared = Arc::new(Shared {
        run: run_id(),
        epoch: Instant::now(),
        count: options.count,
        deadline: Mutex::new(None),
    });
    let (ready_tx, ready_rx) = mpsc::channel();
    let handles: Vec<JoinHandle<Received>> = places
        .into_iter()
        .map(|place| spawn_receiver(place, &options, Arc::clone(&shared), ready_tx.clone()))
        .collect();
    let setup_deadline = Instant::now() + SETUP_WAIT;
    for _ in 0..handles.len() {
        let left = setup_deadline.saturating_duration_since(Instant::now());
        if ready_rx.recv_timeout(left).is_err() {
            break;
        }
    }
    std::thread::sleep(SETTLE);
    let sent = send(&from, &options, &shared);
    *shared.deadline.lock().unwrap_or_else(|e| e.into_inner()) = Some(Instant::now() + options.timeout);
    let received: Vec<Received> = handles
        .into_iter()
        .map(|h| {
            h.join().unwrap_or_else(|_| Received {
                label: "?".into(),
                join: Err(LookupError {
                    errno: None,
                    text: "receiver thread panicked".into(),
                }),
                facts: Facts::default(),
                error: Some("receiver thread panicked".into()),
                received: 0,
                duplicates: 0,
                others: 0,
                latencies: Vec::new(),
                sources: BTreeSet::new(),
            })
        })
        .collect();
    let report = Report {
        options: &options,
        sent,
        received,
    };
    if options.json {
        println!("{}", report.to_json());
    } else {
        print!("{}", report.render());
    }
    i32::from(!report.ok())
}

struct Report<'a> {
    options: &'a Options,
    sent: Sent,
    received: Vec<Received>,
}

pub(super) fn millis(d: Duration) -> f64 {
    (d.as_secs_f64() * 1000.0 * 1000.0).round() / 1000.0
}

/// (median, max) latency.
pub(super) fn latency(samples: &[Duration]) -> Option<(Duration, Duration)> {
    let mut sorted = samples.to_vec();
    sorted.sort();
    let max = *sorted.last()?;
    let mid = sorted.len() / 2;
    let median = if sorted.len().is_multiple_of(2) {
        (sorted[mid - 1] + sorted[mid]) / 2
    } else {
        sorted[mid]
    };
    Some((median, max))
}

fn route_json(route: &Result<RouteAnswer, LookupError>) -> (Value, Value) {
    match route {
        Ok(r) => (
            json!({
                "dev": r.dev,
                "gateway": r.gateway.map(|g| g.to_string()),
                "source": r.source.map(|s| s.to_string()),
            }),
            Value::Null,
        ),
        Err(err) => (Value::Null, Value::from(err.to_string())),
    }
}

impl Report<'_> {
    fn ok(&self) -> bool {
        self.received.iter().all(|r| r.received > 0)
    }

    fn silent(&self) -> Vec<&Received> {
        self.received.iter().filter(|r| r.received == 0).collect()
    }

    fn verdict(&self) -> String {
        let silent: Vec<&str> = self.silent().iter().map(|r| r.label.as_str()).collect();
        if silent.is_empty() {
            let lossy = self.received.iter().any(|r| r.received < self.sent.sent);
            if lossy {
                "ok: every place received the probe, with some loss".to_string()
            } else {
                "ok: every place received every datagram".to_string()
            }
        } else {
            format!("FAIL: {} received nothing", silent.join(", "))
        }
    }

    /// Likely causes. Specific ones (a gateway on the route, a join on the wrong interface, node and
    /// pod on one master) come first; the generic "where does multicast go" hints only when nothing
    /// specific explains a silent receiver, so that the report does not bury the cause.
    fn hints(&self) -> Vec<String> {
        let group = self.options.group;
        let sender = &self.sent;
        let silent = self.silent();
        let mut hints = Vec::new();
        if let Some(err) = &sender.error {
            hints.push(format!("the sender could not send: {err}"));
        }
        match &sender.route {
            Err(err) => hints.push(format!(
                "{} has no usable route for {group}: {err}. Attach roslan (it routes 224.0.0.0/4 through its \
                 interface) or add one: ip route add 224.0.0.0/4 dev <LAN interface>",
                sender.label
            )),
            Ok(route) => {
                let dev = route.dev.as_deref().unwrap_or("?");
                let roslan = sender.facts.roslan_links();
                if let Some(gw) = route.gateway {
                    hints.push(format!(
                        "{}'s route for {group} has a gateway ({}): the kernel sends multicast to {gw}'s MAC address \
                         only, so only the device owning {gw} can hear it and pods on the same LAN (siblings on the \
                         node above all) hear nothing. Remove the gateway from the multicast route (\"dst\": \
                         \"224.0.0.0/4\" in host-local's routes gets the range gateway attached; roslan's multicast \
                         routes never have one)",
                        sender.label,
                        route.describe()
                    ));
                } else if !roslan.is_empty() && !roslan.contains(&dev) {
                    hints.push(format!(
                        "multicast leaves {} through {dev}, not through roslan's {}: another route for {group} wins \
                         (ip route get {group} there shows it)",
                        sender.label,
                        roslan.join(", ")
                    ));
                }
            }
        }
        let mut unexplained = Vec::new();
        for r in &silent {
            let before = hints.len();
            if let Some(err) = &r.error {
                hints.push(format!("{} could not listen: {err}", r.label));
            }
            match &r.join {
                Err(err) if r.error.is_none() => hints.push(format!("{} cannot join {group}: {err}", r.label)),
                Ok(join) => {
                    let dev = join.dev.as_deref().unwrap_or("?");
                    let roslan = r.facts.roslan_links();
                    if !roslan.is_empty() && !roslan.contains(&dev) {
                        hints.push(format!(
                            "{} joins {group} on {dev}, not on roslan's {}: it listens on the wrong interface, \
                             because its multicast route is gone or another interface's wins (ip route get {group} \
                             there shows it)",
                            r.label,
                            roslan.join(", ")
                        ));
                    }
                }
                Err(_) => {}
            }
            // Every place is on this machine, so the node and a pod with a macvlan share a master unless
            // the node has a macvlan of its own (a shim).
            let node_and_pod = (sender.label == "node" && r.facts.has_macvlan() && !sender.facts.has_macvlan())
                || (r.label == "node" && sender.facts.has_macvlan() && !r.facts.has_macvlan());
            if node_and_pod {
                hints.push(format!(
                    "{} and {} are the node and one of its macvlan pods: the kernel never passes frames between a \
                     macvlan and its master, so they cannot hear each other. Give the node a host shim (a bridge-mode \
                     macvlan on the master; see roslan doctor and docs/install.md)",
                    sender.label, r.label
                ));
            }
            if r.facts.strict_rp_filter() {
                hints.push(format!(
                    "{} has strict rp_filter (1) on its receiving side: multicast from a source it would not route \
                     back the same way is dropped; set net.ipv4.conf.all.rp_filter and the interface's to 2 there",
                    r.label
                ));
            }
            if hints.len() == before {
                unexplained.push(*r);
            }
        }
        let sender_explained =
            sender.error.is_some() || sender.route.as_ref().map_or(true, |route| route.gateway.is_some());
        if !unexplained.is_empty() && !sender_explained {
            let dev = sender.route.as_ref().ok().and_then(|r| r.dev.as_deref()).unwrap_or("?");
            // A macvlan is on the LAN by construction; anything else may be the cluster network.
            let sender_on_lan = sender
                .facts
                .links
                .iter()
                .any(|l| l.name == dev && l.macvlan_mode.is_some());
            if !sender_on_lan {
                hints.push(format!(
                    "multicast leaves {} through {dev}: if {dev} is not on the LAN (a pod's eth0 is the cluster \
                     network), attach roslan or add a route there: ip route add 224.0.0.0/4 dev <LAN interface>",
                    sender.label
                ));
            } else {
                for r in &unexplained {
                    if let Ok(join) = &r.join {
                        let dev = join.dev.as_deref().unwrap_or("?");
                        hints.push(format!(
                            "{} listens on {dev}: if that is not its LAN interface, attach roslan or add a multicast \
                             route there; otherwise look between the two (a switch that filters multicast, a \
                             firewall, a VM host dropping unknown MAC addresses)",
                            r.label
                        ));
                    }
                }
            }
        }
        for r in self
            .received
            .iter()
            .filter(|r| r.received > 0 && r.received < sender.sent)
        {
            hints.push(format!(
                "{} lost {} of {}: a busy or wireless LAN, or a macvlan broadcast queue overflowing (raise \
                 \"bcqueuelen\")",
                r.label,
                sender.sent - r.received,
                sender.sent
            ));
        }
        if hints.is_empty() && self.ok() {
            hints.push(format!(
                "multicast works between these places on {group}: if DDS still does not discover, look at DDS \
                 itself (the interface it picks, ROS_DOMAIN_ID, ROS_LOCALHOST_ONLY or ROS_AUTOMATIC_DISCOVERY_RANGE, \
                 a firewall on ports 7400 and up)"
            ));
        }
        hints
    }

    fn to_json(&self) -> Value {
        let (route, route_error) = route_json(&self.sent.route);
        let receivers: Vec<Value> = self
            .received
            .iter()
            .map(|r| {
                let (join, join_error) = route_json(&r.join);
                let loss = if self.sent.sent == 0 {
                    Value::Null
                } else {
                    json!(f64::from(self.sent.sent.saturating_sub(r.received)) / f64::from(self.sent.sent))
                };
                json!({
                    "place": r.label,
                    "received": r.received,
                    "sent": self.sent.sent,
                    "loss": loss,
                    "duplicates": r.duplicates,
                    "other_datagrams": r.others,
                    "latency_ms": latency(&r.latencies)
                        .map(|(median, max)| json!({"median": millis(median), "max": millis(max)})),
                    "sources": r.sources.iter().map(ToString::to_string).collect::<Vec<_>>(),
                    "join": join,
                    "join_error": join_error,
                    "error": r.error,
                })
            })
            .collect();
        json!({
            "group": self.options.group.to_string(),
            "port": self.options.port,
            "count": self.options.count,
            "interval_ms": self.options.interval.as_millis() as u64,
            "timeout_ms": self.options.timeout.as_millis() as u64,
            "sender": {
                "place": self.sent.label,
                "route": route,
                "route_error": route_error,
                "sent": self.sent.sent,
                "error": self.sent.error,
            },
            "receivers": receivers,
            "ok": self.ok(),
            "verdict": self.verdict(),
            "hints": self.hints(),
        })
    }

    fn render(&self) -> String {
        let o = self.options;
        let s = &self.sent;
        let mut out = format!(
            "roslan probe: {} datagrams to {}:{} every {} ms, unpinned (no interface chosen), as DDS sends them\n",
            o.count,
            o.group,
            o.port,
            o.interval.as_millis()
        );
        let route = match &s.route {
            Ok(r) => format!(
                "multicast to {} leaves {}{}",
                o.group,
                r.describe(),
                if r.gateway.is_some() { "" } else { " (no gateway)" }
            ),
            Err(err) => format!("no route for {}: {err}", o.group),
        };
        out.push_str(&format!("from {}: {route}; sent {}", s.label, s.sent));
        if let Some(err) = &s.error {
            out.push_str(&format!(" (stopped: {err})"));
        }
        out.push('\n');
        let width = self.received.iter().map(|r| r.label.len()).max().unwrap_or(0);
        for r in &self.received {
            let mut line = format!("  to {:width$}  {}/{} received", r.label, r.received, s.sent);
            if s.sent > 0 {
                let loss = f64::from(s.sent.saturating_sub(r.received)) * 100.0 / f64::from(s.sent);
                line.push_str(&format!(", loss {loss:.0}%"));
            }
            if let Some((median, max)) = latency(&r.latencies) {
                line.push_str(&format!(
                    ", latency median {:.3} ms, max {:.3} ms",
                    millis(median),
                    millis(max)
                ));
            }
            match (&r.error, &r.join) {
                (Some(err), _) => line.push_str(&format!("; could not listen: {err}")),
                (None, Ok(join)) => line.push_str(&format!("; joined on {}", join.dev.as_deref().unwrap_or("?"))),
                (None, Err(err)) => line.push_str(&format!("; no route to join: {err}")),
            }
            if !r.sources.is_empty() {
                let sources: Vec<String> = r.sources.iter().map(ToString::to_string).collect();
                line.push_str(&format!("; from {}", sources.join(", ")));
            }
            if r.duplicates > 0 {
                line.push_str(&format!("; {} duplicates", r.duplicates));
            }
            out.push_str(&line);
            out.push('\n');
        }
        out.push_str(&verdict_lines(&self.verdict(), &self.hints()));
        out
    }
}

/// The closing lines of a report: the verdict, then one line per hint.
pub(super) fn verdict_lines(verdict: &str, hints: &[String]) -> String {
    let mut out = format!("verdict: {verdict}\n");
    for hint in hints {
        out.push_str(&format!("hint: {hint}\n"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payload_round_trip() {
        let p = encode(7, 3, 123_456);
        assert_eq!(decode(&p), Some((7, 3, 123_456)));
        assert_eq!(decode(&p[..20]), None);
        assert_eq!(decode(b"hello 0 from someone else..."), None);
    }

    #[test]
    fn latency_median_and_max() {
        let ms = Duration::from_millis;
        assert_eq!(latency(&[ms(3), ms(1), ms(2)]), Some((ms(2), ms(3))));
        assert_eq!(
            latency(&[ms(4), ms(1), ms(2), ms(3)]),
            Some((Duration::from_micros(2500), ms(4)))
        );
        assert_eq!(latency(&[]), None);
    }

    #[test]
    fn options_and_places() {
        let args = |list: &[&str]| list.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert!(options(&args(&["--to", "x"])).unwrap_err().contains("--from"));
        assert!(options(&args(&["--from", "x"])).unwrap_err().contains("--to"));
        let bad_group = options(&args(&["--from", "a", "--to", "b", "--group", "10.0.0.1"]));
        assert!(bad_group.unwrap_err().contains("not a multicast"));
        let o = options(&args(&[
            "--from",
            "a",
            "--to",
            "b",
            "--to",
            "c",
            "--group",
            "ff02::1:7399",
        ]))
        .unwrap();
        assert_eq!(o.to, vec!["b", "c"]);
        assert_eq!(o.port, 7399);
        assert_eq!(o.count, 10);
        assert!(Place::open("a/b").is_err());
        assert!(
            Place::open("/proc/self/ns/pid")
                .unwrap_err()
                .contains("not a network namespace")
        );
        assert_eq!(Place::open("node").unwrap().label, "node");
    }
}
