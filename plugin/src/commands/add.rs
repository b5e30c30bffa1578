//! ADD: a macvlan on the node's LAN interface, created inside the pod, with an address, routes, and
//! multicast routed through it.
//!
//! Order, and why:
//! 1. everything that can be refused without side effects is checked first (config, CNI_ARGS, the
//!    namespace, the master, an existing CNI_IFNAME);
//! 2. the macvlan is created directly in the pod under a temporary name derived from the attachment,
//!    so a later DEL can find it even if this process dies before the rename;
//! 3. the address is reserved, per-interface sysctls are set (before the link is up, so `arp_notify`
//!    announces the address and no router solicitation starts), addresses are added (IPv6 without
//!    DAD), then one request renames the link, labels it and brings it up;
//! 4. routes go last because the kernel refuses routes through a down link; multicast routes never
//!    carry a gateway, because with one the kernel sends multicast to the gateway's MAC and sibling
//!    pods hear nothing.
//!
//! Any failure after step 2 deletes the link and releases exactly the addresses reserved here, so a
//! retry starts from a clean pod.

use std::net::IpAddr;

use nix::errno::Errno;

use super::{Attachment, resolve_master};
use crate::cni::{CniArgs, CniResult, Interface, IpConfig, Request, Route};
use crate::config::{IpamConf, NetConf, is_multicast_prefix};
use crate::error::Error;
use crate::ipam;
use crate::log::Stopwatch;
use crate::mac::Mac;
use crate::netlink::{MacvlanSpec, Netlink, RouteSpec, Runtime, SCOPE_LINK};
use crate::netns::Netns;
use crate::sysctl::{self, Key};
use crate::{debug, info, warn};

/// What has been done so far, so that a failure can undo exactly that.
struct Undo<'a> {
    link: Option<u32>,
    reserved: Vec<IpAddr>,
    attachment: &'a Attachment,
    conf: &'a NetConf,
}

impl Undo<'_> {
    fn run(self, pod: &Netlink<'_>) {
        if let Some(index) = self.link
            && let Err(err) = pod.delete_link(index)
        {
            warn!("rollback: could not delete link {index}: {err}");
        }
        if let (IpamConf::Builtin(builtin), false) = (&self.conf.ipam, self.reserved.is_empty())
            && let Err(err) = ipam::release_exact(&self.conf.name, builtin, &self.attachment.owner, &self.reserved)
        {
            warn!("rollback: could not release {:?}: {err}", self.reserved);
        }
    }
}

