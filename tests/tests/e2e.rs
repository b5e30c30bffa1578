//! The end-to-end run: one Kubernetes node of real parts ([`roslan_tests::one_node`]: the peers' control
//! plane, Debian's containerd 1.6 CRI, kubelet 1.34) in namespaces of its own ([`roslan_tests::node`]),
//! shaped like a MicroK8s node with the multus addon (Multus 3.9 thin, `--cni-version=0.3.1`, upstream
//! `ptp` + `host-local` as the cluster network, the upstream plugins linked into MicroK8s' bin dir), does
//! what a user of roslan does, in order:
//!
//! 1. **cluster up**: the node, the control plane, Multus, containerd with the three images imported from
//!    archives (roslan's, the ROS 2 workload's, the pause image), kubelet, node Ready;
//! 2. **install**: `kubectl apply -k manifests/` unmodified, `rollout status`, the installer's log lines as
//!    docs/install.md shows them, `roslan` and `roslan-ipam` in MicroK8s' bin dir answering VERSION; then
//!    `manifests/networks/single-node` through an overlay that changes only its range, and a pod on it;
//! 3. **the examples**: the seed's five (`manifests/examples/<n>`, only the image overridden) with roslan;
//!    3, 4 and 5 again with the seed's own NetworkAttachmentDefinition in `ros-lan` (reference macvlan +
//!    host-local, the upstream v1.10 plugins) and with the `224.0.0.0/4` workaround added; the Cyclone DDS
//!    pod pair on roslan with and without `multicast.exclusive` and on both controls. Who each listener
//!    heard and when, from `kubectl logs`; after each `kubectl delete -k`, nothing of its pods left
//!    (reservation, link, network namespace, Multus' and libcni's cache entries);
//! 4. **the LAN**: during example 3, a ROS 2 listener and talker on the LAN host (a laptop): it hears the
//!    pods' talkers and the pods' listener hears it;
//! 5. **lifecycle**: kubelet and containerd restarted under running pods (example 5) keep their sandboxes
//!    and attachments; a pod whose network namespace is already gone is deleted, not wedged; a DaemonSet
//!    rollout to a second image tag with other bytes keeps the binary in place throughout while pods are
//!    added; the documented uninstall removes exactly what was installed;
//! 6. **diagnostics**: `roslan doctor` on the node as docs/diagnostics.md runs it: healthy, the NIC down,
//!    the bin dir emptied (and the installer putting roslan back);
//! 7. **teardown**: the cluster dropped, nothing of it left on the machine.
//!
//! Every phase is timed and every result tabled on stderr (past the capture, so `make e2e` and `make
//! test` show them); docs/e2e.md holds a run's tables. Needs root, `make peers`, `make image`, `make
//! ros-image`, `make pause-image` and `make venv` (the LAN host's ROS 2 nodes); `make e2e` does all that.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use roslan_tests::apiserver::ControlPlane;
use roslan_tests::container::Sandbox;
use roslan_tests::multus::{self, Credentials, Flavour, Kubeconfig, MicroK8s};
use roslan_tests::node::{NIC, NODE_NAME, NodeHost};
use roslan_tests::one_node::{Archive, BIN_DIR, OneNodeCluster};
use roslan_tests::peer_bin;
use roslan_tests::process::Peer;
use roslan_tests::root_test;
use roslan_tests::ros2::{Middleware, listener, parse_heard, require_nodes, talker};
use roslan_tests::runtime::{repo, run_ok};
use roslan_tests::seed_examples::{
    Deployment, Network, Outcome, ROS_IMAGE, Workload, nad_patch, relative, single_node_config, write_kustomization,
};
use serde_json::{Value, json};

/// The DaemonSet's image, as manifests/daemonset.yaml names it.
const ROSLAN_IMAGE: &str = "ghcr.io/roslan/roslan:0.1.0";
/// The second tag the upgrade rolls to.
const UPGRADE_TAG: &str = "0.1.0-e2e";
/// The cluster network's pod range (MicroK8s' Calico default).
const POD_CIDR: &str = "10.1.0.0/16";
/// The namespace of the install check, the lifecycle pods and the diagnostics' network.
const E2E_NAMESPACE: &str = "roslan-e2e";
/// The range the install check's overlay gives `manifests/networks/single-node` (outside the examples').
const E2E_RANGE: (&str, &str) = ("192.168.1.200", "192.168.1.209");
/// How long a listener is given after every talker is up before silence counts as "heard nothing": a
/// Fast DDS participant announces itself every 3 s once discovered, so 10 s covers three announcements.
const WINDOW: Duration = Duration::from_secs(10);

fn roslan_archive() -> Archive {
    Archive::new(
        repo().join("target/image/roslan-0.1.0.oci.tar"),
        ROSLAN_IMAGE,
        "make image",
    )
}

fn ros_archive() -> Archive {
    let dir =
        std::env::var_os("ROSLAN_IMAGES_DIR").map_or_else(|| PathBuf::from("/var/cache/roslan/images"), PathBuf::from);
    Archive::new(dir.join("ros2.oci.tar"), ROS_IMAGE, "make ros-image")
}

/// MicroK8s' multus addon on the node (thin Multus 3.9, `--cni-version=0.3.1`, its RBAC and token, the
/// NetworkAttachmentDefinition CRD), the cluster network, and the upstream plugins MicroK8s ships linked
/// into its bin dir (the controls' `macvlan` and `host-local` among them).
fn microk8s_multus(node: &NodeHost, cp: &ControlPlane) {
    let layout = MicroK8s::create_seen_as(&node.microk8s_root(), Path::new("/"));
    cp.install_nad_crd("multus-v3");
    multus::apply_rbac(cp, Flavour::V3Thin);
    layout.install_multus(Flavour::V3Thin);
    layout.link_cluster_plugins();
    for plugin in ["macvlan", "ipvlan", "bridge", "static", "tuning"] {
        layout.link_plugin(plugin, &peer_bin(&format!("plugins/{plugin}")));
    }
    layout.write_cluster_network(&multus::cluster_network("0.3.1", POD_CIDR, None));
    layout.write_multus_conf(Flavour::V3Thin, Some("0.3.1"));
    let token = multus::service_account_token(cp);
    layout.write_kubeconfig(&Kubeconfig::for_control_plane(
        Flavour::V3Thin,
        cp,
        Credentials::Token(token),
    ));
}

