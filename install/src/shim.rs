//! The host shim: how the node itself reaches its own macvlan pods.
//!
//! The kernel never passes frames between a macvlan and its parent: the pods' macvlans sit on the
//! master, and the master's own stack (the node, and every hostNetwork pod, such as a `ros2` CLI or a
//! hardware driver) can neither send to them nor hear them. It is kernel design, not a bug, and the
//! most common "it does not work" report against Multus macvlan setups. A *sibling* macvlan in bridge
//! mode on the same master does reach them, so the installer gives the node one in its own network
//! namespace (the host's, since the DaemonSet runs with hostNetwork), with a host address and routes
//! to the pod ranges through it. Replies from pods come back to the shim's address, also a sibling.
//!
//! Everything goes through roslan's netlink facade ([`roslan::netlink`]), not `ip`: errors keep the
//! errno, and the image needs no iproute2.
//!
//! Ownership is marked with an interface alias, so that a link of the same name that someone else
//! made is never modified or deleted. The link is created under a temporary name and renamed, aliased
//! and brought up in one request; an installer killed in between leaves only the temporary name, which
//! the next run recognises and removes.

use std::net::IpAddr;

use ipnetwork::IpNetwork;
use roslan::netlink::{Link, MAIN_TABLE, MacvlanMode, MacvlanSpec, Netlink, RouteSpec, Runtime};
use roslan::netns::Netns;

use crate::error::Error;
use crate::files::fingerprint;

/// The alias that marks the installer's shim (its format is owned by [`roslan::alias`], which the
/// doctor also reads it with).
pub const ALIAS: &str = roslan::alias::SHIM;

/// What the shim should look like.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ShimSpec {
    /// Its name.
    pub name: String,
    /// The master (the pods' macvlan master).
    pub master: String,
    /// The node's host address on it.
    pub address: IpNetwork,
    /// Pod ranges routed through it.
    pub routes: Vec<IpNetwork>,
}

impl ShimSpec {
    /// One line for logs.
    pub fn describe(&self) -> String {
        let routes: Vec<String> = self.routes.iter().map(ToString::to_string).collect();
        format!(
            "{} (bridge-mode macvlan on {}, {}, routes {})",
            self.name,
            self.master,
            self.address,
            routes.join(",")
        )
    }
}

/// The temporary name used while creating `name`: fixed per name (so a leftover is found) and
/// within the 15-byte limit.
pub fn temp_name(name: &str) -> String {
    format!("rlinst-{}", &fingerprint(name.as_bytes())[..8])
}

/// Brings the shim to `spec` and returns what it changed, in words (empty: nothing to do).
pub fn ensure(spec: &ShimSpec) -> Result<Vec<String>, Error> {
    let runtime = Runtime::new().map_err(roslan::error::Error::from)?;
    let nl = runtime.connect().map_err(roslan::error::Error::from)?;
    let mut actions = Vec::new();
    remove_leftover(&nl, &spec.name, &mut actions)?;
    let master = nl
        .link_by_name(&spec.master)
        .map_err(Error::netlink(format!("look up shim master {}", spec.master)))?
        .ok_or_else(|| Error::ShimMaster {
            name: spec.master.clone(),
            available: nl
                .links()
                .map(|links| links.into_iter().map(|l| l.name).collect::<Vec<_>>().join(", "))
                .unwrap_or_else(|err| format!("(cannot list them: {err})")),
        })?;

    let existing = lookup(&nl, &spec.name)?;
    let link = match existing {
        Some(link) => match stale(&nl, &link, &master, spec)? {
            None => link,
            Some(why) => {
                nl.delete_link(link.index)
                    .map_err(Error::netlink(format!("delete outdated shim {}", spec.name)))?;
                actions.push(format!("deleted the outdated shim {} ({why})", spec.name));
                create(&nl, spec, &master, &mut actions)?
            }
        },
        None => create(&nl, spec, &master, &mut actions)?,
    };

    if !link.up {
        nl.set_up(link.index)
            .map_err(Error::netlink(format!("bring shim {} up", spec.name)))?;
        actions.push(format!("brought {} up (it was down)", spec.name));
    }
    let present = nl
        .addresses()
        .map_err(Error::netlink("list addresses"))?
        .into_iter()
        .any(|a| a.index == link.index && a.net == spec.address);
    if !present {
        nl.add_address(link.index, spec.address, false)
            .map_err(Error::netlink(format!("add {} to {}", spec.address, spec.name)))?;
        actions.push(format!("added address {} to {}", spec.address, spec.name));
    }
    for dst in &spec.routes {
        let routes = nl.routes(dst.is_ipv4()).map_err(Error::netlink("list routes"))?;
        if routes
            .iter()
            .any(|r| r.table == MAIN_TABLE && r.dst == *dst && r.oif == Some(link.index) && r.gateway.is_none())
        {
            continue;
        }
        let route = RouteSpec {
            dst: *dst,
            gateway: None,
            oif: link.index,
        };
        match nl.add_route(&route, false) {
            Ok(_) => actions.push(format!("added route {dst} dev {} (pods in that range)", spec.name)),
            Err(err) if err.is(nix::errno::Errno::EEXIST) => {
                return Err(Error::RouteTaken {
                    dst: dst.to_string(),
                    shim: spec.name.clone(),
                    detail: err.to_string(),
                });
            }
            Err(err) => return Err(Error::netlink(format!("add route {dst} dev {}", spec.name))(err)),
        }
    }
    Ok(actions)
}

