//! `roslan-install`, the DaemonSet entrypoint, run as a process against scratch host roots laid out
//! like real nodes: install, the no-op second run, self-repair while running, SIGTERM, uninstall
//! that touches nothing else, the node-name file, sysctl floors (against a scratch /proc/sys), and
//! the host shim in a namespace LAN. Nothing here touches the machine's own /opt/cni/bin,
//! /var/lib/roslan, /proc/sys or interfaces: every path is under a per-test scratch directory and the
//! shim lives in the harness's namespaces.

use std::fs;
use std::net::{SocketAddr, UdpSocket};
use std::os::unix::fs::{MetadataExt, PermissionsExt, symlink};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nix::sched::{CloneFlags, setns};
use roslan_tests::netns::{Netns, unique};
use roslan_tests::plugin::{result_ip, roslan_bin, workspace_bin};
use roslan_tests::root_test;
use roslan_tests::runtime::wait_until;
use roslan_tests::traffic::exchange;
use roslan_tests::{Lan, lan::MASTER};

/// MicroK8s' bin dir, as a path under a host root.
const MICROK8S_BIN: &str = "var/snap/microk8s/current/opt/cni/bin";
/// The same through the revision `current` points at, as the snap lays it out.
const MICROK8S_REVISION_BIN: &str = "var/snap/microk8s/7394/opt/cni/bin";

/// A per-test directory, removed on drop.
struct Scratch {
    dir: PathBuf,
}

impl Scratch {
    fn new(tag: &str) -> Scratch {
        let dir = std::env::temp_dir().join(format!("roslan-install-test-{tag}-{}", unique()));
        fs::create_dir_all(&dir).expect("create scratch directory");
        Scratch { dir }
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.dir.join(rel)
    }

    /// The host root the installer sees.
    fn host(&self) -> PathBuf {
        self.path("host")
    }

    /// The image's /opt/roslan/bin.
    fn source(&self) -> PathBuf {
        self.path("image")
    }

    /// A host root like a MicroK8s node: `current` links to a revision whose bin dir holds other
    /// plugins (a regular file and a symbolic link, as the snap makes them).
    fn microk8s(tag: &str) -> Scratch {
        let s = Scratch::new(tag);
        let bin = s.host().join(MICROK8S_REVISION_BIN);
        fs::create_dir_all(&bin).unwrap();
        symlink("7394", s.host().join("var/snap/microk8s/current")).unwrap();
        fs::write(bin.join("multus"), b"#!/bin/sh\n# stands in for Multus 3.9\n").unwrap();
        fs::set_permissions(bin.join("multus"), fs::Permissions::from_mode(0o755)).unwrap();
        symlink("/snap/microk8s/current/opt/cni/bin/macvlan", bin.join("macvlan")).unwrap();
        fs::create_dir_all(s.source()).unwrap();
        s
    }

    /// A host root with only /opt/cni/bin (another distribution).
    fn plain(tag: &str) -> Scratch {
        let s = Scratch::new(tag);
        fs::create_dir_all(s.host().join("opt/cni/bin")).unwrap();
        fs::write(s.host().join("opt/cni/bin/bridge"), b"someone else's plugin").unwrap();
        fs::create_dir_all(s.source()).unwrap();
        s
    }

    /// A scratch /proc/sys with the two socket-buffer maxima.
    fn proc_sys(&self, rmem: u64, wmem: u64) -> PathBuf {
        let dir = self.path("proc-sys");
        fs::create_dir_all(dir.join("net/core")).unwrap();
        fs::write(dir.join("net/core/rmem_max"), format!("{rmem}\n")).unwrap();
        fs::write(dir.join("net/core/wmem_max"), format!("{wmem}\n")).unwrap();
        dir
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.dir);
    }
}

/// A stand-in plugin that answers CNI VERSION like roslan; `build` makes the bytes differ.
fn fake_plugin(dir: &Path, name: &str, build: u32) -> PathBuf {
    let path = dir.join(name);
    let script = format!(
        "#!/bin/sh\n# stand-in plugin, build {build}\ncat >/dev/null\necho '{{\"cniVersion\":\"1.0.0\",\"supportedVersions\":[\"0.3.1\",\"0.4.0\",\"1.0.0\"]}}'\n"
    );
    fs::write(&path, script).unwrap();
    fs::set_permissions(&path, fs::Permissions::from_mode(0o755)).unwrap();
    path
}

/// `roslan-install` with a clean environment (no ROSLAN_* from the caller's shell).
fn installer() -> Command {
    let mut cmd = Command::new(workspace_bin("roslan-install"));
    cmd.env_clear().env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin");
    cmd
}

