//! The network configuration on stdin.
//!
//! Field names are the reference macvlan plugin's (`master`, `mode`, `mtu`, `mac`, `ipam`, `dns`,
//! `bcqueuelen`), so an existing `"type": "macvlan"` configuration works by changing only `type`.
//! roslan's own keys add multicast handling. A known key with a wrong type or value is a problem naming
//! the key and the expected form; unknown keys are logged with the closest known key.

mod fields;
pub mod ipam;
pub mod ros;

use std::net::IpAddr;
use std::path::PathBuf;

use ipnetwork::IpNetwork;
use serde_json::Value;

use crate::cni::env::is_valid_identifier;
use crate::cni::{CniResult, Command, Dns, Version};
use crate::error::{ConfigProblem, Error, Scope};
use crate::log::Level;
use crate::mac::Mac;
pub use fields::{Obj, Problems, closest};
pub use ipam::{BuiltinIpam, IpamConf, NodeBlocksConf};
pub use ros::{MulticastConf, Sysctl};

/// The macvlan mode, defined by the netlink facade that creates and reads links (`mode` parses into it).
pub use crate::netlink::MacvlanMode;

/// How to find the master interface on the node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MasterSpec {
    /// The interface of the node's default route.
    DefaultRoute,
    /// An interface by name.
    Name(String),
    /// The interface holding an address in this subnet (`masterSubnet`).
    Subnet(IpNetwork),
}

/// The smallest MTU the kernel accepts for an Ethernet device (ETH_MIN_MTU), and IPv4's minimum.
pub const MIN_MTU: u32 = 68;
/// IPv6's minimum link MTU (RFC 8200): below it the kernel disables IPv6 on the link.
pub const MIN_MTU_IPV6: u32 = 1280;

/// True for prefixes that lie entirely in multicast space (224.0.0.0/4 or ff00::/8).
pub fn is_multicast_prefix(net: &IpNetwork) -> bool {
    match net {
        IpNetwork::V4(v4) => v4.prefix() >= 4 && v4.network().is_multicast(),
        IpNetwork::V6(v6) => v6.prefix() >= 8 && v6.network().is_multicast(),
    }
}

/// Everything roslan reads from stdin.
#[derive(Clone, Debug)]
pub struct NetConf {
    /// `cniVersion`; a missing one means 0.1.0.
    pub version: Version,
    /// `cniVersion` as written, for messages.
    pub version_text: Option<String>,
    /// `name`.
    pub name: String,
    /// `type`.
    pub plugin_type: String,
    /// `master`.
    pub master: MasterSpec,
    /// `mode`.
    pub mode: MacvlanMode,
    /// `mtu`; `None` means the kernel default (the master's MTU).
    pub mtu: Option<u32>,
    /// `bcqueuelen`: the macvlan broadcast/multicast queue length (Linux 5.11+).
    pub bc_queue_len: Option<u32>,
    /// `mac`: the lowest-precedence MAC (CNI_ARGS `MAC=` overrides it).
    pub mac: Option<Mac>,
    /// `runtimeConfig.mac`, else `args.cni.mac`: overrides CNI_ARGS `MAC=` and `mac`; with the key it
    /// came from, for messages.
    pub mac_override: Option<(Mac, &'static str)>,
    /// `ipam`.
    pub ipam: IpamConf,
    /// `multicast`.
    pub multicast: MulticastConf,
    /// `sysctl` over the ROS defaults, plus `igmpVersion`.
    pub sysctls: Vec<Sysctl>,
    /// `stableMac`: derive the MAC from network, namespace and pod name when the runtime names the pod.
    pub stable_mac: bool,
    /// `dns`, copied into the result.
    pub dns: Dns,
    /// `logFile`.
    pub log_file: Option<PathBuf>,
    /// `logLevel`.
    pub log_level: Level,
    /// `prevResult` when chained.
    pub prev_result: Option<CniResult>,
    /// Requested addresses from `args.cni.ips` and `runtimeConfig.ips`.
    pub requested_ips: Vec<IpAddr>,
    /// Unknown keys, with a suggestion, to be logged.
    pub warnings: Vec<String>,
    /// A key roslan knows but cannot honour, with the reason: ADD, CHECK and STATUS refuse it (code 2);
    /// DEL and GC ignore it, so an attachment made by a plugin that honoured it can still be cleaned up.
    pub unsupported: Option<(String, String)>,
}

/// Why a foreign key is meaningless for roslan, for the few that users commonly carry over.
fn foreign_key_hint(key: &str) -> Option<&'static str> {
    Some(match key.to_ascii_lowercase().as_str() {
        "isdefaultgateway" | "isgateway" | "ipmasq" | "hairpinmode" | "promiscmode" | "bridge" => {
            "a bridge-plugin option; roslan never touches the pod's default route and routes multicast via \"multicast.routes\""
        }
        "linkincontainer" => "roslan always creates the macvlan from the node's master",
        _ => return None,
    })
}

