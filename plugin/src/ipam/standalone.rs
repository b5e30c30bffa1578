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
use crate::error::{ConfigProblem, Error, Scope};
use roslan_ipam_core::Owner;

/// The configuration as an IPAM plugin sees it: only the problems with keys an IPAM reads (their
/// scope, set where each was found, is [`Scope::Ipam`] or wider) and the unknown keys of `ipam`;
/// the rest is the main plugin's.
pub fn parse(value: &Value) -> Result<(NetConf, Vec<ConfigProblem>), Error> {
    let (mut conf, problems) = NetConf::parse(value)?;
    conf.warnings.retain(|w| w.starts_with("ignoring unknown key \"ipam."));
    Ok((conf, problems.into_iter().filter(|p| p.scope >= Scope::Ipam).collect()))
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
            conf.require_1_1("STATUS")?;
            super::status(request, conf)?;
            None
        }
        Command::Gc => {
            super::gc(request, conf, value)?;
            None
        }
        Command::Version => unreachable!("answered before the configuration is read"),
    };
    Ok(output)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::config::refuse;
    use crate::error::Scope;

    /// One problem of each scope, and which commands each stops: said where the problem was found.
    #[test]
    fn problems_carry_the_scope_of_the_key_that_raised_them() {
        let conf = json!({
            "cniVersion": "1.1.0",
            "name": "bad/name",
            "type": "roslan",
            "mode": "sideways",
            "args": {"cni": {"ips": ["not-an-address"]}},
            "prevResult": "not a result",
            "ipam": {"type": "host-local", "dataDir": "relative/dir", "ranges": [[{"subnet": "10.0.0.0/33"}]]}
        });
        let (_, all) = NetConf::parse(&conf).unwrap();
        let scope_of = |key: &str| {
            all.iter()
                .find(|p| p.key.starts_with(key))
                .map(|p| p.scope)
                .unwrap_or_else(|| panic!("no problem with {key}: {all:?}"))
        };
        assert_eq!(scope_of("mode"), Scope::Plugin);
        assert_eq!(scope_of("args.cni.ips"), Scope::Ipam);
        assert_eq!(scope_of("prevResult"), Scope::Ipam);
        assert_eq!(scope_of("ipam.ranges"), Scope::Ipam);
        assert_eq!(scope_of("name"), Scope::Store);
        assert_eq!(scope_of("ipam.dataDir"), Scope::Store);

        // DEL is stopped only by what keeps it from the reservations.
        let Err(Error::Config(fatal)) = refuse(Command::Del, all.clone()) else {
            panic!("DEL must refuse a bad name")
        };
        let keys: Vec<&str> = fatal.iter().map(|p| p.key.as_str()).collect();
        assert_eq!(keys, ["name", "ipam.dataDir"]);
        assert!(matches!(refuse(Command::Add, all.clone()), Err(Error::Config(p)) if p.len() == all.len()));

        // roslan-ipam sees every problem but the main plugin's.
        let (_, mine) = parse(&conf).unwrap();
        assert_eq!(mine.len(), all.len() - 1);
        assert!(mine.iter().all(|p| p.key != "mode"));
    }
}
