//! Multus laid out the way MicroK8s' multus addon installs it, as files and values only: no runtime, no
//! process. Tests that run a runtime (containerd's CRI in `tests/runtimes.rs`, a kubelet node) point it
//! at [`MicroK8s::bin_dir`] and [`MicroK8s::conf_dir`] and get what a MicroK8s node has.
//!
//! What MicroK8s does, and what this reproduces (canonical/microk8s-community-addons' multus addon,
//! Multus' own entrypoints read at the pinned versions):
//! - `SNAP_DATA` is `/var/snap/microk8s/<revision>`, reached through the `current` link; containerd's
//!   CNI `bin_dir` is `$SNAP_DATA/opt/cni/bin`, its `conf_dir` `$SNAP_DATA/args/cni-network`. Here that
//!   tree lives under a root directory the test owns ([`MicroK8s::create`]), never in the machine's
//!   `/var/snap`.
//! - The addon runs thin Multus 3.9's `entrypoint.sh --multus-conf-file=auto
//!   --multus-kubeconfig-file-host=$SNAP_DATA/args/cni-network/multus.d/multus.kubeconfig
//!   --cni-version=0.3.1` with the host's conf and bin dirs mounted at the script's defaults. The script
//!   copies `multus` into the bin dir (`_multus`, then a rename), writes the kubeconfig from the pod's
//!   service account token, and writes `00-multus.conf` around the first other configuration file
//!   ([`MicroK8s::write_multus_conf`] gives the same bytes: see the unit test).
//! - Multus 4 thin (`thin_entrypoint`, upstream's `multus-daemonset.yml` arguments) and Multus 4 thick
//!   (`multus-daemon` with upstream's `daemon-config.json`, which generates `00-multus.conf` itself for
//!   `multus-shim`) are laid out the same way, with paths adapted to the MicroK8s tree.
//! - The cluster network is a conflist without multicast, standing in for Calico's: upstream `ptp` with
//!   `host-local` ([`cluster_network`]).
//!
//! Paths written *into* files (the kubeconfig path in `00-multus.conf`, the daemon's directories) are the
//! node's view of the tree. By default that is the tree's real path; a test that bind-mounts the tree at
//! `/var/snap/microk8s` in a mount namespace of its own uses [`MicroK8s::create_seen_as`] so that the
//! files say `/var/snap/microk8s/current/...`, exactly as on a robot.
//!
//! The control-plane side (Multus' RBAC from its deployment manifest, a service account token, a pod
//! that asks for a network, the `network-status` annotation Multus writes back) is at the end; it needs
//! a [`ControlPlane`] but nothing else.

use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use serde_json::{Value, json};

use crate::apiserver::ControlPlane;
use crate::peers::{peer, peer_bin};

/// The snap revision directory `current` points at (snapd's name for a locally installed revision).
pub const REVISION: &str = "x1";

/// The cluster network's name (Calico's on MicroK8s).
pub const CLUSTER_NETWORK: &str = "k8s-pod-network";

/// The name every Multus entrypoint gives its own network (unless told to take the cluster network's).
pub const MULTUS_NETWORK: &str = "multus-cni-network";

/// The pod annotation that asks Multus for additional networks.
pub const NETWORKS_ANNOTATION: &str = "k8s.v1.cni.cncf.io/networks";

/// The pod annotation Multus writes: one entry per attachment.
pub const NETWORK_STATUS_ANNOTATION: &str = "k8s.v1.cni.cncf.io/network-status";

/// The namespace and service account Multus' deployment manifests run it as.
pub const MULTUS_NAMESPACE: &str = "kube-system";
/// See [`MULTUS_NAMESPACE`].
pub const MULTUS_SERVICE_ACCOUNT: &str = "multus";

/// Which Multus, as deployed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flavour {
    /// Thin Multus 3.9, what MicroK8s' addon ships.
    V3Thin,
    /// Thin Multus 4 (`multus`).
    V4Thin,
    /// Thick Multus 4: `multus-shim` in the bin dir, `multus-daemon` doing the work.
    V4Thick,
}

