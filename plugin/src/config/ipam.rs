//! The `ipam` section: host-local's fields for the built-in allocator, or a delegate's type.

use std::net::IpAddr;
use std::path::PathBuf;

use ipnetwork::IpNetwork;
use roslan_ipam_core::blocks::BlockSize;
use roslan_ipam_core::blocks::file::DEFAULT_BLOCKS_FILE;
use roslan_ipam_core::range::first_overlap;
use roslan_ipam_core::store::DEFAULT_DATA_DIR;
use roslan_ipam_core::{RangeSet, RangeSpec, check_disjoint};
use serde_json::Value;

use super::fields::{Obj, Problems, type_name};
use super::warn_unknown;
use crate::cni::{Route, Version};
use crate::error::Scope;

/// `ipam.type` values served in-process with host-local's semantics and on-disk format.
pub const BUILTIN_TYPES: &[&str] = &["host-local", "roslan-ipam"];

/// How addresses are obtained.
#[derive(Clone, Debug)]
pub enum IpamConf {
    /// No `ipam` (or `{}`): a pure layer-2 attachment, as with the reference macvlan.
    None,
    /// host-local semantics, in-process.
    Builtin(BuiltinIpam),
    /// Another IPAM plugin, executed from CNI_PATH.
    Delegate {
        /// Its `type`.
        plugin: String,
    },
}

/// Where the installer writes the node's name, for `nodeRanges`.
pub const DEFAULT_NODE_NAME_FILE: &str = "/var/lib/roslan/node-name";
/// How long an ARP probe waits for an answer by default.
pub const DEFAULT_PROBE_TIMEOUT_MS: u64 = 100;

/// The built-in allocator's configuration, canonical and checked.
#[derive(Clone, Debug)]
pub struct BuiltinIpam {
    /// Range sets: runtimeConfig.ipRanges first, then the legacy flat range, then `ranges`.
    pub sets: Vec<RangeSet>,
    /// `nodeRanges`: per-node range sets that replace `sets` on that node, disjoint between nodes.
    pub node_ranges: Vec<(String, Vec<RangeSet>)>,
    /// `nodeNameFile`: where this node's name is read from (the installer writes it).
    pub node_name_file: PathBuf,
    /// `probe`: ARP-probe IPv4 addresses before use, waiting this long for an answer.
    pub probe_timeout_ms: Option<u64>,
    /// `dad`: let the kernel run IPv6 duplicate address detection and wait for it.
    pub dad: bool,
    /// `routes`, destinations normalised to their network address.
    pub routes: Vec<Route>,
    /// `dataDir`.
    pub data_dir: PathBuf,
    /// `resolvConf`.
    pub resolv_conf: Option<PathBuf>,
    /// `nodeBlocks`: allocate only inside the blocks the node agent leased for this node.
    pub node_blocks: Option<NodeBlocksConf>,
    /// `sticky` (default true): a pod gets back the address it had last on this network and node.
    pub sticky: bool,
}

/// `nodeBlocks`: the range sets are carved into blocks that the node agent leases per node through the
/// Kubernetes API; ADD reads the node's blocks from `file` and never talks to the API itself.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeBlocksConf {
    /// `size` (IPv4 prefix length, default 28) and `ipv6Size` (default 124).
    pub size: BlockSize,
    /// `minFree`: the agent leases another block when fewer addresses are free in the node's blocks of a
    /// set; `None` means one block's worth.
    pub min_free: Option<u64>,
    /// `releaseAfter`: seconds a block must stay empty before the agent gives it back.
    pub release_after: u64,
    /// `file`: where the agent writes the node's blocks.
    pub file: PathBuf,
}

/// Seconds an empty block is kept before it is given back: longer than a rollout or a pod's crash-loop
/// back-off (at most 5 min), so that a pod that comes back finds its block, and its sticky address, still
/// there, and the API sees no lease churn.
pub const DEFAULT_RELEASE_AFTER: u64 = 600;

