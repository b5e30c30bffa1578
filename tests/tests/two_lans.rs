//! A pod attached to two roslan networks (two robot LANs, or two slices of one): both dual-stack, both
//! with `multicast.exclusive`. The second must not fail on the first's routes, each must pass CHECK,
//! and eth0 must stay out of DDS' way until the last of them is deleted.

use roslan_tests::Lan;
use roslan_tests::root_test;
use serde_json::{Value, json};

fn network(lan: &Lan, name: &str, third: u8) -> Value {
    let mut conf = lan.config("1.1.0");
    conf["name"] = json!(name);
    conf["ipam"]["ranges"] = json!([
        [{"subnet": "10.77.0.0/16", "rangeStart": format!("10.77.{third}.10"), "rangeEnd": format!("10.77.{third}.99")}],
        [{"subnet": "fd00:77::/64", "rangeStart": format!("fd00:77::{third}:10"), "rangeEnd": format!("fd00:77::{third}:99")}]
    ]);
    conf
}

fn v6_multicast_metric(result: &Value) -> Option<u64> {
    result["routes"]
        .as_array()?
        .iter()
        .find(|r| r["dst"] == "ff00::/8")
        .and_then(|r| r["priority"].as_u64())
}

#[root_test]
fn a_pod_on_two_lans_gets_both_and_keeps_eth0_quiet_until_the_last_leaves() {
    let lan = Lan::new();
    let pod = lan.dual_homed_pod_ipv6();
    let (first, second) = (network(&lan, "ros-lan-a", 1), network(&lan, "ros-lan-b", 2));

    let first_result = lan.add(&pod, "net1", &first);
    let second_result = lan.add(&pod, "net2", &second);
    assert_eq!(v6_multicast_metric(&first_result), Some(128), "{first_result}");
    assert_eq!(
        v6_multicast_metric(&second_result),
        Some(129),
        "the second waits behind the first: {second_result}"
    );
    assert_eq!(lan.check(&pod, "net1", &first, &first_result).status, 0);
    let reply = lan.check(&pod, "net2", &second, &second_result);
    assert_eq!(reply.status, 0, "{reply}");
    assert!(!pod.ns.has_flag("eth0", "MULTICAST"));

    lan.del(&pod, "net1", &first);
    assert!(
        !pod.ns.has_flag("eth0", "MULTICAST"),
        "net2 still wants exclusivity, so eth0 stays without multicast"
    );
    let alias = pod.ns.link("net2").unwrap()["ifalias"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(
        alias.contains("mcast-off=eth0"),
        "net2 inherited the duty to restore eth0: {alias}"
    );
    let reply = lan.check(&pod, "net2", &second, &second_result);
    assert_eq!(reply.status, 0, "{reply}");
    let route = pod.ns.ip(&["-6", "route", "get", "ff15::1"]);
    assert!(route.contains("dev net2"), "IPv6 multicast falls over to net2: {route}");
    let route = pod.ns.ip(&["route", "get", "239.255.0.1"]);
    assert!(route.contains("dev net2"), "IPv4 multicast falls over to net2: {route}");

    lan.del(&pod, "net2", &second);
    assert!(
        pod.ns.has_flag("eth0", "MULTICAST"),
        "the last DEL gives eth0 its flag back"
    );
    assert_eq!(pod.ns.links().len(), 2, "lo and eth0 remain: {:?}", pod.ns.links());
}
