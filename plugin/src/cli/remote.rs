//! `roslan probe --listen` and `roslan probe --send`: the multicast probe between machines.
//!
//! On one machine one process can send and receive and read one clock ([`super::probe`]). Between
//! machines each side runs its own process: listeners (`--listen`, in a pod or on a node) join the groups
//! the way an unconfigured DDS does and answer every probe datagram with a unicast echo to its sender;
//! the sender (`--send`) sends unpinned to each group, and also straight to each listener it names with
//! `--to`, and counts the echoes. One clock again, the sender's: the latency is the round trip.
//!
//! So for every pair (this sender, each listener) and every group the report has delivery, loss and
//! round-trip time, and the unicast exchange tells multicast problems from everything else. When a group
//! stays silent while unicast works, the cause lies in how the LAN handles multicast, and the sender
//! looks for the usual ones: no IGMP or MLD querier (a snooping switch then forgets or never learns who
//! listens), a listener that joined on another interface or has strict rp_filter (the echo says so), a
//! gateway on the sender's multicast route. When nothing at all comes back, it is the listener's
//! absence, a firewall, or the node talking to one of its own macvlan pods, which needs the host shim.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};
use std::os::fd::AsFd;
use std::time::{Duration, Instant};

use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use serde_json::{Value, json};

use super::args::{self, Spec};
use super::probe::{Facts, Place, latency, millis, receiver_socket, run_id, verdict_lines};
use super::route::{self, LookupError, RouteAnswer};
use super::{igmp, mld};

const SPEC: Spec = &[
    ("--listen", false),
    ("--send", false),
    ("--in", true),
    ("--from", true),
    ("--to", true),
    ("--group", true),
    ("--port", true),
    ("--name", true),
    ("--for", true),
    ("--count", true),
    ("--interval-ms", true),
    ("--timeout-ms", true),
    ("--querier-wait-ms", true),
    ("--json", false),
];

/// Usage of the two modes.
pub const USAGE: &str =
    "roslan probe --listen [--in PLACE] [--name NAME] [--group G ...] [--port 7399] [--for SECONDS] [--json]
roslan probe --send [--from PLACE] --to ADDRESS [--to ADDRESS ...] [--group G ...] [--port 7399]
             [--count 10] [--interval-ms 100] [--timeout-ms 1000] [--json]
  Between machines: listeners answer every probe with a unicast echo; the sender reports, per listener and
  group, delivery, loss and round-trip time, and sends to each --to address directly as well, so that a
  multicast problem is told apart from no connection at all. Default groups: 239.255.0.1 and
  ff02::ffff:239.255.0.1 (DDS's). --for 0 listens until stopped. Exit code of --send: 0 when every --to
  listener echoed every group, 1 otherwise, 2 on usage error.";

/// DDS's default groups: Fast DDS's and Cyclone's SPDP IPv4 group, Cyclone's IPv6 one.
const DEFAULT_GROUPS: [IpAddr; 2] = [
    IpAddr::V4(Ipv4Addr::new(239, 255, 0, 1)),
    IpAddr::V6(Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0xffff, 0xefff, 0x0001)),
];
const REQUEST: &[u8; 8] = b"RLPROBE2";
const ECHO: &[u8; 8] = b"RLPECHO2";
/// What kind of probe a datagram is.
const MULTICAST: u8 = 0;
const UNICAST: u8 = 1;
/// Echo flags: the listener's own facts, which the sender cannot see.
const STRICT_RP_FILTER: u8 = 1;
const ON_ROSLAN_LINK: u8 = 2;
const HAS_ROSLAN_LINK: u8 = 4;
/// How long a listener waits in one poll before it looks at its deadline.
const POLL: Duration = Duration::from_millis(100);

/// Waits up to `limit` for a datagram on any of `sockets`: one poll for all, so that none waits behind
/// another's timeout (the round trip would count that wait).
fn wait_readable(sockets: &[&UdpSocket], limit: Duration) {
    let mut fds: Vec<PollFd> = sockets
        .iter()
        .map(|s| PollFd::new(s.as_fd(), PollFlags::POLLIN))
        .collect();
    let millis = limit.as_millis().saturating_add(1).min(i32::MAX as u128);
    let _ = poll(&mut fds, PollTimeout::try_from(millis).unwrap_or(PollTimeout::MAX));
}

