//! The built-in IPAM: host-local's semantics and files, in-process, with `nodeRanges` on top.

use std::borrow::Cow;
use std::collections::HashSet;
use std::net::IpAddr;
use std::path::Path;

use ipnetwork::IpNetwork;
use roslan_ipam_core::blocks::file::NodeBlocks;
use roslan_ipam_core::blocks::restrict;
use roslan_ipam_core::file::{Links, read_regular};
use roslan_ipam_core::{Free, IpamError, LockedStore, Owner, PodRef, RangeSet, Store, allocate};

use super::Assigned;
use crate::cni::{Dns, IpConfig};
use crate::config::{BuiltinIpam, NodeBlocksConf};
use crate::error::Error;
use crate::log::warn;

/// The largest node-name file read: a Kubernetes node name is at most 253 bytes.
pub const MAX_NODE_NAME_FILE: u64 = 4 << 10;
/// The largest resolv.conf read: real ones are a few hundred bytes.
pub const MAX_RESOLV_CONF: u64 = 64 << 10;

/// Reads a file named by the configuration key `key`: a regular file of at most `limit` bytes, or
/// `None` when it does not exist. Anything else (a FIFO, a device, a directory, too large) is a
/// configuration problem naming the key, found without blocking.
fn read_config_file(key: &str, path: &Path, limit: u64) -> Result<Option<String>, Error> {
    match read_regular(path, limit, Links::Follow) {
        Ok(data) => Ok(Some(String::from_utf8_lossy(&data).into_owned())),
        Err(IpamError::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(IpamError::Io { source, .. }) => Err(Error::Io {
            what: format!("read {key} {}", path.display()),
            source,
        }),
        Err(IpamError::FileTooLarge { limit, .. }) => Err(Error::config(
            key,
            format!(
                "{} is larger than {} KiB; point {key} at the file it is meant to name",
                path.display(),
                limit >> 10
            ),
        )),
        Err(other) => Err(Error::config(key, format!("{other}; point {key} at a regular file"))),
    }
}

/// This node's name for `nodeRanges`: the installer's file, else the host name when the file does not
/// exist.
pub fn node_name(file: &Path) -> Result<Option<String>, Error> {
    let from_file = read_config_file("ipam.nodeNameFile", file, MAX_NODE_NAME_FILE)?
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty());
    Ok(from_file.or_else(|| nix::unistd::gethostname().ok().and_then(|h| h.into_string().ok())))
}

/// What to check when a node has no block to allocate from: ADD cannot fix it, the agent can.
pub const AGENT_HINT: &str = "the node agent (roslan-install with --lease-blocks, the roslan DaemonSet) leases blocks \
    for this node through the Kubernetes API and writes them there: check that it runs on this node and reaches the \
    API server (its log: kubectl -n roslan logs <its pod>), and run roslan doctor on the node";

impl BuiltinIpam {
    /// The range sets this node allocates from: the part of each set inside the node's blocks
    /// (`nodeBlocks`), its `nodeRanges` slice if it has one, else `ranges`. With `nodeBlocks` the blocks
    /// file is read, so call this with the store locked: the agent gives a block back only under that
    /// lock, and never while an ADD that read the old list is still allocating.
    pub fn node_sets(&self, network: &str) -> Result<Cow<'_, [RangeSet]>, Error> {
        if let Some(blocks) = &self.node_blocks {
            return leased_sets(network, &self.sets, blocks).map(Cow::Owned);
        }
        if self.node_ranges.is_empty() {
            return Ok(Cow::Borrowed(&self.sets));
        }
        let node = node_name(&self.node_name_file)?;
        if let Some((_, sets)) = self.node_ranges.iter().find(|(name, _)| Some(name) == node.as_ref()) {
            return Ok(Cow::Borrowed(sets));
        }
        if self.sets.is_empty() {
            let known: Vec<&str> = self.node_ranges.iter().map(|(n, _)| n.as_str()).collect();
            return Err(Error::config(
                "ipam.nodeRanges",
                format!(
                    "this node ({}) has no entry (nodes listed: {}) and there is no \"ranges\" to fall back on; add the node, or check {} (written by roslan-install)",
                    node.as_deref().unwrap_or("name unknown"),
                    known.join(", "),
                    self.node_name_file.display()
                ),
            ));
        }
        Ok(Cow::Borrowed(&self.sets))
    }
}

