//! A machine of its own for a Kubernetes node, inside this one: its own network namespace with a LAN
//! interface, a LAN host behind it, and its own mount and PID namespaces, in which the node's directories
//! are throwaway copies. kubelet, containerd and everything they start run in there unmodified, with the
//! paths a MicroK8s node has, and nothing of the machine's root namespaces changes.
//!
//! ```text
//!   LAN host netns (a laptop, the router)            node netns (the robot)
//!     eth0 192.168.1.1/24 ----------------------------- eth0 192.168.1.10/24, default via 192.168.1.1
//!     224.0.0.0/4 dev eth0
//! ```
//!
//! The LAN is the manifests' own, 192.168.1.0/24 with the router at .1 and the pods' ranges at .160-.189, so
//! `manifests/networks/*` and the examples that include them apply unmodified; the node's NIC is `eth0`, as
//! the seed's NetworkAttachmentDefinition (`"master": "eth0"`) expects. Both namespaces are this machine's
//! only view of that LAN, so nothing collides with the machine's own 192.168.1.0/24, if it has one.
//!
//! The node's mount and PID namespaces are held by one process, the node's PID 1 (a reaper, as init is on a
//! real node: containerd's shims are re-parented to it), started by `unshare --kill-child` under
//! `setpriv --pdeathsig KILL`. In its mount namespace (private propagation):
//!
//! - `/sys` is a sysfs of the node's network namespace (so `/sys/class/net` shows the node's links, as the
//!   doctor and cAdvisor read them), with the machine's cgroup mounts moved under it;
//! - `/proc` is the node PID namespace's;
//! - `/var`, `/etc`, `/opt` and `/run` are overlays whose upper layers are in the throwaway directory: the
//!   node reads the machine's files (binaries, `/etc/resolv.conf`, the peers' cache) and every write lands
//!   in the throwaway copy (containerd's shim sockets in `/run/containerd`, the pods' network namespaces in
//!   `/var/run/netns`, the DaemonSet's `DirectoryOrCreate` host paths);
//! - `/var/lib/kubelet`, `/var/log/pods`, `/var/log/containers`, `/var/lib/cni` and `/var/snap/microk8s`
//!   are bind mounts of directories of the throwaway directory (on the machine's ext4, not an overlay, for
//!   kubelet's volumes and cAdvisor's disk statistics);
//! - `/opt/cni/bin` is a symbolic link to MicroK8s' bin dir, as the snap makes it on a node that had none;
//! - `/proc/sys/vm/overcommit_memory`, `kernel/panic` and `kernel/panic_on_oops` are files holding the
//!   values kubelet insists on (1, 10, 1), so that kubelet, run with `protectKernelDefaults`, neither
//!   changes the machine's kernel settings (they are global, not per namespace) nor refuses to start.
//!
//! [`crate::runtime::NodeMounts`] is the lighter version for a runtime without kubelet (a tmpfs `/run`, a
//! throwaway `/var/lib/cni`): kubelet also writes `/var/lib/kubelet`, `/var/log`, `/etc` paths and cgroups,
//! reads `/sys`, insists on kernel settings, and its runtime's shims outlive containerd, which only a PID
//! namespace of the node's own reliably takes down.
//!
//! Programs enter all three namespaces with `nsenter --net --mount --pid` ([`NodeHost::command`]).
//! Containers' cgroups go under `/roslan-test-node-<id>` in every hierarchy ([`NodeHost::cgroup_root`],
//! kubelet's `cgroupRoot`).
//!
//! Teardown: dropping the [`NodeHost`] kills its PID 1, and the kernel kills every process in the node's PID
//! namespace and the namespaces below it (kubelet, containerd, shims, every container); the mount
//! namespace disappears with its last process, the cgroups and the throwaway directory are removed, and the
//! two network namespaces are deleted. A test process that is killed takes the node with it (the
//! parent-death signal reaches PID 1's `unshare`, whose `--kill-child` kills PID 1); the next
//! [`NodeHost::new`] removes the directories, cgroups and network namespaces such a run left.

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::daemon::Daemon;
use crate::netns::{Netns, ThreadInNetns, sh, try_sh, unique};
use crate::process::only_child;
use crate::runtime::remove_cgroup;

