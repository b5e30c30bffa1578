//! The link aliases (IFLA_IFALIAS) roslan writes, formatted and parsed here only.
//!
//! A pod's link: `roslan net=<network> cid=<container>` and, when its ADD cleared IFF_MULTICAST on other
//! interfaces, `mcast-off=<names>`, which is what DEL restores. State kept on the link itself survives
//! everything but the link, which is exactly as long as it matters, and `ip link` shows an operator
//! whose link it is. The installer's host shim carries [`SHIM`].

use roslan_ipam_core::fnv::fnv64_parts;

/// What every pod link's alias starts with.
const PREFIX: &str = "roslan ";
/// IFALIASZ is 256 with the terminating NUL.
pub const MAX: usize = 255;
/// The key of the list of interfaces whose multicast flag ADD cleared.
const MCAST_OFF: &str = "mcast-off=";

/// The alias that marks the installer's host shim.
pub const SHIM: &str = "roslan-install host shim";

/// True if `alias` marks a host shim: the installer's, or one made by hand as docs/install.md shows.
pub fn is_shim(alias: &str) -> bool {
    alias.starts_with("roslan-shim") || alias.starts_with("roslan-install")
}

/// How a container ID appears in the alias: itself, or a hash when too long to fit.
fn cid_token(container_id: &str) -> String {
    if container_id.len() <= 128 {
        format!("cid={container_id}")
    } else {
        format!("cid=h:{:016x}", fnv64_parts(&[container_id.as_bytes()]))
    }
}

/// The alias of the link of `container_id` on `network`. With `multicast.exclusive`, `cleared` is the
/// list of interfaces whose multicast flag ADD cleared, written even when empty: the key marks the link
/// as one that wants exclusivity, which DEL of another attachment in the same pod needs to know.
pub fn format(network: &str, container_id: &str, cleared: Option<&[String]>) -> String {
    let alias = format!(
        "{PREFIX}net={} {}",
        network.chars().take(64).collect::<String>(),
        cid_token(container_id)
    );
    match cleared {
        Some(cleared) => with_cleared(&alias, cleared),
        None => alias,
    }
}

/// True if `alias` is roslan's (for any attachment).
pub fn is_roslan(alias: Option<&str>) -> bool {
    alias.is_some_and(|alias| alias.starts_with(PREFIX))
}

/// True if `alias` is roslan's and names `container_id`.
pub fn names_container(alias: Option<&str>, container_id: &str) -> bool {
    let token = cid_token(container_id);
    alias.is_some_and(|alias| alias.starts_with(PREFIX) && alias.split(' ').any(|t| t == token))
}

/// The interfaces whose multicast flag the ADD of the link carrying `alias` cleared.
pub fn cleared(alias: Option<&str>) -> Vec<String> {
    alias
        .and_then(|alias| alias.split(' ').find_map(|t| t.strip_prefix(MCAST_OFF)))
        .map(|names| names.split(',').filter(|n| !n.is_empty()).map(str::to_string).collect())
        .unwrap_or_default()
}

/// True if `alias` is that of a roslan link added with `multicast.exclusive`.
pub fn is_exclusive(alias: Option<&str>) -> bool {
    is_roslan(alias) && alias.is_some_and(|alias| alias.split(' ').any(|t| t.starts_with(MCAST_OFF)))
}

/// `alias` with its `mcast-off=` list replaced by `cleared` (kept within IFALIASZ).
pub fn with_cleared(alias: &str, cleared: &[String]) -> String {
    let mut out: String = alias
        .split(' ')
        .filter(|t| !t.starts_with(MCAST_OFF))
        .collect::<Vec<_>>()
        .join(" ");
    out.push_str(&format!(" {MCAST_OFF}{}", cleared.join(",")));
    if out.len() > MAX {
        // Interface names are bytes the kernel does not restrict to ASCII: cut on a character boundary.
        let cut = (0..=MAX).rev().find(|&i| out.is_char_boundary(i)).unwrap_or(0);
        out.truncate(cut);
    }
    out
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
        assert!(alias.len() <= MAX, "{}", alias.len());
        assert!(alias.starts_with("roslan net=a cid=b mcast-off=é00ü,"));
    }

    #[test]
    fn formatted_aliases_parse_back() {
        let alias = format("ros-lan", "c1", Some(&["eth0".into()]));
        assert_eq!(alias, "roslan net=ros-lan cid=c1 mcast-off=eth0");
        assert!(is_roslan(Some(&alias)) && is_exclusive(Some(&alias)));
        assert!(names_container(Some(&alias), "c1") && !names_container(Some(&alias), "c"));
        assert_eq!(cleared(Some(&alias)), vec!["eth0".to_string()]);
        assert!(!is_exclusive(Some(&format("ros-lan", "c1", None))));
        assert!(is_shim(SHIM) && !is_roslan(Some(SHIM)));
    }
}