impl BuiltinIpam {
    /// The node's sets when they do not depend on the blocks file (`None` with `nodeBlocks`): read before
    /// the store is opened, so that a configuration problem leaves no directory behind.
    fn sets_before_lock(&self, network: &str) -> Result<Option<Cow<'_, [RangeSet]>>, Error> {
        if self.node_blocks.is_some() {
            Ok(None)
        } else {
            self.node_sets(network).map(Some)
        }
    }

    /// The node's sets, with the store locked: `early` if [`BuiltinIpam::sets_before_lock`] had them,
    /// else the blocks file's.
    fn sets_under_lock<'a>(
        &'a self,
        network: &str,
        early: Option<Cow<'a, [RangeSet]>>,
    ) -> Result<Cow<'a, [RangeSet]>, Error> {
        match early {
            Some(sets) => Ok(sets),
            None => self.node_sets(network),
        }
    }
}

/// The node's share of each set under `nodeBlocks`: code 11 (try again) while the agent has not leased
/// a block of every set, because the agent, not the runtime, fixes that.
fn leased_sets(network: &str, sets: &[RangeSet], conf: &NodeBlocksConf) -> Result<Vec<RangeSet>, Error> {
    let file = conf.file.display();
    let held = match NodeBlocks::read(&conf.file) {
        Ok(Some(held)) => held,
        Ok(None) => {
            return Err(Error::TryAgain(format!(
                "this node holds no address block of network {network:?} yet: {file} does not exist; {AGENT_HINT}"
            )));
        }
        Err(err) => {
            return Err(Error::TryAgain(format!(
                "cannot read this node's address blocks: {err}; {AGENT_HINT}"
            )));
        }
    };
    let mine = held.of(network);
    sets.iter()
        .enumerate()
        .map(|(i, set)| {
            restrict(set, &mine).ok_or_else(|| {
                Error::TryAgain(format!(
                    "no block of range set {i} ({set}) of network {network:?} is leased for this node (node {:?}, {} block(s) of the network in {file}); {AGENT_HINT}",
                    held.node,
                    mine.len()
                ))
            })
        })
        .collect()
}

/// With `nodeBlocks`, a full set means the node's blocks are full, not the range: say who adds one.
fn exhausted_blocks(err: Error, network: &str, ipam: &BuiltinIpam) -> Error {
    match (err, &ipam.node_blocks) {
        (Error::Ipam(IpamError::Exhausted { index, set }), Some(blocks)) => {
            let threshold = blocks
                .min_free
                .map_or_else(|| "a block's worth of".to_string(), |n| n.to_string());
            Error::TryAgain(format!(
                "no free address in this node's blocks of range set {index} ({set}) of network {network:?}: the agent \
                 leases another block when fewer than {threshold} addresses are free and has not yet; {AGENT_HINT} (the \
                 range may have no free block left)"
            ))
        }
        (err, _) => err,
    }
}

/// Parses a resolv.conf into the result's `dns`, as host-local's `resolvConf` does.
pub fn parse_resolv_conf(path: &Path) -> Result<Dns, Error> {
    let text = read_config_file("ipam.resolvConf", path, MAX_RESOLV_CONF)?.ok_or_else(|| Error::Io {
        what: format!("read ipam.resolvConf {}", path.display()),
        source: std::io::ErrorKind::NotFound.into(),
    })?;
    let mut dns = Dns::default();
    for line in text.lines() {
        let line = line.split(['#', ';']).next().unwrap_or_default();
        let mut words = line.split_whitespace();
        match words.next() {
            Some("nameserver") => dns.nameservers.extend(words.next().map(str::to_string)),
            Some("domain") => dns.domain = words.next().map(str::to_string),
            Some("search") => dns.search = words.map(str::to_string).collect(),
            Some("options") => dns.options.extend(words.map(str::to_string)),
            _ => {}
        }
    }
    Ok(dns)
}