fn parse_version(text: Option<&str>) -> Result<Version, Error> {
    match text {
        None => Ok(Version::V0_1_0),
        Some(text) => Version::parse(text).ok_or_else(|| Error::IncompatibleVersion {
            detail: format!(
                "config version {text:?} is not supported by roslan {}; set \"cniVersion\" to one of {} (MicroK8s' Multus 3.9 needs 0.3.1 or 0.4.0)",
                env!("CARGO_PKG_VERSION"),
                crate::cni::version::supported_strings().join(", ")
            ),
        }),
    }
}

impl NetConf {
    /// Decodes stdin into JSON; code 6 on failure.
    pub fn decode(stdin: &[u8]) -> Result<Value, Error> {
        // Editors on some systems save with a byte-order mark; JSON allows none, and the parser's
        // "expected value at line 1 column 1" does not say what is there.
        let mark = match stdin {
            [0xEF, 0xBB, 0xBF, ..] => Some("a UTF-8 byte-order mark (EF BB BF)"),
            [0xFF, 0xFE, ..] | [0xFE, 0xFF, ..] => Some("a UTF-16 byte-order mark"),
            _ => None,
        };
        if let Some(mark) = mark {
            return Err(Error::Decode {
                what: "network configuration on stdin",
                detail: format!(
                    "it starts with {mark}, which JSON does not allow; save the configuration as UTF-8 without a byte-order mark"
                ),
            });
        }
        let value: Value = serde_json::from_slice(stdin).map_err(|err| Error::Decode {
            what: "network configuration on stdin",
            detail: format!("{err}; the runtime must pass the network configuration as a JSON object"),
        })?;
        if !value.is_object() {
            return Err(Error::Decode {
                what: "network configuration on stdin",
                detail: format!("expected a JSON object, got {}", fields::type_name(&value)),
            });
        }
        Ok(value)
    }

    /// The cniVersion of a decoded configuration, for error replies before the full parse.
    pub fn version_of(value: &Value) -> Option<Version> {
        match value.get("cniVersion") {
            None => Some(Version::V0_1_0),
            Some(v) => v.as_str().and_then(Version::parse),
        }
    }

