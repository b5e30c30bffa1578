//! The plugin under test, its configuration moved onto the runner's LAN, and the calls a runtime makes.
//!
//! The user's configuration names their own LAN (`master: enp3s0`, a 192.168.1.0/24 pool). The runner
//! replaces the master with its test LAN's and, when the IPAM keeps host-local's files (`host-local`
//! or `roslan-ipam`), points the pool and the data directory at the test LAN, so it can exhaust the
//! pool and look at the reservations. Other IPAM types are left alone; the checks that need to shape
//! the pool then say they do not apply.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{Value, json};

use crate::lan::{HOST_ADDR, Lan, MASTER, Pod, SUBNET};
use crate::netns::Netns;
use crate::plugin::{Call, Reply};

/// How long any one plugin call may take before it is killed and scored as hung.
pub const CALL_LIMIT: Duration = Duration::from_secs(60);

/// The first address of the runner's pool.
pub const POOL_START: &str = "10.77.1.10";
/// A unicast route the runner adds to the IPAM routes, so CHECK has a route to verify.
pub const CHECK_ROUTE: &str = "10.99.0.0/16";

/// How big a pool the configuration gets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pool {
    /// 10.77.1.10-10.77.1.250: room for every check.
    Wide,
    /// 10.77.1.10 only: the second ADD finds it exhausted.
    Single,
}

/// The plugin and its configuration.
#[derive(Clone, Debug)]
pub struct Subject {
    /// The binary.
    pub plugin: PathBuf,
    /// CNI_PATH for its delegates (IPAM plugins).
    pub cni_path: String,
    /// The configuration as the user wrote it.
    pub base: Value,
}

/// IPAM types whose pool and files the runner understands.
const FILE_IPAM: [&str; 2] = ["host-local", "roslan-ipam"];

impl Subject {
    /// Reads the configuration file; refuses a conflist, which needs a runtime's chaining, not a plugin.
    pub fn load(plugin: &Path, config: &Path, cni_path: Option<String>) -> Result<Subject, String> {
        let text = std::fs::read_to_string(config).map_err(|err| format!("read {}: {err}", config.display()))?;
        let base: Value =
            serde_json::from_str(&text).map_err(|err| format!("{} is not JSON: {err}", config.display()))?;
        if base.get("plugins").is_some() {
            return Err(format!(
                "{} is a configuration list; give the one network configuration of the plugin under test",
                config.display()
            ));
        }
        if !base.is_object() || base.get("type").and_then(Value::as_str).is_none() {
            return Err(format!("{} has no `type`", config.display()));
        }
        let plugin = std::fs::canonicalize(plugin).map_err(|err| format!("{}: {err}", plugin.display()))?;
        let own_dir = plugin.parent().map(|d| d.display().to_string()).unwrap_or_default();
        let cni_path = cni_path.unwrap_or_else(|| format!("{own_dir}:/usr/lib/cni:/opt/cni/bin"));
        Ok(Subject { plugin, cni_path, base })
    }

    /// The network name.
    pub fn name(&self) -> &str {
        self.base["name"].as_str().unwrap_or("conformance")
    }

    /// True if the runner can shape the pool and read the reservations.
    pub fn file_ipam(&self) -> bool {
        self.base["ipam"]["type"]
            .as_str()
            .is_some_and(|t| FILE_IPAM.contains(&t))
    }

    /// Why pool checks do not apply, when they do not.
    pub fn pool_unshapeable(&self) -> Option<String> {
        (!self.file_ipam()).then(|| {
            format!(
                "IPAM type {} keeps its own state; the runner can shape only host-local-format pools",
                self.base["ipam"]["type"]
            )
        })
    }

