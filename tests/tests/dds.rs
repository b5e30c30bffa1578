//! Real DDS peers, zero DDS configuration: Debian's `ddsperf` (Cyclone DDS 0.10) and a ROS 2 style
//! talker/listener on PyPI `cyclonedds` 11 (`tests/dds/chatter.py`, topic `rt/microk8s_chatter`, type
//! `std_msgs::msg::dds_::String_`), in every topology roslan is for. Where the reference macvlan +
//! host-local fail in the same topology, they run as negative controls, so each test proves the
//! difference rather than only that DDS can work.
//!
//! Why the controls fail (measured with Cyclone's `config` trace, see `dds::cyclone_selection`): with no
//! configuration Cyclone uses ONE interface, the best by a quality score in which IFF_MULTICAST counts
//! and ties go to the first enumerated. In a dual-homed pod `eth0` (created by the cluster network
//! first) and the macvlan `net1` tie, so Cyclone takes `eth0` and sends its SPDP multicast into an
//! overlay that carries none. roslan clears IFF_MULTICAST on `eth0` (`multicast.exclusive`): `eth0` then
//! scores lower and Cyclone takes `net1`.
//!
//! The only DDS configuration anywhere is `<Transport>udp6</Transport>` in the IPv6 test: Cyclone speaks
//! IPv4 unless told otherwise, and no CNI plugin can tell it.

use roslan_tests::Lan;
use roslan_tests::dds::{Chatter, Ddsperf, UDP6_URI, cyclone_selection, namespace_state, require_peers};
use roslan_tests::netns::Netns;
use serde_json::json;

/// A LAN for one test, after checking that ddsperf and the venv are there (a missing peer fails the
/// test with the fix; it never skips it).
fn lan() -> Lan {
    require_peers();
    Lan::new()
}

/// Cyclone's selection in `ns` must be `want`, with the candidates in the message.
fn assert_cyclone_picks(ns: &Netns, udp6: bool, want: &str, why: &str) {
    let selection = cyclone_selection(ns, udp6);
    assert_eq!(
        selection.selected,
        want,
        "{why}: Cyclone's candidates in {}: {}\n{}",
        ns.name(),
        selection.candidates,
        namespace_state(ns.name())
    );
}

/// Both DDS peer kinds between `a` (receiver) and `b` (sender) must work.
fn assert_dds_works(a: &Netns, b: &Netns, topology: &str, uri: Option<&'static str>) {
    Ddsperf {
        uri,
        ..Ddsperf::default()
    }
    .run(a, b)
    .assert_works(&format!("{topology} (ddsperf)"));
    Chatter {
        uri,
        ..Chatter::default()
    }
    .run(a, b)
    .assert_works(&format!("{topology} (chatter)"));
}

/// Both DDS peer kinds between `a` and `b` must discover nothing. The waits are bounded (ddsperf's
/// -Qmaxwait 5 s, the talker's 5 s): discovery takes 10-30 ms when it works.
fn assert_dds_isolated(a: &Netns, b: &Netns, topology: &str, uri: Option<&'static str>) {
    Ddsperf {
        uri,
        ..Ddsperf::default()
    }
    .run(a, b)
    .assert_isolated(&format!("{topology} (ddsperf)"));
    Chatter {
        uri,
        timeout: 5,
        ..Chatter::default()
    }
    .run(a, b)
    .assert_isolated(&format!("{topology} (chatter)"));
}

#[test]
#[cfg_attr(
    not(feature = "root-tests"),
    ignore = "needs root and network namespaces: run `make test` as root"
)]
fn single_homed_pods_discover_each_other() {
    let lan = lan();
    let conf = lan.config("0.3.1");
    let (a, b) = (lan.pod(), lan.pod());
    lan.add(&a, "net1", &conf);
    lan.add(&b, "net1", &conf);
    assert_dds_works(&a.ns, &b.ns, "single-homed pods", None);
}

#[test]
#[cfg_attr(
    not(feature = "root-tests"),
    ignore = "needs root and network namespaces: run `make test` as root"
)]
fn dual_homed_pods_discover_each_other_over_net1() {
    // eth0 holds the default route into an overlay that carries no multicast (as Calico gives) and
    // forwards nothing, so whatever the peers find, they find over net1.
    let lan = lan();
    let conf = lan.config("0.3.1");
    let (a, b) = (lan.dual_homed_pod(), lan.dual_homed_pod());
    lan.add(&a, "net1", &conf);
    lan.add(&b, "net1", &conf);
    assert_eq!(lan.overlay.sysctl("net.ipv4.ip_forward"), "0");
    for pod in [&a, &b] {
        assert!(
            !pod.ns.has_flag("eth0", "MULTICAST"),
            "multicast.exclusive clears eth0's flag"
        );
        assert_cyclone_picks(&pod.ns, false, "net1", "roslan's pod");
    }
    assert_dds_works(&a.ns, &b.ns, "dual-homed pods", None);
    assert_dds_works(&b.ns, &a.ns, "dual-homed pods, the other way", None);
}