impl Flavour {
    /// Its peer family (`tests/peers/<family>`).
    pub fn family(self) -> &'static str {
        match self {
            Flavour::V3Thin => "multus-v3",
            Flavour::V4Thin | Flavour::V4Thick => "multus-v4",
        }
    }

    /// The binary the runtime executes, which is also the `type` in `00-multus.conf`.
    pub fn plugin(self) -> &'static str {
        match self {
            Flavour::V3Thin | Flavour::V4Thin => "multus",
            Flavour::V4Thick => "multus-shim",
        }
    }

    /// The upstream deployment manifest of this flavour (in the peer's `deployments` files).
    pub fn manifest(self) -> PathBuf {
        let file = match self {
            Flavour::V3Thin | Flavour::V4Thin => "multus-daemonset.yml",
            Flavour::V4Thick => "multus-daemonset-thick.yml",
        };
        peer(self.family()).files("deployments").join(file)
    }
}

/// A MicroK8s node's CNI tree under a root directory the caller owns (and removes).
#[derive(Clone, Debug)]
pub struct MicroK8s {
    root: PathBuf,
    seen_as: PathBuf,
}

impl MicroK8s {
    /// Creates `root/var/snap/microk8s/x1/{opt/cni/bin,args/cni-network/multus.d}` and the `current` link;
    /// the node sees the tree where it is.
    pub fn create(root: &Path) -> MicroK8s {
        MicroK8s::create_seen_as(root, root)
    }

    /// The same, for a node that sees `root` as `seen_as` (`/` when `root/var/snap/microk8s` is
    /// bind-mounted at `/var/snap/microk8s` in the node's mount namespace).
    pub fn create_seen_as(root: &Path, seen_as: &Path) -> MicroK8s {
        let layout = MicroK8s {
            root: root.to_path_buf(),
            seen_as: seen_as.to_path_buf(),
        };
        let snap = layout.root.join("var/snap/microk8s");
        for sub in ["opt/cni/bin", "args/cni-network/multus.d"] {
            std::fs::create_dir_all(snap.join(REVISION).join(sub))
                .unwrap_or_else(|err| panic!("create {}: {err}", snap.display()));
        }
        let current = snap.join("current");
        if std::fs::symlink_metadata(&current).is_err() {
            std::os::unix::fs::symlink(REVISION, &current).expect("link current to the revision");
        }
        layout
    }

    /// The root directory given to [`MicroK8s::create`].
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// `$SNAP_DATA` on this machine (through `current`).
    pub fn snap_data(&self) -> PathBuf {
        self.root.join("var/snap/microk8s/current")
    }

    /// The CNI bin dir (containerd's `bin_dir`) on this machine.
    pub fn bin_dir(&self) -> PathBuf {
        self.snap_data().join("opt/cni/bin")
    }

    /// The CNI conf dir (containerd's `conf_dir`) on this machine.
    pub fn conf_dir(&self) -> PathBuf {
        self.snap_data().join("args/cni-network")
    }

    /// Where the entrypoints write Multus' kubeconfig, on this machine.
    pub fn kubeconfig(&self) -> PathBuf {
        self.conf_dir().join("multus.d/multus.kubeconfig")
    }

    /// A path under the root as the node sees it.
    pub fn node_path(&self, path: &Path) -> PathBuf {
        let rest = path
            .strip_prefix(&self.root)
            .unwrap_or_else(|_| panic!("{} is not under {}", path.display(), self.root.display()));
        self.seen_as.join(rest)
    }