/// A probe datagram: run, sequence, kind, group index, the sender's send time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Request {
    run: u64,
    seq: u32,
    kind: u8,
    group: u8,
    sent_ns: u64,
}

impl Request {
    fn encode(&self) -> Vec<u8> {
        let mut out = REQUEST.to_vec();
        out.extend_from_slice(&self.run.to_be_bytes());
        out.extend_from_slice(&self.seq.to_be_bytes());
        out.extend_from_slice(&[self.kind, self.group]);
        out.extend_from_slice(&self.sent_ns.to_be_bytes());
        out
    }

    fn decode(data: &[u8], magic: &[u8; 8]) -> Option<Request> {
        if data.len() < 30 || &data[..8] != magic {
            return None;
        }
        Some(Request {
            run: u64::from_be_bytes(data[8..16].try_into().ok()?),
            seq: u32::from_be_bytes(data[16..20].try_into().ok()?),
            kind: data[20],
            group: data[21],
            sent_ns: u64::from_be_bytes(data[22..30].try_into().ok()?),
        })
    }
}

/// An echo: the request it answers, and who the listener is.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Echo {
    request: Request,
    flags: u8,
    name: String,
    /// The interface the listener's join went to.
    joined_on: String,
}

fn short(text: &str) -> &[u8] {
    let bytes = text.as_bytes();
    &bytes[..bytes.len().min(255)]
}

impl Echo {
    fn encode(&self) -> Vec<u8> {
        let mut out = self.request.encode();
        out[..8].copy_from_slice(ECHO);
        out.push(self.flags);
        for text in [&self.name, &self.joined_on] {
            let bytes = short(text);
            out.push(bytes.len() as u8);
            out.extend_from_slice(bytes);
        }
        out
    }

    fn decode(data: &[u8]) -> Option<Echo> {
        let request = Request::decode(data, ECHO)?;
        let mut rest = data.get(30..)?;
        let flags = *rest.first()?;
        rest = &rest[1..];
        let mut text = || -> Option<String> {
            let len = usize::from(*rest.first()?);
            let value = String::from_utf8_lossy(rest.get(1..1 + len)?).into_owned();
            rest = &rest[1 + len..];
            Some(value)
        };
        let name = text()?;
        let joined_on = text()?;
        Some(Echo {
            request,
            flags,
            name,
            joined_on,
        })
    }
}

fn groups(parsed: &args::Parsed) -> Result<Vec<IpAddr>, String> {
    let given = parsed.values("--group");
    if given.is_empty() {
        return Ok(DEFAULT_GROUPS.to_vec());
    }
    let groups = given
        .iter()
        .map(|g| {
            g.parse::<IpAddr>()
                .map_err(|_| format!("--group {g:?} is not an address"))
        })
        .collect::<Result<Vec<_>, _>>()?;
    if let Some(bad) = groups.iter().find(|g| !g.is_multicast()) {
        return Err(format!(
            "--group {bad} is not a multicast address (224.0.0.0/4 or ff00::/8)"
        ));
    }
    if groups.len() > 16 {
        return Err("at most 16 --group".into());
    }
    Ok(groups)
}

fn port(parsed: &args::Parsed) -> Result<u16, String> {
    match parsed.number("--port", 7399u16, "a port number")? {
        0 => Err("--port 0: expected 1 to 65535".into()),
        port => Ok(port),
    }
}

/// Runs `--listen` or `--send`; returns the exit code.
pub fn run(argv: &[String]) -> i32 {
    let parsed = match args::parse(argv, SPEC) {
        Ok(parsed) => parsed,
        Err(msg) => return usage(&msg),
    };
    let outcome = match (parsed.flag("--listen"), parsed.flag("--send")) {
        (true, false) => listen(&parsed),
        (false, true) => send(&parsed),
        _ => Err("give exactly one of --listen and --send".to_string()),
    };
    outcome.unwrap_or_else(|msg| usage(&msg))
}

