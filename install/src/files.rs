//! Replacing files that other processes may be executing or reading at that very moment.
//!
//! A runtime may exec `roslan` at any time. Rewriting it in place would let an exec see a half-written
//! file (or fail with ETXTBSY while it is open for writing); so every file is written under a
//! temporary name in the *same* directory (rename is only atomic within one filesystem), flushed,
//! given its final mode and renamed over the target. The directory is flushed too, so that after a
//! power cut the node has either the old file or the new one, never an empty one.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::error::Error;

/// Prefix of the installer's temporary files. Leading dot: no runtime resolves a plugin `type` to a
/// hidden name. Anything else in the directory belongs to someone else and is never touched.
pub const TEMP_PREFIX: &str = ".roslan-install-tmp-";

/// How an installed file compares with what should be there.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum State {
    /// Nothing at that path.
    Missing,
    /// A regular file with the right bytes and mode.
    Current,
    /// Something else is there; the text says what.
    Differs(String),
}

/// Compares the file at `path` (not following a final symbolic link) with `bytes` and `mode`.
pub fn compare(path: &Path, bytes: &[u8], mode: u32) -> Result<State, Error> {
    let meta = match fs::symlink_metadata(path) {
        Ok(meta) => meta,
        Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(State::Missing),
        Err(err) => return Err(Error::io("inspect", path)(err)),
    };
    if meta.file_type().is_symlink() {
        return Ok(State::Differs("it is a symbolic link".into()));
    }
    if !meta.is_file() {
        return Ok(State::Differs("it is not a regular file".into()));
    }
    if meta.len() != bytes.len() as u64 || fs::read(path).map_err(Error::io("read", path))? != bytes {
        return Ok(State::Differs("its content differs".into()));
    }
    let actual = meta.mode() & 0o7777;
    if actual != mode {
        return Ok(State::Differs(format!("its mode is {actual:04o}, not {mode:04o}")));
    }
    Ok(State::Current)
}

/// Writes `bytes` to `dir/name` atomically with `mode`. `check` runs on the complete temporary file
/// (same directory, bytes and mode as the final one) before the rename: if it fails, the old file,
/// if any, stays in place and the temporary one is removed.
pub fn replace(
    dir: &Path,
    name: &str,
    bytes: &[u8],
    mode: u32,
    check: impl FnOnce(&Path) -> Result<(), Error>,
) -> Result<(), Error> {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos();
    let temp = dir.join(format!("{TEMP_PREFIX}{name}-{}-{nanos}", std::process::id()));
    let target = dir.join(name);
    let result = write_temp(&temp, bytes, mode)
        .and_then(|()| check(&temp))
        .and_then(|()| fs::rename(&temp, &target).map_err(Error::io("rename into place", &target)));
    if result.is_err() {
        let _ = fs::remove_file(&temp);
    }
    result?;
    sync_dir(dir)
}

fn write_temp(temp: &Path, bytes: &[u8], mode: u32) -> Result<(), Error> {
    // Private while incomplete; O_EXCL so that a leftover of the same name is never reused.
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(temp)
        .map_err(Error::io("create", temp))?;
    file.write_all(bytes).map_err(Error::io("write", temp))?;
    // Explicit, so that neither the umask nor the mode it was created with decides the result.
    file.set_permissions(fs::Permissions::from_mode(mode))
        .map_err(Error::io("chmod", temp))?;
    file.sync_all().map_err(Error::io("fsync", temp))?;
    // Closed here, before anyone execs it: an exec of a file open for writing fails with ETXTBSY.
    drop(file);
    Ok(())
}

/// Flushes a directory's entries (a rename or unlink in it) to disk.
pub fn sync_dir(dir: &Path) -> Result<(), Error> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(Error::io("fsync directory", dir))
}

/// Removes a file and flushes its directory. Returns false if it was already gone.
pub fn remove(path: &Path) -> Result<bool, Error> {
    match fs::remove_file(path) {
        Ok(()) => {
            if let Some(dir) = path.parent() {
                sync_dir(dir)?;
            }
            Ok(true)
        }
        Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(err) => Err(Error::io("remove", path)(err)),
    }
}

/// Removes temporary files an interrupted installer left in `dir`; only names with
/// [`TEMP_PREFIX`] are considered. Returns what it removed.
pub fn remove_stale_temps(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = fs::read_dir(dir) else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with(TEMP_PREFIX))
        .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
        .map(|e| e.path())
        .filter(|path| fs::remove_file(path).is_ok())
        .collect()
}

/// 64-bit FNV-1a, hex. Not a security measure: the install record uses it to notice that a file was
/// replaced by someone else since the installer wrote it, so that --uninstall leaves it alone.
pub fn fingerprint(bytes: &[u8]) -> String {
    format!("{:016x}", roslan_ipam_core::fnv::fnv64(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprint_is_fnv1a() {
        // Published FNV-1a 64 test vectors.
        assert_eq!(fingerprint(b""), "cbf29ce484222325");
        assert_eq!(fingerprint(b"a"), "af63dc4c8601ec8c");
        assert_eq!(fingerprint(b"foobar"), "85944171f73967e8");
    }

    #[test]
    fn replace_is_atomic_and_failed_checks_leave_the_old_file() {
        let dir = std::env::temp_dir().join(format!("roslan-install-unit-files-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        fs::write(dir.join(".roslan-install-tmp-x-1-2"), b"stale").unwrap();
        fs::write(dir.join("other"), b"not ours").unwrap();
        assert_eq!(remove_stale_temps(&dir).len(), 1);
        assert!(dir.join("other").exists());

        replace(&dir, "bin", b"one", 0o755, |_| Ok(())).unwrap();
        assert_eq!(compare(&dir.join("bin"), b"one", 0o755).unwrap(), State::Current);
        let err = replace(&dir, "bin", b"two", 0o755, |_| Err(Error::Usage("no".into()))).unwrap_err();
        assert!(matches!(err, Error::Usage(_)));
        assert_eq!(fs::read(dir.join("bin")).unwrap(), b"one");
        let mut names: Vec<_> = fs::read_dir(&dir).unwrap().map(|e| e.unwrap().file_name()).collect();
        names.sort();
        assert_eq!(names, ["bin", "other"], "no temporary file is left behind");
        assert!(matches!(
            compare(&dir.join("bin"), b"two", 0o755).unwrap(),
            State::Differs(_)
        ));
        fs::set_permissions(dir.join("bin"), fs::Permissions::from_mode(0o644)).unwrap();
        assert_eq!(
            compare(&dir.join("bin"), b"one", 0o755).unwrap(),
            State::Differs("its mode is 0644, not 0755".into())
        );
        assert!(remove(&dir.join("bin")).unwrap());
        assert!(!remove(&dir.join("bin")).unwrap());
        fs::remove_dir_all(&dir).unwrap();
    }
}
