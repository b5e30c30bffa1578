//! A throwaway LAN, the way a robot's network looks to roslan:
//!
//! ```text
//!   node netns (the plugin runs here)        LAN host netns
//!     lan0 (veth, master) 10.77.255.253/16 ---- lan0p 10.77.255.254/16, 224.0.0.0/4 dev lan0p
//!     default route via 10.77.255.254
//!   pods: empty netns with lo up; a dual-homed pod also has eth0 (veth into an "overlay" netns
//!   that carries no multicast) holding its default route, as Calico gives.
//! ```
//!
//! Every namespace, link and file belongs to this `Lan` and is removed when it is dropped.

use std::path::{Path, PathBuf};

use serde_json::{Value, json};

use crate::netns::{Netns, unique};
use crate::plugin::{Call, Reference, Reply};

/// The LAN subnet every test LAN uses (each LAN lives in its own namespaces, so they never meet).
pub const SUBNET: &str = "10.77.0.0/16";
/// The LAN host's address.
pub const HOST_ADDR: &str = "10.77.255.254";
/// The node's own address on the master.
pub const NODE_ADDR: &str = "10.77.255.253";
/// The master's name inside the node namespace.
pub const MASTER: &str = "lan0";

/// A pod: a network namespace, optionally with a cluster interface.
#[derive(Debug)]
pub struct Pod {
    /// Its namespace.
    pub ns: Netns,
    /// The sandbox ID a runtime would use.
    pub id: String,
}

impl Pod {
    /// An empty pod namespace with `lo` up.
    pub fn new() -> Pod {
        Pod {
            id: format!("sandbox{}", unique()),
            ns: Netns::new("pod"),
        }
    }

    /// CNI_NETNS for this pod.
    pub fn path(&self) -> String {
        self.ns.path()
    }
}

/// The LAN.
#[derive(Debug)]
pub struct Lan {
    /// Where the plugin runs and the master lives.
    pub node: Netns,
    /// A plain host on the LAN.
    pub host: Netns,
    /// Where dual-homed pods' eth0 peers live; it forwards nothing.
    pub overlay: Netns,
    dir: PathBuf,
    overlay_count: std::sync::atomic::AtomicU32,
}

impl Lan {
    /// Builds the LAN.
    pub fn new() -> Lan {
        crate::netns::clean_stale();
        let node = Netns::new("node");
        let host = Netns::new("host");
        let overlay = Netns::new("ovl");
        node.ip(&[
            "link",
            "add",
            MASTER,
            "type",
            "veth",
            "peer",
            "name",
            "lan0p",
            "netns",
            host.name(),
        ]);
        node.ip(&["addr", "add", &format!("{NODE_ADDR}/16"), "dev", MASTER]);
        node.ip(&["link", "set", MASTER, "up"]);
        node.ip(&["route", "add", "default", "via", HOST_ADDR, "dev", MASTER]);
        host.ip(&["addr", "add", &format!("{HOST_ADDR}/16"), "dev", "lan0p"]);
        host.ip(&["link", "set", "lan0p", "up"]);
        host.ip(&["route", "add", "224.0.0.0/4", "dev", "lan0p"]);
        let dir = std::env::temp_dir().join(format!("roslan-test-{}", unique()));
        std::fs::create_dir_all(&dir).expect("create test directory");
        Lan {
            node,
            host,
            overlay,
            dir,
            overlay_count: std::sync::atomic::AtomicU32::new(0),
        }
    }

    /// A private directory for this LAN's files (IPAM data, logs), removed on drop.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The IPAM data directory used by [`Lan::config`].
    pub fn data_dir(&self) -> PathBuf {
        self.dir.join("ipam")
    }

    /// An empty pod namespace.
    pub fn pod(&self) -> Pod {
        let ns = Netns::new("pod");
        Pod {
            id: format!("sandbox{}", unique()),
            ns,
        }
    }

