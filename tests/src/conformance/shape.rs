//! What an ADD result must look like in each spec version, and what it must agree with.
//!
//! 0.1.0 and 0.2.0 carry `ip4`/`ip6` objects; 0.3.0 introduced `interfaces` (with `sandbox`) and an
//! `ips` list whose entries carry `version`; 1.0.0 dropped `version`. A runtime that asked for one
//! version parses exactly that shape (thin Multus 3.9 cannot read anything past 0.4.0), so a result in
//! another shape is as bad as no result.

use std::net::IpAddr;

use serde_json::Value;

/// Spec versions the runner knows, oldest first.
pub const KNOWN_VERSIONS: [&str; 7] = ["0.1.0", "0.2.0", "0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"];

/// A version as a comparable triple (`0.4.0` -> (0, 4, 0)); unknown forms sort first.
pub fn triple(version: &str) -> (u32, u32, u32) {
    let mut parts = version.split('.').map(|p| p.parse::<u32>().unwrap_or(0));
    (
        parts.next().unwrap_or(0),
        parts.next().unwrap_or(0),
        parts.next().unwrap_or(0),
    )
}

/// True if `version` is at least `floor`.
pub fn at_least(version: &str, floor: &str) -> bool {
    triple(version) >= triple(floor)
}

/// An address from a result: `10.77.1.10/16`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cidr {
    /// The address.
    pub ip: IpAddr,
    /// The prefix length.
    pub prefix: u8,
}

impl Cidr {
    fn parse(text: &str) -> Option<Cidr> {
        let (ip, prefix) = text.split_once('/')?;
        let ip: IpAddr = ip.parse().ok()?;
        let prefix: u8 = prefix.parse().ok()?;
        let max = if ip.is_ipv4() { 32 } else { 128 };
        (prefix <= max).then_some(Cidr { ip, prefix })
    }

    /// `a.b.c.d/p`, as `ip addr` prints it.
    pub fn text(&self) -> String {
        format!("{}/{}", self.ip, self.prefix)
    }
}

/// What a well-formed result says about the container interface.
#[derive(Clone, Debug, Default)]
pub struct Claims {
    /// Addresses for the interface.
    pub addresses: Vec<Cidr>,
    /// Its MAC, when the result lists the interface (0.3.0 on).
    pub mac: Option<String>,
    /// Its `sandbox`, when listed.
    pub sandbox: Option<String>,
    /// Routes the result reports: (destination, gateway).
    pub routes: Vec<(String, Option<String>)>,
}

fn field<'a>(value: &'a Value, key: &str, at: &str) -> Result<&'a Value, String> {
    value.get(key).ok_or_else(|| format!("{at} has no `{key}`"))
}

fn string<'a>(value: &'a Value, key: &str, at: &str) -> Result<&'a str, String> {
    field(value, key, at)?
        .as_str()
        .ok_or_else(|| format!("{at}.{key} is not a string"))
}

fn cidr(value: &Value, key: &str, at: &str) -> Result<Cidr, String> {
    let text = string(value, key, at)?;
    Cidr::parse(text).ok_or_else(|| format!("{at}.{key} {text:?} is not an address with a prefix length"))
}

fn routes(value: &Value, at: &str) -> Result<Vec<(String, Option<String>)>, String> {
    let Some(routes) = value.get("routes") else {
        return Ok(Vec::new());
    };
    let routes = routes.as_array().ok_or_else(|| format!("{at}.routes is not a list"))?;
    routes
        .iter()
        .enumerate()
        .map(|(i, route)| {
            let at = format!("{at}.routes[{i}]");
            let dst = cidr(route, "dst", &at)?;
            let gw = match route.get("gw") {
                None | Some(Value::Null) => None,
                Some(gw) => {
                    let text = gw.as_str().ok_or_else(|| format!("{at}.gw is not a string"))?;
                    text.parse::<IpAddr>()
                        .map_err(|_| format!("{at}.gw {text:?} is not an address"))?;
                    Some(text.to_string())
                }
            };
            Ok((dst.text(), gw))
        })
        .collect()
}

/// Checks that `result` has exactly the shape of `version` and returns what it claims about `ifname`.
pub fn verify(version: &str, result: &Value, ifname: &str) -> Result<Claims, String> {
    if !result.is_object() {
        return Err("the result is not a JSON object".into());
    }
    match result.get("cniVersion").and_then(Value::as_str) {
        Some(v) if v == version => {}
        Some(v) => return Err(format!("asked for {version}, got a result saying cniVersion {v}")),
        // The 0.1.0 result format had no cniVersion.
        None if version == "0.1.0" => {}
        None => return Err("the result has no cniVersion".into()),
    }
    if !at_least(version, "0.3.0") {
        verify_legacy(result)
    } else {
        verify_current(version, result, ifname)
    }
}

fn verify_legacy(result: &Value) -> Result<Claims, String> {
    for key in ["ips", "interfaces"] {
        if result.get(key).is_some() {
            return Err(format!(
                "`{key}` does not exist before 0.3.0 (a 0.2.0 reader expects ip4/ip6)"
            ));
        }
    }
    let mut claims = Claims::default();
    for key in ["ip4", "ip6"] {
        if let Some(ip) = result.get(key) {
            claims.addresses.push(cidr(ip, "ip", key)?);
            claims.routes.extend(routes(ip, key)?);
        }
    }
    if claims.addresses.is_empty() {
        return Err("neither ip4 nor ip6 in the result".into());
    }
    Ok(claims)
}

