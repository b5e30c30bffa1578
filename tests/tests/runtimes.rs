//! Real clients drive the built roslan: containerd's CRI (the path kubelet takes), podman with its CNI
//! backend, and the real Multus as containerd's CNI (the path MicroK8s takes for a second interface):
//! thin 3.9 laid out and configured as MicroK8s' addon does it, thin 4 and thick 4, each reading its
//! NetworkAttachmentDefinitions and pods from a real kube-apiserver. Each runtime runs with private
//! state in a throwaway LAN; `tests/runtimes/README.md` has the recipes and what was measured.
//!
//! The runtimes are Debian's (containerd 1.6, podman 4.3, runc), the CRI client is
//! `tests/runtimes/cri_client.py` (grpcio from `.venv`), the pause image is built from
//! busybox-static by `tests/runtimes/pause_image.py`; Multus, the upstream plugins and Kubernetes are
//! the peers `make peers` builds (`src/peers.rs`), the MicroK8s layout is `src/multus.rs`'s. A missing
//! package or peer fails the test with the command that installs it; nothing is skipped.

use std::cell::RefCell;
use std::io::{BufRead, BufReader, Lines};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, Output, Stdio};
use std::rc::Rc;
use std::time::Duration;

use roslan_tests::Lan;
use roslan_tests::apiserver::ControlPlane;
use roslan_tests::daemon::{Daemon, log_tail};
use roslan_tests::lan::{HOST_ADDR, MASTER};
use roslan_tests::multus::{self, Credentials, Flavour, Kubeconfig, MicroK8s, ThickDaemon};
use roslan_tests::netns::{Netns, try_sh, unique};
use roslan_tests::peer_bin;
use roslan_tests::plugin::{Call, REFERENCE_DIR, roslan_bin, workspace_bin};
use roslan_tests::root_test;
use roslan_tests::runtime::{
    NodeMountOptions, NodeMounts, kill_tree_matching, need, private_containerd_config, remove_cgroup, repo, run_ok,
    stop_child, unmount_under, venv_python, wait_until,
};
use roslan_tests::traffic::Receiver;
use serde_json::{Value, json};

const GROUP: &str = "239.255.0.1";
const SPDP_PORT: u16 = 7400;
const NETWORK: &str = "ros-lan";

// ---------------------------------------------------------------------------------------------
// Shared helpers
// ---------------------------------------------------------------------------------------------

/// The MAC roslan's `stableMac` gives a pod (plugin/src/mac.rs, reimplemented independently):
/// FNV-1a 64 over "roslan-mac", network, namespace and pod name, each part followed by 0xff; the
/// first six bytes, locally administered unicast.
fn stable_mac(network: &str, namespace: &str, pod: &str) -> String {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for part in ["roslan-mac", network, namespace, pod] {
        for byte in part.bytes().chain([0xff]) {
            hash ^= u64::from(byte);
            hash = hash.wrapping_mul(0x0100_0000_01b3);
        }
    }
    let b = hash.to_be_bytes();
    let bytes = [(b[0] & 0xfc) | 0x02, b[1], b[2], b[3], b[4], b[5]];
    bytes.iter().map(|x| format!("{x:02x}")).collect::<Vec<_>>().join(":")
}

/// A single configuration as the only plugin of a conflist (what runtimes read from a conf dir).
fn conflist(conf: &Value) -> Value {
    let mut plugin = conf.clone();
    let obj = plugin.as_object_mut().expect("object");
    let version = obj.remove("cniVersion").expect("cniVersion");
    let name = obj.remove("name").expect("name");
    json!({"cniVersion": version, "name": name, "plugins": [plugin]})
}

/// roslan's configuration for a runtime test: the LAN's, logging every call (debug adds one
/// `took ...` line at the end of each successful ADD and DEL) to a file in the LAN's directory.
fn logged_config(lan: &Lan, version: &str, range: (&str, &str)) -> (Value, PathBuf) {
    let log = lan.dir().join("roslan.log");
    let mut conf = lan.config(version);
    conf["ipam"]["ranges"][0][0]["rangeStart"] = json!(range.0);
    conf["ipam"]["ranges"][0][0]["rangeEnd"] = json!(range.1);
    conf["logFile"] = json!(log);
    conf["logLevel"] = json!("debug");
    (conf, log)
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

/// roslan's log lines of one command for one container.
fn log_lines(log: &str, command: &str, container: &str) -> Vec<String> {
    let needle = format!(" {command} {NETWORK} {container} ");
    log.lines()
        .filter(|l| l.contains(&needle))
        .map(str::to_string)
        .collect()
}

/// Asserts what roslan logged for one pod: one successful ADD and `dels` successful DELs, no error.
fn assert_logged(log: &str, container: &str, dels: usize) {
    let ok = |lines: &[String]| lines.iter().filter(|l| l.contains(": took ")).count();
    let adds = log_lines(log, "ADD", container);
    assert_eq!(ok(&adds), 1, "one successful ADD for {container}:\n{log}");
    let del_lines = log_lines(log, "DEL", container);
    assert_eq!(ok(&del_lines), dels, "{dels} successful DEL(s) for {container}:\n{log}");
    let errors: Vec<&String> = adds
        .iter()
        .chain(&del_lines)
        .filter(|l| l.contains(" roslan error ") || l.contains(" roslan warn "))
        .collect();
    assert!(errors.is_empty(), "roslan complained about {container}: {errors:?}");
}

/// `ip -j <args>` inside a namespace given by path (one the test does not own, so no `Netns`).
fn ip_json_at(netns: &str, args: &[&str]) -> Value {
    let mut full = vec![format!("--net={netns}"), "ip".into(), "-j".into()];
    full.extend(args.iter().map(|a| a.to_string()));
    let out = Command::new("nsenter").args(&full).output().expect("nsenter");
    assert!(
        out.status.success(),
        "ip {} in {netns}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or(Value::Null)
}

/// What a pod's LAN interface looks like from inside: addresses (non link-local), MAC, kind and mode.
#[derive(Debug)]
struct LanLink {
    mac: String,
    addrs: Vec<String>,
    kind: String,
    mode: String,
}

fn lan_link_at(netns: &str, dev: &str) -> LanLink {
    let link = ip_json_at(netns, &["-d", "addr", "show", "dev", dev]);
    let link = &link[0];
    LanLink {
        mac: link["address"].as_str().unwrap_or_default().to_string(),
        addrs: link["addr_info"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter(|i| i["scope"] == "global")
                    .map(|i| format!("{}/{}", i["local"].as_str().unwrap_or_default(), i["prefixlen"]))
                    .collect()
            })
            .unwrap_or_default(),
        kind: link["linkinfo"]["info_kind"].as_str().unwrap_or_default().to_string(),
        mode: link["linkinfo"]["info_data"]["mode"]
            .as_str()
            .unwrap_or_default()
            .to_string(),
    }
}

/// Asserts the multicast route is `224.0.0.0/4 dev <dev> scope link` without a gateway.
fn assert_multicast_route(routes: &Value, dev: &str, context: &str) {
    let route = routes
        .as_array()
        .and_then(|r| r.iter().find(|r| r["dst"] == "224.0.0.0/4"))
        .unwrap_or_else(|| panic!("{context}: no 224.0.0.0/4 route: {routes}"));
    assert_eq!(route["dev"], dev, "{context}: {route}");
    assert_eq!(route["scope"], "link", "{context}: {route}");
    assert!(
        route.get("gateway").is_none(),
        "{context}: multicast route with a gateway: {route}"
    );
}

/// A multicast receiver started by any command (`mcast recv` inside a container or a namespace the
/// test does not own); waits until it has joined the group.
struct Listener {
    what: String,
    child: Child,
    lines: Lines<BufReader<ChildStdout>>,
}

impl Listener {
    fn start(what: &str, mut command: Command) -> Listener {
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("start the receiver in {what}: {e}"));
        let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
        let first = lines.next().and_then(Result::ok).unwrap_or_default();
        if first != "ready" {
            let _ = child.kill();
            let out = child.wait_with_output().ok();
            let stderr = out.map(|o| String::from_utf8_lossy(&o.stderr).into_owned());
            panic!("the receiver in {what} did not join {GROUP}: {first:?} {stderr:?}");
        }
        Listener {
            what: what.to_string(),
            child,
            lines,
        }
    }

    /// Waits for the receiver; returns how many datagrams it got.
    fn finish(mut self) -> usize {
        let got = self
            .lines
            .by_ref()
            .map_while(Result::ok)
            .filter(|l| l.starts_with("from "))
            .count();
        let _ = self.child.wait();
        eprintln!("{}: received {got}", self.what);
        got
    }
}

