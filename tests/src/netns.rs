//! Throwaway network namespaces and links, named so that nothing collides and everything is removed.
//!
//! Every name starts with a per-process, per-object prefix, so tests can run in parallel and a crashed
//! run's leftovers are recognisable (`make clean-netns` removes them). Namespaces are deleted on drop,
//! including when a test panics; deleting a namespace deletes every link inside it.

use std::process::{Command, Output};
use std::sync::atomic::{AtomicU32, Ordering};

use serde_json::Value;

/// Prefix of every namespace this crate creates.
pub const PREFIX: &str = "rlt";

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// A unique short token: process id and a counter, in hex.
pub fn unique() -> String {
    format!("{:x}x{:x}", std::process::id(), COUNTER.fetch_add(1, Ordering::Relaxed))
}

/// Runs a command and returns its output, panicking with the command line and stderr on failure.
pub fn sh(program: &str, args: &[&str]) -> String {
    let out = try_sh(program, args);
    assert!(
        out.status.success(),
        "{program} {} failed: {}{}",
        args.join(" "),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Runs a command and returns its output whatever the status.
pub fn try_sh(program: &str, args: &[&str]) -> Output {
    Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|err| panic!("cannot run {program}: {err}"))
}

/// A named network namespace under /run/netns, deleted on drop.
#[derive(Debug)]
pub struct Netns {
    name: String,
}

impl Netns {
    /// Creates `<PREFIX><unique>-<role>` with `lo` up.
    pub fn new(role: &str) -> Netns {
        let name = format!("{PREFIX}{}-{role}", unique());
        sh("ip", &["netns", "add", &name]);
        let ns = Netns { name };
        ns.ip(&["link", "set", "lo", "up"]);
        ns
    }

    /// The namespace's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Its path, as a runtime passes it in CNI_NETNS.
    pub fn path(&self) -> String {
        format!("/run/netns/{}", self.name)
    }

    /// `ip -n <ns> args...`, panicking on failure.
    pub fn ip(&self, args: &[&str]) -> String {
        let mut full = vec!["-n", self.name.as_str()];
        full.extend_from_slice(args);
        sh("ip", &full)
    }

    /// `ip -n <ns> args...` without checking the status.
    pub fn try_ip(&self, args: &[&str]) -> Output {
        let mut full = vec!["-n", self.name.as_str()];
        full.extend_from_slice(args);
        try_sh("ip", &full)
    }

    /// `ip -j -n <ns> args...` parsed as JSON.
    pub fn ip_json(&self, args: &[&str]) -> Value {
        let mut full = vec!["-j", "-n", self.name.as_str()];
        full.extend_from_slice(args);
        let text = sh("ip", &full);
        if text.trim().is_empty() {
            Value::Array(Vec::new())
        } else {
            serde_json::from_str(&text).unwrap_or(Value::Null)
        }
    }

    /// A command to run inside the namespace (`ip netns exec`, which also remounts /sys for it).
    pub fn command(&self, program: &str) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.name, program]);
        cmd
    }

    /// Runs a command inside the namespace and returns its output.
    pub fn exec(&self, program: &str, args: &[&str]) -> Output {
        self.command(program)
            .args(args)
            .output()
            .unwrap_or_else(|err| panic!("cannot run {program}: {err}"))
    }

    /// Names of the links in the namespace.
    pub fn links(&self) -> Vec<String> {
        self.ip_json(&["link", "show"])
            .as_array()
            .map(|links| {
                links
                    .iter()
                    .filter_map(|l| l["ifname"].as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// True if the namespace holds a link of that name.
    pub fn has_link(&self, name: &str) -> bool {
        self.links().iter().any(|l| l == name)
    }

    /// The link's details from `ip -d -j link show`.
    pub fn link(&self, name: &str) -> Option<Value> {
        let out = self.try_ip(&["-d", "-j", "link", "show", "dev", name]);
        if !out.status.success() {
            return None;
        }
        serde_json::from_slice::<Value>(&out.stdout)
            .ok()
            .and_then(|v| v.get(0).cloned())
    }

    /// True if the link `dev` has `flag` (as `ip link` names it: `MULTICAST`, `UP`, ...); panics if the link
    /// is missing, which in a test is a failure in itself.
    pub fn has_flag(&self, dev: &str, flag: &str) -> bool {
        let link = self.link(dev).unwrap_or_else(|| panic!("no {dev} in {}", self.name));
        link["flags"]
            .as_array()
            .is_some_and(|flags| flags.iter().any(|f| f == flag))
    }

    /// Addresses (`a.b.c.d/p`) on a link, of both families, link-local excluded.
    pub fn addresses(&self, dev: &str) -> Vec<String> {
        let out = self.try_ip(&["-j", "addr", "show", "dev", dev]);
        let value: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
        value
            .get(0)
            .and_then(|l| l["addr_info"].as_array())
            .map(|infos| {
                infos
                    .iter()
                    .filter(|i| i["scope"] != "link")
                    .map(|i| format!("{}/{}", i["local"].as_str().unwrap_or_default(), i["prefixlen"]))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Routes of a family (`-4`/`-6`) in the main table, as JSON objects.
    pub fn routes(&self, family: &str) -> Vec<Value> {
        self.ip_json(&[family, "route", "show", "table", "main"])
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    /// Reads a sysctl inside the namespace.
    pub fn sysctl(&self, key: &str) -> String {
        let out = self.exec("sysctl", &["-n", key]);
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = try_sh("ip", &["netns", "del", &self.name]);
    }
}

impl Netns {
    /// Moves the calling thread into this namespace until the guard is dropped, so that what it starts
    /// (a control plane on 127.0.0.1) and what it connects to share this namespace's loopback with the
    /// processes a runtime starts here. Only this thread moves; keep the guard on the thread that made it
    /// and drop it before the namespace.
    pub fn enter(&self) -> ThreadInNetns {
        let original = std::fs::File::open("/proc/thread-self/ns/net").expect("open this thread's netns");
        let target = std::fs::File::open(self.path()).unwrap_or_else(|err| panic!("open {}: {err}", self.path()));
        nix::sched::setns(&target, nix::sched::CloneFlags::CLONE_NEWNET)
            .unwrap_or_else(|err| panic!("enter {}: {err}", self.name));
        ThreadInNetns { original }
    }
}

/// The calling thread's own network namespace, restored on drop (see [`Netns::enter`]).
#[derive(Debug)]
pub struct ThreadInNetns {
    original: std::fs::File,
}

impl Drop for ThreadInNetns {
    fn drop(&mut self) {
        let _ = nix::sched::setns(&self.original, nix::sched::CloneFlags::CLONE_NEWNET);
    }
}

/// Removes namespaces left by killed runs of this test suite (anything with our prefix whose creating
/// process is gone).
pub fn clean_stale() {
    let out = try_sh("ip", &["netns", "list"]);
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let name = line.split_whitespace().next().unwrap_or_default();
        let Some(rest) = name.strip_prefix(PREFIX) else {
            continue;
        };
        let pid = rest.split('x').next().and_then(|p| u32::from_str_radix(p, 16).ok());
        if pid.is_some_and(|pid| !std::path::Path::new(&format!("/proc/{pid}")).exists()) {
            let _ = try_sh("ip", &["netns", "del", name]);
        }
    }
}
