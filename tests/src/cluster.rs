//! A cluster of several nodes on one LAN for `nodeBlocks`: one control plane (etcd, kube-apiserver,
//! kube-controller-manager for garbage collection), roslan's own manifests applied to it (namespace,
//! service account, RBAC, DaemonSet), Node objects, and per node a namespace of a [`MultiNodeLan`] with
//! its own host root (CNI bin dir, IPAM data directory, blocks file) and its own block agent:
//! `roslan-install --lease-blocks` with the service account's token, as the DaemonSet's pod runs it.
//!
//! No kubelet runs: ADD is called by the test in the node's namespace, with the binary the node's
//! installer put into the node's CNI bin dir. Everything is removed on drop, agents first.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::apiserver::{ControlPlane, Options};
use crate::daemon::Daemon;
use crate::lan::{HOST_ADDR, MASTER, MultiNodeLan};
use crate::plugin::{Call, Reply, workspace_bin};

/// The network every node attaches.
pub const NETWORK: &str = "ros-lan";
/// The namespace of the Leases (the DaemonSet's).
pub const LEASE_NAMESPACE: &str = "roslan";

/// One node: its name, host root and agent.
#[derive(Debug)]
pub struct Node {
    /// The Kubernetes node name.
    pub name: String,
    /// Its host root: `opt/cni/bin`, `var/lib/cni/networks`, `var/lib/roslan`.
    pub root: PathBuf,
    /// Behind a lock so that a test can kill and restart an agent while other threads run ADDs.
    agent: Mutex<Option<Daemon>>,
}

impl Node {
    /// The IPAM data directory (the NetworkAttachmentDefinition's default, under the host root).
    pub fn data_dir(&self) -> PathBuf {
        self.root.join("var/lib/cni/networks")
    }

    /// The blocks file the agent writes and ADD reads.
    pub fn blocks_file(&self) -> PathBuf {
        self.root.join("var/lib/roslan/node-blocks")
    }

    /// The agent's status file.
    pub fn status_file(&self) -> PathBuf {
        self.root.join("var/lib/roslan/agent-status")
    }

    /// The plugin the node's installer installed.
    pub fn plugin(&self) -> PathBuf {
        self.root.join("opt/cni/bin/roslan")
    }

    /// The blocks of [`NETWORK`] the blocks file lists now.
    pub fn blocks(&self) -> Vec<String> {
        let text = std::fs::read_to_string(self.blocks_file()).unwrap_or_default();
        let mut blocks: Vec<String> = text
            .lines()
            .filter_map(|l| l.strip_prefix("block "))
            .filter_map(|rest| rest.split_once(' '))
            .filter(|(_, network)| *network == NETWORK)
            .map(|(block, _)| block.to_string())
            .collect();
        blocks.sort();
        blocks
    }

    /// The status file's `api` line (`reachable`, `unreachable`), if the file exists.
    pub fn api_state(&self) -> Option<String> {
        let text = std::fs::read_to_string(self.status_file()).ok()?;
        text.lines()
            .find_map(|l| l.strip_prefix("api "))
            .map(|s| s.trim().to_string())
    }

    /// The agent's log so far.
    pub fn agent_log(&self) -> String {
        std::fs::read_to_string(self.root.join("agent.log")).unwrap_or_default()
    }
}

/// The cluster.
#[derive(Debug)]
pub struct Cluster {
    /// The nodes, in the order of the LAN's node namespaces.
    pub nodes: Vec<Node>,
    /// The LAN: `lan.nodes[i]` is node `i`'s namespace.
    pub lan: MultiNodeLan,
    /// The control plane.
    pub cp: ControlPlane,
    kubeconfig: PathBuf,
    ipam: Value,
}

/// Polls `ready` every 100 ms until it returns `Some`; panics with `what` and `diagnose()` after `timeout`.
pub fn wait_until<T>(
    what: &str,
    timeout: Duration,
    mut ready: impl FnMut() -> Option<T>,
    diagnose: impl Fn() -> String,
) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = ready() {
            return value;
        }
        if Instant::now() > deadline {
            panic!("{what}: not within {timeout:?}\n{}", diagnose());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A kubeconfig with a token of service account `namespace/name` (TokenRequest, as the kubelet mounts
/// one into a pod), its context's namespace `namespace`: what a pod of that account would use.
pub fn service_account_kubeconfig(cp: &ControlPlane, namespace: &str, name: &str) -> PathBuf {
    let token = cp
        .kubectl_ok(&["-n", namespace, "create", "token", name, "--duration=4h"])
        .trim()
        .to_string();
    let kubeconfig = cp.dir().join(format!("{namespace}-{name}.kubeconfig"));
    let config = json!({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "test", "cluster": {"server": cp.server(), "certificate-authority": cp.ca()}}],
        "users": [{"name": name, "user": {"token": token}}],
        "contexts": [{"name": "test", "context": {"cluster": "test", "user": name, "namespace": namespace}}],
        "current-context": "test",
    });
    std::fs::write(&kubeconfig, serde_json::to_vec_pretty(&config).expect("json")).expect("write kubeconfig");
    kubeconfig
}