fn usage(msg: &str) -> i32 {
    eprintln!("roslan probe: {msg}\nusage: {USAGE}");
    2
}

fn place(parsed: &args::Parsed, option: &str) -> Result<Place, String> {
    let text = parsed.value(option).unwrap_or("node");
    Place::open(text).map_err(|err| format!("{option} {text}: {err}"))
}

/// What a listener heard from one sender.
#[derive(Debug, Default)]
struct Heard {
    by_group: BTreeMap<IpAddr, u32>,
    unicast: u32,
}

fn listen(parsed: &args::Parsed) -> Result<i32, String> {
    let groups = groups(parsed)?;
    let port = port(parsed)?;
    let seconds: u64 = parsed.number("--for", 30, "seconds")?;
    let place = place(parsed, "--in")?;
    let name = parsed
        .value("--name")
        .map(str::to_string)
        .or_else(|| nix::unistd::gethostname().ok().and_then(|h| h.into_string().ok()))
        .unwrap_or_else(|| "listener".into());
    // One socket per family (bound to the port, joined to that family's groups); the facts of the
    // interface the kernel picked for the join go into every echo.
    let setup = place.enter(|| {
        let mut sockets: Vec<(UdpSocket, bool)> = Vec::new();
        let mut joined = String::new();
        let mut facts = Facts::default();
        for v4 in [true, false] {
            let mine: Vec<IpAddr> = groups.iter().copied().filter(|g| g.is_ipv4() == v4).collect();
            let Some(first) = mine.first() else { continue };
            let socket = receiver_socket(*first, port)?;
            for extra in &mine[1..] {
                match extra {
                    IpAddr::V4(g) => socket.join_multicast_v4(g, &Ipv4Addr::UNSPECIFIED),
                    IpAddr::V6(g) => socket.join_multicast_v6(g, 0),
                }
                .map_err(|e| format!("join {extra}: {e}"))?;
            }
            if v4 || joined.is_empty() {
                let dev = route::lookup(None, *first).ok().and_then(|r| r.dev);
                facts = Facts::gather(dev.as_deref());
                joined = dev.unwrap_or_default();
            }
            sockets.push((socket, v4));
        }
        Ok::<_, String>((sockets, joined, facts))
    })??;
    let (sockets, joined_on, facts) = setup;
    let mut flags = 0;
    if facts.strict_rp_filter() {
        flags |= STRICT_RP_FILTER;
    }
    let roslan = facts.roslan_links();
    if !roslan.is_empty() {
        flags |= HAS_ROSLAN_LINK;
    }
    if roslan.contains(&joined_on.as_str()) {
        flags |= ON_ROSLAN_LINK;
    }
    eprintln!(
        "roslan probe: {name} listening on {} port {port} (joined on {joined_on}){}",
        groups.iter().map(ToString::to_string).collect::<Vec<_>>().join(", "),
        if seconds == 0 {
            String::new()
        } else {
            format!(" for {seconds} s")
        }
    );
    for (socket, _) in &sockets {
        socket.set_nonblocking(true).map_err(|e| e.to_string())?;
    }
    let all: Vec<&UdpSocket> = sockets.iter().map(|(s, _)| s).collect();
    let deadline = (seconds > 0).then(|| Instant::now() + Duration::from_secs(seconds));
    let mut heard: BTreeMap<IpAddr, Heard> = BTreeMap::new();
    let mut buf = [0u8; 2048];
    while deadline.is_none_or(|d| Instant::now() < d) {
        wait_readable(&all, POLL);
        for (socket, _) in &sockets {
            let Ok((len, from)) = socket.recv_from(&mut buf) else {
                continue;
            };
            let Some(request) = Request::decode(&buf[..len], REQUEST) else {
                continue;
            };
            let entry = heard.entry(from.ip()).or_default();
            match (request.kind, groups.get(usize::from(request.group))) {
                (UNICAST, _) => entry.unicast += 1,
                (_, Some(group)) => *entry.by_group.entry(*group).or_default() += 1,
                _ => continue,
            }
            let echo = Echo {
                request,
                flags,
                name: name.clone(),
                joined_on: joined_on.clone(),
            };
            let _ = socket.send_to(&echo.encode(), from);
        }
    }
    let senders: Vec<Value> = heard
        .iter()
        .map(|(from, h)| {
            json!({
                "from": from.to_string(),
                "unicast": h.unicast,
                "groups": h.by_group.iter().map(|(g, n)| (g.to_string(), json!(n))).collect::<serde_json::Map<_, _>>(),
            })
        })
        .collect();
    if parsed.flag("--json") {
        println!(
            "{}",
            json!({"listener": name, "joined_on": joined_on, "senders": senders})
        );
    } else {
        println!("roslan probe: {name} heard {} sender(s)", heard.len());
        for (from, h) in &heard {
            let groups: Vec<String> = h.by_group.iter().map(|(g, n)| format!("{g}: {n}")).collect();
            println!("  from {from}: {}; unicast: {}", groups.join(", "), h.unicast);
        }
    }
    Ok(0)
}

