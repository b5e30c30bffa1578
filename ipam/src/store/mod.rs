//! The reservation store, in host-local's on-disk format byte for byte.
//!
//! Layout of `<dataDir>/<network>/`:
//! - one file per reserved address, named by the address (`10.88.0.2`, `fd00::5`), holding
//!   `containerID\r\nifname` with no trailing newline (files from before CNI 0.8 hold only the ID);
//! - `last_reserved_ip.<set>`: the last address reserved in range set `<set>`, the round-robin cursor;
//! - `lock`: an empty file, `flock`ed exclusively around every read-modify-write.
//!
//! A reservation is the `O_EXCL` creation of its file, so two programs can never reserve one address twice
//! even without the lock; the lock only makes the duplicate checks and the cursor consistent. Because the
//! format and the lock are host-local's, the reference host-local and roslan can share a directory.
//!
//! Nothing here follows a symbolic link: a link planted in the directory is refused or skipped, so that a
//! reservation can never write outside the data directory.
//!
//! Finding an attachment's addresses or a free address would mean reading every file (host-local's cost,
//! 46 ms per ADD at 10,000 reservations); the [`index`] next to the directory makes both independent of
//! the number of reservations and stays correct when host-local or anything else changes the directory.
//! What another program wrote is indexed by name from one listing; its owners are read only when a
//! DEL, CHECK or GC needs them ([`catalog`]), so the first ADD after host-local wrote 10,000
//! reservations does not read 10,000 files.

mod catalog;
mod index;
mod sticky;

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::net::IpAddr;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use nix::fcntl::OFlag;

use crate::IpamError;
use crate::range::{RangeSet, canonical};

pub use sticky::PodRef;

/// Default data directory, as host-local's.
pub const DEFAULT_DATA_DIR: &str = "/var/lib/cni/networks";
const LAST_RESERVED_PREFIX: &str = "last_reserved_ip.";
const LOCK_FILE: &str = "lock";
const LINE_BREAK: &str = "\r\n";
/// The container ID of a foreign host's mark ([`Owner::foreign`]).
const FOREIGN_HOST: &str = "foreign-host";

/// Who holds an address: the attachment (container ID, interface name).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Owner {
    /// CNI_CONTAINERID.
    pub container_id: String,
    /// CNI_IFNAME.
    pub ifname: String,
}

impl Owner {
    /// An owner from its two parts.
    pub fn new(container_id: impl Into<String>, ifname: impl Into<String>) -> Owner {
        Owner {
            container_id: container_id.into(),
            ifname: ifname.into(),
        }
    }

    /// The owner recorded for an address that another device on the LAN answered for (an ARP probe
    /// or IPv6 DAD), `evidence` saying how it was seen: host-local and roslan both see the address as
    /// taken, GC releases the mark so that it is probed again later, and the doctor lists the marks.
    pub fn foreign(evidence: &str) -> Owner {
        Owner::new(FOREIGN_HOST, evidence)
    }

    /// Whether this is a foreign host's mark ([`Owner::foreign`]).
    pub fn is_foreign(&self) -> bool {
        self.container_id == FOREIGN_HOST
    }

    /// The exact bytes host-local writes into a reservation file.
    pub fn record(&self) -> String {
        format!("{}{LINE_BREAK}{}", self.container_id.trim(), self.ifname)
    }

    /// host-local's match rule: the trimmed file content is `id\r\nifname`, or just `id` for old files.
    pub fn matches(&self, content: &str) -> bool {
        let content = content.trim();
        content == self.record() || content == self.container_id.trim()
    }

    /// Parses a reservation file's content; `None` when it is not a reservation record.
    pub fn parse(content: &str) -> Option<Owner> {
        let content = content.trim();
        if content.is_empty() {
            return None;
        }
        match content.split_once(LINE_BREAK) {
            Some((id, ifname)) => Some(Owner::new(id.trim(), ifname.trim())),
            None => Some(Owner::new(content, "")),
        }
    }
}

impl std::fmt::Display for Owner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.ifname.is_empty() {
            write!(f, "container {}", self.container_id)
        } else {
            write!(f, "container {} interface {}", self.container_id, self.ifname)
        }
    }
}

