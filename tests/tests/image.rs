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
//! Nothing of the machine is used: containerd's root, state, sockets, runc root and CNI directories, and
//! podman's configuration, storage and caches (images/podman-private.sh), are under the test's
//! directory; the "host" is a scratch directory. The machine's /var/snap, /etc/cni and /opt/cni are
//! never touched. Needs root; the archive comes from `make image`, the manifest is read with `.venv`'s
//! PyYAML and the CRI's view with tests/runtimes/cri_client.py.

use std::fs;
use std::io::Write as _;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use roslan_tests::netns::unique;
use roslan_tests::runtime::{
    kill_tree_matching, need, remove_cgroup, repo, run_ok, stop_child, unmount_under, venv_python,
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

fn wait_until(timeout: Duration, mut done: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if done() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    done()
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

    let mut child = Command::new(bin.join("roslan"))
        .env_clear()
        .env("CNI_COMMAND", "VERSION")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("run the installed roslan");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(br#"{"cniVersion":"1.0.0"}"#)
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(version_reply(&out.stdout, "installed roslan")["cniVersion"], "1.0.0");
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
        let config = format!(
            r#"version = 2
root = "{d}/root"
state = "{d}/state"
[grpc]
  address = "{d}/containerd.sock"
[ttrpc]
  address = "{d}/containerd.sock.ttrpc"
[plugins."io.containerd.internal.v1.opt"]
  path = "{d}/opt"
[plugins."io.containerd.grpc.v1.cri"]
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

    /// `ctr run` in the foreground as the DaemonSet would start the container: read-only root, none of
    /// ctr's default capabilities, the default seccomp profile (ctr sets no_new_privs by default),
    /// stdout and stderr to `log`. Returns the `ctr` process, whose exit status is the container's.
    fn run(
        &self,
        id: &str,
        image: &str,
        mounts: &[(PathBuf, String)],
        env: &[(String, String)],
        args: &[String],
        log: &Path,
    ) -> Child {
        let spec: Value = serde_json::from_str(&self.ctr_ok(&["oci", "spec"])).expect("ctr's default spec");
        let mut c = self.ctr(&["run", "--rm", "--read-only", "--seccomp"]);
        c.arg("--runc-root").arg(self.dir.join("runc"));
        c.arg("--cgroup").arg(format!("/{}/{id}", self.cgroup));
        c.arg("--log-uri").arg(format!("file://{}", log.display()));
        for cap in spec["process"]["capabilities"]["bounding"]
            .as_array()
            .expect("capabilities")
        {
            c.arg("--cap-drop").arg(cap.as_str().expect("capability"));
        }
        for (src, dst) in mounts {
            c.arg("--mount")
                .arg(format!("type=bind,src={},dst={dst},options=rbind:rw", src.display()));
        }
        for (k, v) in env {
            c.arg("--env").arg(format!("{k}={v}"));
        }
        c.arg(image).arg(id).args(args);
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

#[test]
#[cfg_attr(
    not(feature = "root-tests"),
    ignore = "needs root (a private containerd and runc): run `make test` as root"
)]
fn containerd_imports_the_archive_by_its_daemonset_name_and_runs_the_installer() {
    let archive = archive();
    let ds = DaemonSet::read();
    let scratch = Scratch::new("containerd");
    let host = microk8s_host(&scratch.0, &ds);
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
    let mut installer = containerd.run(
        "roslan-install",
        &ds.image,
        &mounts_under(&host, &ds),
        &ds.env,
        &ds.command,
        &log,
    );
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
    let mut version = containerd.run(
        "roslan-version",
        &ds.image,
        &[],
        &[("CNI_COMMAND".into(), "VERSION".into())],
        &["/opt/roslan/bin/roslan".into()],
        &version_log,
    );
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

/// podman through images/podman-private.sh with everything under `dir`; containers in the cgroup
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
        let mut c = Command::new(repo().join("images/podman-private.sh"));
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

#[test]
#[cfg_attr(
    not(feature = "root-tests"),
    ignore = "needs root (podman with runc and a private store): run `make test` as root"
)]
fn podman_loads_the_archive_by_its_daemonset_name_and_runs_the_installer() {
    let archive = archive();
    let ds = DaemonSet::read();
    let scratch = Scratch::new("podman");
    let host = microk8s_host(&scratch.0, &ds);
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
    let mut version = podman
        .command(&[
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
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("podman run roslan");
    version
        .stdin
        .take()
        .unwrap()
        .write_all(br#"{"cniVersion":"0.3.1"}"#)
        .unwrap();
    let out = version.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(
        version_reply(&out.stdout, "roslan in the image (podman)")["cniVersion"],
        "0.3.1"
    );
}
