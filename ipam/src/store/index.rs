//! roslan's index over a host-local directory: lookups and free-address search whose cost does not
//! grow with the number of reservations, while the per-address files stay the only truth.
//!
//! Layout, under `<dataDir>/.roslan/<network>/` (host-local never looks there: network names cannot
//! start with a dot):
//! - `owners/<container>@<ifname>/<address>`: a *hard link* to `<dataDir>/<network>/<address>`. An entry
//!   proves itself: it is live exactly when the reservation file still exists with the same inode.
//!   And a reservation roslan has indexed has two links, one written by another program (host-local)
//!   has one, so catching up never needs to read files roslan already knows.
//! - `sets/<fingerprint>`: a bitmap of the taken addresses of one range set, so the next free address
//!   is a scan of a few bytes instead of one `open(O_EXCL)` per taken address.
//! - `stamp`: the modification time roslan last gave the network directory.
//!
//! - `catalog/`: the owners of reservation files no owner link covers, read lazily ([`super::catalog`]).
//!
//! Detecting other programs: after each change, roslan sets the network directory's mtime to a
//! synthetic value in the year 2000 and records it in `stamp`. Any file another program creates or
//! removes in that directory sets its mtime to the current time, so at the next lock roslan sees the
//! difference. It then reads nothing: it drops the bitmaps (the next ADD rebuilds its set's bitmap from
//! one listing of names) and marks the catalog incomplete (the next DEL, CHECK or GC reads the
//! files it has not seen). A process killed half-way leaves the directory's mtime real too, so the same
//! check repairs the index after a crash. The bitmaps are only hints: every reservation is still an
//! `O_EXCL` create, so a stale bitmap can cost a retry, never a duplicate.

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::net::IpAddr;
use std::os::unix::fs::{DirEntryExt, FileExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use nix::sys::stat::futimens;
use nix::sys::time::TimeSpec;

use super::catalog::Catalog;
use super::{Owner, no_follow, overwrite, parse_address, private_file, read_small};
use crate::IpamError;
use crate::fnv::fnv64;
use crate::range::{RangeSet, to_u128};

/// Sets larger than this (IPv6 /64 pools) get no bitmap: their round-robin walk essentially never
/// meets a taken address, and the bitmap would be megabytes.
const MAX_BITMAP_ADDRESSES: u128 = 1 << 24;
/// Sets of more ranges than this get no bitmap either: its header (48 bytes a range) would be read and
/// compared on every ADD, and such sets are rare enough for the walk.
const MAX_BITMAP_RANGES: usize = 4096;
const BITMAP_MAGIC: &[u8; 8] = b"RLSET01\n";
const STAMP_MAGIC: &str = "roslan-index 1";
/// 2000-01-01T00:00:00Z: stamps live in the year after this, far from any real modification time.
const STAMP_EPOCH: i64 = 946_684_800;

/// The directory name of an owner: readable when the parts are plain, a hash otherwise (legacy files
/// may hold anything as a container ID, and a name must never escape the index directory).
pub(crate) fn owner_key(owner: &Owner) -> String {
    let plain = |s: &str, extra: &str| {
        s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c) || extra.contains(c))
    };
    let id = owner.container_id.trim();
    if !id.is_empty()
        && !id.starts_with('.')
        && id.len() + owner.ifname.len() < 200
        && plain(id, "")
        && plain(&owner.ifname, "@")
    {
        format!("{id}@{}", owner.ifname)
    } else {
        format!("h-{:016x}", fnv64(format!("{id}\0{}", owner.ifname).as_bytes()))
    }
}

/// Mtime of a directory as (seconds, nanoseconds).
fn mtime_of(path: &Path) -> Option<(i64, i64)> {
    fs::symlink_metadata(path).ok().map(|m| (m.mtime(), m.mtime_nsec()))
}

/// The index of one network directory. Only used with the store's lock held.
#[derive(Debug)]
pub(crate) struct Index {
    root: PathBuf,
    truth: PathBuf,
    catalog: Catalog,
}

impl Index {
    /// Opens the index next to `truth` (`<dataDir>/<network>`), creating its directories.
    pub(crate) fn open(data_dir: &Path, network: &str, truth: &Path) -> Result<Index, IpamError> {
        let root = data_dir.join(".roslan").join(network);
        for dir in [
            data_dir.join(".roslan"),
            root.clone(),
            root.join("owners"),
            root.join("sets"),
        ] {
            super::refuse_symlink(&dir)?;
            fs::create_dir_all(&dir).map_err(IpamError::io("create index directory", &dir))?;
        }
        Ok(Index {
            catalog: Catalog::new(root.join("catalog"), truth),
            root,
            truth: truth.to_path_buf(),
        })
    }