/// Deletes the shim called `name` if it is the installer's. Returns what it did, in words.
pub fn remove(name: &str) -> Result<String, Error> {
    let runtime = Runtime::new().map_err(roslan::error::Error::from)?;
    let nl = runtime.connect().map_err(roslan::error::Error::from)?;
    let mut actions = Vec::new();
    remove_leftover(&nl, name, &mut actions)?;
    match lookup(&nl, name)? {
        None => Ok(format!("host shim {name} is already gone")),
        Some(link) => {
            nl.delete_link(link.index)
                .map_err(Error::netlink(format!("delete shim {name}")))?;
            Ok(format!(
                "deleted host shim {name} (its address and routes went with it)"
            ))
        }
    }
}

/// The shim by name: `None` if absent, an error if the link is someone else's.
fn lookup(nl: &Netlink<'_>, name: &str) -> Result<Option<Link>, Error> {
    let link = nl
        .link_by_name(name)
        .map_err(Error::netlink(format!("look up {name}")))?;
    match link {
        Some(link) if link.alias.as_deref() != Some(ALIAS) => Err(Error::ShimNotOurs {
            name: name.into(),
            alias: ALIAS,
        }),
        other => Ok(other),
    }
}

/// Deletes a half-created shim (its temporary name) left by an installer that died mid-way.
fn remove_leftover(nl: &Netlink<'_>, name: &str, actions: &mut Vec<String>) -> Result<(), Error> {
    let temp = temp_name(name);
    let leftover = nl
        .link_by_name(&temp)
        .map_err(Error::netlink(format!("look up {temp}")))?;
    if let Some(link) = leftover.filter(|l| l.macvlan_mode.is_some()) {
        nl.delete_link(link.index)
            .map_err(Error::netlink(format!("delete leftover {temp}")))?;
        actions.push(format!("deleted {temp}, a shim an interrupted run left half-created"));
    }
    Ok(())
}

/// Why an existing shim cannot be kept as it is (options changed since it was made), if it cannot.
fn stale(nl: &Netlink<'_>, link: &Link, master: &Link, spec: &ShimSpec) -> Result<Option<String>, Error> {
    if link.macvlan_mode != Some(MacvlanMode::Bridge) {
        return Ok(Some("it is not a bridge-mode macvlan".into()));
    }
    if link.parent != Some(master.index) {
        return Ok(Some(format!("its master is not {}", spec.master)));
    }
    let others: Vec<String> = nl
        .addresses()
        .map_err(Error::netlink("list addresses"))?
        .into_iter()
        .filter(|a| a.index == link.index && a.net != spec.address && !is_link_local(a.net.ip()))
        .map(|a| a.net.to_string())
        .collect();
    if !others.is_empty() {
        return Ok(Some(format!("it has other addresses: {}", others.join(", "))));
    }
    let mut extra = Vec::new();
    for v4 in [true, false] {
        for route in nl.routes(v4).map_err(Error::netlink("list routes"))? {
            let ours = route.table == MAIN_TABLE && route.oif == Some(link.index);
            // An IPv6 /128 address comes with a kernel route to itself; that one is expected.
            let expected = spec.routes.contains(&route.dst) || route.dst == spec.address;
            if ours && !expected && !is_link_local(route.dst.ip()) {
                extra.push(route.dst.to_string());
            }
        }
    }
    if !extra.is_empty() {
        return Ok(Some(format!("it routes other ranges: {}", extra.join(", "))));
    }
    Ok(None)
}

fn is_link_local(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.is_link_local(),
        IpAddr::V6(v6) => v6.segments()[0] & 0xffc0 == 0xfe80,
    }
}

/// Creates the shim under its temporary name, then names, labels and raises it in one request.
fn create(nl: &Netlink<'_>, spec: &ShimSpec, master: &Link, actions: &mut Vec<String>) -> Result<Link, Error> {
    let temp = temp_name(&spec.name);
    // The facade creates links in a namespace given by descriptor; the installer's own is the target.
    let here = Netns::current().map_err(roslan::error::Error::from)?;
    let macvlan = MacvlanSpec {
        name: &temp,
        master_index: master.index,
        mode: MacvlanMode::Bridge,
        mtu: None,
        mac: None,
        bc_queue_len: None,
    };
    nl.create_macvlan(&macvlan, here.raw_fd())
        .map_err(Error::netlink(format!("create macvlan {temp} on {}", spec.master)))?;
    let link = nl
        .link_by_name(&temp)
        .map_err(Error::netlink(format!("look up {temp}")))?
        .ok_or_else(|| Error::Shim(format!("{temp} vanished right after it was created")))?;
    if let Err(err) = nl.rename_and_up(link.index, &spec.name, ALIAS) {
        let _ = nl.delete_link(link.index);
        return Err(Error::netlink(format!(
            "rename {temp} to {} and bring it up",
            spec.name
        ))(err));
    }
    actions.push(format!(
        "created host shim {} (bridge-mode macvlan on {}) so the node and hostNetwork pods reach macvlan pods",
        spec.name, spec.master
    ));
    nl.link_by_name(&spec.name)
        .map_err(Error::netlink(format!("look up {}", spec.name)))?
        .ok_or_else(|| Error::Shim(format!("{} vanished right after it was created", spec.name)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn temp_names_fit_and_are_stable() {
        let name = temp_name("roslan-shim");
        assert_eq!(name.len(), 15);
        assert_eq!(name, temp_name("roslan-shim"));
        assert_ne!(name, temp_name("other-shim"));
        assert!(is_link_local("fe80::1".parse().unwrap()));
        assert!(!is_link_local("fd00::1".parse().unwrap()));
    }
}