/// What came back from one listener (by the name in its echoes: its IPv6 echoes come from another
/// address than its IPv4 ones).
#[derive(Debug, Default)]
struct Pair {
    name: Option<String>,
    /// The addresses its echoes came from.
    addresses: std::collections::BTreeSet<IpAddr>,
    flags: u8,
    joined_on: String,
    /// Round-trip times per group index (index `groups.len()` is unicast).
    rtts: BTreeMap<u8, Vec<Duration>>,
}

struct SendOptions {
    groups: Vec<IpAddr>,
    port: u16,
    to: Vec<IpAddr>,
    count: u32,
    interval: Duration,
    timeout: Duration,
    querier_wait: Duration,
}

fn send(parsed: &args::Parsed) -> Result<i32, String> {
    let to: Vec<IpAddr> = parsed
        .values("--to")
        .iter()
        .map(|t| {
            t.parse::<IpAddr>()
                .map_err(|_| format!("--to {t:?} is not an address (the listener's)"))
        })
        .collect::<Result<_, _>>()?;
    if to.is_empty() {
        return Err("at least one --to ADDRESS (a listener's) is required".into());
    }
    let count: u32 = parsed.number("--count", 10, "a number of datagrams")?;
    if !(1..=10_000).contains(&count) {
        return Err(format!("--count {count}: expected 1 to 10000"));
    }
    let interval: u64 = parsed.number("--interval-ms", 100, "milliseconds")?;
    let timeout: u64 = parsed.number("--timeout-ms", 1000, "milliseconds")?;
    let querier: u64 = parsed.number("--querier-wait-ms", 1000, "milliseconds")?;
    if interval > 60_000 || timeout > 600_000 || querier > 600_000 {
        return Err("--interval-ms at most 60000, --timeout-ms and --querier-wait-ms at most 600000".into());
    }
    let options = SendOptions {
        groups: groups(parsed)?,
        port: port(parsed)?,
        to,
        count,
        interval: Duration::from_millis(interval),
        timeout: Duration::from_millis(timeout),
        querier_wait: Duration::from_millis(querier),
    };
    let from = place(parsed, "--from")?;
    let report = from.enter(|| exchange(&options))??;
    let ok = report.ok(&options);
    let report = Report {
        label: from.label.clone(),
        options: &options,
        result: report,
    };
    if parsed.flag("--json") {
        println!("{}", report.to_json());
    } else {
        print!("{}", report.render());
    }
    Ok(i32::from(!ok))
}

/// The sender's side, inside its place: what was sent, what came back, what the sender's own network
/// says (routes and, when needed, queriers).
struct Exchange {
    routes: Vec<Result<RouteAnswer, LookupError>>,
    facts: Facts,
    pairs: BTreeMap<String, Pair>,
    sent: u32,
    errors: Vec<String>,
    /// Per family (true: IPv4), the querier finding on the interface multicast leaves from, when a
    /// group was silent.
    queriers: BTreeMap<bool, String>,
}

