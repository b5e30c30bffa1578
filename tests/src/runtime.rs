//! Helpers for tests that run real processes and container runtimes (containerd, podman) with private
//! state: the repository's paths, finding a runtime's binary (or failing with the package that has it),
//! waiting for a condition, and removing what runtimes leave behind even when a test fails: their
//! processes, mounts and cgroups.
//!
//! Used by `tests/runtimes.rs` (roslan under containerd's CRI and podman), `tests/image.rs` (roslan's
//! image imported and run by both) and `tests/installer.rs`.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output};
use std::time::{Duration, Instant};

use crate::netns::try_sh;

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

/// The project's Python (grpcio for the CRI client), created by `make venv`.
pub fn venv_python() -> PathBuf {
    let python = repo().join(".venv/bin/python");
    assert!(
        python.exists(),
        "{} is missing: run `make venv` (it installs tests/requirements.txt, including grpcio; `make test` does it)",
        python.display()
    );
    python
}

/// The repository root (the parent of the tests crate).
pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("repository root")
        .to_path_buf()
}

/// Fails (never skips) when a runtime's binary is missing, naming the Debian package.
pub fn need(program: &str, package: &str) -> PathBuf {
    let found = std::env::var("PATH")
        .unwrap_or_default()
        .split(':')
        .chain(["/usr/sbin", "/usr/bin", "/sbin", "/bin"])
        .map(|dir| Path::new(dir).join(program))
        .find(|p| p.exists());
    found.unwrap_or_else(|| {
        panic!("{program} is missing: apt-get install --no-install-recommends {package} (`make test` installs it)")
    })
}

/// Runs a command to completion; panics with its output unless it succeeded.
pub fn run_ok(mut command: Command, what: &str) -> Output {
    let out = command.output().unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(
        out.status.success(),
        "{what} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Processes as (pid, parent pid, command line).
pub fn processes() -> Vec<(u32, u32, String)> {
    let mut list = Vec::new();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return list;
    };
    for entry in entries.flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else {
            continue;
        };
        let stat = read(&entry.path().join("stat"));
        // "pid (comm) state ppid ...": comm may contain spaces, so split after the last ')'.
        let ppid = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(1))
            .and_then(|p| p.parse().ok())
            .unwrap_or(0);
        let cmdline = std::fs::read(entry.path().join("cmdline"))
            .map(|b| String::from_utf8_lossy(&b).replace('\0', " "))
            .unwrap_or_default();
        list.push((pid, ppid, cmdline));
    }
    list
}

/// Kills (SIGKILL) the processes whose command line contains all of `marks`, and their
/// descendants. Only ever called with marks that name this test's private paths.
pub fn kill_tree_matching(marks: &[&str]) {
    let procs = processes();
    let mut doomed: Vec<u32> = procs
        .iter()
        .filter(|(_, _, cmd)| marks.iter().all(|m| cmd.contains(m)))
        .map(|(pid, _, _)| *pid)
        .collect();
    let mut i = 0;
    while i < doomed.len() {
        let parent = doomed[i];
        for (pid, ppid, _) in &procs {
            if *ppid == parent && !doomed.contains(pid) {
                doomed.push(*pid);
            }
        }
        i += 1;
    }
    for pid in doomed {
        let _ = try_sh("kill", &["-KILL", &pid.to_string()]);
    }
}

/// Lazily unmounts everything mounted at or below `dir` (deepest first).
pub fn unmount_under(dir: &Path) {
    let prefix = dir.to_string_lossy().into_owned();
    let mut points: Vec<String> = read(Path::new("/proc/self/mountinfo"))
        .lines()
        .filter_map(|l| l.split_whitespace().nth(4).map(|p| p.replace("\\040", " ")))
        .filter(|p| p == &prefix || p.starts_with(&format!("{prefix}/")))
        .collect();
    points.sort_by_key(|p| std::cmp::Reverse(p.len()));
    points.dedup();
    for point in points {
        let _ = try_sh("umount", &["-l", &point]);
    }
}

