//! Which sysctls an attachment has: roslan's own for the new link, then the configuration's (`sysctls`
//! and the ROS defaults), with the configuration's key named when the kernel refuses one. ADD writes them,
//! CHECK compares them; [`crate::sysctl`] only reads and writes.

use std::io;

use nix::errno::Errno;

use crate::config::{NetConf, Sysctl};
use crate::error::Error;
use crate::sysctl::{Key, Previous, SysctlError, Visit};

impl From<SysctlError> for Error {
    fn from(err: SysctlError) -> Error {
        Error::Sysctl {
            key: err.key,
            source: err.source,
        }
    }
}

/// The key of `setting` for the link currently named `device`: `IFNAME`, and the final interface name
/// `ifname`, stand for it (before the rename they are the temporary name).
fn resolve(dotted: &str, ifname: &str, device: &str) -> Key {
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
fn effective<'a>(settings: &'a [Sysctl], ifname: &str, device: &str) -> Vec<(Key, &'a Sysctl)> {
    let mut out: Vec<(Key, &Sysctl)> = Vec::new();
    for setting in settings {
        let key = resolve(&setting.key, ifname, device);
        out.retain(|(k, _)| *k != key);
        out.push((key, setting));
    }
    out
}

/// What ADD writes, inside the pod and before the link comes up, in one visit of its `/proc/sys`: the
/// interface's own settings (its temporary name `temp` stands for IFNAME), roslan's first:
/// `arp_notify` and `ndisc_notify` make the kernel announce the addresses (gratuitous ARP, unsolicited
/// neighbour advertisement) when the link comes up. Pod-wide values are recorded in `previous` before
/// they change, so that a failed ADD leaves the pod as it found it.
pub struct ForAdd<'a> {
    /// The configuration (its `sysctls`).
    pub conf: &'a NetConf,
    /// CNI_IFNAME.
    pub ifname: &'a str,
    /// The link's temporary name.
    pub temp: &'a str,
    /// The attachment has an IPv6 address.
    pub has_v6: bool,
    /// `ipam.dad`.
    pub dad: bool,
}

impl ForAdd<'_> {
    /// Writes them all (see [`ForAdd`]).
    pub fn apply(&self, previous: &mut Previous) -> Result<(), Error> {
        let visit = Visit::open()?;
        visit.write(&Key::interface("ipv4", self.temp, "arp_notify"), "1")?;
        if self.has_v6 {
            visit.write(&Key::interface("ipv6", self.temp, "disable_ipv6"), "0")?;
            visit.write(&Key::interface("ipv6", self.temp, "ndisc_notify"), "1")?;
            if self.dad {
                visit.write(&Key::interface("ipv6", self.temp, "accept_dad"), "1")?;
            }
        }
        apply(&visit, &self.conf.sysctls, self.ifname, self.temp, previous)
    }
}

/// Writes every setting for the link named `device`, recording in `previous` the old value of each
/// setting that outlives the link. A default the kernel lacks (IPv6 disabled at boot, an older kernel) is
/// skipped; a setting the user asked for must exist and take its value, else the configuration key that
/// asked for it is named, in the form the user wrote it.
fn apply(visit: &Visit, settings: &[Sysctl], ifname: &str, device: &str, previous: &mut Previous) -> Result<(), Error> {
    for (key, setting) in effective(settings, ifname, device) {
        let pod_wide = !key.0.iter().any(|part| part == device);
        let written = if pod_wide {
            visit.set_recording(&key, &setting.value, previous)
        } else {
            visit.write(&key, &setting.value)
        };
        let Err(SysctlError { source, .. }) = written else {
            continue;
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

/// CHECK, inside the pod: settings whose value differs from the configured one, as "key: want X, found Y".
pub fn differences(settings: &[Sysctl], ifname: &str) -> Vec<String> {
    let visit = match Visit::open() {
        Ok(visit) => visit,
        Err(err) => return vec![err.to_string()],
    };
    effective(settings, ifname, ifname)
        .into_iter()
        .filter_map(|(key, setting)| match visit.read(&key) {
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