/// Host root, source dir and scratch proc-sys: the options every run here passes.
fn base_args(s: &Scratch) -> Vec<String> {
    vec![
        "--host-root".into(),
        s.host().display().to_string(),
        "--source-dir".into(),
        s.source().display().to_string(),
        "--proc-sys".into(),
        s.path("proc-sys").display().to_string(),
    ]
}

#[derive(Debug)]
struct Run {
    status: i32,
    log: String,
}

fn finish(cmd: &mut Command) -> Run {
    let out = cmd.output().expect("run roslan-install");
    assert!(
        out.stdout.is_empty(),
        "the installer logs to stderr only: {:?}",
        out.stdout
    );
    Run {
        status: out.status.code().unwrap_or(-1),
        log: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn run(s: &Scratch, extra: &[&str]) -> Run {
    finish(installer().args(base_args(s)).args(extra))
}

/// Identity and timestamps of a file, to prove it was not rewritten (no rename, no write, no chmod).
fn stamp(path: &Path) -> (u64, i64, i64, i64, i64) {
    let m = fs::symlink_metadata(path).unwrap_or_else(|err| panic!("{}: {err}", path.display()));
    (m.ino(), m.mtime(), m.mtime_nsec(), m.ctime(), m.ctime_nsec())
}

fn names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// A running installer, killed if the test fails before it stops it.
struct Running {
    child: Option<Child>,
    log: PathBuf,
}

impl Running {
    fn start(s: &Scratch, extra: &[&str]) -> Running {
        let log = s.path("installer.log");
        let child = installer()
            .args(base_args(s))
            .args(extra)
            .stdout(Stdio::null())
            .stderr(fs::File::create(&log).unwrap())
            .spawn()
            .expect("start roslan-install");
        Running {
            child: Some(child),
            log,
        }
    }

    fn log(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Sends SIGTERM and returns the exit code and how long the exit took.
    fn terminate(&mut self) -> (Option<i32>, Duration) {
        let mut child = self.child.take().expect("running");
        let sent = Instant::now();
        let status = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -TERM failed");
        let exited = wait_until(Duration::from_secs(10), || child.try_wait().unwrap().is_some());
        if !exited {
            let _ = child.kill();
        }
        let code = child.wait().unwrap().code();
        (code, sent.elapsed())
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

#[test]
fn microk8s_node_install_noop_and_uninstall() {
    let s = Scratch::microk8s("mk8s");
    let source = s.source().join("roslan");
    fs::copy(roslan_bin(), &source).unwrap();
    let bin = s.host().join(MICROK8S_BIN);
    let others = [
        (
            bin.join("multus"),
            stamp(&bin.join("multus")),
            fs::read(bin.join("multus")).unwrap(),
        ),
        (bin.join("macvlan"), stamp(&bin.join("macvlan")), Vec::new()),
    ];

    let first = run(&s, &["--once"]);
    assert_eq!(first.status, 0, "{}", first.log);
    assert!(first.log.contains("MicroK8s node"), "{}", first.log);
    let installed = bin.join("roslan");
    assert_eq!(
        fs::read(&installed).unwrap(),
        fs::read(&source).unwrap(),
        "identical bytes"
    );
    let meta = fs::symlink_metadata(&installed).unwrap();
    assert!(meta.is_file());
    assert_eq!(meta.mode() & 0o7777, 0o755);
    assert!(
        s.host().join(MICROK8S_REVISION_BIN).join("roslan").exists(),
        "written through the `current` link into the active revision"
    );
    assert!(
        first
            .log
            .contains("installed /var/snap/microk8s/current/opt/cni/bin/roslan (it was missing"),
        "{}",
        first.log
    );
    assert!(first.log.contains("answers CNI VERSION with 0.1.0"), "{}", first.log);
    assert!(
        first.log.contains("roslan-ipam: not in"),
        "absent optional binary is skipped: {}",
        first.log
    );
    assert_eq!(
        names(&bin),
        ["macvlan", "multus", "roslan"],
        "no temporary file left behind"
    );
    assert!(s.host().join("var/lib/roslan/installed.json").exists());

    let before = stamp(&installed);
    let second = run(&s, &["--once"]);
    assert_eq!(second.status, 0, "{}", second.log);
    assert!(
        second.log.contains("roslan: up to date") && second.log.contains("not rewritten"),
        "the second run says it did nothing: {}",
        second.log
    );
    assert!(!second.log.contains("installed /"), "{}", second.log);
    assert_eq!(stamp(&installed), before, "inode and times unchanged: not rewritten");

    let gone = run(&s, &["--uninstall", "--once"]);
    assert_eq!(gone.status, 0, "{}", gone.log);
    assert!(!installed.exists());
    assert!(
        gone.log
            .contains("removed /var/snap/microk8s/current/opt/cni/bin/roslan"),
        "{}",
        gone.log
    );
    assert_eq!(names(&bin), ["macvlan", "multus"]);
    for (path, stamp_before, bytes) in &others {
        assert_eq!(&stamp(path), stamp_before, "{} untouched", path.display());
        if !bytes.is_empty() {
            assert_eq!(&fs::read(path).unwrap(), bytes);
        }
    }
    assert_eq!(
        fs::read_link(bin.join("macvlan")).unwrap(),
        PathBuf::from("/snap/microk8s/current/opt/cni/bin/macvlan")
    );
    assert!(
        !s.host().join("var/lib/roslan/installed.json").exists(),
        "record removed"
    );

    let again = run(&s, &["--uninstall", "--once"]);
    assert_eq!(again.status, 0, "{}", again.log);
    assert!(again.log.contains("nothing to remove"), "{}", again.log);
}

#[test]
fn other_distributions_use_opt_cni_bin() {
    let s = Scratch::plain("plain");
    fake_plugin(&s.source(), "roslan", 1);
    let r = run(&s, &["--once"]);
    assert_eq!(r.status, 0, "{}", r.log);
    assert!(r.log.contains("CNI bin dir: /opt/cni/bin (no MicroK8s"), "{}", r.log);
    assert_eq!(names(&s.host().join("opt/cni/bin")), ["bridge", "roslan"]);
    assert!(!s.host().join("var/snap").exists(), "nothing created for MicroK8s");

    // A DaemonSet that mounts MicroK8s' bin dir on every node leaves this empty skeleton under the
    // host root of a node without MicroK8s: still not MicroK8s.
    fs::create_dir_all(s.host().join(MICROK8S_BIN)).unwrap();
    let r = run(&s, &["--once"]);
    assert_eq!(r.status, 0, "{}", r.log);
    assert!(r.log.contains("CNI bin dir: /opt/cni/bin"), "{}", r.log);
    assert!(r.log.contains("mount point of a hostPath volume"), "{}", r.log);
    assert!(names(&s.host().join(MICROK8S_BIN)).is_empty());

    // An explicit --cni-bin-dir wins and is a host path.
    fs::create_dir_all(s.host().join("usr/lib/cni")).unwrap();
    let r = run(&s, &["--once", "--cni-bin-dir", "/usr/lib/cni"]);
    assert_eq!(r.status, 0, "{}", r.log);
    assert_eq!(names(&s.host().join("usr/lib/cni")), ["roslan"]);

    let r = run(&s, &["--uninstall", "--once"]);
    assert_eq!(r.status, 0, "{}", r.log);
    assert_eq!(names(&s.host().join("opt/cni/bin")), ["bridge"]);
    assert!(
        names(&s.host().join("usr/lib/cni")).is_empty(),
        "both recorded installs removed"
    );
}

#[test]
fn running_installer_restores_a_removed_or_changed_binary_and_stops_on_sigterm() {
    let s = Scratch::microk8s("loop");
    fake_plugin(&s.source(), "roslan", 1);
    fake_plugin(&s.source(), "roslan-ipam", 1);
    let bin = s.host().join(MICROK8S_BIN);
    let mut installer = Running::start(&s, &["--interval", "1"]);
    assert!(
        wait_until(Duration::from_secs(10), || installer
            .log()
            .contains("checking again every 1s")),
        "first pass: {}",
        installer.log()
    );
    assert!(bin.join("roslan").exists() && bin.join("roslan-ipam").exists());
    let source_bytes = fs::read(s.source().join("roslan")).unwrap();

    // A snap refresh (or a person) removes it: back within the interval.
    fs::remove_file(bin.join("roslan")).unwrap();
    assert!(
        wait_until(Duration::from_secs(5), || bin.join("roslan").exists()),
        "not restored: {}",
        installer.log()
    );
    assert!(wait_until(Duration::from_secs(2), || installer
        .log()
        .contains("it vanished since it was installed")));
    assert_eq!(fs::read(bin.join("roslan")).unwrap(), source_bytes);

    // Someone overwrites it: replaced again.
    fs::write(bin.join("roslan-ipam"), b"#!/bin/sh\nexit 1\n").unwrap();
    assert!(
        wait_until(Duration::from_secs(5), || fs::read(bin.join("roslan-ipam")).unwrap()
            == fs::read(s.source().join("roslan-ipam")).unwrap()),
        "not repaired: {}",
        installer.log()
    );
    assert!(wait_until(Duration::from_secs(2), || installer
        .log()
        .contains("its content differs")));

    let (code, took) = installer.terminate();
    assert_eq!(code, Some(0), "exit 0 on SIGTERM: {}", installer.log());
    assert!(
        took < Duration::from_secs(2),
        "exit is prompt, not at the next interval: {took:?}"
    );
    assert!(installer.log().contains("SIGTERM: exiting"), "{}", installer.log());
    assert!(
        bin.join("roslan").exists(),
        "a stopped installer leaves the plugin for running pods"
    );
    assert_eq!(names(&bin), ["macvlan", "multus", "roslan", "roslan-ipam"]);
}

#[test]
fn a_binary_that_is_not_a_plugin_never_replaces_one_that_is() {
    let s = Scratch::plain("verify");
    fake_plugin(&s.source(), "roslan", 1);
    let r = run(&s, &["--once"]);
    assert_eq!(r.status, 0, "{}", r.log);
    let installed = s.host().join("opt/cni/bin/roslan");
    let good = fs::read(&installed).unwrap();

    fs::write(s.source().join("roslan"), b"#!/bin/sh\necho 'not a plugin'\n").unwrap();
    let r = run(&s, &["--once"]);
    assert_eq!(r.status, 1, "{}", r.log);
    assert!(r.log.contains("does not answer CNI VERSION"), "{}", r.log);
    assert!(
        r.log
            .contains("/opt/cni/bin/roslan was not replaced, the new copy was not put in place"),
        "{}",
        r.log
    );
    assert_eq!(fs::read(&installed).unwrap(), good, "the working copy stays");
    assert_eq!(
        names(&s.host().join("opt/cni/bin")),
        ["bridge", "roslan"],
        "temporary file removed"
    );
}

#[test]
fn uninstall_leaves_a_binary_someone_else_replaced() {
    let s = Scratch::plain("replaced");
    fake_plugin(&s.source(), "roslan", 1);
    assert_eq!(run(&s, &["--once"]).status, 0);
    let installed = s.host().join("opt/cni/bin/roslan");
    fake_plugin(&s.host().join("opt/cni/bin"), "roslan", 2);
    let r = run(&s, &["--uninstall", "--once"]);
    assert_eq!(r.status, 0, "{}", r.log);
    assert!(r.log.contains("changed since roslan-install wrote it"), "{}", r.log);
    assert!(installed.exists());
}

#[test]
fn uninstall_in_a_daemonset_stays_idle_until_sigterm() {
    let s = Scratch::plain("idle");
    fake_plugin(&s.source(), "roslan", 1);
    assert_eq!(run(&s, &["--once"]).status, 0);
    // Without --once, as a DaemonSet patched to --uninstall runs it: clean up, then do nothing (an
    // exit would only make the kubelet restart the pod), and never re-install.
    let mut installer = Running::start(&s, &["--uninstall", "--interval", "1"]);
    assert!(
        wait_until(Duration::from_secs(10), || installer
            .log()
            .contains("idle until SIGTERM")),
        "{}",
        installer.log()
    );
    std::thread::sleep(Duration::from_millis(1500));
    assert!(
        !s.host().join("opt/cni/bin/roslan").exists(),
        "removed and not re-installed"
    );
    let (code, _) = installer.terminate();
    assert_eq!(code, Some(0), "{}", installer.log());
}

#[test]
fn node_name_file() {
    let s = Scratch::plain("nodename");
    fake_plugin(&s.source(), "roslan", 1);
    let r = run(&s, &["--once", "--node-name", "robot-1"]);
    assert_eq!(r.status, 0, "{}", r.log);
    let file = s.host().join("var/lib/roslan/node-name");
    assert_eq!(fs::read_to_string(&file).unwrap(), "robot-1\n");
    assert_eq!(fs::metadata(&file).unwrap().mode() & 0o777, 0o644);
    let before = stamp(&file);

    // From the environment, as the DaemonSet passes it (downward API).
    let r = finish(
        installer()
            .args(base_args(&s))
            .arg("--once")
            .env("ROSLAN_NODE_NAME", "robot-1"),
    );
    assert_eq!(r.status, 0, "{}", r.log);
    assert!(r.log.contains("already says \"robot-1\"; not rewritten"), "{}", r.log);
    assert_eq!(stamp(&file), before);

    let r = run(&s, &["--once", "--node-name", "robot-2"]);
    assert_eq!(r.status, 0, "{}", r.log);
    assert_eq!(fs::read_to_string(&file).unwrap(), "robot-2\n");
    assert_eq!(names(&s.host().join("var/lib/roslan")), ["installed.json", "node-name"]);

    let r = run(&s, &["--once", "--node-name", "Robot_2"]);
    assert_eq!(r.status, 2, "{}", r.log);
    assert!(r.log.contains("spec.nodeName"), "the error names the fix: {}", r.log);
    assert_eq!(
        fs::read_to_string(&file).unwrap(),
        "robot-2\n",
        "a bad name changes nothing"
    );

    let r = run(&s, &["--uninstall", "--once"]);
    assert_eq!(r.status, 0, "{}", r.log);
    assert!(!file.exists());
}

#[test]
fn sysctl_floors_raise_only_and_uninstall_restores() {
    let s = Scratch::plain("sysctl");
    fake_plugin(&s.source(), "roslan", 1);
    let proc_sys = s.proc_sys(212_992, 8_388_608);
    let read = |key: &str| fs::read_to_string(proc_sys.join("net/core").join(key)).unwrap();

    // Every option from the environment this time, as a DaemonSet sets them.
    let env_run = |extra: &[(&str, &str)]| {
        let mut cmd = installer();
        cmd.env("ROSLAN_HOST_ROOT", s.host())
            .env("ROSLAN_SOURCE_DIR", s.source())
            .env("ROSLAN_PROC_SYS", &proc_sys)
            .env("ROSLAN_ONCE", "true");
        for (key, value) in extra {
            cmd.env(key, value);
        }
        finish(&mut cmd)
    };
    let floors = [("ROSLAN_RMEM_MAX", "4194304"), ("ROSLAN_WMEM_MAX", "4194304")];
    let r = env_run(&floors);
    assert_eq!(r.status, 0, "{}", r.log);
    assert_eq!(read("rmem_max"), "4194304\n", "raised to the floor");
    assert_eq!(read("wmem_max"), "8388608\n", "never lowered");
    assert!(
        r.log.contains("raised net.core.rmem_max from 212992 to 4194304"),
        "{}",
        r.log
    );
    assert!(
        r.log.contains("net.core.wmem_max is 8388608, at or above the floor"),
        "{}",
        r.log
    );

    // A second run with a higher floor keeps the original value as the one to restore.
    let r = env_run(&[("ROSLAN_RMEM_MAX", "8388608")]);
    assert_eq!(r.status, 0, "{}", r.log);
    assert_eq!(read("rmem_max"), "8388608\n");

    let r = env_run(&[("ROSLAN_UNINSTALL", "true")]);
    assert_eq!(r.status, 0, "{}", r.log);
    assert_eq!(
        read("rmem_max"),
        "212992\n",
        "restored to the value before the first raise"
    );
    assert_eq!(read("wmem_max"), "8388608\n", "never raised, so never restored");
}

#[test]
fn options_that_cannot_work_fail_with_the_fix() {
    let s = Scratch::plain("usage");
    fake_plugin(&s.source(), "roslan", 1);
    let r = run(&s, &["--once", "--shim-master", "eth0"]);
    assert_eq!(r.status, 2, "{}", r.log);
    assert!(
        r.log
            .contains("missing: --shim-address (ROSLAN_SHIM_ADDRESS), --shim-route"),
        "{}",
        r.log
    );
    let r = run(
        &s,
        &[
            "--once",
            "--shim-master",
            "eth0",
            "--shim-address",
            "192.168.1.165/32",
            "--shim-route",
            "192.168.1.160/28",
        ],
    );
    assert_eq!(r.status, 2, "{}", r.log);
    assert!(r.log.contains("lies inside the pod range"), "{}", r.log);
    // The block agent holds Leases for a node, and keeps the headroom only while it runs.
    let r = run(&s, &["--lease-blocks"]);
    assert_eq!(r.status, 2, "{}", r.log);
    assert!(r.log.contains("--lease-blocks needs --node-name"), "{}", r.log);
    let r = run(&s, &["--lease-blocks", "--node-name", "robot-1", "--once"]);
    assert_eq!(r.status, 2, "{}", r.log);
    assert!(r.log.contains("cannot be combined with --once"), "{}", r.log);

    // No bin dir under the host root (the hostPath volume is missing).
    fs::remove_dir_all(s.host().join("opt")).unwrap();
    let r = run(&s, &["--once"]);
    assert_eq!(r.status, 1, "{}", r.log);
    assert!(r.log.contains("does not exist under the host root"), "{}", r.log);
    assert!(r.log.contains("--cni-bin-dir"), "{}", r.log);
    assert!(!s.host().join("opt").exists(), "nothing created in its place");

    let r = finish(installer().args(["--host-root", "/nonexistent-roslan-test", "--once"]));
    assert_eq!(r.status, 1, "{}", r.log);
    assert!(r.log.contains("hostPath"), "{}", r.log);
}

/// A UDP socket living in `ns`: a thread enters the namespace, binds, and leaves; a socket belongs
/// for its whole life to the namespace it was created in, so the test thread can then use it. (No
/// ping binary is needed, and this proves a real round trip, request and reply.)
fn udp_in(ns: &Netns, addr: &str) -> UdpSocket {
    let path = ns.path();
    let addr: SocketAddr = addr.parse().unwrap();
    std::thread::spawn(move || {
        let file = fs::File::open(&path).unwrap();
        setns(&file, CloneFlags::CLONE_NEWNET).expect("enter the namespace");
        UdpSocket::bind(addr).expect("bind")
    })
    .join()
    .unwrap()
}

/// True if a datagram from `from` reaches `to_addr` in `to` and the answer comes back.
fn reaches(from: &Netns, to: &Netns, to_addr: &str) -> bool {
    let server = udp_in(to, &format!("{to_addr}:0"));
    let client = udp_in(from, "0.0.0.0:0");
    let timeout = Some(Duration::from_millis(1500));
    server.set_read_timeout(timeout).unwrap();
    client.set_read_timeout(timeout).unwrap();
    let mut buf = [0u8; 64];
    if client.send_to(b"roslan?", server.local_addr().unwrap()).is_err() {
        return false;
    }
    let Ok((n, peer)) = server.recv_from(&mut buf) else {
        return false;
    };
    if server.send_to(&buf[..n], peer).is_err() {
        return false;
    }
    client
        .recv_from(&mut buf)
        .is_ok_and(|(got, _)| &buf[..got] == b"roslan?")
}

#[root_test]
fn host_shim_lets_the_node_reach_its_macvlan_pods() {
    const SHIM_ADDR: &str = "10.77.255.200";
    let lan = Lan::new();
    let pod = lan.pod();
    let result = lan.add(&pod, "net1", &lan.config("0.3.1"));
    let pod_addr = result_ip(&result, 0);
    assert!(pod_addr.starts_with("10.77.1."), "{pod_addr}");
    assert!(reaches(&lan.host, &pod.ns, &pod_addr), "a LAN host reaches the pod");
    assert!(
        !reaches(&lan.node, &pod.ns, &pod_addr),
        "without a shim the node cannot reach its own macvlan pod"
    );

    let s = Scratch::plain("shim");
    fake_plugin(&s.source(), "roslan", 1);
    let bin = workspace_bin("roslan-install");
    let in_node = |extra: &[&str]| {
        let mut cmd = lan.node.command(bin.to_str().unwrap());
        cmd.env_clear()
            .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
            .args(base_args(&s))
            .args(["--once", "--shim-master", MASTER, "--shim-address"])
            .arg(format!("{SHIM_ADDR}/32"))
            .args(["--shim-route", "10.77.1.0/24"])
            .args(extra);
        finish(&mut cmd)
    };

    let r = in_node(&[]);
    assert_eq!(r.status, 0, "{}", r.log);
    assert!(r.log.contains("created host shim roslan-shim"), "{}", r.log);
    let link = lan.node.link("roslan-shim").expect("shim exists in the node namespace");
    assert_eq!(link["linkinfo"]["info_kind"], "macvlan");
    assert_eq!(link["linkinfo"]["info_data"]["mode"], "bridge");
    assert_eq!(link["link"], MASTER, "on the pods' master");
    assert_eq!(lan.node.addresses("roslan-shim"), [format!("{SHIM_ADDR}/32")]);
    let route = lan
        .node
        .routes("-4")
        .into_iter()
        .find(|r| r["dst"] == "10.77.1.0/24")
        .expect("route to the pod range");
    assert_eq!(route["dev"], "roslan-shim");

    assert!(
        reaches(&lan.node, &pod.ns, &pod_addr),
        "node -> pod and back, through the shim"
    );
    assert!(
        reaches(&pod.ns, &lan.node, SHIM_ADDR),
        "pod -> the node's shim address and back"
    );
    assert!(
        reaches(&lan.host, &pod.ns, &pod_addr),
        "the LAN host still reaches the pod"
    );
    assert!(
        reaches(&lan.node, &lan.host, "10.77.255.254"),
        "the node still reaches the LAN host"
    );

    let index = link["ifindex"].clone();
    let again = in_node(&[]);
    assert_eq!(again.status, 0, "{}", again.log);
    assert!(again.log.contains("host shim roslan-shim"), "{}", again.log);
    assert!(again.log.contains("up to date; unchanged"), "{}", again.log);
    assert_eq!(
        lan.node.link("roslan-shim").unwrap()["ifindex"],
        index,
        "same link, not recreated"
    );
    assert_eq!(lan.node.addresses("roslan-shim").len(), 1);

    let r = in_node(&["--uninstall"]);
    assert_eq!(r.status, 0, "{}", r.log);
    assert!(r.log.contains("deleted host shim roslan-shim"), "{}", r.log);
    assert!(!lan.node.has_link("roslan-shim"));
    assert!(!lan.node.routes("-4").iter().any(|r| r["dst"] == "10.77.1.0/24"));
    assert!(lan.node.has_link(MASTER), "the master is untouched");
    assert!(
        !reaches(&lan.node, &pod.ns, &pod_addr),
        "and the node is back to not reaching the pod"
    );
}

#[root_test]
fn a_foreign_link_with_the_shim_name_is_left_alone() {
    let ns = Netns::new("shim");
    ns.ip(&["link", "add", "lan0", "type", "veth", "peer", "name", "lan0p"]);
    ns.ip(&["link", "set", "lan0", "up"]);
    ns.ip(&["link", "add", "roslan-shim", "type", "veth", "peer", "name", "other0"]);
    let s = Scratch::plain("foreign");
    fake_plugin(&s.source(), "roslan", 1);
    let mut cmd = ns.command(workspace_bin("roslan-install").to_str().unwrap());
    cmd.env_clear()
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .args(base_args(&s))
        .args([
            "--once",
            "--shim-master",
            "lan0",
            "--shim-address",
            "10.9.0.2/32",
            "--shim-route",
            "10.9.1.0/24",
        ]);
    let r = finish(&mut cmd);
    assert_eq!(r.status, 1, "{}", r.log);
    assert!(r.log.contains("was not created by roslan-install"), "{}", r.log);
    let link = ns.link("roslan-shim").expect("still there");
    assert_eq!(link["linkinfo"]["info_kind"], "veth", "untouched");
    assert!(ns.addresses("roslan-shim").is_empty());
    // The binaries were still installed: one failing step does not stop the others.
    assert!(s.host().join("opt/cni/bin/roslan").exists());

    let mut cmd = ns.command(workspace_bin("roslan-install").to_str().unwrap());
    cmd.env_clear()
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .args(base_args(&s))
        .args(["--once", "--shim-master", "nosuch0", "--shim-address", "10.9.0.2/32"])
        .args(["--shim-route", "10.9.1.0/24", "--shim-name", "other-shim"]);
    let r = finish(&mut cmd);
    assert_eq!(r.status, 1, "{}", r.log);
    assert!(r.log.contains("shim master \"nosuch0\" not found"), "{}", r.log);
    assert!(
        r.log.contains("lan0"),
        "the error lists the interfaces there are: {}",
        r.log
    );
}

#[root_test]
fn a_multicast_route_through_the_shim_lets_the_node_discover_its_pods() {
    // `ros2` on the node (or a hostNetwork driver) finds peers with unpinned SPDP multicast to
    // 239.255.0.1. Through the master it never reaches the node's own macvlan pods, nor do theirs
    // reach it; routed through the shim (a sibling of the pods in bridge mode), both directions work
    // and the LAN still gets the node's multicast (the shim transmits through the master too).
    const GROUP: &str = "239.255.0.1";
    let lan = Lan::new();
    let pod = lan.pod();
    lan.add(&pod, "net1", &lan.config("0.3.1"));
    assert_eq!(exchange(&lan.node, &[&pod.ns, &lan.host], GROUP, 7400, 3), [0, 3]);
    assert_eq!(exchange(&pod.ns, &[&lan.node], GROUP, 7400, 3), [0]);

    let s = Scratch::plain("shim-mcast");
    fake_plugin(&s.source(), "roslan", 1);
    let mut cmd = lan.node.command(workspace_bin("roslan-install").to_str().unwrap());
    cmd.env_clear()
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .args(base_args(&s))
        .args(["--once", "--shim-master", MASTER, "--shim-address", "10.77.255.200/32"])
        .env("ROSLAN_SHIM_ROUTES", "10.77.1.0/24,239.255.0.0/16");
    let r = finish(&mut cmd);
    assert_eq!(r.status, 0, "{}", r.log);
    assert!(
        r.log.contains("added route 239.255.0.0/16 dev roslan-shim"),
        "{}",
        r.log
    );

    assert_eq!(
        exchange(&lan.node, &[&pod.ns, &lan.host], GROUP, 7400, 3),
        [3, 3],
        "node -> its pod and the LAN host"
    );
    assert_eq!(exchange(&pod.ns, &[&lan.node], GROUP, 7400, 3), [3], "pod -> node");
}

/// A workspace binary from the static build `make test` makes (`-C target-feature=+crt-static`, into
/// target/<host triple>/debug), as the image's build stage makes it in release.
fn static_bin(name: &str) -> PathBuf {
    let triple = format!("{}-unknown-linux-gnu", std::env::consts::ARCH);
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../target")
        .join(triple)
        .join("debug")
        .join(name);
    assert!(
        path.exists(),
        "{} is missing: RUSTFLAGS=\"-C target-feature=+crt-static\" cargo build --target <host triple> -p roslan -p roslan-install (make test does)",
        path.display()
    );
    path
}

#[root_test("needs root (chroot): run `make test` as root")]
fn the_image_works_with_nothing_but_its_three_static_binaries() {
    // The image's final stage's filesystem without building the image (tests/image.rs runs the image that
    // `make image` builds): FROM scratch plus the build stage's /image/, i.e. three binaries and nothing
    // else, no libc and no loader, here from the static debug build. First, that layout is the Dockerfile's.
    let dockerfile = fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../install/Dockerfile")).unwrap();
    let final_stage = dockerfile.rsplit("\nFROM ").next().unwrap();
    assert!(final_stage.starts_with("scratch\n"), "{final_stage}");
    assert!(final_stage.contains("COPY --from=build /image/ /"), "{final_stage}");
    assert!(final_stage.contains(r#"ENTRYPOINT ["/usr/local/bin/roslan-install"]"#));
    assert!(dockerfile.contains(r#"cp "$out/roslan" "$out/roslan-ipam" /image/opt/roslan/bin/"#));
    assert!(dockerfile.contains(r#"cp "$out/roslan-install" /image/usr/local/bin/"#));

    let s = Scratch::new("image");
    let root = s.path("rootfs");
    for (name, dir) in [
        ("roslan", "opt/roslan/bin"),
        ("roslan-ipam", "opt/roslan/bin"),
        ("roslan-install", "usr/local/bin"),
    ] {
        fs::create_dir_all(root.join(dir)).unwrap();
        fs::copy(static_bin(name), root.join(dir).join(name)).unwrap();
    }
    // The DaemonSet mounts the node's root at /host: here, a MicroK8s node with another plugin.
    let bin = root.join("host").join(MICROK8S_BIN);
    fs::create_dir_all(&bin).unwrap();
    fs::write(bin.join("multus"), b"someone else's plugin").unwrap();

    let out = Command::new("chroot")
        .arg(&root)
        .args(["/usr/local/bin/roslan-install", "--once", "--node-name", "robot-1"])
        .env_clear()
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .output()
        .expect("run chroot");
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "the installer in the image's filesystem: {log}");
    for name in ["roslan", "roslan-ipam"] {
        assert_eq!(
            fs::read(bin.join(name)).unwrap(),
            fs::read(root.join("opt/roslan/bin").join(name)).unwrap(),
            "{name} installed: {log}"
        );
    }
    assert_eq!(fs::read(bin.join("multus")).unwrap(), b"someone else's plugin");
    assert_eq!(
        fs::read_to_string(root.join("host/var/lib/roslan/node-name")).unwrap(),
        "robot-1\n"
    );

    // The plugin itself answers in that filesystem too, as it must in Multus thick's chroot.
    let mut child = Command::new("chroot")
        .arg(&root)
        .arg("/opt/roslan/bin/roslan")
        .env_clear()
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .env("CNI_COMMAND", "VERSION")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("run chroot");
    use std::io::Write as _;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(br#"{"cniVersion": "0.3.1"}"#)
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let reply: serde_json::Value = serde_json::from_slice(&out.stdout).expect("VERSION prints JSON");
    assert!(
        reply["supportedVersions"].as_array().is_some_and(|v| v.len() == 7),
        "{reply}"
    );
}
