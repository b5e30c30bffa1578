//! DEL: remove the link, then release the addresses. Best-effort by design.
//!
//! A DEL that fails blocks the runtime's whole teardown and leaves the pod Terminating for ever, so
//! DEL succeeds whenever the thing to remove is already gone: no namespace (or an empty CNI_NETNS, or
//! a path that is no longer a namespace), no link, no reservation, no data directory. It never looks at
//! the master (it may be unplugged) and never parses CNI_ARGS strictly.
//!
//! The link goes before the reservation: if this process dies between the two, the address is still
//! reserved while nothing uses it (a retried DEL or GC frees it), rather than free while a link still
//! holds it (a duplicate address on the LAN).

use nix::errno::Errno;

use super::Attachment;
use crate::cni::Request;
use crate::config::NetConf;
use crate::error::Error;
use crate::fault;
use crate::log::Stopwatch;
use crate::log::{debug, info, warn};
use crate::netlink::{Link, Netlink, Runtime};
use crate::netns::{self, Netns};
use crate::{alias, ipam};

/// Runs DEL.
pub fn del(request: &Request, conf: &NetConf) -> Result<(), Error> {
    let mut watch = Stopwatch::default();
    fault::point("del:parsed");
    let attachment = Attachment::new(request, conf);
    remove_links(request, &attachment, &mut watch)?;
    ipam::release(request, conf, &attachment.owner)?;
    fault::point("del:released");
    watch.lap("ipam");
    debug!("{}", watch.summary());
    Ok(())
}

/// Gives back IFF_MULTICAST to the interfaces this attachment's ADD took it from (`multicast.exclusive`,
/// recorded in the link's alias), unless another roslan attachment in the pod also wants exclusivity:
/// then the list passes to that link's alias and its DEL restores them, so a pod on two LANs keeps
/// eth0 out of DDS' way until the last one leaves. Best-effort: an interface that is gone needs nothing.
fn release_multicast_flags(pod: &Netlink<'_>, link: &Link) {
    let names = alias::cleared(link.alias.as_deref());
    if names.is_empty() {
        return;
    }
    let heir = pod.links().ok().and_then(|links| {
        links
            .into_iter()
            .find(|l| l.index != link.index && alias::is_exclusive(l.alias.as_deref()))
    });
    if let Some(heir) = heir {
        let mut list = alias::cleared(heir.alias.as_deref());
        list.extend(names.iter().filter(|n| !list.contains(n)).cloned().collect::<Vec<_>>());
        let handed = alias::with_cleared(heir.alias.as_deref().unwrap_or_default(), &list);
        match pod.set_alias(heir.index, &handed) {
            Ok(()) => {
                info!(
                    "{} stays without multicast: {} still wants exclusivity",
                    names.join(","),
                    heir.name
                );
                return;
            }
            Err(err) => warn!(
                "could not hand {} over to {}: {err}; restoring them",
                names.join(","),
                heir.name
            ),
        }
    }
    for name in names {
        if let Ok(Some(other)) = pod.link_by_name(&name)
            && !other.multicast
        {
            match pod.set_multicast(other.index, true) {
                Ok(()) => info!("restored the multicast flag of {name}"),
                Err(err) => warn!("could not restore the multicast flag of {name}: {err}"),
            }
        }
    }
}

fn remove_links(request: &Request, attachment: &Attachment, watch: &mut Stopwatch) -> Result<(), Error> {
    let Some(path) = request.netns.as_deref().filter(|path| netns::exists(path)) else {
        debug!(
            "namespace {} is gone; nothing to remove there",
            request.netns.as_deref().unwrap_or("(none given)")
        );
        return Ok(());
    };
    let netns = match Netns::open(path) {
        Ok(netns) => netns,
        Err(err) => {
            // A file that is no longer a namespace (e.g. an unmounted /run/netns entry) is a gone pod.
            warn!("{err}; treating the pod as gone");
            return Ok(());
        }
    };
    let runtime = Runtime::new()?;
    let pod = runtime
        .connect_in(&netns)
        .map_err(Error::netlink(format!("connect to netlink in {}", netns.path())))?;
    watch.lap("pod");
    fault::point("del:pod-visited");
    // Both names in one pipeline: the link is under one of them (the temporary one after a killed ADD).
    let names = [request.ifname.as_str(), attachment.temp_name.as_str()];
    for (name, found) in names.into_iter().zip(pod.links_by_name(&names)) {
        let Some(link) = found.map_err(Error::netlink(format!("look up {name}")))? else {
            continue;
        };
        if !attachment.owns(&link) {
            warn!(
                "leaving {name} in place: it was not created by roslan for container {}",
                attachment.owner.container_id
            );
            continue;
        }
        release_multicast_flags(&pod, &link);
        match pod.delete_link(link.index) {
            Ok(()) => {
                info!("deleted {name}");
                fault::point("del:link-deleted");
            }
            Err(err) if err.is(Errno::ENODEV) => {}
            Err(err) => return Err(Error::netlink(format!("delete {name}"))(err)),
        }
        watch.lap("link");
    }
    Ok(())
}
