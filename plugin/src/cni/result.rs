//! The CNI result: one internal model, printed in exactly the version the runtime asked for.
//!
//! Runtimes built on old libcni (Multus 3.9 on MicroK8s) parse the result with the *config's* version
//! and fail on anything newer, so the shape must follow the request: `ip4`/`ip6` for 0.1.0 and 0.2.0,
//! `ips[].version` for 0.3.x/0.4.0, no `version` from 1.0.0, and route `scope` / interface `mtu`
//! only in 1.1.0.

use std::net::IpAddr;

use ipnetwork::IpNetwork;
use serde_json::{Map, Value, json};

use crate::cni::Version;
use crate::error::Error;

/// An interface in the result.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Interface {
    /// Name inside its namespace.
    pub name: String,
    /// MAC, lowercase colon form.
    pub mac: Option<String>,
    /// MTU (1.1.0 field).
    pub mtu: Option<u32>,
    /// CNI_NETNS for pod interfaces, absent for host interfaces.
    pub sandbox: Option<String>,
}

/// An address in the result.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IpConfig {
    /// Address with prefix length.
    pub address: IpNetwork,
    /// Gateway, if the range has one.
    pub gateway: Option<IpAddr>,
    /// Index into `interfaces`.
    pub interface: Option<usize>,
}

/// A route in the result.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Route {
    /// Destination.
    pub dst: IpNetwork,
    /// Gateway; `None` for on-link routes such as the multicast route.
    pub gw: Option<IpAddr>,
    /// Route MTU (1.1.0).
    pub mtu: Option<u32>,
    /// Advertised MSS (1.1.0).
    pub advmss: Option<u32>,
    /// Metric (1.1.0).
    pub priority: Option<u32>,
    /// Table (1.1.0).
    pub table: Option<u32>,
    /// Scope (1.1.0): 0 universe, 253 link, 254 host.
    pub scope: Option<u8>,
}

impl Route {
    /// A route with only a destination and an optional gateway.
    pub fn new(dst: IpNetwork, gw: Option<IpAddr>) -> Route {
        Route {
            dst,
            gw,
            mtu: None,
            advmss: None,
            priority: None,
            table: None,
            scope: None,
        }
    }
}

/// The `dns` object.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Dns {
    /// Name servers.
    pub nameservers: Vec<String>,
    /// Local domain.
    pub domain: Option<String>,
    /// Search list.
    pub search: Vec<String>,
    /// resolver options.
    pub options: Vec<String>,
}

impl Dns {
    /// True when no field is set.
    pub fn is_empty(&self) -> bool {
        self.nameservers.is_empty() && self.domain.is_none() && self.search.is_empty() && self.options.is_empty()
    }

    /// Adds what `other` has and `self` lacks.
    pub fn merge(&mut self, other: &Dns) {
        for (mine, theirs) in [
            (&mut self.nameservers, &other.nameservers),
            (&mut self.search, &other.search),
            (&mut self.options, &other.options),
        ] {
            for item in theirs {
                if !mine.contains(item) {
                    mine.push(item.clone());
                }
            }
        }
        if self.domain.is_none() {
            self.domain.clone_from(&other.domain);
        }
    }

    fn to_json(&self) -> Value {
        let mut map = Map::new();
        if !self.nameservers.is_empty() {
            map.insert("nameservers".into(), json!(self.nameservers));
        }
        if let Some(domain) = &self.domain {
            map.insert("domain".into(), json!(domain));
        }
        if !self.search.is_empty() {
            map.insert("search".into(), json!(self.search));
        }
        if !self.options.is_empty() {
            map.insert("options".into(), json!(self.options));
        }
        Value::Object(map)
    }

    /// Reads a `dns` object; unknown or mistyped fields are ignored, as runtimes do.
    pub fn from_json(value: &Value) -> Dns {
        let strings = |key: &str| -> Vec<String> {
            value
                .get(key)
                .and_then(Value::as_array)
                .map(|items| items.iter().filter_map(|i| i.as_str().map(str::to_string)).collect())
                .unwrap_or_default()
        };
        Dns {
            nameservers: strings("nameservers"),
            domain: value
                .get("domain")
                .and_then(Value::as_str)
                .filter(|d| !d.is_empty())
                .map(str::to_string),
            search: strings("search"),
            options: strings("options"),
        }
    }
}

/// A whole result.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CniResult {
    /// Interfaces created or known.
    pub interfaces: Vec<Interface>,
    /// Addresses.
    pub ips: Vec<IpConfig>,
    /// Routes.
    pub routes: Vec<Route>,
    /// DNS settings.
    pub dns: Dns,
}