/// Installs the real whereabouts into `cp` from its own manifests (the pinned module's `doc/crds`, which
/// `make peers` copies into the peers cache): its CRDs, and its service account with its ClusterRole
/// (daemonset-install.yaml; the DaemonSet itself stays pending, no kubelet runs). Returns the kubeconfig
/// of that service account, in namespace kube-system, where whereabouts keeps its pools and its lock.
pub fn install_whereabouts(cp: &ControlPlane) -> PathBuf {
    let crds = crate::peer("whereabouts").files("crds");
    for crd in ["ippools", "overlappingrangeipreservations", "nodeslicepools"] {
        let file = crds.join(format!("whereabouts.cni.cncf.io_{crd}.yaml"));
        cp.kubectl_ok(&["apply", "-f", file.to_str().expect("utf-8")]);
    }
    cp.kubectl_ok(&[
        "wait",
        "--for=condition=established",
        "--timeout=30s",
        "crd/ippools.whereabouts.cni.cncf.io",
        "crd/overlappingrangeipreservations.whereabouts.cni.cncf.io",
    ]);
    cp.kubectl_ok(&[
        "apply",
        "-f",
        crds.join("daemonset-install.yaml").to_str().expect("utf-8"),
    ]);
    service_account_kubeconfig(cp, "kube-system", "whereabouts")
}

/// A roslan configuration that delegates IPAM to whereabouts (`range` with `range_start`/`range_end`,
/// the service account's `kubeconfig`).
pub fn whereabouts_config(kubeconfig: &Path, range: &str, start: &str, end: &str) -> Value {
    json!({
        "cniVersion": "0.3.1",
        "name": "wb-net",
        "type": "roslan",
        "master": MASTER,
        "ipam": {
            "type": "whereabouts",
            "range": range,
            "range_start": start,
            "range_end": end,
            "gateway": HOST_ADDR,
            "kubernetes": {"kubeconfig": kubeconfig},
        }
    })
}

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

impl Cluster {
    /// `count` nodes on one LAN, the NetworkAttachmentDefinition [`NETWORK`] with `ipam` (the master is the
    /// nodes' `lan0`), and every agent started.
    pub fn start(count: usize, ipam: Value) -> Cluster {
        let cp = ControlPlane::start_with(Options {
            controller_manager: true,
            scheduler: false,
        });
        cp.install_nad_crd("multus-v4");
        // roslan's own manifests, rendered by the peers' kubectl (kustomize) and admitted by the real API
        // server: the agents below run with exactly the rights rbac.yaml grants.
        let manifests = repo().join("manifests");
        cp.kubectl_ok(&["apply", "-k", manifests.to_str().expect("utf-8 path")]);
        let kubeconfig = service_account_kubeconfig(&cp, LEASE_NAMESPACE, "roslan-install");
        let mut nad_config = json!({
            "cniVersion": "0.3.1",
            "name": NETWORK,
            "type": "roslan",
            "master": MASTER,
            "ipam": ipam,
        });
        nad_config["ipam"]["type"] = json!("host-local");
        cp.apply(
            &json!({
                "apiVersion": "k8s.cni.cncf.io/v1",
                "kind": "NetworkAttachmentDefinition",
                "metadata": {"name": NETWORK, "namespace": "default"},
                "spec": {"config": nad_config.to_string()},
            })
            .to_string(),
        );
        let lan = MultiNodeLan::new(count);
        let nodes = (0..count)
            .map(|i| {
                let name = format!("node-{i}");
                let root = lan.dir().join(&name);
                for dir in ["opt/cni/bin", "var/lib/cni/networks", "var/lib/roslan"] {
                    std::fs::create_dir_all(root.join(dir)).expect("create host root");
                }
                Node {
                    name,
                    root,
                    agent: Mutex::new(None),
                }
            })
            .collect();
        let cluster = Cluster {
            nodes,
            lan,
            cp,
            kubeconfig,
            ipam: nad_config["ipam"].clone(),
        };
        for i in 0..count {
            cluster.register(i);
            cluster.start_agent(i);
        }
        cluster
    }

