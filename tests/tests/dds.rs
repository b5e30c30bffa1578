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
//!
//! Each topology also has a ROS 2 row (`ros2_*`): the seed's talker and listener
//! (`manifests/examples/scripts`, unmodified) on rclpy and Fast DDS, ROS 2's default middleware, each in
//! a container of its pod (its own mount and PID namespace, the pod's network namespace and /dev/shm,
//! its own machine-id; `roslan_tests::container`). Fast DDS chooses differently from Cyclone: it sends
//! discovery out of every interface, each socket pinned to its interface, and ignores IFF_MULTICAST. So
//! where Cyclone's controls fail because Cyclone picks `eth0` (the reference without a route, roslan with
//! `exclusive: false`), Fast DDS works, and the ROS 2 rows assert that, measured; where the control fails
//! because of the network itself (the gateway on the reference's multicast route), Fast DDS fails too.
//! Its IPv6 counterpart of `udp6` is `FASTDDS_BUILTIN_TRANSPORTS=UDPv6`.

use roslan_tests::container::Sandbox;
use roslan_tests::dds::{Chatter, Ddsperf, UDP6_URI, cyclone_selection, namespace_state, require_peers};
use roslan_tests::netns::Netns;
use roslan_tests::plugin::Reference;
use roslan_tests::root_test;
use roslan_tests::ros2::{Chat, ChatOutcome, FASTDDS_UDPV6, Middleware, require_nodes};
use roslan_tests::{Lan, Pod};
use serde_json::{Value, json};

/// A LAN for one test, after checking that ddsperf and the venv are there (a missing peer fails the
/// test with the fix; it never skips it).
fn lan() -> Lan {
    require_peers();
    Lan::new()
}

/// A LAN for one ROS 2 test, after checking that the venv has rclpy and Fast DDS.
fn ros2_lan() -> Lan {
    require_nodes();
    Lan::new()
}

/// The seed's listener in a pod on `listener` and its talker in a pod on `talker` (the same pod when
/// both are one namespace) must hear each other (`heard`) or not; `env` is the IPv6 transport or nothing.
/// A run that hears nothing counts only if both nodes came up (`ChatOutcome::all_up`), and it waits 6 s
/// after the talker published its first message.
fn assert_ros2(
    listener: &Netns,
    talker: &Netns,
    env: &[(&'static str, &'static str)],
    heard: bool,
    topology: &str,
) -> ChatOutcome {
    let listener_pod = Sandbox::new(listener, "listener-pod");
    let talker_pod = (listener.name() != talker.name()).then(|| Sandbox::new(talker, "talker-pod"));
    let mut chat = Chat::new(
        Middleware::FastDds,
        (&listener_pod, "l1"),
        vec![(talker_pod.as_ref().unwrap_or(&listener_pod), "t1")],
    );
    chat.env = env.to_vec();
    let want: &[&str] = if heard { &["t1"] } else { &[] };
    let outcome = chat.run();
    outcome.assert_heard(want, topology);
    outcome
}

/// Panics unless every UDP socket of the run's listener is IPv6 (`ss` shows `[addr]:port`, or `*:port`
/// for `[::]`; an IPv4 one is `0.0.0.0:port` or `a.b.c.d:port`): Fast DDS used its UDPv6 transport and
/// nothing else, so what was heard came over IPv6.
fn assert_ipv6_only(outcome: &ChatOutcome, topology: &str) {
    let sockets = &outcome.listener_sockets;
    let ipv4 = |line: &String| {
        line.split_whitespace()
            .nth(3)
            .is_none_or(|local| local.starts_with(|c: char| c.is_ascii_digit()))
    };
    assert!(
        !sockets.is_empty() && !sockets.iter().any(ipv4),
        "{topology}: the listener has IPv4 sockets (or none): {sockets:#?}"
    );
}

/// The pods of a two-pod topology.
#[derive(Clone, Copy)]
enum Pods {
    /// Only `net1`.
    Single,
    /// `eth0` with the default route into the overlay, and `net1`.
    Dual,
    /// The same with IPv6 on `eth0` too (and the IPv6 default route).
    DualStack,
}

/// Two pods of `kind`, each given `net1` by roslan with `conf`, or by `reference`'s macvlan.
fn pair(lan: &Lan, kind: Pods, conf: &Value, reference: Option<&Reference>) -> (Pod, Pod) {
    let make = || match kind {
        Pods::Single => lan.pod(),
        Pods::Dual => lan.dual_homed_pod(),
        Pods::DualStack => lan.dual_homed_pod_ipv6(),
    };
    let (a, b) = (make(), make());
    for pod in [&a, &b] {
        match reference {
            Some(reference) => {
                lan.reference_add(reference, pod, "net1", conf);
            }
            None => {
                lan.add(pod, "net1", conf);
            }
        }
    }
    (a, b)
}