fn mcast_args(role: &str, count: usize) -> Vec<String> {
    let mut args = vec![
        role.to_string(),
        GROUP.to_string(),
        SPDP_PORT.to_string(),
        count.to_string(),
    ];
    if role == "recv" {
        args.push("3000".into());
    }
    args
}

/// `mcast` in a namespace given by path, through nsenter (no /sys remount, unlike `ip netns exec`).
fn mcast_at(netns: &str, role: &str, count: usize) -> Command {
    let mut cmd = Command::new("nsenter");
    cmd.arg(format!("--net={netns}"))
        .arg(workspace_bin("mcast"))
        .args(mcast_args(role, count));
    cmd
}

/// Removes a network namespace file a runtime created (bind mount under /run/netns), if still there.
fn remove_netns_file(path: &str) {
    if Path::new(path).exists() {
        let _ = try_sh("umount", &["-l", path]);
        let _ = std::fs::remove_file(path);
    }
}

/// Links left in a namespace besides loopback.
fn links_besides_lo(ns: &Netns) -> Vec<String> {
    ns.links().into_iter().filter(|l| l != "lo").collect()
}

// ---------------------------------------------------------------------------------------------
// containerd through its CRI
// ---------------------------------------------------------------------------------------------

const PAUSE_IMAGE: &str = "t.local/roslan-pause:1";

/// A private containerd running in the LAN's node namespace (so its CNI calls find the master),
/// with its own config, root, state, socket, runc root and CNI directories under `dir`, optionally in a
/// node mount namespace of its own ([`NodeMounts`]). Dropping it removes every sandbox, stops containerd
/// and its shims, unmounts, removes the sandboxes' namespaces and cgroups and the directory.
struct Containerd {
    dir: PathBuf,
    socket: PathBuf,
    cgroup: String,
    child: Option<Child>,
    netns: RefCell<Vec<String>>,
    mounts: Option<Rc<NodeMounts>>,
}

impl Containerd {
    /// containerd whose only CNI configuration is `conflist`, with roslan and loopback in its bin dir.
    fn start(lan: &Lan, conflist: &Value) -> Containerd {
        let dir = lan.dir().join("containerd");
        for sub in ["net.d", "cni-bin"] {
            std::fs::create_dir_all(dir.join(sub)).expect("create containerd dirs");
        }
        // containerd 1.6 takes one bin_dir: roslan, and loopback for the `lo` network it adds.
        std::os::unix::fs::symlink(roslan_bin(), dir.join("cni-bin/roslan")).expect("link roslan");
        std::os::unix::fs::symlink(Path::new(REFERENCE_DIR).join("loopback"), dir.join("cni-bin/loopback"))
            .expect("link loopback");
        std::fs::write(
            dir.join("net.d/10-roslan.conflist"),
            serde_json::to_vec_pretty(conflist).expect("serialise"),
        )
        .expect("write conflist");
        let (bin_dir, conf_dir) = (dir.join("cni-bin"), dir.join("net.d"));
        Containerd::launch(lan, dir, &bin_dir, &conf_dir, None)
    }

