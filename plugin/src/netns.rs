//! Network namespaces: opening CNI_NETNS safely and running code inside it.
//!
//! `setns(2)` switches only the calling thread, and a netlink socket or a `/proc/sys/net` file belongs
//! to the namespace of the thread that opened it. So work that must happen *inside* the pod runs on a
//! short-lived thread that enters the pod and then ends; the main thread never leaves the namespace
//! the runtime started us in, and no early return can strand it in the pod.

use std::fs::File;
use std::os::fd::{AsFd, AsRawFd, RawFd};
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use nix::sched::{CloneFlags, setns};
use nix::sys::statfs::{NSFS_MAGIC, fstatfs};

use crate::error::Error;

/// An open network namespace.
#[derive(Debug)]
pub struct Netns {
    file: File,
    path: String,
}

mod ioctl {
    #![allow(missing_docs)]
    // ioctl(NS_GET_NSTYPE) = _IO(0xb7, 0x3): asks an nsfs file which kind of namespace it is.
    nix::ioctl_none!(ns_get_nstype, 0xb7, 0x3);
}
use ioctl::ns_get_nstype;

impl Netns {
    /// Opens CNI_NETNS and checks that it is a network namespace, so that a wrong path fails with a
    /// clear code-4 error before anything is created.
    pub fn open(path: &str) -> Result<Netns, Error> {
        let file = File::open(path).map_err(|err| Error::env("CNI_NETNS", format!("cannot open {path}: {err}")))?;
        let is_nsfs = fstatfs(file.as_fd()).is_ok_and(|fs| fs.filesystem_type() == NSFS_MAGIC);
        // SAFETY: NS_GET_NSTYPE takes no argument and only reads the namespace type of the file
        // behind the descriptor; `file` owns a valid open descriptor for the duration of the call.
        let kind = is_nsfs
            .then(|| unsafe { ns_get_nstype(file.as_raw_fd()) }.ok())
            .flatten();
        if kind != Some(CloneFlags::CLONE_NEWNET.bits()) {
            return Err(Error::env(
                "CNI_NETNS",
                format!(
                    "{path} is not a network namespace (expected a path such as /run/netns/<name> or /proc/<pid>/ns/net)"
                ),
            ));
        }
        Ok(Netns {
            file,
            path: path.to_string(),
        })
    }

    /// The namespace the calling thread is in.
    pub fn current() -> Result<Netns, Error> {
        let path = "/proc/thread-self/ns/net";
        let file = File::open(path).map_err(|source| Error::Io {
            what: format!("open {path}"),
            source,
        })?;
        Ok(Netns {
            file,
            path: path.to_string(),
        })
    }

    /// The path it was opened from (CNI_NETNS for pods).
    pub fn path(&self) -> &str {
        &self.path
    }

    /// The descriptor, for IFLA_NET_NS_FD. Valid as long as `self` lives.
    pub fn raw_fd(&self) -> RawFd {
        self.file.as_raw_fd()
    }

    /// True if both refer to the same namespace.
    pub fn same_as(&self, other: &Netns) -> bool {
        match (self.file.metadata(), other.file.metadata()) {
            (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
            _ => false,
        }
    }

    /// Runs `work` on a new thread inside this namespace and returns its result.
    pub fn run<T: Send>(&self, work: impl FnOnce() -> T + Send) -> Result<T, Error> {
        std::thread::scope(|scope| {
            scope
                .spawn(|| {
                    setns(self.file.as_fd(), CloneFlags::CLONE_NEWNET)
                        .map_err(|errno| Error::env("CNI_NETNS", format!("cannot enter {}: {errno}", self.path)))?;
                    Ok(work())
                })
                .join()
                .unwrap_or_else(|_| Err(Error::TryAgain("a namespace worker thread panicked".into())))
        })
    }
}

/// True if `path` exists; DEL uses this to treat a vanished namespace as already cleaned up.
pub fn exists(path: &str) -> bool {
    Path::new(path).exists()
}
