//! The CNI commands. Each takes the parsed request and configuration and returns the JSON to print
//! (if any); the mapping of failures to CNI error replies happens once, in [`crate::run`].

pub mod add;
pub mod check;
pub mod del;
pub mod gc;
pub mod status;
pub mod version;

use roslan_ipam_core::Owner;

use crate::cni::Request;
use crate::config::{MasterSpec, NetConf};
use crate::error::Error;
use crate::netlink::{Link, Netlink};

/// Identity of one attachment: what names its link, its temporary name and its reservation.
#[derive(Clone, Debug)]
pub struct Attachment {
    /// (containerID, ifname), the IPAM key.
    pub owner: Owner,
    /// The name the macvlan has between creation and rename. Derived from the owner so that a DEL
    /// after an ADD killed mid-way can find and remove it.
    pub temp_name: String,
    /// IFLA_IFALIAS put on the link: marks it as roslan's, for this container.
    pub alias: String,
}

/// FNV-1a, 64 bit: a stable, dependency-free hash for derived names.
pub fn fnv1a(parts: &[&[u8]]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for part in parts {
        for byte in *part {
            hash ^= u64::from(*byte);
            hash = hash.wrapping_mul(0x0100_0000_01b3);
        }
        hash ^= 0xff;
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    hash
}

impl Attachment {
    /// The attachment named by the request's container ID and interface name.
    pub fn new(request: &Request, conf: &NetConf) -> Attachment {
        let hash = fnv1a(&[request.container_id.as_bytes(), request.ifname.as_bytes()]);
        Attachment {
            owner: Owner::new(request.container_id.clone(), request.ifname.clone()),
            temp_name: format!("rl{:013x}", hash & ((1 << 52) - 1)),
            alias: format!("roslan {} {}", conf.name, request.container_id),
        }
    }

    /// True if `link` is this attachment's (by alias), or its not-yet-renamed temporary link.
    pub fn owns(&self, link: &Link) -> bool {
        let ours_by_alias = link.alias.as_deref().is_some_and(|alias| {
            alias.starts_with("roslan ") && alias.rsplit(' ').next() == Some(self.owner.container_id.as_str())
        });
        ours_by_alias || (link.name == self.temp_name && link.macvlan_mode.is_some())
    }
}

/// STATUS and GC exist from CNI 1.1.0 on; an older configuration asking for them is refused with
/// code 1, as the Go library does.
pub fn require_1_1(conf: &NetConf, command: &str) -> Result<(), Error> {
    if conf.version.has_status_and_gc() {
        Ok(())
    } else {
        Err(Error::IncompatibleVersion {
            detail: format!(
                "config version {} does not allow {command}; {command} needs cniVersion 1.1.0",
                conf.version
            ),
        })
    }
}

/// Finds the master interface in the node's namespace, or explains what exists instead.
pub fn resolve_master(host: &Netlink<'_>, spec: &MasterSpec) -> Result<Link, Error> {
    let found = match spec {
        MasterSpec::Name(name) => host
            .link_by_name(name)
            .map_err(Error::netlink(format!("look up master {name}")))?,
        MasterSpec::DefaultRoute => {
            let index = host
                .default_route_interface()
                .map_err(Error::netlink("read the node's default route"))?
                .ok_or_else(|| {
                    Error::Master("no default route in the node's network namespace to pick a master from; set \"master\" to the LAN interface".into())
                })?;
            host.links()
                .map_err(Error::netlink("list links"))?
                .into_iter()
                .find(|l| l.index == index)
        }
    };
    let Some(master) = found else {
        let names: Vec<String> = host
            .links()
            .map(|links| links.into_iter().filter(|l| !l.loopback).map(|l| l.name).collect())
            .unwrap_or_default();
        let wanted = match spec {
            MasterSpec::Name(name) => name.as_str(),
            MasterSpec::DefaultRoute => "(default route)",
        };
        return Err(Error::Master(format!(
            "master interface {wanted:?} not found in the node's network namespace; interfaces here: {}. Set \"master\" to one of them, or omit it to use the default-route interface",
            if names.is_empty() {
                "none".to_string()
            } else {
                names.join(", ")
            }
        )));
    };
    if master.loopback {
        return Err(Error::Master(format!(
            "{} is a loopback interface and cannot carry a macvlan; set \"master\" to the LAN interface",
            master.name
        )));
    }
    Ok(master)
}