    /// Parses the whole configuration, collecting every problem. The version is checked first because
    /// it decides how everything else is read (code 1 rather than 7).
    pub fn parse(value: &Value) -> Result<(NetConf, Vec<ConfigProblem>), Error> {
        let root = value
            .as_object()
            .ok_or_else(|| Error::config("", "the configuration must be a JSON object"))?;
        let mut obj = Obj::new(root, "");
        let mut problems = Problems::default();
        let mut warnings = Vec::new();

        // The version decides how an IPAM reads its section too.
        let version_text = problems.within(Scope::Ipam, |problems| obj.string("cniVersion", problems));
        let version = parse_version(version_text.as_deref())?;
        problems.within(Scope::Ipam, |problems| {
            if let Some(list) = obj.array("cniVersions", problems)
                && list.iter().any(|v| !v.is_string())
            {
                problems.push(
                    "cniVersions",
                    "expected an array of version strings such as [\"1.0.0\", \"1.1.0\"]",
                );
            }
        });

        // The name is the store's directory: without it DEL and GC cannot find the reservations.
        let name = problems.within(Scope::Store, |problems| {
            let name_present = obj.get("name").is_some();
            let name = obj.string("name", problems).unwrap_or_default();
            if name.is_empty() && (!name_present || root.get("name").is_some_and(Value::is_string)) {
                problems.push(
                    "name",
                    "missing network name; set \"name\" (letters, digits, '_', '.', '-')",
                );
            } else if !is_valid_identifier(&name) || name.len() > 255 {
                problems.push("name", format!("{name:?} is not a valid network name: it must match ^[a-zA-Z0-9][a-zA-Z0-9_.\\-]*$ and be at most 255 bytes"));
            }
            name
        });
        let plugin_type = obj.string("type", &mut problems).unwrap_or_default();

        let master = match obj.string("master", &mut problems) {
            Some(name) if !name.is_empty() => {
                if let Err(why) = crate::cni::env::check_ifname(&name) {
                    problems.push("master", format!("interface name {why}"));
                }
                MasterSpec::Name(name)
            }
            _ => MasterSpec::DefaultRoute,
        };
        let master = match obj.parsed::<IpNetwork>("masterSubnet", "a subnet such as \"192.168.1.0/24\"", &mut problems)
        {
            None => master,
            Some(subnet) if master == MasterSpec::DefaultRoute => MasterSpec::Subnet(subnet),
            Some(_) => {
                problems.push("masterSubnet", "set either \"master\" or \"masterSubnet\", not both");
                master
            }
        };
        let mode = match obj.string("mode", &mut problems).as_deref() {
            None | Some("") | Some("bridge") => MacvlanMode::Bridge,
            Some("private") => MacvlanMode::Private,
            Some("vepa") => MacvlanMode::Vepa,
            Some("passthru") => MacvlanMode::Passthru,
            Some(other) => {
                problems.push("mode", format!("unknown macvlan mode {other:?}; use \"bridge\" (needed for multicast between pods on one node), \"private\", \"vepa\" or \"passthru\""));
                MacvlanMode::Bridge
            }
        };
        let mtu = obj
            .integer("mtu", 0, 65535, &mut problems)
            .filter(|m| *m > 0)
            .map(|m| m as u32);
        if let Some(small) = mtu.filter(|m| *m < MIN_MTU) {
            problems.push(
                "mtu",
                format!("{small} is below {MIN_MTU}, the smallest MTU the kernel gives an Ethernet link (IPv4 needs {MIN_MTU}); use 0 for the master's MTU"),
            );
        }
        let bc_queue_len = obj
            .integer("bcqueuelen", 1, u64::from(u32::MAX), &mut problems)
            .map(|m| m as u32);
        let unsupported = (obj.boolean("linkInContainer", &mut problems) == Some(true)).then(|| {
            (
                "linkInContainer".to_string(),
                "roslan creates the macvlan on a master in the node's namespace; remove the key or set it to false"
                    .to_string(),
            )
        });

        let mac_of = |obj: &mut Obj<'_>, key: &'static str, problems: &mut Problems| -> Option<Mac> {
            let mac: Mac = obj.parsed(key, "a MAC address such as \"02:00:00:00:00:01\"", problems)?;
            if mac.is_unicast() {
                Some(mac)
            } else {
                problems.push(
                    obj.key(key),
                    format!("{mac} is a group address; a link needs a unicast MAC (first byte even), e.g. 02:..."),
                );
                None
            }
        };
        let mac = mac_of(&mut obj, "mac", &mut problems);
        let mut mac_override = None;
        let mut requested_ips = Vec::new();
        let mut runtime_ranges = None;
        if let Some(mut args) = obj.object("args", &mut problems)
            && let Some(mut cni) = args.object("cni", &mut problems)
        {
            if let Some(found) = mac_of(&mut cni, "mac", &mut problems) {
                mac_override = Some((found, "args.cni.mac"));
            }
            requested_ips.extend(problems.within(Scope::Ipam, |problems| requested_list(&mut cni, problems)));
            cni.allow(&["labels"]);
        }
        if let Some(mut runtime) = obj.object("runtimeConfig", &mut problems) {
            if let Some(found) = mac_of(&mut runtime, "mac", &mut problems) {
                mac_override = Some((found, "runtimeConfig.mac"));
            }
            requested_ips.extend(problems.within(Scope::Ipam, |problems| requested_list(&mut runtime, problems)));
            runtime_ranges = problems
                .within(Scope::Ipam, |problems| runtime.array("ipRanges", problems))
                .map(|sets| (runtime.key("ipRanges"), sets));
            // Other capabilities belong to other plugins in a chain; they are not roslan's to judge.
            runtime.allow(&[
                "portMappings",
                "bandwidth",
                "dns",
                "aliases",
                "cgroupPath",
                "deviceID",
                "infinibandGUID",
                "io.kubernetes.cri.pod-annotations",
            ]);
        }

        let ipam = problems.within(Scope::Ipam, |problems| {
            ipam::parse(&mut obj, version, runtime_ranges, problems, &mut warnings)
        });
        if let (Some(mtu), IpamConf::Builtin(builtin)) = (mtu, &ipam)
            && mtu < MIN_MTU_IPV6
            && builtin
                .sets
                .iter()
                .chain(builtin.node_ranges.iter().flat_map(|(_, s)| s))
                .any(|s| !s.is_ipv4())
        {
            problems.push(
                "mtu",
                format!("{mtu} is below {MIN_MTU_IPV6}, IPv6's minimum: the kernel turns IPv6 off on such a link and its IPv6 address cannot be added; raise mtu or remove the IPv6 range"),
            );
        }

        let multicast = ros::parse_multicast(&mut obj, &mut problems, &mut warnings);
        let sysctls = ros::parse_sysctls(&mut obj, &mut problems);
        let stable_mac = obj.boolean("stableMac", &mut problems).unwrap_or(true);

        let dns = parse_dns(&mut obj, &mut problems);
        let log_file = obj
            .string("logFile", &mut problems)
            .filter(|p| !p.is_empty())
            .map(PathBuf::from);
        if let Some(path) = log_file.as_ref().filter(|p| !p.is_absolute()) {
            problems.push(
                "logFile",
                format!(
                    "{} is relative, so it would land in whatever directory the runtime runs in; use an absolute path such as /var/log/roslan.log",
                    path.display()
                ),
            );
        }
        let log_level = match obj.string("logLevel", &mut problems).as_deref() {
            None => Level::Info,
            Some(text) => Level::parse(text).unwrap_or_else(|| {
                problems.push(
                    "logLevel",
                    format!("{text:?} is not a level; use \"debug\", \"info\", \"warn\" or \"error\""),
                );
                Level::Info
            }),
        };
        // An IPAM reads the previous result too (CHECK's addresses).
        let prev_result = match obj.get("prevResult") {
            None => None,
            Some(prev) => match CniResult::from_json(prev, "prevResult") {
                Ok(result) => Some(result),
                Err(err) => {
                    problems.within(Scope::Ipam, |problems| problems.push("prevResult", err.to_string()));
                    None
                }
            },
        };
        obj.allow(&["capabilities"]);

        warn_unknown(&obj, &mut warnings);
        let conf = NetConf {
            version,
            version_text,
            name,
            plugin_type,
            master,
            mode,
            mtu,
            bc_queue_len,
            mac,
            mac_override,
            ipam,
            multicast,
            sysctls,
            stable_mac,
            dns,
            log_file,
            log_level,
            prev_result,
            requested_ips,
            warnings,
            unsupported,
        };
        Ok((conf, problems.0))
    }

