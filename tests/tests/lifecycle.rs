//! ADD, CHECK and DEL through the real binary, including every way a DEL must still succeed.

use roslan_tests::Lan;
use roslan_tests::lan::{HOST_ADDR, MASTER};
use roslan_tests::plugin::Call;
use roslan_tests::root_test;
use serde_json::json;

#[root_test]
fn add_check_del_round_trip() {
    let lan = Lan::new();
    let pod = lan.pod();
    let conf = lan.config("1.0.0");
    let result = lan.add(&pod, "net1", &conf);
    let addr = result["ips"][0]["address"].as_str().unwrap().to_string();

    let link = pod.ns.link("net1").expect("net1 exists");
    assert_eq!(link["linkinfo"]["info_kind"], "macvlan");
    assert_eq!(link["linkinfo"]["info_data"]["mode"], "bridge");
    assert!(link["flags"].as_array().unwrap().contains(&json!("UP")));
    assert_eq!(pod.ns.addresses("net1"), vec![addr.clone()]);
    let mroute = pod
        .ns
        .routes("-4")
        .into_iter()
        .find(|r| r["dst"] == "224.0.0.0/4")
        .expect("multicast route");
    assert_eq!(mroute["dev"], "net1");
    assert!(
        mroute.get("gateway").is_none(),
        "multicast route must have no gateway: {mroute}"
    );
    assert_eq!(mroute["scope"], "link");
    assert_eq!(pod.ns.sysctl("net.ipv4.conf.net1.arp_notify"), "1");
    assert_eq!(
        lan.reservations("ros-lan"),
        vec![addr.split('/').next().unwrap().to_string()]
    );

    let reply = lan.check(&pod, "net1", &conf, &result);
    assert_eq!(reply.status, 0, "CHECK right after ADD passes: {reply}");

    lan.del(&pod, "net1", &conf);
    assert!(!pod.ns.has_link("net1"));
    assert!(lan.reservations("ros-lan").is_empty());
}

#[root_test]
fn check_names_what_is_broken() {
    let lan = Lan::new();
    let pod = lan.pod();
    let conf = lan.config("0.4.0");
    let result = lan.add(&pod, "net1", &conf);
    let addr = result["ips"][0]["address"].as_str().unwrap().to_string();

    pod.ns
        .ip(&["route", "replace", "224.0.0.0/4", "via", HOST_ADDR, "dev", "net1"]);
    let reply = lan.check(&pod, "net1", &conf, &result);
    assert_eq!(reply.code(), Some(107), "{reply}");
    assert!(reply.msg().contains("has gateway"), "{reply}");
    pod.ns
        .ip(&["route", "replace", "224.0.0.0/4", "dev", "net1", "scope", "link"]);
    assert_eq!(lan.check(&pod, "net1", &conf, &result).status, 0);

    pod.ns.ip(&["addr", "del", &addr, "dev", "net1"]);
    let reply = lan.check(&pod, "net1", &conf, &result);
    assert!(reply.msg().contains(&format!("address {addr} is missing")), "{reply}");
    pod.ns.ip(&["addr", "add", &addr, "dev", "net1"]);

    std::fs::remove_file(lan.data_dir().join("ros-lan").join(addr.split('/').next().unwrap())).unwrap();
    let reply = lan.check(&pod, "net1", &conf, &result);
    assert!(reply.msg().contains("no address reservation"), "{reply}");

    pod.ns.ip(&["link", "del", "net1"]);
    let reply = lan.check(&pod, "net1", &conf, &result);
    assert!(reply.msg().contains("does not exist"), "{reply}");

    let mut old = conf.clone();
    old["cniVersion"] = json!("0.3.1");
    let reply = lan.check(&pod, "net1", &old, &result);
    assert_eq!(reply.code(), Some(1), "CHECK needs 0.4.0: {reply}");
    let reply = lan.call(&Call::roslan("CHECK", &pod.id, &pod.path(), "net1", &conf));
    assert_eq!(reply.code(), Some(7), "CHECK without prevResult: {reply}");
}

#[root_test]
fn repeat_add_is_refused_and_changes_nothing() {
    let lan = Lan::new();
    let pod = lan.pod();
    let conf = lan.config("1.0.0");
    let first = lan.add(&pod, "net1", &conf);
    let before = (
        pod.ns.link("net1").unwrap()["address"].clone(),
        pod.ns.addresses("net1"),
        lan.reservations("ros-lan"),
    );
    let reply = lan.call(&Call::roslan("ADD", &pod.id, &pod.path(), "net1", &conf));
    assert_eq!(reply.code(), Some(101), "{reply}");
    assert!(reply.msg().contains("already exists"), "{reply}");
    let after = (
        pod.ns.link("net1").unwrap()["address"].clone(),
        pod.ns.addresses("net1"),
        lan.reservations("ros-lan"),
    );
    assert_eq!(before, after);
    assert_eq!(pod.ns.links().len(), 2, "no temporary link left: {:?}", pod.ns.links());
    assert_eq!(lan.check(&pod, "net1", &conf, &first).status, 0);
}