/// roslan's configuration for the LAN with an IPv6 range (`fd00:77::/64`) next to the IPv4 one.
fn dual_stack_config(lan: &Lan) -> Value {
    let mut conf = lan.config("0.3.1");
    conf["ipam"]["ranges"]
        .as_array_mut()
        .expect("ranges")
        .push(json!([{"subnet": "fd00:77::/64"}]));
    conf
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

#[root_test]
fn single_homed_pods_discover_each_other() {
    let lan = lan();
    let conf = lan.config("0.3.1");
    let (a, b) = pair(&lan, Pods::Single, &conf, None);
    assert_dds_works(&a.ns, &b.ns, "single-homed pods", None);
}

#[root_test]
fn dual_homed_pods_discover_each_other_over_net1() {
    // eth0 holds the default route into an overlay that carries no multicast (as Calico gives) and
    // forwards nothing, so whatever the peers find, they find over net1.
    let lan = lan();
    let conf = lan.config("0.3.1");
    let (a, b) = pair(&lan, Pods::Dual, &conf, None);
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

#[root_test]
fn two_dds_processes_in_one_pod_discover_each_other() {
    // Same network namespace: SPDP reaches the other process by multicast loopback on net1.
    let lan = lan();
    let conf = lan.config("0.3.1");
    let pod = lan.dual_homed_pod();
    lan.add(&pod, "net1", &conf);
    assert_dds_works(&pod.ns, &pod.ns, "two processes in one dual-homed pod", None);
}

#[root_test]
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

#[root_test]
fn ipv6_dual_stack_pods_discover_each_other_over_net1() {
    // DDS configuration, the one thing no CNI can supply: Cyclone uses IPv4 unless its transport is
    // `udp6` (UDP6_URI sets exactly that and nothing else). Both pods also have IPv6 on eth0 with the
    // IPv6 default route, so eth0 is a full candidate; the overlay forwards nothing.
    let lan = lan();
    let conf = dual_stack_config(&lan);
    let (a, b) = pair(&lan, Pods::DualStack, &conf, None);
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

#[root_test]
fn reference_plugins_with_the_route_workaround_discover_nothing_in_dual_homed_pods() {
    // Negative control: the usual Multus setup, reference macvlan + host-local with
    // `routes: [{"dst": "224.0.0.0/4"}]`, which host-local turns into `224.0.0.0/4 via <gateway>`.
    // Cyclone picks eth0 (tie with net1, enumerated first), so SPDP goes into the overlay; and even on
    // net1 the gateway route would send it to the gateway's MAC only (next test).
    let lan = lan();
    for reference in Reference::all() {
        let conf = lan.reference_config("0.3.1");
        let (a, b) = pair(&lan, Pods::Dual, &conf, Some(&reference));
        let route = a.ns.routes("-4").into_iter().find(|r| r["dst"] == "224.0.0.0/4");
        assert_eq!(
            route.as_ref().map(|r| r["gateway"].clone()),
            Some(json!(roslan_tests::lan::HOST_ADDR)),
            "the reference attaches the gateway: {route:?}"
        );
        for pod in [&a, &b] {
            assert_cyclone_picks(&pod.ns, false, "eth0", "the reference's dual-homed pod");
        }
        assert_dds_isolated(
            &a.ns,
            &b.ns,
            &format!("{}: reference + route, dual-homed pods", reference.name),
            None,
        );
    }
}

#[root_test]
fn reference_plugins_without_a_route_discover_nothing_in_dual_homed_pods() {
    // Negative control without the workaround: no multicast route at all. Cyclone pins its interface,
    // so a route would not matter to it anyway; what matters is that it pins eth0: eth0 and net1 both
    // have IFF_MULTICAST, tie, and eth0 is enumerated first.
    let lan = lan();
    for reference in Reference::all() {
        let mut conf = lan.reference_config("0.3.1");
        conf["ipam"].as_object_mut().expect("ipam").remove("routes");
        let (a, b) = pair(&lan, Pods::Dual, &conf, Some(&reference));
        for pod in [&a, &b] {
            assert!(
                !pod.ns.routes("-4").iter().any(|r| r["dst"] == "224.0.0.0/4"),
                "no multicast route"
            );
            assert!(pod.ns.has_flag("eth0", "MULTICAST") && pod.ns.has_flag("net1", "MULTICAST"));
            assert_cyclone_picks(&pod.ns, false, "eth0", "the reference's dual-homed pod, no route");
        }
        assert_dds_isolated(
            &a.ns,
            &b.ns,
            &format!("{}: reference without route, dual-homed pods", reference.name),
            None,
        );
    }
}

#[root_test]
fn reference_plugins_with_the_route_workaround_discover_nothing_in_single_homed_pods() {
    // Negative control for the route alone: with net1 the only interface, Cyclone picks net1, but
    // `224.0.0.0/4 via <gateway>` makes the kernel send its SPDP to the gateway's MAC, so the sibling
    // pod never sees it. roslan's same topology works (single_homed_pods_discover_each_other).
    let lan = lan();
    for reference in Reference::all() {
        let conf = lan.reference_config("0.3.1");
        let (a, b) = pair(&lan, Pods::Single, &conf, Some(&reference));
        for pod in [&a, &b] {
            assert_cyclone_picks(&pod.ns, false, "net1", "the reference's single-homed pod");
        }
        assert_dds_isolated(
            &a.ns,
            &b.ns,
            &format!("{}: reference + route, single-homed pods", reference.name),
            None,
        );
    }
}

#[root_test]
fn roslan_without_exclusive_multicast_discovers_nothing_in_dual_homed_pods() {
    // The control for roslan itself: the same routes, but eth0 keeps IFF_MULTICAST. Cyclone ties
    // eth0 and net1 again and picks eth0, so it is the exclusive flag that makes discovery work.
    let lan = lan();
    let mut conf = lan.config("0.3.1");
    conf["multicast"] = json!({"exclusive": false});
    let (a, b) = pair(&lan, Pods::Dual, &conf, None);
    for pod in [&a, &b] {
        assert!(
            pod.ns.has_flag("eth0", "MULTICAST"),
            "exclusive: false leaves eth0 alone"
        );
        assert_cyclone_picks(&pod.ns, false, "eth0", "roslan with exclusive: false");
    }
    assert_dds_isolated(&a.ns, &b.ns, "roslan, exclusive false, dual-homed pods", None);
}

#[root_test]
fn ipv6_without_exclusive_multicast_discovers_nothing_in_dual_homed_pods() {
    // The IPv6 control: with IPv6 on both interfaces and eth0 keeping IFF_MULTICAST, Cyclone in udp6
    // mode ties them and picks eth0, even though roslan's ff00::/8 route prefers net1 for unpinned
    // sockets: Cyclone pins its interface, so the route cannot help it, the flag does.
    let lan = lan();
    let mut conf = dual_stack_config(&lan);
    conf["multicast"] = json!({"exclusive": false});
    let (a, b) = pair(&lan, Pods::DualStack, &conf, None);
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

// ROS 2 rows: the seed's talker and listener on Fast DDS, in containers, in the same topologies.

#[root_test]
fn ros2_single_homed_pods_hear_each_other() {
    let lan = ros2_lan();
    let conf = lan.config("0.3.1");
    let (a, b) = pair(&lan, Pods::Single, &conf, None);
    assert_ros2(&a.ns, &b.ns, &[], true, "ROS 2, single-homed pods");
}

#[root_test]
fn ros2_dual_homed_pods_hear_each_other_over_net1() {
    // The overlay forwards nothing, so what the nodes exchange goes over net1, although Fast DDS also
    // announces (and tries) eth0's cluster address.
    let lan = ros2_lan();
    let conf = lan.config("0.3.1");
    let (a, b) = pair(&lan, Pods::Dual, &conf, None);
    assert_eq!(lan.overlay.sysctl("net.ipv4.ip_forward"), "0");
    assert_ros2(&a.ns, &b.ns, &[], true, "ROS 2, dual-homed pods");
    assert_ros2(&b.ns, &a.ns, &[], true, "ROS 2, dual-homed pods, the other way");
}

#[root_test]
fn ros2_two_containers_in_one_pod_hear_each_other() {
    // Two containers of one pod, each PID 1 of its own PID namespace: the GUID collision of old Fast DDS
    // (eProsima/Fast-DDS #1633, same IP and PID) no longer happens.
    let lan = ros2_lan();
    let pod = lan.dual_homed_pod();
    lan.add(&pod, "net1", &lan.config("0.3.1"));
    assert_ros2(
        &pod.ns,
        &pod.ns,
        &[],
        true,
        "ROS 2, two containers in one dual-homed pod",
    );
}

#[root_test]
fn ros2_pod_and_plain_lan_host_hear_each_other() {
    // The LAN host runs its node in a sandbox of its own too (its own /dev/shm), as a separate machine.
    let lan = ros2_lan();
    let pod = lan.dual_homed_pod();
    lan.add(&pod, "net1", &lan.config("0.3.1"));
    assert_ros2(&lan.host, &pod.ns, &[], true, "ROS 2, dual-homed pod -> LAN host");
    assert_ros2(&pod.ns, &lan.host, &[], true, "ROS 2, LAN host -> dual-homed pod");
}

#[root_test]
fn ros2_ipv6_dual_stack_pods_hear_each_other_over_net1() {
    // Fast DDS speaks UDPv4 (and shared memory) unless its transports are set; UDPv6 is the one piece
    // of DDS configuration, as udp6 is for Cyclone.
    let lan = ros2_lan();
    let conf = dual_stack_config(&lan);
    let (a, b) = pair(&lan, Pods::DualStack, &conf, None);
    let topology = "ROS 2, IPv6 (UDPv6) dual-homed pods";
    assert_ipv6_only(&assert_ros2(&a.ns, &b.ns, &[FASTDDS_UDPV6], true, topology), topology);
}

#[root_test]
fn ros2_reference_plugins_with_the_route_workaround_hear_nothing_in_dual_homed_pods() {
    // Fast DDS pins each discovery socket to its interface, but the kernel still routes the datagram:
    // on net1 `224.0.0.0/4 via <gateway>` sends it to the gateway's MAC, on eth0 the overlay carries
    // nothing. The gateway is the LAN host here, and it does hear the pod: the route works for the one
    // machine it points at and for nobody else.
    let lan = ros2_lan();
    for reference in Reference::all() {
        let conf = lan.reference_config("0.3.1");
        let (a, b) = pair(&lan, Pods::Dual, &conf, Some(&reference));
        assert_ros2(
            &a.ns,
            &b.ns,
            &[],
            false,
            &format!("{}: ROS 2, reference + route, dual-homed pods", reference.name),
        );
        assert_ros2(
            &lan.host,
            &a.ns,
            &[],
            true,
            &format!(
                "{}: ROS 2, reference + route, pod -> the gateway (LAN host)",
                reference.name
            ),
        );
    }
}

#[root_test]
fn ros2_reference_plugins_without_a_route_work_in_dual_homed_pods() {
    // Not a negative control for Fast DDS (it is Cyclone's): with no multicast route, a socket pinned
    // to net1 (IP_MULTICAST_IF) sends straight onto net1, and Fast DDS pins one socket per interface. So
    // the reference plugins as the seed configured them (no routes) already work for Fast DDS.
    let lan = ros2_lan();
    for reference in Reference::all() {
        let mut conf = lan.reference_config("0.3.1");
        conf["ipam"].as_object_mut().expect("ipam").remove("routes");
        let (a, b) = pair(&lan, Pods::Dual, &conf, Some(&reference));
        assert!(!a.ns.routes("-4").iter().any(|r| r["dst"] == "224.0.0.0/4"));
        assert_ros2(
            &a.ns,
            &b.ns,
            &[],
            true,
            &format!("{}: ROS 2, reference without route, dual-homed pods", reference.name),
        );
    }
}

#[root_test]
fn ros2_reference_plugins_with_the_route_workaround_hear_nothing_in_single_homed_pods() {
    // The route alone: net1 is the only interface and the gateway route still sends SPDP to the
    // gateway's MAC.
    let lan = ros2_lan();
    for reference in Reference::all() {
        let conf = lan.reference_config("0.3.1");
        let (a, b) = pair(&lan, Pods::Single, &conf, Some(&reference));
        assert_ros2(
            &a.ns,
            &b.ns,
            &[],
            false,
            &format!("{}: ROS 2, reference + route, single-homed pods", reference.name),
        );
    }
}

#[root_test]
fn ros2_roslan_without_exclusive_multicast_works_in_dual_homed_pods() {
    // Fast DDS ignores IFF_MULTICAST (it checks only that an interface runs), so `exclusive` is for
    // Cyclone; roslan's routes are enough for Fast DDS.
    let lan = ros2_lan();
    let mut conf = lan.config("0.3.1");
    conf["multicast"] = json!({"exclusive": false});
    let (a, b) = pair(&lan, Pods::Dual, &conf, None);
    assert!(a.ns.has_flag("eth0", "MULTICAST"));
    assert_ros2(
        &a.ns,
        &b.ns,
        &[],
        true,
        "ROS 2, roslan with exclusive false, dual-homed pods",
    );
}

#[root_test]
fn ros2_ipv6_without_exclusive_multicast_works_in_dual_homed_pods() {
    // The IPv6 counterpart: with eth0 keeping IFF_MULTICAST, Fast DDS over UDPv6 still uses net1 too.
    let lan = ros2_lan();
    let mut conf = dual_stack_config(&lan);
    conf["multicast"] = json!({"exclusive": false});
    let (a, b) = pair(&lan, Pods::DualStack, &conf, None);
    let topology = "ROS 2, IPv6 (UDPv6), exclusive false, dual-homed pods";
    assert_ipv6_only(&assert_ros2(&a.ns, &b.ns, &[FASTDDS_UDPV6], true, topology), topology);
}
