//! roslan's image as a node without a registry gets it: the archive of `make image` imported with
//! `ctr -n k8s.io images import` into a private containerd (what `microk8s images import` runs) and with
//! `podman load` into a private podman store; the name must survive each import exactly as
//! manifests/daemonset.yaml spells it. From each runtime the installer then runs as the DaemonSet runs it,
//! read from the manifest itself: its command, its environment, its three hostPath volumes mounted under
//! /host, uid 0, a read-only root, no capability, no new privileges, the default seccomp profile; onto
//! a MicroK8s-shaped scratch host root. It must install the image's `roslan` and `roslan-ipam` into
//! MicroK8s' bin dir (and nowhere else), write the node-name file, keep running until SIGTERM and then
//! exit 0 leaving the binaries. `roslan` from the image, and the copy installed on the host, answer
//! CNI VERSION.
//!
//! The ROS 2 workload image (`make ros-image`) is imported the same way and must keep its name; its
//! containers, one per process with its own mount namespace and `/dev/shm`, in two pods that roslan put
//! on a throwaway LAN, must carry the examples' talker to their listener (Fast DDS) and the Cyclone
//! chatter's messages.
//!
//! Nothing of the machine is used: containerd's root, state, sockets, runc root and CNI directories, and
//! podman's configuration, storage and caches (install/image/podman-private.sh), are under the test's
//! directory; the "host" is a scratch directory. The machine's /var/snap, /etc/cni and /opt/cni are
//! never touched. Needs root; the archives come from `make image` and `make ros-image`, the manifest is read with `.venv`'s
//! PyYAML and the CRI's view with tests/runtimes/cri_client.py.

use std::fs;
use std::io::Write as _;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use roslan_tests::Lan;
use roslan_tests::netns::unique;
use roslan_tests::root_test;
use roslan_tests::runtime::{
    kill_tree_matching, need, private_containerd_config, remove_cgroup, repo, run_ok, stop_child, unmount_under,
    venv_python, wait_until,
};
use serde_json::Value;

/// The node the DaemonSet's pod runs on (`spec.nodeName`, which the manifest passes as ROSLAN_NODE_NAME).
const NODE: &str = "robot-1";
/// MicroK8s' bin dir through the snap revision `current` points at, as a path under the host root.
const MICROK8S_REVISION_BIN: &str = "var/snap/microk8s/7394/opt/cni/bin";
/// Another plugin already in MicroK8s' bin dir, which the installer must leave alone.
const FOREIGN_PLUGIN: &[u8] = b"#!/bin/sh\n# stands in for Multus 3.9\n";

/// The workspace version, from the root Cargo.toml's [workspace.package].
fn version() -> String {
    let cargo = fs::read_to_string(repo().join("Cargo.toml")).expect("read Cargo.toml");
    let package = cargo.split("[workspace.package]").nth(1).expect("[workspace.package]");
    package
        .lines()
        .find_map(|l| l.strip_prefix("version = \""))
        .and_then(|v| v.strip_suffix('"'))
        .expect("workspace version")
        .to_string()
}

/// `make image`'s archive.
fn archive() -> PathBuf {
    let path = repo().join(format!("target/image/roslan-{}.oci.tar", version()));
    assert!(
        path.exists(),
        "{} is missing: run `make image` (it builds the release binaries and the image)",
        path.display()
    );
    path
}

/// The DaemonSet's installer container and the host paths of its volumes, as the manifest says.
struct DaemonSet {
    image: String,
    command: Vec<String>,
    /// (name, value); `spec.nodeName` already resolved to [`NODE`].
    env: Vec<(String, String)>,
    /// (host path, container path).
    mounts: Vec<(String, String)>,
}

