//! Fifty pods attached at once, as a node does after a reboot.

use std::collections::HashSet;

use roslan_tests::root_test;
use roslan_tests::{Call, Lan};

#[root_test]
fn fifty_concurrent_adds_get_distinct_addresses() {
    let lan = Lan::new();
    let conf = lan.config("1.0.0");
    let pods: Vec<_> = (0..50).map(|_| lan.pod()).collect();
    let results: Vec<_> = std::thread::scope(|scope| {
        let handles: Vec<_> = pods
            .iter()
            .map(|pod| scope.spawn(|| lan.call(&Call::roslan("ADD", &pod.id, &pod.path(), "net1", &conf))))
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let mut from_results = HashSet::new();
    for reply in &results {
        assert_eq!(reply.status, 0, "{reply}");
        from_results.insert(
            reply.json.as_ref().unwrap()["ips"][0]["address"]
                .as_str()
                .unwrap()
                .to_string(),
        );
    }
    assert_eq!(from_results.len(), 50, "distinct addresses in results");
    let in_pods: HashSet<_> = pods.iter().flat_map(|p| p.ns.addresses("net1")).collect();
    assert_eq!(in_pods, from_results, "the pods carry exactly the reported addresses");
    let macs: HashSet<_> = pods
        .iter()
        .map(|p| p.ns.link("net1").unwrap()["address"].to_string())
        .collect();
    assert_eq!(macs.len(), 50, "distinct MACs");
    assert_eq!(lan.reservations("ros-lan").len(), 50);

    std::thread::scope(|scope| {
        for pod in &pods {
            scope.spawn(|| {
                let reply = lan.call(&Call::roslan("DEL", &pod.id, &pod.path(), "net1", &conf));
                assert_eq!(reply.status, 0, "{reply}");
            });
        }
    });
    assert!(lan.reservations("ros-lan").is_empty());
    assert!(pods.iter().all(|p| !p.ns.has_link("net1")));
}
