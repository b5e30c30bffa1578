//! The five pod layouts of the seed, Canonical's "Exploring ROS 2 Kubernetes configurations" (MicroK8s,
//! November 2020; `manifests/examples/` and docs/ros.md), with real nodes ([`crate::ros2`]) in
//! containers ([`crate::container`]), on every network a user of that post could attach:
//!
//! | seed | [`Layout`] | pods (containers) |
//! |---|---|---|
//! | 1 | [`Layout::TalkerAndListener`] | `tl` (`t1`, `l1`) |
//! | 2 | [`Layout::TwoTalkersAndListener`] | `tl` (`t1`, `t2`, `l1`) |
//! | 3, 4 | [`Layout::ThreePods`] | `t1` (`t1`), `t2` (`t2`), `l1` (`l1`) |
//! | 5 | [`Layout::TalkerPodAndListenerPod`] | `t` (`t1`, `t2`), `l` (`l1`) |
//!
//! Every pod is dual-homed as on MicroK8s ([`Lan::dual_homed_pod`]): `eth0` on a cluster network that
//! carries no multicast and holds the default route, and, unless the [`Network`] is
//! [`Network::Cluster`], `net1` from the plugin under test. Seed layouts 1 to 3 used the cluster network
//! only, 4 and 5 the seed's NetworkAttachmentDefinition ([`seed_config`]).
//!
//! Each run ([`run`]) has a LAN of its own, so runs can go on at the same time ([`run_all`]).

use std::path::Path;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use serde_json::{Value, json};

use crate::container::Sandbox;
use crate::lan::{Lan, MASTER, Pod};
use crate::plugin::Call;
pub use crate::plugin::Reference;
use crate::ros2::{Chat, ChatOutcome, Middleware};

/// Where the seed put its talkers and its listener.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Layout {
    /// Seed 1: pod `tl` with talker `t1` and listener `l1`.
    TalkerAndListener,
    /// Seed 2: pod `tl` with talkers `t1`, `t2` and listener `l1`.
    TwoTalkersAndListener,
    /// Seeds 3 and 4: pods `t1`, `t2`, `l1`, one container each.
    ThreePods,
    /// Seed 5: pod `t` with talkers `t1`, `t2`, and pod `l` with listener `l1`.
    TalkerPodAndListenerPod,
}

impl Layout {
    /// All four, in the seed's order.
    pub const ALL: [Layout; 4] = [
        Layout::TalkerAndListener,
        Layout::TwoTalkersAndListener,
        Layout::ThreePods,
        Layout::TalkerPodAndListenerPod,
    ];

    /// Pods and their containers; containers named `t*` are talkers, `l1` is the listener.
    pub fn pods(self) -> &'static [(&'static str, &'static [&'static str])] {
        match self {
            Layout::TalkerAndListener => &[("tl", &["t1", "l1"])],
            Layout::TwoTalkersAndListener => &[("tl", &["t1", "t2", "l1"])],
            Layout::ThreePods => &[("t1", &["t1"]), ("t2", &["t2"]), ("l1", &["l1"])],
            Layout::TalkerPodAndListenerPod => &[("t", &["t1", "t2"]), ("l", &["l1"])],
        }
    }

    /// The talkers' tags, in order.
    pub fn talkers(self) -> Vec<&'static str> {
        self.pods()
            .iter()
            .flat_map(|(_, containers)| containers.iter().copied())
            .filter(|c| c.starts_with('t'))
            .collect()
    }

    /// For tables: `1. pod tl: t1, l1`.
    pub fn label(self) -> String {
        let seed = match self {
            Layout::TalkerAndListener => "1",
            Layout::TwoTalkersAndListener => "2",
            Layout::ThreePods => "3, 4",
            Layout::TalkerPodAndListenerPod => "5",
        };
        let pods: Vec<String> = self
            .pods()
            .iter()
            .map(|(pod, containers)| format!("pod {pod} ({})", containers.join(", ")))
            .collect();
        format!("{seed}. {}", pods.join(" + "))
    }

    /// The seed's own number for this layout on `network`, if the seed ran that combination: 1 to 3 on
    /// the cluster network, 4 and 5 on its NetworkAttachmentDefinition.
    pub fn seed_number(self, network: &Network) -> Option<u32> {
        match (self, network) {
            (Layout::TalkerAndListener, Network::Cluster) => Some(1),
            (Layout::TwoTalkersAndListener, Network::Cluster) => Some(2),
            (Layout::ThreePods, Network::Cluster) => Some(3),
            (Layout::ThreePods, Network::Seed(_)) => Some(4),
            (Layout::TalkerPodAndListenerPod, Network::Seed(_)) => Some(5),
            _ => None,
        }
    }
}

