//! Address management for one attachment, whichever IPAM the configuration names.
//!
//! `host-local` and `roslan-ipam` are served in-process ([`builtin`]): no fork/exec, no CNI_PATH lookup,
//! which is most of why an ADD costs about a millisecond and why DEL cannot fail on a missing binary.
//! Any other type is executed from CNI_PATH ([`delegate`]) with the full configuration, as the spec
//! says, so clusters can use whereabouts, static or dhcp behind the same macvlan and multicast setup.

pub mod builtin;
pub mod delegate;
pub mod standalone;

use std::net::IpAddr;

use roslan_ipam_core::{Owner, PodRef};
use serde_json::Value;

use crate::cni::{CniArgs, CniResult, Dns, IpConfig, Request, Route};
use crate::config::{IpamConf, NetConf};
use crate::error::Error;
use crate::log::{info, warn};

/// What IPAM hands the plugin on ADD.
#[derive(Clone, Debug, Default)]
pub struct Assigned {
    /// Addresses with gateways (no interface index yet).
    pub ips: Vec<IpConfig>,
    /// Routes from the IPAM configuration or result.
    pub routes: Vec<Route>,
    /// DNS from `resolvConf` or the delegate.
    pub dns: Dns,
    /// A delegate produced this (its DEL undoes it).
    pub delegated: bool,
}

/// The pod behind an attachment, when the runtime names it (Multus and the kubelet pass
/// `K8S_POD_NAMESPACE` and `K8S_POD_NAME`): the key of its sticky addresses.
pub fn pod_of(args: &CniArgs, request: &Request) -> Option<PodRef> {
    match (&args.pod_namespace, &args.pod_name) {
        (Some(namespace), Some(name)) if !namespace.is_empty() && !name.is_empty() => Some(PodRef {
            namespace: namespace.clone(),
            name: name.clone(),
            ifname: request.ifname.clone(),
        }),
        _ => None,
    }
}

/// ADD: reserves addresses for `owner` (`pod`: whose sticky addresses to prefer).
pub fn add(
    request: &Request,
    conf: &NetConf,
    owner: &Owner,
    requested: &[IpAddr],
    pod: Option<&PodRef>,
) -> Result<Assigned, Error> {
    match &conf.ipam {
        IpamConf::None => Ok(Assigned::default()),
        IpamConf::Builtin(builtin) => builtin::add(&conf.name, builtin, owner, requested, pod),
        IpamConf::Delegate { plugin } => {
            let output = delegate::exec(request, plugin, "ADD")?.ok_or_else(|| Error::Decode {
                what: "IPAM plugin output",
                detail: format!("{plugin:?} printed no result for ADD"),
            })?;
            let result = CniResult::from_json(&output, "IPAM plugin result")?;
            Ok(Assigned {
                ips: result
                    .ips
                    .into_iter()
                    .map(|ip| IpConfig { interface: None, ..ip })
                    .collect(),
                routes: result.routes,
                dns: result.dns,
                delegated: true,
            })
        }
    }
}

/// Undoes an ADD's reservation after a later step failed: exactly the addresses given, or the
/// delegate's DEL. Failures are logged; the original error is what the runtime must see.
pub fn rollback(request: &Request, conf: &NetConf, owner: &Owner, assigned: &Assigned) {
    let outcome = match &conf.ipam {
        IpamConf::Builtin(builtin) => {
            let ips: Vec<IpAddr> = assigned.ips.iter().map(|ip| ip.address.ip()).collect();
            builtin::release_exact(&conf.name, builtin, owner, &ips)
        }
        IpamConf::Delegate { plugin } if assigned.delegated => delegate::exec(request, plugin, "DEL").map(|_| ()),
        _ => Ok(()),
    };
    if let Err(err) = outcome {
        warn!("rollback: could not release the addresses: {err}");
    }
}

/// DEL: releases what `owner` holds. A delegate that is not installed any more, or whose `type` is not
/// a plugin name at all (so ADD never ran it), cannot hold anything roslan could release: that is
/// logged, never fatal.
pub fn release(request: &Request, conf: &NetConf, owner: &Owner) -> Result<(), Error> {
    match &conf.ipam {
        IpamConf::None => Ok(()),
        IpamConf::Builtin(builtin) => {
            let released = builtin::release(&conf.name, builtin, owner)?;
            if !released.is_empty() {
                info!("released {released:?}");
            }
            Ok(())
        }
        IpamConf::Delegate { plugin } => {
            if !delegate_installed(request, plugin) {
                return Ok(());
            }
            delegate::exec(request, plugin, "DEL").map(|_| ())
        }
    }
}

