//! Pods and containers the way containerd runs them for Kubernetes, so that real ROS 2 nodes see what
//! they would see in a pod.
//!
//! In a pod every container shares the network, UTS (host name) and IPC namespaces, and under containerd
//! the sandbox's `/dev/shm`, a tmpfs of its own; each container has its own mount and PID namespace, and
//! its program is PID 1. That matters to Fast DDS: it announces shared-memory locators next to its UDP
//! ones and uses shared memory with participants it takes to be on the same host. Processes that all
//! shared the machine's `/dev/shm` could discover each other and exchange data with no network at all,
//! and a test would pass that the network under test fails. So here:
//!
//! - a [`Sandbox`] is a pod's shared part, like the pause container: a process in the pod's network
//!   namespace, with UTS and IPC namespaces of its own (host name = the pod's name), and a mount namespace
//!   of its own in which a fresh tmpfs is mounted on `/dev/shm`, the pod's shared memory;
//! - [`Sandbox::container`] starts a program in a container of that pod: `nsenter` joins the sandbox's
//!   network, UTS, IPC and mount namespaces, then `unshare` makes a private copy of the mounts (so its
//!   `/dev/shm` is the same tmpfs as its siblings', and nobody else's) and a PID namespace with a /proc of
//!   its own, and the program runs as PID 1 with its own `/etc/machine-id` bind-mounted over the
//!   machine's (Fast DDS 3.2 reads it to decide what is the same host) and a clean environment.
//!
//! Nothing is mounted in the machine's mount namespace: the tmpfs exists only in the sandbox's mount
//! namespace and its copies and disappears with the last process holding one. What is on disk (each
//! container's machine-id and home directory) lives in a temporary directory removed on drop. Every
//! process is started under `setpriv --pdeathsig KILL`, so it dies with the test thread that started it
//! even when the test process is killed (its zombies then wait for the machine's PID 1, its network
//! namespaces for [`crate::netns::clean_stale`], its directory for the next sandbox); in the normal case,
//! a panic included, [`crate::process::Peer`] kills and reaps it on drop, PID 1 first (see there). So a
//! sandbox and its containers must be dropped by the thread that made them, as they are in a test.

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use crate::netns::{Netns, unique};
use crate::process::{Peer, Stop};

/// Size of each pod's `/dev/shm`: containerd's default for a sandbox.
pub const SHM_SIZE: &str = "64m";

/// The holder's script: `$0` is the pod's host name.
const SANDBOX_SCRIPT: &str = "mount -t tmpfs -o size=$SHM_SIZE,mode=1777,nosuid,nodev roslan-pod-shm /dev/shm \
     && hostname \"$0\" && echo ready && exec sleep infinity";

/// A container's script, run as PID 1 before the program: `$0` is its machine-id file, `$@` the program.
const CONTAINER_SCRIPT: &str = "mount --bind \"$0\" /etc/machine-id && exec \"$@\"";

/// A pod's shared namespaces and `/dev/shm`, held by one sleeping process; removed on drop.
#[derive(Debug)]
pub struct Sandbox {
    name: String,
    ns: String,
    holder: Child,
    dir: PathBuf,
}

impl Sandbox {
    /// A pod named `name` (its host name too) in the network namespace `ns`.
    pub fn new(ns: &Netns, name: &str) -> Sandbox {
        remove_stale_dirs();
        let dir = std::env::temp_dir().join(format!("{DIR_PREFIX}{}-{name}", unique()));
        std::fs::create_dir_all(&dir).expect("create the sandbox directory");
        let mut holder = Command::new("setpriv")
            .args(["--pdeathsig", "KILL", "ip", "netns", "exec", ns.name()])
            .args(["unshare", "--mount", "--uts", "--ipc", "--propagation", "private"])
            .args(["sh", "-c", SANDBOX_SCRIPT, name])
            .env("SHM_SIZE", SHM_SIZE)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start the sandbox of pod {name}: {e}"));
        let mut first = String::new();
        let _ = BufReader::new(holder.stdout.take().expect("stdout")).read_line(&mut first);
        if first.trim() != "ready" {
            let _ = holder.kill();
            let _ = holder.wait();
            let mut err = String::new();
            let _ = holder.stderr.take().expect("stderr").read_to_string(&mut err);
            let _ = std::fs::remove_dir_all(&dir);
            panic!("the sandbox of pod {name} in {} did not start: {first}{err}", ns.name());
        }
        Sandbox {
            name: name.to_string(),
            ns: ns.name().to_string(),
            holder,
            dir,
        }
    }

