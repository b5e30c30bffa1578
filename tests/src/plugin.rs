//! Running a CNI plugin binary exactly as a runtime does: a clean environment with the CNI_*
//! variables, the network configuration on stdin, the result or error JSON read from stdout.

use std::ffi::OsString;
use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use serde_json::Value;

use crate::netns::Netns;

/// The build directory (`target/debug` or `target/release`) of the running test binary.
fn build_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    let dir = exe.parent().expect("exe dir");
    if dir.ends_with("deps") {
        dir.parent().expect("target dir").to_path_buf()
    } else {
        dir.to_path_buf()
    }
}

/// A binary of this workspace, built in the same profile as the tests (`ROSLAN_BIN_DIR` overrides).
pub fn workspace_bin(name: &str) -> PathBuf {
    let dir = std::env::var_os("ROSLAN_BIN_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(build_dir);
    let path = dir.join(name);
    assert!(
        path.exists(),
        "{} is missing: build it first (`cargo build --workspace`, or `make test`)",
        path.display()
    );
    path
}

/// The fault-injection build of `roslan` (`--features fault-injection`, in target/faults), which stops
/// dead at the crash point named by `ROSLAN_FAULT`.
pub fn fault_bin() -> PathBuf {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/faults/debug/roslan");
    assert!(
        path.exists(),
        "{} is missing: build it with `cargo build -p roslan --features fault-injection --target-dir target/faults` (make test does)",
        path.display()
    );
    path
}

/// The `roslan` plugin under test.
pub fn roslan_bin() -> PathBuf {
    workspace_bin("roslan")
}

/// Where Debian's containernetworking-plugins put the reference binaries.
pub const REFERENCE_DIR: &str = "/usr/lib/cni";

/// One build of the reference plugins (containernetworking/plugins: macvlan, host-local, ...). Tests
/// that compare roslan with "the reference" run both: the upstream release users run today, which the
/// goals compare against, and Debian's 2022 build, which is what a Debian node has.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reference {
    /// For messages and tables: `upstream v1.10.0`, `Debian 1.1.1`.
    pub name: String,
    /// Where its binaries are; also the CNI_PATH its macvlan gets, so it runs its own host-local.
    pub dir: PathBuf,
}

impl Reference {
    /// Debian's containernetworking-plugins (1.1.1 on bookworm) in /usr/lib/cni, which `make test`
    /// installs.
    pub fn debian() -> Reference {
        let version = std::process::Command::new("dpkg-query")
            .args(["-W", "-f", "${Version}", "containernetworking-plugins"])
            .output()
            .ok()
            .and_then(|out| String::from_utf8(out.stdout).ok())
            .and_then(|v| v.split(['+', '-']).next().map(str::to_string))
            .filter(|v| !v.is_empty())
            .unwrap_or_else(|| "1.1.1".to_string());
        Reference {
            name: format!("Debian {version}"),
            dir: PathBuf::from(REFERENCE_DIR),
        }
    }

    /// The upstream release pinned in tests/peers/plugins and built by `make peers`.
    pub fn upstream() -> Reference {
        let plugins = crate::peers::peer("plugins");
        Reference {
            name: format!("upstream {}", plugins.version),
            dir: plugins.bin_dir(),
        }
    }

    /// Both, upstream first: every comparison runs against each.
    pub fn all() -> [Reference; 2] {
        [Reference::upstream(), Reference::debian()]
    }

    /// One of its plugins; panics with the command that installs it when missing.
    pub fn bin(&self, name: &str) -> PathBuf {
        let path = self.dir.join(name);
        assert!(
            path.exists(),
            "{} ({}) is missing: `make test` installs Debian's (apt-get install containernetworking-plugins) and builds upstream's (make peers)",
            path.display(),
            self.name
        );
        path
    }