/// Phase names and how long each took, in order.
#[derive(Default)]
struct Phases {
    done: Vec<(String, Duration)>,
}

impl Phases {
    fn time<T>(&mut self, name: &str, work: impl FnOnce() -> T) -> T {
        let started = Instant::now();
        let result = work();
        self.done.push((name.to_string(), started.elapsed()));
        show(&format!("e2e: {name}: {:.1} s", started.elapsed().as_secs_f64()));
        result
    }

    fn table(&self) -> String {
        let mut md = "| phase | time |\n|---|---|\n".to_string();
        let mut total = Duration::ZERO;
        for (name, took) in &self.done {
            total += *took;
            let _ = writeln!(md, "| {name} | {:.1} s |", took.as_secs_f64());
        }
        let _ = writeln!(md, "| **total** | **{:.1} s** |", total.as_secs_f64());
        md
    }
}

/// Prints to stderr past the test harness' capture, so every run shows it.
fn show(text: &str) {
    let _ = writeln!(std::io::stderr(), "{text}");
}

/// A pod of the pause image attached to `ros-lan` in [`E2E_NAMESPACE`].
fn pause_pod(name: &str) -> String {
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": E2E_NAMESPACE,
                     "annotations": {multus::NETWORKS_ANNOTATION: "ros-lan"}},
        "spec": {
            "automountServiceAccountToken": false,
            "terminationGracePeriodSeconds": 2,
            "containers": [{"name": "app", "image": roslan_tests::one_node::PAUSE_IMAGE}],
        },
    })
    .to_string()
}

/// `kubectl wait` for pods to be Ready; panics with their description and the node's logs.
fn wait_ready(cluster: &OneNodeCluster, namespace: &str, what: &[&str]) {
    let mut args = vec!["-n", namespace, "wait", "--for=condition=Ready", "--timeout=90s"];
    args.extend_from_slice(what);
    let out = cluster.kubectl(&args);
    if !out.status.success() {
        panic!(
            "{what:?} in {namespace} not Ready: {}\n{}\n{}",
            String::from_utf8_lossy(&out.stderr),
            String::from_utf8_lossy(&cluster.kubectl(&["-n", namespace, "describe", "pods"]).stdout),
            cluster.logs(40)
        );
    }
}