impl DaemonSet {
    fn read() -> DaemonSet {
        let manifest = repo().join("manifests/daemonset.yaml");
        let out = run_ok(
            {
                let mut c = Command::new(venv_python());
                c.args([
                    "-c",
                    "import json, sys, yaml; print(json.dumps(yaml.safe_load(open(sys.argv[1]))))",
                ])
                .arg(&manifest);
                c
            },
            "read manifests/daemonset.yaml",
        );
        let ds: Value = serde_json::from_slice(&out.stdout).expect("manifest JSON");
        let pod = &ds["spec"]["template"]["spec"];
        let containers = pod["containers"].as_array().expect("containers");
        assert_eq!(containers.len(), 1, "one installer container: {containers:?}");
        let c = &containers[0];
        let strings = |v: &Value| -> Vec<String> {
            v.as_array()
                .into_iter()
                .flatten()
                .map(|s| s.as_str().expect("a string").to_string())
                .collect()
        };
        let env = c["env"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|e| {
                let name = e["name"].as_str().expect("env name").to_string();
                let value = match (&e["value"], &e["valueFrom"]["fieldRef"]["fieldPath"]) {
                    (Value::String(v), _) => v.clone(),
                    (_, Value::String(field)) if field == "spec.nodeName" => NODE.to_string(),
                    (_, Value::String(field)) if field == "metadata.namespace" => "roslan".to_string(),
                    other => panic!("an env source this test does not know: {name} {other:?}"),
                };
                (name, value)
            })
            .collect();
        let volumes = pod["volumes"].as_array().expect("volumes");
        let mounts = c["volumeMounts"]
            .as_array()
            .expect("volumeMounts")
            .iter()
            .map(|m| {
                let volume = volumes
                    .iter()
                    .find(|v| v["name"] == m["name"])
                    .unwrap_or_else(|| panic!("volume of {m}"));
                let host = volume["hostPath"]["path"].as_str().expect("a hostPath volume");
                (
                    host.to_string(),
                    m["mountPath"].as_str().expect("mountPath").to_string(),
                )
            })
            .collect();
        // What the runs below reproduce: uid 0, read-only root, no capability, no escalation, RuntimeDefault.
        let sc = &c["securityContext"];
        assert_eq!(pod["securityContext"]["runAsUser"], 0, "{pod}");
        assert_eq!(pod["securityContext"]["seccompProfile"]["type"], "RuntimeDefault");
        assert_eq!(sc["readOnlyRootFilesystem"], true, "{sc}");
        assert_eq!(sc["allowPrivilegeEscalation"], false, "{sc}");
        assert_eq!(sc["capabilities"]["drop"], serde_json::json!(["ALL"]), "{sc}");
        assert!(sc["capabilities"]["add"].is_null(), "{sc}");
        DaemonSet {
            image: c["image"].as_str().expect("image").to_string(),
            command: strings(&c["command"]),
            env,
            mounts,
        }
    }
}

/// A host root shaped like a MicroK8s node, as the DaemonSet's volumes see it: the snap's data directory
/// with `current` linking to a revision whose bin dir already holds another plugin, and the two
/// directories the kubelet creates for `DirectoryOrCreate` volumes.
fn microk8s_host(dir: &Path, ds: &DaemonSet) -> PathBuf {
    let host = dir.join("host");
    let bin = host.join(MICROK8S_REVISION_BIN);
    fs::create_dir_all(&bin).unwrap();
    symlink("7394", host.join("var/snap/microk8s/current")).unwrap();
    fs::write(bin.join("multus"), FOREIGN_PLUGIN).unwrap();
    fs::set_permissions(bin.join("multus"), fs::Permissions::from_mode(0o755)).unwrap();
    for (host_path, _) in &ds.mounts {
        fs::create_dir_all(host.join(host_path.trim_start_matches('/'))).unwrap();
    }
    host
}

/// A file of the image, read from the archive itself (index, manifest, its one layer).
fn image_file(archive: &Path, path: &str) -> Vec<u8> {
    let member = |name: &str| -> Vec<u8> {
        let mut c = Command::new("tar");
        c.arg("-xOf").arg(archive).arg(name);
        run_ok(c, &format!("read {name} from the archive")).stdout
    };
    let blob = |digest: &str| format!("blobs/sha256/{}", digest.trim_start_matches("sha256:"));
    let index: Value = serde_json::from_slice(&member("index.json")).expect("index.json");
    let manifest: Value = serde_json::from_slice(&member(&blob(
        index["manifests"][0]["digest"].as_str().expect("manifest"),
    )))
    .expect("manifest");
    let layers = manifest["layers"].as_array().expect("layers");
    assert_eq!(layers.len(), 1, "FROM scratch plus one COPY: one layer");
    let mut c = Command::new("sh");
    c.args(["-c", "tar -xOf \"$0\" \"$1\" | tar -xzOf - \"$2\""])
        .arg(archive)
        .arg(blob(layers[0]["digest"].as_str().expect("layer")))
        .arg(path);
    run_ok(c, &format!("read {path} from the image's layer")).stdout
}

