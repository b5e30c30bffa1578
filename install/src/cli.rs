//! The command line, which the DaemonSet manifest is written against: every option also comes from a
//! `ROSLAN_*` environment variable, because a DaemonSet sets environment variables (the node name
//! comes from the downward API) more readily than it rewrites `args`.

use std::net::IpAddr;
use std::path::PathBuf;
use std::str::FromStr;

use clap::Parser;
use ipnetwork::IpNetwork;

/// Installs roslan's CNI binaries on this node and keeps them installed.
///
/// Runs as a DaemonSet with the host's filesystem (or the needed parts of it) mounted under
/// --host-root. Installs `roslan` (and `roslan-ipam` when the image has it) into the host's CNI bin
/// dir atomically, optionally writes the node-name file, raises socket-buffer sysctls and creates a
/// host shim, then re-checks every --interval seconds until SIGTERM. --uninstall removes exactly
/// what it installed.
#[derive(Clone, Debug, Parser)]
#[command(name = "roslan-install", version)]
pub struct Args {
    /// Where the host's filesystem is mounted; every host path below is interpreted under it.
    #[arg(long, env = "ROSLAN_HOST_ROOT", value_name = "DIR", default_value = "/host")]
    pub host_root: PathBuf,

    /// The host's CNI bin dir (a host path). Default: /var/snap/microk8s/current/opt/cni/bin on a
    /// MicroK8s node, else /opt/cni/bin.
    #[arg(long, env = "ROSLAN_CNI_BIN_DIR", value_name = "DIR")]
    pub cni_bin_dir: Option<PathBuf>,

    /// Where the image holds `roslan` (required) and `roslan-ipam` (installed when present).
    #[arg(
        long,
        env = "ROSLAN_SOURCE_DIR",
        value_name = "DIR",
        default_value = "/opt/roslan/bin"
    )]
    pub source_dir: PathBuf,

    /// This node's Kubernetes name (set it from the downward API, spec.nodeName); written to
    /// --node-name-file for roslan's nodeRanges IPAM option.
    #[arg(long, env = "ROSLAN_NODE_NAME", value_name = "NAME")]
    pub node_name: Option<String>,

    /// The node-name file (a host path).
    #[arg(
        long,
        env = "ROSLAN_NODE_NAME_FILE",
        value_name = "PATH",
        default_value = "/var/lib/roslan/node-name"
    )]
    pub node_name_file: PathBuf,

    /// Floor for net.core.rmem_max (raised to this when lower, never lowered).
    #[arg(long, env = "ROSLAN_RMEM_MAX", value_name = "BYTES")]
    pub rmem_max: Option<u64>,

    /// Floor for net.core.wmem_max (raised to this when lower, never lowered).
    #[arg(long, env = "ROSLAN_WMEM_MAX", value_name = "BYTES")]
    pub wmem_max: Option<u64>,

    /// The sysctl tree to write; tests point it at a scratch directory.
    #[arg(
        long,
        env = "ROSLAN_PROC_SYS",
        value_name = "DIR",
        default_value = "/proc/sys",
        hide = true
    )]
    pub proc_sys: PathBuf,

    /// Host shim: the node's LAN interface (the pods' macvlan master).
    #[arg(long, env = "ROSLAN_SHIM_MASTER", value_name = "IFACE")]
    pub shim_master: Option<String>,

    /// Host shim: the node's address on the shim, a /32 (or /128) outside the pods' range.
    #[arg(long, env = "ROSLAN_SHIM_ADDRESS", value_name = "CIDR", value_parser = parse_host_address)]
    pub shim_address: Option<IpNetwork>,

    /// Host shim: a pod range routed through the shim (repeatable, or a comma list). A multicast
    /// range (239.255.0.0/16) here lets DDS on the node discover the node's own pods.
    #[arg(
        long = "shim-route",
        env = "ROSLAN_SHIM_ROUTES",
        value_name = "CIDR",
        value_delimiter = ',',
        value_parser = parse_route
    )]
    pub shim_routes: Vec<IpNetwork>,

    /// Host shim: the interface's name.
    #[arg(long, env = "ROSLAN_SHIM_NAME", value_name = "NAME", default_value = "roslan-shim", value_parser = parse_ifname)]
    pub shim_name: String,

    /// Seconds between checks.
    #[arg(
        long,
        env = "ROSLAN_INTERVAL",
        value_name = "SECONDS",
        default_value_t = 30,
        value_parser = clap::value_parser!(u64).range(1..)
    )]
    pub interval: u64,

    /// Run the block agent: lease address blocks of every `nodeBlocks` network for this node through
    /// the Kubernetes API (needs --node-name) and write them to --blocks-file, which ADD reads.
    #[arg(long, env = "ROSLAN_LEASE_BLOCKS")]
    pub lease_blocks: bool,

    /// The kubeconfig the block agent uses (a path in this container). Default: the pod's service
    /// account (its mounted token and the KUBERNETES_SERVICE_HOST/PORT environment).
    #[arg(long, env = "ROSLAN_KUBECONFIG", value_name = "PATH")]
    pub kubeconfig: Option<PathBuf>,

    /// The namespace of the block Leases (the DaemonSet sets its own namespace here).
    #[arg(
        long,
        env = "ROSLAN_LEASE_NAMESPACE",
        value_name = "NAMESPACE",
        default_value = "roslan"
    )]
    pub lease_namespace: String,

    /// The blocks file (a host path); a network's ipam.nodeBlocks.file must name the same one. The
    /// agent's status file is written next to it (agent-status), for `roslan doctor`.
    #[arg(
        long,
        env = "ROSLAN_BLOCKS_FILE",
        value_name = "PATH",
        default_value = roslan_ipam_core::blocks::file::DEFAULT_BLOCKS_FILE
    )]
    pub blocks_file: PathBuf,

    /// How often the block agent looks at the node's reservations, in milliseconds.
    #[arg(
        long,
        env = "ROSLAN_BLOCKS_TICK_MS",
        value_name = "MS",
        default_value_t = 1000,
        value_parser = clap::value_parser!(u64).range(50..=60_000),
        hide = true
    )]
    pub blocks_tick_ms: u64,

    /// Install (or uninstall) once and exit instead of staying to re-check.
    #[arg(long, env = "ROSLAN_ONCE")]
    pub once: bool,

    /// Remove exactly what this installer installed, restore raised sysctls, then stay idle until
    /// SIGTERM (so a DaemonSet pod does not restart-loop) unless --once is given.
    #[arg(long, env = "ROSLAN_UNINSTALL")]
    pub uninstall: bool,
}