    /// Installs the flavour's binaries as its installer does: a copy to a temporary name in the bin dir,
    /// then a rename (`multus`; `multus-shim` for thick). Returns the installed path.
    pub fn install_multus(&self, flavour: Flavour) -> PathBuf {
        let source = peer_bin(&format!("{}/{}", flavour.family(), flavour.plugin()));
        let target = self.bin_dir().join(flavour.plugin());
        let temp = self.bin_dir().join(format!("_{}", flavour.plugin()));
        std::fs::copy(&source, &temp).unwrap_or_else(|err| panic!("copy {}: {err}", source.display()));
        std::fs::set_permissions(&temp, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        std::fs::rename(&temp, &target).expect("rename into place");
        target
    }

    /// Puts `target` in the bin dir as `name`, a symbolic link (MicroK8s' bin dir holds links into the
    /// snap).
    pub fn link_plugin(&self, name: &str, target: &Path) {
        let link = self.bin_dir().join(name);
        let _ = std::fs::remove_file(&link);
        std::os::unix::fs::symlink(target, &link)
            .unwrap_or_else(|err| panic!("link {} to {}: {err}", link.display(), target.display()));
    }

    /// Links the upstream plugins the cluster network and the runtime need: `ptp`, `host-local` and
    /// `loopback` (containerd's own `lo` network).
    pub fn link_cluster_plugins(&self) {
        for name in ["ptp", "host-local", "loopback"] {
            self.link_plugin(name, &peer_bin(&format!("plugins/{name}")));
        }
    }

    /// Writes the cluster network to `10-<name>.conflist` (pretty, as Calico's install-cni writes its own),
    /// or to `10-<name>.conf` when it is a single configuration, and returns the path.
    pub fn write_cluster_network(&self, conf: &Value) -> PathBuf {
        let name = conf["name"].as_str().expect("the cluster network has a name");
        let ext = if conf.get("plugins").is_some() {
            "conflist"
        } else {
            "conf"
        };
        let path = self.conf_dir().join(format!("10-{name}.{ext}"));
        let text = serde_json::to_string_pretty(conf).expect("serialise") + "\n";
        std::fs::write(&path, text).unwrap_or_else(|err| panic!("write {}: {err}", path.display()));
        path
    }

    /// The master plugin file the entrypoints pick: the first `.conf`/`.conflist` in the conf dir by name
    /// that is not Multus' own.
    fn master_plugin_file(&self) -> PathBuf {
        let mut names: Vec<String> = std::fs::read_dir(self.conf_dir())
            .expect("read the conf dir")
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".conf") || n.ends_with(".conflist"))
            .filter(|n| !n.starts_with("00-multus.conf"))
            .collect();
        names.sort();
        let first = names
            .first()
            .expect("no cluster network in the conf dir: write it first");
        self.conf_dir().join(first)
    }

    /// Writes Multus' configuration for a thin flavour the way its entrypoint does, from the master plugin
    /// file already in the conf dir, with `kubeconfig` naming [`MicroK8s::kubeconfig`] as the node sees
    /// it. `cni_version` is the entrypoint's `--cni-version` (MicroK8s passes `0.3.1` to 3.9; upstream's
    /// Multus 4 manifest passes none, so the master's version is used). Returns the file written.
    ///
    /// - 3.9 (`images/entrypoint.sh`): the template's text with the master file inlined, whitespace
    ///   collapsed by the script's unquoted `echo`, into `00-multus.conf`, mode 0600. The script refuses
    ///   a top-level version of 0.4.0 or later over a master below 0.4.0.
    /// - 4 (`cmd/thin_entrypoint`): its Go template, the master re-encoded compactly with sorted keys,
    ///   `"cniConf"` set to the flag's default; `00-multus.conflist` with a `plugins` list from 1.0.0 on.
    ///   It refuses a `--cni-version` that differs from the master's.
    ///
    /// Thick Multus writes its own configuration: see [`MicroK8s::write_daemon_config`].
    pub fn write_multus_conf(&self, flavour: Flavour, cni_version: Option<&str>) -> PathBuf {
        let master_path = self.master_plugin_file();
        let master_text = std::fs::read_to_string(&master_path).expect("read the master plugin");
        let master: Value = serde_json::from_str(&master_text).expect("the master plugin is JSON");
        let master_version = master["cniVersion"]
            .as_str()
            .expect("the master plugin has a cniVersion");
        let kubeconfig = self.node_path(&self.kubeconfig());
        let capabilities = master_capabilities(&master);
        let (file, text) = match flavour {
            Flavour::V3Thin => {
                if let Some(top) = cni_version {
                    assert!(
                        !version_at_least(top, "0.4.0") || version_at_least(master_version, "0.4.0"),
                        "the entrypoint refuses this: Multus cni version is {top} while master plugin cni version is {master_version}"
                    );
                }
                let mut conf = String::from("{\n");
                if let Some(top) = cni_version {
                    conf += &format!("\"cniVersion\": \"{top}\",\n");
                }
                conf += &format!("\"name\": \"{MULTUS_NETWORK}\",\n\"type\": \"multus\",\n");
                if !capabilities.is_empty() {
                    // Python's json.dumps, as the script prints it (keys sorted here, in file order there).
                    let pairs: Vec<String> = capabilities.keys().map(|k| format!("\"{k}\": true")).collect();
                    conf += &format!("\"capabilities\": {{{}}},\n", pairs.join(", "));
                }
                conf += &format!(
                    "\"kubeconfig\": \"{}\",\n\"delegates\": [\n{master_text}\n]\n}}",
                    kubeconfig.display()
                );
                let collapsed = conf.split_whitespace().collect::<Vec<_>>().join(" ") + "\n";
                ("00-multus.conf", collapsed)
            }
            Flavour::V4Thin => {
                if let Some(top) = cni_version {
                    assert_eq!(
                        top, master_version,
                        "the entrypoint refuses this: Multus cni version is {top:?} while master plugin cni version is {master_version:?}"
                    );
                }
                let caps = if capabilities.is_empty() {
                    String::new()
                } else {
                    format!("\n        \"capabilities\": {},", Value::Object(capabilities))
                };
                let fields = format!(
                    "\"type\": \"multus\",{caps}\n        \"cniConf\": \"/host/etc/cni/multus/net.d\",\n        \"kubeconfig\": \"{}\",",
                    kubeconfig.display()
                );
                let master_json = serde_json::to_string(&master).expect("serialise");
                if version_at_least(master_version, "1.0.0") {
                    let text = format!(
                        "{{\n    \"cniVersion\": \"{master_version}\",\n    \"name\": \"{MULTUS_NETWORK}\",\n    \"plugins\": [ {{\n        {fields}\n        \"delegates\": [\n            {master_json}\n        ]\n    }}]\n}}\n"
                    );
                    ("00-multus.conflist", text)
                } else {
                    let text = format!(
                        "{{\n        \"cniVersion\": \"{master_version}\",\n        \"name\": \"{MULTUS_NETWORK}\",\n        {fields}\n        \"delegates\": [\n                {master_json}\n        ]\n}}\n"
                    );
                    ("00-multus.conf", text)
                }
            }
            Flavour::V4Thick => panic!("thick Multus writes its own 00-multus.conf: use write_daemon_config"),
        };
        let path = self.conf_dir().join(file);
        write_private(&path, text.as_bytes());
        path
    }

    /// Writes thick Multus' `daemon-config.json` (upstream's ConfigMap, adapted: the daemon runs on the
    /// node, so its config and cluster-network directories are the node's conf dir rather than a
    /// `/host/...` mount) into `multus.d/` of the conf dir, and returns its path for `multus-daemon
    /// -config`. The daemon then writes `00-multus.conf` for `multus-shim` itself.
    pub fn write_daemon_config(&self, daemon: &ThickDaemon) -> PathBuf {
        let conf_dir = self.node_path(&self.conf_dir());
        let mut config = json!({
            "cniVersion": daemon.cni_version,
            "logLevel": "verbose",
            "logToStderr": true,
            "cniConfigDir": conf_dir,
            "multusAutoconfigDir": conf_dir,
            "multusConfigFile": "auto",
            "socketDir": daemon.socket_dir,
        });
        if let Some(chroot) = &daemon.chroot_dir {
            config["chrootDir"] = json!(chroot);
        }
        // The shim looks in /run/multus/ unless its configuration says otherwise; the daemon copies this
        // key into the 00-multus.conf it writes.
        if daemon.socket_dir != Path::new(DEFAULT_SOCKET_DIR) {
            config["daemonSocketDir"] = json!(daemon.socket_dir);
        }
        let path = self.conf_dir().join("multus.d/daemon-config.json");
        let text = serde_json::to_string_pretty(&config).expect("serialise") + "\n";
        std::fs::write(&path, text).unwrap_or_else(|err| panic!("write {}: {err}", path.display()));
        path
    }

    /// Writes Multus' kubeconfig where the entrypoints do ([`MicroK8s::kubeconfig`]), mode 0600.
    pub fn write_kubeconfig(&self, kubeconfig: &Kubeconfig) -> PathBuf {
        let path = self.kubeconfig();
        write_private(&path, kubeconfig.text().as_bytes());
        path
    }
}

