//! IPAM through the roslan plugin in real namespaces: comma lists in IP=, GC and STATUS, per-node
//! slices across two nodes, delegation to other IPAM plugins, the ARP probe and IPv6 DAD.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use roslan_tests::lan::{HOST_ADDR, MASTER};
use roslan_tests::netns::sh;
use roslan_tests::plugin::{Call, REFERENCE_DIR, Reference, Reply, result_ip, roslan_bin};
use roslan_tests::root_test;
use roslan_tests::{Lan, MultiNodeLan, Pod};
use serde_json::{Value, json};

#[root_test]
fn multus_two_address_request_on_add_and_del() {
    let lan = Lan::new();
    let mut conf = lan.config("0.3.1");
    conf["ipam"]["ranges"] = json!([
        [{"subnet": "10.77.0.0/16", "rangeStart": "10.77.1.10", "rangeEnd": "10.77.1.250"}],
        [{"subnet": "fd00:77::/64"}]
    ]);
    let args = format!(
        "IgnoreUnknown=true;K8S_POD_NAMESPACE=robots;K8S_POD_NAME=arm;K8S_POD_INFRA_CONTAINER_ID={};K8S_POD_UID=u1;IP=10.77.1.77/16,fd00:77::77/64",
        "x"
    );
    let pod = lan.pod();
    let reply = lan.call(&Call::roslan("ADD", &pod.id, &pod.path(), "net1", &conf).args(&args));
    assert_eq!(reply.status, 0, "{reply}");
    let mut addresses = pod.ns.addresses("net1");
    addresses.sort();
    assert_eq!(addresses, vec!["10.77.1.77/16", "fd00:77::77/64"]);
    let reply = lan.call(&Call::roslan("DEL", &pod.id, &pod.path(), "net1", &conf).args(&args));
    assert_eq!(reply.status, 0, "{reply}");
    assert!(lan.reservations("ros-lan").is_empty());
}

#[root_test]
fn status_and_gc_through_the_plugin() {
    let lan = Lan::new();
    let mut conf = lan.config("1.1.0");
    conf["ipam"]["ranges"] =
        json!([[{"subnet": "10.77.0.0/16", "rangeStart": "10.77.1.10", "rangeEnd": "10.77.1.12"}]]);
    let status = |conf: &Value| lan.call(&Call::roslan("STATUS", "", "", "", conf));
    assert_eq!(status(&conf).status, 0, "{}", status(&conf));
    let pods: Vec<Pod> = (0..3).map(|_| lan.pod()).collect();
    for pod in &pods {
        lan.add(pod, "net1", &conf);
    }
    let reply = status(&conf);
    assert_eq!(reply.code(), Some(50), "{reply}");
    let mut gone = conf.clone();
    gone["master"] = json!("eth9");
    let reply = status(&gone);
    assert_eq!(reply.code(), Some(50), "{reply}");
    assert!(reply.msg().contains("eth9"), "{reply}");

    let mut gc = conf.clone();
    gc["cni.dev/valid-attachments"] = json!([
        {"containerID": pods[0].id, "ifname": "net1"},
        {"containerID": pods[1].id, "ifname": "net1"}
    ]);
    let reply = lan.call(&Call::roslan("GC", "", "", "", &gc));
    assert_eq!(reply.status, 0, "{reply}");
    assert_eq!(lan.reservations("ros-lan").len(), 2);
    assert!(
        pods[2].ns.has_link("net1"),
        "GC releases reservations only; the runtime deletes namespaces"
    );
    assert_eq!(status(&conf).status, 0);
}

