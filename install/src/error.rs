//! The installer's errors. Each message says what to change, because the reader is an operator
//! looking at `kubectl logs` of a pod in CrashLoopBackOff, not someone with the source at hand.

use std::io;
use std::path::PathBuf;

use roslan::netlink::NetlinkError;

/// Everything that can stop a step.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The options contradict each other or are incomplete.
    #[error("invalid options: {0}")]
    Usage(String),

    /// --host-root does not point at a directory.
    #[error(
        "host root {path} is not a directory: mount the host's filesystem (or the directories roslan needs) there with hostPath volumes, or pass --host-root / ROSLAN_HOST_ROOT"
    )]
    HostRoot {
        /// The path in the installer's filesystem.
        path: PathBuf,
    },

    /// The CNI bin dir is not visible under the host root.
    #[error(
        "CNI bin dir {host} does not exist under the host root (looked at {local}): mount the host's directory there with a hostPath volume, or pass the right one in --cni-bin-dir / ROSLAN_CNI_BIN_DIR"
    )]
    BinDir {
        /// The host path.
        host: PathBuf,
        /// Where it was looked for in the installer's filesystem.
        local: PathBuf,
    },

    /// The image does not hold the plugin.
    #[error(
        "{path} is missing: the image must ship roslan in --source-dir (ROSLAN_SOURCE_DIR, default /opt/roslan/bin); check the image tag and that option"
    )]
    SourceMissing {
        /// The expected source binary.
        path: PathBuf,
    },

    /// A file operation failed.
    #[error("cannot {what} {path}: {source}{}", io_hint(source))]
    Io {
        /// The operation, as a verb phrase ("write", "read", "rename into place").
        what: &'static str,
        /// The path it concerned.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: io::Error,
    },

    /// A binary did not answer CNI VERSION as a CNI plugin must.
    #[error(
        "{path} does not answer CNI VERSION ({detail}); check that the image matches the node's architecture and that the CNI bin dir is not mounted noexec"
    )]
    Verify {
        /// The binary that was run.
        path: PathBuf,
        /// What went wrong.
        detail: String,
    },

    /// A new copy failed its check before the rename, so it was not installed.
    #[error("{path} was not replaced, the new copy was not put in place: {reason}")]
    Rejected {
        /// The host path that keeps its old content (or stays absent).
        path: PathBuf,
        /// Why the new copy was refused.
        reason: Box<Error>,
    },

    /// --node-name is not a Kubernetes node name.
    #[error(
        "invalid node name {name:?}: {why}; set ROSLAN_NODE_NAME from the downward API (valueFrom.fieldRef.fieldPath: spec.nodeName)"
    )]
    NodeName {
        /// The value given.
        name: String,
        /// What is wrong with it.
        why: String,
    },

    /// A sysctl could not be read or written.
    #[error("sysctl {key} ({path}): {detail}")]
    Sysctl {
        /// Dotted key.
        key: String,
        /// The file.
        path: PathBuf,
        /// What went wrong and what to do.
        detail: String,
    },

    /// A link with the shim's name exists and is someone else's.
    #[error(
        "a link named {name:?} exists but was not created by roslan-install (its alias is not {alias:?}): remove it or choose another --shim-name / ROSLAN_SHIM_NAME"
    )]
    ShimNotOurs {
        /// The name.
        name: String,
        /// The alias roslan-install labels its shim with.
        alias: &'static str,
    },

    /// The shim's master is missing.
    #[error(
        "shim master {name:?} not found; interfaces in this network namespace: {available}. Pass the node's LAN interface (the master of the pods' macvlans) in --shim-master / ROSLAN_SHIM_MASTER; the DaemonSet needs hostNetwork: true"
    )]
    ShimMaster {
        /// The configured master.
        name: String,
        /// The links that do exist.
        available: String,
    },

    /// A pod-range route already exists through another interface.
    #[error(
        "a route to {dst} already exists that does not go through the shim {shim:?} ({detail}); remove it (ip route del {dst}) or drop {dst} from --shim-route / ROSLAN_SHIM_ROUTES"
    )]
    RouteTaken {
        /// Destination.
        dst: String,
        /// The shim's name.
        shim: String,
        /// The kernel's answer.
        detail: String,
    },

    /// The shim changed under the installer's hands (another process at work on the same link).
    #[error("host shim: {0}; another process is changing the same link: stop it, then let the installer retry")]
    Shim(String),

    /// The kernel refused a netlink request.
    #[error("{op}: {source}{}", netlink_hint(source))]
    Netlink {
        /// The step, in words.
        op: String,
        /// The kernel's answer.
        #[source]
        source: NetlinkError,
    },

    /// Setting up netlink failed (runtime or socket).
    #[error("netlink: {0}")]
    NetlinkSetup(#[from] roslan::error::Error),

    /// The install record is unreadable.
    #[error(
        "install record {path}: {detail}; move it away to start afresh (the installer then forgets what it installed before, and --uninstall removes only what it installs from then on)"
    )]
    Record {
        /// The record's host path.
        path: PathBuf,
        /// What is wrong with it.
        detail: String,
    },

    /// SIGTERM/SIGINT could not be routed to the wait loop.
    #[error("cannot set up SIGTERM/SIGINT handling: {0}")]
    Signals(#[source] nix::errno::Errno),

    /// Some steps of a pass failed (each was logged when it happened).
    #[error("{} step(s) failed: {}", .0.len(), .0.join("; "))]
    Steps(Vec<String>),
}

fn io_hint(err: &io::Error) -> &'static str {
    match err.kind() {
        io::ErrorKind::PermissionDenied => " (run the installer as root with the hostPath volume mounted read-write)",
        io::ErrorKind::ReadOnlyFilesystem => " (the volume is mounted read-only: drop readOnly from its volumeMount)",
        _ => "",
    }
}

fn netlink_hint(err: &NetlinkError) -> &'static str {
    if err.is(nix::errno::Errno::EPERM) {
        " (the host shim needs CAP_NET_ADMIN and hostNetwork: true)"
    } else {
        ""
    }
}

impl Error {
    /// Wraps an I/O error with the operation and path.
    pub fn io(what: &'static str, path: impl Into<PathBuf>) -> impl FnOnce(io::Error) -> Error {
        let path = path.into();
        move |source| Error::Io { what, path, source }
    }

    /// Wraps a netlink error with the step.
    pub fn netlink(op: impl Into<String>) -> impl FnOnce(NetlinkError) -> Error {
        let op = op.into();
        move |source| Error::Netlink { op, source }
    }
}