#[root_test]
fn del_succeeds_whatever_is_already_gone() {
    let lan = Lan::new();
    let conf = lan.config("1.0.0");

    // Twice.
    let pod = lan.pod();
    lan.add(&pod, "net1", &conf);
    lan.del(&pod, "net1", &conf);
    lan.del(&pod, "net1", &conf);

    // With the namespace deleted: the reservation is still released.
    let pod = lan.pod();
    lan.add(&pod, "net1", &conf);
    let path = pod.path();
    let id = pod.id.clone();
    drop(pod);
    let reply = lan.call(&Call::roslan("DEL", &id, &path, "net1", &conf));
    assert_eq!(reply.status, 0, "{reply}");
    assert!(lan.reservations("ros-lan").is_empty());

    // With an empty CNI_NETNS.
    let pod = lan.pod();
    lan.add(&pod, "net1", &conf);
    let reply = lan.call(&Call::roslan("DEL", &pod.id, "", "net1", &conf));
    assert_eq!(reply.status, 0, "{reply}");
    assert!(lan.reservations("ros-lan").is_empty());
    lan.del(&pod, "net1", &conf);
    assert!(!pod.ns.has_link("net1"));

    // For a container never added, with a namespace path that never existed.
    let reply = lan.call(&Call::roslan(
        "DEL",
        "never-added",
        "/run/netns/does-not-exist",
        "net1",
        &conf,
    ));
    assert_eq!(reply.status, 0, "{reply}");

    // With CNI_ARGS no parser likes (Multus' IP=a,b with prefixes) and a cniVersion from the future.
    let pod = lan.pod();
    lan.add(&pod, "net1", &conf);
    let mut future = conf.clone();
    future["cniVersion"] = json!("7.0.0");
    let reply =
        lan.call(&Call::roslan("DEL", &pod.id, &pod.path(), "net1", &future).args("IP=10.77.1.10/16,garbage;junk"));
    assert_eq!(reply.status, 0, "{reply}");
    assert!(!pod.ns.has_link("net1"));
    assert!(lan.reservations("ros-lan").is_empty());

    // After the master is gone (a pod must not stay Terminating because a NIC was unplugged).
    let pod = lan.pod();
    lan.add(&pod, "net1", &conf);
    lan.node.ip(&["link", "del", MASTER]);
    let reply = lan.call(&Call::roslan("DEL", &pod.id, &pod.path(), "net1", &conf));
    assert_eq!(reply.status, 0, "{reply}");
    assert!(lan.reservations("ros-lan").is_empty());
}

#[root_test]
fn del_leaves_links_roslan_did_not_create() {
    let lan = Lan::new();
    let pod = lan.pod();
    pod.ns
        .ip(&["link", "add", "net1", "type", "veth", "peer", "name", "other"]);
    let conf = lan.config("1.0.0");
    let reply = lan.call(&Call::roslan("ADD", &pod.id, &pod.path(), "net1", &conf));
    assert_eq!(reply.code(), Some(101), "{reply}");
    // The runtime follows a failed ADD with DEL; that must not take the other plugin's link.
    lan.del(&pod, "net1", &conf);
    assert!(pod.ns.has_link("net1"));
    assert!(lan.reservations("ros-lan").is_empty());
}

#[root_test]
fn chained_after_another_plugin_keeps_its_result() {
    let lan = Lan::new();
    let pod = lan.dual_homed_pod();
    let mut conf = lan.config("1.0.0");
    conf["prevResult"] = json!({
        "cniVersion": "1.0.0",
        "interfaces": [{"name": "eth0", "mac": "02:11:22:33:44:55", "sandbox": pod.path()}],
        "ips": [{"interface": 0, "address": "10.244.1.2/24", "gateway": "10.244.1.1"}],
        "routes": [{"dst": "0.0.0.0/0", "gw": "10.244.1.1"}],
        "dns": {"nameservers": ["10.152.183.10"]}
    });
    let result = lan.add(&pod, "net1", &conf);
    assert_eq!(result["interfaces"][0]["name"], "eth0");
    assert_eq!(result["interfaces"][1]["name"], "net1");
    assert_eq!(result["ips"][0]["address"], "10.244.1.2/24");
    assert_eq!(result["ips"][1]["interface"], 1);
    assert_eq!(result["routes"][0]["dst"], "0.0.0.0/0");
    assert_eq!(result["routes"][1]["dst"], "224.0.0.0/4");
    assert_eq!(result["dns"]["nameservers"], json!(["10.152.183.10"]));
}