#[root_test]
fn node_ranges_keep_two_nodes_apart() {
    let lan = MultiNodeLan::new(3);
    let slices = json!({
        "robot-1": [[{"subnet": "10.77.0.0/16", "rangeStart": "10.77.1.10", "rangeEnd": "10.77.1.19"}]],
        "robot-2": [[{"subnet": "10.77.0.0/16", "rangeStart": "10.77.2.10", "rangeEnd": "10.77.2.19"}]]
    });
    // One NetworkAttachmentDefinition for the cluster. Each node has its own data directory (its own
    // disk) and its own name: robot-1 from the file the installer writes, robot-2 from its host name.
    let name_file = lan.dir().join("node-name");
    std::fs::write(&name_file, "robot-1\n").unwrap();
    let conf_for = |node: usize| {
        json!({
            "cniVersion": "0.3.1", "name": "ros-lan", "type": "roslan", "master": MASTER,
            "ipam": {"type": "host-local", "dataDir": lan.dir().join(format!("node{node}")),
                     "nodeNameFile": if node == 0 { name_file.clone() } else { lan.dir().join("absent") },
                     "nodeRanges": slices}
        })
    };
    let hostname = |name: &str| {
        vec![
            "unshare".into(),
            "--uts".into(),
            "sh".into(),
            "-c".into(),
            format!("hostname {name} && exec \"$0\""),
        ]
    };
    let add = |node: usize, pod: &Pod| -> Reply {
        let mut call = Call::roslan("ADD", &pod.id, &pod.path(), "net1", &conf_for(node));
        if node > 0 {
            call.wrapper = hostname(&format!("robot-{}", node + 1));
        }
        call.run_in(&lan.nodes[node])
    };
    let mut pods = Vec::new();
    for node in [0, 1, 0, 1, 0, 1] {
        let pod = Pod::new();
        let reply = add(node, &pod);
        assert_eq!(reply.status, 0, "{reply}");
        let ip = result_ip(reply.json.as_ref().unwrap(), 0);
        let slice = if node == 0 { "10.77.1." } else { "10.77.2." };
        assert!(ip.starts_with(slice), "node {node} handed out {ip}, outside its slice");
        pods.push((pod, ip));
    }
    // Pods on different nodes reach each other over the LAN.
    let to = pods[1].1.clone();
    assert!(
        pods[0].0.ns.exec("ping", &["-c1", "-W2", &to]).status.success(),
        "cross-node ping to {to}"
    );

    // A node with no slice and no fallback range is refused, naming itself.
    let pod = Pod::new();
    let reply = add(2, &pod);
    assert_eq!(reply.code(), Some(7), "{reply}");
    assert!(reply.msg().contains("robot-3"), "{reply}");

    // Overlapping slices are a configuration error.
    let mut overlapping = conf_for(0);
    overlapping["ipam"]["nodeRanges"]["robot-2"] =
        json!([[{"subnet": "10.77.0.0/16", "rangeStart": "10.77.1.15", "rangeEnd": "10.77.1.30"}]]);
    let reply = Call::roslan("ADD", &pod.id, &pod.path(), "net1", &overlapping).run_in(&lan.nodes[0]);
    assert_eq!(reply.code(), Some(7), "{reply}");
    assert!(reply.msg().contains("overlap"), "{reply}");

    // Negative control: the reference plugins (both builds) with one shared range hand out the same
    // address on both nodes.
    for (k, reference) in Reference::all().iter().enumerate() {
        let shared = |node: usize| {
            json!({"cniVersion": "0.3.1", "name": "ros-lan", "type": "macvlan", "master": MASTER,
                   "ipam": {"type": "host-local", "dataDir": lan.dir().join(format!("ref{k}-{node}")),
                            "ranges": [[{"subnet": "10.77.0.0/16", "rangeStart": "10.77.3.10", "rangeEnd": "10.77.3.19"}]]}})
        };
        let firsts: Vec<String> = (0..2)
            .map(|node| {
                let pod = Pod::new();
                let reply = reference
                    .call("macvlan", "ADD", &pod.id, &pod.path(), "net1", &shared(node))
                    .run_in(&lan.nodes[node]);
                assert_eq!(reply.status, 0, "{}: {reply}", reference.name);
                result_ip(reply.json.as_ref().unwrap(), 0)
            })
            .collect();
        assert_eq!(
            firsts[0], firsts[1],
            "{}: host-local alone gives both nodes the same address",
            reference.name
        );
    }
}