/// Where `multus-shim` looks for the daemon's socket when its configuration names none.
pub const DEFAULT_SOCKET_DIR: &str = "/run/multus/";

/// What thick Multus' daemon is told (the rest of upstream's `daemon-config.json` is fixed).
#[derive(Clone, Debug)]
pub struct ThickDaemon {
    /// Top-level CNI version (upstream: `0.3.1`).
    pub cni_version: String,
    /// Where the daemon listens, as the node sees it (upstream: the host's `/run/multus/`).
    pub socket_dir: PathBuf,
    /// The directory the daemon chroots into to execute delegates (upstream: `/hostroot`, the host's `/`
    /// mounted into the daemon's pod); `None` executes them without a chroot.
    pub chroot_dir: Option<PathBuf>,
}

/// Multus' kubeconfig, as an entrypoint writes it.
#[derive(Clone, Debug)]
pub struct Kubeconfig {
    /// Whose template: 3.9's script writes `https://[host]:port` whatever the host, Multus 4's Go code
    /// `net.JoinHostPort` (brackets only for IPv6). See [`Kubeconfig::text`] for the one difference.
    pub flavour: Flavour,
    /// The API server's host (`KUBERNETES_SERVICE_HOST`).
    pub host: String,
    /// Its port (`KUBERNETES_SERVICE_PORT`).
    pub port: u16,
    /// The CA certificate, PEM (embedded as `certificate-authority-data`).
    pub ca_pem: Vec<u8>,
    /// Who Multus is.
    pub credentials: Credentials,
}