/// Runs ADD and returns the result to print.
pub fn add(request: &Request, conf: &NetConf) -> Result<CniResult, Error> {
    let mut watch = Stopwatch::default();
    let args = CniArgs::parse(&request.args)?;
    let cni_args_mac = match &args.mac {
        None => None,
        Some(text) => Some(text.parse::<Mac>().ok().filter(Mac::is_unicast).ok_or_else(|| {
            Error::env(
                "CNI_ARGS",
                format!("MAC={text:?} is not a unicast MAC address such as 02:00:00:00:00:01"),
            )
        })?),
    };
    let mac = conf.mac_override.or(cni_args_mac).or(conf.mac);
    let mut requested = args.ips.clone();
    requested.extend(conf.requested_ips.iter().copied());
    if let IpamConf::Delegate { plugin } = &conf.ipam {
        return Err(Error::UnsupportedField {
            key: "ipam.type".into(),
            why: format!("{plugin:?} is not served by this roslan; use \"host-local\" or \"roslan-ipam\""),
        });
    }
    if !requested.is_empty() && !matches!(conf.ipam, IpamConf::Builtin(_)) {
        return Err(Error::config(
            "ipam",
            "addresses were requested (IP=, args.cni.ips or runtimeConfig.ips) but there is no IPAM to honour them",
        ));
    }

    let netns = Netns::open(&request.netns)?;
    if !request.netns_override && netns.same_as(&Netns::current()?) {
        return Err(Error::env(
            "CNI_NETNS",
            format!(
                "{} is the plugin's own network namespace; pass the pod's namespace",
                request.netns
            ),
        ));
    }
    watch.lap("checks");
    let runtime = Runtime::new()?;
    let host = runtime.connect()?;
    watch.lap("host-socket");
    let master = resolve_master(&host, &conf.master)?;
    watch.lap("master");
    if let Some(mtu) = conf.mtu.filter(|mtu| *mtu > master.mtu) {
        return Err(Error::config(
            "mtu",
            format!(
                "{mtu} is larger than the MTU of master {} ({}); use at most {}",
                master.name, master.mtu, master.mtu
            ),
        ));
    }
    if !master.up || !master.lower_up {
        warn!(
            "master {} is {}; the pod will get an address but no traffic until it is up with carrier",
            master.name,
            if master.up { "without carrier" } else { "down" }
        );
    }
    let attachment = Attachment::new(request, conf);
    let has_v6 = matches!(&conf.ipam, IpamConf::Builtin(b) if b.sets.iter().any(|s| !s.is_ipv4()));
    let spec = MacvlanSpec {
        name: &attachment.temp_name,
        master_index: master.index,
        mode: conf.mode,
        mtu: conf.mtu,
        mac,
        bc_queue_len: conf.bc_queue_len,
    };
    create_link(&runtime, &host, &netns, &attachment, &spec, &master.name)?;
    watch.lap("create");
    // One visit inside the pod: refuse an existing CNI_IFNAME, set the new link's sysctls before it
    // comes up, and open the pod's netlink socket.
    let (pod, prepared) =
        match runtime.connect_in_with(&netns, || prepare_in_pod(request, &attachment.temp_name, has_v6)) {
            Ok(connected) => connected,
            Err(err) => {
                if let Ok(pod) = runtime.connect_in(&netns)
                    && let Ok(Some(link)) = pod.link_by_name(&attachment.temp_name)
                {
                    let _ = pod.delete_link(link.index);
                }
                return Err(err);
            }
        };
    watch.lap("pod");
    let mut undo = Undo {
        link: None,
        reserved: Vec::new(),
        attachment: &attachment,
        conf,
    };
    let outcome =
        prepared.and_then(|()| configure(&pod, request, conf, &attachment, &requested, &mut undo, &mut watch));
    match outcome {
        Ok(result) => {
            let addresses: Vec<String> = result.ips.iter().map(|ip| ip.address.to_string()).collect();
            info!(
                "attached {} on master {} mac {} addresses [{}] multicast routes {:?}",
                request.ifname,
                master.name,
                result.interfaces.last().and_then(|i| i.mac.clone()).unwrap_or_default(),
                addresses.join(", "),
                conf.multicast
                    .routes
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
            );
            debug!("{}", watch.summary());
            Ok(result)
        }
        Err(err) => {
            if undo.link.is_none() {
                // Failed before the link was read back: find it by its temporary name.
                undo.link = pod.link_by_name(&attachment.temp_name).ok().flatten().map(|l| l.index);
            }
            undo.run(&pod);
            Err(err)
        }
    }
}

/// Runs inside the pod, before the pod's netlink socket is opened.
fn prepare_in_pod(request: &Request, temp: &str, has_v6: bool) -> Result<(), Error> {
    if nix::net::if_::if_nametoindex(request.ifname.as_str()).is_ok() {
        return Err(Error::InterfaceExists {
            ifname: request.ifname.clone(),
            netns: request.netns.clone(),
        });
    }
    sysctl::write(&Key::interface("ipv4", temp, "arp_notify"), "1")?;
    if has_v6 {
        sysctl::write(&Key::interface("ipv6", temp, "disable_ipv6"), "0")?;
        sysctl::write(&Key::interface("ipv6", temp, "ndisc_notify"), "1")?;
    }
    Ok(())
}

/// Creates the macvlan in the pod under the attachment's temporary name. A link already holding that
/// name is the leftover of an ADD that died mid-way: it is removed and creation retried once.
fn create_link(
    runtime: &Runtime,
    host: &Netlink<'_>,
    netns: &Netns,
    attachment: &Attachment,
    spec: &MacvlanSpec<'_>,
    master_name: &str,
) -> Result<(), Error> {
    let mac = spec.mac;
    let create = || host.create_macvlan(spec, netns);
    match create() {
        Ok(()) => Ok(()),
        Err(err) if err.is(Errno::EEXIST) => {
            let pod = runtime.connect_in(netns)?;
            let stale = pod
                .link_by_name(&attachment.temp_name)
                .map_err(Error::netlink("look up a stale temporary link"))?;
            match stale {
                Some(link) if attachment.owns(&link) => {
                    warn!("removing {} left by an interrupted ADD", link.name);
                    pod.delete_link(link.index)
                        .map_err(Error::netlink("delete a stale temporary link"))?;
                    create().map_err(Error::netlink(format!("create macvlan on {master_name}")))
                }
                _ => Err(Error::netlink(format!(
                    "create macvlan {} on {master_name}",
                    attachment.temp_name
                ))(err)),
            }
        }
        Err(err) if err.is(Errno::EADDRNOTAVAIL) && mac.is_some() => Err(Error::config(
            "mac",
            format!(
                "the kernel refused MAC {} ({err}); use a unicast address not used by another macvlan on {master_name}",
                mac.map(|m| m.to_string()).unwrap_or_default()
            ),
        )),
        Err(err) => Err(Error::netlink(format!("create macvlan on {master_name}"))(err)),
    }
}

