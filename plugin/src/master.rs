//! Finding the node's LAN interface (the macvlan's master) and refusing ones that cannot work.
//!
//! Nodes name their NIC differently (a Raspberry Pi's `end0`, a PC's `enp3s0`), so one
//! NetworkAttachmentDefinition for a whole cluster either omits `master` (the default-route interface) or
//! names the LAN by subnet (`masterSubnet`). Wi-Fi is refused with the reason: an access point accepts
//! frames only from the MAC it associated, so a macvlan's extra MACs get addresses and no traffic.

use std::path::Path;

use ipnetwork::IpNetwork;

use crate::config::MasterSpec;
use crate::error::Error;
use crate::netlink::{Link, Netlink};

/// True if the node's sysfs marks `name` as a wireless interface.
pub fn is_wireless(name: &str) -> bool {
    let base = Path::new("/sys/class/net").join(name);
    base.join("wireless").exists() || base.join("phy80211").exists()
}

/// The master described by `spec`, checked: it exists, is not loopback and is not wireless.
pub fn resolve(host: &Netlink<'_>, spec: &MasterSpec) -> Result<Link, Error> {
    let master = find(host, spec)?;
    if master.loopback {
        return Err(Error::Master(format!(
            "{} is a loopback interface and cannot carry a macvlan; set \"master\" to the LAN interface",
            master.name
        )));
    }
    if is_wireless(&master.name) {
        return Err(Error::Master(format!(
            "master {} is a wireless interface: an access point drops frames from the extra MAC addresses a macvlan \
             uses, so pods would get addresses and no traffic. Use ipvlan in L2 mode (it shares the master's MAC) with \
             roslan's IPAM: {{\"type\": \"ipvlan\", \"mode\": \"l2\", \"master\": \"{}\", \"ipam\": {{\"type\": \"roslan-ipam\", ...}}}}; see docs/ros.md",
            master.name, master.name
        )));
    }
    Ok(master)
}

/// The interface `spec` names, without judging it (`roslan doctor` still checks a refused master).
pub fn find(host: &Netlink<'_>, spec: &MasterSpec) -> Result<Link, Error> {
    match spec {
        MasterSpec::Name(name) => host
            .link_by_name(name)
            .map_err(Error::netlink(format!("look up master {name}")))?
            .ok_or_else(|| {
                not_found(
                    host,
                    &format!("master interface {name:?} not found in the node's network namespace"),
                )
            }),
        MasterSpec::DefaultRoute => {
            let index = host
                .default_route_interface()
                .map_err(Error::netlink("read the node's default route"))?
                .ok_or_else(|| {
                    not_found(
                        host,
                        "no default route in the node's network namespace to pick a master from",
                    )
                })?;
            let links = host.links().map_err(Error::netlink("list links"))?;
            by_index(links, index)
        }
        MasterSpec::Subnet(subnet) => by_subnet(host, subnet),
    }
}

fn by_index(links: Vec<Link>, index: u32) -> Result<Link, Error> {
    links
        .into_iter()
        .find(|l| l.index == index)
        .ok_or_else(|| Error::TryAgain(format!("interface {index} vanished while roslan looked it up")))
}

/// The one interface holding an address inside `subnet`.
fn by_subnet(host: &Netlink<'_>, subnet: &IpNetwork) -> Result<Link, Error> {
    let addresses = host.addresses().map_err(Error::netlink("list the node's addresses"))?;
    let mut indexes: Vec<u32> = addresses
        .iter()
        .filter(|a| subnet.contains(a.net.ip()))
        .map(|a| a.index)
        .collect();
    indexes.sort_unstable();
    indexes.dedup();
    let links = host.links().map_err(Error::netlink("list links"))?;
    let name_of = |index: u32| {
        links
            .iter()
            .find(|l| l.index == index)
            .map_or_else(|| index.to_string(), |l| l.name.clone())
    };
    match indexes.as_slice() {
        [index] => by_index(links, *index),
        [] => {
            let held: Vec<String> = addresses
                .iter()
                .filter(|a| !a.net.ip().is_loopback())
                .map(|a| format!("{} {}", name_of(a.index), a.net))
                .collect();
            Err(Error::Master(format!(
                "no interface of this node holds an address in masterSubnet {subnet} (addresses here: {}); give the LAN \
                 interface an address in that subnet or fix masterSubnet",
                if held.is_empty() {
                    "none".to_string()
                } else {
                    held.join(", ")
                }
            )))
        }
        many => {
            let names: Vec<String> = many.iter().map(|i| name_of(*i)).collect();
            Err(Error::Master(format!(
                "several interfaces hold addresses in masterSubnet {subnet}: {}; use a narrower masterSubnet or \"master\"",
                names.join(", ")
            )))
        }
    }
}

fn not_found(host: &Netlink<'_>, what: &str) -> Error {
    let names: Vec<String> = host
        .links()
        .map(|links| links.into_iter().filter(|l| !l.loopback).map(|l| l.name).collect())
        .unwrap_or_default();
    Error::Master(format!(
        "{what}; interfaces here: {}. Set \"master\" to the LAN interface, or \"masterSubnet\" to the LAN's subnet",
        if names.is_empty() {
            "none".to_string()
        } else {
            names.join(", ")
        }
    ))
}
