//! What makes DDS discovery work without configuring DDS: multicast routes and flags, per-pod sysctls,
//! stable MACs. Every default below is chosen for ROS 2 and documented with its reason in docs/ros.md.

use std::net::IpAddr;

use ipnetwork::IpNetwork;
use serde_json::Value;

use super::fields::{Obj, Problems, type_name};
use super::{is_multicast_prefix, warn_unknown};

/// Multicast handling.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MulticastConf {
    /// Multicast destinations routed through our interface with no gateway. IPv4 prefixes become
    /// `<prefix> dev <if> scope link` in the main table; IPv6 prefixes a `multicast` route in the local
    /// table with a metric below the kernel's per-interface ones, and only when the interface has an
    /// IPv6 address from IPAM.
    pub routes: Vec<IpNetwork>,
    /// Set IFF_MULTICAST on the pod's `lo`: a fresh namespace's `lo` lacks it, which breaks DDS modes
    /// limited to localhost.
    pub loopback: bool,
    /// Clear IFF_MULTICAST on the pod's other interfaces (not loopback, not roslan's), so that a DDS that
    /// picks one interface by its flags (Cyclone DDS) picks ours; restored on DEL.
    pub exclusive: bool,
}

impl Default for MulticastConf {
    fn default() -> Self {
        MulticastConf {
            routes: default_routes(),
            loopback: true,
            exclusive: true,
        }
    }
}

fn net(ip: IpAddr, prefix: u8) -> IpNetwork {
    IpNetwork::new(ip, prefix).unwrap_or_else(|_| unreachable!("constant prefix"))
}

/// 224.0.0.0/4 (all IPv4 multicast, DDS' 239.255.0.1 included) and ff00::/8 (all IPv6 multicast).
pub fn default_routes() -> Vec<IpNetwork> {
    vec![
        net(IpAddr::from([224, 0, 0, 0]), 4),
        net(IpAddr::from([0xff00u16, 0, 0, 0, 0, 0, 0, 0]), 8),
    ]
}

/// Parses `multicast`.
pub fn parse_multicast(root: &mut Obj<'_>, problems: &mut Problems, warnings: &mut Vec<String>) -> MulticastConf {
    let Some(mut mc) = root.object("multicast", problems) else {
        return MulticastConf::default();
    };
    let defaults = MulticastConf::default();
    let routes = match mc.parsed_list::<IpNetwork>("routes", "a multicast prefix such as \"224.0.0.0/4\"", problems) {
        None => defaults.routes,
        Some(list) => {
            let mut normal = Vec::new();
            for (i, net) in list.into_iter().enumerate() {
                let net = IpNetwork::new(net.network(), net.prefix()).unwrap_or(net);
                if !is_multicast_prefix(&net) {
                    problems.push(
                        format!("multicast.routes[{i}]"),
                        format!("{net} is not inside multicast space (224.0.0.0/4 or ff00::/8)"),
                    );
                } else if !normal.contains(&net) {
                    normal.push(net);
                }
            }
            normal
        }
    };
    let loopback = mc.boolean("loopback", problems).unwrap_or(defaults.loopback);
    let exclusive = mc.boolean("exclusive", problems).unwrap_or(defaults.exclusive);
    warn_unknown(&mc, warnings);
    MulticastConf {
        routes,
        loopback,
        exclusive,
    }
}

/// One sysctl roslan sets in the pod. `IFNAME` in the key stands for CNI_IFNAME.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sysctl {
    /// Dotted key, e.g. `net.ipv4.conf.IFNAME.rp_filter`.
    pub key: String,
    /// Value to write.
    pub value: String,
    /// Set by the user (a missing key is an error) rather than a default (skipped when the kernel lacks it,
    /// e.g. IPv6 disabled at boot).
    pub explicit: bool,
    /// The configuration key a refusal is reported under (`sysctl.<key>` or `igmpVersion`); `None` for
    /// a ROS default, which no key of the user's asked for.
    pub origin: Option<String>,
}