/// How Multus authenticates.
#[derive(Clone, Debug)]
pub enum Credentials {
    /// A service account token, as both entrypoints write it.
    Token(String),
    /// A client certificate and key, paths as the node sees them (no entrypoint writes this; for nodes
    /// without a token).
    ClientCert {
        /// PEM certificate.
        cert: PathBuf,
        /// PEM key.
        key: PathBuf,
    },
}

impl Kubeconfig {
    /// A kubeconfig for the control plane's API server, with a token.
    pub fn for_control_plane(flavour: Flavour, cp: &ControlPlane, credentials: Credentials) -> Kubeconfig {
        let rest = cp.server().strip_prefix("https://").expect("an https server");
        let (host, port) = rest.rsplit_once(':').expect("host:port");
        Kubeconfig {
            flavour,
            host: host.to_string(),
            port: port.parse().expect("a port"),
            ca_pem: std::fs::read(cp.ca()).expect("read the CA"),
            credentials,
        }
    }

    /// The file's text: the entrypoint's, except that an IPv4 host is never put in brackets.
    ///
    /// 3.9's script writes `https://[10.152.183.1]:443` on MicroK8s, which the upstream image's
    /// Multus (built with a Go of its time) parses. Go 1.24.8 and 1.25.2 made `net/url` refuse brackets
    /// around anything but an IPv6 address (CVE-2025-47912), so the peers' Multus 3.9.3, built with
    /// today's Go, fails every ADD and DEL with `Multus: error getting k8s client: host must be a URL or
    /// a host:port pair: "https://[127.0.0.1]:38247"` (measured). The brackets belong to the script, not
    /// to MicroK8s, so this writes the address plainly, as Multus 4 does.
    pub fn text(&self) -> String {
        let server = if self.host.contains(':') {
            format!("https://[{}]:{}", self.host, self.port)
        } else {
            format!("https://{}:{}", self.host, self.port)
        };
        let user = match &self.credentials {
            Credentials::Token(token) => format!("    token: \"{token}\"\n"),
            Credentials::ClientCert { cert, key } => format!(
                "    client-certificate: {}\n    client-key: {}\n",
                cert.display(),
                key.display()
            ),
        };
        format!(
            "# Kubeconfig file for Multus CNI plugin.\napiVersion: v1\nkind: Config\nclusters:\n- name: local\n  cluster:\n    server: {server}\n    certificate-authority-data: {}\nusers:\n- name: multus\n  user:\n{user}contexts:\n- name: multus-context\n  context:\n    cluster: local\n    user: multus\ncurrent-context: multus-context\n",
            base64(&self.ca_pem)
        )
    }
}

/// The cluster network without multicast that stands in for Calico's: upstream `ptp` (no masquerading,
/// so no iptables) with `host-local` addresses from `subnet` and the pod's default route through `eth0`.
/// `data_dir` is host-local's (its default, `/var/lib/cni/networks`, when `None`).
pub fn cluster_network(cni_version: &str, subnet: &str, data_dir: Option<&Path>) -> Value {
    let mut ipam = json!({
        "type": "host-local",
        "ranges": [[{"subnet": subnet}]],
        "routes": [{"dst": "0.0.0.0/0"}]
    });
    if let Some(dir) = data_dir {
        ipam["dataDir"] = json!(dir);
    }
    json!({
        "cniVersion": cni_version,
        "name": CLUSTER_NETWORK,
        "plugins": [{"type": "ptp", "ipMasq": false, "ipam": ipam}]
    })
}