/// A CNI_PATH directory for delegation tests, with a fake IPAM plugin that records what it is asked.
struct Delegates {
    dir: PathBuf,
}

impl Delegates {
    fn new(lan: &Lan) -> Delegates {
        let dir = lan.dir().join("cni-bin");
        std::fs::create_dir_all(&dir).unwrap();
        // The reference host-local under another name, so roslan delegates instead of serving it.
        std::os::unix::fs::symlink(Reference::upstream().bin("host-local"), dir.join("ref-host-local")).unwrap();
        let fake = dir.join("recording-ipam");
        std::fs::write(
            &fake,
            format!(
                r#"#!/bin/sh
stdin=$(cat)
echo "$CNI_COMMAND $CNI_CONTAINERID $CNI_IFNAME" >> {log}
case "$stdin" in *prevResult*) echo "  with prevResult" >> {log};; esac
case "$CNI_COMMAND" in
  ADD) echo '{{"cniVersion":"1.1.0","ips":[{{"address":"10.77.9.9/16","gateway":"{HOST_ADDR}"}}],"routes":[{{"dst":"10.99.0.0/16"}}],"dns":{{"nameservers":["10.77.0.53"]}}}}';;
esac
exit 0
"#,
                log = dir.join("log").display()
            ),
        )
        .unwrap();
        let failing = dir.join("failing-ipam");
        std::fs::write(&failing, "#!/bin/sh\ncat >/dev/null\necho '{\"cniVersion\":\"1.0.0\",\"code\":42,\"msg\":\"pool unreachable\",\"details\":\"api server down\"}'\nexit 1\n").unwrap();
        for script in [&fake, &failing] {
            std::fs::set_permissions(script, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        Delegates { dir }
    }

    fn cni_path(&self) -> String {
        format!("{}:{REFERENCE_DIR}", self.dir.display())
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("log")).unwrap_or_default()
    }
}

fn delegated_call(lan: &Lan, delegates: &Delegates, command: &str, pod: &Pod, conf: &Value) -> Reply {
    let mut call = Call::new(roslan_bin(), command, &pod.id, &pod.path(), "net1", conf);
    call.cni_path = delegates.cni_path();
    lan.call(&call)
}

