//! Opening and reading files that a configuration, an environment or another program can name.
//!
//! Every such path may be hostile or simply wrong: a FIFO makes a plain `open` block until a writer
//! appears (a plugin stuck until the runtime kills it, its temporary link left in the pod), a device can
//! have side effects on open, and `/dev/zero` never ends. So a path is checked with `stat` before it is
//! opened, opened without blocking and without becoming a controlling terminal, checked again on the open
//! descriptor (the path may have changed in between), and read up to a bound that fits its purpose.

use std::fs::{self, File, FileType, Metadata, OpenOptions};
use std::io::Read;
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::Path;

use nix::fcntl::OFlag;

use crate::IpamError;

/// Whether the last component of a path may be a symbolic link.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Links {
    /// Follow it (`/proc/<pid>/ns/net` is one, and so is a resolv.conf managed by systemd).
    Follow,
    /// Refuse it: the path is in a directory an attacker may write to.
    Refuse,
}

/// What a file that is not a regular one is, in words, for messages.
pub fn kind_of(file_type: FileType) -> &'static str {
    if file_type.is_dir() {
        "a directory"
    } else if file_type.is_fifo() {
        "a FIFO (named pipe)"
    } else if file_type.is_socket() {
        "a socket"
    } else if file_type.is_char_device() {
        "a character device"
    } else if file_type.is_block_device() {
        "a block device"
    } else if file_type.is_symlink() {
        "a symbolic link"
    } else {
        "a regular file"
    }
}

fn require_regular(path: &Path, meta: &Metadata) -> Result<(), IpamError> {
    if meta.file_type().is_symlink() {
        return Err(IpamError::Symlink(path.to_path_buf()));
    }
    if !meta.is_file() {
        return Err(IpamError::NotRegularFile {
            path: path.to_path_buf(),
            kind: kind_of(meta.file_type()),
        });
    }
    Ok(())
}

/// Opens `path` for reading if it is a regular file, without ever blocking.
pub fn open_regular(path: &Path, links: Links) -> Result<File, IpamError> {
    let before = match links {
        Links::Follow => fs::metadata(path),
        Links::Refuse => fs::symlink_metadata(path),
    }
    .map_err(IpamError::io("open", path))?;
    require_regular(path, &before)?;
    let mut flags = OFlag::O_NONBLOCK | OFlag::O_NOCTTY;
    if links == Links::Refuse {
        flags |= OFlag::O_NOFOLLOW;
    }
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(flags.bits())
        .open(path)
        .map_err(|err| {
            // ELOOP under O_NOFOLLOW: a link was put in place between the stat and the open.
            if err.raw_os_error() == Some(nix::errno::Errno::ELOOP as i32) {
                IpamError::Symlink(path.to_path_buf())
            } else {
                IpamError::io("open", path)(err)
            }
        })?;
    let after = file.metadata().map_err(IpamError::io("stat", path))?;
    require_regular(path, &after)?;
    Ok(file)
}

/// Reads all of `path`, a regular file of at most `limit` bytes.
pub fn read_regular(path: &Path, limit: u64, links: Links) -> Result<Vec<u8>, IpamError> {
    let file = open_regular(path, links)?;
    let mut data = Vec::new();
    file.take(limit + 1)
        .read_to_end(&mut data)
        .map_err(IpamError::io("read", path))?;
    if data.len() as u64 > limit {
        return Err(IpamError::FileTooLarge {
            path: path.to_path_buf(),
            limit,
        });
    }
    Ok(data)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("roslan-file-{}-{name}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn fifo_is_refused_without_blocking() {
        let dir = scratch("fifo");
        let fifo = dir.join("fifo");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
        let err = read_regular(&fifo, 100, Links::Follow).unwrap_err();
        assert!(
            matches!(
                err,
                IpamError::NotRegularFile {
                    kind: "a FIFO (named pipe)",
                    ..
                }
            ),
            "{err}"
        );
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn bounds_and_links() {
        let dir = scratch("bounds");
        let file = dir.join("f");
        fs::write(&file, "0123456789").unwrap();
        assert_eq!(read_regular(&file, 10, Links::Refuse).unwrap(), b"0123456789");
        assert!(matches!(
            read_regular(&file, 9, Links::Refuse),
            Err(IpamError::FileTooLarge { limit: 9, .. })
        ));
        let link = dir.join("l");
        std::os::unix::fs::symlink(&file, &link).unwrap();
        assert!(matches!(
            read_regular(&link, 10, Links::Refuse),
            Err(IpamError::Symlink(_))
        ));
        assert_eq!(read_regular(&link, 10, Links::Follow).unwrap().len(), 10);
        assert!(matches!(
            read_regular(Path::new("/dev/zero"), 10, Links::Follow),
            Err(IpamError::NotRegularFile {
                kind: "a character device",
                ..
            })
        ));
        assert!(matches!(
            read_regular(&dir, 10, Links::Follow),
            Err(IpamError::NotRegularFile {
                kind: "a directory",
                ..
            })
        ));
        fs::remove_dir_all(&dir).unwrap();
    }
}