    /// True when nothing but roslan has changed the directory since roslan last stamped it.
    pub(crate) fn is_current(&self) -> bool {
        let recorded = read_small(&self.root.join("stamp")).and_then(|text| {
            let mut parts = text.strip_prefix(STAMP_MAGIC)?.split_whitespace();
            Some((parts.next()?.parse::<i64>().ok()?, parts.next()?.parse::<i64>().ok()?))
        });
        recorded.is_some() && recorded == mtime_of(&self.truth)
    }

    /// Takes note that others changed the directory (or a roslan process died in it): the bitmaps
    /// are dropped, to be rebuilt from one listing on next use, and the catalog of unlinked files is marked
    /// incomplete, to be caught up by the first DEL, CHECK or GC that needs an owner. Nothing is read
    /// here, which is what keeps the first ADD after 10,000 foreign reservations cheap.
    pub(crate) fn resync(&self) -> Result<(), IpamError> {
        self.drop_bitmaps();
        self.catalog.mark_incomplete()
    }

    /// The catalog of the reservations no owner link covers.
    pub(crate) fn catalog(&self) -> &Catalog {
        &self.catalog
    }

    /// Removes every set's bitmap; each is rebuilt from the directory when next used.
    pub(crate) fn drop_bitmaps(&self) {
        if let Ok(entries) = fs::read_dir(self.root.join("sets")) {
            for entry in entries.flatten() {
                let _ = fs::remove_file(entry.path());
            }
        }
    }

    fn owner_dir(&self, owner: &Owner) -> PathBuf {
        self.root.join("owners").join(owner_key(owner))
    }

    /// Records that `owner` holds `ip` (its reservation file exists).
    pub(crate) fn link(&self, ip: IpAddr, owner: &Owner) -> Result<(), IpamError> {
        let dir = self.owner_dir(owner);
        fs::create_dir_all(&dir).map_err(IpamError::io("create index directory", &dir))?;
        let link = dir.join(ip.to_string());
        let _ = fs::remove_file(&link);
        let target = self.truth.join(ip.to_string());
        fs::hard_link(&target, &link).map_err(IpamError::io("index reservation", &link))
    }

    /// Forgets `owner`'s link to `ip`.
    pub(crate) fn unlink(&self, ip: IpAddr, owner: &Owner) {
        let dir = self.owner_dir(owner);
        let _ = fs::remove_file(dir.join(ip.to_string()));
        let _ = fs::remove_dir(&dir);
    }

    /// The addresses `owner` holds: each index link whose reservation file is still the same file.
    /// Stale links (the reservation was released or replaced by another program) are removed.
    pub(crate) fn lookup(&self, owner: &Owner) -> Vec<IpAddr> {
        let dir = self.owner_dir(owner);
        let Ok(entries) = fs::read_dir(&dir) else {
            return Vec::new();
        };
        let mut held = Vec::new();
        for entry in entries.flatten() {
            let Some(ip) = entry.file_name().to_str().and_then(parse_address) else {
                continue;
            };
            let live = fs::symlink_metadata(self.truth.join(ip.to_string()))
                .is_ok_and(|m| m.is_file() && m.ino() == entry.ino());
            if live {
                held.push(ip);
            } else {
                let _ = fs::remove_file(entry.path());
            }
        }
        if held.is_empty() {
            let _ = fs::remove_dir(&dir);
        }
        held.sort();
        held
    }

    /// Records a fresh stamp and gives it to the directory. When the file system cannot keep it
    /// (read-only, no permission), the stamp is removed so the next lock catches up again.
    pub(crate) fn commit(&self) {
        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
        let mix = u64::from(now.subsec_nanos()) ^ (u64::from(std::process::id()) << 20) ^ now.as_secs();
        let wanted = TimeSpec::new(
            STAMP_EPOCH + (mix % (365 * 86_400)) as i64,
            ((mix >> 7) % 1_000_000_000) as i64,
        );
        let stamp = self.root.join("stamp");
        let applied = File::open(&self.truth)
            .ok()
            .filter(|dir| futimens(dir, &TimeSpec::UTIME_OMIT, &wanted).is_ok())
            .and_then(|_| mtime_of(&self.truth));
        match applied {
            Some((sec, nsec)) => {
                // A torn stamp cannot parse, which only makes the next lock catch up.
                let text = format!("{STAMP_MAGIC} {sec} {nsec}\n");
                if overwrite(&stamp, text.as_bytes()).is_err() {
                    let _ = fs::remove_file(&stamp);
                }
            }
            None => {
                let _ = fs::remove_file(&stamp);
            }
        }
    }

    /// Forces the next lock to catch up (used when the index was found wrong).
    pub(crate) fn invalidate(&self) {
        let _ = fs::remove_file(self.root.join("stamp"));
    }

