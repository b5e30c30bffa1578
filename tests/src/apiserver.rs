//! A Kubernetes control plane of real parts for tests: Debian's etcd and the peers' kube-apiserver
//! (optionally kube-controller-manager and kube-scheduler), in the current network namespace on 127.0.0.1
//! with free ports, certificates from a throwaway CA, an admin kubeconfig, and the peers' kubectl.
//! Everything lives in one temporary directory; dropping the [`ControlPlane`] stops the processes
//! (controllers, API server, etcd) and removes the directory, also when the test fails.
//!
//! No kubelet runs here: a pod bound to a node name no kubelet serves is stored and watched like any
//! other, which is what Multus and the node agent read. Start and drop a control plane on one test thread
//! (see [`crate::daemon`]).

use std::io::Write;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::json;

use crate::daemon::{Daemon, log_tail};
use crate::netns::unique;
use crate::peers::{peer, peer_bin};
use crate::pki::{CertPair, Pki};

/// Debian's etcd-server (3.4.23). kube-apiserver 1.34 accepts it; it lacks the watch-progress request
/// (3.4.31+), so the API server serves consistent lists from etcd instead of its watch cache.
pub const ETCD: &str = "/usr/bin/etcd";

/// The service network (its first address is the `kubernetes` Service, named in the serving certificate).
pub const SERVICE_CIDR: &str = "10.96.0.0/24";

/// The `kubernetes` Service's address, the first of [`SERVICE_CIDR`]: where pods reach the API server
/// (`KUBERNETES_SERVICE_HOST`), port 443.
pub const KUBERNETES_SERVICE_IP: &str = "10.96.0.1";

/// What to start besides etcd and the API server.
#[derive(Debug, Clone, Copy, Default)]
pub struct Options {
    /// kube-controller-manager: service accounts (a namespace's `default` account, without which no pod
    /// can be created), garbage collection (owner references), node lifecycle.
    pub controller_manager: bool,
    /// kube-scheduler: binds pods that name no node.
    pub scheduler: bool,
}

/// A running control plane. Dropping it stops everything and removes its directory.
#[derive(Debug)]
pub struct ControlPlane {
    dir: PathBuf,
    pki: Pki,
    server: String,
    kubeconfig: PathBuf,
    apiserver_args: Vec<String>,
    etcd: Option<Daemon>,
    apiserver: Option<Daemon>,
    controller_manager: Option<Daemon>,
    scheduler: Option<Daemon>,
}

/// Prefix of the control planes' directories in the temporary directory, followed by [`unique`].
const DIR_PREFIX: &str = "roslan-cp-";

/// Removes the directories of control planes whose test process was killed (its daemons died with it:
/// see [`crate::daemon`]; a drop never ran to remove the directory).
fn remove_stale_dirs() {
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(rest) = name.to_str().and_then(|n| n.strip_prefix(DIR_PREFIX)) else {
            continue;
        };
        let pid = rest.split('x').next().and_then(|p| u32::from_str_radix(p, 16).ok());
        if pid.is_some_and(|pid| !process_alive(pid)) {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

/// Whether `pid` runs: a killed test process whose parent was PID 1 stays a zombie here (PID 1 does
/// not reap orphans on these machines), which counts as dead.
fn process_alive(pid: u32) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    // The state follows the command name, which is in parentheses and may itself contain spaces.
    let state = stat
        .rsplit_once(')')
        .and_then(|(_, rest)| rest.split_whitespace().next());
    state != Some("Z")
}

/// A port on 127.0.0.1 that nothing listens on right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind 127.0.0.1:0")
        .port()
}

fn arg(name: &str, value: impl AsRef<str>) -> String {
    format!("--{name}={}", value.as_ref())
}

fn path(p: &Path) -> &str {
    p.to_str().expect("test paths are UTF-8")
}

