//! Host paths seen through the host-root mount.
//!
//! Host paths are full of symbolic links: MicroK8s' `/var/snap/microk8s/current` points at the active
//! snap revision and the snap may make `/opt/cni/bin` a link to its own bin dir. An absolute link
//! target means the *host's* `/`, which inside the installer's container is `--host-root`; letting
//! the kernel follow it would land in the container's own filesystem and install the plugin where no
//! runtime will ever look. So links are followed here, one component at a time, with absolute targets
//! re-rooted at the host root and `..` never climbing above it. Resolving on every check (rather than
//! once) also picks up a `current` that a snap refresh switched.

use std::ffi::OsString;
use std::fs;
use std::io;
use std::path::{Component, Path, PathBuf};

use crate::error::Error;

/// Where MicroK8s' snap keeps its active revision's data.
pub const MICROK8S_CURRENT: &str = "/var/snap/microk8s/current";
/// MicroK8s' CNI bin dir (its containerd's `bin_dir`).
pub const MICROK8S_BIN_DIR: &str = "/var/snap/microk8s/current/opt/cni/bin";
/// The conventional CNI bin dir.
pub const DEFAULT_BIN_DIR: &str = "/opt/cni/bin";

/// Same limit as the kernel's (MAXSYMLINKS): a loop fails instead of spinning.
const MAX_LINKS: usize = 40;

/// The host's filesystem, mounted somewhere in ours.
#[derive(Clone, Debug)]
pub struct HostRoot {
    root: PathBuf,
}

impl HostRoot {
    /// Checks that the mount point is a directory.
    pub fn new(root: &Path) -> Result<HostRoot, Error> {
        if !root.is_dir() {
            return Err(Error::HostRoot { path: root.into() });
        }
        Ok(HostRoot { root: root.into() })
    }

    /// The mount point.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Where the host path `host` is in the installer's filesystem, every link followed inside the
    /// host root. Components that do not exist are kept as they are.
    pub fn resolve(&self, host: &Path) -> Result<PathBuf, Error> {
        resolve_in(&self.root, host).map_err(Error::io("resolve", self.root.join(relative(host))))
    }

    /// Like [`HostRoot::resolve`] for everything but the last component, which is kept as is: a
    /// file the installer replaces by rename must not be followed if it is a link (the rename
    /// replaces the link itself).
    pub fn resolve_parent(&self, host: &Path) -> Result<PathBuf, Error> {
        let name = host
            .file_name()
            .ok_or_else(|| Error::Usage(format!("{} names a directory, not a file", host.display())))?;
        let parent = host.parent().unwrap_or(Path::new("/"));
        Ok(self.resolve(parent)?.join(name))
    }

    /// The CNI bin dir (a host path) and why it was chosen.
    ///
    /// MicroK8s is recognised by `/var/snap/microk8s/current`, but a DaemonSet that mounts
    /// `/var/snap/microk8s/current/opt/cni/bin` makes the container runtime create that path as
    /// empty mount-point directories inside the container on *every* node. So `current` only counts
    /// when it holds more than that skeleton: something besides `opt`, or a non-empty bin dir (a
    /// real MicroK8s node always has its bundled plugins there).
    pub fn cni_bin_dir(&self, explicit: Option<&Path>) -> Result<(PathBuf, String), Error> {
        if let Some(dir) = explicit {
            return Ok((Path::new("/").join(relative(dir)), "from --cni-bin-dir".into()));
        }
        let current = self.resolve(Path::new(MICROK8S_CURRENT))?;
        if !current.is_dir() {
            return Ok((
                DEFAULT_BIN_DIR.into(),
                format!("no MicroK8s: {MICROK8S_CURRENT} does not exist on the host"),
            ));
        }
        let others = entries(&current).iter().any(|name| name != "opt");
        let bin = self.resolve(Path::new(MICROK8S_BIN_DIR))?;
        if others || !entries(&bin).is_empty() {
            Ok((
                MICROK8S_BIN_DIR.into(),
                format!("MicroK8s node: {MICROK8S_CURRENT} exists"),
            ))
        } else {
            Ok((
                DEFAULT_BIN_DIR.into(),
                format!(
                    "no MicroK8s: {MICROK8S_CURRENT} holds only an empty opt/cni/bin, the mount point of a hostPath volume"
                ),
            ))
        }
    }
}

/// `host` without its root, so that joining it to the host root stays inside.
fn relative(host: &Path) -> PathBuf {
    host.components()
        .filter(|c| !matches!(c, Component::RootDir | Component::Prefix(_)))
        .collect()
}

/// Names in a directory; empty when it cannot be read.
fn entries(dir: &Path) -> Vec<OsString> {
    fs::read_dir(dir)
        .map(|it| it.filter_map(|e| e.ok()).map(|e| e.file_name()).collect())
        .unwrap_or_default()
}