fn verify_current(version: &str, result: &Value, ifname: &str) -> Result<Claims, String> {
    for key in ["ip4", "ip6"] {
        if result.get(key).is_some() {
            return Err(format!("`{key}` is the 0.2.0 format, not {version}"));
        }
    }
    let interfaces = match result.get("interfaces") {
        None => Vec::new(),
        Some(list) => list.as_array().cloned().ok_or("`interfaces` is not a list")?,
    };
    for (i, iface) in interfaces.iter().enumerate() {
        string(iface, "name", &format!("interfaces[{i}]"))?;
    }
    let ours = interfaces.iter().position(|i| i["name"] == ifname);
    let mut claims = Claims::default();
    if let Some(index) = ours {
        let iface = &interfaces[index];
        claims.mac = iface.get("mac").and_then(Value::as_str).map(str::to_lowercase);
        claims.sandbox = iface.get("sandbox").and_then(Value::as_str).map(str::to_string);
    }
    let ips = field(result, "ips", "the result")?
        .as_array()
        .ok_or("`ips` is not a list")?;
    for (i, ip) in ips.iter().enumerate() {
        let at = format!("ips[{i}]");
        let address = cidr(ip, "address", &at)?;
        match (at_least(version, "1.0.0"), ip.get("version").and_then(Value::as_str)) {
            (true, Some(_)) => return Err(format!("{at} carries `version`, which 1.0.0 removed")),
            (false, None) => return Err(format!("{at} has no `version`, which {version} requires")),
            (false, Some(v)) if v != if address.ip.is_ipv4() { "4" } else { "6" } => {
                return Err(format!("{at}.version is {v:?} for {}", address.text()));
            }
            _ => {}
        }
        if let Some(gw) = ip.get("gateway") {
            gw.as_str()
                .and_then(|g| g.parse::<IpAddr>().ok())
                .ok_or_else(|| format!("{at}.gateway is not an address"))?;
        }
        let applies_to_ours = match ip.get("interface") {
            None => ours.is_some() || interfaces.is_empty(),
            Some(index) => {
                let index = index
                    .as_u64()
                    .ok_or_else(|| format!("{at}.interface is not an index"))?;
                if index as usize >= interfaces.len() {
                    return Err(format!(
                        "{at}.interface is {index}, but `interfaces` has {} entries",
                        interfaces.len()
                    ));
                }
                Some(index as usize) == ours
            }
        };
        if applies_to_ours {
            claims.addresses.push(address);
        }
    }
    claims.routes = routes(result, "the result")?;
    if let Some(dns) = result.get("dns")
        && !dns.is_object()
    {
        return Err("`dns` is not an object".into());
    }
    Ok(claims)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn each_version_has_its_own_shape() {
        let v1 = json!({"cniVersion": "1.0.0", "interfaces": [{"name": "net1", "mac": "AA:bb:cc:dd:ee:ff", "sandbox": "/run/netns/x"}],
            "ips": [{"address": "10.0.0.2/24", "interface": 0}], "routes": [{"dst": "224.0.0.0/4"}]});
        let claims = verify("1.0.0", &v1, "net1").unwrap();
        assert_eq!(claims.addresses[0].text(), "10.0.0.2/24");
        assert_eq!(claims.mac.as_deref(), Some("aa:bb:cc:dd:ee:ff"));
        assert_eq!(claims.routes, vec![("224.0.0.0/4".to_string(), None)]);
        assert!(verify("0.4.0", &v1, "net1").unwrap_err().contains("asked for 0.4.0"));

        let mut v04 = v1.clone();
        v04["cniVersion"] = json!("0.4.0");
        assert!(verify("0.4.0", &v04, "net1").unwrap_err().contains("no `version`"));
        v04["ips"][0]["version"] = json!("6");
        assert!(verify("0.4.0", &v04, "net1").unwrap_err().contains("version is \"6\""));
        v04["ips"][0]["version"] = json!("4");
        verify("0.4.0", &v04, "net1").unwrap();
        let mut v1_with_version = v04.clone();
        v1_with_version["cniVersion"] = json!("1.0.0");
        assert!(
            verify("1.0.0", &v1_with_version, "net1")
                .unwrap_err()
                .contains("removed")
        );

        let v02 = json!({"cniVersion": "0.2.0", "ip4": {"ip": "10.0.0.2/24", "gateway": "10.0.0.1"}});
        assert_eq!(verify("0.2.0", &v02, "net1").unwrap().addresses.len(), 1);
        let v01 = json!({"ip4": {"ip": "10.0.0.2/24"}});
        verify("0.1.0", &v01, "net1").unwrap();
        assert!(verify("0.2.0", &v01, "net1").is_err());
        let mixed = json!({"cniVersion": "0.2.0", "ip4": {"ip": "10.0.0.2/24"}, "ips": []});
        assert!(verify("0.2.0", &mixed, "net1").is_err());
    }

    #[test]
    fn bad_indexes_and_addresses_are_named() {
        let r = json!({"cniVersion": "1.0.0", "interfaces": [], "ips": [{"address": "10.0.0.2/24", "interface": 3}]});
        assert!(verify("1.0.0", &r, "net1").unwrap_err().contains("interface is 3"));
        let r = json!({"cniVersion": "1.0.0", "ips": [{"address": "10.0.0.2"}]});
        assert!(verify("1.0.0", &r, "net1").unwrap_err().contains("prefix length"));
        assert!(at_least("1.1.0", "0.4.0") && !at_least("0.3.1", "0.4.0"));
    }
}
