//! Socket-buffer floors for DDS.
//!
//! DDS deployments that move large samples (images, point clouds) configure socket buffers of several
//! megabytes; the kernel silently caps every SO_RCVBUF/SO_SNDBUF request at `net.core.rmem_max` /
//! `wmem_max` (208 KiB by default), and fragments of large samples are then dropped under load.
//! Those two sysctls are host-global: no pod may set them, so the node-level installer does. It only
//! raises them (another component may need more), and remembers the old value so that --uninstall
//! can put it back.

use std::fs;
use std::path::{Path, PathBuf};

use crate::error::Error;

/// The sysctls with floors, by option.
pub const RMEM_MAX: &str = "net.core.rmem_max";
/// See [`RMEM_MAX`].
pub const WMEM_MAX: &str = "net.core.wmem_max";

/// What [`ensure_floor`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Floor {
    /// The value was already at or above the floor.
    Unchanged(u64),
    /// Raised from the first value to the second.
    Raised(u64, u64),
}

/// What [`restore`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Restore {
    /// Put back the previous value.
    Restored,
    /// Someone changed it since; left at this value.
    LeftAlone(u64),
}

/// The file of a dotted key under `proc_sys`.
pub fn path(proc_sys: &Path, key: &str) -> PathBuf {
    let mut path = proc_sys.to_path_buf();
    path.extend(key.split('.'));
    path
}

/// Reads a numeric sysctl.
pub fn read(proc_sys: &Path, key: &str) -> Result<u64, Error> {
    let file = path(proc_sys, key);
    let text = fs::read_to_string(&file).map_err(|err| Error::Sysctl {
        key: key.into(),
        path: file.clone(),
        detail: format!("cannot read it: {err}"),
    })?;
    text.trim().parse().map_err(|_| Error::Sysctl {
        key: key.into(),
        path: file,
        detail: format!("holds {:?}, not a number", text.trim()),
    })
}

/// Writes a numeric sysctl and checks that it took.
pub fn write(proc_sys: &Path, key: &str, value: u64) -> Result<(), Error> {
    let file = path(proc_sys, key);
    fs::write(&file, format!("{value}\n")).map_err(|err| Error::Sysctl {
        key: key.into(),
        path: file.clone(),
        detail: format!(
            "cannot write {value}: {err}; /proc/sys is read-only in a container unless it is privileged (securityContext.privileged: true), or drop the floor options"
        ),
    })?;
    let now = read(proc_sys, key)?;
    if now != value {
        return Err(Error::Sysctl {
            key: key.into(),
            path: file,
            detail: format!("wrote {value} but it reads back {now}: the kernel capped or refused it"),
        });
    }
    Ok(())
}

/// Raises `key` to `floor` if it is lower.
pub fn ensure_floor(proc_sys: &Path, key: &str, floor: u64) -> Result<Floor, Error> {
    let current = read(proc_sys, key)?;
    if current >= floor {
        return Ok(Floor::Unchanged(current));
    }
    write(proc_sys, key, floor)?;
    Ok(Floor::Raised(current, floor))
}

/// Puts `previous` back, but only if the value is still the one the installer set: a later change
/// by someone else wins.
pub fn restore(proc_sys: &Path, key: &str, previous: u64, set: u64) -> Result<Restore, Error> {
    let current = read(proc_sys, key)?;
    if current != set {
        return Ok(Restore::LeftAlone(current));
    }
    write(proc_sys, key, previous)?;
    Ok(Restore::Restored)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raise_only_and_restore_only_our_value() {
        let dir = std::env::temp_dir().join(format!("roslan-install-unit-sysctl-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(dir.join("net/core")).unwrap();
        fs::write(dir.join("net/core/rmem_max"), "212992\n").unwrap();
        fs::write(dir.join("net/core/wmem_max"), "8388608\n").unwrap();
        assert_eq!(
            ensure_floor(&dir, RMEM_MAX, 4_194_304).unwrap(),
            Floor::Raised(212_992, 4_194_304)
        );
        assert_eq!(read(&dir, RMEM_MAX).unwrap(), 4_194_304);
        assert_eq!(
            ensure_floor(&dir, RMEM_MAX, 4_194_304).unwrap(),
            Floor::Unchanged(4_194_304)
        );
        assert_eq!(
            ensure_floor(&dir, WMEM_MAX, 4_194_304).unwrap(),
            Floor::Unchanged(8_388_608)
        );
        assert_eq!(read(&dir, WMEM_MAX).unwrap(), 8_388_608, "never lowered");
        assert_eq!(restore(&dir, RMEM_MAX, 212_992, 4_194_304).unwrap(), Restore::Restored);
        assert_eq!(read(&dir, RMEM_MAX).unwrap(), 212_992);
        fs::write(dir.join("net/core/rmem_max"), "999\n").unwrap();
        assert_eq!(
            restore(&dir, RMEM_MAX, 212_992, 4_194_304).unwrap(),
            Restore::LeftAlone(999)
        );
        fs::remove_dir_all(&dir).unwrap();
    }
}
