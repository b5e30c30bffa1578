//! `roslan doctor`: why DDS discovery may fail on this node, one verdict per check.
//!
//! Users' most common complaint is silence without a reason: pods get addresses, and discovery still
//! finds nothing. Each cause below is invisible from inside a pod but easy to see from the node, so
//! the doctor runs on the node (as root, in its network namespace) and checks, in order: the network
//! configuration, the master (exists, up, carrier, not wireless, macvlan mode), an IGMP and an MLD querier
//! on the LAN, rp_filter, the IPAM data directory (with `nodeBlocks`: the node's blocks and what the block
//! agent's status file says, so a node that lost the API server is diagnosed without it), the installed
//! plugin binary, and the host shim. Each check
//! prints `pass`, `warn` or `fail`, what it found and, unless it passed, the fix.
//!
//! `fail` means pods on this network cannot work as configured (ADD fails, or every pod is silent);
//! `warn` means it works only in some circumstances the doctor cannot see from here (an IGMP-snooping
//! switch, peers on another subnet, the node's own DDS). The exit code is 1 if anything failed, so the
//! doctor can gate a rollout.

use std::fs;
use std::io::ErrorKind;
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::mpsc;
use std::time::Duration;

use nix::unistd::{AccessFlags, access};
use roslan_ipam_core::blocks::file::{AgentStatus, ApiState, NodeBlocks, status_path};
use roslan_ipam_core::store::{DEFAULT_DATA_DIR, networks};
use roslan_ipam_core::{Entry, IpamError, RangeSet, Store};
use serde_json::{Value, json};

use super::args::{self, Spec};
use super::igmp::{self, Outcome, SOLICIT_GROUP};
use super::mld;
use crate::child::{ask_version, run_with_deadline};
use crate::config::{IpamConf, MacvlanMode, MasterSpec, NetConf, NodeBlocksConf};
use crate::master;
use crate::netlink::{Link, Netlink, Runtime};
use crate::sysctl::{self, Key};
use roslan_ipam_core::file::{Links, read_regular};

/// Where the plugin is looked for when `--cni-bin-dir` is not given: MicroK8s first, then the usual
/// CNI directory (on MicroK8s `/opt/cni/bin` is often a link to the snap's, found once).
pub const BIN_DIRS: [&str; 2] = ["/var/snap/microk8s/current/opt/cni/bin", "/opt/cni/bin"];
/// The querier wait: long enough for a solicited answer (milliseconds on a healthy LAN) with margin;
/// general queries come only every 125 s by default, so waiting for one is an explicit choice.
const DEFAULT_QUERIER_WAIT: Duration = Duration::from_secs(3);
/// How long the doctor waits for the IPAM store's lock before calling it stuck.
const LOCK_WAIT: Duration = Duration::from_secs(5);
/// How long the installed binary may take to answer VERSION.
const BINARY_WAIT: Duration = Duration::from_secs(5);

const SPEC: Spec = &[
    ("--config", true),
    ("--json", false),
    ("--querier-wait", true),
    ("--passive", false),
    ("--cni-bin-dir", true),
];

/// Usage of `roslan doctor`.
pub const USAGE: &str =
    "roslan doctor [--config FILE] [--json] [--querier-wait SECONDS] [--passive] [--cni-bin-dir DIR]
  Run on a node, as root, in the node's network namespace. FILE is the NetworkAttachmentDefinition's
  spec.config (JSON; a .conflist works too); without it the default-route interface is checked.
  --querier-wait: how long to wait for an IGMP querier (default 3; 0 skips the check).
  --passive: only listen for queries; by default one is solicited with a leave for 239.255.82.76.
  Exit code: 0 no failure, 1 at least one failure, 2 usage error.";

/// How a check came out.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Status {
    /// Nothing to do.
    Pass,
    /// Works only in some circumstances; read the fix.
    Warn,
    /// Pods on this network cannot work until it is fixed.
    Fail,
}

impl Status {
    /// The word printed and put in the JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Pass => "pass",
            Status::Warn => "warn",
            Status::Fail => "fail",
        }
    }
}

/// One check's verdict.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Finding {
    /// Short name of the check (`master`, `carrier`, `querier`...).
    pub check: &'static str,
    /// Verdict.
    pub status: Status,
    /// What was found.
    pub detail: String,
    /// What to do, for warn and fail.
    pub fix: Option<String>,
}

impl Finding {
    fn pass(check: &'static str, detail: impl Into<String>) -> Finding {
        Finding {
            check,
            status: Status::Pass,
            detail: detail.into(),
            fix: None,
        }
    }

    fn warn(check: &'static str, detail: impl Into<String>, fix: impl Into<String>) -> Finding {
        Finding {
            check,
            status: Status::Warn,
            detail: detail.into(),
            fix: Some(fix.into()),
        }
    }

    fn fail(check: &'static str, detail: impl Into<String>, fix: impl Into<String>) -> Finding {
        Finding {
            check,
            status: Status::Fail,
            detail: detail.into(),
            fix: Some(fix.into()),
        }
    }

    /// `{check, status, detail, fix}`, `fix` null when the check passed.
    pub fn to_json(&self) -> Value {
        json!({
            "check": self.check,
            "status": self.status.as_str(),
            "detail": self.detail,
            "fix": self.fix,
        })
    }
}

/// What the command line asked for.
#[derive(Debug)]
struct Options {
    config: Option<PathBuf>,
    json: bool,
    querier_wait: Duration,
    passive: bool,
    bin_dirs: Vec<PathBuf>,
}

fn options(argv: &[String]) -> Result<Options, String> {
    let parsed = args::parse(argv, SPEC)?;
    let seconds: f64 = parsed.number(
        "--querier-wait",
        DEFAULT_QUERIER_WAIT.as_secs_f64(),
        "a number of seconds",
    )?;
    let querier_wait = Duration::try_from_secs_f64(seconds)
        .ok()
        .filter(|d| *d <= Duration::from_secs(3600))
        .ok_or_else(|| format!("--querier-wait {seconds}: expected 0 to 3600 seconds"))?;
    let bin_dirs = match parsed.value("--cni-bin-dir") {
        Some(dir) => vec![PathBuf::from(dir)],
        None => BIN_DIRS.iter().map(PathBuf::from).collect(),
    };
    Ok(Options {
        config: parsed.value("--config").map(PathBuf::from),
        json: parsed.flag("--json"),
        querier_wait,
        passive: parsed.flag("--passive"),
        bin_dirs,
    })
}