/// What `net1` is, if there is one.
#[derive(Clone, Debug)]
pub enum Network {
    /// No `net1`: `eth0` on the cluster network only.
    Cluster,
    /// roslan with the test LAN's configuration ([`Lan::config`]), as manifests/networks/single-node.
    Roslan,
    /// The seed's NetworkAttachmentDefinition ([`seed_config`]) with these reference plugins.
    Seed(Reference),
    /// The same plus the usual workaround, `routes: [{"dst": "224.0.0.0/4"}]` in host-local.
    SeedWithRoute(Reference),
}

impl Network {
    /// The four, with `reference` for the seed's two.
    pub fn all(reference: &Reference) -> [Network; 4] {
        [
            Network::Cluster,
            Network::Roslan,
            Network::Seed(reference.clone()),
            Network::SeedWithRoute(reference.clone()),
        ]
    }

    /// For tables.
    pub fn label(&self) -> String {
        match self {
            Network::Cluster => "cluster network only".to_string(),
            Network::Roslan => "roslan".to_string(),
            Network::Seed(r) => format!("seed's NAD ({})", r.name),
            Network::SeedWithRoute(r) => format!("seed's NAD + `224.0.0.0/4` route ({})", r.name),
        }
    }

    /// Attaches `net1` to `pod`, panicking with the plugin's reply if it fails.
    fn attach(&self, lan: &Lan, pod: &Pod) {
        let (plugin, cni_path, conf) = match self {
            Network::Cluster => return,
            Network::Roslan => {
                lan.add(pod, "net1", &lan.config("0.3.1"));
                return;
            }
            Network::Seed(r) => (r.bin("macvlan"), &r.dir, seed_config(lan.dir(), false)),
            Network::SeedWithRoute(r) => (r.bin("macvlan"), &r.dir, seed_config(lan.dir(), true)),
        };
        let mut call = Call::new(plugin, "ADD", &pod.id, &pod.path(), "net1", &conf);
        call.cni_path = cni_path.to_string_lossy().into_owned();
        let reply = lan.call(&call);
        assert_eq!(reply.status, 0, "{} ADD failed: {reply}", self.label());
    }
}

/// The seed's NetworkAttachmentDefinition `my-network` (sample4.ttl-multus.yaml; `home-network` in sample
/// 5 is the same) exactly, with its master interface `master` (the seed's is `eth0`). With `route`,
/// host-local also gets `routes: [{"dst": "224.0.0.0/4"}]`, the usual workaround. `isDefaultgateway` is the
/// seed's: neither plugin knows the key, both ignore it.
pub fn seed_network(master: &str, route: bool) -> Value {
    let mut conf = json!({
        "cniVersion": "0.3.0",
        "name": "my-network",
        "type": "macvlan",
        "master": master,
        "mode": "bridge",
        "isDefaultgateway": true,
        "ipam": {
            "type": "host-local",
            "ranges": [[{
                "subnet": "192.168.0.0/16",
                "rangeStart": "192.168.1.160",
                "rangeEnd": "192.168.1.180",
                "gateway": "192.168.1.1"
            }]]
        }
    });
    if route {
        conf["ipam"]["routes"] = json!([{"dst": "224.0.0.0/4"}]);
    }
    conf
}

/// [`seed_network`] on the test LAN, with the two keys a test must change: `master` is the LAN's `lan0`
/// instead of the node's `eth0`, and host-local's `dataDir` is under `data` instead of /var/lib/cni.
pub fn seed_config(data: &Path, route: bool) -> Value {
    let mut conf = seed_network(MASTER, route);
    conf["ipam"]["dataDir"] = json!(data.join("seed-ipam"));
    conf
}

/// One layout on one network with one middleware, and what the test expects of it.
#[derive(Clone, Debug)]
pub struct Cell {
    /// Where the nodes are.
    pub layout: Layout,
    /// What `net1` is.
    pub network: Network,
    /// Fast DDS or Cyclone.
    pub middleware: Middleware,
    /// The talkers the listener must hear, and no others.
    pub expect: Vec<&'static str>,
    /// Why.
    pub why: &'static str,
}