    /// The pod's name, which is also its host name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The network namespace the pod lives in.
    pub fn netns(&self) -> &str {
        &self.ns
    }

    /// The pid of the process holding the pod's namespaces (`ip netns exec`, `unshare` and `sh` exec
    /// into it, so it is the spawned process).
    pub fn holder_pid(&self) -> u32 {
        self.holder.id()
    }

    /// Names of the files in the pod's `/dev/shm`, seen through the holder's root.
    pub fn shm_files(&self) -> Vec<String> {
        let dir = format!("/proc/{}/root/dev/shm", self.holder.id());
        let mut names: Vec<String> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("cannot list {dir}: {e}"))
            .filter_map(|e| e.ok().map(|e| e.file_name().to_string_lossy().into_owned()))
            .collect();
        names.sort();
        names
    }

    /// A container's own directory (its machine-id, and its `HOME`).
    pub fn container_dir(&self, container: &str) -> PathBuf {
        self.dir.join(container)
    }

    /// Starts `program args...` as PID 1 of a new container named `container` in this pod, with only
    /// `PATH`, `HOME` (the container's own directory) and `env` in its environment. Killed and reaped
    /// when the returned peer is dropped, everything it started with it.
    pub fn container(&self, container: &str, program: &Path, args: &[&str], env: &[(&str, &str)]) -> Peer {
        let home = self.container_dir(container);
        std::fs::create_dir_all(&home).expect("create the container directory");
        let machine_id = home.join("machine-id");
        std::fs::write(&machine_id, format!("{}\n", random_machine_id())).expect("write the machine-id");
        let holder = self.holder.id().to_string();
        let mut cmd = Command::new("setpriv");
        cmd.args(["--pdeathsig", "KILL", "nsenter", "--target", &holder])
            .args(["--net", "--uts", "--ipc", "--mount", "--"])
            .args(["unshare", "--mount", "--pid", "--fork", "--kill-child", "--mount-proc"])
            .args(["--propagation", "private", "sh", "-c", CONTAINER_SCRIPT])
            .arg(&machine_id)
            .arg(program)
            .args(args)
            .env_clear()
            .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
            .env("HOME", &home)
            .envs(env.iter().copied());
        Peer::start(
            &format!("{container} in pod {}", self.name),
            &self.ns,
            cmd,
            Stop::PidNamespace,
        )
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        let _ = self.holder.kill();
        let _ = self.holder.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Prefix of a sandbox's directory in the temporary directory, followed by [`unique`] (the creating
/// process's pid in hex, `x`, a counter).
const DIR_PREFIX: &str = "roslan-pod-";

/// Removes sandbox directories whose creating process is gone (a test process that was killed, which
/// cannot run its drops; its processes die with it, through `--pdeathsig`).
fn remove_stale_dirs() {
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let pid = name
            .strip_prefix(DIR_PREFIX)
            .and_then(|rest| rest.split('x').next())
            .and_then(|hex| u32::from_str_radix(hex, 16).ok());
        if pid.is_some_and(|pid| !Path::new(&format!("/proc/{pid}")).exists()) {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

/// 32 lowercase hex digits from the kernel's random source, as systemd writes /etc/machine-id.
fn random_machine_id() -> String {
    let mut bytes = [0u8; 16];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .expect("read /dev/urandom");
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