fn range_spec(value: &Value, key: String, problems: &mut Problems) -> Option<RangeSpec> {
    let Some(map) = value.as_object() else {
        problems.push(
            key,
            format!(
                "expected a range object such as {{\"subnet\": \"192.168.1.0/24\"}}, got {}",
                type_name(value)
            ),
        );
        return None;
    };
    let mut obj = Obj::new(map, key);
    let spec = RangeSpec {
        subnet: obj.parsed("subnet", "a subnet such as \"192.168.1.0/24\"", problems),
        range_start: obj.parsed("rangeStart", "an address", problems),
        range_end: obj.parsed("rangeEnd", "an address", problems),
        gateway: obj.parsed("gateway", "an address", problems),
    };
    if spec.subnet.is_none() && map.get("subnet").is_none() {
        problems.push(
            obj.key("subnet"),
            "missing; every range needs a \"subnet\" such as \"192.168.1.0/24\"",
        );
    }
    Some(spec)
}

/// Reads `[[range, ...], ...]` into specs, reporting problems under `key`.
fn range_sets(sets: &[Value], key: &str, problems: &mut Problems) -> Vec<(String, Vec<RangeSpec>)> {
    let mut out = Vec::new();
    for (i, set) in sets.iter().enumerate() {
        let set_key = format!("{key}[{i}]");
        let Some(items) = set.as_array() else {
            problems.push(
                set_key,
                format!("expected a range set (an array of ranges), got {}", type_name(set)),
            );
            continue;
        };
        let specs: Vec<RangeSpec> = items
            .iter()
            .enumerate()
            .filter_map(|(j, item)| range_spec(item, format!("{set_key}[{j}]"), problems))
            .collect();
        out.push((set_key, specs));
    }
    out
}