/// Runs the doctor; returns the exit code.
pub fn run(argv: &[String]) -> i32 {
    let options = match options(argv) {
        Ok(options) => options,
        Err(msg) => {
            eprintln!("roslan doctor: {msg}\nusage: {USAGE}");
            return 2;
        }
    };
    let config = match &options.config {
        None => None,
        Some(path) => match read_regular(path, crate::cni::env::MAX_STDIN as u64, Links::Follow) {
            Ok(text) => Some((path.as_path(), text)),
            Err(err) => {
                eprintln!("roslan doctor: cannot read the configuration: {err}");
                return 2;
            }
        },
    };
    let findings = diagnose(&options, config.as_ref().map(|(p, t)| (*p, t.as_slice())));
    if options.json {
        let list: Vec<Value> = findings.iter().map(Finding::to_json).collect();
        println!("{}", Value::Array(list));
    } else {
        print!("{}", render(&findings));
    }
    i32::from(findings.iter().any(|f| f.status == Status::Fail))
}

/// The human report: one line per check, the fix indented below warnings and failures.
pub fn render(findings: &[Finding]) -> String {
    let width = findings.iter().map(|f| f.check.len()).max().unwrap_or(0);
    let mut out = format!("roslan doctor {}\n", env!("CARGO_PKG_VERSION"));
    for f in findings {
        out.push_str(&format!("{}  {:width$}  {}\n", f.status.as_str(), f.check, f.detail));
        if let Some(fix) = &f.fix {
            out.push_str(&format!("{:indent$}fix: {fix}\n", "", indent = width + 8));
        }
    }
    let count = |s: Status| findings.iter().filter(|f| f.status == s).count();
    out.push_str(&format!(
        "{} fail, {} warn, {} pass\n",
        count(Status::Fail),
        count(Status::Warn),
        count(Status::Pass)
    ));
    out
}

fn diagnose(options: &Options, config: Option<(&Path, &[u8])>) -> Vec<Finding> {
    let mut out = Vec::new();
    let conf = check_config(config, &mut out);
    let spec = conf.as_ref().map_or(MasterSpec::DefaultRoute, |c| c.master.clone());
    let runtime = Runtime::new();
    let host = runtime
        .as_ref()
        .map_err(ToString::to_string)
        .and_then(|rt| rt.connect().map_err(|e| e.to_string()));
    match &host {
        Ok(host) => {
            if let Some(link) = check_master(host, &spec, &mut out) {
                check_link(&link, conf.as_ref(), &mut out);
                check_querier(host, &link, options, &mut out);
                check_rp_filter(&link, &mut out);
                check_shim(host, &link, &mut out);
            }
        }
        Err(err) => out.push(Finding::fail(
            "master",
            format!("cannot talk to the kernel over netlink: {err}"),
            "run roslan doctor as root on the node, in the node's network namespace",
        )),
    }
    check_ipam(conf.as_ref(), &options.bin_dirs, &mut out);
    check_binary(&options.bin_dirs, conf.as_ref(), &mut out);
    out
}

/// A .conflist holds the plugin in `plugins[]`, with `name` and `cniVersion` at the top.
fn roslan_entry(value: Value) -> Value {
    let Some(plugins) = value.get("plugins").and_then(Value::as_array) else {
        return value;
    };
    let Some(mut entry) = plugins
        .iter()
        .find(|p| p.get("type").and_then(Value::as_str) == Some("roslan"))
        .or_else(|| plugins.first())
        .cloned()
    else {
        return value;
    };
    for key in ["name", "cniVersion"] {
        if let (Some(top), Some(obj)) = (value.get(key), entry.as_object_mut()) {
            obj.entry(key).or_insert_with(|| top.clone());
        }
    }
    entry
}

fn check_config(config: Option<(&Path, &[u8])>, out: &mut Vec<Finding>) -> Option<NetConf> {
    let Some((path, text)) = config else {
        out.push(Finding::pass(
            "config",
            "none given: checking the default-route interface with default settings (bridge mode, \
             /var/lib/cni/networks); pass --config with the NetworkAttachmentDefinition's spec.config for a full check",
        ));
        return None;
    };
    let extract = "the file must hold the JSON of the NetworkAttachmentDefinition's spec.config: \
                   kubectl get net-attach-def NAME -o jsonpath='{.spec.config}' > FILE";
    let parsed = NetConf::decode(text).and_then(|value| NetConf::parse(&roslan_entry(value)));
    let (conf, problems) = match parsed {
        Ok(parsed) => parsed,
        Err(err) => {
            out.push(Finding::fail("config", format!("{}: {err}", path.display()), extract));
            return None;
        }
    };
    if let Err(err) = conf.refuse_unsupported() {
        out.push(Finding::fail("config", format!("{}: {err}", path.display()), extract));
        return None;
    }
    let what = format!(
        "network {:?} (cniVersion {}, type {:?}) from {}",
        conf.name,
        conf.version.as_str(),
        conf.plugin_type,
        path.display()
    );
    if !problems.is_empty() {
        let list: Vec<String> = problems.iter().map(ToString::to_string).collect();
        out.push(Finding::fail(
            "config",
            format!("{what}: {} problem(s): {}", problems.len(), list.join("; ")),
            "edit the keys named; ADD refuses this configuration (CNI code 7). `roslan validate FILE` lists the same",
        ));
    } else if conf.plugin_type != "roslan" {
        out.push(Finding::warn(
            "config",
            format!(
                "{what}: pods on this network are not attached by roslan, so they get none of its multicast routing"
            ),
            "set \"type\": \"roslan\" (the reference macvlan's keys are accepted as they are)",
        ));
    } else if !conf.warnings.is_empty() {
        out.push(Finding::warn(
            "config",
            format!("{what}; ignored: {}", conf.warnings.join("; ")),
            "remove or correct the keys named; ADD ignores them",
        ));
    } else {
        out.push(Finding::pass("config", what));
    }
    Some(conf)
}