#[root_test]
fn mac_mtu_mode_and_master_choice() {
    let lan = Lan::new();
    let mut conf = lan.config("1.0.0");
    conf["mac"] = json!("02:00:00:00:00:0a");
    conf["mtu"] = json!(1400);
    conf["mode"] = json!("private");
    let pod = lan.pod();
    let result = lan.add(&pod, "net1", &conf);
    let link = pod.ns.link("net1").unwrap();
    assert_eq!(link["address"], "02:00:00:00:00:0a");
    assert_eq!(result["interfaces"][0]["mac"], "02:00:00:00:00:0a");
    assert_eq!(link["mtu"], 1400);
    assert_eq!(link["linkinfo"]["info_data"]["mode"], "private");

    // CNI_ARGS MAC= overrides `mac`; runtimeConfig.mac overrides both.
    let pod = lan.pod();
    let reply = lan.call(&Call::roslan("ADD", &pod.id, &pod.path(), "net1", &conf).args("MAC=02:00:00:00:00:0b"));
    assert_eq!(reply.status, 0, "{reply}");
    assert_eq!(pod.ns.link("net1").unwrap()["address"], "02:00:00:00:00:0b");
    let pod = lan.pod();
    let mut rc = conf.clone();
    rc["runtimeConfig"] = json!({"mac": "02:00:00:00:00:0c"});
    let reply = lan.call(&Call::roslan("ADD", &pod.id, &pod.path(), "net1", &rc).args("MAC=02:00:00:00:00:0d"));
    assert_eq!(reply.status, 0, "{reply}");
    assert_eq!(pod.ns.link("net1").unwrap()["address"], "02:00:00:00:00:0c");

    // Too large an MTU is a configuration error that names the master's MTU.
    let mut big = lan.config("1.0.0");
    big["mtu"] = json!(9000);
    let pod = lan.pod();
    let reply = lan.call(&Call::roslan("ADD", &pod.id, &pod.path(), "net1", &big));
    assert_eq!(reply.code(), Some(7), "{reply}");
    assert!(reply.msg().contains("1500"), "{reply}");

    // Without `master`, the node's default-route interface is used.
    let mut auto = lan.config("1.0.0");
    auto.as_object_mut().unwrap().remove("master");
    let pod = lan.pod();
    lan.add(&pod, "net1", &auto);
    assert!(pod.ns.has_link("net1"));
}

#[root_test]
fn dual_stack_addresses_are_usable_at_once() {
    let lan = Lan::new();
    let mut conf = lan.config("1.0.0");
    conf["ipam"]["ranges"] = json!([
        [{"subnet": "10.77.0.0/16", "rangeStart": "10.77.1.10", "rangeEnd": "10.77.1.250"}],
        [{"subnet": "fd00:77::/64", "rangeStart": "fd00:77::10", "rangeEnd": "fd00:77::ff"}]
    ]);
    let pod = lan.pod();
    let result = lan.add(&pod, "net1", &conf);
    assert_eq!(result["ips"][0]["address"], "10.77.1.10/16");
    assert_eq!(result["ips"][0]["gateway"], "10.77.0.1");
    assert_eq!(result["ips"][1]["address"], "fd00:77::10/64");
    assert_eq!(result["ips"][1]["gateway"], "fd00:77::1");
    let v6 = pod
        .ns
        .ip_json(&["-6", "addr", "show", "dev", "net1", "scope", "global"]);
    let info = &v6[0]["addr_info"][0];
    assert_eq!(info["local"], "fd00:77::10");
    assert!(
        info.get("tentative").is_none(),
        "no duplicate address detection wait: {info}"
    );
    assert_eq!(info["nodad"], true, "{info}");
    let mut prev = conf.clone();
    prev["prevResult"] = result.clone();
    let reply = lan.call(&Call::roslan("CHECK", &pod.id, &pod.path(), "net1", &prev));
    assert_eq!(reply.status, 0, "{reply}");
    assert_eq!(lan.reservations("ros-lan"), vec!["10.77.1.10", "fd00:77::10"]);
    lan.del(&pod, "net1", &conf);
    assert!(lan.reservations("ros-lan").is_empty());
}