    /// The configuration on `lan` in `version`.
    pub fn config(&self, lan: &Lan, version: &str, pool: Pool) -> Value {
        let mut conf = self.base.clone();
        conf["cniVersion"] = json!(version);
        if let Some(obj) = conf.as_object_mut() {
            obj.remove("masterSubnet");
            obj.remove("prevResult");
        }
        conf["master"] = json!(MASTER);
        if self.file_ipam() {
            let ipam = &mut conf["ipam"];
            if let Some(obj) = ipam.as_object_mut() {
                for key in [
                    "subnet",
                    "rangeStart",
                    "rangeEnd",
                    "gateway",
                    "nodeRanges",
                    "nodeNameFile",
                ] {
                    obj.remove(key);
                }
            }
            let end = match pool {
                Pool::Wide => "10.77.1.250",
                Pool::Single => POOL_START,
            };
            ipam["dataDir"] = json!(lan.data_dir());
            ipam["ranges"] =
                json!([[{"subnet": SUBNET, "rangeStart": POOL_START, "rangeEnd": end, "gateway": HOST_ADDR}]]);
            // Keep the user's gateway-less routes (multicast), drop routes into their own LAN's
            // gateways, and add one unicast route for CHECK to verify. It names its gateway: a
            // route without one is the user's choice to test, not the runner's.
            let mut routes: Vec<Value> = ipam["routes"]
                .as_array()
                .map(|r| r.iter().filter(|r| r.get("gw").is_none()).cloned().collect())
                .unwrap_or_default();
            routes.push(json!({"dst": CHECK_ROUTE, "gw": HOST_ADDR}));
            ipam["routes"] = json!(routes);
        }
        conf
    }

    /// A call of the plugin as a runtime makes it.
    pub fn call<'a>(&self, command: &'a str, pod_id: &str, netns: &str, ifname: &str, conf: &Value) -> Call<'a> {
        let mut call = Call::new(self.plugin.clone(), command, pod_id, netns, ifname, conf);
        call.cni_path = self.cni_path.clone();
        call
    }

    /// Runs a call in the LAN's node namespace, killing it after [`CALL_LIMIT`].
    pub fn run(&self, lan: &Lan, call: &Call<'_>) -> Reply {
        call.run_in_within(&lan.node, CALL_LIMIT)
    }

    /// ADD `ifname` into `pod`.
    pub fn add(&self, lan: &Lan, pod: &Pod, ifname: &str, conf: &Value) -> Reply {
        self.run(lan, &self.call("ADD", &pod.id, &pod.path(), ifname, conf))
    }

    /// DEL, with the ADD's result as prevResult from 0.4.0 on (as libcni does from its cache).
    pub fn del(&self, lan: &Lan, id: &str, netns: &str, ifname: &str, conf: &Value, result: Option<&Value>) -> Reply {
        let conf = with_prev(conf, result);
        self.run(lan, &self.call("DEL", id, netns, ifname, &conf))
    }

    /// CHECK with the ADD's result as prevResult.
    pub fn check(&self, lan: &Lan, pod: &Pod, ifname: &str, conf: &Value, result: &Value) -> Reply {
        let conf = with_prev(conf, Some(result));
        self.run(lan, &self.call("CHECK", &pod.id, &pod.path(), ifname, &conf))
    }

    /// A command that takes no attachment (VERSION, STATUS, GC): only CNI_COMMAND and CNI_PATH set.
    pub fn call_plain(&self, lan: &Lan, command: &str, conf: &Value) -> Reply {
        let mut call = self.call(command, "", "", "", conf);
        call.unset = vec!["CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME", "CNI_ARGS"];
        self.run(lan, &call)
    }
}

fn with_prev(conf: &Value, result: Option<&Value>) -> Value {
    let mut conf = conf.clone();
    let version = conf["cniVersion"].as_str().unwrap_or("0.1.0").to_string();
    if let Some(result) = result
        && super::shape::at_least(&version, "0.4.0")
    {
        conf["prevResult"] = result.clone();
    }
    conf
}

/// Reservation files (named by address) in the LAN's data directory for `network`.
pub fn reservations(lan: &Lan, network: &str) -> Vec<IpAddr> {
    lan.reservations(network)
        .iter()
        .filter_map(|name| name.parse().ok())
        .collect()
}

/// What a failed call left behind: links in the pod besides `lo` (and `keep`), links in the node
/// besides `lo` and the master, reservations beyond `held`.
pub fn leftovers(lan: &Lan, pod: &Netns, keep: &[&str], held: usize, subject: &Subject) -> Vec<String> {
    let mut found = Vec::new();
    for link in pod.links() {
        if link != "lo" && !keep.contains(&link.as_str()) {
            found.push(format!("link {link} in the pod"));
        }
    }
    for link in lan.node.links() {
        if link != "lo" && link != MASTER {
            found.push(format!("link {link} in the node namespace"));
        }
    }
    if subject.file_ipam() {
        let now = reservations(lan, subject.name());
        if now.len() > held {
            found.push(format!("{} reservation(s) instead of {held}", now.len()));
        }
    }
    found
}
