//! What roslan sets up for ROS 2 beyond the route: multicast flags, IPv6 multicast steering, sysctls,
//! neighbour announcements, stable MACs and master selection, through the binary in real namespaces.

use std::process::Stdio;
use std::time::Duration;

use roslan_tests::lan::{HOST_ADDR, MASTER};
use roslan_tests::netns::Netns;
use roslan_tests::plugin::Call;
use roslan_tests::root_test;
use roslan_tests::traffic::exchange;
use roslan_tests::{Lan, Pod};
use serde_json::{Value, json};

#[root_test]
fn multicast_flags_point_dds_at_the_lan_and_are_restored() {
    let lan = Lan::new();
    let conf = lan.config("1.0.0");
    let pod = lan.dual_homed_pod();
    assert!(
        !pod.ns.has_flag("lo", "MULTICAST"),
        "a fresh namespace's lo has no MULTICAST flag"
    );
    assert!(pod.ns.has_flag("eth0", "MULTICAST"));
    let result = lan.add(&pod, "net1", &conf);
    assert!(pod.ns.has_flag("lo", "MULTICAST"), "multicast.loopback");
    assert!(
        !pod.ns.has_flag("eth0", "MULTICAST"),
        "multicast.exclusive clears the other interface's flag"
    );
    assert!(pod.ns.has_flag("net1", "MULTICAST"));
    let alias = pod.ns.link("net1").unwrap()["ifalias"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(
        alias.contains("mcast-off=eth0"),
        "the alias records what to restore: {alias}"
    );
    assert_eq!(lan.check(&pod, "net1", &conf, &result).status, 0);
    pod.ns.ip(&["link", "set", "eth0", "multicast", "on"]);
    let reply = lan.check(&pod, "net1", &conf, &result);
    assert!(reply.msg().contains("eth0 has IFF_MULTICAST again"), "{reply}");
    pod.ns.ip(&["link", "set", "eth0", "multicast", "off"]);
    lan.del(&pod, "net1", &conf);
    assert!(pod.ns.has_flag("eth0", "MULTICAST"), "DEL gives eth0 its flag back");

    // Both switches off: nothing but our own link is touched.
    let mut off = lan.config("1.0.0");
    off["multicast"] = json!({"exclusive": false, "loopback": false});
    let pod = lan.dual_homed_pod();
    lan.add(&pod, "net1", &off);
    assert!(pod.ns.has_flag("eth0", "MULTICAST") && !pod.ns.has_flag("lo", "MULTICAST"));

    // A second roslan network in the same pod keeps the first one's flag.
    let pod = lan.pod();
    lan.add(&pod, "net1", &conf);
    let mut second = lan.config("1.0.0");
    second["name"] = json!("ros-lan-2");
    second["ipam"]["ranges"] =
        json!([[{"subnet": "10.77.0.0/16", "rangeStart": "10.77.2.10", "rangeEnd": "10.77.2.20"}]]);
    let reply = lan.call(&Call::roslan("ADD", &pod.id, &pod.path(), "net2", &second));
    assert_eq!(reply.status, 0, "{reply}");
    assert!(pod.ns.has_flag("net1", "MULTICAST") && pod.ns.has_flag("net2", "MULTICAST"));
}

#[root_test]
fn unicast_over_eth0_survives_the_exclusive_default() {
    // The evidence behind `exclusive` defaulting to on: with IFF_MULTICAST cleared on a dual-stack eth0,
    // IPv4, IPv6 and IPv6 neighbour discovery (which uses multicast) keep working in both directions.
    let lan = Lan::new();
    let pod = lan.dual_homed_pod_ipv6();
    lan.add(&pod, "net1", &lan.config("1.0.0"));
    assert!(!pod.ns.has_flag("eth0", "MULTICAST"));
    for ns in [&pod.ns, &lan.overlay] {
        ns.ip(&["neigh", "flush", "all"]);
    }
    let ping = |ns: &Netns, args: &[&str]| ns.exec("ping", args).status.success();
    assert!(ping(&pod.ns, &["-c1", "-W2", "10.244.1.1"]), "IPv4 to the gateway");
    assert!(
        ping(&pod.ns, &["-6", "-c1", "-W2", "fd00:244:1::1"]),
        "IPv6 to the gateway, after neighbour discovery"
    );
    let neigh = pod.ns.ip(&["-6", "neigh", "show", "fd00:244:1::1"]);
    assert!(
        neigh.contains("lladdr"),
        "the gateway was resolved by neighbour discovery: {neigh:?}"
    );
    for ns in [&pod.ns, &lan.overlay] {
        ns.ip(&["neigh", "flush", "all"]);
    }
    assert!(
        ping(&lan.overlay, &["-6", "-c1", "-W2", "fd00:244:1::2"]),
        "the gateway resolves the pod"
    );
    assert!(ping(&lan.overlay, &["-c1", "-W2", "10.244.1.2"]));
    // The link-local address finishes duplicate address detection with the flag cleared, too.
    let mut ll = String::new();
    for _ in 0..50 {
        let info = pod.ns.ip_json(&["-6", "addr", "show", "dev", "eth0", "scope", "link"]);
        let entry = info[0]["addr_info"]
            .as_array()
            .and_then(|a| a.iter().find(|e| e.get("local").is_some()).cloned());
        if let Some(entry) = entry.filter(|e| e.get("tentative").is_none()) {
            ll = entry["local"].as_str().unwrap().to_string();
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(!ll.is_empty(), "eth0's link-local address left DAD");
    assert!(
        ping(&lan.overlay, &["-6", "-c1", "-W2", &format!("{ll}%ov1")]),
        "link-local too"
    );
}

#[root_test]
fn unpinned_ipv6_multicast_leaves_through_our_interface() {
    let lan = Lan::new();
    let mut conf = lan.config("1.1.0");
    conf["ipam"]["ranges"] = json!([
        [{"subnet": "10.77.0.0/16", "rangeStart": "10.77.1.10", "rangeEnd": "10.77.1.250"}],
        [{"subnet": "fd00:77::/64", "rangeStart": "fd00:77::10"}]
    ]);
    let pods: Vec<Pod> = (1..=2).map(|_| lan.dual_homed_pod_ipv6()).collect();
    for pod in &pods {
        let result = lan.add(pod, "net1", &conf);
        let route = result["routes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["dst"] == "ff00::/8")
            .cloned();
        assert_eq!(
            route,
            Some(json!({"dst": "ff00::/8", "table": 255, "priority": 128})),
            "{result}"
        );
        assert_eq!(lan.check(pod, "net1", &conf, &result).status, 0);
    }
    let got = pods[0].ns.ip(&["-6", "route", "get", "ff15::1"]);
    assert!(
        got.contains("dev net1"),
        "the kernel picks net1 for unpinned IPv6 multicast: {got}"
    );
    // A site-local group and Cyclone's link-local SPDP group for udp6.
    for group in ["ff15::1", "ff02::ffff:239.255.0.1"] {
        assert_eq!(
            exchange(&pods[0].ns, &[&pods[1].ns], group, 7400, 3),
            vec![3],
            "{group}"
        );
    }

    // Without the IPv6 route (IPv4 only), the same traffic leaves through eth0 and is lost.
    let mut v4_only = conf.clone();
    v4_only["multicast"] = json!({"routes": ["224.0.0.0/4"]});
    v4_only["ipam"]["dataDir"] = json!(lan.dir().join("v4only"));
    v4_only["ipam"]["ranges"][1] = json!([{"subnet": "fd00:77::/64", "rangeStart": "fd00:77::100"}]);
    let control: Vec<Pod> = (3..=4)
        .map(|_| {
            let pod = lan.dual_homed_pod_ipv6();
            lan.add(&pod, "net1", &v4_only);
            pod
        })
        .collect();
    assert_eq!(exchange(&control[0].ns, &[&control[1].ns], "ff15::1", 7400, 3), vec![0]);

    // The kernel's own per-interface ff00::/8 route (metric 256) is no substitute: CHECK notices.
    let pod = lan.dual_homed_pod_ipv6();
    let result = lan.add(&pod, "net1", &conf);
    pod.ns.ip(&[
        "-6", "route", "del", "ff00::/8", "dev", "net1", "table", "local", "metric", "128",
    ]);
    let reply = lan.check(&pod, "net1", &conf, &result);
    assert!(
        reply.msg().contains("multicast route ff00::/8 dev net1 is missing"),
        "{reply}"
    );
}

#[root_test]
fn sysctls_ros_defaults_overrides_and_refusals() {
    let lan = Lan::new();
    let pod = lan.pod();
    let conf = lan.config("1.0.0");
    let result = lan.add(&pod, "net1", &conf);
    for (key, want) in [
        ("net.ipv4.conf.net1.rp_filter", "2"),
        ("net.ipv4.conf.all.rp_filter", "2"),
        ("net.ipv6.conf.net1.autoconf", "0"),
        ("net.ipv6.conf.net1.accept_ra", "0"),
        ("net.ipv4.ipfrag_time", "3"),
        ("net.ipv4.ipfrag_high_thresh", "134217728"),
        ("net.ipv4.igmp_max_memberships", "1024"),
    ] {
        assert_eq!(pod.ns.sysctl(key), want, "{key}");
    }
    pod.ns.exec("sysctl", &["-qw", "net.ipv4.ipfrag_time=30"]);
    let reply = lan.check(&pod, "net1", &conf, &result);
    assert!(
        reply.msg().contains("sysctl net.ipv4.ipfrag_time is 30, configured 3"),
        "{reply}"
    );

    let mut custom = lan.config("1.0.0");
    custom["sysctl"] = json!({
        "net.ipv4.conf.IFNAME.rp_filter": 0,
        "net.ipv4.ipfrag_time": null,
        "net.ipv4.ip_local_port_range": "20000 30000"
    });
    custom["igmpVersion"] = json!(2);
    let pod = lan.pod();
    let result = lan.add(&pod, "net1", &custom);
    assert_eq!(pod.ns.sysctl("net.ipv4.conf.net1.rp_filter"), "0");
    assert_eq!(
        pod.ns.sysctl("net.ipv4.ipfrag_time"),
        "30",
        "null leaves the kernel default"
    );
    assert_eq!(
        pod.ns
            .sysctl("net.ipv4.ip_local_port_range")
            .split_whitespace()
            .collect::<Vec<_>>(),
        ["20000", "30000"]
    );
    assert_eq!(pod.ns.sysctl("net.ipv4.conf.net1.force_igmp_version"), "2");
    assert_eq!(lan.check(&pod, "net1", &custom, &result).status, 0);

    // The interface's own name overrides the IFNAME default just as well, for ADD and for CHECK.
    let mut literal = lan.config("1.0.0");
    literal["sysctl"] = json!({"net.ipv4.conf.net1.rp_filter": 0});
    let pod = lan.pod();
    let result = lan.add(&pod, "net1", &literal);
    assert_eq!(pod.ns.sysctl("net.ipv4.conf.net1.rp_filter"), "0");
    let reply = lan.check(&pod, "net1", &literal, &result);
    assert_eq!(reply.status, 0, "{reply}");

    for (key, needle) in [
        ("net.core.rmem_max", "host-wide"),
        ("kernel.hostname", "not a per-namespace network sysctl"),
        ("net.ipv4.conf.//.rp_filter", "not a sysctl key"),
    ] {
        let mut bad = lan.config("1.0.0");
        bad["sysctl"] = json!({key: "1"});
        let pod = lan.pod();
        let reply = lan.call(&Call::roslan("ADD", &pod.id, &pod.path(), "net1", &bad));
        assert_eq!(reply.code(), Some(7), "{key}: {reply}");
        assert!(
            reply.msg().contains(key) && reply.msg().contains(needle),
            "{key}: {reply}"
        );
        assert_eq!(pod.ns.links(), vec!["lo"]);
    }
    let mut missing = lan.config("1.0.0");
    missing["sysctl"] = json!({"net.ipv4.no_such_knob": "1"});
    let pod = lan.pod();
    let reply = lan.call(&Call::roslan("ADD", &pod.id, &pod.path(), "net1", &missing));
    // A key the kernel lacks is the configuration's mistake: code 7 naming it as written.
    assert_eq!(reply.code(), Some(7), "{reply}");
    assert!(reply.msg().contains("sysctl.net.ipv4.no_such_knob"), "{reply}");
    assert_eq!(pod.ns.links(), vec!["lo"], "rolled back");
}

#[root_test]
fn neighbours_hear_about_the_pod_at_once() {
    let lan = Lan::new();
    let mut conf = lan.config("1.0.0");
    conf["ipam"]["ranges"] = json!([
        [{"subnet": "10.77.0.0/16", "rangeStart": "10.77.1.10", "rangeEnd": "10.77.1.250"}],
        [{"subnet": "fd00:77::/64", "rangeStart": "fd00:77::10"}]
    ]);
    let mut capture = lan
        .host
        .command("tcpdump")
        .args(["-l", "-n", "-e", "-i", "lan0p", "arp or (icmp6 and ip6[40] == 136)"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("tcpdump (make test installs it)");
    std::thread::sleep(Duration::from_millis(500));
    let pod = lan.pod();
    let result = lan.add(&pod, "net1", &conf);
    std::thread::sleep(Duration::from_millis(500));
    let _ = capture.kill();
    let text = String::from_utf8_lossy(&capture.wait_with_output().unwrap().stdout).into_owned();
    let mac = result["interfaces"][0]["mac"].as_str().unwrap();
    let broadcast = format!("{mac} > ff:ff:ff:ff:ff:ff");
    assert!(
        text.lines()
            .any(|l| l.contains(&broadcast) && l.contains("who-has 10.77.1.10 tell 10.77.1.10")),
        "gratuitous ARP for the pod's address: {text}"
    );
    assert!(
        text.lines()
            .any(|l| l.contains(mac) && l.contains("neighbor advertisement, tgt is fd00:77::10")),
        "unsolicited NA: {text}"
    );
}

fn pod_args(ns: &str, name: &str) -> String {
    format!("IgnoreUnknown=1;K8S_POD_NAMESPACE={ns};K8S_POD_NAME={name};K8S_POD_INFRA_CONTAINER_ID=x;K8S_POD_UID=u")
}

#[root_test]
fn a_restarted_pod_keeps_its_mac() {
    let lan = Lan::new();
    let conf = lan.config("1.0.0");
    let add = |pod: &Pod, args: &str, conf: &Value| -> String {
        let reply = lan.call(&Call::roslan("ADD", &pod.id, &pod.path(), "net1", conf).args(args));
        assert_eq!(reply.status, 0, "{reply}");
        reply.json.unwrap()["interfaces"][0]["mac"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let first = lan.pod();
    let mac = add(&first, &pod_args("robots", "arm-0"), &conf);
    let byte0 = u8::from_str_radix(&mac[..2], 16).unwrap();
    assert_eq!(byte0 & 3, 2, "locally administered unicast: {mac}");
    lan.del(&first, "net1", &conf);
    let again = lan.pod();
    assert_eq!(
        add(&again, &pod_args("robots", "arm-0"), &conf),
        mac,
        "same pod name, new sandbox: same MAC"
    );
    assert_ne!(add(&lan.pod(), &pod_args("robots", "arm-1"), &conf), mac);
    assert_ne!(add(&lan.pod(), &pod_args("lab", "arm-0"), &conf), mac);
    // While the old sandbox still holds the MAC, the new one gets a random MAC rather than failing.
    let busy = add(&lan.pod(), &pod_args("robots", "arm-0"), &conf);
    assert_ne!(busy, mac);
    // An explicit MAC wins; stableMac off gives the kernel's random MACs.
    let mut explicit = conf.clone();
    explicit["mac"] = json!("02:00:00:00:00:42");
    assert_eq!(
        add(&lan.pod(), &pod_args("robots", "arm-9"), &explicit),
        "02:00:00:00:00:42"
    );
    let mut off = conf.clone();
    off["stableMac"] = json!(false);
    let a = add(&lan.pod(), &pod_args("robots", "arm-8"), &off);
    let b = add(&lan.pod(), &pod_args("robots", "arm-8"), &off);
    assert_ne!(a, b);
}

#[root_test]
fn master_subnet_picks_the_right_interface() {
    let lan = Lan::new();
    // A second network on the node: its own veth and a host behind it.
    let other = Netns::new("other");
    lan.node.ip(&[
        "link",
        "add",
        "wan0",
        "type",
        "veth",
        "peer",
        "name",
        "wan0p",
        "netns",
        other.name(),
    ]);
    lan.node.ip(&["addr", "add", "172.20.0.1/24", "dev", "wan0"]);
    lan.node.ip(&["link", "set", "wan0", "up"]);
    other.ip(&["addr", "add", "172.20.0.254/24", "dev", "wan0p"]);
    other.ip(&["link", "set", "wan0p", "up"]);
    let mut conf = lan.config("1.0.0");
    conf.as_object_mut().unwrap().remove("master");
    conf["masterSubnet"] = json!("10.77.0.0/16");
    let pod = lan.pod();
    lan.add(&pod, "net1", &conf);
    assert!(
        pod.ns.exec("ping", &["-c1", "-W2", HOST_ADDR]).status.success(),
        "net1 sits on the LAN (lan0)"
    );

    let mut wan = lan.config("1.0.0");
    wan.as_object_mut().unwrap().remove("master");
    wan["masterSubnet"] = json!("172.20.0.0/24");
    wan["ipam"] = json!({"type": "host-local", "dataDir": lan.dir().join("wan"), "ranges": [[{"subnet": "172.20.0.0/24", "rangeStart": "172.20.0.10"}]]});
    let pod = lan.pod();
    lan.add(&pod, "net1", &wan);
    assert!(
        pod.ns.exec("ping", &["-c1", "-W2", "172.20.0.254"]).status.success(),
        "net1 sits on wan0"
    );

    let mut nowhere = conf.clone();
    nowhere["masterSubnet"] = json!("192.168.99.0/24");
    let pod = lan.pod();
    let reply = lan.call(&Call::roslan("ADD", &pod.id, &pod.path(), "net1", &nowhere));
    assert_eq!(reply.code(), Some(102), "{reply}");
    assert!(
        reply.msg().contains("192.168.99.0/24") && reply.msg().contains("wan0 172.20.0.1/24"),
        "{reply}"
    );
    let mut both = lan.config("1.0.0");
    both["masterSubnet"] = json!("10.77.0.0/16");
    assert_eq!(
        lan.call(&Call::roslan("ADD", &pod.id, &pod.path(), "net1", &both))
            .code(),
        Some(7)
    );
}

#[root_test]
fn a_wireless_master_is_refused_with_the_way_out() {
    // No Wi-Fi hardware here: the plugin runs in a private mount namespace where the master's sysfs
    // directory is replaced by one that has the `wireless` entry cfg80211 creates for Wi-Fi devices.
    let lan = Lan::new();
    let fake = lan.dir().join("fake-sysfs-lan0");
    std::fs::create_dir_all(fake.join("wireless")).unwrap();
    let script = format!(
        "mount --bind {} /sys/devices/virtual/net/{MASTER} && exec \"$0\"",
        fake.display()
    );
    let pod = lan.pod();
    let mut call = Call::roslan("ADD", &pod.id, &pod.path(), "net1", &lan.config("1.0.0"));
    call.wrapper = vec!["unshare".into(), "-m".into(), "sh".into(), "-c".into(), script];
    let reply = lan.call(&call);
    assert_eq!(reply.code(), Some(102), "{reply}");
    assert!(
        reply.msg().contains("wireless") && reply.msg().contains("ipvlan"),
        "{reply}"
    );
    assert_eq!(pod.ns.links(), vec!["lo"]);
    // Without the fake, the same call succeeds: the refusal came from the sysfs entry alone.
    let reply = lan.call(&Call::roslan("ADD", &pod.id, &pod.path(), "net1", &lan.config("1.0.0")));
    assert_eq!(reply.status, 0, "{reply}");
}