    /// A call of its `plugin` with CNI_PATH set to its own directory.
    pub fn call<'a>(
        &self,
        plugin: &str,
        command: &'a str,
        container_id: &str,
        netns: &str,
        ifname: &str,
        conf: &Value,
    ) -> Call<'a> {
        let mut call = Call::new(self.bin(plugin), command, container_id, netns, ifname, conf);
        call.cni_path = self.dir.to_string_lossy().into_owned();
        call
    }
}

/// A plugin of Debian's reference build, for tests that need one as a tool rather than as the thing
/// compared (a host-local sharing a directory uses [`Reference::all`]).
pub fn reference_bin(name: &str) -> PathBuf {
    Reference::debian().bin(name)
}

/// The address of `ips[i]` in a CNI result, without its prefix length (`10.77.1.10`), as the store names
/// its files; panics with the result when there is none.
pub fn result_ip(result: &Value, i: usize) -> String {
    result["ips"][i]["address"]
        .as_str()
        .and_then(|a| a.split('/').next())
        .unwrap_or_else(|| panic!("no ips[{i}].address in {result}"))
        .to_string()
}

/// One invocation.
#[derive(Clone, Debug)]
pub struct Call<'a> {
    /// The binary.
    pub plugin: PathBuf,
    /// CNI_COMMAND.
    pub command: &'a str,
    /// CNI_CONTAINERID.
    pub container_id: String,
    /// CNI_NETNS.
    pub netns: String,
    /// CNI_IFNAME.
    pub ifname: String,
    /// CNI_ARGS.
    pub args: String,
    /// CNI_PATH.
    pub cni_path: String,
    /// Raw stdin (the config serialised, unless overridden).
    pub stdin: Vec<u8>,
    /// Extra environment variables.
    pub env: Vec<(&'a str, String)>,
    /// Environment variables as raw bytes (applied last, so they can replace a CNI_* variable with a
    /// value that is not UTF-8).
    pub env_os: Vec<(&'a str, OsString)>,
    /// The working directory the plugin starts in (the caller's when `None`).
    pub cwd: Option<PathBuf>,
    /// Environment variables to leave out entirely.
    pub unset: Vec<&'a str>,
    /// A command the plugin runs under, e.g. `["unshare", "--uts", ...]` to give it another host name.
    pub wrapper: Vec<String>,
}

/// What the plugin did.
#[derive(Clone, Debug)]
pub struct Reply {
    /// Exit status (-1 if killed).
    pub status: i32,
    /// stdout.
    pub stdout: String,
    /// stderr.
    pub stderr: String,
    /// stdout parsed as JSON, if it is JSON.
    pub json: Option<Value>,
}

impl Reply {
    /// The CNI error code, if stdout holds an error object.
    pub fn code(&self) -> Option<u64> {
        self.json.as_ref().and_then(|j| j.get("code")).and_then(Value::as_u64)
    }

    /// The error message, if any.
    pub fn msg(&self) -> String {
        self.json
            .as_ref()
            .and_then(|j| j.get("msg"))
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    }
}

impl fmt::Display for Reply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "exit {}; stdout: {}; stderr: {}",
            self.status,
            self.stdout.trim(),
            self.stderr.trim()
        )
    }
}