/// What the index says about the free addresses of a range set ([`LockedStore::next_free`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Free {
    /// This address is the next free one in round-robin order.
    Address(IpAddr),
    /// Every address of the set is taken.
    Exhausted,
    /// The index cannot tell (no index for this lock, or a set too large for a bitmap): try each
    /// address in turn, as host-local does.
    Unknown,
}

/// One reservation found on disk.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// The reserved address.
    pub ip: IpAddr,
    /// Its holder, as recorded in the file.
    pub owner: Owner,
}

/// The store of one network: `<dataDir>/<network>/`.
#[derive(Debug)]
pub struct Store {
    data_dir: PathBuf,
    network: String,
    dir: PathBuf,
}

/// The store with its lock held; every read-modify-write goes through this.
#[derive(Debug)]
pub struct LockedStore<'a> {
    store: &'a Store,
    _lock: File,
    /// `None` when the index cannot be used here (then every lookup scans, as host-local does).
    index: Option<index::Index>,
    /// Something changed: the index gets a new stamp when the lock is released.
    dirty: bool,
}

pub(crate) fn no_follow() -> i32 {
    OFlag::O_NOFOLLOW.bits()
}

/// How every file of the store is opened for writing: created 0600 (reservations name containers) and
/// never through a symbolic link (a link planted in the directory must not redirect a write).
pub(crate) fn private_file() -> OpenOptions {
    let mut options = OpenOptions::new();
    options.mode(0o600).custom_flags(no_follow());
    options
}

/// Writes a small file (created 0600 if missing, never through a link) by overwriting it in place and
/// cutting it to length. Not O_TRUNC: on ext4 a truncate to zero followed by a write forces a block
/// allocation on close (auto_da_alloc), and not a rename over it, which flushes data first; each costs
/// ~0.2 ms per ADD. A torn write leaves text that does not parse, which every reader tolerates.
pub(crate) fn overwrite(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut file = private_file().write(true).create(true).truncate(false).open(path)?;
    file.write_all(bytes)?;
    file.set_len(bytes.len() as u64)
}

/// Fails if `path` exists and is a symbolic link.
pub(crate) fn refuse_symlink(path: &Path) -> Result<(), IpamError> {
    match fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_symlink() => Err(IpamError::Symlink(path.to_path_buf())),
        _ => Ok(()),
    }
}

/// Validates a network name as one safe path component.
pub fn check_network_name(network: &str) -> Result<(), IpamError> {
    let bad = network.is_empty()
        || network == "."
        || network == ".."
        || network.starts_with('.')
        || network.len() > 255
        || network.contains(['/', '\0']);
    if bad {
        Err(IpamError::BadNetworkName(network.to_string()))
    } else {
        Ok(())
    }
}

/// The networks that have a directory under `data_dir`, from one listing, sorted: what the doctor
/// shows when it has no configuration. roslan's own area (`.roslan`) and anything that cannot be a
/// network's directory (a link, a file, a name [`check_network_name`] refuses) are left out.
pub fn networks(data_dir: &Path) -> Result<Vec<String>, IpamError> {
    refuse_symlink(data_dir)?;
    let entries = fs::read_dir(data_dir).map_err(IpamError::io("list", data_dir))?;
    let mut names: Vec<String> = entries
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|name| check_network_name(name).is_ok())
        .collect();
    names.sort();
    Ok(names)
}