/// Polls `ready` every 200 ms until it is true; panics with `what` and `diagnose()` after `timeout`, or
/// as soon as `alive()` turns false.
fn wait_for(
    what: &str,
    timeout: Duration,
    mut alive: impl FnMut() -> bool,
    mut ready: impl FnMut() -> bool,
    diagnose: impl Fn() -> String,
) {
    let deadline = Instant::now() + timeout;
    loop {
        if ready() {
            return;
        }
        if !alive() {
            panic!("{what}: the process exited\n{}", diagnose());
        }
        if Instant::now() > deadline {
            panic!("{what}: not ready after {timeout:?}\n{}", diagnose());
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

impl ControlPlane {
    /// etcd and kube-apiserver only.
    pub fn start() -> ControlPlane {
        ControlPlane::start_with(Options::default())
    }

    /// etcd, kube-apiserver and what `options` asks for, each ready when this returns.
    pub fn start_with(options: Options) -> ControlPlane {
        assert!(
            Path::new(ETCD).exists(),
            "{ETCD} is missing: apt-get install etcd-server"
        );
        // Fail before making anything when the peers are not built.
        peer_bin("kube-apiserver");
        remove_stale_dirs();
        let dir = std::env::temp_dir().join(format!("{DIR_PREFIX}{}", unique()));
        std::fs::create_dir_all(dir.join("pki")).expect("create control plane dir");
        let pki = Pki::new(&dir.join("pki"));

        let etcd_port = free_port();
        let etcd_url = format!("http://127.0.0.1:{etcd_port}");
        let peer_url = format!("http://127.0.0.1:{}", free_port());
        let etcd_args = vec![
            arg("name", "test"),
            arg("data-dir", path(&dir.join("etcd"))),
            arg("listen-client-urls", &etcd_url),
            arg("advertise-client-urls", &etcd_url),
            arg("listen-peer-urls", &peer_url),
            arg("initial-advertise-peer-urls", &peer_url),
            arg("initial-cluster", format!("test={peer_url}")),
        ];
        let etcd = Daemon::spawn("etcd", Path::new(ETCD), &etcd_args, &dir.join("etcd.log"));

        let port = free_port();
        let server = format!("https://127.0.0.1:{port}");
        let sans = [
            "IP:127.0.0.1",
            "DNS:localhost",
            &format!("IP:{KUBERNETES_SERVICE_IP}"),
            "DNS:kubernetes",
            "DNS:kubernetes.default",
            "DNS:kubernetes.default.svc",
            "DNS:kubernetes.default.svc.cluster.local",
        ]
        .map(String::from);
        let serving = pki.server("apiserver", &sans);
        let kubelet_client = pki.client(
            "apiserver-kubelet-client",
            "kube-apiserver-kubelet-client",
            &["system:masters"],
        );
        let sa = pki.service_account_keys();
        let apiserver_args = vec![
            arg("etcd-servers", &etcd_url),
            arg("bind-address", "127.0.0.1"),
            arg("advertise-address", "127.0.0.1"),
            arg("secure-port", port.to_string()),
            arg("tls-cert-file", path(&serving.cert)),
            arg("tls-private-key-file", path(&serving.key)),
            arg("client-ca-file", path(&pki.ca().cert)),
            arg("kubelet-client-certificate", path(&kubelet_client.cert)),
            arg("kubelet-client-key", path(&kubelet_client.key)),
            // A test node's name (robot-1) is in no DNS: reach kubelet (logs, exec) by its address.
            arg("kubelet-preferred-address-types", "InternalIP,Hostname"),
            arg("service-account-issuer", "https://kubernetes.default.svc.cluster.local"),
            arg("service-account-key-file", path(&sa.cert)),
            arg("service-account-signing-key-file", path(&sa.key)),
            arg("service-cluster-ip-range", SERVICE_CIDR),
            arg("authorization-mode", "Node,RBAC"),
            arg("allow-privileged", "true"),
            // The `kubernetes` Endpoints object cannot hold a loopback address: do not maintain it.
            arg("endpoint-reconciler-type", "none"),
            arg("profiling", "false"),
        ];
        let kubeconfig = dir.join("admin.kubeconfig");
        let mut cp = ControlPlane {
            dir,
            pki,
            server,
            kubeconfig: kubeconfig.clone(),
            apiserver_args,
            etcd: Some(etcd),
            apiserver: None,
            controller_manager: None,
            scheduler: None,
        };
        let admin = cp.pki.client("admin", "admin", &["system:masters"]);
        cp.write_kubeconfig(&kubeconfig, &admin);
        cp.start_apiserver();

        if options.controller_manager {
            cp.start_controller_manager();
        }
        if options.scheduler {
            let kc = cp.client_kubeconfig("scheduler", "system:kube-scheduler", &[]);
            let args = vec![
                arg("kubeconfig", path(&kc)),
                arg("leader-elect", "false"),
                arg("secure-port", "0"),
            ];
            let bin = peer_bin("kube-scheduler");
            cp.scheduler = Some(Daemon::spawn(
                "kube-scheduler",
                &bin,
                &args,
                &cp.dir.join("kube-scheduler.log"),
            ));
        }
        cp
    }

    fn start_controller_manager(&mut self) {
        let kc = self.client_kubeconfig("controller-manager", "system:kube-controller-manager", &[]);
        let args = vec![
            arg("kubeconfig", path(&kc)),
            arg("leader-elect", "false"),
            arg("secure-port", "0"),
            arg("use-service-account-credentials", "true"),
            arg("root-ca-file", path(&self.pki.ca().cert)),
            arg("service-cluster-ip-range", SERVICE_CIDR),
        ];
        let bin = peer_bin("kube-controller-manager");
        let log = self.dir.join("kube-controller-manager.log");
        let mut daemon = Daemon::spawn("kube-controller-manager", &bin, &args, &log);
        // Ready when it has done its first job: the default namespace's service account.
        wait_for(
            "kube-controller-manager",
            Duration::from_secs(90),
            || daemon.running(),
            || {
                self.kubectl(&["-n", "default", "get", "serviceaccount", "default"])
                    .status
                    .success()
            },
            || log_tail(&log, 60),
        );
        self.controller_manager = Some(daemon);
    }

    /// Starts kube-apiserver (again, after [`ControlPlane::stop_apiserver`]) on the same port with the same
    /// state, and waits until `/readyz` passes.
    pub fn start_apiserver(&mut self) {
        assert!(self.apiserver.is_none(), "kube-apiserver is already running");
        let log = self.dir.join("kube-apiserver.log");
        let mut daemon = Daemon::spawn(
            "kube-apiserver",
            &peer_bin("kube-apiserver"),
            &self.apiserver_args,
            &log,
        )
        .with_grace(Duration::from_secs(3));
        let etcd_log = self.dir.join("etcd.log");
        wait_for(
            "kube-apiserver",
            Duration::from_secs(90),
            || daemon.running(),
            || self.kubectl(&["get", "--raw", "/readyz"]).status.success(),
            || {
                format!(
                    "kube-apiserver log:\n{}\netcd log:\n{}",
                    log_tail(&log, 40),
                    log_tail(&etcd_log, 20)
                )
            },
        );
        self.apiserver = Some(daemon);
    }

    /// Restarts kube-apiserver with an audit log of every request at Metadata level (who asked what, with
    /// which verb and answer), for counting a client's requests; returns the log (one JSON event a line).
    pub fn enable_audit_log(&mut self) -> PathBuf {
        let policy = self.dir.join("audit-policy.yaml");
        let log = self.dir.join("audit.log");
        std::fs::write(
            &policy,
            "apiVersion: audit.k8s.io/v1\nkind: Policy\nomitStages: [RequestReceived]\nrules:\n  - level: Metadata\n",
        )
        .expect("write audit policy");
        self.apiserver_args.push(arg("audit-policy-file", path(&policy)));
        self.apiserver_args.push(arg("audit-log-path", path(&log)));
        self.stop_apiserver();
        self.start_apiserver();
        log
    }

    /// Stops kube-apiserver (etcd and the controllers keep running), as when a node loses the control plane.
    pub fn stop_apiserver(&mut self) {
        if let Some(mut daemon) = self.apiserver.take() {
            daemon.stop();
        }
    }

    /// The API server's URL (`https://127.0.0.1:<port>`).
    pub fn server(&self) -> &str {
        &self.server
    }

    /// The admin (`system:masters`) kubeconfig.
    pub fn kubeconfig(&self) -> &Path {
        &self.kubeconfig
    }

    /// The CA that signed the API server's certificate and every client certificate.
    pub fn ca(&self) -> &Path {
        &self.pki.ca().cert
    }

    /// The throwaway directory (logs, certificates, kubeconfigs).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The processes running now, with their pids (to check that nothing outlives the control plane).
    pub fn pids(&self) -> Vec<(String, u32)> {
        [&self.etcd, &self.apiserver, &self.controller_manager, &self.scheduler]
            .into_iter()
            .flatten()
            .filter_map(|d| Some((d.name().to_string(), d.pid()?)))
            .collect()
    }

    /// A kubeconfig for Kubernetes user `user` in `groups`, with its own client certificate (for Multus,
    /// a node agent, kubelet: `system:node:<name>` in `system:nodes`).
    pub fn client_kubeconfig(&self, name: &str, user: &str, groups: &[&str]) -> PathBuf {
        let pair = self.pki.client(name, user, groups);
        let path = self.dir.join(format!("{name}.kubeconfig"));
        self.write_kubeconfig(&path, &pair);
        path
    }

    fn write_kubeconfig(&self, file: &Path, client: &CertPair) {
        // JSON is YAML: every client reads it.
        let config = json!({
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "test", "cluster": {"server": self.server, "certificate-authority": self.pki.ca().cert}}],
            "users": [{"name": "test", "user": {"client-certificate": client.cert, "client-key": client.key}}],
            "contexts": [{"name": "test", "context": {"cluster": "test", "user": "test"}}],
            "current-context": "test",
        });
        std::fs::write(file, serde_json::to_vec_pretty(&config).expect("serialise")).expect("write kubeconfig");
    }

    /// Runs the peers' kubectl as admin (30 s request timeout), whatever its exit status.
    pub fn kubectl(&self, args: &[&str]) -> Output {
        self.kubectl_command(args).output().expect("run kubectl")
    }

    /// Runs kubectl as admin and returns its stdout; panics with its stderr when it fails.
    pub fn kubectl_ok(&self, args: &[&str]) -> String {
        let out = self.kubectl(args);
        assert!(
            out.status.success(),
            "kubectl {} failed: {}{}",
            args.join(" "),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// `kubectl apply -f -` with `manifest` (YAML or JSON) on stdin; panics when it fails.
    pub fn apply(&self, manifest: &str) -> String {
        let mut child = self
            .kubectl_command(&["apply", "-f", "-"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run kubectl");
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(manifest.as_bytes())
            .expect("write manifest");
        let out = child.wait_with_output().expect("wait for kubectl");
        assert!(
            out.status.success(),
            "kubectl apply failed: {}\n{manifest}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Installs the NetworkAttachmentDefinition CRD from Multus' own deployment manifest (`family` is
    /// `multus-v3` or `multus-v4`) and waits until it is established.
    pub fn install_nad_crd(&self, family: &str) {
        let manifest = peer(family).files("deployments").join("multus-daemonset.yml");
        let text =
            std::fs::read_to_string(&manifest).unwrap_or_else(|err| panic!("read {}: {err}", manifest.display()));
        let crd = text
            .split("\n---")
            .find(|doc| doc.contains("kind: CustomResourceDefinition"))
            .unwrap_or_else(|| panic!("no CustomResourceDefinition in {}", manifest.display()));
        self.apply(crd);
        self.kubectl_ok(&[
            "wait",
            "--for=condition=established",
            "--timeout=30s",
            "crd/network-attachment-definitions.k8s.cni.cncf.io",
        ]);
    }

    fn kubectl_command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(peer_bin("kubectl"));
        cmd.arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .arg("--request-timeout=30s")
            .args(args);
        cmd
    }
}

impl Drop for ControlPlane {
    fn drop(&mut self) {
        // Clients first, etcd last: kube-apiserver's graceful shutdown stalls without etcd.
        for daemon in [
            &mut self.scheduler,
            &mut self.controller_manager,
            &mut self.apiserver,
            &mut self.etcd,
        ] {
            if let Some(mut d) = daemon.take() {
                d.stop();
            }
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