/// Runs a prepared command (a plugin, or a runtime running one, with CNI_COMMAND=VERSION) with `config`
/// on stdin; returns its reply, checked by [`version_reply`].
fn ask_version(mut command: Command, config: &[u8], what: &str) -> Value {
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{what}: {e}"));
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(config)
        .expect("write the config");
    let out = child.wait_with_output().expect("wait");
    assert!(out.status.success(), "{what}: {}", String::from_utf8_lossy(&out.stderr));
    version_reply(&out.stdout, what)
}

/// Parses a plugin's reply to CNI VERSION and checks it claims every version roslan supports.
fn version_reply(stdout: &[u8], what: &str) -> Value {
    let reply: Value = serde_json::from_slice(stdout)
        .unwrap_or_else(|e| panic!("{what}: VERSION prints JSON ({e}): {}", String::from_utf8_lossy(stdout)));
    let versions: Vec<&str> = reply["supportedVersions"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    assert_eq!(
        versions,
        ["0.1.0", "0.2.0", "0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"],
        "{what}: {reply}"
    );
    reply
}

/// Checks the host root after the installer ran and stopped: the image's binaries in MicroK8s' bin dir,
/// the other plugin untouched, nothing in /opt/cni/bin, the node-name file and the installer's record;
/// and the installed `roslan` answers VERSION on the host.
fn assert_installed(host: &Path, archive: &Path, log: &str) {
    let bin = host.join(MICROK8S_REVISION_BIN);
    for name in ["roslan", "roslan-ipam"] {
        let installed = fs::read(bin.join(name)).unwrap_or_else(|e| panic!("{name} installed ({e}):\n{log}"));
        assert!(
            installed == image_file(archive, &format!("opt/roslan/bin/{name}")),
            "{name} is the image's:\n{log}"
        );
        let mode = fs::metadata(bin.join(name)).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o755, "{name}");
    }
    assert_eq!(
        fs::read(bin.join("multus")).unwrap(),
        FOREIGN_PLUGIN,
        "the other plugin"
    );
    let mut in_bin: Vec<String> = fs::read_dir(&bin)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    in_bin.sort();
    assert_eq!(
        in_bin,
        ["multus", "roslan", "roslan-ipam"],
        "no temporary file left:\n{log}"
    );
    assert_eq!(
        fs::read_dir(host.join("opt/cni/bin")).unwrap().count(),
        0,
        "a MicroK8s node: nothing in /opt/cni/bin:\n{log}"
    );
    assert_eq!(
        fs::read_to_string(host.join("var/lib/roslan/node-name")).unwrap_or_default(),
        format!("{NODE}\n")
    );
    assert!(
        host.join("var/lib/roslan/installed.json").exists(),
        "the record for --uninstall"
    );
    assert!(
        log.contains("CNI bin dir: /var/snap/microk8s/current/opt/cni/bin"),
        "the installer chose MicroK8s' bin dir:\n{log}"
    );

    let mut installed = Command::new(bin.join("roslan"));
    installed.env_clear().env("CNI_COMMAND", "VERSION");
    let reply = ask_version(installed, br#"{"cniVersion":"1.0.0"}"#, "installed roslan");
    assert_eq!(reply["cniVersion"], "1.0.0");
}

// ---------------------------------------------------------------------------------------------
// containerd
// ---------------------------------------------------------------------------------------------

/// A private containerd: config, root, state, sockets, `opt` and the CRI's CNI directories under `dir`
/// (the CRI creates its conf dir, which would otherwise be /etc/cni/net.d). Containers get runc's state
/// under `dir` (`--runc-root`) and a cgroup under `/roslan-test-<n>`. Dropping it kills every task,
/// stops containerd and its shims, unmounts what is left under `dir`, removes the cgroup and `dir`.
struct Containerd {
    dir: PathBuf,
    socket: PathBuf,
    cgroup: String,
    child: Option<Child>,
}

impl Containerd {
    fn start(dir: PathBuf) -> Containerd {
        need("containerd", "containerd");
        need("ctr", "containerd");
        need("containerd-shim-runc-v2", "containerd");
        need("runc", "runc");
        let mut cd = Containerd {
            socket: dir.join("containerd.sock"),
            cgroup: format!("roslan-test-{}", unique()),
            dir,
            child: None,
        };
        let d = cd.dir.display().to_string();
        for sub in ["net.d", "cni-bin"] {
            fs::create_dir_all(cd.dir.join(sub)).expect("create containerd dirs");
        }
        let config = private_containerd_config(&cd.dir)
            + &format!(
                r#"[plugins."io.containerd.grpc.v1.cri"]
  stream_server_address = "127.0.0.1"
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "{d}/cni-bin"
    conf_dir = "{d}/net.d"
"#
            );
        fs::write(cd.dir.join("config.toml"), config).expect("write config");
        let log = fs::File::create(cd.dir.join("containerd.log")).expect("create log");
        cd.child = Some(
            Command::new("containerd")
                .arg("--config")
                .arg(cd.dir.join("config.toml"))
                .stdin(Stdio::null())
                .stdout(log.try_clone().expect("log"))
                .stderr(log)
                .spawn()
                .expect("start containerd"),
        );
        let socket = cd.socket.clone();
        assert!(
            wait_until(Duration::from_secs(20), || socket.exists()
                && cd.ctr(&["version"]).output().is_ok_and(|o| o.status.success())),
            "containerd did not come up:\n{}",
            fs::read_to_string(cd.dir.join("containerd.log")).unwrap_or_default()
        );
        cd
    }

    /// `ctr` against this containerd, in Kubernetes' namespace (where kubelet's CRI looks).
    fn ctr(&self, args: &[&str]) -> Command {
        let mut c = Command::new("ctr");
        c.arg("--address")
            .arg(&self.socket)
            .args(["--namespace", "k8s.io"])
            .args(args);
        c
    }

    fn ctr_ok(&self, args: &[&str]) -> String {
        String::from_utf8_lossy(&run_ok(self.ctr(args), &format!("ctr {}", args.join(" "))).stdout).into_owned()
    }

    /// `ctr run` in the foreground: none of ctr's default capabilities (as `drop: ["ALL"]`), the default
    /// seccomp profile (ctr sets no_new_privs by default), stdout and stderr to `log`. Returns the `ctr`
    /// process, whose exit status is the container's.
    fn run(&self, spec: &ContainerSpec, log: &Path) -> Child {
        let default: Value = serde_json::from_str(&self.ctr_ok(&["oci", "spec"])).expect("ctr's default spec");
        let mut c = self.ctr(&["run", "--rm", "--seccomp"]);
        if spec.read_only {
            c.arg("--read-only");
        }
        c.arg("--runc-root").arg(self.dir.join("runc"));
        c.arg("--cgroup").arg(format!("/{}/{}", self.cgroup, spec.id));
        c.arg("--log-uri").arg(format!("file://{}", log.display()));
        for cap in default["process"]["capabilities"]["bounding"]
            .as_array()
            .expect("capabilities")
        {
            c.arg("--cap-drop").arg(cap.as_str().expect("capability"));
        }
        if let Some(netns) = &spec.netns {
            c.arg("--with-ns").arg(format!("network:{netns}"));
        }
        for (src, dst) in &spec.mounts {
            c.arg("--mount")
                .arg(format!("type=bind,src={},dst={dst},options=rbind:rw", src.display()));
        }
        for (k, v) in &spec.env {
            c.arg("--env").arg(format!("{k}={v}"));
        }
        c.arg(&spec.image).arg(&spec.id).args(&spec.args);
        c.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
        c.spawn().expect("ctr run")
    }
}

impl Drop for Containerd {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            if let Ok(out) = self.ctr(&["tasks", "ls", "-q"]).output() {
                for id in String::from_utf8_lossy(&out.stdout).split_whitespace() {
                    let _ = self.ctr(&["tasks", "kill", "--signal", "SIGKILL", id]).output();
                    std::thread::sleep(Duration::from_millis(200));
                    let _ = self.ctr(&["tasks", "delete", "--force", id]).output();
                }
            }
            if let Ok(out) = self.ctr(&["containers", "ls", "-q"]).output() {
                for id in String::from_utf8_lossy(&out.stdout).split_whitespace() {
                    let _ = self.ctr(&["containers", "delete", id]).output();
                }
            }
            stop_child(&mut child, Duration::from_secs(5));
        }
        let socket = self.socket.to_string_lossy().into_owned();
        kill_tree_matching(&["containerd-shim", &socket]);
        unmount_under(&self.dir);
        remove_cgroup(&self.cgroup);
        let _ = fs::remove_dir_all(&self.dir);
    }
}

