//! A one-node Kubernetes cluster of real parts on a [`NodeHost`]: the peers' control plane
//! ([`ControlPlane`]: Debian's etcd, kube-apiserver, kube-controller-manager, kube-scheduler 1.34) on the
//! node's loopback, Debian's containerd 1.6 with its CRI set up as MicroK8s sets it up (CNI bin dir
//! `/var/snap/microk8s/current/opt/cni/bin`, conf dir `/var/snap/microk8s/current/args/cni-network`), the
//! peers' kubelet 1.34 (cgroupfs driver, cgroup v1), and crictl for inspection. No registry: the images come
//! from archives imported with `ctr -n k8s.io images import`, as `microk8s images import` does.
//!
//! Settings this machine needs, each with its reason:
//! - containerd: `restrict_oom_score_adj` (the machine's root lacks CAP_SYS_RESOURCE, so no process may
//!   lower an OOM score; kubelet's `oomScoreAdj: 0` for the same reason), the pause image built offline as
//!   its `sandbox_image`, and its root, state, sockets and runc root in the node's throwaway directory;
//! - kubelet: `cgroupDriver: cgroupfs` (no systemd), `cgroupRoot` the node's own cgroup (swap is off on
//!   these machines, so the default `failSwapOn` holds), `protectKernelDefaults: true` (it must never write the machine's
//!   kernel settings; the node's `/proc/sys` shows the values it wants, see [`crate::node`]), eviction and
//!   image garbage collection thresholds at 1 % and 100 % (the machine's disk is shared: a neighbour's
//!   build must not evict the node's pods or delete its imported images, which no registry could restore),
//!   no graceful node shutdown (it needs systemd-logind).
//!
//! No kube-proxy: the one Service the node's pods use, the API server's, is routed by a single DNAT rule in
//! the node's network namespace (`route_kubernetes_service`).
//!
//! kubelet 1.34 with containerd 1.6 (CRI v1): kubelet logs that the runtime lacks `RuntimeConfig` and falls
//! back to its own cgroup driver setting, which is the one containerd's runc options use.
//!
//! Start and drop a cluster on one test thread: the thread's network namespace is the node's while the
//! cluster lives ([`NodeHost::enter_net`]), so the control plane and kubectl run there.

use std::cell::RefCell;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::apiserver::{ControlPlane, KUBERNETES_SERVICE_IP, Options};
use crate::daemon::{Daemon, log_tail};
use crate::netns::ThreadInNetns;
use crate::node::{NODE_ADDR, NODE_NAME, NodeHost};
use crate::peers::peer_bin;
use crate::runtime::{need, private_containerd_config, repo};

/// MicroK8s' `$SNAP_DATA`, through the `current` link.
pub const SNAP_DATA: &str = "/var/snap/microk8s/current";
/// MicroK8s' CNI bin dir (containerd's `bin_dir`), where the installer puts roslan.
pub const BIN_DIR: &str = "/var/snap/microk8s/current/opt/cni/bin";
/// MicroK8s' CNI conf dir (containerd's `conf_dir`), where Multus' `00-multus.conf` goes.
pub const CONF_DIR: &str = "/var/snap/microk8s/current/args/cni-network";
/// The sandbox image, as `make pause-image` names it.
pub const PAUSE_IMAGE: &str = "registry.k8s.io/pause:3.10.1";

/// An OCI archive to import, and the image name it must arrive under.
#[derive(Debug, Clone)]
pub struct Archive {
    /// The file.
    pub path: PathBuf,
    /// `ghcr.io/roslan/roslan:0.1.0`.
    pub name: String,
}

impl Archive {
    /// `path`, which must exist (else the panic names `make_target`, which builds it).
    pub fn new(path: PathBuf, name: &str, make_target: &str) -> Archive {
        assert!(
            path.exists(),
            "{} is missing: run `{make_target}` (`make test` and `make e2e` do)",
            path.display()
        );
        Archive {
            path,
            name: name.to_string(),
        }
    }
}

/// `make pause-image`'s archive.
pub fn pause_archive() -> Archive {
    Archive::new(
        repo().join("target/image/pause-3.10.1.oci.tar"),
        PAUSE_IMAGE,
        "make pause-image",
    )
}