/// A conflist of one plugin as the single configuration it stands for (the list's `cniVersion` and `name`
/// moved into the plugin).
pub fn single_plugin(conflist: &Value) -> Value {
    let plugins = conflist["plugins"].as_array().expect("a conflist");
    assert_eq!(plugins.len(), 1, "a conflist of one plugin: {conflist}");
    let mut conf = plugins[0].clone();
    conf["cniVersion"] = conflist["cniVersion"].clone();
    conf["name"] = conflist["name"].clone();
    conf
}

/// The capabilities the entrypoints copy from the master plugin (every enabled one, of every plugin).
fn master_capabilities(master: &Value) -> serde_json::Map<String, Value> {
    let plugins = match master.get("plugins").and_then(Value::as_array) {
        Some(list) => list.clone(),
        None => vec![master.clone()],
    };
    let mut caps = serde_json::Map::new();
    for plugin in &plugins {
        if let Some(map) = plugin.get("capabilities").and_then(Value::as_object) {
            for (name, on) in map {
                if on == &Value::Bool(true) {
                    caps.insert(name.clone(), Value::Bool(true));
                }
            }
        }
    }
    caps
}

/// `a >= b` for dotted CNI versions.
fn version_at_least(a: &str, b: &str) -> bool {
    let parse = |v: &str| -> Vec<u32> { v.split('.').map(|p| p.parse().unwrap_or(0)).collect() };
    parse(a) >= parse(b)
}

/// Writes a file readable by its owner only, as both entrypoints create theirs.
fn write_private(path: &Path, data: &[u8]) {
    use std::io::Write;
    let _ = std::fs::remove_file(path);
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .unwrap_or_else(|err| panic!("create {}: {err}", path.display()));
    file.write_all(data)
        .unwrap_or_else(|err| panic!("write {}: {err}", path.display()));
}

// ---------------------------------------------------------------------------------------------------
// The control plane's side
// ---------------------------------------------------------------------------------------------------

/// The documents of Multus' deployment manifest of `kind` (`ClusterRole`, `ServiceAccount`...).
fn manifest_documents(flavour: Flavour, kinds: &[&str]) -> Vec<String> {
    let path = flavour.manifest();
    let text = std::fs::read_to_string(&path).unwrap_or_else(|err| panic!("read {}: {err}", path.display()));
    text.split("\n---")
        .filter(|doc| {
            doc.lines()
                .any(|l| kinds.iter().any(|k| l.trim() == format!("kind: {k}")))
        })
        .map(str::to_string)
        .collect()
}

/// Applies what Multus' own deployment manifest gives it to run as: the `multus` ClusterRole, its
/// binding and the `kube-system/multus` ServiceAccount (the DaemonSet and ConfigMap are left out; the
/// CRD is [`ControlPlane::install_nad_crd`]'s).
pub fn apply_rbac(cp: &ControlPlane, flavour: Flavour) {
    let docs = manifest_documents(flavour, &["ClusterRole", "ClusterRoleBinding", "ServiceAccount"]);
    assert_eq!(
        docs.len(),
        3,
        "{} has a ClusterRole, a binding and a ServiceAccount",
        flavour.manifest().display()
    );
    cp.apply(&docs.join("\n---\n"));
}

/// A token of Multus' service account (`kubectl create token`, an hour), what a pod's projected token is.
pub fn service_account_token(cp: &ControlPlane) -> String {
    cp.kubectl_ok(&[
        "-n",
        MULTUS_NAMESPACE,
        "create",
        "token",
        MULTUS_SERVICE_ACCOUNT,
        "--duration=1h",
    ])
    .trim()
    .to_string()
}

/// A NetworkAttachmentDefinition holding `config` (JSON, as `spec.config` is a string).
pub fn nad_manifest(namespace: &str, name: &str, config: &Value) -> String {
    json!({
        "apiVersion": "k8s.cni.cncf.io/v1",
        "kind": "NetworkAttachmentDefinition",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"config": config.to_string()}
    })
    .to_string()
}

/// A pod bound to `node` that asks Multus for `networks` (the annotation's value, e.g. `ros-lan`).
pub fn pod_manifest(namespace: &str, name: &str, node: &str, networks: &str) -> String {
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": namespace, "annotations": {NETWORKS_ANNOTATION: networks}},
        "spec": {
            "nodeName": node,
            "automountServiceAccountToken": false,
            "containers": [{"name": "app", "image": "t.local/app:1"}]
        }
    })
    .to_string()
}