impl Exchange {
    /// The listener at `to` (one of whose echoes came from that address).
    fn pair(&self, to: &IpAddr) -> Option<&Pair> {
        self.pairs.values().find(|p| p.addresses.contains(to))
    }

    fn got(&self, listener: &IpAddr, index: u8) -> usize {
        self.pair(listener).and_then(|p| p.rtts.get(&index)).map_or(0, Vec::len)
    }

    fn ok(&self, options: &SendOptions) -> bool {
        options
            .to
            .iter()
            .all(|to| (0..options.groups.len()).all(|i| self.got(to, i as u8) > 0))
    }
}

fn exchange(options: &SendOptions) -> Result<Exchange, String> {
    let run = run_id();
    let epoch = Instant::now();
    let routes: Vec<_> = options.groups.iter().map(|g| route::lookup(None, *g)).collect();
    let dev = routes.iter().find_map(|r| r.as_ref().ok().and_then(|r| r.dev.clone()));
    let facts = Facts::gather(dev.as_deref());
    let v4 = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0)).map_err(|e| format!("open a socket: {e}"))?;
    let v6 = UdpSocket::bind((Ipv6Addr::UNSPECIFIED, 0)).ok();
    for socket in std::iter::once(&v4).chain(v6.as_ref()) {
        socket.set_nonblocking(true).map_err(|e| e.to_string())?;
    }
    let both: Vec<&UdpSocket> = std::iter::once(&v4).chain(v6.as_ref()).collect();
    let socket_for = |ip: &IpAddr| if ip.is_ipv4() { Some(&v4) } else { v6.as_ref() };
    let unicast_index = options.groups.len() as u8;
    let mut pairs: BTreeMap<String, Pair> = BTreeMap::new();
    let mut errors = Vec::new();
    let mut buf = [0u8; 2048];
    let mut collect = |pairs: &mut BTreeMap<String, Pair>| {
        for socket in std::iter::once(&v4).chain(v6.as_ref()) {
            while let Ok((len, from)) = socket.recv_from(&mut buf) {
                let Some(echo) = Echo::decode(&buf[..len]) else {
                    continue;
                };
                if echo.request.run != run {
                    continue;
                }
                let now = Instant::now();
                let rtt = now.saturating_duration_since(epoch + Duration::from_nanos(echo.request.sent_ns));
                let index = if echo.request.kind == UNICAST {
                    unicast_index
                } else {
                    echo.request.group
                };
                let pair = pairs.entry(echo.name.clone()).or_default();
                pair.addresses.insert(from.ip().to_canonical());
                pair.name = Some(echo.name.clone());
                pair.flags = echo.flags;
                pair.joined_on = echo.joined_on.clone();
                pair.rtts.entry(index).or_default().push(rtt);
            }
        }
    };
    let mut sent = 0;
    for seq in 0..options.count {
        let sent_ns = u64::try_from(epoch.elapsed().as_nanos()).unwrap_or(u64::MAX);
        for (i, group) in options.groups.iter().enumerate() {
            let request = Request {
                run,
                seq,
                kind: MULTICAST,
                group: i as u8,
                sent_ns,
            };
            let Some(socket) = socket_for(group) else { continue };
            if let Err(err) = socket.send_to(&request.encode(), SocketAddr::new(*group, options.port)) {
                let text = format!("send to {group}: {err}");
                if !errors.contains(&text) {
                    errors.push(text);
                }
            }
        }
        for to in &options.to {
            let request = Request {
                run,
                seq,
                kind: UNICAST,
                group: unicast_index,
                sent_ns,
            };
            if let Some(socket) = socket_for(to) {
                let _ = socket.send_to(&request.encode(), SocketAddr::new(*to, options.port));
            }
        }
        sent += 1;
        let next = Instant::now() + options.interval;
        loop {
            collect(&mut pairs);
            let left = next.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            wait_readable(&both, left);
        }
    }
    let end = Instant::now() + options.timeout;
    loop {
        collect(&mut pairs);
        let left = end.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        wait_readable(&both, left);
    }
    let mut exchange = Exchange {
        routes,
        facts,
        pairs,
        sent,
        errors,
        queriers: BTreeMap::new(),
    };
    // A group silent for a listener that answers unicast: ask the LAN for its querier, once per family.
    for (i, group) in options.groups.iter().enumerate() {
        let silent = options
            .to
            .iter()
            .any(|to| exchange.got(to, i as u8) == 0 && exchange.got(to, unicast_index) > 0);
        let v4 = group.is_ipv4();
        if !silent || exchange.queriers.contains_key(&v4) {
            continue;
        }
        let Some(dev) = exchange.routes[i].as_ref().ok().and_then(|r| r.dev.clone()) else {
            continue;
        };
        let finding = querier_on(&dev, v4, &exchange.facts, options.querier_wait);
        exchange.queriers.insert(v4, finding);
    }
    Ok(exchange)
}

