//! Reading and writing `net.*` sysctls. Callers run these inside the pod's namespace (see
//! [`crate::netns::Netns::run`]): a `/proc/sys/net` file belongs to the namespace of the thread that
//! opens it.

use std::fs;
use std::io::{self, Write};
use std::path::PathBuf;

use nix::errno::Errno;

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

/// The key of `setting` for the link currently named `device`: `IFNAME`, and the final interface name
/// `ifname`, stand for it (before the rename they are the temporary name).
pub fn resolve(dotted: &str, ifname: &str, device: &str) -> Key {
    let mut key = Key::parse(dotted);
    for part in &mut key.0 {
        if part == "IFNAME" || part == ifname {
            *part = device.to_string();
        }
    }
    key
}

/// The settings as they take effect for the link named `device`: keys resolved, and of several settings
/// for one key (a ROS default under `IFNAME`, the user's under the literal interface name) only the
/// last, which is the user's, so that CHECK compares against what ADD really wrote.
fn effective<'a>(
    settings: &'a [crate::config::Sysctl],
    ifname: &str,
    device: &str,
) -> Vec<(Key, &'a crate::config::Sysctl)> {
    let mut out: Vec<(Key, &crate::config::Sysctl)> = Vec::new();
    for setting in settings {
        let key = resolve(&setting.key, ifname, device);
        out.retain(|(k, _)| *k != key);
        out.push((key, setting));
    }
    out
}

/// Values of pod-wide sysctls as they were before ADD changed them, to be written back if the ADD fails.
/// Settings of the new link itself need no record: they vanish with it.
#[derive(Debug, Default)]
pub struct Previous(Vec<(Key, String)>);

impl Previous {
    /// Writes every recorded value back, newest first. Best-effort: this runs on a failure path, and
    /// the original error is what the runtime must see.
    pub fn restore(&self) {
        for (key, value) in self.0.iter().rev() {
            if let Err(err) = write(key, value) {
                crate::warn!("rollback: could not restore sysctl {} to {value}: {err}", key.dotted());
            }
        }
    }

    /// True when no pod-wide value was changed.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// Writes every setting for the link named `device`, recording in `previous` the old value of each
/// setting that outlives the link. A default the kernel lacks (IPv6 disabled at boot, an older kernel) is
/// skipped; a setting the user asked for must exist and take its value, else the configuration key that
/// asked for it is named, in the form the user wrote it.
pub fn apply(
    settings: &[crate::config::Sysctl],
    ifname: &str,
    device: &str,
    previous: &mut Previous,
) -> Result<(), Error> {
    for (key, setting) in effective(settings, ifname, device) {
        let pod_wide = !key.0.iter().any(|part| part == device);
        if pod_wide && let Ok(old) = read(&key) {
            previous.0.push((key.clone(), old));
        }
        let source = match write(&key, &setting.value) {
            Ok(()) => continue,
            Err(Error::Sysctl { source, .. }) => source,
            Err(other) => return Err(other),
        };
        if source.kind() == io::ErrorKind::NotFound && !setting.explicit {
            continue;
        }
        let refused_value =
            matches!(source.raw_os_error(), Some(code) if code == Errno::EINVAL as i32 || code == Errno::ERANGE as i32);
        return Err(match (&setting.origin, source.kind()) {
            (Some(origin), io::ErrorKind::NotFound) => Error::config(
                origin.clone(),
                format!(
                    "this kernel has no sysctl {} in a pod's network namespace (value {:?}); check its spelling, or remove it",
                    setting.key, setting.value
                ),
            ),
            (Some(origin), _) if refused_value => Error::config(
                origin.clone(),
                format!(
                    "the kernel refused {:?} for {} ({source}); use a value it accepts",
                    setting.value, setting.key
                ),
            ),
            _ => Error::Sysctl {
                key: format!("{} = {:?}", setting.key, setting.value),
                source,
            },
        });
    }
    Ok(())
}

/// Settings whose value in the pod differs from the configured one, as "key: want X, found Y".
pub fn differences(settings: &[crate::config::Sysctl], ifname: &str) -> Vec<String> {
    effective(settings, ifname, ifname)
        .into_iter()
        .filter_map(|(key, setting)| match read(&key) {
            Ok(found) if found.split_whitespace().eq(setting.value.split_whitespace()) => None,
            Ok(found) => Some(format!(
                "sysctl {} is {found}, configured {}",
                key.dotted(),
                setting.value
            )),
            Err(_) if !setting.explicit => None,
            Err(err) => Some(format!("sysctl {} cannot be read: {err}", key.dotted())),
        })
        .collect()
}

/// Reads a sysctl, trimmed.
pub fn read(key: &Key) -> io::Result<String> {
    fs::read_to_string(key.path()).map(|v| v.trim().to_string())
}

/// Writes a sysctl. A refused write is no error when the value is already right (a read-only /proc with
/// nothing to change). Writing first, rather than reading first, halves the cost of an ADD's dozen
/// sysctls: in a new pod the values nearly always differ. Never creates a file: a key the kernel lacks
/// is NotFound.
pub fn write(key: &Key, value: &str) -> Result<(), Error> {
    let written = fs::OpenOptions::new()
        .write(true)
        .open(key.path())
        .and_then(|mut file| file.write_all(value.as_bytes()));
    match written {
        Ok(()) => Ok(()),
        Err(_) if read(key).is_ok_and(|current| current.split_whitespace().eq(value.split_whitespace())) => Ok(()),
        Err(source) => Err(Error::Sysctl {
            key: key.dotted(),
            source,
        }),
    }
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