fn origin(spec: &MasterSpec) -> String {
    match spec {
        MasterSpec::Name(name) => format!("\"master\": {name:?}"),
        MasterSpec::DefaultRoute => "the interface of the default route".to_string(),
        MasterSpec::Subnet(subnet) => format!("holds an address in masterSubnet {subnet}"),
    }
}

fn check_master(host: &Netlink<'_>, spec: &MasterSpec, out: &mut Vec<Finding>) -> Option<Link> {
    let addresses = |link: &Link| -> String {
        let list: Vec<String> = host
            .addresses()
            .unwrap_or_default()
            .into_iter()
            .filter(|a| a.index == link.index)
            .map(|a| a.net.to_string())
            .collect();
        if list.is_empty() {
            "no addresses".to_string()
        } else {
            list.join(", ")
        }
    };
    match master::resolve(host, spec) {
        Ok(link) => {
            out.push(Finding::pass(
                "master",
                format!("{} ({}); {}", link.name, origin(spec), addresses(&link)),
            ));
            Some(link)
        }
        Err(err) => match master::find(host, spec)
            .ok()
            .filter(|l| !l.loopback && master::is_wireless(&l.name))
        {
            // The wireless check below explains the refusal.
            Some(link) => {
                out.push(Finding::pass(
                    "master",
                    format!("{} ({}); {}", link.name, origin(spec), addresses(&link)),
                ));
                Some(link)
            }
            None => {
                out.push(Finding::fail(
                    "master",
                    err.to_string(),
                    "set \"master\" to this node's LAN interface (one of those listed), or \"masterSubnet\" to the \
                     LAN's subnet so that every node finds its own interface whatever its name",
                ));
                None
            }
        },
    }
}

fn check_link(link: &Link, conf: Option<&NetConf>, out: &mut Vec<Finding>) {
    let name = &link.name;
    if !link.up {
        out.push(Finding::fail(
            "link",
            format!("{name} is down: no pod attached to it can send or receive anything"),
            format!(
                "ip link set {name} up; then find what took it down (NetworkManager, netplan, systemd-networkd) \
                 so it stays up after a reboot"
            ),
        ));
    } else if !link.multicast {
        out.push(Finding::warn(
            "link",
            format!("{name} is up, but its MULTICAST flag is off: the node's own multicast on it does not work"),
            format!("ip link set {name} multicast on"),
        ));
    } else {
        out.push(Finding::pass(
            "link",
            format!("{name} is up, MULTICAST on, mtu {}", link.mtu),
        ));
    }
    if link.up {
        if link.lower_up {
            out.push(Finding::pass("carrier", format!("{name} has carrier")));
        } else {
            out.push(Finding::fail(
                "carrier",
                format!(
                    "{name} has no carrier (cable unplugged, switch port disabled, or the other end is down): every \
                     pod attached to it is silent, and DDS discovery finds nothing"
                ),
                format!(
                    "plug the cable in or enable the switch port; `ip link show {name}` shows NO-CARRIER until the \
                     link comes back"
                ),
            ));
        }
    }
    if master::is_wireless(name) {
        out.push(Finding::fail(
            "wireless",
            format!(
                "{name} is a wireless interface: an access point drops frames from MAC addresses it has not \
                 associated, and every macvlan pod has its own MAC, so pods get addresses and no traffic \
                 (roslan refuses this master)"
            ),
            format!(
                "use a wired master, or ipvlan in L2 mode (it shares {name}'s MAC) with roslan's IPAM: \
                 {{\"type\": \"ipvlan\", \"mode\": \"l2\", \"master\": \"{name}\", \
                 \"ipam\": {{\"type\": \"roslan-ipam\", ...}}}}"
            ),
        ));
    } else {
        out.push(Finding::pass("wireless", format!("{name} is not a wireless interface")));
    }
    let mode = conf.map_or(MacvlanMode::Bridge, |c| c.mode);
    let defaulted = if conf.is_some() { "" } else { " (the default)" };
    out.push(match mode {
        MacvlanMode::Bridge => Finding::pass(
            "mode",
            format!("bridge{defaulted}: pods on this node hear each other's multicast"),
        ),
        MacvlanMode::Private => Finding::warn(
            "mode",
            "private: pods on this node cannot reach each other at all, so same-node DDS peers never discover \
             each other",
            "set \"mode\": \"bridge\" (or omit it)",
        ),
        MacvlanMode::Vepa => Finding::warn(
            "mode",
            format!(
                "vepa: pods on this node reach each other only if the switch port of {name} reflects frames back \
                 (hairpin / reflective relay), which most switches do not"
            ),
            "set \"mode\": \"bridge\" unless the switch is configured for VEPA",
        ),
        MacvlanMode::Passthru => Finding::warn(
            "mode",
            format!("passthru: only one pod per node can attach to {name}; the next ADD fails"),
            "set \"mode\": \"bridge\" to attach several pods",
        ),
    });
    if let Some(mtu) = conf.and_then(|c| c.mtu).filter(|mtu| *mtu > link.mtu) {
        out.push(Finding::fail(
            "mtu",
            format!(
                "\"mtu\": {mtu} is larger than {name}'s MTU {}: every ADD fails",
                link.mtu
            ),
            format!(
                "set \"mtu\" to at most {} or omit it (pods then inherit the master's)",
                link.mtu
            ),
        ));
    }
}