/// The pod's `network-status` entries as Multus wrote them (empty when it wrote none or cleared them).
pub fn network_status(cp: &ControlPlane, namespace: &str, pod: &str) -> Vec<Value> {
    let json: Value =
        serde_json::from_str(&cp.kubectl_ok(&["-n", namespace, "get", "pod", pod, "-o", "json"])).expect("pod JSON");
    json["metadata"]["annotations"][NETWORK_STATUS_ANNOTATION]
        .as_str()
        .map(|text| serde_json::from_str::<Value>(text).expect("network-status is JSON"))
        .and_then(|v| v.as_array().cloned())
        .unwrap_or_default()
}

/// Standard base64 with padding (what `base64 | tr -d '\n'` and Go's `StdEncoding` give).
pub fn base64(data: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [chunk[0], *chunk.get(1).unwrap_or(&0), *chunk.get(2).unwrap_or(&0)];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch() -> PathBuf {
        let dir = std::env::temp_dir().join(format!("roslan-multus-unit-{}", crate::netns::unique()));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn base64_matches_rfc_4648() {
        for (input, expected) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64(input.as_bytes()), expected);
        }
    }

    /// The bytes v3.9.3's `images/entrypoint.sh` wrote when run (in a private mount namespace, with a
    /// fake service account) as MicroK8s' addon runs it, over this master file.
    #[test]
    fn v3_conf_is_the_entrypoints() {
        let dir = scratch();
        let layout = MicroK8s::create_seen_as(&dir, Path::new("/"));
        std::fs::write(
            layout.conf_dir().join("10-k8s-pod-network.conflist"),
            r#"{
  "cniVersion": "0.3.1",
  "name": "k8s-pod-network",
  "plugins": [
    {
      "type": "ptp",
      "ipMasq": false,
      "ipam": {"type": "host-local", "ranges": [[{"subnet": "10.244.0.0/24"}]], "routes": [{"dst": "0.0.0.0/0"}]}
    }
  ]
}
"#,
        )
        .unwrap();
        let path = layout.write_multus_conf(Flavour::V3Thin, Some("0.3.1"));
        assert_eq!(path, layout.conf_dir().join("00-multus.conf"));
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            "{ \"cniVersion\": \"0.3.1\", \"name\": \"multus-cni-network\", \"type\": \"multus\", \"kubeconfig\": \"/var/snap/microk8s/current/args/cni-network/multus.d/multus.kubeconfig\", \"delegates\": [ { \"cniVersion\": \"0.3.1\", \"name\": \"k8s-pod-network\", \"plugins\": [ { \"type\": \"ptp\", \"ipMasq\": false, \"ipam\": {\"type\": \"host-local\", \"ranges\": [[{\"subnet\": \"10.244.0.0/24\"}]], \"routes\": [{\"dst\": \"0.0.0.0/0\"}]} } ] } ] }\n"
        );
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// The same run's kubeconfig (token `tok123`, CA file `CA\n`, host 127.0.0.1, port 6443), except for
    /// the brackets the script put around 127.0.0.1 (see [`Kubeconfig::text`]).
    #[test]
    fn v3_kubeconfig_is_the_entrypoints() {
        let kubeconfig = Kubeconfig {
            flavour: Flavour::V3Thin,
            host: "127.0.0.1".into(),
            port: 6443,
            ca_pem: b"CA\n".to_vec(),
            credentials: Credentials::Token("tok123".into()),
        };
        assert_eq!(
            kubeconfig.text(),
            "# Kubeconfig file for Multus CNI plugin.\napiVersion: v1\nkind: Config\nclusters:\n- name: local\n  cluster:\n    server: https://127.0.0.1:6443\n    certificate-authority-data: Q0EK\nusers:\n- name: multus\n  user:\n    token: \"tok123\"\ncontexts:\n- name: multus-context\n  context:\n    cluster: local\n    user: multus\ncurrent-context: multus-context\n"
        );
        let v6 = Kubeconfig {
            flavour: Flavour::V4Thin,
            host: "fd00::1".into(),
            ..kubeconfig
        };
        assert!(v6.text().contains("    server: https://[fd00::1]:6443\n"));
    }

    /// The bytes v4.3.0's `thin_entrypoint` wrote when run with upstream's arguments (and MicroK8s'
    /// kubeconfig path), for a 0.3.1 and a 1.0.0 master.
    #[test]
    fn v4_thin_conf_is_the_entrypoints() {
        let dir = scratch();
        let layout = MicroK8s::create_seen_as(&dir, Path::new("/"));
        let kubeconfig = "/var/snap/microk8s/current/args/cni-network/multus.d/multus.kubeconfig";
        let master = |v: &str| {
            format!(
                "{{\"cniVersion\":\"{v}\",\"name\":\"k8s-pod-network\",\"plugins\":[{{\"ipMasq\":false,\"ipam\":{{\"ranges\":[[{{\"subnet\":\"10.244.0.0/24\"}}]],\"routes\":[{{\"dst\":\"0.0.0.0/0\"}}],\"type\":\"host-local\"}},\"type\":\"ptp\"}}]}}"
            )
        };
        layout.write_cluster_network(&cluster_network("0.3.1", "10.244.0.0/24", None));
        let conf = layout.write_multus_conf(Flavour::V4Thin, None);
        assert_eq!(conf.file_name().unwrap(), "00-multus.conf");
        assert_eq!(
            std::fs::read_to_string(&conf).unwrap(),
            format!(
                "{{\n        \"cniVersion\": \"0.3.1\",\n        \"name\": \"multus-cni-network\",\n        \"type\": \"multus\",\n        \"cniConf\": \"/host/etc/cni/multus/net.d\",\n        \"kubeconfig\": \"{kubeconfig}\",\n        \"delegates\": [\n                {}\n        ]\n}}\n",
                master("0.3.1")
            )
        );

        std::fs::remove_file(&conf).unwrap();
        layout.write_cluster_network(&cluster_network("1.0.0", "10.244.0.0/24", None));
        let conf = layout.write_multus_conf(Flavour::V4Thin, None);
        assert_eq!(conf.file_name().unwrap(), "00-multus.conflist");
        assert_eq!(
            std::fs::read_to_string(&conf).unwrap(),
            format!(
                "{{\n    \"cniVersion\": \"1.0.0\",\n    \"name\": \"multus-cni-network\",\n    \"plugins\": [ {{\n        \"type\": \"multus\",\n        \"cniConf\": \"/host/etc/cni/multus/net.d\",\n        \"kubeconfig\": \"{kubeconfig}\",\n        \"delegates\": [\n            {}\n        ]\n    }}]\n}}\n",
                master("1.0.0")
            )
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    #[should_panic(expected = "Multus cni version is 0.4.0 while master plugin cni version is 0.3.1")]
    fn v3_refuses_a_newer_top_level_version_than_the_master() {
        let dir = scratch();
        let layout = MicroK8s::create(&dir);
        layout.write_cluster_network(&cluster_network("0.3.1", "10.244.0.0/24", None));
        let result = std::panic::catch_unwind(|| layout.write_multus_conf(Flavour::V3Thin, Some("0.4.0")));
        std::fs::remove_dir_all(&dir).unwrap();
        std::panic::resume_unwind(result.unwrap_err());
    }

    #[test]
    fn daemon_config_names_the_socket_for_the_shim() {
        let dir = scratch();
        let layout = MicroK8s::create(&dir);
        let socket = dir.join("run/multus");
        let path = layout.write_daemon_config(&ThickDaemon {
            cni_version: "0.3.1".into(),
            socket_dir: socket.clone(),
            chroot_dir: Some(dir.join("hostroot")),
        });
        let json: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        assert_eq!(json["socketDir"], json!(socket));
        assert_eq!(json["daemonSocketDir"], json!(socket));
        assert_eq!(json["cniConfigDir"], json!(layout.conf_dir()));
        assert_eq!(json["multusConfigFile"], "auto");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn the_tree_is_microk8s() {
        let dir = scratch();
        let layout = MicroK8s::create_seen_as(&dir, Path::new("/"));
        assert_eq!(
            std::fs::read_link(dir.join("var/snap/microk8s/current")).unwrap(),
            Path::new(REVISION)
        );
        assert!(layout.bin_dir().is_dir() && layout.conf_dir().join("multus.d").is_dir());
        assert_eq!(
            layout.node_path(&layout.bin_dir()),
            Path::new("/var/snap/microk8s/current/opt/cni/bin")
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