/// For DEL and GC: whether the delegate can be run at all, saying why not when it cannot.
fn delegate_installed(request: &Request, plugin: &str) -> bool {
    match delegate::find(request, plugin) {
        Ok(Some(_)) => true,
        Ok(None) => {
            warn!("IPAM plugin {plugin:?} is not in CNI_PATH; nothing to release through it");
            false
        }
        Err(err) => {
            warn!("{err}; no IPAM plugin can have run, so there is nothing to release");
            false
        }
    }
}

/// CHECK: problems with the reservation of `expected` for `owner`, one line each.
pub fn check(request: &Request, conf: &NetConf, owner: &Owner, expected: &[IpAddr]) -> Result<Vec<String>, Error> {
    match &conf.ipam {
        IpamConf::None => Ok(Vec::new()),
        IpamConf::Builtin(builtin) => {
            let held = builtin::held(&conf.name, builtin, owner)?;
            let mut wrong = Vec::new();
            if held.is_empty() && !expected.is_empty() {
                wrong.push(format!(
                    "no address reservation for container {} interface {} in {}",
                    owner.container_id,
                    owner.ifname,
                    builtin.data_dir.join(&conf.name).display()
                ));
            }
            for ip in expected.iter().filter(|ip| !held.is_empty() && !held.contains(ip)) {
                wrong.push(format!("address {ip} is not reserved for this attachment"));
            }
            Ok(wrong)
        }
        IpamConf::Delegate { plugin } => match delegate::exec(request, plugin, "CHECK") {
            Ok(_) => Ok(Vec::new()),
            Err(err) => Ok(vec![err.to_string()]),
        },
    }
}

/// STATUS: `Ok` when addresses can be given out.
pub fn status(request: &Request, conf: &NetConf) -> Result<(), Error> {
    match &conf.ipam {
        IpamConf::None => Ok(()),
        IpamConf::Builtin(builtin) => builtin::status(&conf.name, builtin),
        IpamConf::Delegate { plugin } => delegate::exec(request, plugin, "STATUS").map(|_| ()),
    }
}

/// GC (CNI 1.1.0): releases the reservations of every attachment the runtime does not list in the
/// configuration's `cni.dev/valid-attachments`. The plugin's GC and `roslan-ipam`'s are this.
pub fn gc(request: &Request, conf: &NetConf, raw: &Value) -> Result<(), Error> {
    conf.require_1_1("GC")?;
    let valid = valid_attachments(raw)?;
    release_unlisted(request, conf, &valid)
}

/// Releases reservations of attachments not in `valid`.
fn release_unlisted(request: &Request, conf: &NetConf, valid: &[Owner]) -> Result<(), Error> {
    match &conf.ipam {
        IpamConf::None => Ok(()),
        IpamConf::Builtin(builtin) => {
            let released = builtin::gc(&conf.name, builtin, valid)?;
            if !released.is_empty() {
                info!("GC released {} stale reservations: {released:?}", released.len());
            }
            Ok(())
        }
        IpamConf::Delegate { plugin } => {
            if !delegate_installed(request, plugin) {
                return Ok(());
            }
            delegate::exec(request, plugin, "GC").map(|_| ())
        }
    }
}

/// The attachments GC must keep: `cni.dev/valid-attachments`, or the older `cni.dev/attachments`.
/// Neither present is an error rather than "keep nothing": a GC that frees every address because a
/// key was misspelt would hand out addresses that running pods hold.
fn valid_attachments(value: &Value) -> Result<Vec<Owner>, Error> {
    let list = ["cni.dev/valid-attachments", "cni.dev/attachments"]
        .iter()
        .find_map(|key| value.get(*key))
        .ok_or_else(|| {
            Error::config(
                "cni.dev/valid-attachments",
                "missing; GC needs the list of attachments to keep",
            )
        })?;
    let items = list.as_array().ok_or_else(|| {
        Error::config(
            "cni.dev/valid-attachments",
            "expected a list of {\"containerID\", \"ifname\"} objects",
        )
    })?;
    items
        .iter()
        .enumerate()
        .map(|(i, item)| {
            let field = |key: &str| item.get(key).and_then(Value::as_str).map(str::to_string);
            match (field("containerID"), field("ifname")) {
                (Some(id), Some(ifname)) => Ok(Owner::new(id, ifname)),
                _ => Err(Error::config(
                    format!("cni.dev/valid-attachments[{i}]"),
                    "needs \"containerID\" and \"ifname\" strings",
                )),
            }
        })
        .collect()
}