fn check_querier(host: &Netlink<'_>, link: &Link, options: &Options, out: &mut Vec<Finding>) {
    if options.querier_wait.is_zero() {
        return;
    }
    let name = &link.name;
    if !link.up || !link.lower_up {
        out.push(Finding::warn(
            "querier",
            format!("not checked: {name} is down or has no carrier"),
            "fix the link first, then run the doctor again",
        ));
        return;
    }
    let own: Vec<Ipv4Addr> = host
        .addresses()
        .unwrap_or_default()
        .into_iter()
        .filter_map(|a| match a.net.ip() {
            IpAddr::V4(v4) => Some((a.index, v4)),
            IpAddr::V6(_) => None,
        })
        .filter(|(index, _)| *index == link.index)
        .map(|(_, ip)| ip)
        .collect();
    let solicit_from = if options.passive { None } else { own.first().copied() };
    let wait = options.querier_wait;
    let seconds = format!("{}s", wait.as_secs_f64());
    // IPv6 at the same time, so that the doctor waits once.
    let has_link_local = host
        .addresses()
        .unwrap_or_default()
        .iter()
        .any(|a| a.index == link.index && matches!(a.net.ip(), IpAddr::V6(v6) if v6.is_unicast_link_local()));
    let (mld_master, mld_index, solicit6) = (name.clone(), link.index, !options.passive && has_link_local);
    let mld = std::thread::spawn(move || mld::listen(&mld_master, mld_index, solicit6, wait));
    let snooping = "harmless if no switch on this LAN does IGMP snooping (unmanaged switches flood multicast). A \
                    snooping switch without a querier forgets each multicast group about 260 s after the last query, \
                    and from then on newly started DDS peers discover nothing: enable the IGMP querier on the switch \
                    or the router (on a Linux bridge: ip link set BRIDGE type bridge mcast_querier 1), or turn \
                    snooping off";
    match igmp::listen(name, solicit_from, wait) {
        Err(err) => out.push(Finding::warn(
            "querier",
            format!("cannot listen for IGMP on {name}: {err}"),
            "run roslan doctor as root (it needs CAP_NET_RAW)",
        )),
        Ok(Outcome::Heard(query)) => {
            let who = if query.source.is_unspecified() {
                "with no address (0.0.0.0: a switch or bridge querier)".to_string()
            } else if own.contains(&query.source) {
                format!("{} (this node)", query.source)
            } else {
                query.source.to_string()
            };
            let how = if query.solicited {
                format!("answered a leave for {SOLICIT_GROUP} with a group-specific query")
            } else if query.group.is_unspecified() {
                "general query".to_string()
            } else {
                format!("group-specific query for {}", query.group)
            };
            out.push(Finding::pass(
                "querier",
                format!(
                    "IGMPv{} querier {who} heard on {name} after {} ms ({how})",
                    query.version,
                    query.after.as_millis()
                ),
            ));
        }
        Ok(Outcome::Silent { solicited: true }) => out.push(Finding::warn(
            "querier",
            format!(
                "no IGMP querier on {name}: nothing answered a leave for {SOLICIT_GROUP} within {seconds} (a switch \
                 set to immediate leave never answers one: --querier-wait 130 also listens through a whole \
                 general-query interval)"
            ),
            snooping,
        )),
        Ok(Outcome::Silent { solicited: false } | Outcome::Tentative) => {
            let why = if options.passive {
                "listened only (--passive)"
            } else {
                "could not solicit one: the master has no IPv4 address"
            };
            out.push(Finding::warn(
                "querier",
                format!(
                    "no IGMP query heard on {name} within {seconds} ({why}); queriers send general queries every \
                     125 s by default, so run with --querier-wait 130 to be sure"
                ),
                snooping,
            ));
        }
    }
    match mld.join() {
        Ok(outcome) => push_mld_finding(name, outcome, has_link_local, options, &seconds, out),
        Err(_) => out.push(Finding::warn(
            "mld-querier",
            format!("listening for MLD on {name} failed"),
            "run roslan doctor again",
        )),
    }
}

fn push_mld_finding(
    name: &str,
    outcome: std::io::Result<mld::Outcome>,
    has_link_local: bool,
    options: &Options,
    seconds: &str,
    out: &mut Vec<Finding>,
) {
    let snooping = "harmless if no switch on this LAN does MLD snooping, and for DDS over IPv4 only. A snooping switch \
                    without an MLD querier forgets each IPv6 multicast group a few minutes after the last query, and \
                    from then on newly started IPv6 DDS peers discover nothing: enable the MLD querier on the switch \
                    or the router (on a Linux bridge: ip link set BRIDGE type bridge mcast_querier 1, with an IPv6 \
                    address on the bridge), or turn snooping off";
    match outcome {
        Err(err) => out.push(Finding::warn(
            "mld-querier",
            format!("cannot listen for MLD on {name}: {err}"),
            "run roslan doctor as root (it needs CAP_NET_RAW)",
        )),
        Ok(mld::Outcome::Heard(query)) => {
            let how = if query.solicited {
                format!(
                    "answered a leave for {} with a multicast-address-specific query",
                    mld::SOLICIT_GROUP
                )
            } else if query.group.is_unspecified() {
                "general query".to_string()
            } else {
                format!("multicast-address-specific query for {}", query.group)
            };
            out.push(Finding::pass(
                "mld-querier",
                format!(
                    "MLDv{} querier {} heard on {name} after {} ms ({how})",
                    query.version,
                    query.source,
                    query.after.as_millis()
                ),
            ));
        }
        Ok(mld::Outcome::Silent { .. }) if !has_link_local && !options.passive => out.push(Finding::pass(
            "mld-querier",
            format!("{name} has no IPv6 link-local address (IPv6 is off there): no IPv6 multicast, no MLD to check"),
        )),
        Ok(mld::Outcome::Tentative) => out.push(Finding::warn(
            "mld-querier",
            format!(
                "no MLD query heard on {name} within {seconds}, and none could be solicited: its IPv6 link-local \
                 address was in duplicate address detection all along (the link has just come up); run the doctor \
                 again in a few seconds"
            ),
            snooping,
        )),
        Ok(mld::Outcome::Silent { solicited: true }) => out.push(Finding::warn(
            "mld-querier",
            format!(
                "no MLD querier on {name}: nothing answered a leave for {} within {seconds} (--querier-wait 130 also \
                 listens through a whole general-query interval)",
                mld::SOLICIT_GROUP
            ),
            snooping,
        )),
        Ok(mld::Outcome::Silent { solicited: false }) => out.push(Finding::warn(
            "mld-querier",
            format!(
                "no MLD query heard on {name} within {seconds} (listened only, --passive); queriers send general \
                 queries every 125 s by default, so run with --querier-wait 130 to be sure"
            ),
            snooping,
        )),
    }
}