    /// Creates node `i`'s Node object (as its kubelet would register it).
    pub fn register(&self, i: usize) {
        self.cp
            .apply(&json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": self.nodes[i].name}}).to_string());
    }

    /// Starts node `i`'s agent (after reaping a killed one): the installer with its block agent, the
    /// service account's kubeconfig, a 2 s resync and a 200 ms look (the defaults are 30 s and 1 s; tests
    /// want the same steps sooner). Call it on the test's main thread: the agent dies with the thread
    /// that started it.
    pub fn start_agent(&self, i: usize) {
        let node = &self.nodes[i];
        let bin = workspace_bin("roslan-install");
        let source = bin.parent().expect("bin dir").to_path_buf();
        let args: Vec<String> = [
            "--host-root",
            node.root.to_str().expect("utf-8"),
            "--cni-bin-dir",
            "/opt/cni/bin",
            "--source-dir",
            source.to_str().expect("utf-8"),
            "--node-name",
            &node.name,
            "--lease-blocks",
            "--kubeconfig",
            self.kubeconfig.to_str().expect("utf-8"),
            "--interval",
            "2",
            "--blocks-tick-ms",
            "200",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let mut agent = node.agent.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(mut old) = agent.take() {
            old.stop();
        }
        *agent = Some(Daemon::spawn(
            &format!("agent-{}", node.name),
            &bin,
            &args,
            &node.root.join("agent.log"),
        ));
    }

    /// Kills node `i`'s agent with SIGKILL, as an OOM kill or a node crash would, and reaps it.
    pub fn kill_agent(&self, i: usize) {
        if let Some(mut daemon) = self.nodes[i].agent.lock().unwrap_or_else(|e| e.into_inner()).take() {
            if let Some(pid) = daemon.pid() {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid as i32),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
            daemon.stop();
        }
    }

    /// Waits until node `i`'s blocks file lists at least `count` blocks; returns them.
    pub fn wait_for_blocks(&self, i: usize, count: usize, timeout: Duration) -> Vec<String> {
        let node = &self.nodes[i];
        wait_until(
            &format!("{} holds {count} block(s)", node.name),
            timeout,
            || Some(node.blocks()).filter(|b| b.len() >= count),
            || format!("blocks: {:?}\nagent log:\n{}", node.blocks(), node.agent_log()),
        )
    }

    /// The plugin configuration node `i` runs ADD with: the network's, with the node's paths.
    pub fn config(&self, i: usize) -> Value {
        let node = &self.nodes[i];
        let mut ipam = self.ipam.clone();
        ipam["dataDir"] = json!(node.data_dir());
        ipam["nodeBlocks"]["file"] = json!(node.blocks_file());
        json!({"cniVersion": "0.3.1", "name": NETWORK, "type": "roslan", "master": MASTER, "ipam": ipam})
    }

    /// Runs `command` for a pod on node `i` with the node's installed plugin, as Multus would (its
    /// CNI_ARGS name the pod `robots/<pod_name>`).
    pub fn call(&self, i: usize, command: &str, pod: &crate::Pod, pod_name: &str, conf: &Value) -> Reply {
        let args = format!("IgnoreUnknown=true;K8S_POD_NAMESPACE=robots;K8S_POD_NAME={pod_name}");
        Call::new(self.nodes[i].plugin(), command, &pod.id, &pod.path(), "net1", conf)
            .args(&args)
            .run_in(&self.lan.nodes[i])
    }

    /// Every block Lease: (block CIDR, holder), sorted.
    pub fn leases(&self) -> Vec<(String, String)> {
        let out = self.cp.kubectl_ok(&[
            "-n",
            LEASE_NAMESPACE,
            "get",
            "leases",
            "-l",
            "app.kubernetes.io/managed-by=roslan-install",
            "-o",
            "json",
        ]);
        let list: Value = serde_json::from_str(&out).expect("lease list JSON");
        let mut leases: Vec<(String, String)> = list["items"]
            .as_array()
            .map(|items| {
                items
                    .iter()
                    .map(|l| {
                        (
                            l["metadata"]["annotations"]["roslan.io/block"]
                                .as_str()
                                .unwrap_or_default()
                                .to_string(),
                            l["spec"]["holderIdentity"].as_str().unwrap_or_default().to_string(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        leases.sort();
        leases
    }

    /// The blocks node `name` holds according to the API.
    pub fn leased_by(&self, name: &str) -> Vec<String> {
        self.leases()
            .into_iter()
            .filter(|(_, holder)| holder == name)
            .map(|(block, _)| block)
            .collect()
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for i in 0..self.nodes.len() {
            if let Some(mut agent) = self.nodes[i].agent.lock().unwrap_or_else(|e| e.into_inner()).take() {
                agent.stop();
            }
        }
    }
}