#[test]
#[cfg_attr(
    not(feature = "root-tests"),
    ignore = "needs root and network namespaces: run `make test` as root"
)]
fn two_dds_processes_in_one_pod_discover_each_other() {
    // Same network namespace: SPDP reaches the other process by multicast loopback on net1.
    let lan = lan();
    let conf = lan.config("0.3.1");
    let pod = lan.dual_homed_pod();
    lan.add(&pod, "net1", &conf);
    assert_dds_works(&pod.ns, &pod.ns, "two processes in one dual-homed pod", None);
}

#[test]
#[cfg_attr(
    not(feature = "root-tests"),
    ignore = "needs root and network namespaces: run `make test` as root"
)]
fn pod_and_plain_lan_host_discover_each_other() {
    // The LAN host is a plain namespace on the wire (lan0p, 224.0.0.0/4 dev lan0p): a laptop or a
    // robot computer that runs ROS 2 outside Kubernetes.
    let lan = lan();
    let conf = lan.config("0.3.1");
    let pod = lan.dual_homed_pod();
    lan.add(&pod, "net1", &conf);
    assert_dds_works(&lan.host, &pod.ns, "dual-homed pod -> LAN host", None);
    assert_dds_works(&pod.ns, &lan.host, "LAN host -> dual-homed pod", None);
}

#[test]
#[cfg_attr(
    not(feature = "root-tests"),
    ignore = "needs root and network namespaces: run `make test` as root"
)]
fn ipv6_dual_stack_pods_discover_each_other_over_net1() {
    // DDS configuration, the one thing no CNI can supply: Cyclone uses IPv4 unless its transport is
    // `udp6` (UDP6_URI sets exactly that and nothing else). Both pods also have IPv6 on eth0 with the
    // IPv6 default route, so eth0 is a full candidate; the overlay forwards nothing.
    let lan = lan();
    let mut conf = lan.config("0.3.1");
    conf["ipam"]["ranges"]
        .as_array_mut()
        .expect("ranges")
        .push(json!([{"subnet": "fd00:77::/64"}]));
    let (a, b) = (lan.dual_homed_pod_ipv6(), lan.dual_homed_pod_ipv6());
    lan.add(&a, "net1", &conf);
    lan.add(&b, "net1", &conf);
    assert_eq!(lan.overlay.sysctl("net.ipv6.conf.all.forwarding"), "0");
    for pod in [&a, &b] {
        let v6 = pod.ns.addresses("net1");
        assert!(v6.iter().any(|a| a.starts_with("fd00:77::")), "net1 has IPv6: {v6:?}");
        let local = pod
            .ns
            .ip(&["-6", "route", "show", "table", "local", "type", "multicast"]);
        assert!(
            local
                .lines()
                .any(|l| l.contains("ff00::/8 dev net1") && l.contains("metric 128")),
            "roslan's IPv6 multicast route ahead of the kernel's per-interface ones:\n{local}"
        );
        assert!(!pod.ns.has_flag("eth0", "MULTICAST"));
        assert_cyclone_picks(&pod.ns, true, "net1", "roslan's dual-stack pod, udp6");
    }
    assert_dds_works(&a.ns, &b.ns, "IPv6 (udp6) dual-homed pods", Some(UDP6_URI));
}

#[test]
#[cfg_attr(
    not(feature = "root-tests"),
    ignore = "needs root and network namespaces: run `make test` as root"
)]
fn reference_plugins_with_the_route_workaround_discover_nothing_in_dual_homed_pods() {
    // Negative control: the usual Multus setup, reference macvlan + host-local with
    // `routes: [{"dst": "224.0.0.0/4"}]`, which host-local turns into `224.0.0.0/4 via <gateway>`.
    // Cyclone picks eth0 (tie with net1, enumerated first), so SPDP goes into the overlay; and even on
    // net1 the gateway route would send it to the gateway's MAC only (next test).
    let lan = lan();
    let conf = lan.reference_config("0.3.1");
    let (a, b) = (lan.dual_homed_pod(), lan.dual_homed_pod());
    lan.reference_add(&a, "net1", &conf);
    lan.reference_add(&b, "net1", &conf);
    let route = a.ns.routes("-4").into_iter().find(|r| r["dst"] == "224.0.0.0/4");
    assert_eq!(
        route.as_ref().map(|r| r["gateway"].clone()),
        Some(json!(roslan_tests::lan::HOST_ADDR)),
        "the reference attaches the gateway: {route:?}"
    );
    for pod in [&a, &b] {
        assert_cyclone_picks(&pod.ns, false, "eth0", "the reference's dual-homed pod");
    }
    assert_dds_isolated(&a.ns, &b.ns, "reference + route, dual-homed pods", None);
}