/// `a.b.c.d/32`, `a.b.c.d` (taken as /32), or the IPv6 equivalents. Only a host prefix is accepted:
/// a wider one makes the kernel add a connected route through the shim that competes with the
/// master's own route to the LAN.
pub fn parse_host_address(text: &str) -> Result<IpNetwork, String> {
    let net = parse_cidr(text)?;
    let host_prefix = if net.is_ipv4() { 32 } else { 128 };
    if net.prefix() != host_prefix {
        return Err(format!(
            "{text}: the shim address must be a /{host_prefix} (e.g. {}/{host_prefix}): a wider prefix would add a second route to the LAN through the shim, competing with the master's",
            net.ip()
        ));
    }
    Ok(net)
}

/// A route destination: a network address with its prefix, no host bits.
pub fn parse_route(text: &str) -> Result<IpNetwork, String> {
    let net = parse_cidr(text)?;
    if net.ip() != net.network() {
        return Err(format!(
            "{text} has host bits set; did you mean {}/{}?",
            net.network(),
            net.prefix()
        ));
    }
    Ok(net)
}

fn parse_cidr(text: &str) -> Result<IpNetwork, String> {
    let text = text.trim();
    if let Ok(ip) = IpAddr::from_str(text) {
        return Ok(IpNetwork::from(ip));
    }
    IpNetwork::from_str(text)
        .map_err(|err| format!("{text:?} is not an address with prefix such as 192.168.1.160/28: {err}"))
}

/// Linux interface names: 1-15 bytes, no `/`, no whitespace, not `.` or `..`.
pub fn parse_ifname(text: &str) -> Result<String, String> {
    let ok = !text.is_empty()
        && text.len() <= 15
        && text != "."
        && text != ".."
        && !text
            .chars()
            .any(|c| c == '/' || c == ':' || c.is_whitespace() || c.is_control());
    if ok {
        Ok(text.to_string())
    } else {
        Err(format!(
            "{text:?} is not a valid interface name (1-15 characters, no '/', ':' or spaces)"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Args, clap::Error> {
        Args::try_parse_from(std::iter::once("roslan-install").chain(args.iter().copied()))
    }

    #[test]
    fn defaults_match_the_agreed_interface() {
        let args = parse(&[]).unwrap();
        assert_eq!(args.host_root, PathBuf::from("/host"));
        assert_eq!(args.cni_bin_dir, None);
        assert_eq!(args.source_dir, PathBuf::from("/opt/roslan/bin"));
        assert_eq!(args.node_name_file, PathBuf::from("/var/lib/roslan/node-name"));
        assert_eq!(args.proc_sys, PathBuf::from("/proc/sys"));
        assert_eq!(args.shim_name, "roslan-shim");
        assert_eq!(args.interval, 30);
        assert!(!args.once && !args.uninstall);
        assert!(args.shim_routes.is_empty());
    }

    #[test]
    fn routes_repeat_or_comma_list() {
        let args = parse(&[
            "--shim-route",
            "192.168.1.160/28,192.168.1.176/28",
            "--shim-route",
            "fd00:1::/64",
        ])
        .unwrap();
        let routes: Vec<String> = args.shim_routes.iter().map(ToString::to_string).collect();
        assert_eq!(routes, ["192.168.1.160/28", "192.168.1.176/28", "fd00:1::/64"]);
    }

    #[test]
    fn bad_values_name_the_fix() {
        let err = parse(&["--shim-route", "192.168.1.161/28"]).unwrap_err().to_string();
        assert!(err.contains("did you mean 192.168.1.160/28"), "{err}");
        let err = parse(&["--shim-address", "192.168.1.159/24"]).unwrap_err().to_string();
        assert!(err.contains("must be a /32"), "{err}");
        assert_eq!(
            parse(&["--shim-address", "192.168.1.159"])
                .unwrap()
                .shim_address
                .unwrap()
                .to_string(),
            "192.168.1.159/32"
        );
        assert!(parse(&["--interval", "0"]).is_err());
        assert!(parse(&["--shim-name", "a-name-that-is-too-long"]).is_err());
        assert!(parse(&["--shim-name", "a/b"]).is_err());
    }
}