/// A pod's `net1` as Multus reported it in `network-status`: (addresses, MAC).
fn net1_status(cluster: &OneNodeCluster, namespace: &str, pod: &str) -> (Vec<String>, String) {
    let status = multus::network_status(cluster.control_plane(), namespace, pod);
    let net1 = status
        .iter()
        .find(|s| s["interface"] == "net1")
        .unwrap_or_else(|| panic!("{namespace}/{pod}: no net1 in network-status {status:?}"));
    let ips = net1["ips"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .map(str::to_string)
        .collect();
    (ips, net1["mac"].as_str().unwrap_or_default().to_string())
}

/// `net1`'s IPv4 addresses inside a pod's network namespace (its path on the node).
fn net1_in_pod(cluster: &OneNodeCluster, netns: &str) -> Vec<String> {
    let out = cluster.node().run_ok(
        "nsenter",
        &[
            &format!("--net={netns}"),
            "ip",
            "-4",
            "-j",
            "addr",
            "show",
            "dev",
            "net1",
        ],
    );
    let json: Value = serde_json::from_str(&out).unwrap_or(Value::Null);
    json[0]["addr_info"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|a| a["local"].as_str().map(str::to_string))
        .collect()
}

/// Runs a CNI plugin on the node with CNI_COMMAND=VERSION; its supportedVersions.
fn cni_versions(cluster: &OneNodeCluster, plugin: &str) -> Vec<String> {
    let mut child = cluster
        .node()
        .command(plugin)
        .env("CNI_COMMAND", "VERSION")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("run the plugin on the node");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(br#"{"cniVersion":"1.0.0"}"#)
        .expect("write stdin");
    let out = child.wait_with_output().expect("wait");
    let reply: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{plugin} VERSION: {e}: {}", String::from_utf8_lossy(&out.stdout)));
    reply["supportedVersions"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .map(str::to_string)
        .collect()
}

/// The bin dir's entries: name -> symlink target or the file's bytes' length and content (to compare).
fn bin_dir_snapshot(cluster: &OneNodeCluster) -> BTreeMap<String, String> {
    let dir = cluster.node().path(BIN_DIR);
    std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .flatten()
        .map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let what = match std::fs::read_link(e.path()) {
                Ok(target) => format!("-> {}", target.display()),
                Err(_) => {
                    let bytes = std::fs::read(e.path()).unwrap_or_default();
                    let sum = bytes.iter().fold(0u64, |h, b| {
                        h.wrapping_mul(1_099_511_628_211).wrapping_add(u64::from(*b))
                    });
                    format!("{} bytes, fnv {sum:016x}", bytes.len())
                }
            };
            (name, what)
        })
        .collect()
}

/// What a sandbox left in the node's CNI state (`/var/lib/cni`: host-local reservations, Multus' and
/// libcni's caches), its network namespace, and the node's links.
struct PodTraces {
    sandboxes: Vec<(String, String, String)>,
    links_before: Vec<String>,
}

impl PodTraces {
    /// Records the deployment's sandboxes, and checks there is something to look for: each sandbox has
    /// files in /var/lib/cni and its network namespace.
    fn record(cluster: &OneNodeCluster, deployment: &Deployment, links_before: Vec<String>) -> PodTraces {
        let sandboxes = deployment.sandboxes();
        let expected = deployment.workload.pods.len();
        assert_eq!(sandboxes.len(), expected, "one sandbox per pod: {sandboxes:?}");
        for (pod, id, netns) in &sandboxes {
            let files = cluster.node().files_mentioning("/var/lib/cni", id);
            assert!(!files.is_empty(), "{pod}: no CNI state names sandbox {id}");
            if deployment.workload.attaches {
                assert!(
                    files.iter().any(|f| f.to_string_lossy().contains("/networks/")),
                    "{pod}: no address reservation for sandbox {id}: {files:?}"
                );
            }
            assert!(cluster.node().path(netns).exists(), "{pod}: no {netns}");
        }
        PodTraces {
            sandboxes,
            links_before,
        }
    }

    /// After the pods are deleted: no file names or holds their sandbox IDs, their namespaces are gone,
    /// and the node has exactly the links it had before.
    fn assert_gone(&self, cluster: &OneNodeCluster, what: &str) {
        for (pod, id, netns) in &self.sandboxes {
            let files = cluster.node().files_mentioning("/var/lib/cni", id);
            assert!(files.is_empty(), "{what}: pod {pod}'s sandbox {id} left {files:?}");
            assert!(!cluster.node().path(netns).exists(), "{what}: pod {pod} left {netns}");
        }
        assert_eq!(
            cluster.node().links(),
            self.links_before,
            "{what}: the node's links changed"
        );
    }
}

/// One row of the examples' table: the run's outcome and how long the whole run took.
struct Row {
    outcome: Outcome,
    took: Duration,
}

/// Applies `workload` on `network`, listens, checks the cleanup after `kubectl delete -k`, and times it;
/// `during` runs while the pods run, after the listening.
fn run_workload(
    cluster: &OneNodeCluster,
    workload: &Workload,
    network: Network,
    during: impl FnOnce(&Deployment),
) -> Row {
    let started = Instant::now();
    let links = cluster.node().links();
    let dir = cluster
        .node()
        .dir()
        .join(format!("overlays/{}-{network:?}", workload.namespace));
    let deployment = Deployment::apply(cluster, workload, network, &dir);
    if deployment.ready.is_none() {
        panic!(
            "{} on {}: pods not Ready\n{}\n{}",
            workload.label,
            network.label(),
            String::from_utf8_lossy(&cluster.kubectl(&["-n", &workload.namespace, "describe", "pods"]).stdout),
            cluster.logs(40)
        );
    }
    let outcome = deployment.listen(WINDOW);
    let traces = PodTraces::record(cluster, &deployment, links);
    during(&deployment);
    deployment.delete();
    traces.assert_gone(cluster, &format!("{} on {}", workload.label, network.label()));
    let took = started.elapsed();
    show(&format!(
        "e2e: {} on {}: {} ({:.1} s)",
        workload.label,
        network.label(),
        outcome.summary(),
        took.as_secs_f64()
    ));
    Row { outcome, took }
}

/// A ROS 2 laptop on the LAN host: a listener and a talker (tag `lh`) in containers of a sandbox there,
/// on the DDS domain `domain`.
struct Laptop {
    listener: Peer,
    talker: Peer,
    _sandbox: Sandbox,
}

impl Laptop {
    fn start(node: &NodeHost, domain: &str) -> Laptop {
        let sandbox = Sandbox::new(&node.lan_host, "laptop");
        let env = [("ROS_DOMAIN_ID", domain)];
        let listener = listener(Middleware::FastDds, &sandbox, "lh-l", &env);
        let talker = talker(Middleware::FastDds, &sandbox, "lh", &env);
        Laptop {
            listener,
            talker,
            _sandbox: sandbox,
        }
    }

    /// The tags the laptop's listener heard from elsewhere (it also hears its own talker), sorted.
    fn heard(&self) -> Vec<String> {
        let mut tags: Vec<String> = self
            .listener
            .lines()
            .iter()
            .filter_map(|l| parse_heard(&l.text).map(|m| m.tag))
            .filter(|tag| tag != "lh")
            .collect();
        tags.sort();
        tags.dedup();
        tags
    }

    /// While `deployment`'s pods run: waits (at most [`WINDOW`] once its pods' talkers were heard) until the
    /// laptop heard all of them and the pods' listener heard the laptop; (what the laptop heard, whether the
    /// pods' listener heard it).
    fn exchange(&self, deployment: &Deployment) -> (Vec<String>, bool) {
        let mut want: Vec<String> = deployment.workload.talkers().into_iter().map(|(_, t)| t).collect();
        want.sort();
        let (lpod, lcontainer) = deployment.workload.listener();
        let pods_heard_laptop = || {
            deployment
                .logs(&lpod, &lcontainer)
                .iter()
                .any(|l| parse_heard(&l.text).is_some_and(|m| m.tag == "lh"))
        };
        let deadline = Instant::now() + WINDOW;
        loop {
            let (heard, heard_laptop) = (self.heard(), pods_heard_laptop());
            if (heard == want && heard_laptop) || Instant::now() > deadline {
                return (heard, heard_laptop);
            }
            std::thread::sleep(Duration::from_secs(1));
        }
    }

    /// Stops both; checks the talker published.
    fn stop(self) {
        let talker = self.talker.stop();
        assert!(
            talker.printed("publishing"),
            "the laptop's talker never published:\n{}",
            talker.transcript()
        );
    }
}

/// Restarts kubelet and containerd under the running pods of `deployment` and checks the pods keep their
/// sandboxes, containers and `net1` addresses, and the listener goes on hearing.
fn restart_node_agents(cluster: &OneNodeCluster, deployment: &Deployment) -> Duration {
    let started = Instant::now();
    let ns = &deployment.workload.namespace;
    let before = deployment.sandboxes();
    let addresses: Vec<(String, Vec<String>)> = before
        .iter()
        .map(|(pod, _, netns)| (pod.clone(), net1_in_pod(cluster, netns)))
        .collect();
    for (pod, ips) in &addresses {
        assert!(!ips.is_empty(), "{ns}/{pod} has no net1 address before the restart");
    }
    let (lpod, lcontainer) = deployment.workload.listener();
    let heard_before = deployment.logs(&lpod, &lcontainer).len();
    cluster.stop_kubelet();
    cluster.stop_containerd();
    cluster.start_containerd();
    cluster.start_kubelet();
    wait_ready(cluster, ns, &["pod", "--all"]);
    let after = deployment.sandboxes();
    let ids = |list: &[(String, String, String)]| {
        let mut v: Vec<String> = list.iter().map(|(_, id, _)| id.clone()).collect();
        v.sort();
        v
    };
    assert_eq!(ids(&after), ids(&before), "the restart replaced sandboxes");
    for (pod, ips) in &addresses {
        let netns = &after.iter().find(|(p, _, _)| p == pod).expect("the pod").2;
        assert_eq!(&net1_in_pod(cluster, netns), ips, "{ns}/{pod}'s net1 after the restart");
    }
    let pods = cluster.kubectl_json(&["-n", ns, "get", "pods"]);
    for pod in pods["items"].as_array().into_iter().flatten() {
        for status in pod["status"]["containerStatuses"].as_array().into_iter().flatten() {
            assert_eq!(status["restartCount"], 0, "a container restarted: {status}");
        }
    }
    // The talkers publish once a second: new messages arrive within a few seconds.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let now = deployment.logs(&lpod, &lcontainer).len();
        if now >= heard_before + 4 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the listener heard nothing new after the restart ({heard_before} then {now} lines)"
        );
        std::thread::sleep(Duration::from_secs(1));
    }
    started.elapsed()
}