/// A [`Cell`] and what happened.
#[derive(Debug)]
pub struct CellResult {
    /// What ran.
    pub cell: Cell,
    /// What the listener heard.
    pub outcome: ChatOutcome,
}

impl CellResult {
    /// True if every node came up and the listener heard exactly the expected talkers.
    pub fn as_expected(&self) -> bool {
        self.outcome.all_up() && self.outcome.heard() == self.cell.expect
    }
}

/// Runs `layout` on `network`: a LAN of its own, the layout's pods dual-homed with `net1` attached, a
/// sandbox per pod, the listener and talkers in their containers; everything removed before it returns.
pub fn run(layout: Layout, network: &Network, middleware: Middleware) -> ChatOutcome {
    let lan = Lan::new();
    let pods: Vec<(Pod, Sandbox, &[&str])> = layout
        .pods()
        .iter()
        .map(|(name, containers)| {
            let pod = lan.dual_homed_pod();
            network.attach(&lan, &pod);
            let sandbox = Sandbox::new(&pod.ns, name);
            (pod, sandbox, *containers)
        })
        .collect();
    let find = |tag: &str| {
        pods.iter()
            .find(|(_, _, containers)| containers.contains(&tag))
            .map(|(_, sandbox, _)| sandbox)
            .expect("every container is in a pod")
    };
    let talkers = layout.talkers().into_iter().map(|t| (find(t), t)).collect();
    Chat::new(middleware, (find("l1"), "l1"), talkers).run()
}

/// Runs every cell, `at_once` at a time (each on its own LAN), and returns the results in the cells'
/// order.
pub fn run_all(cells: &[Cell], at_once: usize) -> Vec<CellResult> {
    let next = AtomicUsize::new(0);
    let results: Mutex<Vec<Option<ChatOutcome>>> = Mutex::new(cells.iter().map(|_| None).collect());
    std::thread::scope(|scope| {
        for _ in 0..at_once.max(1) {
            scope.spawn(|| {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(cell) = cells.get(i) else { break };
                    let outcome = run(cell.layout, &cell.network, cell.middleware);
                    results.lock().expect("results")[i] = Some(outcome);
                }
            });
        }
    });
    cells
        .iter()
        .cloned()
        .zip(results.into_inner().expect("results"))
        .map(|(cell, outcome)| CellResult {
            cell,
            outcome: outcome.expect("every cell ran"),
        })
        .collect()
}

/// How many cells [`run_all`] runs at once in the tests: `ROSLAN_LAYOUTS_AT_ONCE`, default 4 (on two
/// cores; 1 gives times to first message without contention).
pub fn at_once() -> usize {
    std::env::var("ROSLAN_LAYOUTS_AT_ONCE")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(4)
}

/// A markdown table of `results` (one middleware): a row per layout, a column per network, each cell
/// the talkers heard with the time from each talker's start to its first message heard, the seed's own
/// configurations marked, and a mismatch with the expectation flagged.
pub fn table(results: &[CellResult]) -> String {
    let mut networks: Vec<String> = Vec::new();
    for r in results {
        let label = r.cell.network.label();
        if !networks.contains(&label) {
            networks.push(label);
        }
    }
    let mut md = format!("| layout (seed's number) | {} |\n|---|", networks.join(" | "));
    md.push_str(&"---|".repeat(networks.len()));
    md.push('\n');
    for layout in Layout::ALL {
        let mut row = format!("| {} |", layout.label());
        for network in &networks {
            let cell = results
                .iter()
                .find(|r| r.cell.layout == layout && &r.cell.network.label() == network);
            let text = match cell {
                None => "".to_string(),
                Some(r) => {
                    let mut text = r.outcome.summary();
                    if let Some(n) = layout.seed_number(&r.cell.network) {
                        text = format!("**{text}** (seed {n})");
                    }
                    if !r.as_expected() {
                        text.push_str(&format!(" UNEXPECTED, expected {:?}", r.cell.expect));
                    }
                    text
                }
            };
            row.push_str(&format!(" {text} |"));
        }
        md.push_str(&row);
        md.push('\n');
    }
    md
}