/// Whether a querier answers on `dev`: a sentence for the report.
fn querier_on(dev: &str, v4: bool, facts: &Facts, wait: Duration) -> String {
    let Some(link) = facts.links.iter().find(|l| l.name == dev) else {
        return format!("{dev} not found");
    };
    if v4 {
        let own = super::route::lookup(None, IpAddr::V4(igmp::SOLICIT_GROUP))
            .ok()
            .and_then(|r| r.source)
            .and_then(|s| match s {
                IpAddr::V4(v4) => Some(v4),
                IpAddr::V6(_) => None,
            });
        match igmp::listen(dev, own, wait) {
            Ok(igmp::Outcome::Heard(q)) => format!("an IGMPv{} querier ({}) answers on {dev}", q.version, q.source),
            Ok(_) => format!("no IGMP querier answers on {dev}"),
            Err(err) => format!("cannot listen for IGMP on {dev}: {err}"),
        }
    } else {
        match mld::listen(dev, link.index, true, wait) {
            Ok(mld::Outcome::Heard(q)) => format!("an MLDv{} querier ({}) answers on {dev}", q.version, q.source),
            Ok(_) => format!("no MLD querier answers on {dev}"),
            Err(err) => format!("cannot listen for MLD on {dev}: {err}"),
        }
    }
}

struct Report<'a> {
    label: String,
    options: &'a SendOptions,
    result: Exchange,
}

