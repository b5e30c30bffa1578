//! Owners of the reservation files that roslan's owner links do not cover: files another program
//! wrote (host-local, a migration script) and files of a roslan process killed between creating a
//! reservation and linking it. They are read lazily, so that the first call after someone wrote
//! thousands of reservations costs one directory listing instead of reading every file.
//!
//! Layout, under `<dataDir>/.roslan/<network>/catalog/`:
//! - `<bucket>` (`00` to `3f`): one line per file, `<address> <inode> <ctime s> <ctime ns> <owner key>`,
//!   in the bucket of its owner key, so a lookup reads one small file whatever the number of
//!   reservations;
//! - `complete`: present when every single-link reservation file of the directory is in a bucket.
//!
//! Only ADD runs without catching up: it allocates from the bitmap (built from names alone) and checks
//! duplicates against what is known, so it never reads a foreign file. DEL, CHECK and GC need every
//! owner: they catch up first, which lists the directory, `lstat`s each file and reads only those whose
//! inode and change time the catalog does not already hold (a file replaced under the same name, even
//! on a reused inode number, has a new change time). A catalog line is a hint, never a proof: a
//! lookup reads the file it names and keeps the address only if the file still holds that owner, so
//! a line left behind by a release or a replacement can never release or refuse the wrong address.

use std::collections::HashMap;
use std::fs::{self, OpenOptions};
use std::io::{Read, Write};
use std::net::IpAddr;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use super::index::owner_key;
use super::{Owner, no_follow, parse_address, private_file, read_small};
use crate::IpamError;
use crate::fnv::fnv64;

const BUCKETS: u64 = 64;
const MAGIC: &str = "roslan-catalog 1";
const COMPLETE: &str = "complete";

/// The largest bucket read: 10,000 foreign reservations fill a bucket to about 12 KiB.
const MAX_BUCKET: u64 = 16 << 20;

/// Identity of one version of a file: a file removed and created again under the same name differs
/// in change time even when the file system hands out the same inode number.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Version {
    ino: u64,
    ctime: (i64, i64),
}

#[derive(Clone, Debug)]
struct Line {
    ip: IpAddr,
    version: Version,
    key: String,
}

impl Line {
    fn parse(text: &str) -> Option<Line> {
        let mut parts = text.split(' ');
        let ip = parse_address(parts.next()?)?;
        let ino = parts.next()?.parse().ok()?;
        let ctime = (parts.next()?.parse().ok()?, parts.next()?.parse().ok()?);
        let key = parts.next()?.to_string();
        if key.is_empty() || parts.next().is_some() {
            return None;
        }
        Some(Line {
            ip,
            version: Version { ino, ctime },
            key,
        })
    }

    fn render(&self, out: &mut String) {
        let Version {
            ino,
            ctime: (sec, nsec),
        } = self.version;
        out.push_str(&format!("{} {ino} {sec} {nsec} {}\n", self.ip, self.key));
    }
}

fn bucket_of(key: &str) -> String {
    format!("{:02x}", fnv64(key.as_bytes()) % BUCKETS)
}

/// The catalog of one network directory. Only used with the store's lock held.
#[derive(Debug)]
pub(crate) struct Catalog {
    dir: PathBuf,
    truth: PathBuf,
}

impl Catalog {
    /// The catalog in `dir` (created by the first catch-up, so that an ADD never pays for it) over
    /// the network directory `truth`.
    pub(crate) fn new(dir: PathBuf, truth: &Path) -> Catalog {
        Catalog {
            dir,
            truth: truth.to_path_buf(),
        }
    }

    fn read_bucket(&self, name: &str) -> Vec<Line> {
        let Ok(data) = crate::file::read_regular(&self.dir.join(name), MAX_BUCKET, crate::file::Links::Refuse) else {
            return Vec::new();
        };
        let text = String::from_utf8_lossy(&data);
        let mut lines = text.lines();
        if lines.next() != Some(MAGIC) {
            return Vec::new();
        }
        lines.filter_map(Line::parse).collect()
    }