/// A running cluster. Dropping it stops kubelet, containerd and the control plane, then the node takes
/// every remaining process with it.
#[derive(Debug)]
pub struct OneNodeCluster {
    // Restartable while a deployment borrows the cluster (one thread only).
    kubelet: RefCell<Option<Daemon>>,
    containerd: RefCell<Option<Daemon>>,
    control_plane: Option<ControlPlane>,
    node: NodeHost,
    _net: ThreadInNetns,
}

impl OneNodeCluster {
    /// The node, the control plane, then `layout` (which writes MicroK8s' CNI directories and files, such as
    /// Multus' addon, before containerd first reads them), then containerd with `images` imported, then
    /// kubelet; returns once the node is Ready.
    pub fn start(images: &[Archive], layout: impl FnOnce(&NodeHost, &ControlPlane)) -> OneNodeCluster {
        need("containerd", "containerd");
        need("ctr", "containerd");
        need("containerd-shim-runc-v2", "containerd");
        need("runc", "runc");
        peer_bin("kubelet");
        peer_bin("crictl");
        let node = NodeHost::new();
        let net = node.enter_net();
        let control_plane = ControlPlane::start_with(Options {
            controller_manager: true,
            scheduler: true,
        });
        route_kubernetes_service(&node, &control_plane);
        layout(&node, &control_plane);
        let cluster = OneNodeCluster {
            kubelet: RefCell::new(None),
            containerd: RefCell::new(None),
            control_plane: Some(control_plane),
            node,
            _net: net,
        };
        cluster.write_configs();
        cluster.start_containerd();
        for image in images.iter().chain([&pause_archive()]) {
            cluster.import(image);
        }
        cluster.start_kubelet();
        cluster
    }

    /// The node's namespaces and files.
    pub fn node(&self) -> &NodeHost {
        &self.node
    }

    /// The control plane.
    pub fn control_plane(&self) -> &ControlPlane {
        self.control_plane.as_ref().expect("the control plane runs")
    }

    /// Runs kubectl as admin and returns its stdout; panics with its stderr when it fails.
    pub fn kubectl_ok(&self, args: &[&str]) -> String {
        self.control_plane().kubectl_ok(args)
    }

    /// Runs kubectl as admin, whatever its exit status.
    pub fn kubectl(&self, args: &[&str]) -> std::process::Output {
        self.control_plane().kubectl(args)
    }