impl Report<'_> {
    fn listener_name(&self, to: &IpAddr) -> String {
        self.result
            .pair(to)
            .and_then(|p| p.name.clone())
            .unwrap_or_else(|| to.to_string())
    }

    fn verdict(&self) -> String {
        let o = self.options;
        let mut silent = Vec::new();
        for to in &o.to {
            for (i, group) in o.groups.iter().enumerate() {
                if self.result.got(to, i as u8) == 0 {
                    silent.push(format!("{} ({to}) on {group}", self.listener_name(to)));
                }
            }
        }
        if silent.is_empty() {
            "ok: every listener echoed every group".to_string()
        } else {
            format!("FAIL: nothing came back from {}", silent.join(", "))
        }
    }

    /// Likely causes for each silent pair, most specific first.
    fn hints(&self) -> Vec<String> {
        let o = self.options;
        let r = &self.result;
        let unicast = o.groups.len() as u8;
        let mut hints: Vec<String> = r
            .errors
            .iter()
            .map(|e| format!("the sender could not send: {e}"))
            .collect();
        for (i, group) in o.groups.iter().enumerate() {
            match &r.routes[i] {
                Err(err) => hints.push(format!(
                    "{} has no route for {group}: {err}; attach roslan (it routes multicast through its interface) or \
                     add one on the LAN interface",
                    self.label
                )),
                Ok(route) if route.gateway.is_some() => hints.push(format!(
                    "{}'s route for {group} has a gateway ({}): multicast goes to that one MAC address only; remove \
                     the gateway from the multicast route",
                    self.label,
                    route.describe()
                )),
                Ok(_) => {}
            }
        }
        for to in &o.to {
            let name = self.listener_name(to);
            let silent: Vec<&IpAddr> = o
                .groups
                .iter()
                .enumerate()
                .filter(|(i, _)| r.got(to, *i as u8) == 0)
                .map(|(_, g)| g)
                .collect();
            if silent.is_empty() {
                continue;
            }
            let Some(pair) = r.pair(to).filter(|_| r.got(to, unicast) > 0) else {
                // Not even unicast: nobody listens there, or nothing gets through at all.
                let same_machine_pod = !r.facts.has_macvlan()
                    && r.facts
                        .links
                        .iter()
                        .any(|l| l.macvlan_mode.is_none() && !l.loopback && l.up);
                let shim = if same_machine_pod {
                    format!(
                        "; if {to} is a macvlan pod of this very node, the node cannot reach it at all: the kernel \
                         never passes frames between a macvlan and its master, so give the node a host shim (roslan \
                         doctor's shim check, docs/install.md)"
                    )
                } else {
                    String::new()
                };
                hints.push(format!(
                    "{name} answered nothing, not even probes sent straight to it: no `roslan probe --listen` runs \
                     there on port {}, a firewall drops UDP, or there is no path between the two{shim}",
                    o.port
                ));
                continue;
            };
            let groups: Vec<String> = silent.iter().map(ToString::to_string).collect();
            let groups = groups.join(", ");
            let mut explained = false;
            if pair.flags & STRICT_RP_FILTER != 0 {
                hints.push(format!(
                    "{name} has strict rp_filter (1) on its receiving side: it drops multicast from a source it would \
                     not route back the same way; set net.ipv4.conf.all.rp_filter and the interface's to 2 there"
                ));
                explained = true;
            }
            if pair.flags & HAS_ROSLAN_LINK != 0 && pair.flags & ON_ROSLAN_LINK == 0 {
                hints.push(format!(
                    "{name} joined the groups on {}, not on its roslan interface: its multicast route is missing or \
                     another interface's wins, so it listens on the wrong network",
                    pair.joined_on
                ));
                explained = true;
            }
            for group in &silent {
                let v4 = group.is_ipv4();
                let (protocol, version) = if v4 { ("IGMP", "IGMP") } else { ("MLD", "MLD") };
                match r.queriers.get(&v4) {
                    Some(finding) if finding.starts_with("no ") => {
                        hints.push(format!(
                            "{name} answers probes sent straight to it but not {group}, and {finding}: the likely \
                             cause is a switch doing {protocol} snooping without a querier, which forwards a group \
                             only to ports whose membership report it heard and forgets them; enable the {version} \
                             querier on the switch or router (on a Linux bridge: mcast_querier 1), or turn snooping off"
                        ));
                        explained = true;
                    }
                    Some(finding) if !explained => hints.push(format!(
                        "{name} answers probes sent straight to it but not {group}, though {finding}: something between \
                         the two filters that group (snooping that missed {name}'s report, a firewall, a VM host that \
                         drops multicast); `roslan doctor` on {name}'s node checks its side"
                    )),
                    _ => {}
                }
            }
            if !explained && r.queriers.is_empty() {
                hints.push(format!("{name} answers probes sent straight to it but not {groups}"));
            }
        }
        if hints.is_empty() && r.ok(o) {
            hints.push(
                "multicast works between this sender and every listener: if DDS still does not discover, look at DDS \
                 itself (the interface it picks, ROS_DOMAIN_ID, ROS_AUTOMATIC_DISCOVERY_RANGE, a firewall on 7400 and up)"
                    .to_string(),
            );
        }
        hints
    }

    fn to_json(&self) -> Value {
        let o = self.options;
        let r = &self.result;
        let unicast = o.groups.len() as u8;
        let stats = |samples: Option<&Vec<Duration>>| {
            let got = samples.map_or(0, Vec::len) as u32;
            json!({
                "received": got,
                "sent": r.sent,
                "loss": if r.sent == 0 { Value::Null } else { json!(f64::from(r.sent.saturating_sub(got)) / f64::from(r.sent)) },
                "rtt_ms": samples.and_then(|s| latency(s)).map(|(m, x)| json!({"median": millis(m), "max": millis(x)})),
            })
        };
        let pairs: Vec<Value> =
            o.to.iter()
                .map(|to| {
                    let pair = r.pair(to);
                    let groups: serde_json::Map<String, Value> = o
                        .groups
                        .iter()
                        .enumerate()
                        .map(|(i, g)| (g.to_string(), stats(pair.and_then(|p| p.rtts.get(&(i as u8))))))
                        .collect();
                    json!({
                        "to": to.to_string(),
                        "listener": pair.and_then(|p| p.name.clone()),
                        "joined_on": pair.map(|p| p.joined_on.clone()),
                        "groups": groups,
                        "unicast": stats(pair.and_then(|p| p.rtts.get(&unicast))),
                    })
                })
                .collect();
        json!({
            "from": self.label,
            "groups": o.groups.iter().map(ToString::to_string).collect::<Vec<_>>(),
            "port": o.port,
            "count": o.count,
            "pairs": pairs,
            "queriers": r.queriers.values().collect::<Vec<_>>(),
            "ok": r.ok(o),
            "verdict": self.verdict(),
            "hints": self.hints(),
        })
    }

    fn render(&self) -> String {
        let o = self.options;
        let r = &self.result;
        let unicast = o.groups.len() as u8;
        let groups: Vec<String> = o.groups.iter().map(ToString::to_string).collect();
        let mut out = format!(
            "roslan probe --send from {}: {} datagrams to each of {} port {} every {} ms, unpinned, and to {} \
             listener(s) directly\n",
            self.label,
            o.count,
            groups.join(", "),
            o.port,
            o.interval.as_millis(),
            o.to.len()
        );
        let line = |samples: Option<&Vec<Duration>>| {
            let got = samples.map_or(0, Vec::len) as u32;
            let loss = if r.sent == 0 {
                0.0
            } else {
                f64::from(r.sent.saturating_sub(got)) * 100.0 / f64::from(r.sent)
            };
            let mut text = format!("{got}/{}, loss {loss:.0}%", r.sent);
            if let Some((median, max)) = samples.and_then(|s| latency(s)) {
                text.push_str(&format!(", rtt {:.3}/{:.3} ms", millis(median), millis(max)));
            }
            text
        };
        for to in &o.to {
            let pair = r.pair(to);
            let mut parts: Vec<String> = o
                .groups
                .iter()
                .enumerate()
                .map(|(i, g)| format!("{g} {}", line(pair.and_then(|p| p.rtts.get(&(i as u8))))))
                .collect();
            parts.push(format!("unicast {}", line(pair.and_then(|p| p.rtts.get(&unicast)))));
            out.push_str(&format!(
                "  to {} ({to}): {}\n",
                self.listener_name(to),
                parts.join("; ")
            ));
        }
        out.push_str(&verdict_lines(&self.verdict(), &self.hints()));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn datagrams_round_trip() {
        let request = Request {
            run: 7,
            seq: 3,
            kind: UNICAST,
            group: 2,
            sent_ns: 99,
        };
        assert_eq!(Request::decode(&request.encode(), REQUEST), Some(request));
        assert_eq!(Request::decode(&request.encode(), ECHO), None);
        let echo = Echo {
            request,
            flags: STRICT_RP_FILTER,
            name: "node-1".into(),
            joined_on: "net1".into(),
        };
        assert_eq!(Echo::decode(&echo.encode()), Some(echo));
        assert_eq!(Echo::decode(b"RLPECHO2 too short"), None);
    }

    #[test]
    fn options_are_checked() {
        let args = |list: &[&str]| list.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(run(&args(&["--listen", "--send"])), 2);
        assert_eq!(run(&args(&["--send"])), 2);
        assert_eq!(run(&args(&["--send", "--to", "nonsense"])), 2);
        assert_eq!(run(&args(&["--listen", "--group", "10.0.0.1"])), 2);
    }
}