#[test]
#[cfg_attr(
    not(feature = "root-tests"),
    ignore = "needs root and network namespaces: run `make test` as root"
)]
fn reference_plugins_without_a_route_discover_nothing_in_dual_homed_pods() {
    // Negative control without the workaround: no multicast route at all. Cyclone pins its interface,
    // so a route would not matter to it anyway; what matters is that it pins eth0: eth0 and net1 both
    // have IFF_MULTICAST, tie, and eth0 is enumerated first.
    let lan = lan();
    let mut conf = lan.reference_config("0.3.1");
    conf["ipam"].as_object_mut().expect("ipam").remove("routes");
    let (a, b) = (lan.dual_homed_pod(), lan.dual_homed_pod());
    lan.reference_add(&a, "net1", &conf);
    lan.reference_add(&b, "net1", &conf);
    for pod in [&a, &b] {
        assert!(
            !pod.ns.routes("-4").iter().any(|r| r["dst"] == "224.0.0.0/4"),
            "no multicast route"
        );
        assert!(pod.ns.has_flag("eth0", "MULTICAST") && pod.ns.has_flag("net1", "MULTICAST"));
        assert_cyclone_picks(&pod.ns, false, "eth0", "the reference's dual-homed pod, no route");
    }
    assert_dds_isolated(&a.ns, &b.ns, "reference without route, dual-homed pods", None);
}

#[test]
#[cfg_attr(
    not(feature = "root-tests"),
    ignore = "needs root and network namespaces: run `make test` as root"
)]
fn reference_plugins_with_the_route_workaround_discover_nothing_in_single_homed_pods() {
    // Negative control for the route alone: with net1 the only interface, Cyclone picks net1, but
    // `224.0.0.0/4 via <gateway>` makes the kernel send its SPDP to the gateway's MAC, so the sibling
    // pod never sees it. roslan's same topology works (single_homed_pods_discover_each_other).
    let lan = lan();
    let conf = lan.reference_config("0.3.1");
    let (a, b) = (lan.pod(), lan.pod());
    lan.reference_add(&a, "net1", &conf);
    lan.reference_add(&b, "net1", &conf);
    for pod in [&a, &b] {
        assert_cyclone_picks(&pod.ns, false, "net1", "the reference's single-homed pod");
    }
    assert_dds_isolated(&a.ns, &b.ns, "reference + route, single-homed pods", None);
}

#[test]
#[cfg_attr(
    not(feature = "root-tests"),
    ignore = "needs root and network namespaces: run `make test` as root"
)]
fn roslan_without_exclusive_multicast_discovers_nothing_in_dual_homed_pods() {
    // The control for roslan itself: the same routes, but eth0 keeps IFF_MULTICAST. Cyclone ties
    // eth0 and net1 again and picks eth0, so it is the exclusive flag that makes discovery work.
    let lan = lan();
    let mut conf = lan.config("0.3.1");
    conf["multicast"] = json!({"exclusive": false});
    let (a, b) = (lan.dual_homed_pod(), lan.dual_homed_pod());
    lan.add(&a, "net1", &conf);
    lan.add(&b, "net1", &conf);
    for pod in [&a, &b] {
        assert!(
            pod.ns.has_flag("eth0", "MULTICAST"),
            "exclusive: false leaves eth0 alone"
        );
        assert_cyclone_picks(&pod.ns, false, "eth0", "roslan with exclusive: false");
    }
    assert_dds_isolated(&a.ns, &b.ns, "roslan, exclusive false, dual-homed pods", None);
}

#[test]
#[cfg_attr(
    not(feature = "root-tests"),
    ignore = "needs root and network namespaces: run `make test` as root"
)]
fn ipv6_without_exclusive_multicast_discovers_nothing_in_dual_homed_pods() {
    // The IPv6 control: with IPv6 on both interfaces and eth0 keeping IFF_MULTICAST, Cyclone in udp6
    // mode ties them and picks eth0, even though roslan's ff00::/8 route prefers net1 for unpinned
    // sockets: Cyclone pins its interface, so the route cannot help it, the flag does.
    let lan = lan();
    let mut conf = lan.config("0.3.1");
    conf["ipam"]["ranges"]
        .as_array_mut()
        .expect("ranges")
        .push(json!([{"subnet": "fd00:77::/64"}]));
    conf["multicast"] = json!({"exclusive": false});
    let (a, b) = (lan.dual_homed_pod_ipv6(), lan.dual_homed_pod_ipv6());
    lan.add(&a, "net1", &conf);
    lan.add(&b, "net1", &conf);
    for pod in [&a, &b] {
        assert_cyclone_picks(&pod.ns, true, "eth0", "roslan with exclusive: false, udp6");
    }
    assert_dds_isolated(
        &a.ns,
        &b.ns,
        "IPv6 (udp6), exclusive false, dual-homed pods",
        Some(UDP6_URI),
    );
}
