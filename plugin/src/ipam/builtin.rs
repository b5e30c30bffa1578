//! The built-in IPAM: host-local's semantics and files, in-process, with `nodeRanges` on top.

use std::collections::HashSet;
use std::net::IpAddr;
use std::path::Path;

use ipnetwork::IpNetwork;
use roslan_ipam_core::file::{Links, read_regular};
use roslan_ipam_core::{IpamError, LockedStore, Owner, RangeSet, Store, allocate};

use super::Assigned;
use crate::cni::{Dns, IpConfig};
use crate::config::BuiltinIpam;
use crate::error::Error;

/// The owner recorded for addresses a foreign host answered for (ARP probe or IPv6 DAD): host-local
/// and roslan both see them as taken, and GC releases them so they are probed again later.
pub fn foreign_owner(evidence: &str) -> Owner {
    Owner::new("foreign-host", evidence)
}

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

impl BuiltinIpam {
    /// The range sets this node allocates from: its `nodeRanges` slice if it has one, else `ranges`.
    pub fn node_sets(&self) -> Result<&[RangeSet], Error> {
        if self.node_ranges.is_empty() {
            return Ok(&self.sets);
        }
        let node = node_name(&self.node_name_file)?;
        if let Some((_, sets)) = self.node_ranges.iter().find(|(name, _)| Some(name) == node.as_ref()) {
            return Ok(sets);
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
        Ok(&self.sets)
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

/// Reserves one address per range set for `owner`.
pub fn add(network: &str, ipam: &BuiltinIpam, owner: &Owner, requested: &[IpAddr]) -> Result<Assigned, Error> {
    let dns = match &ipam.resolv_conf {
        Some(path) => parse_resolv_conf(path)?,
        None => Dns::default(),
    };
    let sets = ipam.node_sets()?;
    let store = Store::open(&ipam.data_dir, network)?;
    let mut locked = store.lock()?;
    let allocations = allocate(&mut locked, sets, owner, requested)?;
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
    let sets = ipam.node_sets()?;
    let store = Store::open(&ipam.data_dir, network)?;
    let mut locked = store.lock()?;
    locked.release(conflicting, owner)?;
    let index = sets.iter().position(|s| s.contains(conflicting)).unwrap_or(0);
    locked.reserve(conflicting, &foreign_owner(evidence), index)?;
    let one = std::slice::from_ref(&sets[index]);
    let mut allocation = allocate(&mut locked, one, owner, &[]).map_err(|err| match err {
        IpamError::Exhausted { set, .. } => IpamError::Exhausted { index, set },
        other => other,
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
    let sets = ipam.node_sets()?;
    let Some(store) = Store::open_existing(&ipam.data_dir, network)? else {
        return Ok(());
    };
    let mut locked = store.lock()?;
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

fn has_free(locked: &mut LockedStore<'_>, set: &RangeSet) -> Result<bool, Error> {
    if let Some(answer) = locked.next_free(set, None)? {
        return Ok(answer.is_some());
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
