//! The CNI commands. Each takes the parsed request and configuration and returns the JSON to print
//! (if any); the mapping of failures to CNI error replies happens once, in [`crate::run`].

pub mod add;
pub mod check;
pub mod del;
pub mod gc;
pub mod status;
pub mod version;

use roslan_ipam_core::Owner;
use roslan_ipam_core::fnv::fnv64_parts;

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
    network: String,
}

/// The alias (IFLA_IFALIAS) roslan puts on its links: `roslan net=<network> cid=<container>` and, when it
/// cleared IFF_MULTICAST on other interfaces, `mcast-off=<names>`, which is what DEL restores. State
/// kept on the link itself survives everything but the link, which is exactly as long as it matters,
/// and `ip link` shows an operator whose link it is.
const ALIAS_PREFIX: &str = "roslan ";
/// IFALIASZ is 256 with the terminating NUL.
const ALIAS_MAX: usize = 255;

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

    /// How the container ID appears in the alias: itself, or a hash when too long to fit.
    fn cid_token(&self) -> String {
        let id = &self.owner.container_id;
        if id.len() <= 128 {
            format!("cid={id}")
        } else {
            format!("cid=h:{:016x}", fnv64_parts(&[id.as_bytes()]))
        }
    }

    /// The alias for this attachment's link. With `multicast.exclusive`, `cleared` is the list of
    /// interfaces whose multicast flag ADD cleared, written even when empty: the key marks the link as
    /// one that wants exclusivity, which DEL of another attachment in the same pod needs to know.
    pub fn alias(&self, cleared: Option<&[String]>) -> String {
        let alias = format!(
            "{ALIAS_PREFIX}net={} {}",
            self.network.chars().take(64).collect::<String>(),
            self.cid_token()
        );
        match cleared {
            Some(cleared) => with_cleared(&alias, cleared),
            None => alias,
        }
    }

    /// True if `link` is this attachment's (by alias), or its not-yet-renamed temporary link.
    pub fn owns(&self, link: &Link) -> bool {
        let token = self.cid_token();
        let ours_by_alias = link
            .alias
            .as_deref()
            .is_some_and(|alias| alias.starts_with(ALIAS_PREFIX) && alias.split(' ').any(|t| t == token));
        ours_by_alias || (link.name == self.temp_name && link.macvlan_mode.is_some())
    }
}

/// True if `link` was created by roslan (for any attachment).
pub fn is_roslan_link(link: &Link) -> bool {
    link.alias
        .as_deref()
        .is_some_and(|alias| alias.starts_with(ALIAS_PREFIX))
}

/// The interfaces whose multicast flag the ADD of `link` cleared, from its alias.
pub fn cleared_by(link: &Link) -> Vec<String> {
    link.alias
        .as_deref()
        .and_then(|alias| alias.split(' ').find_map(|t| t.strip_prefix(MCAST_OFF)))
        .map(|names| names.split(',').filter(|n| !n.is_empty()).map(str::to_string).collect())
        .unwrap_or_default()
}

/// True if `link` is a roslan link added with `multicast.exclusive`.
pub fn is_exclusive(link: &Link) -> bool {
    is_roslan_link(link)
        && link
            .alias
            .as_deref()
            .is_some_and(|alias| alias.split(' ').any(|t| t.starts_with(MCAST_OFF)))
}

const MCAST_OFF: &str = "mcast-off=";

/// `alias` with its `mcast-off=` list replaced by `cleared` (kept within IFALIASZ).
pub fn with_cleared(alias: &str, cleared: &[String]) -> String {
    let mut out: String = alias
        .split(' ')
        .filter(|t| !t.starts_with(MCAST_OFF))
        .collect::<Vec<_>>()
        .join(" ");
    out.push_str(&format!(" {MCAST_OFF}{}", cleared.join(",")));
    if out.len() > ALIAS_MAX {
        // Interface names are bytes the kernel does not restrict to ASCII: cut on a character boundary.
        let cut = (0..=ALIAS_MAX).rev().find(|&i| out.is_char_boundary(i)).unwrap_or(0);
        out.truncate(cut);
    }
    out
}

/// Finds and checks the master interface in the node's namespace; see [`crate::master`].
pub fn resolve_master(host: &Netlink<'_>, spec: &MasterSpec) -> Result<Link, Error> {
    crate::master::resolve(host, spec)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cleared_list_is_replaced_and_the_alias_stays_within_ifaliasz() {
        let alias = with_cleared("roslan net=a cid=b mcast-off=eth0", &["eth0".into(), "eth1".into()]);
        assert_eq!(alias, "roslan net=a cid=b mcast-off=eth0,eth1");
        assert_eq!(with_cleared("roslan net=a cid=b", &[]), "roslan net=a cid=b mcast-off=");
        // Non-ASCII interface names: the cut falls on a character boundary, never inside one.
        let long: Vec<String> = (0..40).map(|i| format!("é{i:02}ü")).collect();
        let alias = with_cleared("roslan net=a cid=b", &long);
        assert!(alias.len() <= ALIAS_MAX, "{}", alias.len());
        assert!(alias.starts_with("roslan net=a cid=b mcast-off=é00ü,"));
    }
}