/// The node's name (kubelet's `--hostname-override`), the first node `manifests/networks/node-ranges` names.
pub const NODE_NAME: &str = "robot-1";
/// The node's NIC, in its network namespace.
pub const NIC: &str = "eth0";
/// The node's address on the LAN.
pub const NODE_ADDR: &str = "192.168.1.10";
/// The LAN host's address: the router the manifests name as gateway, and a ROS 2 laptop.
pub const LAN_HOST_ADDR: &str = "192.168.1.1";
/// The LAN, as the manifests describe it.
pub const LAN_SUBNET: &str = "192.168.1.0/24";

/// The overlays over the machine's directories (see the module documentation).
const OVERLAYS: [&str; 4] = ["var", "etc", "opt", "run"];
/// Directories of the throwaway directory bind-mounted over the node's paths.
const BINDS: [(&str, &str); 5] = [
    ("kubelet", "/var/lib/kubelet"),
    ("log-pods", "/var/log/pods"),
    ("log-containers", "/var/log/containers"),
    ("cni", "/var/lib/cni"),
    ("microk8s/var/snap/microk8s", "/var/snap/microk8s"),
];
/// The kernel settings kubelet requires that differ from a stock kernel's, with kubelet's values.
const KUBELET_SYSCTLS: [(&str, &str); 3] = [
    ("vm/overcommit_memory", "1"),
    ("kernel/panic", "10"),
    ("kernel/panic_on_oops", "1"),
];

/// PID 1's script: `$0` is the throwaway directory. It mounts the node's view (module documentation),
/// says `ready`, and becomes a reaper.
const INIT_SCRIPT: &str = r#"set -eu
T=$0
mount --rbind /sys/fs/cgroup "$T/mnt/cgroup"
mount -t sysfs -o nosuid,nodev,noexec sysfs /sys
mount --move "$T/mnt/cgroup" /sys/fs/cgroup
for d in $OVERLAYS; do
  mount -t overlay overlay -o "lowerdir=/$d,upperdir=$T/overlay/$d/upper,workdir=$T/overlay/$d/work" "/$d"