/// `kubectl -n roslan rollout status daemonset/roslan-install`; panics with its output and the node's logs.
fn installer_rollout(cluster: &OneNodeCluster) {
    let out = cluster.kubectl(&[
        "-n",
        "roslan",
        "rollout",
        "status",
        "daemonset/roslan-install",
        "--timeout=120s",
    ]);
    assert!(
        out.status.success(),
        "rollout: {}{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
        cluster.logs(40)
    );
}

/// The installer's log (`kubectl logs daemonset/roslan-install`, the newest pod's) once it holds
/// `line`; panics with it after 30 s.
fn installer_log_until(cluster: &OneNodeCluster, line: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let out = cluster.kubectl(&["-n", "roslan", "logs", "daemonset/roslan-install"]);
        let log = String::from_utf8_lossy(&out.stdout).into_owned();
        if log.contains(line) {
            return log;
        }
        assert!(
            Instant::now() < deadline,
            "the installer's log has no {line:?} after 30 s:\n{log}"
        );
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// The install check: the DaemonSet from `manifests/`, its log, the binaries; then the single-node
/// network through an overlay and a pod on it.
fn install(cluster: &OneNodeCluster) {
    let manifests = repo().join("manifests");
    cluster.kubectl_ok(&["apply", "-k", manifests.to_str().expect("UTF-8")]);
    installer_rollout(cluster);
    // The installer logs its first pass right after it starts: wait for its last line.
    let log = installer_log_until(cluster, "checking again every");
    // docs/install.md, "MicroK8s quick start": these lines, in this order.
    let expected = [
        format!(
            "roslan info install: CNI bin dir: {BIN_DIR} (MicroK8s node: /var/snap/microk8s/current exists; host root /host)"
        ),
        format!("roslan info install: installed {BIN_DIR}/roslan (it was missing; "),
        format!("roslan info install: installed {BIN_DIR}/roslan-ipam (it was missing; "),
        format!(
            "roslan info install: wrote node name \"{NODE_NAME}\" to /var/lib/roslan/node-name (it was missing; roslan's nodeRanges IPAM reads it)"
        ),
        "roslan info install: checking again every 30s; SIGTERM or SIGINT stops".to_string(),
    ];
    let lines: Vec<&str> = log.lines().collect();
    let mut at = 0;
    for want in &expected {
        at += lines[at..]
            .iter()
            .position(|l| l.contains(want.as_str()))
            .unwrap_or_else(|| panic!("the installer's log lacks {want:?} (in order):\n{log}"));
    }
    // The block agent (ROSLAN_LEASE_BLOCKS) reaches the API server from the pod, through the cluster
    // network and the `kubernetes` Service, and says so in its status file.
    let status = cluster.node().path("/var/lib/roslan/agent-status");
    let deadline = Instant::now() + Duration::from_secs(30);
    while !std::fs::read_to_string(&status).is_ok_and(|s| s.lines().any(|l| l == "api reachable")) {
        assert!(
            Instant::now() < deadline,
            "the block agent did not reach the API server: {:?}\n{}",
            std::fs::read_to_string(&status),
            installer_log_until(cluster, "")
        );
        std::thread::sleep(Duration::from_millis(250));
    }
    let log = installer_log_until(cluster, "checking again every");
    let lines: Vec<&str> = log.lines().collect();
    for line in &lines {
        assert!(
            !line.contains(" warn ") && !line.contains(" error "),
            "the installer complained: {line}\n{log}"
        );
    }
    for plugin in ["roslan", "roslan-ipam"] {
        assert_eq!(
            cni_versions(cluster, &format!("{BIN_DIR}/{plugin}")),
            ["0.1.0", "0.2.0", "0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"],
            "{plugin} in MicroK8s' bin dir"
        );
    }
    assert_eq!(
        std::fs::read_to_string(cluster.node().path("/var/lib/roslan/node-name")).unwrap_or_default(),
        format!("{NODE_NAME}\n")
    );

    // The network: single-node through an overlay that changes only the range (the test LAN is the
    // manifests' 192.168.1.0/24 with its router at .1, so subnet and gateway stay).
    let dir = cluster.node().dir().join("overlays/e2e-network");
    std::fs::create_dir_all(&dir).expect("create the overlay");
    let mut config = single_node_config();
    config["ipam"]["ranges"][0][0]["rangeStart"] = json!(E2E_RANGE.0);
    config["ipam"]["ranges"][0][0]["rangeEnd"] = json!(E2E_RANGE.1);
    std::fs::write(
        dir.join("namespace.yaml"),
        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": E2E_NAMESPACE}}).to_string(),
    )
    .expect("write the namespace");
    write_kustomization(
        &dir,
        &json!({
            "apiVersion": "kustomize.config.k8s.io/v1beta1",
            "kind": "Kustomization",
            "namespace": E2E_NAMESPACE,
            "resources": ["namespace.yaml", relative(&dir, &repo().join("manifests/networks/single-node"))],
            "patches": [nad_patch(&config)],
        }),
    );
    cluster.kubectl_ok(&["apply", "-k", dir.to_str().expect("UTF-8")]);
    cluster.control_plane().apply(&pause_pod("on-the-lan"));
    wait_ready(cluster, E2E_NAMESPACE, &["pod/on-the-lan"]);
    let (ips, mac) = net1_status(cluster, E2E_NAMESPACE, "on-the-lan");
    assert_eq!(ips, [E2E_RANGE.0], "the first address of the overlay's range");
    assert!(mac.len() == 17, "net1 has a MAC in network-status: {mac:?}");
    cluster.kubectl_ok(&["-n", E2E_NAMESPACE, "delete", "pod", "on-the-lan", "--wait=true"]);
}

/// A pod whose network namespace is deleted under it (as after `ip netns delete`, or a reboot that
/// lost /run) must still be deleted: Multus and roslan get a DEL with no namespace, release the address,
/// and the pod does not stay Terminating.
fn delete_with_netns_gone(cluster: &OneNodeCluster) {
    let links = cluster.node().links();
    cluster.control_plane().apply(&pause_pod("netns-gone"));
    wait_ready(cluster, E2E_NAMESPACE, &["pod/netns-gone"]);
    let sandboxes = cluster.crictl_ok(&["pods", "--namespace", E2E_NAMESPACE, "--name", "netns-gone", "-q"]);
    let id = sandboxes.split_whitespace().next().expect("its sandbox").to_string();
    let netns = cluster.sandbox_netns(&id);
    let reservations = cluster.node().files_mentioning("/var/lib/cni/networks/ros-lan", &id);
    assert_eq!(reservations.len(), 1, "one reservation for the pod: {reservations:?}");
    let name = netns.rsplit('/').next().expect("a name");
    cluster.node().run_ok("ip", &["netns", "delete", name]);
    assert!(!cluster.node().path(&netns).exists(), "{netns} is gone");
    let started = Instant::now();
    let out = cluster.kubectl(&[
        "-n",
        E2E_NAMESPACE,
        "delete",
        "pod",
        "netns-gone",
        "--wait=true",
        "--timeout=60s",
    ]);
    assert!(
        out.status.success(),
        "the pod whose netns was gone is wedged: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        cluster.logs(30)
    );
    let files = cluster.node().files_mentioning("/var/lib/cni", &id);
    assert!(files.is_empty(), "the DEL without a namespace left {files:?}");
    assert_eq!(cluster.node().links(), links);
    show(&format!(
        "e2e: a pod whose netns was gone deleted in {:.1} s",
        started.elapsed().as_secs_f64()
    ));
}

/// roslan's image under another tag with other bytes (`roslan` with a trailing comment, which changes
/// nothing it does), written as `dir/roslan-upgrade.oci.tar` by install/image/oci_archive.py; returns the
/// archive and the new `roslan`'s bytes.
fn upgrade_image(dir: &Path) -> (Archive, Vec<u8>) {
    let original = roslan_archive().path;
    let member = |name: &str| -> Vec<u8> {
        let mut c = Command::new("tar");
        c.arg("-xOf").arg(&original).arg(name);
        run_ok(c, &format!("read {name} from {}", original.display())).stdout
    };
    let blob = |digest: &Value| {
        format!(
            "blobs/sha256/{}",
            digest.as_str().expect("a digest").trim_start_matches("sha256:")
        )
    };
    let index: Value = serde_json::from_slice(&member("index.json")).expect("index.json");
    let manifest: Value = serde_json::from_slice(&member(&blob(&index["manifests"][0]["digest"]))).expect("manifest");
    let config: Value = serde_json::from_slice(&member(&blob(&manifest["config"]["digest"]))).expect("config");
    let rootfs = dir.join("rootfs");
    std::fs::create_dir_all(&rootfs).expect("create the rootfs");
    for layer in manifest["layers"].as_array().expect("layers") {
        let mut c = Command::new("sh");
        c.args(["-c", "tar -xOf \"$0\" \"$1\" | tar -xzf - -C \"$2\""])
            .arg(&original)
            .arg(blob(&layer["digest"]))
            .arg(&rootfs);
        run_ok(c, "unpack the image's layer");
    }
    let binary = rootfs.join("opt/roslan/bin/roslan");
    let mut bytes = std::fs::read(&binary).expect("the image's roslan");
    bytes.extend_from_slice(b"\n# roslan e2e: the upgrade's bytes\n");
    std::fs::write(&binary, &bytes).expect("write the new roslan");
    let runtime = dir.join("config.json");
    std::fs::write(&runtime, config["config"].to_string()).expect("write the runtime config");
    let archive = dir.join("roslan-upgrade.oci.tar");
    let name = format!("ghcr.io/roslan/roslan:{UPGRADE_TAG}");
    let mut c = Command::new("python3");
    c.arg(repo().join("install/image/oci_archive.py"))
        .arg("rootfs")
        .arg(&rootfs)
        .arg(&archive)
        .arg(&name)
        .arg(&runtime);
    run_ok(c, "write the upgrade's archive");
    (Archive::new(archive, &name, "make image"), bytes)
}

/// The upgrade as docs/install.md describes it (an `images:` entry, `kubectl apply -k`), while pods that
/// attach roslan are being created: the binary must be in place at every moment (checked every 2 ms),
/// every pod must come up, and the new installer must have replaced the binary with the new image's.
fn rollout_to_second_tag(cluster: &OneNodeCluster) {
    let dir = cluster.node().dir().join("upgrade");
    let (archive, new_bytes) = upgrade_image(&dir);
    cluster.import(&archive);

    let binary = cluster.node().path(&format!("{BIN_DIR}/roslan"));
    let stop = Arc::new(AtomicBool::new(false));
    let missing = Arc::new(AtomicUsize::new(0));
    let checks = Arc::new(AtomicUsize::new(0));
    let watcher = {
        let (stop, missing, checks, binary) = (stop.clone(), missing.clone(), checks.clone(), binary.clone());
        std::thread::spawn(move || {
            use std::os::unix::fs::PermissionsExt;
            while !stop.load(Ordering::Relaxed) {
                let ok = std::fs::metadata(&binary).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0);
                if !ok {
                    missing.fetch_add(1, Ordering::Relaxed);
                }
                checks.fetch_add(1, Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(2));
            }
        })
    };
    let overlay = cluster.node().dir().join("overlays/upgrade");
    std::fs::create_dir_all(&overlay).expect("create the overlay");
    write_kustomization(
        &overlay,
        &json!({
            "apiVersion": "kustomize.config.k8s.io/v1beta1",
            "kind": "Kustomization",
            "resources": [relative(&overlay, &repo().join("manifests"))],
            "images": [{"name": "ghcr.io/roslan/roslan", "newTag": UPGRADE_TAG}],
        }),
    );
    cluster.kubectl_ok(&["apply", "-k", overlay.to_str().expect("UTF-8")]);
    let pods: Vec<String> = (0..5).map(|i| format!("during-rollout-{i}")).collect();
    for pod in &pods {
        cluster.control_plane().apply(&pause_pod(pod));
        std::thread::sleep(Duration::from_millis(700));
    }
    installer_rollout(cluster);
    let names: Vec<String> = pods.iter().map(|p| format!("pod/{p}")).collect();
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    wait_ready(cluster, E2E_NAMESPACE, &names);
    // The new installer's first pass.
    let log = installer_log_until(cluster, "checking again every");
    stop.store(true, Ordering::Relaxed);
    watcher.join().expect("the watcher");
    assert_eq!(
        missing.load(Ordering::Relaxed),
        0,
        "roslan was missing or not executable in {} of {} checks during the rollout",
        missing.load(Ordering::Relaxed),
        checks.load(Ordering::Relaxed)
    );
    assert!(
        log.contains(&format!("installed {BIN_DIR}/roslan (its content differs")),
        "the new installer did not replace roslan:\n{log}"
    );
    assert!(
        std::fs::read(&binary).expect("roslan") == new_bytes,
        "roslan is the new image's"
    );
    let events = cluster.kubectl_ok(&["-n", E2E_NAMESPACE, "get", "events", "-o", "json"]);
    assert!(
        !events.contains("FailedCreatePodSandBox"),
        "a pod's ADD failed during the rollout: {events}"
    );
    for pod in &pods {
        let (ips, _) = net1_status(cluster, E2E_NAMESPACE, pod);
        assert_eq!(ips.len(), 1, "{pod} got its LAN address");
    }
    let mut delete = vec!["-n", E2E_NAMESPACE, "delete", "--wait=true"];
    delete.extend(names.iter().copied());
    cluster.kubectl_ok(&delete);
    show(&format!(
        "e2e: rollout to {UPGRADE_TAG}: roslan present in all {} checks, {} pods added",
        checks.load(Ordering::Relaxed),
        pods.len()
    ));
}