    /// The bitmap of `set`, built from the directory listing if it does not exist yet; `None` for sets
    /// too large to map.
    pub(crate) fn bitmap(&self, set: &RangeSet) -> Result<Option<Bitmap>, IpamError> {
        if set.0.len() > MAX_BITMAP_RANGES {
            return Ok(None);
        }
        let layout = Layout::of(set);
        if layout.capacity > MAX_BITMAP_ADDRESSES {
            return Ok(None);
        }
        let path = self.root.join("sets").join(format!("{:016x}", fnv64(&layout.header)));
        if let Ok(file) = OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(no_follow())
            .open(&path)
        {
            let mut head = vec![0u8; layout.header.len()];
            if file.read_exact_at(&mut head, 0).is_ok() && head == layout.header {
                return Ok(Some(Bitmap { file, layout }));
            }
        }
        let mut bits = vec![0u8; layout.bytes()];
        let mut mark = |ip: IpAddr| {
            if let Some(pos) = layout.position(ip) {
                bits[(pos / 8) as usize] |= 1 << (pos % 8);
            }
        };
        for gateway in &layout.gateways {
            mark(*gateway);
        }
        let entries = fs::read_dir(&self.truth).map_err(IpamError::io("list", &self.truth))?;
        for entry in entries.flatten() {
            if let Some(ip) = entry.file_name().to_str().and_then(parse_address) {
                mark(ip);
            }
        }
        // Written whole under a temporary name and renamed into place, so no reader sees half a
        // bitmap; the open file stays valid across the rename and is the one used from here on.
        let tmp = path.with_extension("tmp");
        let write = || -> std::io::Result<File> {
            let mut file = private_file()
                .read(true)
                .write(true)
                .create(true)
                .truncate(true)
                .open(&tmp)?;
            file.write_all(&layout.header)?;
            file.write_all(&bits)?;
            fs::rename(&tmp, &path)?;
            Ok(file)
        };
        let file = write().map_err(IpamError::io("write index bitmap", &path))?;
        Ok(Some(Bitmap { file, layout }))
    }

    /// Updates every existing bitmap that covers `ip`.
    pub(crate) fn mark(&self, ip: IpAddr, taken: bool) {
        let Ok(entries) = fs::read_dir(self.root.join("sets")) else {
            return;
        };
        for entry in entries.flatten() {
            let Ok(mut file) = OpenOptions::new()
                .read(true)
                .write(true)
                .custom_flags(no_follow())
                .open(entry.path())
            else {
                continue;
            };
            let mut header = Vec::new();
            if Layout::read_header(&mut file, &mut header).is_err() {
                continue;
            }
            if let Some(layout) = Layout::parse(&header) {
                Bitmap { file, layout }.set(ip, taken);
            }
        }
    }
}

/// Where each address of a set sits in its bitmap: the set's ranges laid end to end.
#[derive(Clone, Debug)]
pub(crate) struct Layout {
    v4: bool,
    /// (start, end) of each range, numeric, inclusive.
    ranges: Vec<(u128, u128)>,
    /// (start, end, first bit) of each range, sorted by start: finding an address's bit is a binary
    /// search, so building a bitmap costs O(reservations x log ranges).
    by_start: Vec<(u128, u128, u128)>,
    gateways: Vec<IpAddr>,
    capacity: u128,
    header: Vec<u8>,
}

/// The ranges sorted by start, each with the position of its first bit.
fn sorted_with_bases(ranges: &[(u128, u128)]) -> Vec<(u128, u128, u128)> {
    let mut base = 0;
    let mut out: Vec<(u128, u128, u128)> = ranges
        .iter()
        .map(|(start, end)| {
            let entry = (*start, *end, base);
            base += end - start + 1;
            entry
        })
        .collect();
    out.sort_unstable_by_key(|(start, _, _)| *start);
    out
}

impl Layout {
    fn of(set: &RangeSet) -> Layout {
        let ranges: Vec<(u128, u128)> = set
            .0
            .iter()
            .map(|r| (to_u128(r.range_start), to_u128(r.range_end)))
            .collect();
        let gateways = set.0.iter().map(|r| r.gateway).collect::<Vec<_>>();
        let mut header = BITMAP_MAGIC.to_vec();
        header.extend_from_slice(&(ranges.len() as u32).to_le_bytes());
        header.extend_from_slice(&u32::from(set.is_ipv4()).to_le_bytes());
        for ((start, end), gateway) in ranges.iter().zip(&gateways) {
            header.extend_from_slice(&start.to_le_bytes());
            header.extend_from_slice(&end.to_le_bytes());
            header.extend_from_slice(&to_u128(*gateway).to_le_bytes());
        }
        header.resize(header.len().div_ceil(64) * 64, 0);
        let capacity = ranges.iter().map(|(s, e)| e - s + 1).sum();
        Layout {
            v4: set.is_ipv4(),
            by_start: sorted_with_bases(&ranges),
            ranges,
            gateways,
            capacity,
            header,
        }
    }