done
for b in $BINDS; do
  src=${b%%:*} dst=${b#*:}
  mkdir -p "$dst"
  mount --bind "$T/$src" "$dst"
done
for s in $SYSCTLS; do
  mount --bind "$T/sysctl/${s%%=*}" "/proc/sys/${s%%=*}"
done
if [ ! -e /opt/cni/bin ]; then mkdir -p /opt/cni && ln -s /var/snap/microk8s/current/opt/cni/bin /opt/cni/bin; fi
echo ready
exec python3 -c '
import os, time
while True:
    try:
        os.wait()
    except ChildProcessError:
        time.sleep(0.5)
'
"#;

/// Prefix of the node's throwaway directory in the temporary directory, and (with `roslan-test-`) of its
/// cgroup, followed by [`unique`].
const DIR_PREFIX: &str = "roslan-node-";
const CGROUP_PREFIX: &str = "roslan-test-node-";

/// The node's namespaces, its LAN host and its throwaway directory.
#[derive(Debug)]
pub struct NodeHost {
    /// `unshare --kill-child`, parent of the node's PID 1.
    holder: Child,
    /// The node's PID 1, in the machine's numbering.
    init: u32,
    cgroup: String,
    dir: PathBuf,
    /// The node's network namespace (`eth0` on the LAN).
    pub net: Netns,
    /// The LAN host's network namespace (`eth0`, [`LAN_HOST_ADDR`]).
    pub lan_host: Netns,
}

impl NodeHost {
    /// Builds the LAN, the node's namespaces and its directories, and removes what killed runs left.
    pub fn new() -> NodeHost {
        crate::netns::clean_stale();
        remove_stale();
        let id = unique();
        let dir = std::env::temp_dir().join(format!("{DIR_PREFIX}{id}"));
        let cgroup = format!("{CGROUP_PREFIX}{id}");
        let net = Netns::new("node");
        let lan_host = Netns::new("lanhost");
        net.ip(&[
            "link",
            "add",
            NIC,
            "type",
            "veth",
            "peer",
            "name",
            "lan",
            "netns",
            lan_host.name(),
        ]);
        net.ip(&["addr", "add", &format!("{NODE_ADDR}/24"), "dev", NIC]);
        net.ip(&["link", "set", NIC, "up"]);
        net.ip(&["route", "add", "default", "via", LAN_HOST_ADDR, "dev", NIC]);
        lan_host.ip(&["link", "set", "lan", "name", "eth0"]);
        lan_host.ip(&["addr", "add", &format!("{LAN_HOST_ADDR}/24"), "dev", "eth0"]);
        lan_host.ip(&["link", "set", "eth0", "up"]);
        lan_host.ip(&["route", "add", "224.0.0.0/4", "dev", "eth0"]);

        for d in OVERLAYS {
            for part in ["upper", "work"] {
                mkdir(&dir.join("overlay").join(d).join(part));
            }
        }
        for (src, _) in BINDS {
            mkdir(&dir.join(src));
        }
        mkdir(&dir.join("mnt/cgroup"));
        for (key, value) in KUBELET_SYSCTLS {
            let file = dir.join("sysctl").join(key);
            mkdir(file.parent().expect("a parent"));
            std::fs::write(&file, format!("{value}\n")).expect("write a sysctl file");
        }
        create_cgroup(&cgroup);

        let binds: Vec<String> = BINDS.iter().map(|(s, d)| format!("{s}:{d}")).collect();
        let sysctls: Vec<String> = KUBELET_SYSCTLS.iter().map(|(k, v)| format!("{k}={v}")).collect();
        let mut holder = Command::new("setpriv")
            .args(["--pdeathsig", "KILL", "nsenter"])
            .arg(format!("--net={}", net.path()))
            .args([
                "--",
                "unshare",
                "--mount",
                "--pid",
                "--fork",
                "--kill-child",
                "--mount-proc",
            ])
            .args(["--propagation", "private", "sh", "-c", INIT_SCRIPT])
            .arg(&dir)
            .env_clear()
            .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
            .env("OVERLAYS", OVERLAYS.join(" "))
            .env("BINDS", binds.join(" "))
            .env("SYSCTLS", sysctls.join(" "))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start the node's PID 1");
        let mut first = String::new();
        let _ = BufReader::new(holder.stdout.take().expect("stdout")).read_line(&mut first);
        let init = only_child(holder.id(), Duration::from_secs(2));
        let (Some(init), "ready") = (init, first.trim()) else {
            let _ = holder.kill();
            let _ = holder.wait();
            let mut err = String::new();
            let _ = holder.stderr.take().expect("stderr").read_to_string(&mut err);
            remove_cgroup(&cgroup);
            let _ = std::fs::remove_dir_all(&dir);
            panic!("the node's namespaces did not come up: {first}{err}");
        };
        NodeHost {
            holder,
            init,
            cgroup,
            dir,
            net,
            lan_host,
        }
    }

    /// The throwaway directory (logs, configuration, the bind-mounted directories).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The root under which the node's MicroK8s tree lives as `var/snap/microk8s` (bind-mounted at
    /// `/var/snap/microk8s` on the node): what [`crate::multus::MicroK8s::create_seen_as`] takes, with `/`.
    pub fn microk8s_root(&self) -> PathBuf {
        self.dir.join("microk8s")
    }

    /// The node's PID 1, in the machine's numbering (`/proc/<it>/root` is the node's file system).
    pub fn init_pid(&self) -> u32 {
        self.init
    }

    /// A node path (`/var/lib/cni/networks`) as the machine reaches it, through PID 1's root. Symbolic links
    /// on the way are followed inside the node (the kernel would resolve an absolute one, such as
    /// `/var/run -> /run`, in the machine's root); the last component is left as it is.
    pub fn path(&self, node_path: &str) -> PathBuf {
        let root = PathBuf::from(format!("/proc/{}/root", self.init));
        let mut parts: Vec<String> = node_path
            .split('/')
            .filter(|p| !p.is_empty())
            .map(str::to_string)
            .collect();
        let mut resolved: Vec<String> = Vec::new();
        let mut hops = 0;
        while !parts.is_empty() {
            let part = parts.remove(0);
            match part.as_str() {
                "." => continue,
                ".." => {
                    resolved.pop();
                    continue;
                }
                _ => {}
            }
            let here = root.join(resolved.join("/")).join(&part);
            match std::fs::read_link(&here) {
                Ok(target) if !parts.is_empty() && hops < 40 => {
                    hops += 1;
                    let target = target.to_string_lossy().into_owned();
                    if target.starts_with('/') {
                        resolved.clear();
                    }
                    let mut rest: Vec<String> = target
                        .split('/')
                        .filter(|p| !p.is_empty())
                        .map(str::to_string)
                        .collect();
                    rest.append(&mut parts);
                    parts = rest;
                }
                _ => resolved.push(part),
            }
        }
        root.join(resolved.join("/"))
    }

    /// The cgroup, relative to each hierarchy's root (`/roslan-test-node-<id>`), under which the node's
    /// containers go: kubelet's `cgroupRoot`.
    pub fn cgroup_root(&self) -> String {
        format!("/{}", self.cgroup)
    }

    /// A command that runs `program` on the node: in its network, mount and PID namespaces, with a clean
    /// environment (`PATH`, `HOME=/root`), killed with the test thread.
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut cmd = Command::new("setpriv");
        cmd.args(["--pdeathsig", "KILL", "nsenter", "--target", &self.init.to_string()])
            .args(["--net", "--mount", "--pid", "--"])
            .arg(program)
            .env_clear()
            .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
            .env("HOME", "/root");
        cmd
    }

    /// Runs `program args` on the node and returns its output, whatever its status.
    pub fn run(&self, program: &str, args: &[&str]) -> Output {
        self.command(program)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("cannot run {program} on the node: {e}"))
    }

    /// Runs `program args` on the node; panics with its output unless it succeeds; returns its stdout.
    pub fn run_ok(&self, program: &str, args: &[&str]) -> String {
        let out = self.run(program, args);
        assert!(
            out.status.success(),
            "{program} {} on the node failed: {}{}",
            args.join(" "),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Starts `program args` on the node as a daemon logging to `<dir>/<name>.log`.
    pub fn daemon(&self, name: &str, program: &Path, args: &[String]) -> Daemon {
        let mut cmd = self.command(program);
        cmd.args(args);
        Daemon::spawn_entered(name, cmd, &self.log(name))
    }

    /// The log file of the daemon `name`.
    pub fn log(&self, name: &str) -> PathBuf {
        self.dir.join(format!("{name}.log"))
    }

    /// Files under the node directory `node_dir` whose name or (for files under 64 KiB) content contains
    /// `needle`: what CNI plugins and Multus keep about a sandbox (reservations, caches).
    pub fn files_mentioning(&self, node_dir: &str, needle: &str) -> Vec<PathBuf> {
        fn walk(dir: &Path, needle: &str, found: &mut Vec<PathBuf>) {
            for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
                let path = entry.path();
                let Ok(kind) = entry.file_type() else { continue };
                if kind.is_dir() {
                    walk(&path, needle, found);
                    continue;
                }
                let small = entry.metadata().is_ok_and(|m| m.len() < 65_536);
                let named = entry.file_name().to_string_lossy().contains(needle);
                if named || (small && std::fs::read(&path).is_ok_and(|b| String::from_utf8_lossy(&b).contains(needle)))
                {
                    found.push(path);
                }
            }
        }
        let mut found = Vec::new();
        walk(&self.path(node_dir), needle, &mut found);
        found
    }

    /// The names of the links in the node's network namespace, sorted.
    pub fn links(&self) -> Vec<String> {
        let mut links = self.net.links();
        links.sort();
        links
    }

    /// What to look for on the machine once the node is dropped ([`Trace::leftovers`]).
    pub fn trace(&self) -> Trace {
        Trace {
            dir: self.dir.clone(),
            cgroup: self.cgroup.clone(),
            init: self.init,
            netns: vec![self.net.name().to_string(), self.lan_host.name().to_string()],
        }
    }

    /// Makes the calling thread's network namespace the node's until the guard is dropped
    /// ([`Netns::enter`]), so that what the thread starts (a control plane on the node's loopback, kubectl)
    /// runs there. Only the network namespace: files and processes stay the machine's.
    pub fn enter_net(&self) -> ThreadInNetns {
        self.net.enter()
    }
}

