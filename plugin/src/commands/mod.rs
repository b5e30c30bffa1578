//! The CNI commands. Each takes the parsed request and configuration and returns the JSON to print
//! (if any); the mapping of failures to CNI error replies happens once, in [`crate::run`].

pub mod add;
pub mod check;
pub mod del;
pub mod gc;
pub mod status;
pub mod sysctls;
pub mod version;

use ipnetwork::IpNetwork;
use roslan_ipam_core::Owner;
use roslan_ipam_core::fnv::fnv64_parts;

use crate::alias;
use crate::cni::Request;
use crate::config::{MasterSpec, NetConf, is_multicast_prefix};
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
    network: String,
}

impl Attachment {
    /// The attachment named by the request's container ID and interface name.
    pub fn new(request: &Request, conf: &NetConf) -> Attachment {
        let hash = fnv64_parts(&[request.container_id.as_bytes(), request.ifname.as_bytes()]);
        Attachment {
            owner: Owner::new(request.container_id.clone(), request.ifname.clone()),
            temp_name: format!("rl{:013x}", hash & ((1 << 52) - 1)),
            network: conf.name.clone(),
        }
    }

    /// The alias for this attachment's link; see [`alias::format`].
    pub fn alias(&self, cleared: Option<&[String]>) -> String {
        alias::format(&self.network, &self.owner.container_id, cleared)
    }

    /// True if `link` is this attachment's (by alias), or its not-yet-renamed temporary link.
    pub fn owns(&self, link: &Link) -> bool {
        alias::names_container(link.alias.as_deref(), &self.owner.container_id)
            || (link.name == self.temp_name && link.macvlan_mode.is_some())
    }
}

/// The multicast destinations an attachment routes through its interface, never with a gateway: every
/// multicast destination in `listed` (the IPAM's routes at ADD, prevResult's at CHECK), then
/// `multicast.routes`, each once; IPv6 ones only when the interface has an IPv6 address of its own, since
/// only such an interface should carry the pod's IPv6 multicast. ADD and CHECK both ask here, so what
/// CHECK expects is what ADD made.
pub fn multicast_routes<'a>(
    conf: &'a NetConf,
    listed: impl IntoIterator<Item = &'a IpNetwork>,
    has_v6: bool,
) -> Vec<IpNetwork> {
    let mut out: Vec<IpNetwork> = Vec::new();
    let candidates = listed
        .into_iter()
        .filter(|dst| is_multicast_prefix(dst))
        .chain(conf.multicast.routes.iter());
    for dst in candidates {
        if (dst.is_ipv4() || has_v6) && !out.contains(dst) {
            out.push(*dst);
        }
    }
    out
}

/// Finds and checks the master interface in the node's namespace; see [`crate::master`].
pub fn resolve_master(host: &Netlink<'_>, spec: &MasterSpec) -> Result<Link, Error> {
    crate::master::resolve(host, spec)
}