    /// STATUS and GC exist from CNI 1.1.0 on; an older configuration asking for them is refused with
    /// code 1, as the Go library does. Here, below both the plugin's commands and the standalone IPAM,
    /// so that both ask the same question without one calling up into the other.
    pub fn require_1_1(&self, command: &str) -> Result<(), Error> {
        if self.version.has_status_and_gc() {
            Ok(())
        } else {
            Err(Error::IncompatibleVersion {
                detail: format!(
                    "config version {} does not allow {command}; {command} needs cniVersion 1.1.0",
                    self.version
                ),
            })
        }
    }

    /// Refuses a configuration with a key roslan cannot honour (see [`NetConf::unsupported`]).
    pub fn refuse_unsupported(&self) -> Result<(), Error> {
        match &self.unsupported {
            Some((key, why)) => Err(Error::UnsupportedField {
                key: key.clone(),
                why: why.clone(),
            }),
            None => Ok(()),
        }
    }
}

/// Refuses the configuration if `command` must not run with these problems (code 7, every problem
/// listed): ADD, CHECK and STATUS refuse any; DEL and GC only those that keep them from finding the
/// reservations ([`Scope::Store`]: `name`, `ipam.dataDir`), so that pods can always be torn down.
pub fn refuse(command: Command, problems: Vec<ConfigProblem>) -> Result<(), Error> {
    let fatal: Vec<ConfigProblem> = if command.is_cleanup() {
        problems.into_iter().filter(|p| p.scope == Scope::Store).collect()
    } else {
        problems
    };
    if fatal.is_empty() {
        Ok(())
    } else {
        Err(Error::Config(fatal))
    }
}

