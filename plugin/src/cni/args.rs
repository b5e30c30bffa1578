//! CNI_ARGS: `K=V;K2=V2`, the keys runtimes and Multus actually send.
//!
//! Keys are case-sensitive as in the Go library (`IP` is honoured, `ip` is not). ADD refuses malformed
//! pairs and unknown keys unless `IgnoreUnknown` is true; DEL never refuses anything here, because a DEL
//! that fails on its arguments leaves the pod stuck Terminating for ever (what host-local does with
//! Multus' `IP=a,b`).

use std::net::IpAddr;

use crate::error::Error;

/// The keys roslan understands.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CniArgs {
    /// `IgnoreUnknown=1|true`.
    pub ignore_unknown: bool,
    /// `K8S_POD_NAMESPACE`.
    pub pod_namespace: Option<String>,
    /// `K8S_POD_NAME`.
    pub pod_name: Option<String>,
    /// `K8S_POD_INFRA_CONTAINER_ID`.
    pub pod_infra_container_id: Option<String>,
    /// `K8S_POD_UID`.
    pub pod_uid: Option<String>,
    /// `MAC=`.
    pub mac: Option<String>,
    /// `IP=`, one address or a comma list, each with or without a prefix (the prefix is ignored, as in
    /// host-local: the range decides the mask).
    pub ips: Vec<IpAddr>,
    /// Keys roslan does not know.
    pub unknown: Vec<String>,
}

fn parse_bool(value: &str) -> Option<bool> {
    match value.to_ascii_lowercase().as_str() {
        "1" | "true" => Some(true),
        "0" | "false" => Some(false),
        _ => None,
    }
}

/// Parses one address from `IP=`, accepting `a.b.c.d` and `a.b.c.d/24`.
pub fn parse_requested_ip(text: &str) -> Option<IpAddr> {
    let text = text.trim();
    let addr = match text.split_once('/') {
        Some((addr, prefix)) => {
            prefix.parse::<u8>().ok()?;
            addr
        }
        None => text,
    };
    addr.parse::<IpAddr>().ok().map(|ip| ip.to_canonical())
}

impl CniArgs {
    /// Strict parsing, for ADD and CHECK.
    pub fn parse(raw: &str) -> Result<CniArgs, Error> {
        let mut args = CniArgs::default();
        for pair in raw.split(';').filter(|p| !p.is_empty()) {
            let Some((key, value)) = pair.split_once('=') else {
                return Err(Error::env(
                    "CNI_ARGS",
                    format!("invalid pair {pair:?}: expected KEY=VALUE"),
                ));
            };
            if value.contains('=') {
                return Err(Error::env(
                    "CNI_ARGS",
                    format!("invalid pair {pair:?}: expected KEY=VALUE"),
                ));
            }
            match key {
                "IgnoreUnknown" => {
                    args.ignore_unknown = parse_bool(value).ok_or_else(|| {
                        Error::env(
                            "CNI_ARGS",
                            format!("IgnoreUnknown={value:?} is not a boolean; use 1 or true"),
                        )
                    })?;
                }
                "K8S_POD_NAMESPACE" => args.pod_namespace = Some(value.to_string()),
                "K8S_POD_NAME" => args.pod_name = Some(value.to_string()),
                "K8S_POD_INFRA_CONTAINER_ID" => args.pod_infra_container_id = Some(value.to_string()),
                "K8S_POD_UID" => args.pod_uid = Some(value.to_string()),
                "MAC" => args.mac = Some(value.to_string()),
                "IP" => {
                    for item in value.split(',').filter(|i| !i.trim().is_empty()) {
                        let ip = parse_requested_ip(item).ok_or_else(|| {
                            Error::env(
                                "CNI_ARGS",
                                format!(
                                    "IP={item:?} is not an address; use IP=192.168.1.20 or IP=192.168.1.20/24,fd00::20"
                                ),
                            )
                        })?;
                        args.ips.push(ip);
                    }
                }
                other => args.unknown.push(other.to_string()),
            }
        }
        if !args.unknown.is_empty() && !args.ignore_unknown {
            return Err(Error::env(
                "CNI_ARGS",
                format!(
                    "unknown args {:?}; add IgnoreUnknown=1 to CNI_ARGS to ignore them",
                    args.unknown
                ),
            ));
        }
        Ok(args)
    }

    /// Lenient parsing, for DEL: every pair that can be understood is, the rest is ignored.
    pub fn parse_lenient(raw: &str) -> CniArgs {
        let mut args = CniArgs::default();
        for pair in raw.split(';') {
            let Some((key, value)) = pair.split_once('=') else {
                continue;
            };
            match key {
                "IgnoreUnknown" => args.ignore_unknown = parse_bool(value).unwrap_or(false),
                "K8S_POD_NAMESPACE" => args.pod_namespace = Some(value.to_string()),
                "K8S_POD_NAME" => args.pod_name = Some(value.to_string()),
                "K8S_POD_INFRA_CONTAINER_ID" => args.pod_infra_container_id = Some(value.to_string()),
                "K8S_POD_UID" => args.pod_uid = Some(value.to_string()),
                "MAC" => args.mac = Some(value.to_string()),
                "IP" => args.ips.extend(value.split(',').filter_map(parse_requested_ip)),
                other => args.unknown.push(other.to_string()),
            }
        }
        args
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn multus_style_args() {
        let args = CniArgs::parse(
            "IgnoreUnknown=true;K8S_POD_NAMESPACE=ns;K8S_POD_NAME=p;K8S_POD_INFRA_CONTAINER_ID=c;K8S_POD_UID=u;IP=10.0.0.5/24,fd00::5;MAC=02:00:00:00:00:01;Other=x",
        )
        .unwrap();
        assert_eq!(args.pod_name.as_deref(), Some("p"));
        assert_eq!(
            args.ips,
            vec!["10.0.0.5".parse::<IpAddr>().unwrap(), "fd00::5".parse().unwrap()]
        );
        assert_eq!(args.unknown, vec!["Other"]);
    }

    #[test]
    fn strict_and_lenient() {
        assert_eq!(CniArgs::parse("Foo=1").unwrap_err().code(), 4);
        assert!(CniArgs::parse("IgnoreUnknown=1;Foo=1").is_ok());
        assert!(CniArgs::parse("ip=10.0.0.1").is_err());
        assert!(CniArgs::parse("IP=nonsense").is_err());
        assert!(CniArgs::parse("novalue").is_err());
        let lenient = CniArgs::parse_lenient("novalue;IP=nonsense,10.0.0.7;Foo=1");
        assert_eq!(lenient.ips, vec!["10.0.0.7".parse::<IpAddr>().unwrap()]);
    }
}
