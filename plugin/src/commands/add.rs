//! ADD: a macvlan on the node's LAN interface, created inside the pod, with an address, routes, and
//! multicast routed through it.
//!
//! Order, and why:
//! 1. everything that can be refused without side effects is checked first (config, CNI_ARGS, the
//!    namespace, the master);
//! 2. the macvlan is created directly in the pod under a temporary name derived from the attachment,
//!    so a later DEL can find it even if this process dies before the rename; one visit inside the pod
//!    opens its netlink socket, and one dump of its links gives the new link and refuses an existing
//!    CNI_IFNAME;
//! 3. addresses are reserved (in-process, or by the delegate IPAM), then the per-interface sysctls are
//!    set before the link is up (`arp_notify` announces the address when it comes up);
//! 4. addresses are added (IPv6 without DAD unless `ipam.dad`), then one request renames the link,
//!    labels it and brings it up, all sent together. With `ipam.probe` the link comes up first, each IPv4
//!    address is checked for a conflict by ARP on the LAN, and an address someone answers for is recorded
//!    as foreign and replaced;
//! 5. routes go last because the kernel refuses routes through a down link; multicast routes never
//!    carry a gateway, because with one the kernel sends multicast to the gateway's MAC and sibling
//!    pods hear nothing.
//!
//! Any failure after step 2 deletes the link and releases exactly the addresses reserved here, so a
//! retry starts from a clean pod.

use std::net::IpAddr;
use std::time::Duration;

use ipnetwork::IpNetwork;
use nix::errno::Errno;
use roslan_ipam_core::PodRef;

use super::sysctls::ForAdd;
use super::{Attachment, multicast_routes, resolve_master};
use crate::cni::{CniArgs, CniResult, Interface, IpConfig, Request, Route};
use crate::config::{IpamConf, MIN_MTU, NetConf, is_multicast_prefix};
use crate::error::Error;
use crate::ipam::{self, Assigned};
use crate::log::Stopwatch;
use crate::log::{debug, info, warn};
use crate::mac::Mac;
use crate::netlink::{
    LOCAL_TABLE, Link, MULTICAST6_LAST_METRIC, MULTICAST6_METRIC, MacvlanSpec, Netlink, NetlinkError, Request as Nl,
    RouteSpec, Runtime, SCOPE_LINK,
};
use crate::netns::Netns;
use crate::{alias, arp, fault, sysctl};

/// How long ADD waits for IPv6 duplicate address detection when `ipam.dad` asks for it.
const DAD_WAIT: Duration = Duration::from_secs(5);
/// How many conflicting addresses ADD replaces before giving up.
const MAX_CONFLICTS: usize = 8;

/// What ADD decided before touching the pod.
struct Plan<'a> {
    /// Addresses asked for (CNI_ARGS IP=, args.cni.ips, runtimeConfig.ips).
    requested: &'a [IpAddr],
    /// The pod, when CNI_ARGS names it: whose sticky addresses IPAM prefers.
    pod: Option<&'a PodRef>,
    /// The MAC was derived from the pod's name (`stableMac`), not given.
    stable_mac: bool,
    /// Where an explicit MAC came from, for a refusal's message.
    mac_source: Option<MacSource>,
}

/// Who asked for the MAC the kernel may refuse, so that the refusal points there.
#[derive(Clone, Copy, Debug)]
enum MacSource {
    /// A configuration key (`mac`, `args.cni.mac`, `runtimeConfig.mac`): code 7.
    Config(&'static str),
    /// CNI_ARGS `MAC=`: code 4.
    CniArgs,
}

impl MacSource {
    fn refused(self, message: String) -> Error {
        match self {
            MacSource::Config(key) => Error::config(key, message),
            MacSource::CniArgs => Error::env("CNI_ARGS", format!("MAC=: {message}")),
        }
    }
}

/// What has been done so far, so that a failure can undo exactly that.
struct Undo<'a> {
    link: Option<u32>,
    /// Interfaces whose IFF_MULTICAST was cleared (`multicast.exclusive`).
    cleared: Vec<u32>,
    /// Pod-wide sysctls as they were before ADD wrote them.
    sysctls: sysctl::Previous,
    assigned: Option<Assigned>,
    request: &'a Request,
    conf: &'a NetConf,
    attachment: &'a Attachment,
}