fn check_rp_filter(link: &Link, out: &mut Vec<Finding>) {
    let read = |ifname: &str| {
        sysctl::read(&Key::interface("ipv4", ifname, "rp_filter"))
            .ok()
            .and_then(|v| v.parse::<u8>().ok())
    };
    let (Some(all), Some(own)) = (read("all"), read(&link.name)) else {
        out.push(Finding::warn(
            "rp_filter",
            "cannot read net.ipv4.conf.{all,<master>}.rp_filter from /proc/sys",
            "run the doctor on the node itself, with /proc mounted",
        ));
        return;
    };
    let name = &link.name;
    let values = format!("net.ipv4.conf.all.rp_filter={all}, net.ipv4.conf.{name}.rp_filter={own}");
    match all.max(own) {
        0 => out.push(Finding::pass("rp_filter", format!("off ({values})"))),
        1 => out.push(Finding::warn(
            "rp_filter",
            format!(
                "strict ({values}; the kernel applies the larger): the node drops multicast whose source it would \
                 not route back through {name}, such as DDS peers on another subnet or VLAN. Pods have their own \
                 setting in their namespaces; this one affects the node, hostNetwork pods and the host shim"
            ),
            format!(
                "sysctl -w net.ipv4.conf.all.rp_filter=2 net.ipv4.conf.{name}.rp_filter=2 (loose), and persist it \
                 in /etc/sysctl.d/"
            ),
        )),
        _ => out.push(Finding::pass("rp_filter", format!("loose ({values})"))),
    }
}

fn check_shim(host: &Netlink<'_>, master_link: &Link, out: &mut Vec<Finding>) {
    let name = &master_link.name;
    let links = host.links().unwrap_or_default();
    let on_master = |l: &&Link| l.macvlan_mode.is_some() && l.parent == Some(master_link.index);
    let marked = |l: &&Link| l.alias.as_deref().is_some_and(crate::alias::is_shim);
    let shim = links
        .iter()
        .filter(on_master)
        .find(marked)
        .or_else(|| links.iter().find(on_master));
    let Some(shim) = shim else {
        out.push(Finding::warn(
            "shim",
            format!(
                "no host shim (a macvlan on {name} in the node's namespace): the node itself, and hostNetwork pods \
                 such as a ros2 CLI or a driver running on it, can neither reach nor hear this node's macvlan pods \
                 (the kernel never passes frames between a macvlan and its master). Pods on other nodes and LAN \
                 hosts are not affected"
            ),
            format!(
                "let the installer create it (--shim-master {name} --shim-address <a free LAN address>/32 \
                 --shim-route <the pod range>; see docs/install.md), or by hand: ip link add roslan-shim link {name} \
                 type macvlan mode bridge; ip addr add <address>/32 dev roslan-shim; ip link set roslan-shim up; \
                 ip route add <pod range> dev roslan-shim"
            ),
        ));
        return;
    };
    let what = format!("{} (macvlan on {name})", shim.name);
    if shim.macvlan_mode != Some(MacvlanMode::Bridge) {
        out.push(Finding::warn(
            "shim",
            format!(
                "{what} is in {} mode: only bridge mode reaches sibling macvlans",
                shim.macvlan_mode.map_or("an unknown", |m| m.as_str())
            ),
            format!("recreate {} with mode bridge", shim.name),
        ));
    } else if !shim.up {
        out.push(Finding::warn(
            "shim",
            format!("{what} is down"),
            format!("ip link set {} up", shim.name),
        ));
    } else {
        out.push(Finding::pass(
            "shim",
            format!("{what}, bridge mode, up: the node reaches its own pods through it"),
        ));
    }
}

/// Runs `f` on a thread and gives up waiting after `limit` (the thread is left to finish or die with
/// the process): a store lock held by a stuck ADD must not hang the doctor.
fn within<T: Send + 'static>(limit: Duration, f: impl FnOnce() -> T + Send + 'static) -> Option<T> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(limit).ok()
}

/// Why `dir` is unusable, or `None` when it is a writable directory or can be created.
fn dir_problem(dir: &Path) -> Option<(String, String)> {
    let shown = dir.display();
    match fs::symlink_metadata(dir) {
        Ok(meta) if meta.file_type().is_symlink() => Some((
            format!(
                "{shown} is a symbolic link: roslan never follows links in its data directory, so every ADD \
                 fails (CNI code 5)"
            ),
            format!("make {shown} a real directory, or set ipam.dataDir to the link's target"),
        )),
        Ok(meta) if !meta.is_dir() => Some((
            format!("{shown} exists and is not a directory: every ADD fails"),
            "remove it, or set ipam.dataDir elsewhere".to_string(),
        )),
        Ok(_) => access(dir, AccessFlags::W_OK).err().map(|errno| {
            (
                format!("{shown} is not writable ({}): every ADD fails", errno.desc()),
                "remount the filesystem read-write or fix the permissions (roslan runs as root)".to_string(),
            )
        }),
        Err(err) if err.kind() == ErrorKind::NotFound => {
            let parent = dir.ancestors().skip(1).find(|p| p.exists())?;
            access(parent, AccessFlags::W_OK).err().map(|errno| {
                (
                    format!(
                        "{shown} does not exist and cannot be created: {} is not writable ({})",
                        parent.display(),
                        errno.desc()
                    ),
                    "create it, or set ipam.dataDir to a writable place".to_string(),
                )
            })
        }
        Err(err) => Some((format!("cannot inspect {shown}: {err}"), "check the path".to_string())),
    }
}