/// Parses `ipam` from the top-level object.
pub fn parse(
    root: &mut Obj<'_>,
    version: Version,
    runtime_ranges: Option<(String, &Vec<Value>)>,
    problems: &mut Problems,
    warnings: &mut Vec<String>,
) -> IpamConf {
    let Some(mut ipam) = root.object("ipam", problems) else {
        return IpamConf::None;
    };
    let plugin = ipam.string("type", problems).unwrap_or_default();
    if plugin.is_empty() {
        if !ipam.unknown().is_empty() {
            problems.push("ipam.type", "missing; set \"type\": \"host-local\" (built in) or the name of an IPAM plugin, or remove \"ipam\" for a layer-2-only attachment");
        }
        return IpamConf::None;
    }
    if !BUILTIN_TYPES.contains(&plugin.as_str()) {
        // The rest of the section belongs to the delegate.
        return IpamConf::Delegate { plugin };
    }

    let mut specs: Vec<(String, Vec<RangeSpec>)> = Vec::new();
    if let Some((key, sets)) = runtime_ranges {
        specs.extend(range_sets(sets, &key, problems));
    }
    let legacy = RangeSpec {
        subnet: ipam.parsed("subnet", "a subnet such as \"192.168.1.0/24\"", problems),
        range_start: ipam.parsed("rangeStart", "an address", problems),
        range_end: ipam.parsed("rangeEnd", "an address", problems),
        gateway: ipam.parsed("gateway", "an address", problems),
    };
    if legacy.subnet.is_some() {
        specs.push(("ipam.subnet".into(), vec![legacy]));
    } else if legacy != RangeSpec::default() {
        problems.push(
            "ipam.subnet",
            "rangeStart, rangeEnd and gateway need \"subnet\" next to them",
        );
    }
    if let Some(sets) = ipam.array("ranges", problems) {
        specs.extend(range_sets(sets, "ipam.ranges", problems));
    }

    let mut sets = Vec::new();
    for (key, spec) in &specs {
        match RangeSet::new(spec) {
            Ok(set) => sets.push(set),
            Err(err) => problems.push(key.clone(), format!("invalid range set: {err}")),
        }
    }
    let node_ranges = parse_node_ranges(&mut ipam, problems);
    if specs.is_empty() && node_ranges.is_empty() {
        problems.push("ipam.ranges", roslan_ipam_core::IpamError::NoRanges.to_string());
    }
    if sets.len() == specs.len() {
        check_sets(&sets, "ipam.ranges", version, problems);
    }
    for (node, node_sets) in &node_ranges {
        check_sets(node_sets, &format!("ipam.nodeRanges.{node}"), version, problems);
        // One sweep over this node's ranges and the shared ones (group 0: shared, 1: the node's).
        let spans = sets
            .iter()
            .flat_map(|set| set.spans(0u8))
            .chain(node_sets.iter().flat_map(|set| set.spans(1u8)))
            .collect();
        if first_overlap(spans).is_some() {
            let i = sets
                .iter()
                .position(|set| node_sets.iter().any(|n| n.overlaps(set)))
                .unwrap_or(0);
            problems.push(
                format!("ipam.nodeRanges.{node}"),
                format!("overlaps range set {i} of \"ranges\", which nodes without an entry use; make them disjoint"),
            );
        }
    }
    let node_spans = node_ranges
        .iter()
        .enumerate()
        .flat_map(|(k, (_, node_sets))| node_sets.iter().flat_map(move |set| set.spans(k)))
        .collect();
    if let Some((a, b)) = first_overlap(node_spans) {
        let (a, b) = (&node_ranges[a.min(b)].0, &node_ranges[a.max(b)].0);
        problems.push(
            "ipam.nodeRanges",
            format!("the slices of nodes {a:?} and {b:?} overlap; each node needs its own disjoint slice, or two nodes can hand out one address"),
        );
    }
    let node_name_file = PathBuf::from(
        ipam.string("nodeNameFile", problems)
            .filter(|p| !p.is_empty())
            .unwrap_or_else(|| DEFAULT_NODE_NAME_FILE.into()),
    );
    let probe_timeout_ms = match ipam.boolean("probe", problems) {
        Some(true) => Some(
            ipam.integer("probeTimeoutMs", 1, 5000, problems)
                .unwrap_or(DEFAULT_PROBE_TIMEOUT_MS),
        ),
        _ => {
            if ipam.get("probeTimeoutMs").is_some() {
                warnings.push("ipam.probeTimeoutMs is ignored: it applies only with \"probe\": true".into());
            }
            None
        }
    };
    let dad = ipam.boolean("dad", problems).unwrap_or(false);

    let mut routes = Vec::new();
    if let Some(list) = ipam.array("routes", problems) {
        for (i, item) in list.iter().enumerate() {
            let key = format!("ipam.routes[{i}]");
            let dst = item
                .get("dst")
                .and_then(Value::as_str)
                .and_then(|d| d.parse::<IpNetwork>().ok());
            let gw_value = item.get("gw").filter(|g| !g.is_null());
            let gw = gw_value.and_then(Value::as_str).and_then(|g| g.parse::<IpAddr>().ok());
            match dst {
                None => problems.push(
                    key,
                    format!("expected {{\"dst\": \"10.0.0.0/8\", \"gw\": \"192.168.1.1\"}} (gw optional), got {item}"),
                ),
                Some(_) if gw_value.is_some() && gw.is_none() => problems.push(format!("{key}.gw"), "not an address"),
                Some(dst) => {
                    let dst = IpNetwork::new(dst.network(), dst.prefix()).unwrap_or(dst);
                    routes.push(Route::new(dst, gw));
                }
            }
        }
    }
    // DEL and GC find the reservations here: a problem with it stops them too.
    let data_dir = problems.within(Scope::Store, |problems| {
        ipam.absolute_path("dataDir", DEFAULT_DATA_DIR, problems)
    });
    let resolv_conf = ipam
        .string("resolvConf", problems)
        .filter(|p| !p.is_empty())
        .map(PathBuf::from);
    let node_blocks = parse_node_blocks(&mut ipam, &sets, problems, warnings);
    if node_blocks.is_some() && !node_ranges.is_empty() {
        problems.push(
            "ipam.nodeBlocks",
            "cannot be combined with \"nodeRanges\": both decide which addresses a node hands out; keep one",
        );
    }
    let sticky = ipam.boolean("sticky", problems).unwrap_or(true);
    warn_unknown(&ipam, warnings);
    IpamConf::Builtin(BuiltinIpam {
        sets,
        node_ranges,
        node_name_file,
        probe_timeout_ms,
        dad,
        routes,
        data_dir,
        resolv_conf,
        node_blocks,
        sticky,
    })
}