/// The attachment being made: what every step after the pod visit needs.
struct Ctx<'a> {
    /// The pod's netlink connection.
    pod: &'a Netlink<'a>,
    netns: &'a Netns,
    request: &'a Request,
    conf: &'a NetConf,
    attachment: &'a Attachment,
    plan: &'a Plan<'a>,
}

impl Undo<'_> {
    fn run(self, pod: &Netlink<'_>, netns: &Netns) {
        if !self.sysctls.is_empty()
            && let Err(err) = netns.run(|| self.sysctls.restore())
        {
            warn!("rollback: could not enter the pod to restore its sysctls: {err}");
        }
        for index in &self.cleared {
            if let Err(err) = pod.set_multicast(*index, true) {
                warn!("rollback: could not restore the multicast flag of interface {index}: {err}");
            }
        }
        if let Some(index) = self.link
            && let Err(err) = pod.delete_link(index)
        {
            warn!("rollback: could not delete link {index}: {err}");
        }
        if let Some(assigned) = &self.assigned {
            ipam::rollback(self.request, self.conf, &self.attachment.owner, assigned);
        }
    }
}

/// Runs ADD and returns the result to print.
pub fn add(request: &Request, conf: &NetConf) -> Result<CniResult, Error> {
    let mut watch = Stopwatch::default();
    fault::point("add:parsed");
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
    let explicit_mac = conf
        .mac_override
        .map(|(mac, key)| (mac, MacSource::Config(key)))
        .or(cni_args_mac.map(|mac| (mac, MacSource::CniArgs)))
        .or(conf.mac.map(|mac| (mac, MacSource::Config("mac"))));
    let stable_mac = match (&args.pod_namespace, &args.pod_name) {
        (Some(namespace), Some(pod)) if conf.stable_mac && explicit_mac.is_none() => {
            Some(Mac::stable(&conf.name, namespace, pod))
        }
        _ => None,
    };
    let mac_source = explicit_mac.map(|(_, source)| source);
    let mac = explicit_mac.map(|(mac, _)| mac).or(stable_mac);
    let pod_ref = ipam::pod_of(&args, request);
    let mut requested = args.ips.clone();
    requested.extend(conf.requested_ips.iter().copied());
    if !requested.is_empty() && matches!(conf.ipam, IpamConf::None) {
        return Err(Error::config(
            "ipam",
            "addresses were requested (IP=, args.cni.ips or runtimeConfig.ips) but there is no IPAM to honour them",
        ));
    }

    let netns = Netns::open(request.pod_netns()?)?;
    if !request.netns_override && netns.same_as(&Netns::current()?) {
        return Err(Error::env(
            "CNI_NETNS",
            format!(
                "{} is the plugin's own network namespace; pass the pod's namespace",
                netns.path()
            ),
        ));
    }
    watch.lap("checks");
    let runtime = Runtime::new()?;
    let host = runtime
        .connect()
        .map_err(Error::netlink("connect to netlink in the node namespace"))?;
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
            "master {} is {}; the pod gets an address but no traffic until the master is up with carrier",
            master.name,
            if master.up { "without carrier" } else { "down" }
        );
    }

    let attachment = Attachment::new(request, conf);
    let spec = MacvlanSpec {
        name: &attachment.temp_name,
        master_index: master.index,
        mode: conf.mode,
        mtu: conf.mtu,
        mac,
        bc_queue_len: conf.bc_queue_len,
    };
    create_link(&runtime, &host, &netns, &attachment, &spec, &master.name, mac_source)?;
    fault::point("add:created");
    watch.lap("create");
    let pod = match runtime.connect_in(&netns) {
        Ok(pod) => pod,
        Err(err) => {
            if let Ok(pod) = runtime.connect_in(&netns)
                && let Ok(Some(link)) = pod.link_by_name(&attachment.temp_name)
            {
                let _ = pod.delete_link(link.index);
            }
            return Err(Error::netlink(format!("connect to netlink in {}", netns.path()))(err));
        }
    };
    watch.lap("pod");
    fault::point("add:pod-visited");
    let mut undo = Undo {
        link: None,
        cleared: Vec::new(),
        sysctls: sysctl::Previous::default(),
        assigned: None,
        request,
        conf,
        attachment: &attachment,
    };
    let plan = Plan {
        requested: &requested,
        pod: pod_ref.as_ref(),
        stable_mac: stable_mac.is_some(),
        mac_source,
    };
    let ctx = Ctx {
        pod: &pod,
        netns: &netns,
        request,
        conf,
        attachment: &attachment,
        plan: &plan,
    };
    let outcome = configure(&ctx, &mut undo, &mut watch);
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
            undo.run(&pod, &netns);
            Err(err)
        }
    }
}

