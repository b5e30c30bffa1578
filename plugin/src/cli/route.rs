//! What the kernel would do with a packet to one destination, asked inside a given namespace: the
//! netlink equivalent of `ip route get`.
//!
//! `roslan probe` needs this for every place. The sender's answer says which interface unpinned
//! multicast leaves through and whether it carries a gateway (a gateway makes the kernel address the
//! frames to the gateway's MAC, which silences sibling pods); a receiver's answer says where a join on
//! INADDR_ANY / interface 0 lands, because the kernel resolves such a join with the same lookup. Asking
//! the kernel instead of matching the route table here gets policy rules, metrics and the kernel's
//! special case right: a default route's gateway is ignored for multicast, a 224.0.0.0/4 route's is not.
//!
//! The lookup itself is [`crate::netlink::Netlink::route_get`]; this names the interface and words the
//! answer for people.

use std::fmt;
use std::net::IpAddr;

use crate::netlink::{NetlinkError, Runtime};
use crate::netns::Netns;

/// The kernel's answer for one destination.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RouteAnswer {
    /// Output interface index.
    pub oif: Option<u32>,
    /// Its name in that namespace.
    pub dev: Option<String>,
    /// The next hop, when the matching route has one.
    pub gateway: Option<IpAddr>,
    /// The source address the kernel would pick.
    pub source: Option<IpAddr>,
}

impl RouteAnswer {
    /// `dev net1`, `via 10.77.255.254 dev net1`: the words `ip route get` uses.
    pub fn describe(&self) -> String {
        let mut out = String::new();
        if let Some(gw) = self.gateway {
            out.push_str(&format!("via {gw} "));
        }
        match (&self.dev, self.oif) {
            (Some(dev), _) => out.push_str(&format!("dev {dev}")),
            (None, Some(oif)) => out.push_str(&format!("dev #{oif}")),
            (None, None) => out.push_str("no device"),
        }
        if let Some(src) = self.source {
            out.push_str(&format!(" src {src}"));
        }
        out
    }
}

/// Why the lookup gave no route.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LookupError {
    /// The kernel's errno (ENETUNREACH: no route covers the destination).
    pub errno: Option<i32>,
    /// Other failures (socket, namespace).
    pub text: String,
}

impl fmt::Display for LookupError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.errno {
            Some(errno) if errno == nix::errno::Errno::ENETUNREACH as i32 => {
                f.write_str("no route covers it (sending fails with \"Network is unreachable\")")
            }
            Some(errno) => write!(f, "{}", nix::errno::Errno::from_raw(errno).desc()),
            None => f.write_str(&self.text),
        }
    }
}

fn other(text: impl Into<String>) -> LookupError {
    LookupError {
        errno: None,
        text: text.into(),
    }
}

fn from_netlink(err: NetlinkError) -> LookupError {
    match err.errno() {
        Some(errno) => LookupError {
            errno: Some(errno),
            text: String::new(),
        },
        None => other(err.to_string()),
    }
}

/// Asks the kernel of `netns` (the calling thread's namespace when `None`) how it would send to `dst`.
pub fn lookup(netns: Option<&Netns>, dst: IpAddr) -> Result<RouteAnswer, LookupError> {
    let runtime = Runtime::new().map_err(|err| other(err.to_string()))?;
    let netlink = match netns {
        Some(ns) => runtime.connect_in(ns),
        None => runtime.connect(),
    }
    .map_err(|err| other(err.to_string()))?;
    let decision = netlink.route_get(dst).map_err(from_netlink)?;
    let dev = match decision.oif {
        Some(oif) => netlink
            .links()
            .ok()
            .and_then(|links| links.into_iter().find(|l| l.index == oif).map(|l| l.name)),
        None => None,
    };
    Ok(RouteAnswer {
        oif: decision.oif,
        dev,
        gateway: decision.gateway,
        source: decision.source,
    })
}
