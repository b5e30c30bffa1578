//! CHECK: is the attachment still what ADD reported?
//!
//! Every difference is collected and reported at once, each saying which part is wrong, so that one
//! failed CHECK tells the operator everything (a link recreated by hand, an address removed, a
//! multicast route that gained a gateway, a reservation wiped by a cleanup script).

use std::net::IpAddr;

use super::Attachment;
use crate::cni::{CniArgs, Request};
use crate::config::{NetConf, is_multicast_prefix};
use crate::error::Error;
use crate::ipam;
use crate::netlink::{MAIN_TABLE, Runtime};
use crate::netns::Netns;

/// Runs CHECK.
pub fn check(request: &Request, conf: &NetConf) -> Result<(), Error> {
    if !conf.version.has_check() {
        return Err(Error::IncompatibleVersion {
            detail: format!(
                "config version {} does not allow CHECK; CHECK needs cniVersion 0.4.0 or later",
                conf.version
            ),
        });
    }
    CniArgs::parse(&request.args)?;
    let prev = conf.prev_result.as_ref().ok_or_else(|| {
        Error::config("prevResult", "Required prevResult missing; CHECK compares the attachment with the ADD result the runtime passes as prevResult")
    })?;
    let mut wrong = Vec::new();
    let Some(index) = prev
        .interfaces
        .iter()
        .position(|i| i.name == request.ifname && i.sandbox.as_deref() == Some(request.netns.as_str()))
    else {
        return Err(Error::CheckFailed(vec![format!(
            "interface {} with sandbox {} is not in prevResult",
            request.ifname, request.netns
        )]));
    };
    let expected = &prev.interfaces[index];
    let attachment = Attachment::new(request, conf);

    let netns = Netns::open(&request.netns)?;
    let runtime = Runtime::new()?;
    let pod = runtime.connect_in(&netns)?;
    let Some(link) = pod
        .link_by_name(&request.ifname)
        .map_err(Error::netlink("look up the interface"))?
    else {
        return Err(Error::CheckFailed(vec![format!(
            "link {} does not exist in {}",
            request.ifname, request.netns
        )]));
    };
    match link.macvlan_mode {
        None => wrong.push(format!("link {} is not a macvlan", link.name)),
        Some(mode) if mode != conf.mode => {
            wrong.push(format!(
                "link {} is in macvlan mode {}, configured {}",
                link.name,
                mode.as_str(),
                conf.mode.as_str()
            ));
        }
        Some(_) => {}
    }
    let mac = link.mac.map(|m| m.to_string());
    if expected.mac.is_some() && expected.mac != mac {
        wrong.push(format!(
            "link {} has MAC {}, prevResult says {}",
            link.name,
            mac.unwrap_or_default(),
            expected.mac.clone().unwrap_or_default()
        ));
    }
    if !link.up {
        wrong.push(format!("link {} is down", link.name));
    }

    let ours: Vec<_> = prev.ips.iter().filter(|ip| ip.interface == Some(index)).collect();
    let present = pod.addresses().map_err(Error::netlink("list addresses"))?;
    for ip in &ours {
        if !present.iter().any(|a| a.index == link.index && a.net == ip.address) {
            wrong.push(format!("address {} is missing from {}", ip.address, link.name));
        }
    }

    let mut routes = pod.routes(true).map_err(Error::netlink("list IPv4 routes"))?;
    routes.extend(pod.routes(false).map_err(Error::netlink("list IPv6 routes"))?);
    for route in &prev.routes {
        let found = routes
            .iter()
            .any(|r| r.table == MAIN_TABLE && r.dst == route.dst && (route.gw.is_none() || r.gateway == route.gw));
        if !found {
            wrong.push(format!(
                "route {} {} is missing",
                route.dst,
                route.gw.map(|g| format!("via {g}")).unwrap_or_default()
            ));
        }
    }
    for dst in conf
        .multicast
        .routes
        .iter()
        .chain(prev.routes.iter().map(|r| &r.dst).filter(|d| is_multicast_prefix(d)))
    {
        let on_link: Vec<_> = routes
            .iter()
            .filter(|r| r.table == MAIN_TABLE && r.dst == *dst && r.oif == Some(link.index))
            .collect();
        if on_link.is_empty() {
            wrong.push(format!("multicast route {dst} dev {} is missing", link.name));
        } else if let Some(gw) = on_link.iter().find_map(|r| r.gateway) {
            wrong.push(format!(
                "multicast route {dst} has gateway {gw}; it must have none, or multicast goes to the gateway's MAC"
            ));
        }
    }

    let expected: Vec<IpAddr> = ours.iter().map(|ip| ip.address.ip()).collect();
    wrong.extend(ipam::check(request, conf, &attachment.owner, &expected)?);
    if wrong.is_empty() {
        Ok(())
    } else {
        Err(Error::CheckFailed(wrong))
    }
}
