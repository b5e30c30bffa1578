//! Reading and writing `net.*` sysctls: the mechanics only (which keys ADD sets, and what a refusal
//! means for the configuration, is `commands::sysctls`).
//!
//! Callers run these inside the pod's namespace (see [`crate::netns::Netns::run`]): a `/proc/sys/net`
//! file belongs to the namespace of the thread that opens it. A [`Visit`] opens `/proc/sys` once and
//! every key relative to it, so a dozen keys cost a dozen short lookups instead of a dozen walks from `/`.

use std::fmt;
use std::fs::{self, File};
use std::io::{self, Read, Seek, Write};
use std::path::PathBuf;

use nix::fcntl::{OFlag, openat};
use nix::sys::stat::Mode;

/// A sysctl named by its path components, so that interface names containing dots stay unambiguous.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Key(pub Vec<String>);

impl Key {
    /// Parses the dotted form (`net.ipv4.conf.net1.rp_filter`); as in sysctl(8), a `/` inside a
    /// component stands for a dot in an interface name (`net.ipv4.conf.eth0/100.rp_filter`).
    pub fn parse(dotted: &str) -> Key {
        Key(dotted.split('.').map(|part| part.replace('/', ".")).collect())
    }

    /// A per-interface key: `net.<family>.conf.<ifname>.<leaf>`.
    pub fn interface(family: &str, ifname: &str, leaf: &str) -> Key {
        Key(vec![
            "net".into(),
            family.into(),
            "conf".into(),
            ifname.into(),
            leaf.into(),
        ])
    }

    /// The file under /proc/sys.
    pub fn path(&self) -> PathBuf {
        let mut path = PathBuf::from("/proc/sys");
        path.extend(&self.0);
        path
    }

    /// The path relative to /proc/sys.
    fn relative(&self) -> PathBuf {
        self.0.iter().collect()
    }

    /// The dotted form, for messages.
    pub fn dotted(&self) -> String {
        self.0.iter().map(|p| p.replace('.', "/")).collect::<Vec<_>>().join(".")
    }
}

/// A sysctl that could not be read or written.
#[derive(Debug)]
pub struct SysctlError {
    /// The key, dotted.
    pub key: String,
    /// The OS error (NotFound: the kernel has no such key).
    pub source: io::Error,
}

impl fmt::Display for SysctlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sysctl {}: {}", self.key, self.source)
    }
}

impl std::error::Error for SysctlError {}

/// `/proc/sys` of the namespace the thread was in when it was opened; keys are opened relative to it.
/// Only valid while the thread stays in that namespace: the kernel resolves `net.*` by the opening
/// thread's namespace, not by the directory's.
pub struct Visit {
    dir: File,
}

/// Values as they were before a [`Visit::set_recording`] changed them, to be written back on failure.
#[derive(Debug, Default)]
pub struct Previous(Vec<(Key, String)>);

impl Previous {
    /// Writes every recorded value back, newest first. Best-effort: this runs on a failure path, and
    /// the original error is what the runtime must see.
    pub fn restore(&self) {
        let visit = match Visit::open() {
            Ok(visit) => visit,
            Err(err) => {
                crate::log::warn!("rollback: could not open /proc/sys to restore sysctls: {}", err.source);
                return;
            }
        };
        for (key, value) in self.0.iter().rev() {
            if let Err(err) = visit.write(key, value) {
                crate::log::warn!(
                    "rollback: could not restore sysctl {} to {value}: {}",
                    key.dotted(),
                    err.source
                );
            }
        }
    }

    /// True when no value was recorded.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl Visit {
    /// Opens `/proc/sys` of the calling thread's namespace.
    pub fn open() -> Result<Visit, SysctlError> {
        File::open("/proc/sys")
            .map(|dir| Visit { dir })
            .map_err(|source| SysctlError {
                key: "/proc/sys".into(),
                source,
            })
    }

    fn file(&self, key: &Key, flags: OFlag) -> io::Result<File> {
        openat(&self.dir, &key.relative(), flags | OFlag::O_CLOEXEC, Mode::empty())
            .map(File::from)
            .map_err(io::Error::from)
    }

    /// Reads a value, trimmed.
    pub fn read(&self, key: &Key) -> io::Result<String> {
        let mut text = String::new();
        self.file(key, OFlag::O_RDONLY)?.read_to_string(&mut text)?;
        Ok(text.trim().to_string())
    }

    /// Writes a value. A refused write is no error when the value is already right (a read-only /proc
    /// with nothing to change). Writing first, rather than reading first, halves the cost of an ADD's
    /// dozen sysctls: in a new pod the values nearly always differ. Never creates a file: a key the
    /// kernel lacks is NotFound.
    pub fn write(&self, key: &Key, value: &str) -> Result<(), SysctlError> {
        let written = self
            .file(key, OFlag::O_WRONLY)
            .and_then(|mut file| file.write_all(value.as_bytes()));
        self.settle(key, value, written)
    }

    /// Like [`Visit::write`], first recording the old value in `previous` (one open for both).
    pub fn set_recording(&self, key: &Key, value: &str, previous: &mut Previous) -> Result<(), SysctlError> {
        let written = self.file(key, OFlag::O_RDWR).and_then(|mut file| {
            let mut old = String::new();
            if file.read_to_string(&mut old).is_ok() {
                previous.0.push((key.clone(), old.trim().to_string()));
            }
            file.rewind()?;
            file.write_all(value.as_bytes())
        });
        match written {
            // A read-only file cannot be opened for reading and writing: record and write as two steps.
            Err(err)
                if matches!(err.raw_os_error(), Some(code) if code == nix::errno::Errno::EACCES as i32
                    || code == nix::errno::Errno::EROFS as i32) =>
            {
                if let Ok(old) = self.read(key) {
                    previous.0.push((key.clone(), old));
                }
                self.write(key, value)
            }
            written => self.settle(key, value, written),
        }
    }

    fn settle(&self, key: &Key, value: &str, written: io::Result<()>) -> Result<(), SysctlError> {
        match written {
            Ok(()) => Ok(()),
            Err(_)
                if self
                    .read(key)
                    .is_ok_and(|current| current.split_whitespace().eq(value.split_whitespace())) =>
            {
                Ok(())
            }
            Err(source) => Err(SysctlError {
                key: key.dotted(),
                source,
            }),
        }
    }
}

/// Reads a sysctl of the calling thread's namespace, trimmed (one key: no [`Visit`] needed).
pub fn read(key: &Key) -> io::Result<String> {
    fs::read_to_string(key.path()).map(|v| v.trim().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dotted_keys() {
        let key = Key::parse("net.ipv4.conf.eth0/100.rp_filter");
        assert_eq!(key.path(), PathBuf::from("/proc/sys/net/ipv4/conf/eth0.100/rp_filter"));
        assert_eq!(key.relative(), PathBuf::from("net/ipv4/conf/eth0.100/rp_filter"));
        assert_eq!(key.dotted(), "net.ipv4.conf.eth0/100.rp_filter");
        assert_eq!(
            Key::interface("ipv6", "net1", "accept_ra").dotted(),
            "net.ipv6.conf.net1.accept_ra"
        );
    }
}