/// `roslan doctor` on the node as docs/diagnostics.md runs it: exit code and output.
fn doctor(cluster: &OneNodeCluster, roslan: &str, config: &Path) -> (i32, String) {
    let out = cluster
        .node()
        .command(roslan)
        .args(["doctor", "--config"])
        .arg(config)
        .output()
        .expect("run roslan doctor");
    (
        out.status.code().unwrap_or(-1),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

/// A check's line in the doctor's report: (status, detail), the columns split however wide they are.
fn finding<'a>(report: &'a str, check: &str) -> Option<(&'a str, &'a str)> {
    report.lines().find_map(|line| {
        let (status, rest) = line.split_once(' ')?;
        let rest = rest.trim_start();
        let detail = rest.strip_prefix(check)?.strip_prefix(' ')?;
        ["pass", "warn", "fail"]
            .contains(&status)
            .then_some((status, detail.trim_start()))
    })
}

/// The doctor's healthy report, then with the NIC down, then with the bin dir emptied (which the
/// installer repairs within its interval).
fn diagnostics(cluster: &OneNodeCluster) -> String {
    let mut report = String::new();
    let roslan = format!("{BIN_DIR}/roslan");
    // "kubectl -n robots get net-attach-def ros-lan -o jsonpath='{.spec.config}' > /tmp/ros-lan.json",
    // into the node's throwaway directory instead of the machine's /tmp.
    let config = cluster.node().dir().join("ros-lan.json");
    let text = cluster.kubectl_ok(&[
        "-n",
        E2E_NAMESPACE,
        "get",
        "net-attach-def",
        "ros-lan",
        "-o",
        "jsonpath={.spec.config}",
    ]);
    std::fs::write(&config, text).expect("write the network's configuration");

    let (code, healthy) = doctor(cluster, &roslan, &config);
    let _ = writeln!(report, "healthy node (exit {code}):\n{healthy}");
    assert_eq!(code, 0, "the doctor on a healthy node:\n{healthy}");
    for (check, starts) in [
        ("master", NIC.to_string()),
        ("link", format!("{NIC} is up")),
        ("binary", format!("{BIN_DIR}/roslan: roslan")),
    ] {
        assert!(
            finding(&healthy, check).is_some_and(|(status, detail)| status == "pass" && detail.starts_with(&starts)),
            "the healthy report has no pass for {check} ({starts}):\n{healthy}"
        );
    }
    assert!(healthy.lines().any(|l| l.starts_with("0 fail,")), "{healthy}");

    cluster.node().net.ip(&["link", "set", NIC, "down"]);
    let (code, down) = doctor(cluster, &roslan, &config);
    cluster.node().net.ip(&["link", "set", NIC, "up"]);
    cluster.node().net.ip(&[
        "route",
        "replace",
        "default",
        "via",
        roslan_tests::node::LAN_HOST_ADDR,
        "dev",
        NIC,
    ]);
    let _ = writeln!(report, "NIC down (exit {code}):\n{down}");
    assert_eq!(code, 1, "the doctor with {NIC} down:\n{down}");
    assert!(
        finding(&down, "link")
            .is_some_and(|(status, detail)| status == "fail" && detail.starts_with(&format!("{NIC} is down"))),
        "no failed link check:\n{down}"
    );
    assert!(
        down.contains(&format!("ip link set {NIC} up")),
        "no fix for the link:\n{down}"
    );

    // The bin dir emptied: everything moved aside; the doctor run from the moved copy.
    // The tree's own path on the machine: a rename through /proc/<pid>/root would cross mounts.
    let bin = cluster
        .node()
        .microk8s_root()
        .join("var/snap/microk8s/current/opt/cni/bin");
    let stash = cluster.node().dir().join("bin-stash");
    std::fs::create_dir_all(&stash).expect("create the stash");
    let moved: Vec<String> = std::fs::read_dir(&bin)
        .expect("the bin dir")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    for name in &moved {
        std::fs::rename(bin.join(name), stash.join(name)).expect("move a plugin aside");
    }
    let emptied = Instant::now();
    let (code, empty) = doctor(cluster, stash.join("roslan").to_str().expect("UTF-8"), &config);
    let _ = writeln!(report, "bin dir emptied (exit {code}):\n{empty}");
    assert_eq!(code, 1, "the doctor with the bin dir emptied:\n{empty}");
    assert!(
        finding(&empty, "binary")
            .is_some_and(|(status, detail)| status == "fail" && detail.starts_with(&format!("no roslan in {BIN_DIR}"))),
        "the doctor did not report the missing binary as a failure:\n{empty}"
    );
    assert!(
        empty.contains(&format!("{BIN_DIR}/roslan")) && empty.contains("fix: install it with the roslan DaemonSet"),
        "the fix names MicroK8s' bin dir:\n{empty}"
    );
    // The installer re-checks every 30 s and puts roslan back.
    let deadline = emptied + Duration::from_secs(45);
    while !bin.join("roslan").exists() {
        assert!(
            Instant::now() < deadline,
            "the installer did not put roslan back within 45 s"
        );
        std::thread::sleep(Duration::from_millis(250));
    }
    let _ = writeln!(
        report,
        "the installer put roslan back after {:.1} s",
        emptied.elapsed().as_secs_f64()
    );
    for name in &moved {
        if bin.join(name).exists() {
            std::fs::remove_file(stash.join(name)).expect("drop the stale copy");
        } else {
            std::fs::rename(stash.join(name), bin.join(name)).expect("put a plugin back");
        }
    }
    let (code, again) = doctor(cluster, &roslan, &config);
    assert_eq!(code, 0, "the doctor after the repair:\n{again}");
    report
}

/// Uninstalling as docs/install.md says; the bin dir must be as it was before the install.
fn uninstall(cluster: &OneNodeCluster, before_install: &BTreeMap<String, String>) {
    cluster.kubectl_ok(&[
        "-n",
        "roslan",
        "set",
        "env",
        "daemonset/roslan-install",
        "ROSLAN_UNINSTALL=true",
    ]);
    installer_rollout(cluster);
    let log = installer_log_until(cluster, "uninstalled everything roslan-install had recorded");
    assert_eq!(
        &bin_dir_snapshot(cluster),
        before_install,
        "the bin dir after uninstalling:\n{log}"
    );
    for file in [
        "/var/lib/roslan/node-name",
        "/var/lib/roslan/installed.json",
        "/var/lib/roslan/node-blocks",
        "/var/lib/roslan/agent-status",
    ] {
        assert!(!cluster.node().path(file).exists(), "{file} is left:\n{log}");
    }
    let manifests = repo().join("manifests");
    cluster.kubectl_ok(&["delete", "-k", manifests.to_str().expect("UTF-8"), "--wait=true"]);
}

/// The interface Cyclone DDS selects in a pod's network namespace and the candidates it scored (a short
/// `ddsperf` run there with the `config` trace, nothing configured).
fn cyclone_pick(cluster: &OneNodeCluster, netns: &str) -> (String, String) {
    let out = cluster
        .node()
        .command("timeout")
        .args(["10", "nsenter", &format!("--net={netns}"), "ddsperf", "-D", "2", "sub"])
        .env("CYCLONEDDS_URI", roslan_tests::dds::selection_trace_uri(""))
        .output()
        .expect("run ddsperf in the pod's namespace");
    let lines: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect();
    let selection = roslan_tests::dds::parse_selection(&lines).unwrap_or_else(|| {
        panic!(
            "Cyclone printed no interface selection in {netns}: {}",
            lines.join("\n")
        )
    });
    (selection.selected, selection.candidates)
}

/// Cell text for the examples' table.
fn cell(row: Option<&Row>) -> String {
    row.map_or_else(String::new, |r| r.outcome.summary())
}

#[root_test("needs root, the peers and the images: run `make e2e` as root")]
fn a_microk8s_node_runs_the_seeds_examples_through_multus_and_roslan() {
    require_nodes();
    let images = [roslan_archive(), ros_archive()];
    let mut phases = Phases::default();
    let cluster = phases.time(
        "cluster up (node, control plane, Multus, containerd, 3 images, kubelet)",
        || OneNodeCluster::start(&images, microk8s_multus),
    );
    let trace = cluster.node().trace();
    let control_plane_dir = cluster.control_plane().dir().to_path_buf();
    let before_install = bin_dir_snapshot(&cluster);

    phases.time(
        "install (apply -k manifests/, rollout, network overlay, a pod on it)",
        || install(&cluster),
    );

    let mut rows: BTreeMap<(String, Network), Row> = BTreeMap::new();
    let mut laptop_heard: Vec<(Network, Vec<String>, bool)> = Vec::new();
    for number in 1..=5 {
        let workload = Workload::example(number);
        let networks: &[Network] = if workload.attaches {
            &[Network::Roslan, Network::Seed, Network::SeedWithRoute]
        } else {
            &[Network::Roslan]
        };
        for &network in networks {
            let laptop = (number == 3).then(|| Laptop::start(cluster.node(), "3"));
            let mut restart = None;
            let mut exchange = None;
            let row = run_workload(&cluster, &workload, network, |deployment| {
                if number == 5 && network == Network::Roslan {
                    restart = Some(restart_node_agents(&cluster, deployment));
                }
                if let Some(laptop) = &laptop {
                    exchange = Some(laptop.exchange(deployment));
                }
            });
            if let Some(laptop) = laptop {
                laptop.stop();
                let (heard, heard_laptop) = exchange.expect("the laptop listened");
                laptop_heard.push((network, heard, heard_laptop));
            }
            phases
                .done
                .push((format!("example {number} on {}", network.label()), row.took));
            if let Some(took) = restart {
                show(&format!(
                    "e2e: kubelet and containerd restarted under example 5 in {:.1} s",
                    took.as_secs_f64()
                ));
            }
            rows.insert((workload.label.clone(), network), row);
        }
    }

    let mut cyclone_rows: Vec<(String, Network, Row, String)> = Vec::new();
    // net1's MAC per pod name over the pair's roslan runs: stableMac derives it from the network, the
    // namespace and the pod's name, which Multus passes in CNI_ARGS.
    let mut macs: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (exclusive, network) in [
        (true, Network::Roslan),
        (false, Network::Roslan),
        (true, Network::Seed),
        (true, Network::SeedWithRoute),
    ] {
        let dir = cluster.node().dir().join(format!("cyclone-{exclusive}-{network:?}"));
        let workload = Workload::cyclone_pair(&dir, exclusive);
        let mut picked: Vec<(String, String, String)> = Vec::new();
        let row = run_workload(&cluster, &workload, network, |deployment| {
            for (pod, _, netns) in deployment.sandboxes() {
                let (selected, candidates) = cyclone_pick(&cluster, &netns);
                if network == Network::Roslan {
                    let (_, mac) = net1_status(&cluster, &workload.namespace, &pod);
                    macs.entry(pod.clone()).or_default().push(mac);
                }
                picked.push((pod, selected, candidates));
            }
        });
        for (pod, selected, candidates) in &picked {
            show(&format!(
                "e2e: {} on {}: Cyclone in pod {pod} picks {selected} of {candidates}",
                workload.label,
                network.label()
            ));
        }
        let mut interfaces: Vec<String> = picked.iter().map(|(_, s, _)| s.clone()).collect();
        interfaces.sort();
        interfaces.dedup();
        phases
            .done
            .push((format!("{} on {}", workload.label, network.label()), row.took));
        cyclone_rows.push((workload.label.clone(), network, row, interfaces.join("/")));
    }

    phases.time("lifecycle: delete a pod whose netns is gone", || {
        delete_with_netns_gone(&cluster)
    });
    phases.time("lifecycle: rollout to a second image tag with 5 pods added", || {
        rollout_to_second_tag(&cluster)
    });
    let doctor_report = phases.time("diagnostics: roslan doctor healthy, NIC down, bin dir emptied", || {
        diagnostics(&cluster)
    });
    phases.time("uninstall as documented", || uninstall(&cluster, &before_install));
    phases.time("teardown: delete the e2e's namespace", || {
        cluster.kubectl_ok(&["delete", "namespace", E2E_NAMESPACE, "--wait=true"]);
    });
    phases.time(
        "teardown: stop kubelet, containerd, the control plane; remove the node",
        || drop(cluster),
    );
    let mut leftovers = trace.leftovers();
    if control_plane_dir.exists() {
        leftovers.push(format!("directory {}", control_plane_dir.display()));
    }

    // The tables, before any expectation is asserted, so a failing run shows them too.
    let seed_outcome = [
        "unpredictable (the post: one ROS process per pod)",
        "the listener rarely heard both",
        "the listener rarely heard both (cluster network only)",
        "worked, on one node, with Fast DDS",
        "only one talker was heard",
    ];
    let mut table = "| example | seed's reported outcome | reference today | reference + workaround | roslan |\n|---|---|---|---|---|\n".to_string();
    for number in 1..=5u32 {
        let label = format!("example {number}");
        let get = |n: Network| rows.get(&(label.clone(), n));
        let roslan = cell(get(Network::Roslan));
        let (reference, workaround) = if number <= 2 {
            let same = format!("{roslan} (no second network: the same run)");
            (same.clone(), same)
        } else {
            (cell(get(Network::Seed)), cell(get(Network::SeedWithRoute)))
        };
        let _ = writeln!(
            table,
            "| {number} | {} | {reference} | {workaround} | {roslan} |",
            seed_outcome[number as usize - 1]
        );
    }
    let cyclone = |label: &str, n: Network| {
        cyclone_rows
            .iter()
            .find(|(l, net, _, _)| l == label && *net == n)
            .map_or_else(String::new, |(_, _, r, picked)| {
                format!("{} (Cyclone picks {picked})", r.outcome.summary())
            })
    };
    let _ = writeln!(
        table,
        "| Cyclone DDS pod pair | (not in the seed) | {} | {} | {}; with `\"exclusive\": false`: {} |",
        cyclone("Cyclone pair", Network::Seed),
        cyclone("Cyclone pair", Network::SeedWithRoute),
        cyclone("Cyclone pair", Network::Roslan),
        cyclone("Cyclone pair (exclusive: false)", Network::Roslan)
    );
    let mut lan =
        "| example 3 on | the laptop's listener heard | the pods' listener heard the laptop |\n|---|---|---|\n"
            .to_string();
    for (network, heard, heard_laptop) in &laptop_heard {
        let _ = writeln!(
            lan,
            "| {} | {} | {} |",
            network.label(),
            heard.join(", "),
            if *heard_laptop { "yes" } else { "no" }
        );
    }
    show(&format!(
        "\ne2e: time from `kubectl apply` to the first message each talker's listener logged\n\n{table}\n\
         e2e: the LAN host (a laptop on the robot's LAN, domain 3)\n\n{lan}\ne2e: phases\n\n{}\n\
         e2e: roslan doctor\n\n{doctor_report}",
        phases.table()
    ));

    // Expectations.
    assert!(leftovers.is_empty(), "the node left: {leftovers:#?}");
    for number in 1..=5u32 {
        let label = format!("example {number}");
        let both: &[&str] = if number == 1 { &["t1"] } else { &["t1", "t2"] };
        rows[&(label.clone(), Network::Roslan)].outcome.assert_heard(
            both,
            "roslan: net1 on the LAN, multicast routed through it without a gateway",
        );
        if number >= 3 {
            rows[&(label.clone(), Network::Seed)]
                .outcome
                .assert_heard(both, "Fast DDS sends discovery out of every interface, net1 included");
            rows[&(label.clone(), Network::SeedWithRoute)].outcome.assert_heard(
                &[],
                "224.0.0.0/4 via the gateway: multicast on net1 goes to the gateway's MAC, not to the pods",
            );
        }
    }
    for (label, network, row, _) in &cyclone_rows {
        let want: &[&str] = if *network == Network::Roslan && !label.contains("exclusive: false") {
            &["t1"]
        } else {
            &[]
        };
        row.outcome.assert_heard(
            want,
            match network {
                Network::Roslan if want.is_empty() => "Cyclone picks eth0 unless roslan clears its MULTICAST flag",
                Network::Roslan => "roslan clears eth0's MULTICAST flag (exclusive, the default): Cyclone picks net1",
                Network::Seed => "Cyclone picks eth0",
                Network::SeedWithRoute => "Cyclone picks eth0 (and the route has the gateway)",
            },
        );
    }
    assert_eq!(macs.len(), 2, "the Cyclone pair's MACs: {macs:?}");
    for (pod, seen) in &macs {
        assert!(
            seen.len() == 2 && seen[0] == seen[1] && seen[0].len() == 17,
            "pod {pod} got another MAC when it was created again: {seen:?}"
        );
    }
    let (_, heard, heard_laptop) = laptop_heard
        .iter()
        .find(|(n, _, _)| *n == Network::Roslan)
        .expect("example 3 ran on roslan");
    assert_eq!(heard, &["t1", "t2"], "the laptop hears example 3's talkers");
    assert!(heard_laptop, "example 3's listener hears the laptop's talker");
}
