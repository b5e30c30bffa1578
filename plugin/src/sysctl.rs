//! Reading and writing `net.*` sysctls. Callers run these inside the pod's namespace (see
//! [`crate::netns::Netns::run`]): a `/proc/sys/net` file belongs to the namespace of the thread that
//! opens it.

use std::fs;
use std::io;
use std::path::PathBuf;

use crate::error::Error;

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

    /// The dotted form, for messages.
    pub fn dotted(&self) -> String {
        self.0.iter().map(|p| p.replace('.', "/")).collect::<Vec<_>>().join(".")
    }
}

/// Reads a sysctl, trimmed.
pub fn read(key: &Key) -> io::Result<String> {
    fs::read_to_string(key.path()).map(|v| v.trim().to_string())
}

/// Writes a sysctl unless it already has `value` (no write, no error on read-only /proc when nothing
/// needs changing).
pub fn write(key: &Key, value: &str) -> Result<(), Error> {
    if read(key).is_ok_and(|current| current.split_whitespace().eq(value.split_whitespace())) {
        return Ok(());
    }
    fs::write(key.path(), value).map_err(|source| Error::Sysctl {
        key: key.dotted(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dotted_keys() {
        let key = Key::parse("net.ipv4.conf.eth0/100.rp_filter");
        assert_eq!(key.path(), PathBuf::from("/proc/sys/net/ipv4/conf/eth0.100/rp_filter"));
        assert_eq!(key.dotted(), "net.ipv4.conf.eth0/100.rp_filter");
        assert_eq!(
            Key::interface("ipv6", "net1", "accept_ra").dotted(),
            "net.ipv6.conf.net1.accept_ra"
        );
    }
}