    /// A pod whose eth0 holds the default route into an overlay that carries no multicast.
    pub fn dual_homed_pod(&self) -> Pod {
        let pod = self.pod();
        let i = self.overlay_count.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
        let peer = format!("ov{i}");
        pod.ns.ip(&[
            "link",
            "add",
            "eth0",
            "type",
            "veth",
            "peer",
            "name",
            &peer,
            "netns",
            self.overlay.name(),
        ]);
        pod.ns.ip(&["addr", "add", &format!("10.244.{i}.2/24"), "dev", "eth0"]);
        pod.ns.ip(&["link", "set", "eth0", "up"]);
        pod.ns.ip(&[
            "route",
            "add",
            "default",
            "via",
            &format!("10.244.{i}.1"),
            "dev",
            "eth0",
        ]);
        self.overlay
            .ip(&["addr", "add", &format!("10.244.{i}.1/24"), "dev", &peer]);
        self.overlay.ip(&["link", "set", &peer, "up"]);
        pod
    }

    /// A dual-homed pod ([`Lan::dual_homed_pod`]) whose eth0 also has IPv6, as a dual-stack cluster
    /// network gives: `fd00:244:<i>::2/64` on eth0 and the IPv6 default route via `fd00:244:<i>::1` in the
    /// overlay (which forwards nothing). Addresses are added without DAD, so they are usable at once.
    pub fn dual_homed_pod_ipv6(&self) -> Pod {
        let pod = self.dual_homed_pod();
        let i = pod
            .ns
            .addresses("eth0")
            .iter()
            .find_map(|a| a.strip_prefix("10.244.")?.split('.').next()?.parse::<u32>().ok())
            .expect("the dual-homed pod's eth0 address 10.244.<i>.2");
        let peer = format!("ov{i}");
        pod.ns
            .ip(&["addr", "add", &format!("fd00:244:{i}::2/64"), "dev", "eth0", "nodad"]);
        self.overlay
            .ip(&["addr", "add", &format!("fd00:244:{i}::1/64"), "dev", &peer, "nodad"]);
        pod.ns.ip(&[
            "-6",
            "route",
            "add",
            "default",
            "via",
            &format!("fd00:244:{i}::1"),
            "dev",
            "eth0",
        ]);
        pod
    }

    /// A roslan configuration for this LAN: master `lan0`, host-local IPAM in the LAN's directory,
    /// addresses 10.77.1.10-10.77.1.250.
    pub fn config(&self, version: &str) -> Value {
        json!({
            "cniVersion": version,
            "name": "ros-lan",
            "type": "roslan",
            "master": MASTER,
            "ipam": {
                "type": "host-local",
                "dataDir": self.data_dir(),
                "ranges": [[{"subnet": SUBNET, "rangeStart": "10.77.1.10", "rangeEnd": "10.77.1.250", "gateway": HOST_ADDR}]]
            }
        })
    }

    /// The same network with the reference plugins and the usual multicast workaround: a host-local
    /// route to 224.0.0.0/4, to which the reference plugins attach the gateway.
    pub fn reference_config(&self, version: &str) -> Value {
        let mut conf = self.config(version);
        conf["type"] = json!("macvlan");
        conf["ipam"]["routes"] = json!([{"dst": "224.0.0.0/4"}]);
        conf
    }

    /// Runs a plugin binary in the node namespace, as a runtime would.
    pub fn call(&self, call: &Call<'_>) -> Reply {
        call.run_in(&self.node)
    }

    /// ADD with roslan, panicking with the plugin's reply if it fails.
    pub fn add(&self, pod: &Pod, ifname: &str, conf: &Value) -> Value {
        let reply = self.call(&Call::roslan("ADD", &pod.id, &pod.path(), ifname, conf));
        assert_eq!(reply.status, 0, "ADD failed: {reply}");
        reply
            .json
            .clone()
            .unwrap_or_else(|| panic!("ADD printed no JSON: {reply}"))
    }

    /// ADD with `reference`'s macvlan (and whatever IPAM `conf` names), panicking with the plugin's reply
    /// if it fails: the control in tests that compare roslan with what people use today.
    pub fn reference_add(&self, reference: &Reference, pod: &Pod, ifname: &str, conf: &Value) -> Value {
        let call = reference.call("macvlan", "ADD", &pod.id, &pod.path(), ifname, conf);
        let reply = self.call(&call);
        assert_eq!(reply.status, 0, "{} ADD failed: {reply}", reference.name);
        reply.json.clone().unwrap_or(Value::Null)
    }

    /// CHECK with roslan, with `prev` (the ADD's result) as prevResult, as a runtime sends it.
    pub fn check(&self, pod: &Pod, ifname: &str, conf: &Value, prev: &Value) -> Reply {
        let mut with_prev = conf.clone();
        with_prev["prevResult"] = prev.clone();
        self.call(&Call::roslan("CHECK", &pod.id, &pod.path(), ifname, &with_prev))
    }