/// What a container is started with.
struct ContainerSpec {
    id: String,
    image: String,
    /// The process; empty for the image's entrypoint and command.
    args: Vec<String>,
    env: Vec<(String, String)>,
    /// Bind mounts (source, destination).
    mounts: Vec<(PathBuf, String)>,
    read_only: bool,
    /// A network namespace to join instead of a new one.
    netns: Option<String>,
}

impl ContainerSpec {
    fn new(id: &str, image: &str, args: &[&str]) -> ContainerSpec {
        ContainerSpec {
            id: id.into(),
            image: image.into(),
            args: args.iter().map(|a| a.to_string()).collect(),
            env: Vec::new(),
            mounts: Vec::new(),
            read_only: false,
            netns: None,
        }
    }

    fn env(mut self, key: &str, value: &str) -> ContainerSpec {
        self.env.push((key.into(), value.into()));
        self
    }
}

/// A test directory under the system's temporary directory, removed on drop (after the runtimes).
struct Scratch(PathBuf);

impl Scratch {
    fn new(tag: &str) -> Scratch {
        let dir = std::env::temp_dir().join(format!("roslan-image-test-{tag}-{}", unique()));
        fs::create_dir_all(&dir).expect("create the test directory");
        Scratch(dir)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        unmount_under(&self.0);
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// What each test starts from: the archive, the manifest's container, a scratch directory and the
/// MicroK8s-shaped host root in it.
struct Setup {
    archive: PathBuf,
    ds: DaemonSet,
    scratch: Scratch,
    host: PathBuf,
}

impl Setup {
    fn new(tag: &str) -> Setup {
        let archive = archive();
        let ds = DaemonSet::read();
        let scratch = Scratch::new(tag);
        let host = microk8s_host(&scratch.0, &ds);
        Setup {
            archive,
            ds,
            scratch,
            host,
        }
    }
}

/// The DaemonSet's mounts with every host path under the scratch host root.
fn mounts_under(host: &Path, ds: &DaemonSet) -> Vec<(PathBuf, String)> {
    ds.mounts
        .iter()
        .map(|(h, c)| (host.join(h.trim_start_matches('/')), c.clone()))
        .collect()
}

/// Waits until the installer has installed both binaries and written the node-name file.
fn wait_for_install(host: &Path, log: &Path, what: &str) {
    let bin = host.join(MICROK8S_REVISION_BIN);
    let done = wait_until(Duration::from_secs(30), || {
        ["roslan", "roslan-ipam"].iter().all(|n| bin.join(n).exists())
            && host.join("var/lib/roslan/node-name").exists()
            && fs::read_to_string(log).is_ok_and(|l| l.contains("wrote node name"))
    });
    assert!(
        done,
        "{what}: the installer did not install within 30 s:\n{}",
        fs::read_to_string(log).unwrap_or_default()
    );
}

/// Waits for a foreground `ctr run` / `podman run` to end after SIGTERM; returns whether it exited 0.
fn exits_cleanly(child: &mut Child, within: Duration) -> bool {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if let Ok(Some(status)) = child.try_wait() {
            return status.success();
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    stop_child(child, Duration::from_secs(1));
    false
}

#[root_test("needs root (a private containerd and runc): run `make test` as root")]
fn containerd_imports_the_archive_by_its_daemonset_name_and_runs_the_installer() {
    let Setup {
        archive,
        ds,
        scratch,
        host,
    } = Setup::new("containerd");
    let containerd = Containerd::start(scratch.0.join("containerd"));

    // The import as `microk8s images import` does it (`ctr image import -`, stdin, no options).
    let mut import = containerd.ctr(&["images", "import", "-"]);
    import.stdin(fs::File::open(&archive).expect("open the archive"));
    run_ok(import, "ctr images import -");
    let listed = containerd.ctr_ok(&["images", "ls", "-q"]);
    let names: Vec<&str> = listed.lines().filter(|n| !n.starts_with("sha256:")).collect();
    assert_eq!(names, [ds.image.as_str()], "the image's one name is the DaemonSet's");
    // What kubelet asks before it would pull (imagePullPolicy IfNotPresent): the CRI's ImageStatus.
    let mut status = Command::new(venv_python());
    status
        .arg(repo().join("tests/runtimes/cri_client.py"))
        .arg(&containerd.socket)
        .args(["image", &ds.image, "20"]);
    run_ok(status, "CRI ImageStatus of the DaemonSet's image");

    // The DaemonSet's container: its command, environment and mounts; it keeps running until SIGTERM.
    let log = scratch.0.join("install.log");
    let spec = ContainerSpec {
        args: ds.command.clone(),
        env: ds.env.clone(),
        mounts: mounts_under(&host, &ds),
        read_only: true,
        ..ContainerSpec::new("roslan-install", &ds.image, &[])
    };
    let mut installer = containerd.run(&spec, &log);
    wait_for_install(&host, &log, "containerd");
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        installer.try_wait().expect("ctr run").is_none(),
        "the installer keeps running after installing:\n{}",
        fs::read_to_string(&log).unwrap_or_default()
    );
    containerd.ctr_ok(&["tasks", "kill", "--signal", "SIGTERM", "roslan-install"]);
    let clean = exits_cleanly(&mut installer, Duration::from_secs(10));
    let log_text = fs::read_to_string(&log).unwrap_or_default();
    assert!(
        clean,
        "SIGTERM ends the installer with exit 0 within the grace period:\n{log_text}"
    );
    assert_installed(&host, &archive, &log_text);

    // `roslan` from the image answers VERSION (ctr passes no stdin with a log file: an empty config).
    let version_log = scratch.0.join("version.log");
    let spec = ContainerSpec {
        read_only: true,
        ..ContainerSpec::new("roslan-version", &ds.image, &["/opt/roslan/bin/roslan"]).env("CNI_COMMAND", "VERSION")
    };
    let mut version = containerd.run(&spec, &version_log);
    assert!(
        exits_cleanly(&mut version, Duration::from_secs(20)),
        "roslan VERSION in the image"
    );
    version_reply(
        &fs::read(&version_log).unwrap_or_default(),
        "roslan in the image (containerd)",
    );
}

// ---------------------------------------------------------------------------------------------
// podman
// ---------------------------------------------------------------------------------------------

/// podman through install/image/podman-private.sh with everything under `dir`; containers in the cgroup
/// `/roslan-test-<n>`. Dropping it removes every container, resets the store, kills any conmon of ours,
/// unmounts, and removes the cgroup and `dir`.
struct Podman {
    dir: PathBuf,
    cgroup: String,
}

impl Podman {
    fn new(dir: PathBuf) -> Podman {
        need("podman", "podman");
        need("conmon", "conmon");
        need("runc", "runc");
        Podman {
            dir,
            cgroup: format!("roslan-test-{}", unique()),
        }
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(repo().join("install/image/podman-private.sh"));
        c.arg(&self.dir).args(args);
        c
    }

    fn podman(&self, args: &[&str]) -> String {
        String::from_utf8_lossy(&run_ok(self.command(args), &format!("podman {}", args.join(" "))).stdout).into_owned()
    }
}

impl Drop for Podman {
    fn drop(&mut self) {
        let _ = self.command(&["rm", "--all", "--force", "--time", "0"]).output();
        let _ = self.command(&["system", "reset", "--force"]).output();
        kill_tree_matching(&["conmon", &self.dir.display().to_string()]);
        unmount_under(&self.dir);
        remove_cgroup(&self.cgroup);
        let _ = fs::remove_dir_all(&self.dir);
    }
}

#[root_test("needs root (podman with runc and a private store): run `make test` as root")]
fn podman_loads_the_archive_by_its_daemonset_name_and_runs_the_installer() {
    let Setup {
        archive,
        ds,
        scratch,
        host,
    } = Setup::new("podman");
    let podman = Podman::new(scratch.0.join("podman"));

    podman.podman(&["load", "--quiet", "--input", &archive.to_string_lossy()]);
    let names = podman.podman(&["images", "--format", "{{.Repository}}:{{.Tag}}"]);
    assert_eq!(
        names.lines().collect::<Vec<_>>(),
        [ds.image.as_str()],
        "the name survives podman load"
    );
    let inspect: Value =
        serde_json::from_str(&podman.podman(&["image", "inspect", &ds.image])).expect("image inspect JSON");
    let config = &inspect[0]["Config"];
    assert_eq!(
        config["Entrypoint"],
        serde_json::json!(ds.command),
        "the manifest's command is the image's entrypoint"
    );
    assert_eq!(
        config["User"].as_str().unwrap_or_default(),
        "",
        "root, as runAsUser: 0 expects"
    );

    // The image's own entrypoint this time (the DaemonSet's command is the same, checked above).
    let log = scratch.0.join("install.log");
    let cgroup = format!("/{}", podman.cgroup);
    let mut args: Vec<String> = [
        "run",
        "--rm",
        "--name",
        "roslan-install",
        "--network",
        "none",
        "--read-only",
        "--cap-drop",
        "all",
        "--security-opt",
        "no-new-privileges",
        "--user",
        "0:0",
        "--cgroup-parent",
        &cgroup,
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    for (src, dst) in mounts_under(&host, &ds) {
        args.extend(["--volume".to_string(), format!("{}:{dst}:rw", src.display())]);
    }
    for (k, v) in &ds.env {
        args.extend(["--env".to_string(), format!("{k}={v}")]);
    }
    args.push(ds.image.clone());
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut installer = podman
        .command(&refs)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(fs::File::create(&log).expect("create the log"))
        .spawn()
        .expect("podman run");
    wait_for_install(&host, &log, "podman");
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        installer.try_wait().expect("podman run").is_none(),
        "the installer keeps running"
    );
    podman.podman(&["kill", "--signal", "TERM", "roslan-install"]);
    let clean = exits_cleanly(&mut installer, Duration::from_secs(10));
    let log_text = fs::read_to_string(&log).unwrap_or_default();
    assert!(
        clean,
        "SIGTERM ends the installer with exit 0 within the grace period:\n{log_text}"
    );
    assert_installed(&host, &archive, &log_text);

    // `roslan` from the image answers VERSION, with the configuration on stdin as a runtime sends it.
    let version = podman.command(&[
        "run",
        "--rm",
        "-i",
        "--network",
        "none",
        "--read-only",
        "--cap-drop",
        "all",
        "--cgroup-parent",
        &cgroup,
        "--env",
        "CNI_COMMAND=VERSION",
        "--entrypoint",
        "/opt/roslan/bin/roslan",
        &ds.image,
    ]);
    let reply = ask_version(version, br#"{"cniVersion":"0.3.1"}"#, "roslan in the image (podman)");
    assert_eq!(reply["cniVersion"], "0.3.1");
}

// ---------------------------------------------------------------------------------------------
// The ROS 2 workload image
// ---------------------------------------------------------------------------------------------

/// The name `make ros-image` gives the ROS 2 workload image.
const ROS2_IMAGE: &str = "localhost/roslan/ros2:kilted";

/// `make ros-image`'s archive: the newest in `ROSLAN_IMAGES_DIR` (default /var/cache/roslan/images).
fn ros2_archive() -> PathBuf {
    let dir = std::env::var_os("ROSLAN_IMAGES_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/var/cache/roslan/images"));
    let path = dir.join("ros2.oci.tar");
    assert!(
        path.exists(),
        "{} is missing: run `make ros-image` (as root; about 2 minutes cold, cached afterwards)",
        path.display()
    );
    path
}

fn log_of(path: &Path) -> String {
    fs::read_to_string(path).unwrap_or_default()
}

#[root_test("needs root (a private containerd, namespaces): run `make test` as root")]
fn the_ros2_image_runs_the_examples_talker_and_listener_in_two_pods_on_a_roslan_lan() {
    let archive = ros2_archive();
    let started = Instant::now();
    let scratch = Scratch::new("ros2");
    let containerd = Containerd::start(scratch.0.join("containerd"));
    let mut import = containerd.ctr(&["images", "import", "-"]);
    import.stdin(fs::File::open(&archive).expect("open the archive"));
    run_ok(import, "ctr images import - (the ROS 2 image)");
    let listed = containerd.ctr_ok(&["images", "ls", "-q"]);
    let names: Vec<&str> = listed.lines().filter(|n| !n.starts_with("sha256:")).collect();
    assert_eq!(names, [ROS2_IMAGE], "the ROS 2 image's name survives the import");
    eprintln!("ros2 image imported after {:?}", started.elapsed());

    // Two pods on a throwaway LAN through roslan; each container has its own mount namespace and
    // /dev/shm (ctr's default), so only the network can carry the messages.
    let lan = Lan::new();
    let conf = lan.config("1.0.0");
    let (a, b) = (lan.pod(), lan.pod());
    lan.add(&a, "eth0", &conf);
    lan.add(&b, "eth0", &conf);
    let in_pod = |pod: &roslan_tests::Pod, id: &str, args: &[&str]| ContainerSpec {
        netns: Some(pod.path()),
        ..ContainerSpec::new(id, ROS2_IMAGE, args).env("ROS_DOMAIN_ID", "3")
    };

    // Fast DDS: the examples' own scripts as the examples run them (args only, `python3` from PATH).
    let (talker_log, listener_log) = (scratch.0.join("talker.log"), scratch.0.join("listener.log"));
    let publisher = ["python3", "/opt/roslan/scripts/publisher.py", "t1"];
    let subscriber = ["python3", "/opt/roslan/scripts/subscriber.py", "l1"];
    let fast_dds = Instant::now();
    let mut talker = containerd.run(&in_pod(&a, "talker", &publisher), &talker_log);
    let mut listener = containerd.run(&in_pod(&b, "listener", &subscriber), &listener_log);
    let heard = wait_until(Duration::from_secs(60), || log_of(&listener_log).contains(": \"t1:"));
    eprintln!(
        "Fast DDS: first message heard {:?} after the containers started",
        fast_dds.elapsed()
    );
    for id in ["talker", "listener"] {
        let _ = containerd.ctr(&["tasks", "kill", "--signal", "SIGTERM", id]).output();
    }
    let stopping = Instant::now();
    let stopped = [
        exits_cleanly(&mut talker, Duration::from_secs(10)),
        exits_cleanly(&mut listener, Duration::from_secs(10)),
    ];
    eprintln!("Fast DDS: both stopped {:?} after SIGTERM", stopping.elapsed());
    let logs = format!(
        "--- talker ---\n{}\n--- listener ---\n{}",
        log_of(&talker_log),
        log_of(&listener_log)
    );
    assert!(
        heard,
        "the listener in pod b hears the talker in pod a within 60 s:\n{logs}"
    );
    assert_eq!(stopped, [true, true], "both end on SIGTERM with exit 0:\n{logs}");

    // Cyclone DDS: the chatter in the same image, listener first; both exit 0 once 3 messages are through.
    let (talker_log, listener_log) = (
        scratch.0.join("cyclone-talker.log"),
        scratch.0.join("cyclone-listener.log"),
    );
    let chatter = |role: &str| {
        [
            "python3",
            "/opt/roslan/scripts/chatter.py",
            role,
            "--count",
            "3",
            "--timeout",
            "30",
        ]
        .map(String::from)
    };
    let listener_args = chatter("listener");
    let talker_args = chatter("talker");
    let spec = |pod, id, args: &[String]| {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        in_pod(pod, id, &args)
    };
    let cyclone = Instant::now();
    let mut listener = containerd.run(&spec(&b, "cyclone-listener", &listener_args), &listener_log);
    assert!(
        wait_until(Duration::from_secs(30), || log_of(&listener_log)
            .contains("listener: ready")),
        "the Cyclone listener starts:\n{}",
        log_of(&listener_log)
    );
    let mut talker = containerd.run(&spec(&a, "cyclone-talker", &talker_args), &talker_log);
    let done = [
        exits_cleanly(&mut talker, Duration::from_secs(40)),
        exits_cleanly(&mut listener, Duration::from_secs(40)),
    ];
    eprintln!(
        "Cyclone: 3 messages through {:?} after the containers started",
        cyclone.elapsed()
    );
    assert_eq!(
        done,
        [true, true],
        "Cyclone talker and listener exit 0 after 3 messages:\n--- talker ---\n{}\n--- listener ---\n{}",
        log_of(&talker_log),
        log_of(&listener_log)
    );

    lan.del(&a, "eth0", &conf);
    lan.del(&b, "eth0", &conf);
    let network = conf["name"].as_str().expect("network name");
    assert!(lan.reservations(network).is_empty(), "both pods' addresses released");
}
