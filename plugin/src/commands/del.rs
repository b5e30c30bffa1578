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
//!
//! "Goes" is the kernel's unregistration, not its answer. The RTM_DELLINK request returns only after
//! the kernel's RCU waits (10-25 ms, most of a DEL), but the kernel announces the link unregistered
//! (closed, unlisted, its addresses dropped) about half a millisecond in; see
//! [`LinkEvents`](crate::netlink::LinkEvents) for what was measured. So a helper thread subscribes
//! to the pod's link notifications before the request is sent, waits for that announcement and only
//! then releases the reservation, while the main thread is still inside the request; the main thread
//! then checks the answer as before. When the announcement does not come (the link was already gone,
//! the request failed, notifications were lost, no helper could be started) the release waits for
//! the answer, as it always did. Either way the release follows the link's end.

use std::os::fd::AsFd;
use std::time::Instant;

use nix::errno::Errno;

use super::Attachment;
use crate::cni::Request;
use crate::config::NetConf;
use crate::error::Error;
use crate::fault;
use crate::log::{Stopwatch, debug, info, warn};
use crate::netlink::{Link, LinkEvents, Netlink, Runtime};
use crate::netns::{self, Netns};
use crate::{alias, ipam};

/// Runs DEL.
pub fn del(request: &Request, conf: &NetConf) -> Result<(), Error> {
    let mut watch = Stopwatch::default();
    fault::point("del:parsed");
    let attachment = Attachment::new(request, conf);
    let release = || -> Result<(), Error> {
        ipam::release(request, conf, &attachment.owner)?;
        fault::point("del:released");
        Ok(())
    };
    remove_links_then(request, &attachment, &mut watch, &release)?;
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
    // One dump answers both questions: whether another link inherits the list, and which of the
    // listed interfaces still exist and lack the flag (one lookup per name only if the dump failed).
    let links = pod.links().ok();
    let heir = links.as_ref().and_then(|links| {
        links
            .iter()
            .find(|l| l.index != link.index && alias::is_exclusive(l.alias.as_deref()))
            .cloned()
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
        let other = match &links {
            Some(links) => links.iter().find(|l| l.name == name).cloned(),
            None => pod.link_by_name(&name).ok().flatten(),
        };
        if let Some(other) = other
            && !other.multicast
        {
            match pod.set_multicast(other.index, true) {
                Ok(()) => info!("restored the multicast flag of {name}"),
                Err(err) => warn!("could not restore the multicast flag of {name}: {err}"),
            }
        }
    }
}

/// Removes this attachment's links, then runs `release`: during the kernel's wait when the pod
/// announces every removed link unregistered in time, otherwise after the kernel's answer.
fn remove_links_then(
    request: &Request,
    attachment: &Attachment,
    watch: &mut Stopwatch,
    release: &(dyn Fn() -> Result<(), Error> + Sync),
) -> Result<(), Error> {
    let Some(path) = request.netns.as_deref().filter(|path| netns::exists(path)) else {
        debug!(
            "namespace {} is gone; nothing to remove there",
            request.netns.as_deref().unwrap_or("(none given)")
        );
        return released(release, watch);
    };
    let netns = match Netns::open(path) {
        Ok(netns) => netns,
        Err(err) => {
            // A file that is no longer a namespace (e.g. an unmounted /run/netns entry) is a gone pod.
            warn!("{err}; treating the pod as gone");
            return released(release, watch);
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
    let mut owned = Vec::new();
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
        owned.push((name, link));
    }
    if owned.is_empty() {
        return released(release, watch);
    }
    let events = LinkEvents::subscribe_in(&netns)
        .inspect_err(|err| debug!("{err}; releasing after the kernel's answer"))
        .ok();
    let indexes: Vec<u32> = owned.iter().map(|(_, link)| link.index).collect();
    std::thread::scope(|scope| {
        // The helper's stop signal: the main thread drops the writing end once every answer is in.
        let (stop, answered) = match std::io::pipe() {
            Ok(pipe) => (Some(pipe.0), Some(pipe.1)),
            Err(err) => {
                debug!("no pipe for the helper ({err}); releasing after the kernel's answer");
                (None, None)
            }
        };
        let helper = events.zip(stop).and_then(|(events, stop)| {
            let indexes = &indexes;
            std::thread::Builder::new()
                .name("roslan-release".into())
                .spawn_scoped(scope, move || {
                    release_when_unregistered(&events, indexes, stop, release)
                })
                .inspect_err(|err| debug!("no helper thread ({err}); releasing after the kernel's answer"))
                .ok()
        });
        let deleted = delete_links(&pod, &owned);
        drop(answered);
        let early = helper.and_then(|helper| helper.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic)));
        watch.lap("link");
        let any_deleted = deleted?;
        match early {
            Some(result) => result,
            None => {
                if any_deleted {
                    fault::point("del:link-deleted");
                }
                released(release, watch)
            }
        }
    })
}

/// The helper thread: once the pod has announced every link of `indexes` unregistered, releases;
/// `None` (nothing released) when the main thread's answers came first or the wait failed.
fn release_when_unregistered(
    events: &LinkEvents,
    indexes: &[u32],
    stop: std::io::PipeReader,
    release: &(dyn Fn() -> Result<(), Error> + Sync),
) -> Option<Result<(), Error>> {
    match events.wait_unregistered(indexes, stop.as_fd()) {
        Ok(true) => {
            fault::point("del:link-deleted");
            let start = Instant::now();
            let result = release();
            debug!("released during the kernel's wait in {}us", start.elapsed().as_micros());
            Some(result)
        }
        Ok(false) => None,
        Err(err) => {
            debug!("{err}; releasing after the kernel's answer");
            None
        }
    }
}

/// Deletes each link, restoring the multicast flags it took first; true if one was deleted by this
/// call (not found gone). The first failure ends the loop, as nothing may be released after it.
fn delete_links(pod: &Netlink<'_>, owned: &[(&str, Link)]) -> Result<bool, Error> {
    let mut any_deleted = false;
    for (name, link) in owned {
        release_multicast_flags(pod, link);
        match pod.delete_link(link.index) {
            Ok(()) => {
                info!("deleted {name}");
                any_deleted = true;
            }
            Err(err) if err.is(Errno::ENODEV) => {}
            Err(err) => return Err(Error::netlink(format!("delete {name}"))(err)),
        }
    }
    Ok(any_deleted)
}

/// Releases on the main thread, timing it.
fn released(release: &(dyn Fn() -> Result<(), Error> + Sync), watch: &mut Stopwatch) -> Result<(), Error> {
    release()?;
    watch.lap("ipam");
    Ok(())
}