impl Default for NodeHost {
    fn default() -> Self {
        NodeHost::new()
    }
}

impl Drop for NodeHost {
    fn drop(&mut self) {
        // SIGKILL to unshare: --kill-child kills PID 1, and with it every process of the node.
        let _ = self.holder.kill();
        let _ = self.holder.wait();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Path::new(&format!("/proc/{}", self.init)).exists() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        remove_cgroup(&self.cgroup);
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The names a dropped node must have left nothing under.
#[derive(Debug, Clone)]
pub struct Trace {
    dir: PathBuf,
    cgroup: String,
    init: u32,
    netns: Vec<String>,
}

impl Trace {
    /// Everything of the node still on the machine: its PID 1, processes whose command line names its
    /// directory, mounts in the machine's mount namespace under it, the directory itself, its cgroups, its
    /// network namespaces. Empty when the node is gone.
    pub fn leftovers(&self) -> Vec<String> {
        let mut left = Vec::new();
        let dir = self.dir.display().to_string();
        if Path::new(&format!("/proc/{}", self.init)).exists() {
            left.push(format!("the node's PID 1 ({}) runs", self.init));
        }
        for (pid, _, cmdline) in crate::runtime::processes() {
            if cmdline.contains(&dir) {
                left.push(format!("process {pid}: {cmdline}"));
            }
        }
        let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        for line in mounts.lines().filter(|l| l.contains(&dir)) {
            left.push(format!("mount: {line}"));
        }
        if self.dir.exists() {
            left.push(format!("directory {dir}"));
        }
        for root in cgroup_roots() {
            if root.join(&self.cgroup).exists() {
                left.push(format!("cgroup {}", root.join(&self.cgroup).display()));
            }
        }
        let namespaces = String::from_utf8_lossy(&try_sh("ip", &["netns", "list"]).stdout).into_owned();
        for name in &self.netns {
            if namespaces.lines().any(|l| l.split_whitespace().next() == Some(name)) {
                left.push(format!("network namespace {name}"));
            }
        }
        left
    }
}

fn mkdir(dir: &Path) {
    std::fs::create_dir_all(dir).unwrap_or_else(|e| panic!("create {}: {e}", dir.display()));
}

/// The cgroup v1 hierarchies (and the v2 one of a hybrid layout) under /sys/fs/cgroup.
fn cgroup_roots() -> Vec<PathBuf> {
    std::fs::read_dir("/sys/fs/cgroup")
        .map(|entries| entries.flatten().map(|e| e.path()).filter(|p| p.is_dir()).collect())
        .unwrap_or_default()
}

/// Creates `name` under every hierarchy's root; kubelet requires its `cgroupRoot` to exist. A new cpuset
/// cgroup has no CPUs and no memory nodes: it gets its parent's.
fn create_cgroup(name: &str) {
    for root in cgroup_roots() {
        let dir = root.join(name);
        mkdir(&dir);
        for file in ["cpuset.cpus", "cpuset.mems"] {
            if let Ok(value) = std::fs::read_to_string(root.join(file)) {
                std::fs::write(dir.join(file), value.trim())
                    .unwrap_or_else(|e| panic!("write {}: {e}", dir.join(file).display()));
            }
        }
    }
}

/// Whether the process that made a `<prefix><pid hex>x<n>` name is gone (zombies count as gone: this
/// machine's PID 1 reaps no orphans).
fn creator_gone(rest: &str) -> bool {
    let Some(pid) = rest.split('x').next().and_then(|p| u32::from_str_radix(p, 16).ok()) else {
        return false;
    };
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    stat.is_empty() || stat.rsplit_once(')').and_then(|(_, r)| r.split_whitespace().next()) == Some("Z")
}

/// Removes the directories and cgroups of nodes whose test process was killed (their processes died
/// with it, see the module documentation; their network namespaces go with [`crate::netns::clean_stale`]).
fn remove_stale() {
    if let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) {
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.strip_prefix(DIR_PREFIX).is_some_and(creator_gone) {
                let _ = std::fs::remove_dir_all(entry.path());
            }
        }
    }
    let mut stale: Vec<String> = Vec::new();
    for root in cgroup_roots() {
        for entry in std::fs::read_dir(&root).into_iter().flatten().flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.strip_prefix(CGROUP_PREFIX).is_some_and(creator_gone) && !stale.contains(&name) {
                stale.push(name);
            }
        }
    }
    for name in stale {
        remove_cgroup(&name);
    }
}

/// Addresses and routes of the node's and the LAN host's network namespaces, for failure messages.
pub fn lan_state(node: &NodeHost) -> String {
    let mut text = String::new();
    for ns in [&node.net, &node.lan_host] {
        text.push_str(&format!("--- {}:\n", ns.name()));
        text.push_str(&String::from_utf8_lossy(
            &try_sh("ip", &["-n", ns.name(), "-br", "addr"]).stdout,
        ));
        text.push_str(&sh("ip", &["-n", ns.name(), "route"]));
    }
    text
}