#[root_test]
fn delegation_to_other_ipam_plugins() {
    let lan = Lan::new();
    let delegates = Delegates::new(&lan);
    // Debian's reference plugins (1.1.1) speak CNI up to 1.0.0.
    let base = lan.config("1.0.0");

    // The reference static plugin.
    let mut conf = base.clone();
    conf["ipam"] = json!({"type": "static", "addresses": [{"address": "10.77.5.5/16", "gateway": HOST_ADDR}], "routes": [{"dst": "10.99.0.0/16"}]});
    let pod = lan.pod();
    let reply = delegated_call(&lan, &delegates, "ADD", &pod, &conf);
    assert_eq!(reply.status, 0, "{reply}");
    assert_eq!(pod.ns.addresses("net1"), vec!["10.77.5.5/16"]);
    let route = pod
        .ns
        .routes("-4")
        .into_iter()
        .find(|r| r["dst"] == "10.99.0.0/16")
        .expect("route from the delegate");
    assert_eq!(
        route["gateway"], HOST_ADDR,
        "a delegate's route without gw gets the gateway, as with the reference plugins"
    );
    let mut check = conf.clone();
    check["prevResult"] = reply.json.clone().unwrap();
    assert_eq!(delegated_call(&lan, &delegates, "CHECK", &pod, &check).status, 0);
    assert_eq!(delegated_call(&lan, &delegates, "DEL", &pod, &conf).status, 0);
    assert!(!pod.ns.has_link("net1"));

    // The reference host-local, delegated: its files, its DEL.
    let mut conf = base.clone();
    conf["ipam"]["type"] = json!("ref-host-local");
    let pod = lan.pod();
    let reply = delegated_call(&lan, &delegates, "ADD", &pod, &conf);
    assert_eq!(reply.status, 0, "{reply}");
    let ip = result_ip(reply.json.as_ref().unwrap(), 0);
    assert_eq!(lan.reservations("ros-lan"), vec![ip.clone()]);
    assert_eq!(delegated_call(&lan, &delegates, "DEL", &pod, &conf).status, 0);
    assert!(lan.reservations("ros-lan").is_empty());

    // A step after the delegate's ADD fails: the delegate's DEL gives the address back.
    let mut bad_route = conf.clone();
    bad_route["ipam"]["routes"] = json!([{"dst": "192.0.2.0/24", "gw": "198.51.100.1"}]);
    let pod = lan.pod();
    let reply = delegated_call(&lan, &delegates, "ADD", &pod, &bad_route);
    assert_eq!(reply.code(), Some(100), "{reply}");
    assert!(
        lan.reservations("ros-lan").is_empty(),
        "the delegate's DEL released the address"
    );
    assert_eq!(pod.ns.links(), vec!["lo".to_string()]);

    // A delegate that fails: its code and message reach the runtime; nothing is left behind.
    let mut failing = base.clone();
    failing["ipam"] = json!({"type": "failing-ipam"});
    let reply = delegated_call(&lan, &delegates, "ADD", &pod, &failing);
    assert_eq!(reply.code(), Some(42), "{reply}");
    assert!(reply.msg().contains("pool unreachable"), "{reply}");
    assert_eq!(reply.json.as_ref().unwrap()["details"], "api server down");
    assert_eq!(pod.ns.links(), vec!["lo".to_string()]);

    // A delegate that is not installed: ADD says so; DEL succeeds anyway.
    let mut missing = base.clone();
    missing["ipam"] = json!({"type": "whereabouts"});
    let reply = delegated_call(&lan, &delegates, "ADD", &pod, &missing);
    assert!(reply.msg().contains("failed to find plugin \"whereabouts\""), "{reply}");
    assert_eq!(delegated_call(&lan, &delegates, "DEL", &pod, &missing).status, 0);
    let mut traversal = base.clone();
    traversal["ipam"] = json!({"type": "../../bin/true"});
    assert_eq!(
        delegated_call(&lan, &delegates, "ADD", &pod, &traversal).code(),
        Some(7)
    );

    // Every command is forwarded, CHECK with the prevResult (STATUS and GC need 1.1.0).
    let mut recording = lan.config("1.1.0");
    recording["ipam"] = json!({"type": "recording-ipam"});
    let reply = delegated_call(&lan, &delegates, "ADD", &pod, &recording);
    assert_eq!(reply.status, 0, "{reply}");
    assert_eq!(
        reply.json.as_ref().unwrap()["dns"]["nameservers"],
        json!(["10.77.0.53"])
    );
    let mut check = recording.clone();
    check["prevResult"] = reply.json.clone().unwrap();
    assert_eq!(delegated_call(&lan, &delegates, "CHECK", &pod, &check).status, 0);
    let mut gc = recording.clone();
    gc["cni.dev/valid-attachments"] = json!([]);
    let mut status_call = Call::new(roslan_bin(), "STATUS", "", "", "", &recording);
    status_call.cni_path = delegates.cni_path();
    assert_eq!(lan.call(&status_call).status, 0);
    let mut gc_call = Call::new(roslan_bin(), "GC", "", "", "", &gc);
    gc_call.cni_path = delegates.cni_path();
    assert_eq!(lan.call(&gc_call).status, 0);
    assert_eq!(delegated_call(&lan, &delegates, "DEL", &pod, &recording).status, 0);
    let log = delegates.log();
    let commands: Vec<&str> = log
        .lines()
        .filter(|l| !l.starts_with(' '))
        .map(|l| l.split(' ').next().unwrap())
        .collect();
    assert_eq!(commands, ["ADD", "CHECK", "STATUS", "GC", "DEL"], "{log}");
    assert!(log.contains("CHECK") && log.contains("  with prevResult"), "{log}");
}