    /// containerd with the CRI's CNI `bin_dir` and `conf_dir` given (MicroK8s' are
    /// `$SNAP_DATA/opt/cni/bin` and `$SNAP_DATA/args/cni-network`), in `mounts` if given.
    fn launch(lan: &Lan, dir: PathBuf, bin_dir: &Path, conf_dir: &Path, mounts: Option<Rc<NodeMounts>>) -> Containerd {
        need("containerd", "containerd");
        need("ctr", "containerd");
        need("containerd-shim-runc-v2", "containerd");
        need("runc", "runc");
        // Before anything needs dropping: the CRI client the drop uses too.
        venv_python();
        let mut cd = Containerd {
            socket: dir.join("containerd.sock"),
            cgroup: format!("roslan-test-{}", unique()),
            dir,
            child: None,
            netns: RefCell::new(Vec::new()),
            mounts,
        };
        let d = cd.dir.display().to_string();
        std::fs::create_dir_all(cd.dir.join("podlogs")).expect("create containerd dirs");
        let config = private_containerd_config(&cd.dir)
            + &format!(
                r#"[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{PAUSE_IMAGE}"
  # Without it runc fails here (the sandbox's oom_score_adj -998 needs CAP_SYS_RESOURCE).
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
    bin_dir = "{}"
    conf_dir = "{}"
    max_conf_num = 1
"#,
                bin_dir.display(),
                conf_dir.display()
            );
        std::fs::write(cd.dir.join("config.toml"), config).expect("write config");
        let log = std::fs::File::create(cd.dir.join("containerd.log")).expect("create log");
        // nsenter --net (not `ip netns exec`, whose private mount namespace and /sys remount make
        // runc fail with "no cgroup mount found in mountinfo" and would hide the sandboxes'
        // namespace and rootfs mounts from the test).
        let mut command = match &cd.mounts {
            Some(mounts) => mounts.command("containerd"),
            None => {
                let mut c = Command::new("nsenter");
                c.arg(format!("--net={}", lan.node.path())).arg("containerd");
                c
            }
        };
        let child = command
            .arg("--config")
            .arg(cd.dir.join("config.toml"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("start containerd");
        cd.child = Some(child);
        cd.cri(&["wait", "20"]);
        let archive = cd.dir.join("pause.tar");
        let mut build = Command::new(venv_python());
        build
            .arg(repo().join("tests/runtimes/pause_image.py"))
            .arg(&archive)
            .arg(PAUSE_IMAGE)
            .arg(need("busybox", "busybox-static"));
        run_ok(build, "build the pause image");
        let mut import = Command::new("ctr");
        import
            .arg("--address")
            .arg(&cd.socket)
            .args(["--namespace", "k8s.io", "image", "import"])
            .arg(&archive);
        run_ok(import, "ctr image import");
        cd.cri(&["image", PAUSE_IMAGE, "20"]);
        cd
    }

    fn try_cri(&self, args: &[&str]) -> Result<Value, String> {
        let out = Command::new(venv_python())
            .arg(repo().join("tests/runtimes/cri_client.py"))
            .arg(&self.socket)
            .args(args)
            .output()
            .map_err(|e| e.to_string())?;
        let stdout = String::from_utf8_lossy(&out.stdout);
        if out.status.success() {
            serde_json::from_str(stdout.trim()).map_err(|e| format!("{e}: {stdout}"))
        } else {
            Err(format!("{stdout}{}", String::from_utf8_lossy(&out.stderr)))
        }
    }

    /// A CRI call; on failure, panics with containerd's log (which carries the plugin's stderr).
    fn cri(&self, args: &[&str]) -> Value {
        self.try_cri(args).unwrap_or_else(|err| {
            panic!(
                "CRI {} failed: {err}\n--- containerd log (tail) ---\n{}",
                args.join(" "),
                self.log_tail()
            )
        })
    }

    fn log_tail(&self) -> String {
        let log = read(&self.dir.join("containerd.log"));
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }

    /// RunPodSandbox; returns the sandbox ID, or the CRI's error.
    fn try_run_pod(&self, name: &str, namespace: &str, uid: &str) -> Result<String, String> {
        let logdir = self.dir.join("podlogs").join(uid);
        let reply = self.try_cri(&[
            "run",
            name,
            namespace,
            uid,
            &logdir.to_string_lossy(),
            &format!("/{}", self.cgroup),
        ])?;
        let id = reply["id"].as_str().expect("sandbox id").to_string();
        let status = self.status(&id);
        if let Some(ns) = status["netns"].as_str() {
            self.netns.borrow_mut().push(ns.to_string());
        }
        Ok(id)
    }

    /// RunPodSandbox; returns the sandbox ID.
    fn run_pod(&self, name: &str, namespace: &str, uid: &str) -> String {
        self.try_run_pod(name, namespace, uid).unwrap_or_else(|err| {
            panic!(
                "RunPodSandbox {namespace}/{name} failed: {err}\n--- containerd log (tail) ---\n{}",
                self.log_tail()
            )
        })
    }

    /// PodSandboxStatus (verbose: the netns path and containerd's copy of the CNI result).
    fn status(&self, id: &str) -> Value {
        self.cri(&["status", id])
    }

    /// A sandbox's network namespace path (from PodSandboxStatus) as the test reaches it.
    fn netns_path(&self, netns: &str) -> String {
        match &self.mounts {
            Some(mounts) => mounts.host_path(netns).display().to_string(),
            None => netns.to_string(),
        }
    }
}

impl Drop for Containerd {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            if let Ok(list) = self.try_cri(&["list"]) {
                for id in list["ids"].as_array().into_iter().flatten().filter_map(Value::as_str) {
                    let _ = self.try_cri(&["stop", id]);
                    let _ = self.try_cri(&["remove", id]);
                }
            }
            stop_child(&mut child, Duration::from_secs(5));
        }
        // Shims (and their pause processes) outlive containerd by design.
        let socket = self.socket.to_string_lossy().into_owned();
        kill_tree_matching(&["containerd-shim", &socket]);
        unmount_under(&self.dir);
        // In a node mount namespace the namespace files live on its /run and go with it.
        if self.mounts.is_none() {
            for ns in self.netns.borrow().iter() {
                remove_netns_file(ns);
            }
        }
        remove_cgroup(&self.cgroup);
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[root_test]
fn containerd_cri_sandboxes_get_lan_addresses_and_exchange_multicast() {
    let lan = Lan::new();
    let (conf, log) = logged_config(&lan, "1.0.0", ("10.77.3.10", "10.77.3.250"));
    let containerd = Containerd::start(&lan, &conflist(&conf));

    let pods = [("talker-0", "uid-talker-0"), ("listener-0", "uid-listener-0")];
    let mut sandboxes = Vec::new();
    for (name, uid) in pods {
        let id = containerd.run_pod(name, "robots", uid);
        let status = containerd.status(&id);
        assert_eq!(status["state"], "SANDBOX_READY", "{status}");
        let ip = status["ip"].as_str().unwrap_or_default().to_string();
        assert!(ip.starts_with("10.77.3."), "the sandbox's IP is on the LAN: {status}");
        let netns = status["netns"].as_str().unwrap_or_default().to_string();
        assert!(
            netns.starts_with("/var/run/netns/cni-"),
            "containerd's sandbox namespace: {status}"
        );
        // containerd's own record of roslan's result.
        let cni_eth0 = &status["cni_result"]["Interfaces"]["eth0"];
        assert_eq!(cni_eth0["IPConfigs"][0]["IP"], ip.as_str(), "{status}");
        assert_eq!(cni_eth0["IPConfigs"][0]["Gateway"], HOST_ADDR, "{status}");

        // Inside the sandbox: a bridge-mode macvlan with that address, the MAC stableMac derives
        // from the K8S_POD_NAMESPACE/K8S_POD_NAME containerd passes, and the multicast route.
        let link = lan_link_at(&netns, "eth0");
        assert_eq!(
            (link.kind.as_str(), link.mode.as_str()),
            ("macvlan", "bridge"),
            "{link:?}"
        );
        assert_eq!(link.addrs, vec![format!("{ip}/16")], "{link:?}");
        assert_eq!(
            link.mac,
            stable_mac(NETWORK, "robots", name),
            "stableMac from containerd's CNI_ARGS"
        );
        assert_eq!(cni_eth0["Mac"], link.mac.as_str(), "{status}");
        assert_multicast_route(&ip_json_at(&netns, &["-4", "route", "show"]), "eth0", name);
        sandboxes.push((id, ip, netns));
    }
    assert_ne!(sandboxes[0].1, sandboxes[1].1, "distinct addresses");
    let mut reserved: Vec<String> = sandboxes.iter().map(|s| s.1.clone()).collect();
    reserved.sort();
    assert_eq!(lan.reservations(NETWORK), reserved);

    // Unpinned multicast, sandbox to sandbox and to a LAN host, both ways.
    let (a, b) = (&sandboxes[0].2, &sandboxes[1].2);
    let rx_b = Listener::start("listener-0", mcast_at(b, "recv", 5));
    let rx_host = Receiver::start(&lan.host, GROUP, SPDP_PORT, 5, 3000);
    run_ok(mcast_at(a, "send", 5), "mcast send in talker-0");
    assert_eq!(rx_b.finish(), 5, "talker-0 -> listener-0");
    assert_eq!(rx_host.finish().len(), 5, "talker-0 -> LAN host");
    let rx_a = Listener::start("talker-0", mcast_at(a, "recv", 5));
    run_ok(mcast_at(b, "send", 5), "mcast send in listener-0");
    assert_eq!(rx_a.finish(), 5, "listener-0 -> talker-0");

    // StopPodSandbox: DEL #1 (the namespace still exists); RemovePodSandbox: DEL #2 (CNI_NETNS
    // empty). The CRI calls fail if a DEL fails, so their success is the runtime's verdict.
    for (id, ip, netns) in &sandboxes {
        containerd.cri(&["stop", id]);
        assert!(!lan.reservations(NETWORK).contains(ip), "StopPodSandbox released {ip}");
        assert!(!Path::new(netns).exists(), "containerd removed {netns}");
        containerd.cri(&["remove", id]);
        assert_eq!(
            containerd.cri(&["list"])["ids"]
                .as_array()
                .map(|a| a.iter().any(|x| x == id.as_str())),
            Some(false)
        );
    }
    let log_text = read(&log);
    for (id, _, _) in &sandboxes {
        assert_logged(&log_text, id, 2);
    }
    assert!(lan.reservations(NETWORK).is_empty(), "no reservation left");
    assert_eq!(
        links_besides_lo(&lan.node),
        vec![MASTER.to_string()],
        "nothing left in the node"
    );
    // libcni's cache (containerd 1.6 cannot move it from /var/lib/cni): DEL removed our entries.
    for (id, _, _) in &sandboxes {
        let cached = Path::new("/var/lib/cni/results").join(format!("{NETWORK}-{id}-eth0"));
        assert!(!cached.exists(), "{} left behind", cached.display());
    }
}

// ---------------------------------------------------------------------------------------------
// podman with the CNI backend
// ---------------------------------------------------------------------------------------------

/// Podman with an isolated containers.conf (CNI backend, roslan's bin dir, runc, cgroupfs, low
/// ulimits, file locks), private --root/--runroot/tmp_dir, a rootfs that reuses the host's /usr,
/// every command run in the LAN's node namespace. Dropping it removes every container, resets the
/// private storage, and removes the namespaces and cgroups it created.
struct Podman {
    dir: PathBuf,
    node: String,
    cgroup: String,
    netns: RefCell<Vec<String>>,
}

impl Podman {
    fn new(lan: &Lan, conflist: &Value) -> Podman {
        need("podman", "podman");
        need("runc", "runc");
        need("conmon", "conmon");
        let podman = Podman {
            dir: lan.dir().join("podman"),
            node: lan.node.path(),
            cgroup: format!("roslan-test-{}", unique()),
            netns: RefCell::new(Vec::new()),
        };
        let d = podman.dir.display().to_string();
        for sub in ["net.d", "cni-bin", "tmp", "home"] {
            std::fs::create_dir_all(podman.dir.join(sub)).expect("create podman dirs");
        }
        std::os::unix::fs::symlink(roslan_bin(), podman.dir.join("cni-bin/roslan")).expect("link roslan");
        std::fs::write(
            podman.dir.join("net.d/ros-lan.conflist"),
            serde_json::to_vec_pretty(conflist).expect("serialise"),
        )
        .expect("write conflist");
        // crun refuses this cgroup layout and podman's default nofile/nproc (1048576) exceed the
        // hard limits without CAP_SYS_RESOURCE; file locks keep podman out of /dev/shm.
        let conf = format!(
            r#"[containers]
default_ulimits = ["nofile=4096:4096", "nproc=4096:4096"]
[network]
network_backend = "cni"
cni_plugin_dirs = ["{d}/cni-bin"]
network_config_dir = "{d}/net.d"
[engine]
cgroup_manager = "cgroupfs"
events_logger = "file"
events_logfile_path = "{d}/tmp/events.log"
runtime = "runc"
tmp_dir = "{d}/tmp"
lock_type = "file"
"#
        );
        std::fs::write(podman.dir.join("containers.conf"), conf).expect("write containers.conf");
        // The rootfs: empty directories and the usr-merged symlinks; /usr comes from the host, read-only.
        let rootfs = podman.dir.join("rootfs");
        for sub in ["usr", "etc", "proc", "sys", "dev", "tmp", "run", "var", "root"] {
            std::fs::create_dir_all(rootfs.join(sub)).expect("create rootfs");
        }
        for (link, target) in [
            ("bin", "usr/bin"),
            ("sbin", "usr/sbin"),
            ("lib", "usr/lib"),
            ("lib64", "usr/lib64"),
        ] {
            std::os::unix::fs::symlink(target, rootfs.join(link)).expect("rootfs symlink");
        }
        podman
    }

    fn command(&self, args: &[&str]) -> Command {
        let d = &self.dir;
        let mut cmd = Command::new("nsenter");
        cmd.arg(format!("--net={}", self.node))
            .arg("podman")
            .arg("--root")
            .arg(d.join("storage"))
            .arg("--runroot")
            .arg(d.join("run"))
            .args(args)
            .env_clear()
            .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
            .env("HOME", d.join("home"))
            .env("CONTAINERS_CONF", d.join("containers.conf"));
        cmd
    }

    fn try_podman(&self, args: &[&str]) -> Output {
        self.command(args).output().expect("run podman")
    }

    fn podman(&self, args: &[&str]) -> String {
        let out = self.try_podman(args);
        assert!(
            out.status.success(),
            "podman {} failed: {}{}",
            args.join(" "),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Starts a container on the roslan network that just waits; returns `podman inspect`.
    fn run(&self, name: &str) -> Value {
        let usr = "/usr:/usr:ro".to_string();
        let mcast = format!("{}:/mcast:ro", workspace_bin("mcast").display());
        let rootfs = self.dir.join("rootfs").to_string_lossy().into_owned();
        let parent = format!("/{}", self.cgroup);
        self.podman(&[
            "run",
            "-d",
            "--name",
            name,
            "--network",
            NETWORK,
            "--cgroup-parent",
            &parent,
            "-v",
            &usr,
            "-v",
            &mcast,
            "--rootfs",
            &rootfs,
            "/usr/bin/sleep",
            "600",
        ]);
        let inspect: Value = serde_json::from_str(&self.podman(&["inspect", name])).expect("inspect JSON");
        let inspect = inspect[0].clone();
        if let Some(key) = inspect["NetworkSettings"]["SandboxKey"].as_str() {
            self.netns.borrow_mut().push(key.to_string());
        }
        inspect
    }

    fn exec(&self, name: &str, program: &str, args: &[String]) -> Command {
        let mut full = vec!["exec".to_string(), name.to_string(), program.to_string()];
        full.extend(args.iter().cloned());
        let refs: Vec<&str> = full.iter().map(String::as_str).collect();
        self.command(&refs)
    }
}

impl Drop for Podman {
    fn drop(&mut self) {
        let _ = self.try_podman(&["rm", "--all", "--force", "--time", "0"]);
        let _ = self.try_podman(&["system", "reset", "--force"]);
        let tmp = self.dir.display().to_string();
        kill_tree_matching(&["conmon", &tmp]);
        unmount_under(&self.dir);
        for ns in self.netns.borrow().iter() {
            remove_netns_file(ns);
        }
        remove_cgroup(&self.cgroup);
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[root_test]
fn podman_containers_on_a_roslan_network_exchange_multicast() {
    let lan = Lan::new();
    let (conf, log) = logged_config(&lan, "0.4.0", ("10.77.4.10", "10.77.4.250"));
    let podman = Podman::new(&lan, &conflist(&conf));

    let mut containers = Vec::new();
    for name in ["talker", "listener"] {
        let inspect = podman.run(name);
        let id = inspect["Id"].as_str().unwrap_or_default().to_string();
        let net = &inspect["NetworkSettings"]["Networks"][NETWORK];
        let ip = net["IPAddress"].as_str().unwrap_or_default().to_string();
        assert!(ip.starts_with("10.77.4."), "{name} is on the LAN: {net}");
        assert_eq!(net["Gateway"], HOST_ADDR, "{net}");
        // What the container sees: a bridge-mode macvlan with that address and the multicast route.
        let addr = podman.exec(
            name,
            "/usr/sbin/ip",
            &["-j".into(), "-d".into(), "addr".into(), "show".into(), "eth0".into()],
        );
        let addr: Value = serde_json::from_slice(&run_ok(addr, "ip addr in the container").stdout).expect("ip JSON");
        assert_eq!(addr[0]["linkinfo"]["info_kind"], "macvlan", "{addr}");
        assert_eq!(addr[0]["linkinfo"]["info_data"]["mode"], "bridge", "{addr}");
        assert_eq!(addr[0]["address"], net["MacAddress"], "{addr}");
        let inside: Vec<&str> = addr[0]["addr_info"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|a| a["scope"] == "global")
            .filter_map(|a| a["local"].as_str())
            .collect();
        assert_eq!(inside, vec![ip.as_str()], "{addr}");
        let routes = podman.exec(name, "/usr/sbin/ip", &["-j".into(), "-4".into(), "route".into()]);
        let routes: Value =
            serde_json::from_slice(&run_ok(routes, "ip route in the container").stdout).expect("ip JSON");
        assert_multicast_route(&routes, "eth0", name);
        containers.push((name, id, ip));
    }
    let mut reserved: Vec<String> = containers.iter().map(|c| c.2.clone()).collect();
    reserved.sort();
    assert_eq!(lan.reservations(NETWORK), reserved);

    // The mcast helper runs inside the containers (bind-mounted, linked against the host's /usr).
    let rx = Listener::start("listener", podman.exec("listener", "/mcast", &mcast_args("recv", 5)));
    let rx_host = Receiver::start(&lan.host, GROUP, SPDP_PORT, 5, 3000);
    run_ok(
        podman.exec("talker", "/mcast", &mcast_args("send", 5)),
        "mcast send in talker",
    );
    assert_eq!(rx.finish(), 5, "talker -> listener");
    assert_eq!(rx_host.finish().len(), 5, "talker -> LAN host");
    let rx = Listener::start("talker", podman.exec("talker", "/mcast", &mcast_args("recv", 5)));
    run_ok(
        podman.exec("listener", "/mcast", &mcast_args("send", 5)),
        "mcast send in listener",
    );
    assert_eq!(rx.finish(), 5, "listener -> talker");

    // Removing the containers runs podman's DEL (with the cached result as prevResult).
    podman.podman(&["rm", "--force", "--time", "0", "talker", "listener"]);
    let log_text = read(&log);
    for (_, id, _) in &containers {
        assert_logged(&log_text, id, 1);
        // podman 4.3's libcni cache is /var/lib/cni/results too; the DEL removed our entries.
        let cached = Path::new("/var/lib/cni/results").join(format!("{NETWORK}-{id}-eth0"));
        assert!(!cached.exists(), "{} left behind", cached.display());
    }
    assert!(lan.reservations(NETWORK).is_empty(), "no reservation left");
    for ns in podman.netns.borrow().iter() {
        assert!(!Path::new(ns).exists(), "podman removed {ns}");
    }
    assert_eq!(
        links_besides_lo(&lan.node),
        vec![MASTER.to_string()],
        "nothing left in the node"
    );
}

// ---------------------------------------------------------------------------------------------
// Real Multus as containerd's CNI, laid out as on MicroK8s, reading a real API server
// ---------------------------------------------------------------------------------------------

/// The pods' namespace and the node they are bound to (no kubelet serves it: the test is the kubelet).
const POD_NAMESPACE: &str = "robots";
const NODE_NAME: &str = "robot-1";
const CLUSTER_SUBNET: &str = "10.244.0.0/24";
const CLUSTER_GATEWAY: &str = "10.244.0.1";

/// What stands in the bin dir as `roslan`: it records each call Multus makes (its CNI_* variables and
/// stdin, one directory per call, named by the time) and then executes the built roslan with the same
/// environment and input. `$0`'s directory name is irrelevant; the paths are substituted in.
const ROSLAN_SPY: &str = r#"#!/bin/sh
call=$(mktemp -d "@SPY@/$(date +%s%N).XXXXXX")
env | grep '^CNI_' > "$call/env"
cat > "$call/stdin"
exec "@ROSLAN@" < "$call/stdin"
"#;

/// One call Multus made to roslan.
#[derive(Debug)]
struct SpiedCall {
    env: std::collections::BTreeMap<String, String>,
    stdin: Value,
}

impl SpiedCall {
    fn var(&self, key: &str) -> &str {
        self.env.get(key).map(String::as_str).unwrap_or_default()
    }
}

/// One node as MicroK8s' multus addon leaves it, with a control plane: etcd and kube-apiserver on the
/// node namespace's loopback (the test thread runs there, see [`Netns::enter`]), the NAD CRD and Multus'
/// RBAC from Multus' own manifest, a service account token in Multus' kubeconfig (thin) or in the
/// daemon's `/var/run/secrets` (thick), the `$SNAP_DATA` tree in the LAN's directory, and containerd
/// (plus thick Multus' daemon) in a node mount namespace of their own.
struct MultusNode<'a> {
    // Dropped in this order: the sandboxes' DELs go through Multus, which needs the API server.
    containerd: Containerd,
    daemon: Option<Daemon>,
    mounts: Rc<NodeMounts>,
    cp: ControlPlane,
    flavour: Flavour,
    lan: &'a Lan,
    roslan_log: PathBuf,
    spy_dir: PathBuf,
    /// containerd's CNI bin dir, `$SNAP_DATA/opt/cni/bin`.
    bin_dir: PathBuf,
}

/// A sandbox Multus attached, as the test sees it.
#[derive(Debug)]
struct Attached {
    name: String,
    /// The pod object's UID.
    uid: String,
    /// The NAD's cniVersion.
    version: String,
    id: String,
    /// The sandbox's network namespace as the node's processes name it (CNI_NETNS).
    node_netns: String,
    /// The same, reachable from the test.
    netns: String,
    /// eth0's address (the CRI's pod IP).
    ip: String,
    /// net1's address and MAC.
    lan_ip: String,
    mac: String,
}

impl<'a> MultusNode<'a> {
    fn start(lan: &'a Lan, flavour: Flavour) -> MultusNode<'a> {
        let cp = ControlPlane::start();
        cp.install_nad_crd(flavour.family());
        multus::apply_rbac(&cp, flavour);
        cp.kubectl_ok(&["create", "namespace", POD_NAMESPACE]);
        // No controller manager: the namespace's service account, which pod admission wants, by hand.
        cp.kubectl_ok(&["-n", POD_NAMESPACE, "create", "serviceaccount", "default"]);
        let token = multus::service_account_token(&cp);

        let layout = MicroK8s::create(&lan.dir().join("node-root"));
        layout.install_multus(flavour);
        layout.link_cluster_plugins();
        let spy_dir = lan.dir().join("roslan-calls");
        std::fs::create_dir_all(&spy_dir).expect("create the spy's directory");
        let spy = lan.dir().join("roslan-spy");
        std::fs::write(
            &spy,
            ROSLAN_SPY
                .replace("@SPY@", &spy_dir.display().to_string())
                .replace("@ROSLAN@", &roslan_bin().display().to_string()),
        )
        .expect("write the spy");
        std::fs::set_permissions(&spy, std::os::unix::fs::PermissionsExt::from_mode(0o755)).expect("chmod");
        layout.link_plugin("roslan", &spy);
        // host-local's data in its default place, the node's /var/lib/cni/networks. Thick Multus 4.3.0
        // gets the same network as a single configuration: from a conflist file it keeps only `type` and
        // `ipam.type` of each plugin for the DEL (the ADD reads the file itself), host-local refuses that
        // (`no IP ranges specified`), multus-shim swallows the error, and every pod's cluster address
        // stays reserved (measured; multus-cni#1521, merged after 4.3.0). A single configuration keeps
        // its bytes, as roslan's NAD from the API server does.
        let cluster = multus::cluster_network("0.3.1", CLUSTER_SUBNET, None);
        if flavour == Flavour::V4Thick {
            layout.write_cluster_network(&multus::single_plugin(&cluster));
        } else {
            layout.write_cluster_network(&cluster);
        }

        let thick = flavour == Flavour::V4Thick;
        let hostroot = lan.dir().join("hostroot");
        let mounts = Rc::new(NodeMounts::new(
            &lan.node.path(),
            lan.dir(),
            NodeMountOptions {
                service_account: thick.then(|| (token.clone(), cp.ca().to_path_buf())),
                opt_cni_bin: Some(layout.bin_dir()),
                hostroot: thick.then(|| hostroot.clone()),
            },
        ));
        let mut daemon = None;
        match flavour {
            Flavour::V3Thin | Flavour::V4Thin => {
                layout.write_kubeconfig(&Kubeconfig::for_control_plane(flavour, &cp, Credentials::Token(token)));
                // MicroK8s passes --cni-version=0.3.1 to 3.9; upstream's Multus 4 manifest passes none.
                let version = (flavour == Flavour::V3Thin).then_some("0.3.1");
                layout.write_multus_conf(flavour, version);
            }
            Flavour::V4Thick => {
                let config = layout.write_daemon_config(&ThickDaemon {
                    cni_version: "0.3.1".into(),
                    socket_dir: lan.dir().join("multus-run"),
                    chroot_dir: Some(hostroot),
                });
                let port = cp.server().rsplit(':').next().expect("port").to_string();
                let mut cmd = mounts.command("setpriv");
                cmd.args(["--pdeathsig", "KILL", "--"])
                    .arg(peer_bin("multus-v4/multus-daemon"))
                    .arg("-config")
                    .arg(&config)
                    .env("KUBERNETES_SERVICE_HOST", "127.0.0.1")
                    .env("KUBERNETES_SERVICE_PORT", port)
                    .env("MULTUS_NODE_NAME", NODE_NAME);
                let log = lan.dir().join("multus-daemon.log");
                let mut d = Daemon::spawn_command("multus-daemon", cmd, &log);
                // The daemon writes 00-multus.conf for multus-shim once it has read the cluster network.
                let conf = layout.conf_dir().join("00-multus.conf");
                let up = wait_until(Duration::from_secs(30), || conf.exists() || !d.running());
                assert!(
                    up && conf.exists(),
                    "multus-daemon wrote no {}:\n{}",
                    conf.display(),
                    log_tail(&log, 40)
                );
                daemon = Some(d);
            }
        }
        let containerd = Containerd::launch(
            lan,
            lan.dir().join("containerd"),
            &layout.bin_dir(),
            &layout.conf_dir(),
            Some(mounts.clone()),
        );
        MultusNode {
            containerd,
            daemon,
            mounts,
            cp,
            flavour,
            lan,
            roslan_log: lan.dir().join("roslan.log"),
            spy_dir,
            bin_dir: layout.bin_dir(),
        }
    }

    /// Every call Multus made to roslan so far for sandbox `id`, in order.
    fn calls(&self, id: &str) -> Vec<SpiedCall> {
        let mut dirs: Vec<PathBuf> = std::fs::read_dir(&self.spy_dir)
            .expect("read the spy's directory")
            .flatten()
            .map(|e| e.path())
            .collect();
        dirs.sort();
        dirs.iter()
            .map(|dir| SpiedCall {
                env: read(&dir.join("env"))
                    .lines()
                    .filter_map(|l| l.split_once('='))
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
                stdin: serde_json::from_str(&read(&dir.join("stdin"))).unwrap_or(Value::Null),
            })
            .filter(|c| c.var("CNI_CONTAINERID") == id)
            .collect()
    }

    /// roslan's configuration at `version` as a NAD named `ros-lan-v<digits>`, logging to one file.
    fn nad(&self, version: &str) -> (String, Value) {
        let (conf, log) = logged_config(self.lan, version, ("10.77.1.10", "10.77.1.250"));
        assert_eq!(log, self.roslan_log);
        let name = format!("ros-lan-v{}", version.replace('.', ""));
        self.cp.apply(&multus::nad_manifest(POD_NAMESPACE, &name, &conf));
        (name, conf)
    }

    /// Creates the pod (asking for `nad`) with kubectl, then runs its sandbox with the pod's UID, as
    /// kubelet would; returns the sandbox ID or the CRI's error.
    fn run_pod(&self, name: &str, nad: &str) -> Result<String, String> {
        self.cp
            .apply(&multus::pod_manifest(POD_NAMESPACE, name, NODE_NAME, nad));
        let uid = self.pod_uid(name);
        // The CRI client prints {"error": <the CRI's message>} when a call fails.
        self.containerd.try_run_pod(name, POD_NAMESPACE, &uid).map_err(|out| {
            match serde_json::from_str::<Value>(out.lines().next().unwrap_or_default()) {
                Ok(json) if json["error"].is_string() => json["error"].as_str().unwrap_or_default().to_string(),
                _ => out,
            }
        })
    }

    fn pod_uid(&self, name: &str) -> String {
        self.cp.kubectl_ok(&[
            "-n",
            POD_NAMESPACE,
            "get",
            "pod",
            name,
            "-o",
            "jsonpath={.metadata.uid}",
        ])
    }

    /// Asserts what Multus sent roslan for a sandbox, as the spy recorded it: `commands` in order, each
    /// for net1 with the NAD's configuration, Multus' CNI_ARGS (the pod's identity, `IgnoreUnknown`; thin
    /// Multus appends the runtime's own, so keys repeat), CNI_PATH with Multus' `binDir` first (thin
    /// Multus appends the runtime's bin dir, thick sends only its own), and on the first DEL the
    /// attachment's cached result as `prevResult` exactly when the NAD is 0.4.0 or later (libcni sends
    /// none before 0.4.0, and the first DEL removes the cache entry).
    fn assert_calls(&self, pod: &Attached, commands: &[&str]) {
        let calls = self.calls(&pod.id);
        let context = format!("{} ({:?}, {})", pod.name, self.flavour, pod.version);
        let got: Vec<&str> = calls.iter().map(|c| c.var("CNI_COMMAND")).collect();
        assert_eq!(got, commands, "{context}: {calls:?}");
        let identity = [
            format!("K8S_POD_NAMESPACE={POD_NAMESPACE}"),
            format!("K8S_POD_NAME={}", pod.name),
            format!("K8S_POD_UID={}", pod.uid),
            format!("K8S_POD_INFRA_CONTAINER_ID={}", pod.id),
            "IgnoreUnknown=true".to_string(),
        ];
        let mut dels = 0;
        for call in &calls {
            let what = format!("{context}: {} {call:?}", call.var("CNI_COMMAND"));
            assert_eq!(call.var("CNI_IFNAME"), "net1", "{what}");
            assert_eq!(call.stdin["name"], NETWORK, "{what}");
            assert_eq!(call.stdin["cniVersion"], pod.version.as_str(), "{what}");
            let args: Vec<&str> = call.var("CNI_ARGS").split(';').collect();
            for kv in &identity {
                assert!(args.contains(&kv.as_str()), "{what}: {kv}");
            }
            let path: Vec<&str> = call.var("CNI_PATH").split(':').collect();
            let runtime_dir = self.bin_dir.display().to_string();
            match self.flavour {
                Flavour::V4Thick => assert_eq!(path, ["/opt/cni/bin"], "{what}"),
                Flavour::V3Thin | Flavour::V4Thin => {
                    assert_eq!(path, ["/opt/cni/bin", runtime_dir.as_str()], "{what}")
                }
            }
            let prev = call.stdin.get("prevResult");
            if call.var("CNI_COMMAND") == "DEL" {
                dels += 1;
                assert_eq!(prev.is_some(), dels == 1 && pod.version != "0.3.1", "{what}");
                if let Some(prev) = prev {
                    assert_eq!(prev["ips"][0]["address"], format!("{}/16", pod.lan_ip), "{what}");
                    assert_eq!(prev["interfaces"][0]["mac"], pod.mac.as_str(), "{what}");
                }
            } else {
                assert!(prev.is_none(), "{what}");
            }
        }
    }

    fn delete_pod(&self, name: &str) {
        self.cp.kubectl_ok(&[
            "-n",
            POD_NAMESPACE,
            "delete",
            "pod",
            name,
            "--grace-period=0",
            "--force",
        ]);
    }

    fn diagnostics(&self) -> String {
        let mut out = format!("--- containerd log (tail) ---\n{}", self.containerd.log_tail());
        if let Some(d) = &self.daemon {
            out += &format!("\n--- multus-daemon log (tail) ---\n{}", log_tail(d.log(), 40));
        }
        out
    }

    /// Multus' cache (its `cniDir`, `/var/lib/cni/multus` on the node).
    fn multus_cache(&self) -> PathBuf {
        self.mounts.var_lib_cni().join("multus")
    }

    /// The cluster network's reservations (host-local's files in the node's `/var/lib/cni/networks`).
    fn cluster_reservations(&self) -> Vec<String> {
        let dir = self.mounts.var_lib_cni().join("networks").join(multus::CLUSTER_NETWORK);
        let mut ips: Vec<String> = std::fs::read_dir(dir)
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.parse::<std::net::IpAddr>().is_ok())
            .collect();
        ips.sort();
        ips
    }

    /// Every file under the node's `/var/lib/cni` but host-local's (see
    /// [`MultusNode::cluster_reservations`]): libcni's caches, containerd's and Multus'.
    fn cache_files(&self) -> Vec<String> {
        fn walk(dir: &Path, base: &Path, out: &mut Vec<String>) {
            for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
                let path = entry.path();
                if path == base.join("networks") {
                    continue;
                }
                if path.is_dir() {
                    walk(&path, base, out);
                } else {
                    out.push(path.strip_prefix(base).unwrap_or(&path).display().to_string());
                }
            }
        }
        let mut out = Vec::new();
        walk(self.mounts.var_lib_cni(), self.mounts.var_lib_cni(), &mut out);
        out.sort();
        out
    }

    /// libcni's cache entry Multus wrote for an attachment (`results/<network>-<sandbox>-<ifname>`).
    fn cached(&self, id: &str, ifname: &str) -> Option<Value> {
        let file = self
            .multus_cache()
            .join("results")
            .join(format!("{NETWORK}-{id}-{ifname}"));
        let text = std::fs::read(file).ok()?;
        serde_json::from_slice(&text).ok()
    }

    /// Asserts a pod as Multus left it: eth0 from the cluster network with the only default route,
    /// roslan's net1 on the LAN with the gateway-less multicast route and `stableMac`'s MAC, the
    /// reservation, Multus' `network-status` annotation and its cache.
    fn assert_attached(&self, name: &str, nad: &str, version: &str, id: &str) -> Attached {
        let context = format!("{name} ({:?}, {nad})", self.flavour);
        let status = self.containerd.status(id);
        assert_eq!(status["state"], "SANDBOX_READY", "{context}: {status}");
        // Multus answers the runtime with the cluster network's result.
        let ip = status["ip"].as_str().unwrap_or_default().to_string();
        assert!(
            ip.starts_with("10.244.0."),
            "{context}: the CRI's IP is eth0's: {status}"
        );
        let node_netns = status["netns"].as_str().expect("the sandbox's netns").to_string();
        let netns = self.containerd.netns_path(&node_netns);

        let routes = ip_json_at(&netns, &["-4", "route", "show"]);
        let defaults: Vec<&Value> = routes
            .as_array()
            .into_iter()
            .flatten()
            .filter(|r| r["dst"] == "default")
            .collect();
        assert_eq!(defaults.len(), 1, "{context}: one default route: {routes}");
        assert_eq!(defaults[0]["dev"], "eth0", "{context}: {routes}");
        assert_eq!(defaults[0]["gateway"], CLUSTER_GATEWAY, "{context}: {routes}");
        assert_eq!(lan_link_at(&netns, "eth0").addrs, vec![format!("{ip}/24")], "{context}");

        let net1 = lan_link_at(&netns, "net1");
        assert_eq!(
            (net1.kind.as_str(), net1.mode.as_str()),
            ("macvlan", "bridge"),
            "{context}: {net1:?}"
        );
        assert_eq!(net1.addrs.len(), 1, "{context}: {net1:?}");
        let lan_ip = net1.addrs[0].split('/').next().unwrap_or_default().to_string();
        assert!(lan_ip.starts_with("10.77.1."), "{context}: {net1:?}");
        assert_eq!(
            net1.mac,
            stable_mac(NETWORK, POD_NAMESPACE, name),
            "{context}: stableMac from the K8S_POD_* Multus passes"
        );
        assert_multicast_route(&routes, "net1", &context);
        assert!(self.lan.reservations(NETWORK).contains(&lan_ip), "{context}: reserved");
        assert!(self.cluster_reservations().contains(&ip), "{context}");

        // Multus' own view, written to the API server.
        let statuses = multus::network_status(&self.cp, POD_NAMESPACE, name);
        let by_interface = |ifname: &str| {
            statuses
                .iter()
                .find(|s| s["interface"] == ifname)
                .unwrap_or_else(|| panic!("{context}: no {ifname} in network-status {statuses:?}"))
                .clone()
        };
        let eth0 = by_interface("eth0");
        assert_eq!(eth0["name"], multus::CLUSTER_NETWORK, "{context}: {eth0}");
        assert_eq!(eth0["default"], true, "{context}: {eth0}");
        assert_eq!(eth0["ips"], json!([ip]), "{context}: {eth0}");
        let lan = by_interface("net1");
        assert_eq!(lan["name"], format!("{POD_NAMESPACE}/{nad}"), "{context}: {lan}");
        assert_eq!(lan["ips"], json!([lan_ip]), "{context}: {lan}");
        assert_eq!(lan["mac"], net1.mac.as_str(), "{context}: {lan}");
        assert_ne!(lan["default"], true, "{context}: {lan}");
        assert_eq!(statuses.len(), 2, "{context}: {statuses:?}");

        // Multus' cache: the pod's delegates, and libcni's result of each attachment.
        assert!(self.multus_cache().join(id).is_file(), "{context}: delegates cached");
        let cached = self
            .cached(id, "net1")
            .unwrap_or_else(|| panic!("{context}: no cached result: {:?}", self.cache_files()));
        assert_eq!(cached["kind"], "cniCacheV1", "{context}: {cached}");
        assert_eq!(
            cached["result"]["ips"][0]["address"],
            net1.addrs[0].as_str(),
            "{context}: {cached}"
        );
        Attached {
            name: name.to_string(),
            uid: self.pod_uid(name),
            version: version.to_string(),
            id: id.to_string(),
            node_netns,
            netns,
            ip,
            lan_ip,
            mac: net1.mac,
        }
    }

    /// roslan's CHECK as libcni runs it (`CheckNetwork`) for an attachment Multus made: the NAD's
    /// configuration with the result Multus cached as `prevResult`, the CNI_ARGS Multus recorded.
    /// Multus itself never sends CHECK to a NAD's delegate (its CmdCheck walks only the delegates of
    /// its own configuration file), so this is how a CHECK reaches roslan's state after Multus' ADD.
    fn check(&self, pod: &Attached, conf: &Value) {
        let cached = self.cached(&pod.id, "net1").expect("cached result");
        let args: Vec<String> = cached["cniArgs"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|kv| {
                format!(
                    "{}={}",
                    kv[0].as_str().unwrap_or_default(),
                    kv[1].as_str().unwrap_or_default()
                )
            })
            .collect();
        let mut conf = conf.clone();
        conf["prevResult"] = cached["result"].clone();
        // In the node's mount namespace, where CNI_NETNS is the path Multus' ADD had.
        let mut call = Call::roslan("CHECK", &pod.id, &pod.node_netns, "net1", &conf).args(&args.join(";"));
        call.wrapper = vec!["nsenter".into(), format!("--mount=/proc/{}/ns/mnt", self.mounts.pid())];
        let reply = call.run_in(&self.lan.node);
        assert_eq!(reply.status, 0, "CHECK of {}: {reply}", pod.name);
    }
}

/// The roslan log lines of `command` that finished (`took`), for one sandbox.
fn finished(log: &str, command: &str, id: &str) -> usize {
    log_lines(log, command, id)
        .iter()
        .filter(|l| l.contains(": took "))
        .count()
}

/// Two pods through real Multus: the talker on a NAD at `talker_version`, the listener at
/// `listener_version`. Then the MicroK8s pitfall (`refused`: a NAD version this Multus cannot read
/// results of, and the error expected in RunPodSandbox's answer), the talker deleted the normal way and
/// restarted, and the listener deleted from Multus' cache alone (its NAD and pod gone from the API).
fn real_multus(flavour: Flavour, talker_version: &str, listener_version: &str, refused: Option<(&str, &str)>) {
    let started = std::time::Instant::now();
    let lan = Lan::new();
    let _inside = lan.node.enter();
    let node = MultusNode::start(&lan, flavour);
    eprintln!("{flavour:?}: node and control plane up in {:?}", started.elapsed());
    let fail = |what: &str, err: String| -> ! { panic!("{what}: {err}\n{}", node.diagnostics()) };

    let (talker_nad, talker_conf) = node.nad(talker_version);
    let (listener_nad, listener_conf) = node.nad(listener_version);
    let mut pods = Vec::new();
    for (name, nad, conf, version) in [
        ("talker-0", &talker_nad, &talker_conf, talker_version),
        ("listener-0", &listener_nad, &listener_conf, listener_version),
    ] {
        let id = node.run_pod(name, nad).unwrap_or_else(|e| fail(name, e));
        let pod = node.assert_attached(name, nad, version, &id);
        // libcni refuses CHECK below 0.4.0.
        if version != "0.3.1" {
            node.check(&pod, conf);
        }
        pods.push(pod);
    }
    let (talker, listener) = (&pods[0], &pods[1]);
    assert_ne!(talker.lan_ip, listener.lan_ip);
    assert_ne!(talker.mac, listener.mac);
    eprintln!("{flavour:?}: two pods attached after {:?}", started.elapsed());

    // Unpinned multicast out of net1 while eth0 holds the default route: pod to pod, both ways, and to
    // a host on the LAN.
    let rx = Listener::start("listener-0", mcast_at(&listener.netns, "recv", 5));
    let rx_host = Receiver::start(&lan.host, GROUP, SPDP_PORT, 5, 3000);
    run_ok(mcast_at(&talker.netns, "send", 5), "mcast send in talker-0");
    assert_eq!(rx.finish(), 5, "talker-0 -> listener-0");
    assert_eq!(rx_host.finish().len(), 5, "talker-0 -> LAN host");
    let rx = Listener::start("talker-0", mcast_at(&talker.netns, "recv", 5));
    run_ok(mcast_at(&listener.netns, "send", 5), "mcast send in listener-0");
    assert_eq!(rx.finish(), 5, "listener-0 -> talker-0");

    if let Some((version, expected)) = refused {
        let (nad, _) = node.nad(version);
        let err = node
            .run_pod("refused-0", &nad)
            .expect_err("Multus cannot read this result version");
        eprintln!("{flavour:?}: a {version} NAD: {err}");
        assert!(err.contains(expected), "RunPodSandbox's error: {err}");
        let id = err
            .split("sandbox \"")
            .nth(1)
            .and_then(|rest| rest.split('"').next())
            .unwrap_or_default();
        // roslan's ADD succeeded: its result is what Multus' libcni cannot read. Then Multus' own
        // teardown of what it added and containerd's DEL of the failed sandbox, without prevResult
        // (libcni cached nothing).
        let calls: Vec<(String, bool)> = node
            .calls(id)
            .iter()
            .map(|c| (c.var("CNI_COMMAND").to_string(), c.stdin.get("prevResult").is_some()))
            .collect();
        let expected = [("ADD", false), ("DEL", false), ("DEL", false)].map(|(c, p)| (c.to_string(), p));
        assert_eq!(calls, expected, "{err}");
        let log = read(&node.roslan_log);
        assert_eq!(finished(&log, "ADD", id), 1, "{log}");
        assert_eq!(finished(&log, "DEL", id), 2, "{log}");
        // Multus tore down what it had added (eth0 and roslan's net1), containerd the sandbox.
        assert_eq!(
            lan.reservations(NETWORK),
            {
                let mut ips = vec![talker.lan_ip.clone(), listener.lan_ip.clone()];
                ips.sort();
                ips
            },
            "the refused pod's address was released"
        );
        assert_eq!(node.cluster_reservations().len(), 2);
        assert_eq!(links_besides_lo(&lan.node).len(), 3, "lan0 and two ptp veths");
        assert_eq!(node.containerd.cri(&["list"])["ids"].as_array().map(Vec::len), Some(2));
        node.delete_pod("refused-0");
    }

    // The talker: StopPodSandbox (Multus' DEL, with the NAD and the pod still there), then RemovePodSandbox.
    node.containerd.cri(&["stop", &talker.id]);
    // Multus leaves its annotation as it was while the pod object lives (3.9, 4 thin and thick alike).
    let status = multus::network_status(&node.cp, POD_NAMESPACE, "talker-0");
    assert!(
        status
            .iter()
            .any(|s| s["interface"] == "net1" && s["ips"] == json!([talker.lan_ip])),
        "{status:?}"
    );
    node.assert_calls(talker, &["ADD", "DEL"]);
    assert!(
        !lan.reservations(NETWORK).contains(&talker.lan_ip),
        "talker's address released"
    );
    assert!(
        !node.cluster_reservations().contains(&talker.ip),
        "the cluster network's address released\n{}",
        node.diagnostics()
    );
    assert!(
        node.cached(&talker.id, "net1").is_none(),
        "libcni's cache entry removed"
    );
    assert!(!node.multus_cache().join(&talker.id).exists(), "the delegates removed");
    node.containerd.cri(&["remove", &talker.id]);
    // RemovePodSandbox's DEL: no cache left, so Multus reads the pod and its NAD again.
    node.assert_calls(talker, &["ADD", "DEL", "DEL"]);

    // The same pod again (a new UID and sandbox): the same MAC.
    node.delete_pod("talker-0");
    let id = node
        .run_pod("talker-0", &talker_nad)
        .unwrap_or_else(|e| fail("talker-0 again", e));
    let again = node.assert_attached("talker-0", &talker_nad, talker_version, &id);
    assert_eq!(again.mac, talker.mac, "stableMac across a DEL and a new ADD");
    node.containerd.cri(&["stop", &again.id]);
    node.containerd.cri(&["remove", &again.id]);
    node.assert_calls(&again, &["ADD", "DEL", "DEL"]);

    // The listener from Multus' cache alone: its NAD and pod are gone from the API server.
    if listener_nad != talker_nad {
        node.cp
            .kubectl_ok(&["-n", POD_NAMESPACE, "delete", "net-attach-def", &listener_nad]);
    }
    node.delete_pod(&listener.name);
    node.containerd.cri(&["stop", &listener.id]);
    assert!(
        !lan.reservations(NETWORK).contains(&listener.lan_ip),
        "listener's address released by a DEL from the cache"
    );
    node.containerd.cri(&["remove", &listener.id]);
    // Its second DEL (RemovePodSandbox) finds neither a cache nor a pod: Multus calls nobody.
    node.assert_calls(listener, &["ADD", "DEL"]);

    // Nothing left: no reservation, no link in the node, no cache entry, no namespace, no sandbox.
    assert_eq!(lan.reservations(NETWORK), Vec::<String>::new());
    assert_eq!(node.cluster_reservations(), Vec::<String>::new());
    assert_eq!(
        links_besides_lo(&lan.node),
        vec![MASTER.to_string()],
        "nothing left in the node"
    );
    assert_eq!(node.cache_files(), Vec::<String>::new(), "the node's /var/lib/cni");
    let netns_dir = node.mounts.host_path("/run/netns");
    let left: Vec<_> = std::fs::read_dir(&netns_dir).into_iter().flatten().flatten().collect();
    assert!(left.is_empty(), "namespaces left: {left:?}");
    assert_eq!(node.containerd.cri(&["list"])["ids"], json!([]));

    // roslan's own account: one ADD per sandbox, every DEL it was sent succeeded, nothing else wrong.
    let log = read(&node.roslan_log);
    for (pod, dels) in [(talker, 2), (&again, 2), (listener, 1)] {
        assert_eq!(finished(&log, "ADD", &pod.id), 1, "{}:\n{log}", pod.name);
        assert_eq!(finished(&log, "DEL", &pod.id), dels, "{}:\n{log}", pod.name);
    }
    let complaints: Vec<&str> = log
        .lines()
        .filter(|l| l.contains(" roslan error ") || l.contains(" roslan warn "))
        .collect();
    assert!(complaints.is_empty(), "{complaints:?}");
    drop(node);
    eprintln!("{flavour:?}: done in {:?}", started.elapsed());
}

#[root_test("needs root, network namespaces and `make peers`: run `make test` as root")]
fn multus_3_9_thin_as_microk8s_runs_it() {
    // MicroK8s' addon: thin 3.9, --cni-version=0.3.1, Calico-like cluster network at 0.3.1. NADs at
    // 0.3.1 and 0.4.0 work; at 1.0.0 Multus 3.9's libcni cannot read roslan's result.
    real_multus(
        Flavour::V3Thin,
        "0.3.1",
        "0.4.0",
        Some((
            "1.0.0",
            "error adding container to network \"ros-lan\": unsupported CNI result version \"1.0.0\"",
        )),
    );
}

#[root_test("needs root, network namespaces and `make peers`: run `make test` as root")]
fn multus_4_thin_with_a_1_0_0_nad() {
    real_multus(Flavour::V4Thin, "0.4.0", "1.0.0", None);
}

#[root_test("needs root, network namespaces and `make peers`: run `make test` as root")]
fn multus_4_thick_daemon_and_shim_with_a_1_0_0_nad() {
    real_multus(Flavour::V4Thick, "0.3.1", "1.0.0", None);
}