fn route_json(route: &Route, version: Version) -> Value {
    let mut map = Map::new();
    map.insert("dst".into(), json!(route.dst.to_string()));
    if let Some(gw) = route.gw {
        map.insert("gw".into(), json!(gw.to_string()));
    }
    if version.has_status_and_gc() {
        for (key, value) in [
            ("mtu", route.mtu),
            ("advmss", route.advmss),
            ("priority", route.priority),
            ("table", route.table),
            ("scope", route.scope.map(u32::from)),
        ] {
            if let Some(value) = value {
                map.insert(key.into(), json!(value));
            }
        }
    }
    Value::Object(map)
}

impl CniResult {
    /// The result as JSON in `version`'s shape.
    pub fn to_json(&self, version: Version) -> Value {
        if version.legacy_result() {
            return self.to_legacy_json(version);
        }
        let mut root = Map::new();
        root.insert("cniVersion".into(), json!(version.as_str()));
        if !self.interfaces.is_empty() {
            let interfaces: Vec<Value> = self
                .interfaces
                .iter()
                .map(|iface| {
                    let mut map = Map::new();
                    map.insert("name".into(), json!(iface.name));
                    if let Some(mac) = &iface.mac {
                        map.insert("mac".into(), json!(mac));
                    }
                    if let (true, Some(mtu)) = (version.has_status_and_gc(), iface.mtu) {
                        map.insert("mtu".into(), json!(mtu));
                    }
                    if let Some(sandbox) = &iface.sandbox {
                        map.insert("sandbox".into(), json!(sandbox));
                    }
                    Value::Object(map)
                })
                .collect();
            root.insert("interfaces".into(), Value::Array(interfaces));
        }
        if !self.ips.is_empty() {
            let ips: Vec<Value> = self
                .ips
                .iter()
                .map(|ip| {
                    let mut map = Map::new();
                    if version.ips_carry_version() {
                        map.insert("version".into(), json!(if ip.address.is_ipv4() { "4" } else { "6" }));
                    }
                    if let Some(index) = ip.interface {
                        map.insert("interface".into(), json!(index));
                    }
                    map.insert("address".into(), json!(ip.address.to_string()));
                    if let Some(gw) = ip.gateway {
                        map.insert("gateway".into(), json!(gw.to_string()));
                    }
                    Value::Object(map)
                })
                .collect();
            root.insert("ips".into(), Value::Array(ips));
        }
        if !self.routes.is_empty() {
            root.insert(
                "routes".into(),
                self.routes.iter().map(|r| route_json(r, version)).collect(),
            );
        }
        // From 1.0.0 the Go library leaves out an empty `dns` (types/100's MarshalJSON); 0.3.x and
        // 0.4.0 results always carry one. Printing what the runtime's own library would keeps results
        // byte-comparable with the reference plugins'.
        if version.ips_carry_version() || !self.dns.is_empty() {
            root.insert("dns".into(), self.dns.to_json());
        }
        Value::Object(root)
    }

    /// 0.1.0/0.2.0: the first IPv4 and first IPv6 address, routes grouped by family (Go's converter).
    fn to_legacy_json(&self, version: Version) -> Value {
        let mut root = Map::new();
        root.insert("cniVersion".into(), json!(version.as_str()));
        for (key, v4) in [("ip4", true), ("ip6", false)] {
            let Some(ip) = self.ips.iter().find(|ip| ip.address.is_ipv4() == v4) else {
                continue;
            };
            let mut map = Map::new();
            map.insert("ip".into(), json!(ip.address.to_string()));
            if let Some(gw) = ip.gateway {
                map.insert("gateway".into(), json!(gw.to_string()));
            }
            let routes: Vec<Value> = self
                .routes
                .iter()
                .filter(|r| r.dst.is_ipv4() == v4)
                .map(|r| route_json(r, Version::V0_2_0))
                .collect();
            if !routes.is_empty() {
                map.insert("routes".into(), Value::Array(routes));
            }
            root.insert(key.into(), Value::Object(map));
        }
        root.insert("dns".into(), self.dns.to_json());
        Value::Object(root)
    }