/// The ROS defaults, each overridable in `sysctl` (or skipped with `null`):
/// - `rp_filter` 2 on our interface and on `all`: strict mode drops multicast whose source is reachable
///   only through another interface, and the kernel applies max(all, interface);
/// - IPv6 `autoconf` and `accept_ra` 0 on our interface: router advertisements on the LAN would add
///   addresses and routes roslan does not report or manage;
/// - `ipfrag_time` 3 and `ipfrag_high_thresh` 128 MiB, from the ROS 2 DDS tuning guide: large messages
///   arrive as IP fragments, and a lost fragment keeps its reassembly buffer for 30 s by default;
/// - `igmp_max_memberships` 1024: the default 20 groups per socket runs out with several DDS
///   participants and multicast topics in one pod.
pub const ROS_DEFAULTS: &[(&str, &str)] = &[
    ("net.ipv4.conf.IFNAME.rp_filter", "2"),
    ("net.ipv4.conf.all.rp_filter", "2"),
    ("net.ipv6.conf.IFNAME.autoconf", "0"),
    ("net.ipv6.conf.IFNAME.accept_ra", "0"),
    ("net.ipv4.ipfrag_time", "3"),
    ("net.ipv4.ipfrag_high_thresh", "134217728"),
    ("net.ipv4.igmp_max_memberships", "1024"),
];

/// `net.*` keys that look per-namespace but are shared by the whole host (or absent from a pod):
/// a pod cannot set them, the node must (roslan-install does for the socket buffers).
const HOST_GLOBAL: &[&str] = &[
    "net.core.rmem_max",
    "net.core.wmem_max",
    "net.core.rmem_default",
    "net.core.wmem_default",
    "net.core.netdev_max_backlog",
    "net.core.optmem_max",
    "net.ipv4.tcp_mem",
    "net.ipv4.udp_mem",
];

/// Per-namespace subtrees a pod may set through roslan.
const PER_NAMESPACE: &[&str] = &[
    "net.ipv4.",
    "net.ipv6.",
    "net.core.somaxconn",
    "net.core.xfrm_",
    "net.unix.",
    "net.netfilter.",
    "net.mptcp.",
];

/// Checks a dotted key: a per-namespace `net.*` key whose components cannot leave /proc/sys/net.
pub fn check_key(key: &str) -> Result<(), String> {
    if HOST_GLOBAL.contains(&key) {
        return Err(format!(
            "{key} is host-wide, not per network namespace: set it on the node (roslan-install --rmem-max/--wmem-max, or /etc/sysctl.d)"
        ));
    }
    if !PER_NAMESPACE.iter().any(|prefix| key.starts_with(prefix)) {
        return Err(format!(
            "{key} is not a per-namespace network sysctl; roslan sets only net.ipv4.*, net.ipv6.*, net.core.somaxconn, net.core.xfrm_*, net.unix.*, net.netfilter.* and net.mptcp.*"
        ));
    }
    let components_ok = key.split('.').all(|part| {
        let part = part.replace('/', ".");
        !part.is_empty()
            && part != "."
            && part != ".."
            && part.chars().all(|c| c.is_ascii_alphanumeric() || "_-.@".contains(c))
    });
    if !components_ok {
        return Err(format!(
            "{key:?} is not a sysctl key (dotted names; a '/' stands for a dot inside an interface name)"
        ));
    }
    Ok(())
}

/// Parses `sysctl` and `igmpVersion` and merges them over the ROS defaults.
pub fn parse_sysctls(root: &mut Obj<'_>, problems: &mut Problems) -> Vec<Sysctl> {
    let mut settings: Vec<Sysctl> = ROS_DEFAULTS
        .iter()
        .map(|(key, value)| Sysctl {
            key: (*key).into(),
            value: (*value).into(),
            explicit: false,
            origin: None,
        })
        .collect();
    if let Some(version) = root.integer("igmpVersion", 2, 3, problems) {
        // Switches that only snoop one IGMP version need the pod to speak it; MLD v1/v2 match IGMP v2/v3.
        settings.push(Sysctl {
            key: "net.ipv4.conf.IFNAME.force_igmp_version".into(),
            value: version.to_string(),
            explicit: true,
            origin: Some("igmpVersion".into()),
        });
        settings.push(Sysctl {
            key: "net.ipv6.conf.IFNAME.force_mld_version".into(),
            value: (version - 1).to_string(),
            explicit: false,
            origin: Some("igmpVersion".into()),
        });
    }
    let Some(map) = root.object("sysctl", problems) else {
        return settings;
    };
    for (key, value) in map.entries() {
        let full = format!("sysctl.{key}");
        if let Err(why) = check_key(key) {
            problems.push(full, why);
            continue;
        }
        let text = match value {
            Value::Null => None,
            Value::String(s) => Some(s.clone()),
            Value::Number(n) => Some(n.to_string()),
            other => {
                problems.push(
                    full,
                    format!(
                        "expected a string or number value (null skips a default), got {}",
                        type_name(other)
                    ),
                );
                continue;
            }
        };
        settings.retain(|s| s.key != *key);
        if let Some(value) = text {
            settings.push(Sysctl {
                key: key.clone(),
                value,
                explicit: true,
                origin: Some(full),
            });
        }
    }
    settings
}