fn ip_config(ip: IpAddr, prefix: u8, gateway: IpAddr) -> IpConfig {
    IpConfig {
        address: IpNetwork::new(ip, prefix).unwrap_or_else(|_| IpNetwork::from(ip)),
        gateway: Some(gateway),
        interface: None,
    }
}

/// Reserves one address per range set for `owner`; with `sticky` and a `pod`, the addresses the pod had
/// last are taken when they are free.
pub fn add(
    network: &str,
    ipam: &BuiltinIpam,
    owner: &Owner,
    requested: &[IpAddr],
    pod: Option<&PodRef>,
) -> Result<Assigned, Error> {
    let dns = match &ipam.resolv_conf {
        Some(path) => parse_resolv_conf(path)?,
        None => Dns::default(),
    };
    // A configuration problem is found before the store is created; the blocks file is read under the lock.
    let early = ipam.sets_before_lock(network)?;
    let store = Store::open(&ipam.data_dir, network)?;
    let mut locked = store.lock()?;
    let sets = ipam.sets_under_lock(network, early)?;
    let pod = pod.filter(|_| ipam.sticky);
    let preferred = pod.map(|pod| locked.remembered(pod)).unwrap_or_default();
    let allocations = allocate(&mut locked, &sets, owner, requested, &preferred)
        .map_err(|err| exhausted_blocks(err.into(), network, ipam))?;
    if let Some(pod) = pod {
        let ips: Vec<IpAddr> = allocations.iter().map(|a| a.ip).collect();
        if let Err(err) = locked.remember(pod, &ips) {
            warn!(
                "sticky addresses: could not remember {ips:?} for {}/{}: {err}",
                pod.namespace, pod.name
            );
        }
    }
    // Killed here: files written, index not stamped, lock released by the kernel.
    crate::fault::point("add:ipam-uncommitted");
    let ips = allocations
        .iter()
        .map(|a| ip_config(a.ip, a.prefix, a.gateway))
        .collect();
    Ok(Assigned {
        ips,
        routes: ipam.routes.clone(),
        dns,
        delegated: false,
    })
}

/// Marks `conflicting` as held by a foreign host and reserves another address of its range set for
/// `owner` in its place. Used when an ARP probe or DAD finds the address in use on the LAN.
pub fn replace(
    network: &str,
    ipam: &BuiltinIpam,
    owner: &Owner,
    conflicting: IpAddr,
    evidence: &str,
) -> Result<IpConfig, Error> {
    let early = ipam.sets_before_lock(network)?;
    let store = Store::open(&ipam.data_dir, network)?;
    let mut locked = store.lock()?;
    let sets = ipam.sets_under_lock(network, early)?;
    locked.release(conflicting, owner)?;
    let index = sets.iter().position(|s| s.contains(conflicting)).unwrap_or(0);
    locked.reserve(conflicting, &Owner::foreign(evidence), index)?;
    let one = std::slice::from_ref(&sets[index]);
    let mut allocation = allocate(&mut locked, one, owner, &[], &[]).map_err(|err| match err {
        IpamError::Exhausted { set, .. } => exhausted_blocks(IpamError::Exhausted { index, set }.into(), network, ipam),
        other => other.into(),
    })?;
    let a = allocation.remove(0);
    Ok(ip_config(a.ip, a.prefix, a.gateway))
}

/// Releases exactly `ips` if `owner` still holds them; the rollback of a failed ADD.
pub fn release_exact(network: &str, ipam: &BuiltinIpam, owner: &Owner, ips: &[IpAddr]) -> Result<(), Error> {
    let Some(store) = Store::open_existing(&ipam.data_dir, network)? else {
        return Ok(());
    };
    let mut locked = store.lock()?;
    for ip in ips {
        locked.release(*ip, owner)?;
    }
    Ok(())
}