fn configure(
    pod: &Netlink<'_>,
    request: &Request,
    conf: &NetConf,
    attachment: &Attachment,
    requested: &[IpAddr],
    undo: &mut Undo<'_>,
    watch: &mut Stopwatch,
) -> Result<CniResult, Error> {
    let link = pod
        .link_by_name(&attachment.temp_name)
        .map_err(Error::netlink("read the new macvlan"))?
        .ok_or_else(|| {
            Error::TryAgain(format!(
                "the new macvlan {} vanished from the pod",
                attachment.temp_name
            ))
        })?;
    undo.link = Some(link.index);
    watch.lap("read-link");

    let assigned = match &conf.ipam {
        IpamConf::Builtin(builtin) => {
            let assigned = ipam::add(&conf.name, builtin, &attachment.owner, requested)?;
            undo.reserved = assigned.ips.iter().map(|ip| ip.address.ip()).collect();
            assigned
        }
        IpamConf::None | IpamConf::Delegate { .. } => ipam::Assigned::default(),
    };
    watch.lap("ipam");

    for ip in &assigned.ips {
        pod.add_address(link.index, ip.address, true)
            .map_err(Error::netlink(format!(
                "add address {} to {}",
                ip.address, request.ifname
            )))?;
    }
    match pod.rename_and_up(link.index, &request.ifname, &attachment.alias) {
        Ok(()) => {}
        Err(err) if err.is(Errno::EEXIST) => {
            return Err(Error::InterfaceExists {
                ifname: request.ifname.clone(),
                netns: request.netns.clone(),
            });
        }
        Err(err) => {
            return Err(Error::netlink(format!(
                "rename {} to {} and set it up",
                attachment.temp_name, request.ifname
            ))(err));
        }
    }
    watch.lap("addr+up");

    let mut routes = Vec::new();
    let gateway_for = |v4: bool| {
        assigned
            .ips
            .iter()
            .find(|ip| ip.address.is_ipv4() == v4)
            .and_then(|ip| ip.gateway)
    };
    for route in &assigned.routes {
        // A multicast destination never gets the range's gateway (see the module comment).
        let gateway = if is_multicast_prefix(&route.dst) {
            None
        } else {
            route.gw.or_else(|| gateway_for(route.dst.is_ipv4()))
        };
        let spec = RouteSpec {
            dst: route.dst,
            gateway,
            oif: link.index,
        };
        pod.add_route(&spec, is_multicast_prefix(&route.dst))
            .map_err(Error::netlink(format!(
                "add route {} via {}",
                route.dst, request.ifname
            )))?;
        let mut reported = Route::new(route.dst, gateway);
        reported.scope = gateway.is_none().then_some(SCOPE_LINK);
        routes.push(reported);
    }
    for dst in &conf.multicast.routes {
        if routes.iter().any(|r| r.dst == *dst) {
            continue;
        }
        let spec = RouteSpec {
            dst: *dst,
            gateway: None,
            oif: link.index,
        };
        let appended = pod.add_route(&spec, true).map_err(Error::netlink(format!(
            "add multicast route {dst} dev {}",
            request.ifname
        )))?;
        if appended {
            warn!(
                "another interface in the pod already routes {dst}; {}'s route is a standby behind it",
                request.ifname
            );
        }
        let mut reported = Route::new(*dst, None);
        reported.scope = Some(SCOPE_LINK);
        routes.push(reported);
    }

    watch.lap("routes");
    let mut result = conf.prev_result.clone().unwrap_or_default();
    let index = result.interfaces.len();
    result.interfaces.push(Interface {
        name: request.ifname.clone(),
        mac: link.mac.map(|m| m.to_string()),
        mtu: Some(link.mtu),
        sandbox: Some(request.netns.clone()),
    });
    result.ips.extend(assigned.ips.into_iter().map(|ip| IpConfig {
        interface: Some(index),
        ..ip
    }));
    result.routes.extend(routes);
    if conf.dns.is_empty() {
        result.dns.merge(&assigned.dns);
    } else {
        result.dns.merge(&conf.dns);
    }
    Ok(result)
}