fn mac_of(ns: &roslan_tests::netns::Netns, dev: &str) -> String {
    ns.link(dev).unwrap()["address"].as_str().unwrap().to_string()
}

fn file(lan_data: &Path, ip: &str) -> String {
    std::fs::read_to_string(lan_data.join("ros-lan").join(ip)).unwrap_or_default()
}

#[root_test]
fn arp_probe_skips_an_address_a_lan_host_owns() {
    let lan = Lan::new();
    // A device roslan does not manage already uses the first address of the range. It accepts
    // gratuitous ARP for unknown neighbours, so the announcement shows in its neighbour table.
    lan.host.ip(&["addr", "add", "10.77.1.10/16", "dev", "lan0p"]);
    sh(
        "ip",
        &[
            "netns",
            "exec",
            lan.host.name(),
            "sysctl",
            "-qw",
            "net.ipv4.conf.lan0p.arp_accept=1",
        ],
    );
    let mut conf = lan.config("1.0.0");
    conf["ipam"]["probe"] = json!(true);
    let pod = lan.pod();
    let result = lan.add(&pod, "net1", &conf);
    assert_eq!(result_ip(&result, 0), "10.77.1.11");
    assert_eq!(
        file(&lan.data_dir(), "10.77.1.10"),
        format!("foreign-host\r\n{}", mac_of(&lan.host, "lan0p"))
    );
    // The LAN host learnt the pod's address from the announcement.
    let pod_mac = mac_of(&pod.ns, "net1");
    let neighbours = sh("ip", &["-n", lan.host.name(), "neigh", "show", "10.77.1.11"]);
    assert!(
        neighbours.contains(&pod_mac),
        "gratuitous ARP reached the LAN: {neighbours:?}"
    );

    // A second pod skips the foreign address without probing it again.
    let other = lan.pod();
    assert_eq!(result_ip(&lan.add(&other, "net1", &conf), 0), "10.77.1.12");

    // Without the probe, the reference behaviour: the conflicting address is handed out.
    let mut plain = lan.config("1.0.0");
    plain["ipam"]["dataDir"] = json!(lan.dir().join("plain"));
    let third = lan.pod();
    assert_eq!(result_ip(&lan.add(&third, "net1", &plain), 0), "10.77.1.10");

    // GC forgets the foreign mark (it will be probed again), keeping the listed attachments.
    let mut gc = lan.config("1.1.0");
    gc["ipam"]["probe"] = json!(true);
    gc["cni.dev/valid-attachments"] =
        json!([{"containerID": pod.id, "ifname": "net1"}, {"containerID": other.id, "ifname": "net1"}]);
    assert_eq!(lan.call(&Call::roslan("GC", "", "", "", &gc)).status, 0);
    assert_eq!(lan.reservations("ros-lan"), vec!["10.77.1.11", "10.77.1.12"]);
}

#[root_test]
fn ipv6_dad_when_asked_replaces_a_defended_address() {
    let lan = Lan::new();
    lan.host.ip(&["addr", "add", "fd00:77::10/64", "dev", "lan0p", "nodad"]);
    let mut conf = lan.config("1.0.0");
    conf["ipam"]["ranges"] =
        json!([[{"subnet": "fd00:77::/64", "rangeStart": "fd00:77::10", "rangeEnd": "fd00:77::ff"}]]);
    conf["ipam"]["dad"] = json!(true);
    let pod = lan.pod();
    let result = lan.add(&pod, "net1", &conf);
    assert_eq!(result_ip(&result, 0), "fd00:77::11");
    assert_eq!(file(&lan.data_dir(), "fd00:77::10"), "foreign-host\r\nipv6-dad");
    let v6 = pod
        .ns
        .ip_json(&["-6", "addr", "show", "dev", "net1", "scope", "global"]);
    let info = &v6[0]["addr_info"][0];
    assert_eq!(info["local"], "fd00:77::11");
    assert!(
        info.get("tentative").is_none() && info.get("nodad").is_none(),
        "DAD ran and finished: {info}"
    );
}