/// `nodeBlocks`: `{"size": 28, "ipv6Size": 124, "minFree": 16, "releaseAfter": 600, "file": "..."}`,
/// every key optional.
fn parse_node_blocks(
    ipam: &mut Obj<'_>,
    sets: &[RangeSet],
    problems: &mut Problems,
    warnings: &mut Vec<String>,
) -> Option<NodeBlocksConf> {
    let mut obj = ipam.object("nodeBlocks", problems)?;
    let defaults = BlockSize::default();
    let size = BlockSize {
        v4: obj.integer("size", 8, 30, problems).map_or(defaults.v4, |v| v as u8),
        v6: obj
            .integer("ipv6Size", 64, 126, problems)
            .map_or(defaults.v6, |v| v as u8),
    };
    for (i, set) in sets.iter().enumerate() {
        let (prefix, key) = if set.is_ipv4() {
            (size.v4, "size")
        } else {
            (size.v6, "ipv6Size")
        };
        if let Some(range) = set.0.iter().find(|r| r.subnet.prefix() > prefix) {
            problems.push(
                obj.key(key),
                format!(
                    "/{prefix} blocks are wider than subnet {} of range set {i}: use a prefix length of at least {}",
                    range.subnet,
                    range.subnet.prefix()
                ),
            );
        }
    }
    let min_free = obj.integer("minFree", 0, 1 << 20, problems);
    let release_after = obj
        .integer("releaseAfter", 0, 30 * 86_400, problems)
        .unwrap_or(DEFAULT_RELEASE_AFTER);
    let file = obj.absolute_path("file", DEFAULT_BLOCKS_FILE, problems);
    warn_unknown(&obj, warnings);
    Some(NodeBlocksConf {
        size,
        min_free,
        release_after,
        file,
    })
}

/// Disjointness and the per-family limit of old spec versions, for one list of sets.
fn check_sets(sets: &[RangeSet], key: &str, version: Version, problems: &mut Problems) {
    if let Err(err) = check_disjoint(sets) {
        problems.push(key, err.to_string());
    }
    let v4 = sets.iter().filter(|s| s.is_ipv4()).count();
    if version.legacy_result() && (v4 > 1 || sets.len() - v4 > 1) {
        problems.push(
            key,
            format!(
                "CNI version {version} does not support more than 1 address per family; use cniVersion 0.3.1 or later"
            ),
        );
    }
}

/// `nodeRanges`: `{"robot-1": [[{"subnet": ...}]], ...}`, each value in the form of `ranges`.
fn parse_node_ranges(ipam: &mut Obj<'_>, problems: &mut Problems) -> Vec<(String, Vec<RangeSet>)> {
    let Some(map) = ipam.object("nodeRanges", problems) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for (node, value) in map.entries() {
        let key = format!("ipam.nodeRanges.{node}");
        let Some(list) = value.as_array() else {
            problems.push(
                key,
                format!(
                    "expected a list of range sets like \"ranges\", got {}",
                    type_name(value)
                ),
            );
            continue;
        };
        let mut node_sets = Vec::new();
        for (set_key, spec) in range_sets(list, &key, problems) {
            match RangeSet::new(&spec) {
                Ok(set) => node_sets.push(set),
                Err(err) => problems.push(set_key, format!("invalid range set: {err}")),
            }
        }
        if node_sets.is_empty() {
            problems.push(key, "needs at least one range set");
        }
        out.push((node.to_string(), node_sets));
    }
    out
}