impl Store {
    /// Opens (creating when needed) the directory of `network` under `data_dir`.
    pub fn open(data_dir: &Path, network: &str) -> Result<Store, IpamError> {
        check_network_name(network)?;
        refuse_symlink(data_dir)?;
        let dir = data_dir.join(network);
        refuse_symlink(&dir)?;
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o755)
            .create(&dir)
            .map_err(IpamError::io("create directory", &dir))?;
        Ok(Store {
            data_dir: data_dir.to_path_buf(),
            network: network.to_string(),
            dir,
        })
    }

    /// Opens the directory only if it exists; DEL and GC use this so that they never create state.
    pub fn open_existing(data_dir: &Path, network: &str) -> Result<Option<Store>, IpamError> {
        check_network_name(network)?;
        refuse_symlink(data_dir)?;
        let dir = data_dir.join(network);
        refuse_symlink(&dir)?;
        if dir.is_dir() {
            Ok(Some(Store {
                data_dir: data_dir.to_path_buf(),
                network: network.to_string(),
                dir,
            }))
        } else {
            Ok(None)
        }
    }

    /// The network's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The addresses that have a reservation file, from one directory listing. Without the lock this is
    /// a snapshot, good for counting (the node agent's headroom), never for deciding a reservation.
    pub fn addresses(&self) -> Result<Vec<IpAddr>, IpamError> {
        let entries = fs::read_dir(&self.dir).map_err(IpamError::io("list", &self.dir))?;
        Ok(entries
            .flatten()
            .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
            .filter_map(|e| e.file_name().to_str().and_then(parse_address))
            .collect())
    }

    /// Takes the exclusive `flock` on `lock`, waiting for other holders (host-local included). The lock
    /// must be a regular file: a link is refused like every link in the store, and a FIFO or device
    /// planted there is opened without blocking and refused.
    pub fn lock(&self) -> Result<LockedStore<'_>, IpamError> {
        let path = self.dir.join(LOCK_FILE);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .custom_flags(no_follow() | (OFlag::O_NONBLOCK | OFlag::O_NOCTTY).bits())
            .open(&path)
            .map_err(|err| {
                if err.raw_os_error() == Some(nix::errno::Errno::ELOOP as i32) {
                    IpamError::Symlink(path.clone())
                } else {
                    IpamError::io("open lock file", &path)(err)
                }
            })?;
        let meta = file.metadata().map_err(IpamError::io("stat lock file", &path))?;
        if !meta.is_file() {
            return Err(IpamError::NotRegularFile {
                path,
                kind: crate::file::kind_of(meta.file_type()),
            });
        }
        file.lock().map_err(IpamError::io("lock", &path))?;
        let mut locked = LockedStore {
            store: self,
            _lock: file,
            index: None,
            dirty: false,
        };
        if let Ok(index) = index::Index::open(&self.data_dir, &self.network, &self.dir) {
            if index.is_current() {
                locked.index = Some(index);
            } else if index.resync().is_ok() {
                locked.index = Some(index);
                locked.dirty = true;
            } else {
                index.invalidate();
            }
        }
        Ok(locked)
    }
}

/// What the index holds for `owner`: its owner links and the catalog's checked lines, the
/// exact record first, then (for an attachment with an interface name) the old ID-only files.
fn indexed(index: &index::Index, owner: &Owner) -> Vec<IpAddr> {
    let both = |owner: &Owner| {
        let mut held = index.lookup(owner);
        held.extend(index.catalog().lookup(owner));
        held.sort();
        held.dedup();
        held
    };
    let exact = both(owner);
    if !exact.is_empty() || owner.ifname.is_empty() {
        return exact;
    }
    both(&Owner::new(owner.container_id.trim(), ""))
}

/// The largest reservation, cursor or stamp file read: a record is a container ID and an interface
/// name, a few dozen bytes; anything near this was not written by host-local or roslan.
pub const MAX_RECORD: u64 = 64 << 10;

/// Reads a small regular file without following links or blocking; `None` if it is absent, not a
/// regular file, larger than [`MAX_RECORD`] or not text.
pub(crate) fn read_small(path: &Path) -> Option<String> {
    let data = crate::file::read_regular(path, MAX_RECORD, crate::file::Links::Refuse).ok()?;
    String::from_utf8(data).ok()
}

/// Parses a directory entry name as a reservation address (host-local names files by `ip.String()`).
pub(crate) fn parse_address(name: &str) -> Option<IpAddr> {
    name.parse::<IpAddr>().ok().map(canonical)
}