    /// `kubectl ... -o json`, parsed.
    pub fn kubectl_json(&self, args: &[&str]) -> Value {
        let mut full = args.to_vec();
        full.extend(["-o", "json"]);
        let text = self.kubectl_ok(&full);
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("kubectl {}: not JSON ({e}): {text}", args.join(" ")))
    }

    fn containerd_dir(&self) -> PathBuf {
        self.node.dir().join("containerd")
    }

    /// containerd's socket, as crictl and ctr address it.
    pub fn socket(&self) -> PathBuf {
        self.containerd_dir().join("containerd.sock")
    }

    fn write_configs(&self) {
        let dir = self.containerd_dir();
        std::fs::create_dir_all(&dir).expect("create containerd's directory");
        let d = dir.display();
        let config = private_containerd_config(&dir)
            + &format!(
                r#"[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{PAUSE_IMAGE}"
  restrict_oom_score_adj = true
  stream_server_address = "127.0.0.1"
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
        Root = "{d}/runc"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "{BIN_DIR}"
    conf_dir = "{CONF_DIR}"
"#
            );
        std::fs::write(dir.join("config.toml"), config).expect("write containerd's config");
        // crictl on the node needs no flag, as on a node set up by hand.
        let crictl = format!(
            "runtime-endpoint: unix://{d}/containerd.sock\nimage-endpoint: unix://{d}/containerd.sock\ntimeout: 30\n"
        );
        std::fs::write(self.node.path("/etc/crictl.yaml"), crictl).expect("write /etc/crictl.yaml on the node");
    }

    /// Starts containerd (again, after [`OneNodeCluster::stop_containerd`]) and waits for its CRI.
    pub fn start_containerd(&self) {
        assert!(self.containerd.borrow().is_none(), "containerd runs already");
        let config = self.containerd_dir().join("config.toml");
        let mut daemon = self.node.daemon(
            "containerd",
            Path::new("/usr/bin/containerd"),
            &["--config".to_string(), config.display().to_string()],
        );
        let deadline = Instant::now() + Duration::from_secs(30);
        while !self.crictl(&["info"]).status.success() {
            assert!(
                daemon.running() && Instant::now() < deadline,
                "containerd did not come up:\n{}",
                daemon.log_tail(40)
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        *self.containerd.borrow_mut() = Some(daemon);
    }

    /// Stops containerd (SIGTERM); its shims and the containers keep running, as on a node.
    pub fn stop_containerd(&self) {
        if let Some(mut d) = self.containerd.borrow_mut().take() {
            d.stop();
        }
    }

    /// `ctr -n k8s.io images import`, then checks the CRI knows the image by its name.
    pub fn import(&self, image: &Archive) {
        let socket = self.socket().display().to_string();
        let archive = image.path.display().to_string();
        self.node.run_ok(
            "ctr",
            &["--address", &socket, "-n", "k8s.io", "images", "import", &archive],
        );
        let out = self.crictl(&["inspecti", &image.name]);
        assert!(
            out.status.success(),
            "after importing {archive}, the CRI does not know {}: {}",
            image.name,
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// crictl on the node (it reads the node's /etc/crictl.yaml).
    pub fn crictl(&self, args: &[&str]) -> std::process::Output {
        let mut cmd = self.node.command(peer_bin("crictl"));
        cmd.args(args).output().expect("run crictl")
    }

    /// The network namespace of a sandbox, as the node sees it (`/var/run/netns/cni-...`), from
    /// `crictl inspectp`.
    pub fn sandbox_netns(&self, sandbox: &str) -> String {
        let inspect: Value =
            serde_json::from_str(&self.crictl_ok(&["inspectp", "-o", "json", sandbox])).expect("inspectp JSON");
        inspect["info"]["runtimeSpec"]["linux"]["namespaces"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|n| n["type"] == "network")
            .and_then(|n| n["path"].as_str())
            .unwrap_or_else(|| panic!("sandbox {sandbox} has no network namespace: {inspect}"))
            .to_string()
    }

    /// crictl on the node; panics unless it succeeds; its stdout.
    pub fn crictl_ok(&self, args: &[&str]) -> String {
        let out = self.crictl(args);
        assert!(
            out.status.success(),
            "crictl {} failed: {}{}",
            args.join(" "),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn kubelet_config(&self) -> PathBuf {
        let config = json!({
            "apiVersion": "kubelet.config.k8s.io/v1beta1",
            "kind": "KubeletConfiguration",
            "containerRuntimeEndpoint": format!("unix://{}", self.socket().display()),
            "cgroupDriver": "cgroupfs",
            "cgroupRoot": self.node.cgroup_root(),
            "protectKernelDefaults": true,
            "oomScoreAdj": 0,
            "authentication": {
                "anonymous": {"enabled": false},
                "webhook": {"enabled": true},
                "x509": {"clientCAFile": self.control_plane().ca()},
            },
            "authorization": {"mode": "Webhook"},
            "readOnlyPort": 0,
            "healthzBindAddress": "127.0.0.1",
            "healthzPort": 10248,
            "podLogsDir": "/var/log/pods",
            "resolvConf": "/etc/resolv.conf",
            "evictionHard": {
                "memory.available": "100Mi",
                "nodefs.available": "1%",
                "nodefs.inodesFree": "1%",
                "imagefs.available": "1%",
            },
            "imageGCHighThresholdPercent": 100,
            "imageGCLowThresholdPercent": 99,
            "shutdownGracePeriod": "0s",
            "shutdownGracePeriodCriticalPods": "0s",
            "nodeStatusUpdateFrequency": "5s",
        });
        let path = self.node.dir().join("kubelet-config.json");
        std::fs::write(&path, serde_json::to_vec_pretty(&config).expect("JSON")).expect("write kubelet's config");
        path
    }

    /// Starts kubelet (again, after [`OneNodeCluster::stop_kubelet`]) and waits until the node is Ready.
    pub fn start_kubelet(&self) {
        assert!(self.kubelet.borrow().is_none(), "kubelet runs already");
        let config = self.kubelet_config();
        let kubeconfig =
            self.control_plane()
                .client_kubeconfig("kubelet", &format!("system:node:{NODE_NAME}"), &["system:nodes"]);
        let args = vec![
            format!("--config={}", config.display()),
            format!("--kubeconfig={}", kubeconfig.display()),
            format!("--hostname-override={NODE_NAME}"),
            format!("--node-ip={NODE_ADDR}"),
            "--v=1".to_string(),
        ];
        let mut daemon = self.node.daemon("kubelet", &peer_bin("kubelet"), &args);
        let deadline = Instant::now() + Duration::from_secs(120);
        while !self.node_ready() {
            assert!(
                daemon.running() && Instant::now() < deadline,
                "node {NODE_NAME} is not Ready:\nkubelet:\n{}\ncontainerd:\n{}",
                daemon.log_tail(60),
                log_tail(&self.node.log("containerd"), 20)
            );
            std::thread::sleep(Duration::from_millis(250));
        }
        *self.kubelet.borrow_mut() = Some(daemon);
    }

    /// Stops kubelet (SIGTERM): the pods keep running, as when kubelet restarts on a node.
    pub fn stop_kubelet(&self) {
        if let Some(mut d) = self.kubelet.borrow_mut().take() {
            d.stop();
        }
    }

    /// Whether the node's Ready condition is True.
    pub fn node_ready(&self) -> bool {
        let out = self.kubectl(&[
            "get",
            "node",
            NODE_NAME,
            "-o",
            "jsonpath={.status.conditions[?(@.type==\"Ready\")].status}",
        ]);
        out.status.success() && String::from_utf8_lossy(&out.stdout).trim() == "True"
    }

    /// The last lines of kubelet's and containerd's logs, for failure messages.
    pub fn logs(&self, lines: usize) -> String {
        format!(
            "--- kubelet:\n{}\n--- containerd:\n{}",
            log_tail(&self.node.log("kubelet"), lines),
            log_tail(&self.node.log("containerd"), lines)
        )
    }
}

/// What kube-proxy does on a node for the one Service this node's pods use, the API server's: connections to
/// `10.96.0.1:443` (`KUBERNETES_SERVICE_HOST`, which kubelet gives every pod) are DNATed to the API server
/// on the node's loopback, which `route_localnet` lets packets from the pods' interfaces reach. Only in the
/// node's network namespace. roslan-install's block agent, in the DaemonSet's pod, lists networks through it.
fn route_kubernetes_service(node: &NodeHost, cp: &ControlPlane) {
    let port = cp.server().rsplit(':').next().expect("the API server's port");
    node.run_ok("sysctl", &["-qw", "net.ipv4.conf.all.route_localnet=1"]);
    node.run_ok(
        "iptables",
        &[
            "-t",
            "nat",
            "-A",
            "PREROUTING",
            "-d",
            &format!("{KUBERNETES_SERVICE_IP}/32"),
            "-p",
            "tcp",
            "--dport",
            "443",
            "-j",
            "DNAT",
            "--to-destination",
            &format!("127.0.0.1:{port}"),
        ],
    );
}

/// Where [`OneNodeCluster`] copies its logs when it is dropped, if set: the node's (kubelet, containerd) and the
/// control plane's, which are removed with their throwaway directories otherwise.
pub const LOGS_ENV: &str = "ROSLAN_E2E_LOGS";

impl OneNodeCluster {
    fn keep_logs(&self, dest: &Path) {
        let _ = std::fs::create_dir_all(dest);
        let node = self.node.dir();
        let cp = self.control_plane.as_ref().map(|c| c.dir().to_path_buf());
        for (dir, file) in [
            (Some(node.to_path_buf()), "kubelet.log"),
            (Some(node.to_path_buf()), "containerd.log"),
            (cp.clone(), "kube-apiserver.log"),
            (cp.clone(), "kube-controller-manager.log"),
            (cp.clone(), "kube-scheduler.log"),
            (cp, "etcd.log"),
        ] {
            if let Some(dir) = dir {
                let _ = std::fs::copy(dir.join(file), dest.join(file));
            }
        }
    }
}

impl Drop for OneNodeCluster {
    fn drop(&mut self) {
        self.stop_kubelet();
        self.stop_containerd();
        if let Some(dest) = std::env::var_os(LOGS_ENV) {
            self.keep_logs(Path::new(&dest));
        }
        self.control_plane.take();
    }
}