/// The multicast flags ADD will change, decided from one dump of the pod's links.
struct FlagPlan {
    /// `multicast.loopback`: `lo`'s index, when its IFF_MULTICAST is still off.
    lo: Option<u32>,
    /// `multicast.exclusive`: the pod's other interfaces that have IFF_MULTICAST and are not roslan's,
    /// whose flag ADD clears so that a DDS choosing one interface by its flags picks ours. Unicast is
    /// unaffected (IPv4 and IPv6, neighbour discovery included: see the tests).
    exclusive: Vec<(String, u32)>,
}

/// Only decides, from the dump ADD reads its new link from: the flags change after the link's alias
/// records the exclusive list, so that a DEL after a kill at any point can restore them.
fn plan_flags(links: &[Link], conf: &NetConf, ours: u32) -> FlagPlan {
    let mut plan = FlagPlan {
        lo: None,
        exclusive: Vec::new(),
    };
    for link in links {
        if link.loopback {
            if conf.multicast.loopback && !link.multicast {
                plan.lo = Some(link.index);
            }
        } else if conf.multicast.exclusive
            && link.index != ours
            && link.multicast
            && !alias::is_roslan(link.alias.as_deref())
        {
            plan.exclusive.push((link.name.clone(), link.index));
        }
    }
    plan
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
    mac_source: Option<MacSource>,
) -> Result<(), Error> {
    let create = || host.create_macvlan(spec, netns.raw_fd());
    match create() {
        Ok(()) => Ok(()),
        Err(err) if err.is(Errno::EEXIST) => {
            let pod = runtime
                .connect_in(netns)
                .map_err(Error::netlink(format!("connect to netlink in {}", netns.path())))?;
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
        Err(err) if (err.is(Errno::EADDRNOTAVAIL) || err.is(Errno::EADDRINUSE)) && spec.mac.is_some() => {
            let message = format!(
                "the kernel refused MAC {} ({err}); use a unicast address not used by another macvlan on {master_name}",
                spec.mac.map(|m| m.to_string()).unwrap_or_default()
            );
            Err(match mac_source {
                Some(source) => source.refused(message),
                // A stable MAC is roslan's own choice; the kernel refusing it is not the user's mistake.
                None => Error::netlink(format!("create macvlan on {master_name}"))(err),
            })
        }
        Err(err) if err.is(Errno::EINVAL) && spec.mtu.is_some() => Err(Error::config(
            "mtu",
            format!(
                "the kernel refused MTU {} for a macvlan on {master_name} ({err}); use a value from {MIN_MTU} to the master's MTU, or 0 for the master's",
                spec.mtu.unwrap_or_default()
            ),
        )),
        Err(err) => Err(Error::netlink(format!("create macvlan on {master_name}"))(err)),
    }
}

fn configure(ctx: &Ctx<'_>, undo: &mut Undo<'_>, watch: &mut Stopwatch) -> Result<CniResult, Error> {
    let (pod, request, conf, attachment) = (ctx.pod, ctx.request, ctx.conf, ctx.attachment);
    // One dump gives the new link, whether CNI_IFNAME is taken, and what the multicast flags need.
    let links = pod.links().map_err(Error::netlink("list the pod's links"))?;
    let mut link = links
        .iter()
        .find(|l| l.name == attachment.temp_name)
        .cloned()
        .ok_or_else(|| {
            Error::TryAgain(format!(
                "the new macvlan {} vanished from the pod",
                attachment.temp_name
            ))
        })?;
    undo.link = Some(link.index);
    if links.iter().any(|l| l.name == request.ifname) {
        return Err(Error::InterfaceExists {
            ifname: request.ifname.clone(),
            netns: ctx.netns.path().to_string(),
        });
    }
    let flags = plan_flags(&links, conf, link.index);
    watch.lap("read-link");

    let assigned = ipam::add(request, conf, &attachment.owner, ctx.plan.requested, ctx.plan.pod)?;
    undo.assigned = Some(assigned.clone());
    fault::point("add:reserved");
    watch.lap("ipam");

    let builtin = match &conf.ipam {
        IpamConf::Builtin(builtin) => Some(builtin),
        _ => None,
    };
    let conflict_timeout = builtin.and_then(|b| b.probe_timeout_ms).map(Duration::from_millis);
    let dad = builtin.is_some_and(|b| b.dad);
    let has_v6 = assigned.ips.iter().any(|ip| ip.address.is_ipv6());
    let sysctls = ForAdd {
        conf,
        ifname: &request.ifname,
        temp: &attachment.temp_name,
        has_v6,
        dad,
    };
    ctx.netns.run(|| sysctls.apply(&mut undo.sysctls))??;
    fault::point("add:sysctls");
    let cleared: Vec<String> = flags.exclusive.iter().map(|(name, _)| name.clone()).collect();
    let alias = attachment.alias(conf.multicast.exclusive.then_some(cleared.as_slice()));
    watch.lap("sysctl");

    // Without a conflict check the addresses go on before the link comes up (arp_notify then announces
    // them); with one, the link must be up to send ARP and must not yet hold the address it asks about.
    let mut ips = assigned.ips.clone();
    let before_up: &[IpConfig] = if conflict_timeout.is_none() { &ips } else { &[] };
    if let Some(mac) = bring_up(ctx, &link, before_up, &alias, &flags, dad, undo)? {
        link.mac = Some(mac);
    }
    if let Some(timeout) = conflict_timeout {
        ips = replace_arp_conflicts(ctx, &link, ips, timeout, undo)?;
        add_addresses(ctx, &link, &ips, dad)?;
        let v4: Vec<IpAddr> = ips.iter().map(|ip| ip.address.ip()).filter(IpAddr::is_ipv4).collect();
        if let (Some(mac), false) = (link.mac, v4.is_empty()) {
            // arp_notify announced nothing: the link came up before it had an address.
            ctx.netns
                .run(|| arp::announce(link.index, mac, &v4))?
                .map_err(|source| Error::Io {
                    what: "send gratuitous ARP".into(),
                    source,
                })?;
        }
    }
    watch.lap("addr+up");
    if dad && has_v6 {
        wait_for_dad(ctx, &link, &mut ips, undo)?;
        watch.lap("dad");
    }

    let routes = add_routes(ctx, &link, &ips, &assigned.routes)?;
    fault::point("add:routed");
    watch.lap("routes");

    let mut result = conf.prev_result.clone().unwrap_or_default();
    let index = result.interfaces.len();
    result.interfaces.push(Interface {
        name: request.ifname.clone(),
        mac: link.mac.map(|m| m.to_string()),
        mtu: Some(link.mtu),
        sandbox: Some(ctx.netns.path().to_string()),
    });
    result.ips.extend(ips.into_iter().map(|ip| IpConfig {
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

fn address_error(request: &Request, address: IpNetwork) -> impl FnOnce(NetlinkError) -> Error {
    Error::netlink(format!("add address {address} to {}", request.ifname))
}

fn add_addresses(ctx: &Ctx<'_>, link: &Link, ips: &[IpConfig], dad: bool) -> Result<(), Error> {
    let requests = ips
        .iter()
        .map(|ip| Nl::add_address(link.index, ip.address, !dad))
        .collect();
    for (ip, added) in ips.iter().zip(ctx.pod.acked(requests)) {
        added.map_err(address_error(ctx.request, ip.address))?;
    }
    Ok(())
}

/// Adds `addresses`, renames the link to CNI_IFNAME, labels it and brings it up, and sets `lo`'s
/// multicast flag: sent together, answered in order (a failure anywhere is undone by the caller, which
/// deletes the link). The exclusive flags are cleared only once the alias that records them is on the
/// link, so that a DEL after a kill at any point restores them. Returns the MAC the link ended up with
/// when it had to change.
fn bring_up(
    ctx: &Ctx<'_>,
    link: &Link,
    addresses: &[IpConfig],
    alias: &str,
    flags: &FlagPlan,
    dad: bool,
    undo: &mut Undo<'_>,
) -> Result<Option<Mac>, Error> {
    let mut requests: Vec<Nl> = addresses
        .iter()
        .map(|ip| Nl::add_address(link.index, ip.address, !dad))
        .collect();
    requests.push(Nl::rename_and_up(link.index, &ctx.request.ifname, alias));
    requests.extend(flags.lo.map(|lo| Nl::set_multicast(lo, true)));
    let mut answers = ctx.pod.acked(requests).into_iter();
    for (ip, added) in addresses.iter().zip(answers.by_ref()) {
        added.map_err(address_error(ctx.request, ip.address))?;
    }
    if !addresses.is_empty() {
        fault::point("add:addressed");
    }
    let renamed = answers
        .next()
        .unwrap_or_else(|| Err(NetlinkError::Protocol("no answer".into())));
    let mac = up_answered(ctx, link, alias, renamed, ctx.plan.stable_mac)?;
    fault::point("add:up");
    if flags.lo.is_some() {
        answers
            .next()
            .unwrap_or_else(|| Err(NetlinkError::Protocol("no answer".into())))
            .map_err(Error::netlink("set the multicast flag on lo"))?;
    }
    let requests = flags
        .exclusive
        .iter()
        .map(|(_, index)| Nl::set_multicast(*index, false))
        .collect();
    for ((name, index), cleared) in flags.exclusive.iter().zip(ctx.pod.acked(requests)) {
        cleared.map_err(Error::netlink(format!("clear the multicast flag of {name}")))?;
        undo.cleared.push(*index);
    }
    fault::point("add:flags");
    Ok(mac)
}

/// The outcome of renaming the link and bringing it up. macvlan refuses to come up with a MAC another
/// macvlan on the master already has (EADDRINUSE): with a stable MAC that means the pod's previous
/// incarnation is still being torn down, and a MAC derived from the sandbox ID is used instead of failing.
fn up_answered(
    ctx: &Ctx<'_>,
    link: &Link,
    alias: &str,
    answer: Result<(), NetlinkError>,
    stable_mac: bool,
) -> Result<Option<Mac>, Error> {
    let (request, attachment) = (ctx.request, ctx.attachment);
    match answer {
        Ok(()) => Ok(None),
        Err(err) if err.is(Errno::EADDRINUSE) && stable_mac => {
            let fallback = Mac::stable(&attachment.owner.container_id, &request.ifname, "fallback");
            warn!(
                "the stable MAC {} is still in use on the master; using {fallback} for this sandbox",
                link.mac.map(|m| m.to_string()).unwrap_or_default()
            );
            ctx.pod
                .set_address(link.index, fallback)
                .map_err(Error::netlink("change the MAC"))?;
            let again = ctx.pod.rename_and_up(link.index, &request.ifname, alias);
            up_answered(ctx, link, alias, again, false)?;
            Ok(Some(fallback))
        }
        Err(err) if err.is(Errno::EADDRINUSE) && ctx.plan.mac_source.is_some() => {
            let message = format!(
                "MAC {} is already used by another macvlan on the master; choose another",
                link.mac.map(|m| m.to_string()).unwrap_or_default()
            );
            Err(ctx.plan.mac_source.unwrap_or(MacSource::Config("mac")).refused(message))
        }
        Err(err) if err.is(Errno::EEXIST) => Err(Error::InterfaceExists {
            ifname: request.ifname.clone(),
            netns: ctx.netns.path().to_string(),
        }),
        Err(err) => Err(Error::netlink(format!(
            "rename {} to {} and set it up",
            attachment.temp_name, request.ifname
        ))(err)),
    }
}

/// How a conflict was found, for the messages.
#[derive(Clone, Copy)]
enum ConflictCheck {
    /// ARP (RFC 5227), `ipam.probe`.
    Arp,
    /// IPv6 duplicate address detection, `ipam.dad`.
    Dad,
}

/// The one replacement loop step both checks share: `ips[slot]` is held by someone else on the LAN
/// (`holder`), so it is recorded as foreign in the store and replaced by the next free address, giving
/// up after [`MAX_CONFLICTS`] in a row.
fn replace_conflict(
    ctx: &Ctx<'_>,
    check: ConflictCheck,
    ips: &mut [IpConfig],
    slot: usize,
    holder: &str,
    conflicts: &mut usize,
    undo: &mut Undo<'_>,
) -> Result<(), Error> {
    let address = ips[slot].address.ip();
    let IpamConf::Builtin(builtin) = &ctx.conf.ipam else {
        return Err(Error::TryAgain(format!(
            "{address} is in use on the LAN, and only roslan's own IPAM can replace it"
        )));
    };
    *conflicts += 1;
    match check {
        ConflictCheck::Arp => {
            warn!("{address} is in use on the LAN by {holder}; recording it as foreign and taking another address")
        }
        ConflictCheck::Dad => warn!(
            "{address} failed duplicate address detection on the LAN; recording it as foreign and taking another address"
        ),
    }
    if *conflicts > MAX_CONFLICTS {
        return Err(Error::TryAgain(match check {
            ConflictCheck::Arp => format!(
                "{conflicts} addresses in a row answered ARP probes; the range overlaps hosts roslan does not manage"
            ),
            ConflictCheck::Dad => format!(
                "{conflicts} IPv6 addresses in a row failed duplicate address detection; the range overlaps hosts roslan does not manage"
            ),
        }));
    }
    ips[slot] = ipam::builtin::replace(&ctx.conf.name, builtin, &ctx.attachment.owner, address, holder)?;
    if let Some(assigned) = undo.assigned.as_mut() {
        assigned.ips = ips.to_vec();
    }
    Ok(())
}

/// Asks the LAN by ARP about every IPv4 address before it is used (RFC 5227: sender address 0.0.0.0);
/// an address another host answers for is replaced, and the replacement asked about in turn.
fn replace_arp_conflicts(
    ctx: &Ctx<'_>,
    link: &Link,
    mut ips: Vec<IpConfig>,
    timeout: Duration,
    undo: &mut Undo<'_>,
) -> Result<Vec<IpConfig>, Error> {
    let (IpamConf::Builtin(_), Some(mac)) = (&ctx.conf.ipam, link.mac) else {
        return Ok(ips);
    };
    for slot in 0..ips.len() {
        let mut conflicts = 0;
        while let IpAddr::V4(candidate) = ips[slot].address.ip() {
            let answer = ctx
                .netns
                .run(|| arp::address_in_use(link.index, mac, candidate, timeout))?
                .map_err(|source| Error::Io {
                    what: format!("ARP-probe {candidate}"),
                    source,
                })?;
            let Some(holder) = answer else { break };
            let holder = holder.to_string();
            replace_conflict(ctx, ConflictCheck::Arp, &mut ips, slot, &holder, &mut conflicts, undo)?;
        }
    }
    Ok(ips)
}

/// With `ipam.dad`, waits until the kernel's duplicate address detection has finished for every IPv6
/// address. An address another host defends is replaced, as with the ARP check.
fn wait_for_dad(ctx: &Ctx<'_>, link: &Link, ips: &mut [IpConfig], undo: &mut Undo<'_>) -> Result<(), Error> {
    let pod = ctx.pod;
    let mut deadline = std::time::Instant::now() + DAD_WAIT;
    let mut conflicts = 0;
    loop {
        let state = pod.addresses().map_err(Error::netlink("read addresses during DAD"))?;
        let mut pending = false;
        for slot in 0..ips.len() {
            let net = ips[slot].address;
            if net.is_ipv4() {
                continue;
            }
            let Some(address) = state.iter().find(|a| a.index == link.index && a.net == net) else {
                pending = true;
                continue;
            };
            if !address.dad_failed {
                pending |= address.tentative;
                continue;
            }
            let IpamConf::Builtin(_) = &ctx.conf.ipam else {
                return Err(Error::Ipam(roslan_ipam_core::IpamError::RequestedUnavailable {
                    ip: net.ip(),
                    set: "(IPv6 duplicate address detection)".into(),
                    holder: "a host on the LAN that roslan does not manage".into(),
                }));
            };
            let _ = pod.delete_address(link.index, net);
            replace_conflict(ctx, ConflictCheck::Dad, ips, slot, "ipv6-dad", &mut conflicts, undo)?;
            let replacement = ips[slot].address;
            pod.add_address(link.index, replacement, false)
                .map_err(address_error(ctx.request, replacement))?;
            deadline = std::time::Instant::now() + DAD_WAIT;
            pending = true;
        }
        if !pending {
            return Ok(());
        }
        if std::time::Instant::now() > deadline {
            return Err(Error::TryAgain(format!(
                "IPv6 duplicate address detection on {} did not finish within {}s",
                ctx.request.ifname,
                DAD_WAIT.as_secs()
            )));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// IPAM routes (with the range's gateway when they name none), then the multicast routes
/// ([`multicast_routes`]), never with a gateway. They are independent of each other and sent together;
/// a destination another interface already routes is then added again as a standby.
fn add_routes(ctx: &Ctx<'_>, link: &Link, ips: &[IpConfig], ipam_routes: &[Route]) -> Result<Vec<Route>, Error> {
    let ifname = &ctx.request.ifname;
    let gateway_for = |v4: bool| {
        ips.iter()
            .find(|ip| ip.address.is_ipv4() == v4)
            .and_then(|ip| ip.gateway)
    };
    let has_v6 = ips.iter().any(|ip| ip.address.is_ipv6());
    let unicast: Vec<RouteSpec> = ipam_routes
        .iter()
        .filter(|route| !is_multicast_prefix(&route.dst))
        .map(|route| RouteSpec {
            dst: route.dst,
            gateway: route.gw.or_else(|| gateway_for(route.dst.is_ipv4())),
            oif: link.index,
        })
        .collect();
    let multicast = multicast_routes(ctx.conf, ipam_routes.iter().map(|r| &r.dst), has_v6);
    let mut requests: Vec<Nl> = unicast.iter().map(Nl::add_route).collect();
    requests.extend(multicast.iter().map(|dst| {
        if dst.is_ipv6() {
            Nl::add_multicast6_route(*dst, link.index, MULTICAST6_METRIC)
        } else {
            Nl::add_route(&RouteSpec {
                dst: *dst,
                gateway: None,
                oif: link.index,
            })
        }
    }));
    let mut answers = ctx.pod.acked(requests).into_iter();
    let mut routes = Vec::new();
    for (spec, added) in unicast.iter().zip(answers.by_ref()) {
        added.map_err(Error::netlink(format!("add route {} via {ifname}", spec.dst)))?;
        let mut reported = Route::new(spec.dst, spec.gateway);
        reported.scope = spec.gateway.is_none().then_some(SCOPE_LINK);
        routes.push(reported);
    }
    for (dst, added) in multicast.into_iter().zip(answers) {
        let mut reported = Route::new(dst, None);
        if dst.is_ipv6() {
            let metric = match added {
                Ok(()) => MULTICAST6_METRIC,
                Err(err) if err.is(Errno::EEXIST) => standby_multicast6_route(ctx.pod, dst, link, ifname)?,
                Err(err) => {
                    return Err(Error::netlink(format!("add IPv6 multicast route {dst} dev {ifname}"))(
                        err,
                    ));
                }
            };
            reported.table = Some(LOCAL_TABLE);
            reported.priority = Some(metric);
        } else {
            let spec = RouteSpec {
                dst,
                gateway: None,
                oif: link.index,
            };
            let appended = match added {
                Ok(()) => Ok(false),
                Err(err) if err.is(Errno::EEXIST) => ctx.pod.add_route(&spec, true).map(|_| true),
                Err(err) => Err(err),
            }
            .map_err(Error::netlink(format!("add multicast route {dst} dev {ifname}")))?;
            if appended {
                warn!("another interface in the pod already routes {dst}; {ifname}'s route is a standby behind it");
            }
            reported.scope = Some(SCOPE_LINK);
        }
        routes.push(reported);
    }
    Ok(routes)
}

/// The IPv6 multicast route when [`MULTICAST6_METRIC`] is taken: the first free metric after it. Another
/// roslan interface in the pod holds the first (a pod on two LANs), and this one then waits behind it as
/// a standby, as IPv4's appended route does. Equal metrics would make the kernel rotate between them.
fn standby_multicast6_route(pod: &Netlink<'_>, dst: IpNetwork, link: &Link, ifname: &str) -> Result<u32, Error> {
    for metric in MULTICAST6_METRIC + 1..=MULTICAST6_LAST_METRIC {
        match pod.add_multicast6_route(dst, link.index, metric) {
            Ok(()) => {
                warn!(
                    "another interface in the pod already routes {dst}; {ifname}'s route is a standby (metric {metric})"
                );
                return Ok(metric);
            }
            Err(err) if err.is(Errno::EEXIST) => continue,
            Err(err) => {
                return Err(Error::netlink(format!("add IPv6 multicast route {dst} dev {ifname}"))(
                    err,
                ));
            }
        }
    }
    Err(Error::netlink(format!("add IPv6 multicast route {dst} dev {ifname}"))(
        NetlinkError::from_errno(Errno::EEXIST),
    ))
}