    /// Says that files may exist that the catalog does not hold (another program changed the directory,
    /// or a roslan process died in it). Fails only when that cannot be recorded, and then the index
    /// must not be used: it would call the catalog complete.
    pub(crate) fn mark_incomplete(&self) -> Result<(), IpamError> {
        let path = self.dir.join(COMPLETE);
        match fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(err) => Err(IpamError::io("mark the catalog incomplete", path)(err)),
        }
    }

    fn is_complete(&self) -> bool {
        fs::symlink_metadata(self.dir.join(COMPLETE)).is_ok_and(|m| m.is_file())
    }

    /// The addresses whose files the catalog says `owner` wrote, checked against the files themselves.
    pub(crate) fn lookup(&self, owner: &Owner) -> Vec<IpAddr> {
        let key = owner_key(owner);
        let mut held: Vec<IpAddr> = self
            .read_bucket(&bucket_of(&key))
            .into_iter()
            .filter(|line| line.key == key)
            .map(|line| line.ip)
            .filter(|ip| {
                read_small(&self.truth.join(ip.to_string()))
                    .and_then(|text| Owner::parse(&text))
                    .is_some_and(|found| {
                        found.container_id == owner.container_id.trim() && found.ifname == owner.ifname.trim()
                    })
            })
            .collect();
        held.sort();
        held.dedup();
        held
    }

    /// Brings the catalog up to date with the directory, unless it already is: one listing, an `lstat`
    /// per reservation file, a read of each single-link file the catalog does not hold yet, and a rewrite
    /// of the buckets that changed. Files with two links are indexed by their owner link already.
    pub(crate) fn catch_up(&self) -> Result<(), IpamError> {
        if self.is_complete() {
            return Ok(());
        }
        super::refuse_symlink(&self.dir)?;
        fs::create_dir_all(&self.dir).map_err(IpamError::io("create index directory", &self.dir))?;
        let names: Vec<String> = (0..BUCKETS).map(|b| format!("{b:02x}")).collect();
        let old: Vec<Vec<Line>> = names.iter().map(|name| self.read_bucket(name)).collect();
        let known: HashMap<IpAddr, &Line> = old.iter().flatten().map(|line| (line.ip, line)).collect();
        let mut new: Vec<Vec<Line>> = vec![Vec::new(); names.len()];
        let entries = fs::read_dir(&self.truth).map_err(IpamError::io("list", &self.truth))?;
        for entry in entries.flatten() {
            let Some(ip) = entry.file_name().to_str().and_then(parse_address) else {
                continue;
            };
            // fstatat on the listing's descriptor, not following a link: no walk of the whole path.
            let Ok(meta) = entry.metadata() else {
                continue;
            };
            if !meta.is_file() || meta.nlink() > 1 {
                continue;
            }
            let version = Version {
                ino: meta.ino(),
                ctime: (meta.ctime(), meta.ctime_nsec()),
            };
            let line = match known.get(&ip) {
                Some(line) if line.version == version => (*line).clone(),
                _ => {
                    let Some(owner) = read_listed(&entry.path(), &meta).and_then(|text| Owner::parse(&text)) else {
                        continue;
                    };
                    Line {
                        ip,
                        version,
                        key: owner_key(&owner),
                    }
                }
            };
            let bucket = (fnv64(line.key.as_bytes()) % BUCKETS) as usize;
            new[bucket].push(line);
        }
        for ((name, before), after) in names.iter().zip(&old).zip(&mut new) {
            after.sort_by_key(|line| line.ip);
            let same = before.len() == after.len()
                && before
                    .iter()
                    .zip(after.iter())
                    .all(|(a, b)| a.ip == b.ip && a.version == b.version && a.key == b.key);
            if same {
                continue;
            }
            let path = self.dir.join(name);
            if after.is_empty() {
                match fs::remove_file(&path) {
                    Ok(()) => {}
                    Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
                    Err(err) => return Err(IpamError::io("remove catalog bucket", path)(err)),
                }
                continue;
            }
            let mut text = format!("{MAGIC}\n");
            for line in after.iter() {
                line.render(&mut text);
            }
            write_whole(&path, text.as_bytes()).map_err(IpamError::io("write catalog bucket", &path))?;
        }
        let complete = self.dir.join(COMPLETE);
        super::overwrite(&complete, b"").map_err(IpamError::io("mark the catalog complete", complete))
    }
}

/// Reads a reservation file that the listing's `lstat` (`listed`) showed to be a regular file: opened
/// without following a link and without blocking, and read only if it is still that file. The first
/// catch-up after 10,000 foreign reservations reads them all, so it skips the second `lstat` that
/// [`read_small`] makes for a path it knows nothing about.
fn read_listed(path: &Path, listed: &fs::Metadata) -> Option<String> {
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(no_follow() | (nix::fcntl::OFlag::O_NONBLOCK | nix::fcntl::OFlag::O_NOCTTY).bits())
        .open(path)
        .ok()?;
    let meta = file.metadata().ok()?;
    if !meta.is_file() || meta.ino() != listed.ino() || meta.dev() != listed.dev() {
        return None;
    }
    let mut data = Vec::new();
    file.take(super::MAX_RECORD + 1).read_to_end(&mut data).ok()?;
    if data.len() as u64 > super::MAX_RECORD {
        return None;
    }
    String::from_utf8(data).ok()
}

/// Writes a file under a temporary name and renames it into place, so that a reader (or a crash)
/// never sees half a bucket.
fn write_whole(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    let mut file = private_file().write(true).create(true).truncate(true).open(&tmp)?;
    file.write_all(bytes)?;
    drop(file);
    fs::rename(&tmp, path)
}