/// Reservations of a network, counted from one listing without the lock (the store's own snapshot).
fn count_reservations(data_dir: &Path, network: &str) -> usize {
    match Store::open_existing(data_dir, network) {
        Ok(Some(store)) => store.addresses().map_or(0, |ips| ips.len()),
        _ => 0,
    }
}

fn plugin_in(dirs: &[PathBuf], name: &str) -> Option<PathBuf> {
    dirs.iter().map(|d| d.join(name)).find(|p| p.is_file())
}

fn dir_list(dirs: &[PathBuf]) -> String {
    dirs.iter()
        .map(|d| d.display().to_string())
        .collect::<Vec<_>>()
        .join(" or ")
}

fn check_ipam(conf: Option<&NetConf>, bin_dirs: &[PathBuf], out: &mut Vec<Finding>) {
    let (data_dir, network, sets) = match conf.map(|c| (&c.ipam, c)) {
        None => (PathBuf::from(DEFAULT_DATA_DIR), None, Vec::new()),
        Some((IpamConf::None, _)) => {
            out.push(Finding::pass(
                "ipam",
                "no \"ipam\": a layer-2-only attachment, pods get no address from roslan",
            ));
            return;
        }
        Some((IpamConf::Delegate { plugin }, _)) => {
            out.push(match plugin_in(bin_dirs, plugin) {
                Some(path) => Finding::pass(
                    "ipam",
                    format!("ipam.type {plugin:?}: addresses come from {}", path.display()),
                ),
                None => Finding::fail(
                    "ipam",
                    format!(
                        "ipam.type {plugin:?}: no such plugin in {}: every ADD fails (CNI code 108)",
                        dir_list(bin_dirs)
                    ),
                    format!("install the {plugin} plugin there, or fix ipam.type"),
                ),
            });
            return;
        }
        Some((IpamConf::Builtin(builtin), conf)) => {
            if let Some(blocks) = &builtin.node_blocks {
                check_blocks(&conf.name, blocks, out);
            }
            let sets = match builtin.node_sets(&conf.name) {
                Ok(sets) => sets.to_vec(),
                // check_blocks said why and what to do.
                Err(_) if builtin.node_blocks.is_some() => Vec::new(),
                Err(err) => {
                    out.push(Finding::fail(
                        "ipam-free",
                        err.to_string(),
                        "add this node to ipam.nodeRanges, or give \"ranges\" for nodes without an entry",
                    ));
                    Vec::new()
                }
            };
            (builtin.data_dir.clone(), Some(conf.name.clone()), sets)
        }
    };
    if let Some((detail, fix)) = dir_problem(&data_dir) {
        out.push(Finding::fail("ipam-dir", detail, fix));
        return;
    }
    let Some(network) = network else {
        // No configuration: say what the default directory holds.
        let networks: Vec<String> = networks(&data_dir)
            .unwrap_or_default()
            .into_iter()
            .map(|name| format!("{name} ({} reservations)", count_reservations(&data_dir, &name)))
            .collect();
        out.push(Finding::pass(
            "ipam-dir",
            if networks.is_empty() {
                format!("{}: usable, no networks yet", data_dir.display())
            } else {
                format!("{}: usable; {}", data_dir.display(), networks.join(", "))
            },
        ));
        return;
    };
    let net_dir = data_dir.join(&network);
    let store = match Store::open_existing(&data_dir, &network) {
        Ok(store) => store,
        Err(IpamError::Symlink(link)) if link == net_dir => {
            out.push(Finding::fail(
                "ipam-dir",
                format!(
                    "{} is a symbolic link: roslan never follows it, so every ADD on this network fails (CNI code 5)",
                    net_dir.display()
                ),
                "make it a real directory (move the reservations into it)",
            ));
            return;
        }
        Err(err) => {
            out.push(Finding::fail(
                "ipam-dir",
                format!("{}: {err}", net_dir.display()),
                "fix the directory's permissions or filesystem; ADD and DEL need it",
            ));
            return;
        }
    };
    let entries: Vec<Entry> = if let Some(store) = store {
        let read = within(LOCK_WAIT, move || -> Result<Vec<Entry>, String> {
            let locked = store.lock().map_err(|e| e.to_string())?;
            locked.entries().map_err(|e| e.to_string())
        });
        match read {
            None => {
                out.push(Finding::warn(
                    "ipam-dir",
                    format!(
                        "{}: its lock has been held for more than {} s; an ADD or DEL (roslan or host-local) is stuck \
                         holding it, and every ADD on this network waits behind it",
                        net_dir.display(),
                        LOCK_WAIT.as_secs()
                    ),
                    format!("find the holder with `fuser -v {}/lock` and end it", net_dir.display()),
                ));
                return;
            }
            Some(Err(err)) => {
                out.push(Finding::fail(
                    "ipam-dir",
                    format!("{}: {err}", net_dir.display()),
                    "fix the directory's permissions or filesystem; ADD and DEL need it",
                ));
                return;
            }
            Some(Ok(entries)) => entries,
        }
    } else {
        Vec::new()
    };
    let foreign: Vec<&Entry> = entries.iter().filter(|e| e.owner.is_foreign()).collect();
    out.push(Finding::pass(
        "ipam-dir",
        if net_dir.is_dir() {
            format!(
                "{}: writable, {} reservation(s), {} of them foreign-host marks",
                net_dir.display(),
                entries.len(),
                foreign.len()
            )
        } else {
            format!("{}: no reservations yet (the first ADD creates it)", net_dir.display())
        },
    ));
    check_free(&sets, &entries, out);
    if !foreign.is_empty() {
        let list: Vec<String> = foreign
            .iter()
            .map(|e| {
                if e.owner.ifname.is_empty() {
                    e.ip.to_string()
                } else {
                    format!("{} ({})", e.ip, e.owner.ifname)
                }
            })
            .collect();
        out.push(Finding::warn(
            "foreign",
            format!(
                "{} address(es) of the range answered an ARP probe, so another device on the LAN uses them: {}",
                foreign.len(),
                list.join(", ")
            ),
            "exclude those addresses from the range (or give the devices addresses outside it); GC releases the \
             marks so they are probed again later",
        ));
    }
}