impl LockedStore<'_> {
    fn path_of(&self, ip: IpAddr) -> PathBuf {
        self.store.dir.join(canonical(ip).to_string())
    }

    /// Reserves `ip` for `owner` by creating its file exclusively; `false` if someone holds it already.
    /// Also moves set `set_index`'s round-robin cursor to `ip`, as host-local does on every reservation.
    pub fn reserve(&mut self, ip: IpAddr, owner: &Owner, set_index: usize) -> Result<bool, IpamError> {
        self.create_reservation(ip, owner, Some(set_index))
    }

    /// Reserves `ip` for `owner` like [`LockedStore::reserve`], leaving the round-robin cursor where it
    /// is: a pod getting back its sticky address must not send the next new pod to the address after it,
    /// which a recently gone pod may still hope to get back.
    pub fn reserve_keeping_cursor(&mut self, ip: IpAddr, owner: &Owner) -> Result<bool, IpamError> {
        self.create_reservation(ip, owner, None)
    }

    fn create_reservation(&mut self, ip: IpAddr, owner: &Owner, cursor: Option<usize>) -> Result<bool, IpamError> {
        let path = self.path_of(ip);
        let created = private_file().read(true).write(true).create_new(true).open(&path);
        let mut file = match created {
            Ok(file) => file,
            Err(err) if err.kind() == std::io::ErrorKind::AlreadyExists => return Ok(false),
            Err(err) => return Err(IpamError::io("create reservation", &path)(err)),
        };
        if let Err(err) = file.write_all(owner.record().as_bytes()) {
            let _ = fs::remove_file(&path);
            return Err(IpamError::io("write reservation", &path)(err));
        }
        drop(file);
        self.dirty = true;
        // A reservation whose cursor cannot be written is given back, not left behind: the caller
        // sees an error and would never release an address it was not told about.
        if let Some(set_index) = cursor
            && let Err(err) = self.write_last_reserved(set_index, ip)
        {
            let _ = fs::remove_file(&path);
            return Err(err);
        }
        if let Some(index) = &self.index {
            if index.link(ip, owner).is_ok() {
                index.mark(ip, true);
            } else {
                self.drop_index();
            }
        }
        Ok(true)
    }

    /// Stops using the index for this lock and makes the next lock rebuild it: the index must never
    /// be the reason an operation fails.
    fn drop_index(&mut self) {
        if let Some(index) = self.index.take() {
            index.invalidate();
        }
    }

    fn write_last_reserved(&self, set_index: usize, ip: IpAddr) -> Result<(), IpamError> {
        let path = self.store.dir.join(format!("{LAST_RESERVED_PREFIX}{set_index}"));
        refuse_symlink(&path)?;
        overwrite(&path, canonical(ip).to_string().as_bytes()).map_err(IpamError::io("write round-robin cursor", &path))
    }

    /// The round-robin cursor of set `set_index`, if any.
    pub fn last_reserved(&self, set_index: usize) -> Option<IpAddr> {
        let text = read_small(&self.store.dir.join(format!("{LAST_RESERVED_PREFIX}{set_index}")))?;
        text.trim().parse::<IpAddr>().ok().map(canonical)
    }

    /// Who holds `ip`, if anyone.
    pub fn holder(&self, ip: IpAddr) -> Option<Owner> {
        read_small(&self.path_of(ip)).and_then(|text| Owner::parse(&text))
    }

    /// Releases `ip` only if its file still belongs to `owner`; `true` if it was removed.
    pub fn release(&mut self, ip: IpAddr, owner: &Owner) -> Result<bool, IpamError> {
        let path = self.path_of(ip);
        let Some(text) = read_small(&path).filter(|text| owner.matches(text)) else {
            return Ok(false);
        };
        match fs::remove_file(&path) {
            Ok(()) => {}
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(false),
            Err(err) => return Err(IpamError::io("remove reservation", &path)(err)),
        }
        self.dirty = true;
        if let (Some(index), Some(recorded)) = (&self.index, Owner::parse(&text)) {
            index.unlink(ip, &recorded);
            index.mark(ip, false);
        }
        Ok(true)
    }

    /// The first address of `set` that the index knows to be free, in round-robin order after `after`.
    /// Only a hint: the reservation is still the exclusive create, which may find the address taken.
    pub fn next_free(&mut self, set: &RangeSet, after: Option<IpAddr>) -> Result<Free, IpamError> {
        let Some(index) = &self.index else {
            return Ok(Free::Unknown);
        };
        match index.bitmap(set) {
            Ok(Some(bitmap)) => Ok(bitmap.next_free(after).map_or(Free::Exhausted, Free::Address)),
            Ok(None) => Ok(Free::Unknown),
            Err(_) => {
                self.drop_index();
                Ok(Free::Unknown)
            }
        }
    }

    /// Tells the store that the range sets allocated from have changed (the node agent leased or gave
    /// back a block): the index drops its bitmaps, which are per set, so that those of sets no longer
    /// used do not pile up and slow every reservation that updates them. They are rebuilt on next use.
    pub fn sets_changed(&mut self) {
        if let Some(index) = &self.index {
            index.drop_bitmaps();
        }
    }

    /// Tells the store that its index called `ip` free when it was not: the index is rebuilt at the
    /// next lock.
    pub fn index_was_wrong(&mut self, ip: IpAddr) {
        if let Some(index) = &self.index {
            index.mark(ip, true);
        }
        self.drop_index();
    }

    /// Every reservation in the directory. Files that are not reservations (the lock, cursors,
    /// links, unreadable files) are skipped, as host-local skips them.
    pub fn entries(&self) -> Result<Vec<Entry>, IpamError> {
        let dir = &self.store.dir;
        let mut entries = Vec::new();
        for item in fs::read_dir(dir).map_err(IpamError::io("list", dir))? {
            let Ok(item) = item else { continue };
            let Some(ip) = item.file_name().to_str().and_then(parse_address) else {
                continue;
            };
            if !item.file_type().is_ok_and(|t| t.is_file()) {
                continue;
            }
            if let Some(owner) = read_small(&item.path()).and_then(|text| Owner::parse(&text)) {
                entries.push(Entry { ip, owner });
            }
        }
        Ok(entries)
    }

    /// Addresses held by `owner` (exact record first; old ID-only files count too, as in host-local),
    /// every one of them: files another program wrote are read if the index has not seen them yet. DEL
    /// and CHECK ask this.
    pub fn find(&self, owner: &Owner) -> Result<Vec<IpAddr>, IpamError> {
        if let Some(index) = &self.index
            && index.catalog().catch_up().is_ok()
        {
            return Ok(indexed(index, owner));
        }
        self.scan(owner)
    }

    /// Addresses held by `owner` as far as the index knows without reading files it has not seen: all
    /// that roslan reserved, and those of other programs that a DEL, CHECK or GC has read before. ADD
    /// asks this for its duplicate check, so that its cost does not grow with what host-local wrote;
    /// without an index it is [`LockedStore::find`].
    pub fn find_known(&self, owner: &Owner) -> Result<Vec<IpAddr>, IpamError> {
        match &self.index {
            Some(index) => Ok(indexed(index, owner)),
            None => self.scan(owner),
        }
    }

    /// host-local's way: read every file.
    fn scan(&self, owner: &Owner) -> Result<Vec<IpAddr>, IpamError> {
        let entries = self.entries()?;
        let exact: Vec<IpAddr> = entries.iter().filter(|e| &e.owner == owner).map(|e| e.ip).collect();
        if !exact.is_empty() {
            return Ok(exact);
        }
        Ok(entries
            .iter()
            .filter(|e| e.owner.ifname.is_empty() && e.owner.container_id == owner.container_id.trim())
            .map(|e| e.ip)
            .collect())
    }

    /// Releases everything `owner` holds; returns what was released.
    pub fn release_owner(&mut self, owner: &Owner) -> Result<Vec<IpAddr>, IpamError> {
        let mut released = Vec::new();
        for ip in self.find(owner)? {
            if self.release(ip, owner)? {
                released.push(ip);
            }
        }
        Ok(released)
    }
}