    fn read_header(file: &mut File, out: &mut Vec<u8>) -> std::io::Result<()> {
        let mut fixed = [0u8; 16];
        file.read_exact(&mut fixed)?;
        if &fixed[..8] != BITMAP_MAGIC {
            return Err(std::io::ErrorKind::InvalidData.into());
        }
        let n = u32::from_le_bytes([fixed[8], fixed[9], fixed[10], fixed[11]]) as usize;
        if n > MAX_BITMAP_RANGES {
            return Err(std::io::ErrorKind::InvalidData.into());
        }
        let total = (16 + n * 48).div_ceil(64) * 64;
        out.clear();
        out.extend_from_slice(&fixed);
        out.resize(total, 0);
        file.read_exact(&mut out[16..])
    }

    fn parse(header: &[u8]) -> Option<Layout> {
        let n = u32::from_le_bytes(header.get(8..12)?.try_into().ok()?) as usize;
        let v4 = u32::from_le_bytes(header.get(12..16)?.try_into().ok()?) == 1;
        let mut ranges = Vec::with_capacity(n);
        let mut gateways = Vec::with_capacity(n);
        for i in 0..n {
            let at = 16 + i * 48;
            let num = |o: usize| {
                header
                    .get(at + o..at + o + 16)
                    .and_then(|b| b.try_into().ok())
                    .map(u128::from_le_bytes)
            };
            ranges.push((num(0)?, num(16)?));
            gateways.push(crate::range::from_u128(num(32)?, v4));
        }
        let capacity = ranges.iter().map(|(s, e)| e - s + 1).sum();
        Some(Layout {
            v4,
            by_start: sorted_with_bases(&ranges),
            ranges,
            gateways,
            capacity,
            header: header.to_vec(),
        })
    }

    fn bytes(&self) -> usize {
        self.capacity.div_ceil(8) as usize
    }

    /// Bit position of `ip`, if the set covers it.
    fn position(&self, ip: IpAddr) -> Option<u128> {
        if ip.is_ipv4() != self.v4 {
            return None;
        }
        let n = to_u128(ip);
        let after = self.by_start.partition_point(|(start, _, _)| *start <= n);
        let (start, end, base) = self.by_start.get(after.checked_sub(1)?)?;
        (n <= *end).then(|| base + (n - start))
    }

    fn address(&self, mut pos: u128) -> IpAddr {
        for (start, end) in &self.ranges {
            let len = end - start + 1;
            if pos < len {
                return crate::range::from_u128(start + pos, self.v4);
            }
            pos -= len;
        }
        unreachable!("position within capacity")
    }
}

/// One set's bitmap file.
pub(crate) struct Bitmap {
    file: File,
    layout: Layout,
}

impl Bitmap {
    /// Marks `ip` taken or free, if this set covers it.
    pub(crate) fn set(&self, ip: IpAddr, taken: bool) {
        let Some(pos) = self.layout.position(ip) else { return };
        let offset = self.layout.header.len() as u64 + (pos / 8) as u64;
        let mut byte = [0u8];
        if self.file.read_exact_at(&mut byte, offset).is_err() {
            return;
        }
        let bit = 1u8 << (pos % 8);
        byte[0] = if taken { byte[0] | bit } else { byte[0] & !bit };
        let _ = self.file.write_all_at(&byte, offset);
    }

    /// The first address marked free after `after` (or from the set's start), wrapping around once:
    /// host-local's round-robin order.
    pub(crate) fn next_free(&self, after: Option<IpAddr>) -> Option<IpAddr> {
        let capacity = self.layout.capacity;
        let start = after
            .and_then(|ip| self.layout.position(ip))
            .map_or(0, |p| (p + 1) % capacity);
        let mut bits = vec![0u8; self.layout.bytes()];
        self.file
            .read_exact_at(&mut bits, self.layout.header.len() as u64)
            .ok()?;
        let free_at = |pos: u128| bits[(pos / 8) as usize] & (1 << (pos % 8)) == 0;
        let mut pos = start;
        for _ in 0..capacity {
            if pos.is_multiple_of(8) && pos + 8 <= capacity && bits[(pos / 8) as usize] == 0xff {
                pos = (pos + 8) % capacity;
                continue;
            }
            if free_at(pos) {
                return Some(self.layout.address(pos));
            }
            pos = (pos + 1) % capacity;
        }
        None
    }
}