/// The components still to walk, as a stack (next one last).
fn push_components(stack: &mut Vec<OsString>, path: &Path) {
    let parts: Vec<OsString> = path
        .components()
        .filter_map(|c| match c {
            Component::Normal(part) => Some(part.to_os_string()),
            Component::ParentDir => Some(OsString::from("..")),
            _ => None,
        })
        .collect();
    stack.extend(parts.into_iter().rev());
}

/// Resolves `path` as if `root` were `/`.
pub fn resolve_in(root: &Path, path: &Path) -> io::Result<PathBuf> {
    let mut pending = Vec::new();
    push_components(&mut pending, path);
    let mut resolved = PathBuf::new();
    let mut links = 0;
    while let Some(part) = pending.pop() {
        if part == ".." {
            resolved.pop();
            continue;
        }
        let candidate = resolved.join(&part);
        let full = root.join(&candidate);
        match fs::symlink_metadata(&full) {
            Ok(meta) if meta.file_type().is_symlink() => {
                links += 1;
                if links > MAX_LINKS {
                    return Err(io::Error::other(format!(
                        "more than {MAX_LINKS} symbolic links (a loop?) at {}",
                        full.display()
                    )));
                }
                let target = fs::read_link(&full)?;
                if target.has_root() {
                    resolved = PathBuf::new();
                }
                push_components(&mut pending, &target);
            }
            Ok(_) => resolved = candidate,
            Err(err) if err.kind() == io::ErrorKind::NotFound => resolved = candidate,
            Err(err) if err.kind() == io::ErrorKind::NotADirectory => resolved = candidate,
            Err(err) => return Err(err),
        }
    }
    Ok(root.join(resolved))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    struct Scratch(PathBuf);
    impl Scratch {
        fn new(tag: &str) -> Scratch {
            let dir = std::env::temp_dir().join(format!("roslan-install-unit-{tag}-{}", std::process::id()));
            let _ = fs::remove_dir_all(&dir);
            fs::create_dir_all(&dir).unwrap();
            Scratch(dir)
        }
    }
    impl Drop for Scratch {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    #[test]
    fn absolute_links_stay_under_the_host_root() {
        let s = Scratch::new("abs");
        let root = &s.0;
        fs::create_dir_all(root.join("var/snap/microk8s/7394/opt/cni/bin")).unwrap();
        symlink("7394", root.join("var/snap/microk8s/current")).unwrap();
        fs::create_dir_all(root.join("opt/cni")).unwrap();
        // As the snap makes it: an absolute link that means the host's /var, not the container's.
        symlink("/var/snap/microk8s/current/opt/cni/bin", root.join("opt/cni/bin")).unwrap();
        let resolved = resolve_in(root, Path::new("/opt/cni/bin")).unwrap();
        assert_eq!(resolved, root.join("var/snap/microk8s/7394/opt/cni/bin"));
        let host = HostRoot::new(root).unwrap();
        assert_eq!(
            host.resolve_parent(Path::new("/opt/cni/bin/roslan")).unwrap(),
            root.join("var/snap/microk8s/7394/opt/cni/bin/roslan")
        );
    }

    #[test]
    fn dotdot_and_loops() {
        let s = Scratch::new("dots");
        let root = &s.0;
        fs::create_dir_all(root.join("a/b")).unwrap();
        symlink("../../../../..", root.join("a/b/up")).unwrap();
        assert_eq!(resolve_in(root, Path::new("/a/b/up/etc")).unwrap(), root.join("etc"));
        symlink("loop2", root.join("loop1")).unwrap();
        symlink("loop1", root.join("loop2")).unwrap();
        let err = resolve_in(root, Path::new("/loop1/x")).unwrap_err();
        assert!(err.to_string().contains("symbolic links"), "{err}");
        assert_eq!(
            resolve_in(root, Path::new("/missing/x")).unwrap(),
            root.join("missing/x")
        );
    }

    #[test]
    fn microk8s_detection_ignores_a_mount_point_skeleton() {
        let s = Scratch::new("mk8s");
        let root = &s.0;
        let host = HostRoot::new(root).unwrap();
        assert_eq!(host.cni_bin_dir(None).unwrap().0, PathBuf::from(DEFAULT_BIN_DIR));
        fs::create_dir_all(root.join("var/snap/microk8s/current/opt/cni/bin")).unwrap();
        let (dir, why) = host.cni_bin_dir(None).unwrap();
        assert_eq!(dir, PathBuf::from(DEFAULT_BIN_DIR), "{why}");
        assert!(why.contains("mount point"), "{why}");
        fs::write(root.join("var/snap/microk8s/current/opt/cni/bin/calico"), b"").unwrap();
        assert_eq!(host.cni_bin_dir(None).unwrap().0, PathBuf::from(MICROK8S_BIN_DIR));
        assert_eq!(
            host.cni_bin_dir(Some(Path::new("/usr/lib/cni"))).unwrap().0,
            PathBuf::from("/usr/lib/cni")
        );
    }
}
