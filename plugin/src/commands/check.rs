//! CHECK: is the attachment still what ADD reported?
//!
//! Every difference is collected and reported at once, each saying which part is wrong, so that one
//! failed CHECK tells the operator everything (a link recreated by hand, an address removed, a
//! multicast route that gained a gateway, a reservation wiped by a cleanup script).

use std::net::IpAddr;

use super::sysctls::differences;
use super::{Attachment, multicast_routes};
use crate::cni::{CniArgs, Request};
use crate::config::{NetConf, is_multicast_prefix};
use crate::error::Error;
use crate::netlink::{LOCAL_TABLE, MAIN_TABLE, MULTICAST6_LAST_METRIC, MULTICAST6_METRIC, RouteEntry, Runtime};
use crate::netns::Netns;
use crate::{alias, ipam};

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
    let sandbox = request.pod_netns()?;
    let mut wrong = Vec::new();
    let Some(index) = prev
        .interfaces
        .iter()
        .position(|i| i.name == request.ifname && i.sandbox.as_deref() == Some(sandbox))
    else {
        return Err(Error::CheckFailed(vec![format!(
            "interface {} with sandbox {} is not in prevResult",
            request.ifname, sandbox
        )]));
    };
    let expected = &prev.interfaces[index];
    let attachment = Attachment::new(request, conf);

    let netns = Netns::open(sandbox)?;
    let runtime = Runtime::new()?;
    let pod = runtime
        .connect_in(&netns)
        .map_err(Error::netlink(format!("connect to netlink in {}", netns.path())))?;
    let Some(link) = pod
        .link_by_name(&request.ifname)
        .map_err(Error::netlink("look up the interface"))?
    else {
        return Err(Error::CheckFailed(vec![format!(
            "link {} does not exist in {}",
            request.ifname, sandbox
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
    // Multicast routes are checked below, in the table each family keeps them in.
    for route in prev.routes.iter().filter(|r| !is_multicast_prefix(&r.dst)) {
        let found = routes
            .iter()
            .any(|r| r.table == MAIN_TABLE && r.dst == route.dst && (route.gw.is_none() || r.gateway == route.gw));
        if !found {
            let via = route.gw.map(|g| format!(" via {g}")).unwrap_or_default();
            wrong.push(format!("route {}{via} is missing", route.dst));
        }
    }
    let has_v6 = ours.iter().any(|ip| ip.address.is_ipv6());
    for dst in &multicast_routes(conf, prev.routes.iter().map(|r| &r.dst), has_v6) {
        let table = if dst.is_ipv4() { MAIN_TABLE } else { LOCAL_TABLE };
        // The kernel keeps its own `multicast ff00::/8` route per IPv6 interface (metric 256), which
        // loses to other interfaces' routes; only roslan's metrics make unpinned multicast use ours.
        let ours_v6 = |r: &&RouteEntry| {
            dst.is_ipv4()
                || r.priority
                    .is_some_and(|p| (MULTICAST6_METRIC..=MULTICAST6_LAST_METRIC).contains(&p))
        };
        let on_link: Vec<_> = routes
            .iter()
            .filter(|r| r.table == table && r.dst == *dst && r.oif == Some(link.index))
            .filter(ours_v6)
            .collect();
        if on_link.is_empty() {
            wrong.push(format!("multicast route {dst} dev {} is missing", link.name));
        } else if let Some(gw) = on_link.iter().find_map(|r| r.gateway) {
            wrong.push(format!(
                "multicast route {dst} has gateway {gw}; it must have none, or multicast goes to the gateway's MAC"
            ));
        }
    }

    let links = pod.links().map_err(Error::netlink("list the pod's links"))?;
    if conf.multicast.loopback && links.iter().any(|l| l.loopback && !l.multicast) {
        wrong.push("lo has no IFF_MULTICAST; DDS limited to localhost cannot discover".into());
    }
    for name in alias::cleared(link.alias.as_deref()) {
        if links.iter().any(|l| l.name == name && l.multicast) {
            wrong.push(format!(
                "{name} has IFF_MULTICAST again; a DDS that picks one interface may pick it instead of {}",
                link.name
            ));
        }
    }
    wrong.extend(netns.run(|| differences(&conf.sysctls, &request.ifname))?);

    let expected: Vec<IpAddr> = ours.iter().map(|ip| ip.address.ip()).collect();
    wrong.extend(ipam::check(request, conf, &attachment.owner, &expected)?);
    if wrong.is_empty() {
        Ok(())
    } else {
        Err(Error::CheckFailed(wrong))
    }
}