/// Releases everything `owner` holds; DEL. A missing directory means there is nothing to release.
pub fn release(network: &str, ipam: &BuiltinIpam, owner: &Owner) -> Result<Vec<IpAddr>, Error> {
    let Some(store) = Store::open_existing(&ipam.data_dir, network)? else {
        return Ok(Vec::new());
    };
    let mut locked = store.lock()?;
    let released = locked.release_owner(owner)?;
    crate::fault::point("del:ipam-uncommitted");
    Ok(released)
}

/// The addresses `owner` holds; CHECK.
pub fn held(network: &str, ipam: &BuiltinIpam, owner: &Owner) -> Result<Vec<IpAddr>, Error> {
    let Some(store) = Store::open_existing(&ipam.data_dir, network)? else {
        return Ok(Vec::new());
    };
    let locked = store.lock()?;
    Ok(locked.find(owner)?)
}

/// STATUS: `Err` naming the first range set with no free address.
pub fn status(network: &str, ipam: &BuiltinIpam) -> Result<(), Error> {
    let early = ipam.sets_before_lock(network)?;
    let Some(store) = Store::open_existing(&ipam.data_dir, network)? else {
        return ipam.sets_under_lock(network, early).map(|_| ()).map_err(unavailable);
    };
    let mut locked = store.lock()?;
    let sets = ipam.sets_under_lock(network, early).map_err(unavailable)?;
    for (i, set) in sets.iter().enumerate() {
        if !has_free(&mut locked, set)? {
            return Err(Error::Unavailable(format!(
                "range set {i} ({set}) is exhausted: {} addresses, all reserved; widen it or free addresses (GC)",
                set.capacity()
            )));
        }
    }
    Ok(())
}

/// STATUS answers "can ADD be served now" with code 50; a node without blocks cannot be, for now.
fn unavailable(err: Error) -> Error {
    match err {
        Error::TryAgain(why) => Error::Unavailable(why),
        other => other,
    }
}

fn has_free(locked: &mut LockedStore<'_>, set: &RangeSet) -> Result<bool, Error> {
    match locked.next_free(set, None)? {
        Free::Address(_) => return Ok(true),
        Free::Exhausted => return Ok(false),
        Free::Unknown => {}
    }
    Ok(set
        .iter_from(None)
        .any(|candidate| locked.holder(candidate.ip).is_none()))
}

/// GC: releases every reservation whose owner is not in `valid`, going on past errors and reporting
/// them all. Files from before CNI 0.8 name only a container ID; they stay if that container has any
/// valid attachment.
pub fn gc(network: &str, ipam: &BuiltinIpam, valid: &[Owner]) -> Result<Vec<IpAddr>, Error> {
    let Some(store) = Store::open_existing(&ipam.data_dir, network)? else {
        return Ok(Vec::new());
    };
    let mut locked = store.lock()?;
    let exact: HashSet<&Owner> = valid.iter().collect();
    let ids: HashSet<&str> = valid.iter().map(|o| o.container_id.as_str()).collect();
    let mut released = Vec::new();
    let mut errors = Vec::new();
    for entry in locked.entries()? {
        let keep = exact.contains(&entry.owner)
            || (entry.owner.ifname.is_empty() && ids.contains(entry.owner.container_id.as_str()));
        if keep {
            continue;
        }
        match locked.release(entry.ip, &entry.owner) {
            Ok(true) => released.push(entry.ip),
            Ok(false) => {}
            Err(err) => errors.push(format!("{}: {err}", entry.ip)),
        }
    }
    if errors.is_empty() {
        Ok(released)
    } else {
        Err(Error::Io {
            what: format!(
                "GC released {} reservations but failed on {}",
                released.len(),
                errors.join("; ")
            ),
            source: std::io::Error::other("some reservations could not be released"),
        })
    }
}