impl<'a> Call<'a> {
    /// A call of `plugin` with `conf` on stdin.
    pub fn new(
        plugin: PathBuf,
        command: &'a str,
        container_id: &str,
        netns: &str,
        ifname: &str,
        conf: &Value,
    ) -> Call<'a> {
        Call {
            plugin,
            command,
            container_id: container_id.to_string(),
            netns: netns.to_string(),
            ifname: ifname.to_string(),
            args: String::new(),
            cni_path: REFERENCE_DIR.to_string(),
            stdin: serde_json::to_vec(conf).expect("serialise config"),
            env: Vec::new(),
            env_os: Vec::new(),
            cwd: None,
            unset: Vec::new(),
            wrapper: Vec::new(),
        }
    }

    /// A call of roslan.
    pub fn roslan(command: &'a str, container_id: &str, netns: &str, ifname: &str, conf: &Value) -> Call<'a> {
        Call::new(roslan_bin(), command, container_id, netns, ifname, conf)
    }

    /// Sets CNI_ARGS.
    pub fn args(mut self, args: &str) -> Call<'a> {
        self.args = args.to_string();
        self
    }

    /// Sets an environment variable to raw bytes (not necessarily UTF-8).
    pub fn env_bytes(mut self, key: &'a str, value: &[u8]) -> Call<'a> {
        use std::os::unix::ffi::OsStringExt;
        self.env_os.push((key, OsString::from_vec(value.to_vec())));
        self
    }

    /// The command that runs the plugin inside `ns`.
    pub fn command_in(&self, ns: &Netns) -> Command {
        let plugin = self.plugin.to_str().expect("utf-8 path");
        match self.wrapper.split_first() {
            None => self.prepare(ns.command(plugin)),
            Some((program, args)) => {
                let mut cmd = ns.command(program);
                cmd.args(args).arg(plugin);
                self.prepare(cmd)
            }
        }
    }

    fn prepare(&self, mut cmd: Command) -> Command {
        cmd.env_clear().env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin");
        let vars = [
            ("CNI_COMMAND", self.command.to_string()),
            ("CNI_CONTAINERID", self.container_id.clone()),
            ("CNI_NETNS", self.netns.clone()),
            ("CNI_IFNAME", self.ifname.clone()),
            ("CNI_ARGS", self.args.clone()),
            ("CNI_PATH", self.cni_path.clone()),
        ];
        for (key, value) in vars {
            if !self.unset.contains(&key) {
                cmd.env(key, value);
            }
        }
        for (key, value) in &self.env {
            cmd.env(key, value);
        }
        for (key, value) in &self.env_os {
            cmd.env(key, value);
        }
        if let Some(dir) = &self.cwd {
            cmd.current_dir(dir);
        }
        cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
        cmd
    }

    /// Runs the plugin inside `ns` and collects its reply.
    pub fn run_in(&self, ns: &Netns) -> Reply {
        self.run_command(self.command_in(ns), None)
    }

    /// Runs the plugin in the caller's own namespace (IPAM plugins need no namespace).
    pub fn run(&self) -> Reply {
        self.run_command(self.prepare(Command::new(&self.plugin)), None)
    }

    /// Like [`Call::run_in`], but a plugin still running after `limit` is killed and the reply says so
    /// (exit -1, stderr naming the limit): a runner that scores other people's plugins must not hang
    /// with them. `ip netns exec` execs the plugin, so the child's pid is the plugin's.
    pub fn run_in_within(&self, ns: &Netns, limit: Duration) -> Reply {
        self.run_command(self.command_in(ns), Some(limit))
    }

    fn run_command(&self, mut command: Command, limit: Option<Duration>) -> Reply {
        let mut child = command
            .spawn()
            .unwrap_or_else(|err| panic!("spawn {}: {err}", self.plugin.display()));
        if let Some(mut stdin) = child.stdin.take() {
            let _ = stdin.write_all(&self.stdin);
        }
        let (out, killed_after) = match limit {
            None => (child.wait_with_output(), None),
            Some(limit) => {
                let pid = nix::unistd::Pid::from_raw(child.id() as i32);
                let (done, waited) = mpsc::channel();
                std::thread::spawn(move || {
                    let _ = done.send(child.wait_with_output());
                });
                match waited.recv_timeout(limit) {
                    Ok(out) => (out, None),
                    Err(_) => {
                        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
                        (waited.recv().expect("waiter thread"), Some(limit))
                    }
                }
            }
        };
        let out = out.expect("wait for plugin");
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        let mut stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        if let Some(limit) = killed_after {
            stderr.push_str(&format!("\n(killed: still running after {} s)", limit.as_secs()));
        }
        Reply {
            status: if killed_after.is_some() {
                -1
            } else {
                out.status.code().unwrap_or(-1)
            },
            json: serde_json::from_str(stdout.trim()).ok(),
            stdout,
            stderr,
        }
    }
}