    /// DEL with roslan, panicking if it fails.
    pub fn del(&self, pod: &Pod, ifname: &str, conf: &Value) {
        let reply = self.call(&Call::roslan("DEL", &pod.id, &pod.path(), ifname, conf));
        assert_eq!(reply.status, 0, "DEL failed: {reply}");
    }

    /// Reservation files in the data directory of `network` (not the lock or cursors).
    pub fn reservations(&self, network: &str) -> Vec<String> {
        let dir = self.data_dir().join(network);
        let mut names: Vec<String> = std::fs::read_dir(&dir)
            .map(|entries| {
                entries
                    .filter_map(|e| e.ok())
                    .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .filter(|n| n.parse::<std::net::IpAddr>().is_ok())
                    .collect()
            })
            .unwrap_or_default();
        names.sort();
        names
    }
}

/// Several nodes on one LAN segment: a bridge in the LAN host's namespace, each node's master a veth
/// into it. For what spans nodes (per-node address slices, cross-node traffic).
#[derive(Debug)]
pub struct MultiNodeLan {
    /// The LAN host, holding the bridge `br0` with [`HOST_ADDR`].
    pub host: Netns,
    /// The nodes; each has master `lan0` with 10.77.255.<253 - i>/16.
    pub nodes: Vec<Netns>,
    dir: PathBuf,
}

impl MultiNodeLan {
    /// Builds a LAN with `count` nodes.
    pub fn new(count: usize) -> MultiNodeLan {
        crate::netns::clean_stale();
        let host = Netns::new("host");
        host.ip(&["link", "add", "br0", "type", "bridge", "mcast_snooping", "0"]);
        host.ip(&["addr", "add", &format!("{HOST_ADDR}/16"), "dev", "br0"]);
        host.ip(&["link", "set", "br0", "up"]);
        let nodes = (0..count)
            .map(|i| {
                let node = Netns::new(&format!("node{i}"));
                let port = format!("port{i}");
                node.ip(&[
                    "link",
                    "add",
                    MASTER,
                    "type",
                    "veth",
                    "peer",
                    "name",
                    &port,
                    "netns",
                    host.name(),
                ]);
                node.ip(&["addr", "add", &format!("10.77.255.{}/16", 253 - i), "dev", MASTER]);
                node.ip(&["link", "set", MASTER, "up"]);
                host.ip(&["link", "set", &port, "master", "br0", "up"]);
                node
            })
            .collect();
        let dir = std::env::temp_dir().join(format!("roslan-test-{}", unique()));
        std::fs::create_dir_all(&dir).expect("create test directory");
        MultiNodeLan { host, nodes, dir }
    }

    /// Like [`MultiNodeLan::new`], with IGMP and MLD snooping on and the bridge acting as the LAN's IGMP
    /// and MLD querier, as a managed switch with a querier does. It sends general queries every `query_interval_cs`
    /// centiseconds (the kernel's minimum is 100; real switches use 12500), and answers a leave at once
    /// with a group-specific query, whatever the interval.
    pub fn with_querier(count: usize, query_interval_cs: u32) -> MultiNodeLan {
        let lan = MultiNodeLan::new(count);
        let interval = query_interval_cs.to_string();
        lan.host.ip(&[
            "link",
            "set",
            "br0",
            "type",
            "bridge",
            "mcast_snooping",
            "1",
            "mcast_query_interval",
            &interval,
            "mcast_startup_query_interval",
            &interval,
            "mcast_querier",
            "1",
        ]);
        // A switch's querier has its address long before anyone asks; the bridge's MLD querier needs its
        // IPv6 link-local address out of duplicate address detection (a second or two) to send anything.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while std::time::Instant::now() < deadline {
            let tentative = lan.host.ip(&["-6", "addr", "show", "dev", "br0", "tentative"]);
            let any = lan.host.ip(&["-6", "addr", "show", "dev", "br0", "scope", "link"]);
            if tentative.trim().is_empty() && !any.trim().is_empty() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        lan
    }

    /// A private directory for this LAN's files, removed on drop.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

impl Drop for MultiNodeLan {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Default for Pod {
    fn default() -> Self {
        Pod::new()
    }
}

impl Default for Lan {
    fn default() -> Self {
        Lan::new()
    }
}

impl Drop for Lan {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
