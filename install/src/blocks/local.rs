//! The node-local side of the block agent: what the node's pods use (read from the IPAM store, which the
//! agent never writes), and the two files it writes for ADD and for `roslan doctor`.
//!
//! The one ordering that keeps a given-back block from being handed out twice: the agent takes the
//! network's store lock, checks that nothing in the block is reserved, rewrites the blocks file without
//! it, releases the lock, and only then deletes the Lease. ADD reads the blocks file under the same lock,
//! so an ADD either ran before (and its reservation is what the check sees) or after (and reads the file
//! without the block); no other node can lease the block before the Lease is gone.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use ipnetwork::IpNetwork;
use roslan_ipam_core::Store;
use roslan_ipam_core::blocks::file::{AgentStatus, NodeBlocks, status_path};

use crate::error::Error;
use crate::files;
use crate::hostpath::HostRoot;

/// Mode of the blocks and status files: world-readable, as the plugin may run unprivileged in tests.
const MODE: u32 = 0o644;

/// The node's files, as host paths under the host root.
#[derive(Clone, Debug)]
pub struct NodeFiles {
    host: HostRoot,
    blocks_file: PathBuf,
}

impl NodeFiles {
    /// The blocks file (a host path) and, next to it, the status file.
    pub fn new(host: HostRoot, blocks_file: PathBuf) -> NodeFiles {
        NodeFiles { host, blocks_file }
    }

    /// The blocks file, as the host (and the plugin) sees it.
    pub fn blocks_file(&self) -> &Path {
        &self.blocks_file
    }

    fn local(&self, host_path: &Path) -> Result<PathBuf, Error> {
        self.host.resolve_parent(host_path)
    }

    /// What the blocks file holds now; `None` when it does not exist yet.
    pub fn read_blocks(&self) -> Result<Option<NodeBlocks>, Error> {
        let local = self.local(&self.blocks_file)?;
        NodeBlocks::read(&local).map_err(|err| Error::Usage(err.to_string()))
    }

    fn write(&self, host_path: &Path, text: &str) -> Result<(), Error> {
        let local = self.local(host_path)?;
        let dir = local
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from("/"));
        std::fs::create_dir_all(&dir).map_err(Error::io("create directory", &dir))?;
        let name = local
            .file_name()
            .and_then(|n| n.to_str())
            .ok_or_else(|| Error::Usage(format!("{} names no file", host_path.display())))?;
        files::replace(&dir, name, text.as_bytes(), MODE, |_| Ok(()))
    }

    /// Replaces the blocks file (atomically: a reader sees the old list or the new one).
    pub fn write_blocks(&self, blocks: &NodeBlocks) -> Result<(), Error> {
        self.write(&self.blocks_file, &blocks.render())
    }

    /// Replaces the status file.
    pub fn write_status(&self, status: &AgentStatus) -> Result<(), Error> {
        self.write(&status_path(&self.blocks_file), &status.render())
    }

    /// Removes both files (uninstall); `true` for each that existed.
    pub fn remove(&self) -> Result<Vec<PathBuf>, Error> {
        let mut removed = Vec::new();
        for path in [self.blocks_file.clone(), status_path(&self.blocks_file)] {
            if files::remove(&self.local(&path)?)? {
                removed.push(path);
            }
        }
        Ok(removed)
    }

    /// A network's IPAM store, resolved under the host root.
    pub fn store_dir(&self, data_dir: &Path) -> Result<PathBuf, Error> {
        self.host.resolve(data_dir)
    }
}

/// The reserved addresses of `network` in `data_dir` (a local path), without the lock: for counting.
pub fn reserved(data_dir: &Path, network: &str) -> Result<Vec<IpAddr>, Error> {
    match Store::open_existing(data_dir, network) {
        Ok(None) => Ok(Vec::new()),
        Ok(Some(store)) => store.addresses().map_err(|err| Error::Usage(err.to_string())),
        Err(err) => Err(Error::Usage(err.to_string())),
    }
}

/// How many of `addresses` lie in `block`.
pub fn used_in(addresses: &[IpAddr], block: IpNetwork) -> u128 {
    addresses.iter().filter(|ip| block.contains(**ip)).count() as u128
}

/// Rewrites the blocks file with every network's stores locked (`stores`: network name to local data
/// dir), so that no ADD reads the file or allocates while it changes, and tells each store that its
/// sets changed. With `must_be_empty`, the write happens only if none of those blocks holds a
/// reservation; returns whether it was written.
pub fn write_locked(
    files: &NodeFiles,
    blocks: &NodeBlocks,
    stores: &BTreeMap<String, PathBuf>,
    must_be_empty: &[(String, IpNetwork)],
) -> Result<bool, Error> {
    let opened: Vec<Store> = stores
        .iter()
        .map(|(network, dir)| Store::open(dir, network).map_err(|err| Error::Usage(err.to_string())))
        .collect::<Result<_, _>>()?;
    // Sorted by network name (a BTreeMap), so two agents never lock in opposite orders.
    let mut locks = Vec::with_capacity(opened.len());
    for store in &opened {
        locks.push(store.lock().map_err(|err| Error::Usage(err.to_string()))?);
    }
    for (network, block) in must_be_empty {
        let Some(i) = stores.keys().position(|n| n == network) else {
            continue;
        };
        let addresses = opened[i].addresses().map_err(|err| Error::Usage(err.to_string()))?;
        if used_in(&addresses, *block) > 0 {
            return Ok(false);
        }
    }
    files.write_blocks(blocks)?;
    for lock in &mut locks {
        lock.sets_changed();
    }
    Ok(true)
}