/// Removes the cgroup `name` (a direct child of each hierarchy's root, created for this test's
/// containers) and everything below it, in every v1 controller and in the v2 hierarchy. Retries for
/// a moment: a runtime's processes may still be leaving it.
pub fn remove_cgroup(name: &str) {
    assert!(name.starts_with("roslan-test-"), "only the test's own cgroups: {name}");
    fn remove_tree(dir: &Path) -> bool {
        if let Ok(entries) = std::fs::read_dir(dir) {
            for entry in entries.flatten() {
                if entry.file_type().is_ok_and(|t| t.is_dir()) {
                    remove_tree(&entry.path());
                }
            }
        }
        std::fs::remove_dir(dir).is_ok() || !dir.exists()
    }
    let mut roots = vec![PathBuf::from("/sys/fs/cgroup")];
    if let Ok(entries) = std::fs::read_dir("/sys/fs/cgroup") {
        roots.extend(entries.flatten().map(|e| e.path()).filter(|p| p.is_dir()));
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    for root in roots {
        let dir = root.join(name);
        while dir.exists() && !remove_tree(&dir) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// Waits for a child to exit, at most `timeout`; kills it (SIGKILL) after that.
pub fn stop_child(child: &mut Child, timeout: Duration) {
    let _ = try_sh("kill", &["-TERM", &child.id().to_string()]);
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// The part of a containerd 1.6 config.toml that keeps one instance private: root, state, the gRPC and
/// ttrpc sockets (`<dir>/containerd.sock`) and the `opt` plugin's directory, all under `dir`. Tests append
/// their CRI section, whose CNI `bin_dir` and `conf_dir` must be theirs too (the CRI creates its conf dir).
pub fn private_containerd_config(dir: &Path) -> String {
    let d = dir.display();
    format!(
        r#"version = 2
root = "{d}/root"
state = "{d}/state"
[grpc]
  address = "{d}/containerd.sock"
[ttrpc]
  address = "{d}/containerd.sock.ttrpc"
[plugins."io.containerd.internal.v1.opt"]
  path = "{d}/opt"
"#
    )
}

/// Polls `done` until it holds or `timeout` passes; returns its last answer.
pub fn wait_until(timeout: Duration, mut done: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if done() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    done()
}

/// A mount namespace of its own for the processes of one node (its runtime, the runtime's shims and CNI
/// plugins, Multus' daemon), so that paths Multus and runtimes hard-code stay out of the machine's:
/// `/run` is a fresh tmpfs (network namespace files, containerd's shim sockets, `/run/secrets`), and
/// `/var/lib/cni` (libcni's cache, Multus' `/var/lib/cni/multus`, host-local's
/// default data) is a directory of the test's, bind-mounted. A sleeping holder process keeps the
/// namespace; every node process joins it with [`NodeMounts::command`], in the node's network namespace.
/// Nothing is mounted in the machine's mount namespace: the mounts vanish with the namespace's last
/// process. The test reads what the node's processes see through `/proc/<holder>/root`
/// ([`NodeMounts::host_path`]).
#[derive(Debug)]
pub struct NodeMounts {
    holder: Child,
    netns: String,
    var_lib_cni: PathBuf,
}

/// What [`NodeMounts`] adds besides `/run` and `/var/lib/cni`.
#[derive(Debug, Default)]
pub struct NodeMountOptions {
    /// A pod's service account, as `/var/run/secrets/kubernetes.io/serviceaccount/{token,ca.crt}`
    /// (thick Multus' daemon reads its in-cluster configuration there): the token and the CA file.
    pub service_account: Option<(String, PathBuf)>,
    /// Make `/opt/cni/bin` a symbolic link to this directory (on a tmpfs over `/opt`), as MicroK8s links
    /// the host's `/opt/cni/bin` to `$SNAP_DATA/opt/cni/bin` when the host has none: Multus' default
    /// `binDir`, the only place thick Multus' daemon looks for delegates.
    pub opt_cni_bin: Option<PathBuf>,
    /// Bind the whole tree at this directory, as `/` is mounted at `/hostroot` in thick Multus' pod (new
    /// mounts under `/run`, such as a sandbox's network namespace, reach it too).
    pub hostroot: Option<PathBuf>,
}

/// The holder's script: `$0` is the directory for `/var/lib/cni`, `$1` the service account directory (or
/// empty), `$2` the hostroot (or empty), `$3` the file to create when ready, `$4` the target of
/// `/opt/cni/bin` (or empty).
const NODE_MOUNTS_SCRIPT: &str = r#"set -e
mount -t tmpfs -o mode=0755,size=64m roslan-node-run /run
mount --make-shared /run
if [ ! -d /var/lib/cni ]; then mount -t tmpfs -o mode=0755 roslan-node-var-lib /var/lib; mkdir /var/lib/cni; fi
mount --bind "$0" /var/lib/cni
if [ -n "$1" ]; then
  mkdir -p /run/secrets/kubernetes.io/serviceaccount
  cp "$1/token" "$1/ca.crt" /run/secrets/kubernetes.io/serviceaccount/
fi
if [ -n "$4" ]; then mount -t tmpfs -o mode=0755 roslan-node-opt /opt; mkdir /opt/cni; ln -s "$4" /opt/cni/bin; fi
if [ -n "$2" ]; then mkdir -p "$2"; mount --rbind / "$2"; mount --make-rslave "$2"; fi
touch "$3"
exec sleep infinity"#;

impl NodeMounts {
    /// Makes the namespace, its holder running in `netns` (a path such as `/run/netns/<name>`), with its
    /// files under `dir` (which the test owns and removes).
    pub fn new(netns: &str, dir: &Path, options: NodeMountOptions) -> NodeMounts {
        let var_lib_cni = dir.join("var-lib-cni");
        std::fs::create_dir_all(&var_lib_cni).expect("create the node's /var/lib/cni");
        let sa_dir = match &options.service_account {
            Some((token, ca)) => {
                let sa = dir.join("serviceaccount");
                std::fs::create_dir_all(&sa).expect("create the service account dir");
                std::fs::write(sa.join("token"), token).expect("write the token");
                std::fs::copy(ca, sa.join("ca.crt")).expect("copy the CA");
                sa.display().to_string()
            }
            None => String::new(),
        };
        let hostroot = options
            .hostroot
            .as_ref()
            .map(|p| p.display().to_string())
            .unwrap_or_default();
        let ready = dir.join("node-mounts.ready");
        let mut cmd = Command::new("setpriv");
        cmd.args(["--pdeathsig", "KILL", "--", "nsenter"])
            .arg(format!("--net={netns}"))
            .args([
                "unshare",
                "--mount",
                "--propagation",
                "private",
                "sh",
                "-c",
                NODE_MOUNTS_SCRIPT,
            ])
            .arg(&var_lib_cni)
            .arg(sa_dir)
            .arg(hostroot)
            .arg(&ready)
            .arg(
                options
                    .opt_cni_bin
                    .as_ref()
                    .map(|p| p.display().to_string())
                    .unwrap_or_default(),
            )
            .stdin(std::process::Stdio::null());
        let mut holder = cmd.spawn().expect("start the node's mount namespace");
        let up = wait_until(Duration::from_secs(10), || {
            ready.exists() || holder.try_wait().ok().flatten().is_some()
        });
        if !up || !ready.exists() {
            let _ = holder.kill();
            let _ = holder.wait();
            panic!("the node's mount namespace did not come up");
        }
        NodeMounts {
            holder,
            netns: netns.to_string(),
            var_lib_cni,
        }
    }

    /// The holder's pid.
    pub fn pid(&self) -> u32 {
        self.holder.id()
    }

    /// `program` to run in the node's mount and network namespaces.
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut cmd = Command::new("nsenter");
        cmd.arg(format!("--mount=/proc/{}/ns/mnt", self.pid()))
            .arg(format!("--net={}", self.netns))
            .arg(program);
        cmd
    }

    /// A path as the node's processes see it (`/var/run/netns/cni-...`), reachable from the test. Under
    /// `/proc/<pid>/root` an absolute symbolic link resolves against the test's own root, so `/var/run`
    /// (a link to `/run` on Debian) is replaced by its target first.
    pub fn host_path(&self, node_path: &str) -> PathBuf {
        let path = match node_path.strip_prefix("/var/run/") {
            Some(rest) => format!("/run/{rest}"),
            None => node_path.to_string(),
        };
        PathBuf::from(format!("/proc/{}/root{path}", self.pid()))
    }

    /// The directory mounted at the node's `/var/lib/cni`.
    pub fn var_lib_cni(&self) -> &Path {
        &self.var_lib_cni
    }
}

impl Drop for NodeMounts {
    fn drop(&mut self) {
        let _ = self.holder.kill();
        let _ = self.holder.wait();
    }
}
