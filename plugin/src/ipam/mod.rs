//! Address management for one attachment: the built-in host-local-compatible allocator.
//!
//! The plugin calls this in-process (no fork/exec of host-local, no CNI_PATH lookup), which is most of
//! why an ADD costs about a millisecond and why DEL can never fail on a missing IPAM binary.

use std::fs;
use std::net::IpAddr;
use std::path::Path;

use ipnetwork::IpNetwork;
use roslan_ipam_core::{Owner, Store, allocate};

use crate::cni::{Dns, IpConfig, Route};
use crate::config::BuiltinIpam;
use crate::error::Error;

/// What IPAM hands the plugin on ADD.
#[derive(Clone, Debug, Default)]
pub struct Assigned {
    /// Addresses with gateways (no interface index yet).
    pub ips: Vec<IpConfig>,
    /// Routes from the IPAM configuration.
    pub routes: Vec<Route>,
    /// DNS from `resolvConf`.
    pub dns: Dns,
}

/// Parses a resolv.conf into the result's `dns`, as host-local's `resolvConf` does.
pub fn parse_resolv_conf(path: &Path) -> Result<Dns, Error> {
    let text = fs::read_to_string(path).map_err(|source| Error::Io {
        what: format!("read ipam.resolvConf {}", path.display()),
        source,
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

/// Reserves one address per range set for `owner` and reports what to configure.
pub fn add(network: &str, ipam: &BuiltinIpam, owner: &Owner, requested: &[IpAddr]) -> Result<Assigned, Error> {
    let dns = match &ipam.resolv_conf {
        Some(path) => parse_resolv_conf(path)?,
        None => Dns::default(),
    };
    let store = Store::open(&ipam.data_dir, network)?;
    let mut locked = store.lock()?;
    let allocations = allocate(&mut locked, &ipam.sets, owner, requested)?;
    let ips = allocations
        .iter()
        .map(|a| IpConfig {
            address: IpNetwork::new(a.ip, a.prefix).unwrap_or_else(|_| IpNetwork::from(a.ip)),
            gateway: Some(a.gateway),
            interface: None,
        })
        .collect();
    Ok(Assigned {
        ips,
        routes: ipam.routes.clone(),
        dns,
    })
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
    Ok(locked.release_owner(owner)?)
}

/// The addresses `owner` holds; CHECK.
pub fn held(network: &str, ipam: &BuiltinIpam, owner: &Owner) -> Result<Vec<IpAddr>, Error> {
    let Some(store) = Store::open_existing(&ipam.data_dir, network)? else {
        return Ok(Vec::new());
    };
    let locked = store.lock()?;
    Ok(locked.find(owner)?)
}
