//! The `roslan-ipam` binary: roslan's IPAM as a CNI IPAM plugin, for main plugins other than roslan
//! (the reference macvlan, ipvlan on a Wi-Fi master, bridge) via `"ipam": {"type": "roslan-ipam"}`.
//!
//! It answers like host-local (an IPAM result with `ips`, `routes` and `dns`, no interfaces) with the
//! same files, plus what roslan adds: comma lists in `IP=`, an index instead of scans, `nodeRanges`,
//! STATUS and GC. The main plugin owns every top-level key, so only `ipam`, the name and the request
//! fields are checked here. Probing needs the interface up, which a main plugin only does after IPAM
//! returns, so `probe` is refused; `dad` is the main plugin's business and is ignored.

use serde_json::Value;

use super::builtin;
use crate::cni::{CniArgs, CniResult, Command, Request};
use crate::config::{IpamConf, NetConf};
use crate::error::{ConfigProblem, Error};
use roslan_ipam_core::Owner;

/// Keys of the network configuration an IPAM plugin reads; problems elsewhere are the main plugin's.
fn concerns_ipam(problem: &ConfigProblem) -> bool {
    ["name", "cniVersion", "cniVersions", "prevResult"].contains(&problem.key.as_str())
        || ["ipam", "runtimeConfig.ips", "runtimeConfig.ipRanges", "args.cni.ips"]
            .iter()
            .any(|k| problem.key.starts_with(k))
}

/// The configuration as an IPAM plugin sees it: only the problems and unknown keys that concern it.
pub fn parse(value: &Value) -> Result<(NetConf, Vec<ConfigProblem>), Error> {
    let (mut conf, problems) = NetConf::parse(value)?;
    conf.warnings.retain(|w| w.starts_with("ignoring unknown key \"ipam."));
    Ok((conf, problems.into_iter().filter(concerns_ipam).collect()))
}

/// Runs one IPAM command on a configuration the caller has parsed and admitted
/// ([`crate::config::refuse`]); returns the JSON to print, if any.
pub fn dispatch(request: &Request, conf: &NetConf, value: &Value) -> Result<Option<Value>, Error> {
    let builtin = match &conf.ipam {
        IpamConf::Builtin(builtin) => builtin,
        IpamConf::None | IpamConf::Delegate { .. } => {
            return Err(Error::config(
                "ipam.type",
                "roslan-ipam serves \"type\": \"roslan-ipam\" (or \"host-local\"); fix ipam.type",
            ));
        }
    };
    let owner = Owner::new(request.container_id.clone(), request.ifname.clone());
    let output = match request.command {
        Command::Add => {
            if builtin.probe_timeout_ms.is_some() {
                return Err(Error::UnsupportedField {
                    key: "ipam.probe".into(),
                    why: "the interface is still down while an IPAM plugin runs; use \"type\": \"roslan\" for probing"
                        .into(),
                });
            }
            let args = CniArgs::parse(&request.args)?;
            let pod = super::pod_of(&args, request);
            let mut requested = args.ips;
            requested.extend(conf.requested_ips.iter().copied());
            let assigned = super::add(request, conf, &owner, &requested, pod.as_ref())?;
            // host-local returns the configured routes as they are; the main plugin fills gateways.
            let result = CniResult {
                interfaces: Vec::new(),
                ips: assigned.ips,
                routes: assigned.routes,
                dns: assigned.dns,
            };
            Some(result.to_json(conf.version))
        }
        Command::Del => {
            super::release(request, conf, &owner)?;
            None
        }
        Command::Check => {
            if !conf.version.has_check() {
                return Err(Error::IncompatibleVersion {
                    detail: format!("config version {} does not allow CHECK", conf.version),
                });
            }
            if builtin::held(&conf.name, builtin, &owner)?.is_empty() {
                return Err(Error::CheckFailed(vec![format!(
                    "no address reservation for container {} interface {}",
                    request.container_id, request.ifname
                )]));
            }
            None
        }
        Command::Status => {
            crate::commands::require_1_1(conf, "STATUS")?;
            super::status(request, conf)?;
            None
        }
        Command::Gc => {
            crate::commands::gc::gc(request, conf, value)?;
            None
        }
        Command::Version => unreachable!("answered before the configuration is read"),
    };
    Ok(output)
}
