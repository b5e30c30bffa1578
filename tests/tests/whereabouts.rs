//! roslan delegating to the real whereabouts (the pinned peer) against a real API server, on three nodes
//! of one LAN: installed from whereabouts' own manifests (its CRDs, its service account and ClusterRole),
//! concurrent ADDs on every node hand out no address twice, each address answers ARP from one MAC, DEL
//! gives every address back to the pool; and with the API server stopped, a pod cannot start at all
//! (whereabouts retries for two minutes before it gives up), where `nodeBlocks` goes on from the blocks a
//! node holds (tests/multinode.rs). Latencies are measured by `make bench`, not here.

use std::collections::BTreeMap;
use std::time::Duration;

use roslan_tests::apiserver::{ControlPlane, Options};
use roslan_tests::cluster::{install_whereabouts, whereabouts_config};
use roslan_tests::forward::Forward;
use roslan_tests::lan::SUBNET;
use roslan_tests::plugin::{Call, Reply, result_ip};
use roslan_tests::root_test;
use roslan_tests::{MultiNodeLan, Pod, peer};
use serde_json::Value;

fn call(lan: &MultiNodeLan, node: usize, command: &str, pod: &Pod, name: &str, conf: &Value) -> Reply {
    let mut call = Call::roslan(command, &pod.id, &pod.path(), "net1", conf).args(&format!(
        "IgnoreUnknown=true;K8S_POD_NAMESPACE=robots;K8S_POD_NAME={name}"
    ));
    call.cni_path = peer("whereabouts").bin_dir().to_string_lossy().into_owned();
    call.run_in_within(&lan.nodes[node], Duration::from_secs(150))
}

/// The IPPool's allocations: address offset to pod reference.
fn allocations(cp: &ControlPlane) -> BTreeMap<String, String> {
    let out = cp.kubectl_ok(&[
        "-n",
        "kube-system",
        "get",
        "ippools.whereabouts.cni.cncf.io",
        "-o",
        "json",
    ]);
    let list: Value = serde_json::from_str(&out).expect("IPPool list");
    list["items"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|pool| pool["spec"]["allocations"].as_object().cloned().unwrap_or_default())
        .map(|(offset, a)| (offset, a["podref"].as_str().unwrap_or_default().to_string()))
        .collect()
}

#[root_test("needs root, network namespaces and the peers: run `make peers` and `make test` as root")]
fn whereabouts_on_three_nodes_against_a_real_api_server() {
    let mut cp = ControlPlane::start_with(Options::default());
    let kubeconfig = install_whereabouts(&cp);
    let lan = MultiNodeLan::new(3);
    // whereabouts runs in the nodes' namespaces and dials the API server's 127.0.0.1 there.
    let port: u16 = cp
        .server()
        .rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .expect("API server port");
    let _forwards: Vec<Forward> = lan.nodes.iter().map(|ns| Forward::loopback_into(ns, port)).collect();
    let mut conf = whereabouts_config(&kubeconfig, SUBNET, "10.77.5.1", "10.77.5.200");
    // whereabouts' flat file, as its DaemonSet writes it into /etc/cni/net.d/whereabouts.d (here in the
    // test's directory, not the host's).
    let flat = lan.dir().join("whereabouts.conf");
    std::fs::write(
        &flat,
        serde_json::json!({"datastore": "kubernetes", "kubernetes": {"kubeconfig": kubeconfig}}).to_string(),
    )
    .unwrap();
    conf["ipam"]["configuration_path"] = serde_json::json!(flat);

    // 3 x 12 at once: whereabouts takes one cluster-wide Lease per ADD, so they queue behind each other.
    let pods: Vec<(usize, String, Pod)> = (0..3)
        .flat_map(|n| (0..12).map(move |i| (n, format!("wb-{n}-{i}"))))
        .map(|(n, name)| (n, name, Pod::new()))
        .collect();
    let ips: Vec<String> = std::thread::scope(|scope| {
        let handles: Vec<_> = pods
            .iter()
            .map(|(n, name, pod)| {
                let (lan, conf) = (&lan, &conf);
                scope.spawn(move || {
                    let reply = call(lan, *n, "ADD", pod, name, conf);
                    assert_eq!(reply.status, 0, "whereabouts ADD of {name} on node {n}: {reply}");
                    result_ip(reply.json.as_ref().expect("result"), 0)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().expect("ADD thread")).collect()
    });
    let mut sorted = ips.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(
        sorted.len(),
        ips.len(),
        "whereabouts handed out an address twice: {ips:?}"
    );
    assert_eq!(allocations(&cp).len(), ips.len(), "one IPPool allocation per pod");
    for ip in &ips {
        let out = lan.host.exec("arping", &["-c", "1", "-w", "2", "-I", "br0", ip]);
        let text = String::from_utf8_lossy(&out.stdout);
        let replies = text.lines().filter(|l| l.contains("reply from")).count();
        assert_eq!(replies, 1, "{ip} answers ARP from exactly one MAC: {text}");
    }
    println!("whereabouts: {} pods on 3 nodes, 0 duplicate addresses", ips.len());

    // DEL gives everything back.
    for (n, name, pod) in &pods {
        let reply = call(&lan, *n, "DEL", pod, name, &conf);
        assert_eq!(reply.status, 0, "whereabouts DEL of {name}: {reply}");
    }
    assert!(allocations(&cp).is_empty(), "{:?}", allocations(&cp));

    // No API server: whereabouts cannot allocate, so no pod on this network can start.
    cp.stop_apiserver();
    let pod = Pod::new();
    let mut limited = Call::roslan("ADD", &pod.id, &pod.path(), "net1", &conf)
        .args("IgnoreUnknown=true;K8S_POD_NAMESPACE=robots;K8S_POD_NAME=offline");
    limited.cni_path = peer("whereabouts").bin_dir().to_string_lossy().into_owned();
    let reply = limited.run_in_within(&lan.nodes[0], Duration::from_secs(10));
    assert_ne!(reply.status, 0, "whereabouts allocated without an API server: {reply}");
    assert!(!pod.ns.has_link("net1"), "a failed ADD leaves no interface");
    cp.start_apiserver();
}
