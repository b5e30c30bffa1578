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