#[cfg(test)]
impl LockedStore<'_> {
    /// Releases the lock the way a killed process does: without stamping the index.
    pub(crate) fn die(mut self) {
        self.dirty = false;
    }

    /// Whether the index is in use for this lock.
    pub(crate) fn indexed(&self) -> bool {
        self.index.is_some()
    }
}

impl Drop for LockedStore<'_> {
    fn drop(&mut self) {
        if let (true, Some(index)) = (self.dirty, &self.index) {
            index.commit();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmp() -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "roslan-store-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        let _ = fs::remove_dir_all(&dir);
        dir
    }

    #[test]
    fn writes_host_local_bytes() {
        let data = tmp();
        let store = Store::open(&data, "net").unwrap();
        let mut locked = store.lock().unwrap();
        let ip: IpAddr = "10.0.0.2".parse().unwrap();
        assert!(locked.reserve(ip, &Owner::new("c1", "net1"), 0).unwrap());
        assert!(!locked.reserve(ip, &Owner::new("c2", "net1"), 0).unwrap());
        assert_eq!(fs::read(data.join("net/10.0.0.2")).unwrap(), b"c1\r\nnet1");
        assert_eq!(fs::read(data.join("net/last_reserved_ip.0")).unwrap(), b"10.0.0.2");
        assert_eq!(locked.find(&Owner::new("c1", "net1")).unwrap(), vec![ip]);
        assert!(!locked.release(ip, &Owner::new("c2", "net1")).unwrap());
        assert_eq!(locked.release_owner(&Owner::new("c1", "net1")).unwrap(), vec![ip]);
        drop(locked);
        fs::remove_dir_all(&data).unwrap();
    }

    #[test]
    fn legacy_id_only_files_match() {
        let data = tmp();
        let store = Store::open(&data, "net").unwrap();
        fs::write(data.join("net/10.0.0.9"), "old-id\n").unwrap();
        let mut locked = store.lock().unwrap();
        assert_eq!(locked.release_owner(&Owner::new("old-id", "eth0")).unwrap().len(), 1);
        drop(locked);
        fs::remove_dir_all(&data).unwrap();
    }

    /// Writes reservations the way host-local does (O_EXCL create, record, cursor), for foreign owners.
    fn host_local_writes(dir: &Path, ips: impl Iterator<Item = IpAddr>) {
        let mut last = None;
        for ip in ips {
            let owner = Owner::new(format!("hl-{ip}"), "eth0");
            let mut file = OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(dir.join(ip.to_string()))
                .unwrap();
            file.write_all(owner.record().as_bytes()).unwrap();
            last = Some(ip);
        }
        if let Some(ip) = last {
            fs::write(dir.join("last_reserved_ip.0"), ip.to_string()).unwrap();
        }
    }

    fn set_of(start: &str, end: &str) -> RangeSet {
        RangeSet::new(&[crate::RangeSpec {
            subnet: Some("10.1.0.0/16".parse().unwrap()),
            range_start: Some(start.parse().unwrap()),
            range_end: Some(end.parse().unwrap()),
            gateway: None,
        }])
        .unwrap()
    }

    fn catalog_files(data: &Path) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(data.join(".roslan/net/catalog"))
            .map(|d| {
                d.flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        names.sort();
        names
    }

    #[test]
    fn many_foreign_reservations_are_indexed_by_name_and_read_only_for_del() {
        let data = tmp();
        let store = Store::open(&data, "net").unwrap();
        let dir = data.join("net");
        let set = set_of("10.1.0.1", "10.1.15.254");
        // roslan has used the directory before: its index is current.
        let mine = Owner::new("roslan-pod", "net1");
        let first = crate::allocate(&mut store.lock().unwrap(), std::slice::from_ref(&set), &mine, &[], &[]).unwrap();
        // 10.1.0.1 is the default gateway.
        assert_eq!(first[0].ip, "10.1.0.2".parse::<IpAddr>().unwrap());
        // host-local writes 3000 reservations after it: 10.1.0.3 to 10.1.11.186.
        let foreign: Vec<IpAddr> = set.iter_from(Some(first[0].ip)).map(|c| c.ip).take(3000).collect();
        host_local_writes(&dir, foreign.iter().copied());

        // ADD: the address after host-local's cursor, and not one foreign file read (the catalog is
        // untouched and still incomplete).
        let pod = Owner::new("roslan-pod-2", "net1");
        let mut locked = store.lock().unwrap();
        assert!(locked.indexed());
        let got = crate::allocate(&mut locked, std::slice::from_ref(&set), &pod, &[], &[]).unwrap();
        assert_eq!(got[0].ip, "10.1.11.187".parse::<IpAddr>().unwrap());
        assert!(!foreign.contains(&got[0].ip));
        drop(locked);
        assert_eq!(catalog_files(&data), Vec::<String>::new());

        // DEL of a foreign-written reservation by its container ID: found, released, and the catalog
        // now holds the other owners.
        let victim = foreign[1234];
        let owner = Owner::new(format!("hl-{victim}"), "eth0");
        let mut locked = store.lock().unwrap();
        assert_eq!(locked.release_owner(&owner).unwrap(), vec![victim]);
        drop(locked);
        assert!(!dir.join(victim.to_string()).exists());
        let files = catalog_files(&data);
        assert!(files.contains(&"complete".to_string()) && files.len() > 32, "{files:?}");

        // The next lookups come from the catalog and the owner links, checked against the files.
        let locked = store.lock().unwrap();
        assert_eq!(
            locked.find(&Owner::new(format!("hl-{}", foreign[7]), "eth0")).unwrap(),
            vec![foreign[7]]
        );
        assert_eq!(
            locked
                .find_known(&Owner::new(format!("hl-{}", foreign[8]), "eth0"))
                .unwrap(),
            vec![foreign[8]]
        );
        assert_eq!(locked.find(&mine).unwrap(), vec![first[0].ip]);
        assert_eq!(locked.find(&owner).unwrap(), Vec::<IpAddr>::new());
        // Every reservation is still there for host-local and for GC.
        assert_eq!(locked.entries().unwrap().len(), 3000 - 1 + 2);
        drop(locked);
        fs::remove_dir_all(&data).unwrap();
    }

    #[test]
    fn a_foreign_file_replaced_under_its_name_is_read_again() {
        let data = tmp();
        let store = Store::open(&data, "net").unwrap();
        let dir = data.join("net");
        drop(store.lock().unwrap());
        let ip: IpAddr = "10.1.0.9".parse().unwrap();
        host_local_writes(&dir, std::iter::once(ip));
        let old = Owner::new(format!("hl-{ip}"), "eth0");
        assert_eq!(store.lock().unwrap().find(&old).unwrap(), vec![ip]);
        // host-local releases it and gives it to another container (the inode number may be reused).
        fs::remove_file(dir.join(ip.to_string())).unwrap();
        let new = Owner::new("hl-other", "eth0");
        fs::write(dir.join(ip.to_string()), new.record()).unwrap();
        let mut locked = store.lock().unwrap();
        assert_eq!(locked.find_known(&old).unwrap(), Vec::<IpAddr>::new());
        assert_eq!(locked.find(&old).unwrap(), Vec::<IpAddr>::new());
        assert_eq!(locked.find(&new).unwrap(), vec![ip]);
        assert_eq!(locked.release_owner(&new).unwrap(), vec![ip]);
        drop(locked);
        // A legacy ID-only file written later is found by its container ID for any interface.
        fs::write(dir.join("10.1.0.10"), "legacy-id").unwrap();
        let mut locked = store.lock().unwrap();
        assert_eq!(locked.release_owner(&Owner::new("legacy-id", "net1")).unwrap().len(), 1);
        drop(locked);
        fs::remove_dir_all(&data).unwrap();
    }

    #[test]
    fn a_reservation_of_a_killed_roslan_is_found_by_del() {
        let data = tmp();
        let store = Store::open(&data, "net").unwrap();
        drop(store.lock().unwrap());
        // A roslan process died after creating the file and before linking it: one link, real mtime.
        let owner = Owner::new("crashed", "net1");
        fs::write(data.join("net/10.1.0.3"), owner.record()).unwrap();
        let mut locked = store.lock().unwrap();
        assert_eq!(
            locked.release_owner(&owner).unwrap(),
            vec!["10.1.0.3".parse::<IpAddr>().unwrap()]
        );
        drop(locked);
        fs::remove_dir_all(&data).unwrap();
    }

    #[test]
    fn foreign_marks_and_networks_are_the_stores_own_words() {
        let mark = Owner::foreign("arp 02:00:00:00:00:01");
        assert_eq!(mark.record(), "foreign-host\r\narp 02:00:00:00:00:01");
        assert!(mark.is_foreign() && Owner::parse(&mark.record()).unwrap().is_foreign());
        assert!(!Owner::new("c1", "net1").is_foreign());
        let data = tmp();
        let store = Store::open(&data, "net-b").unwrap();
        drop(store.lock().unwrap());
        Store::open(&data, "net-a").unwrap();
        fs::write(data.join("not-a-network"), "").unwrap();
        std::os::unix::fs::symlink("/tmp", data.join("linked")).unwrap();
        // The index's area (.roslan, created by the lock) is not a network.
        assert!(data.join(".roslan").is_dir());
        assert_eq!(networks(&data).unwrap(), ["net-a", "net-b"]);
        fs::remove_dir_all(&data).unwrap();
    }

    #[test]
    fn refuses_symlinked_network_dir() {
        let data = tmp();
        fs::create_dir_all(&data).unwrap();
        std::os::unix::fs::symlink("/tmp", data.join("net")).unwrap();
        assert!(matches!(Store::open(&data, "net"), Err(IpamError::Symlink(_))));
        assert!(matches!(Store::open(&data, "../x"), Err(IpamError::BadNetworkName(_))));
        fs::remove_dir_all(&data).unwrap();
    }
}