    /// Reads a result of any version (a prevResult, or a delegate IPAM plugin's output).
    pub fn from_json(value: &Value, what: &'static str) -> Result<CniResult, Error> {
        let bad = |detail: String| Error::Decode { what, detail };
        let Some(root) = value.as_object() else {
            return Err(bad("not a JSON object".into()));
        };
        let mut result = CniResult {
            dns: root.get("dns").map(Dns::from_json).unwrap_or_default(),
            ..Default::default()
        };
        let parse_net = |text: Option<&Value>, key: &str| -> Result<IpNetwork, Error> {
            let text = text
                .and_then(Value::as_str)
                .ok_or_else(|| bad(format!("\"{key}\" missing or not a string")))?;
            text.parse::<IpNetwork>()
                .map_err(|_| bad(format!("\"{key}\": {text:?} is not an address with prefix")))
        };
        let parse_ip = |text: Option<&Value>, key: &str| -> Result<Option<IpAddr>, Error> {
            match text.and_then(Value::as_str).filter(|t| !t.is_empty()) {
                None => Ok(None),
                Some(text) => text
                    .parse()
                    .map(Some)
                    .map_err(|_| bad(format!("\"{key}\": {text:?} is not an address"))),
            }
        };
        let parse_route = |value: &Value| -> Result<Route, Error> {
            let mut route = Route::new(parse_net(value.get("dst"), "dst")?, parse_ip(value.get("gw"), "gw")?);
            let number = |key: &str| {
                value
                    .get(key)
                    .and_then(Value::as_u64)
                    .and_then(|n| u32::try_from(n).ok())
            };
            route.mtu = number("mtu");
            route.advmss = number("advmss");
            route.priority = number("priority");
            route.table = number("table");
            route.scope = number("scope").and_then(|s| u8::try_from(s).ok());
            Ok(route)
        };
        if root.contains_key("ip4") || root.contains_key("ip6") {
            for key in ["ip4", "ip6"] {
                let Some(ipc) = root.get(key).filter(|v| !v.is_null()) else {
                    continue;
                };
                result.ips.push(IpConfig {
                    address: parse_net(ipc.get("ip"), "ip")?,
                    gateway: parse_ip(ipc.get("gateway"), "gateway")?,
                    interface: None,
                });
                for route in ipc.get("routes").and_then(Value::as_array).into_iter().flatten() {
                    result.routes.push(parse_route(route)?);
                }
            }
            return Ok(result);
        }
        for iface in root.get("interfaces").and_then(Value::as_array).into_iter().flatten() {
            let text = |key: &str| {
                iface
                    .get(key)
                    .and_then(Value::as_str)
                    .filter(|s| !s.is_empty())
                    .map(str::to_string)
            };
            result.interfaces.push(Interface {
                name: text("name").ok_or_else(|| bad("interface without \"name\"".into()))?,
                mac: text("mac"),
                mtu: iface
                    .get("mtu")
                    .and_then(Value::as_u64)
                    .and_then(|n| u32::try_from(n).ok()),
                sandbox: text("sandbox"),
            });
        }
        for ip in root.get("ips").and_then(Value::as_array).into_iter().flatten() {
            result.ips.push(IpConfig {
                address: parse_net(ip.get("address"), "address")?,
                gateway: parse_ip(ip.get("gateway"), "gateway")?,
                interface: ip.get("interface").and_then(Value::as_u64).map(|i| i as usize),
            });
        }
        for route in root.get("routes").and_then(Value::as_array).into_iter().flatten() {
            result.routes.push(parse_route(route)?);
        }
        Ok(result)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> CniResult {
        CniResult {
            interfaces: vec![Interface {
                name: "net1".into(),
                mac: Some("02:00:00:00:00:01".into()),
                mtu: Some(1500),
                sandbox: Some("/run/netns/p".into()),
            }],
            ips: vec![
                IpConfig {
                    address: "10.0.0.2/24".parse().unwrap(),
                    gateway: Some("10.0.0.1".parse().unwrap()),
                    interface: Some(0),
                },
                IpConfig {
                    address: "fd00::2/64".parse().unwrap(),
                    gateway: None,
                    interface: Some(0),
                },
            ],
            routes: vec![Route {
                scope: Some(253),
                ..Route::new("224.0.0.0/4".parse().unwrap(), None)
            }],
            dns: Dns::default(),
        }
    }

    #[test]
    fn shapes_per_version() {
        let r = sample();
        let v031 = r.to_json(Version::V0_3_1);
        assert_eq!(v031["ips"][0]["version"], "4");
        assert!(v031["routes"][0].get("scope").is_none());
        assert!(v031["interfaces"][0].get("mtu").is_none());
        let v1 = r.to_json(Version::V1_0_0);
        assert!(v1["ips"][0].get("version").is_none());
        assert!(v1.get("dns").is_none(), "an empty dns is left out from 1.0.0");
        assert_eq!(v031["dns"], json!({}));
        let v020 = r.to_json(Version::V0_2_0);
        assert_eq!(v020["ip4"]["ip"], "10.0.0.2/24");
        assert_eq!(v020["ip4"]["routes"][0]["dst"], "224.0.0.0/4");
        assert_eq!(v020["ip6"]["ip"], "fd00::2/64");
        assert!(v020.get("interfaces").is_none());
        assert_eq!(v020["dns"], json!({}));
    }

    #[test]
    fn round_trips_any_version() {
        let r = sample();
        for v in [Version::V0_2_0, Version::V0_3_1, Version::V1_0_0] {
            let back = CniResult::from_json(&r.to_json(v), "test").unwrap();
            assert_eq!(back.ips.len(), 2, "{v}");
            assert_eq!(back.routes[0].dst, r.routes[0].dst);
        }
    }
}