/// How old the agent's status file may be before the agent counts as not running: it rewrites the file
/// at least every 10 s.
const AGENT_STALE: Duration = Duration::from_secs(60);

/// `nodeBlocks`: what the node holds (the blocks file ADD reads) and what its agent says (the status
/// file next to it). Neither needs the API server: the doctor diagnoses a node that lost it.
fn check_blocks(network: &str, conf: &NodeBlocksConf, out: &mut Vec<Finding>) {
    let file = conf.file.display();
    let agent = "run the roslan DaemonSet on this node (kubectl apply -k manifests/); its block agent \
                 (roslan-install --lease-blocks) leases the node's blocks: kubectl -n roslan get pods -o wide shows \
                 whether it runs here, kubectl -n roslan logs <pod> what it does";
    match NodeBlocks::read(&conf.file) {
        Ok(None) => out.push(Finding::fail(
            "blocks",
            format!(
                "{file} does not exist: no block of {network:?} is leased for this node, every ADD fails with code 11"
            ),
            agent,
        )),
        Err(err) => out.push(Finding::fail("blocks", err.to_string(), agent)),
        Ok(Some(held)) => {
            let mine = held.of(network);
            if mine.is_empty() {
                out.push(Finding::fail(
                    "blocks",
                    format!(
                        "{file} lists no block of {network:?} for node {:?}: every ADD on this network fails with code 11",
                        held.node
                    ),
                    agent,
                ));
            } else {
                let list: Vec<String> = mine.iter().map(ToString::to_string).collect();
                out.push(Finding::pass(
                    "blocks",
                    format!(
                        "{} block(s) of {network:?} leased for node {:?}: {}",
                        mine.len(),
                        held.node,
                        list.join(", ")
                    ),
                ));
            }
        }
    }
    let status_file = status_path(&conf.file);
    let shown = status_file.display();
    let status = match AgentStatus::read(&status_file) {
        Ok(Some(status)) => status,
        Ok(None) => {
            out.push(Finding::warn(
                "agent",
                format!("no {shown}: the block agent has not run on this node"),
                agent,
            ));
            return;
        }
        Err(err) => {
            out.push(Finding::warn("agent", err.to_string(), agent));
            return;
        }
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let ago = |t: u64| now.saturating_sub(t);
    let age = ago(status.updated);
    if age > AGENT_STALE.as_secs() {
        out.push(Finding::warn(
            "agent",
            format!("{shown} was last written {age} s ago: the block agent is not running (it rewrites it every 10 s)"),
            agent,
        ));
    } else if status.api == ApiState::Unreachable {
        let contact = status.last_contact.map_or_else(
            || "never answered".to_string(),
            |t| format!("last answered {} s ago", ago(t)),
        );
        out.push(Finding::warn(
            "agent",
            format!(
                "the block agent cannot reach the API server ({contact}; {}{}): this node keeps allocating from the \
                 blocks it holds, but leases no new one and gives none back until it can",
                status.error.as_deref().unwrap_or("no error recorded"),
                status
                    .retry_in
                    .map(|s| format!("; next try in {s} s"))
                    .unwrap_or_default()
            ),
            "check the node's connection to the control plane (the API server's address, a firewall, the control \
             plane itself); nothing is lost meanwhile unless the node runs out of free addresses",
        ));
    } else if !status.problems.is_empty() {
        out.push(Finding::warn(
            "agent",
            format!("the block agent reports: {}", status.problems.join("; ")),
            "act on what it says; its log has the details (kubectl -n roslan logs <pod>)",
        ));
    } else {
        out.push(Finding::pass(
            "agent",
            format!(
                "the block agent of node {:?} is in contact with the API server (last answer {} s ago)",
                status.node,
                status.last_contact.map_or(age, ago)
            ),
        ));
    }
}

fn check_free(sets: &[RangeSet], entries: &[Entry], out: &mut Vec<Finding>) {
    if sets.is_empty() {
        return;
    }
    let mut parts = Vec::new();
    let mut worst = Status::Pass;
    for (i, set) in sets.iter().enumerate() {
        let capacity = set.capacity();
        let used = entries
            .iter()
            .filter(|e| set.range_for(e.ip).is_some_and(|r| r.gateway != e.ip))
            .count() as u128;
        let free = capacity.saturating_sub(used);
        parts.push(format!("set {i} ({set}): {free} of {capacity} free"));
        let status = if free == 0 {
            Status::Fail
        } else if free * 10 < capacity {
            Status::Warn
        } else {
            Status::Pass
        };
        worst = worst.max(status);
    }
    let detail = parts.join("; ");
    let fix = "widen the range, or release addresses of pods that are gone (CNI GC, or delete their files in the \
               network's directory when no pod uses them)";
    out.push(match worst {
        Status::Pass => Finding::pass("ipam-free", detail),
        Status::Warn => Finding::warn("ipam-free", format!("{detail}: nearly exhausted"), fix),
        Status::Fail => Finding::fail(
            "ipam-free",
            format!("{detail}: a set is exhausted, every ADD fails (CNI code 103)"),
            fix,
        ),
    });
}

/// The installed binary's crate version (`roslan --version`) and its CNI VERSION answer, each bounded by
/// [`BINARY_WAIT`]: a binary for the wrong architecture or a truncated copy must not hang the doctor.
fn installed_version(path: &Path) -> Result<(Option<String>, Vec<String>), String> {
    let answer = ask_version(path, BINARY_WAIT).map_err(|err| err.to_string())?;
    if answer.reply.is_err() {
        return Err(format!(
            "its VERSION answer is not JSON (exit {}): {}",
            answer.output.status.code().unwrap_or(-1),
            answer.stdout_text().trim()
        ));
    }
    let supported = answer.supported();
    let mut tool = Command::new(path);
    tool.env_clear().arg("--version");
    let crate_version = run_with_deadline(&mut tool, None, BINARY_WAIT).ok().and_then(|out| {
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        text.trim()
            .strip_prefix("roslan ")
            .map(str::to_string)
            .filter(|_| out.status.success())
    });
    Ok((crate_version, supported))
}

/// Where a missing `roslan` should go: the first of `dirs` that exists (MicroK8s' bin dir on MicroK8s), or
/// the first given.
fn install_target(dirs: &[PathBuf]) -> String {
    dirs.iter()
        .find(|d| d.is_dir())
        .or(dirs.first())
        .map_or_else(|| "/opt/cni/bin".to_string(), |d| d.display().to_string())
}

/// Whether the CNI bin dir has a working `roslan`. A missing one fails the check when `conf` is a roslan
/// network (every ADD on it fails with `failed to find plugin "roslan"`), and only warns otherwise. The fix
/// names the first of `dirs` that exists: on MicroK8s its bin dir, not /opt/cni/bin, which the runtime may
/// never read.
fn check_binary(dirs: &[PathBuf], conf: Option<&NetConf>, out: &mut Vec<Finding>) {
    let mine = env!("CARGO_PKG_VERSION");
    let my_supported: Vec<String> = crate::cni::version::supported_strings()
        .into_iter()
        .map(str::to_string)
        .collect();
    let mut seen = Vec::new();
    let mut found = Vec::new();
    for dir in dirs {
        let path = dir.join("roslan");
        if let Ok(real) = fs::canonicalize(&path)
            && !seen.contains(&real)
        {
            seen.push(real);
            found.push(path);
        }
    }
    if found.is_empty() {
        let target = install_target(dirs);
        let fix = format!(
            "install it with the roslan DaemonSet (docs/install.md; a running installer puts it back within its \
             interval, 30 s by default), or copy this binary: install -m 0755 \"$(command -v roslan)\" {target}/roslan"
        );
        let missing = format!("no roslan in {}", dir_list(dirs));
        let elsewhere = "(if this node's CNI bin dir is elsewhere, give it with --cni-bin-dir)";
        out.push(match conf.filter(|c| c.plugin_type == "roslan") {
            Some(conf) => Finding::fail(
                "binary",
                format!(
                    "{missing}: every ADD on network {:?} fails with 'failed to find plugin \"roslan\"' {elsewhere}",
                    conf.name
                ),
                fix,
            ),
            None => Finding::warn(
                "binary",
                format!(
                    "{missing}: pods whose network has \"type\": \"roslan\" fail with 'failed to find plugin \
                     \"roslan\"' {elsewhere}"
                ),
                fix,
            ),
        });
        return;
    }
    for path in found {
        let shown = path.display();
        match installed_version(&path) {
            Err(err) => out.push(Finding::warn(
                "binary",
                format!("{shown} did not answer CNI VERSION: {err}"),
                "reinstall it: a truncated copy or a binary for another architecture fails this way",
            )),
            Ok((version, supported)) => {
                let cni = match (supported.first(), supported.last()) {
                    (Some(first), Some(last)) => format!("CNI {first} to {last}"),
                    _ => "no CNI versions".to_string(),
                };
                let version_text = version.as_deref().unwrap_or("of unknown version");
                if version.as_deref() == Some(mine) && supported == my_supported {
                    out.push(Finding::pass(
                        "binary",
                        format!("{shown}: roslan {version_text}, {cni}, the same as this doctor"),
                    ));
                } else {
                    out.push(Finding::warn(
                        "binary",
                        format!("{shown}: roslan {version_text}, {cni}; this doctor is roslan {mine}"),
                        "run the same version everywhere: upgrade the DaemonSet (it installs the binary on every \
                         node), or run the doctor that matches the installed plugin",
                    ));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conflist_entry_inherits_name_and_version() {
        let list = json!({"cniVersion": "0.4.0", "name": "ros", "plugins": [
            {"type": "tuning"}, {"type": "roslan", "master": "eth1"}]});
        let entry = roslan_entry(list);
        assert_eq!(entry["type"], "roslan");
        assert_eq!(entry["name"], "ros");
        assert_eq!(entry["cniVersion"], "0.4.0");
        let plain = json!({"type": "roslan", "name": "x"});
        assert_eq!(roslan_entry(plain.clone()), plain);
    }

    #[test]
    fn render_puts_the_fix_under_the_finding() {
        let text = render(&[
            Finding::pass("master", "lan0"),
            Finding::fail("carrier", "no carrier", "plug it in"),
        ]);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[1], "pass  master   lan0");
        assert_eq!(lines[2], "fail  carrier  no carrier");
        assert_eq!(lines[3].trim(), "fix: plug it in");
        assert_eq!(lines[4], "1 fail, 0 warn, 1 pass");
    }

    #[test]
    fn a_missing_binary_goes_to_the_first_bin_dir_that_exists() {
        let base = std::env::temp_dir().join(format!("roslan-doctor-unit-{}", std::process::id()));
        let (absent, present) = (base.join("microk8s-bin"), base.join("opt-cni-bin"));
        fs::create_dir_all(&present).unwrap();
        assert_eq!(
            install_target(&[absent.clone(), present.clone()]),
            present.display().to_string()
        );
        fs::create_dir_all(&absent).unwrap();
        assert_eq!(
            install_target(&[absent.clone(), present.clone()]),
            absent.display().to_string()
        );
        fs::remove_dir_all(&base).unwrap();
        assert_eq!(install_target(&[absent.clone(), present]), absent.display().to_string());
    }

    #[test]
    fn options_are_checked() {
        let args = |list: &[&str]| list.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert!(options(&args(&["--querier-wait", "-1"])).is_err());
        assert!(options(&args(&["--querier-wait", "x"])).is_err());
        assert!(options(&args(&["--bogus"])).is_err());
        let o = options(&args(&["--querier-wait", "0.5", "--json"])).unwrap();
        assert_eq!(o.querier_wait, Duration::from_millis(500));
        assert!(o.json);
        assert_eq!(o.bin_dirs.len(), 2);
    }
}