/// `dns`, copied into the result: checked here, because a runtime that gets a malformed value back
/// fails far from the cause (or silently gives the pod no resolver settings).
fn parse_dns(obj: &mut Obj<'_>, problems: &mut Problems) -> Dns {
    let Some(mut dns) = obj.object("dns", problems) else {
        return Dns::default();
    };
    let mut list = |key: &'static str| dns.parsed_list::<String>(key, "a string", problems).unwrap_or_default();
    let nameservers = list("nameservers");
    let search = list("search");
    let options = list("options");
    Dns {
        nameservers,
        search,
        options,
        domain: dns.string("domain", problems).filter(|d| !d.is_empty()),
    }
}

fn requested_list(obj: &mut Obj<'_>, problems: &mut Problems) -> Vec<IpAddr> {
    let Some(items) = obj.array("ips", problems) else {
        return Vec::new();
    };
    let key = obj.key("ips");
    items
        .iter()
        .enumerate()
        .filter_map(|(i, item)| {
            let parsed = item.as_str().and_then(crate::cni::args::parse_requested_ip);
            if parsed.is_none() {
                problems.push(
                    format!("{key}[{i}]"),
                    format!("{item} is not an address such as \"192.168.1.20\" or \"192.168.1.20/24\""),
                );
            }
            parsed
        })
        .collect()
}

/// Turns unknown keys of `obj` into log lines with a suggestion or an explanation.
pub fn warn_unknown(obj: &Obj<'_>, warnings: &mut Vec<String>) {
    for (key, suggestion) in obj.unknown() {
        let last = key.rsplit('.').next().unwrap_or(&key);
        let line = match (foreign_key_hint(last), suggestion) {
            (Some(hint), _) => format!("ignoring unknown key {key:?}: {hint}"),
            (None, Some(near)) => format!("ignoring unknown key {key:?}; did you mean {near:?}?"),
            (None, None) => format!("ignoring unknown key {key:?}"),
        };
        warnings.push(line);
    }
}
