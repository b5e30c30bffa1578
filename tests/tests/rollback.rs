//! Every failed ADD leaves the pod and the store as it found them, so that a retry succeeds.

use roslan_tests::lan::MASTER;
use roslan_tests::plugin::Call;
use roslan_tests::root_test;
use roslan_tests::{Lan, Pod};
use serde_json::json;

fn assert_clean(pod: &Pod) {
    let links = pod.ns.links();
    assert_eq!(links, vec!["lo".to_string()], "a failed ADD must leave no link behind");
}

#[root_test]
fn exhausted_range_rolls_back_and_retry_succeeds() {
    let lan = Lan::new();
    let mut conf = lan.config("1.0.0");
    conf["ipam"]["ranges"] =
        json!([[{"subnet": "10.77.0.0/16", "rangeStart": "10.77.1.10", "rangeEnd": "10.77.1.10"}]]);
    let first = lan.pod();
    lan.add(&first, "net1", &conf);
    let second = lan.pod();
    let reply = lan.call(&Call::roslan("ADD", &second.id, &second.path(), "net1", &conf));
    assert_eq!(reply.code(), Some(103), "{reply}");
    assert!(reply.msg().contains("no IP addresses available"), "{reply}");
    assert_clean(&second);
    assert_eq!(lan.reservations("ros-lan"), vec!["10.77.1.10"]);

    lan.del(&first, "net1", &conf);
    lan.add(&second, "net1", &conf);
    assert_eq!(second.ns.addresses("net1"), vec!["10.77.1.10/16"]);
}

#[root_test]
fn requested_address_taken_rolls_back() {
    let lan = Lan::new();
    let conf = lan.config("1.0.0");
    let first = lan.pod();
    let reply =
        lan.call(&Call::roslan("ADD", &first.id, &first.path(), "net1", &conf).args("IgnoreUnknown=1;IP=10.77.1.99"));
    assert_eq!(reply.status, 0, "{reply}");
    assert_eq!(first.ns.addresses("net1"), vec!["10.77.1.99/16"]);
    let second = lan.pod();
    let reply = lan.call(&Call::roslan("ADD", &second.id, &second.path(), "net1", &conf).args("IP=10.77.1.99/16"));
    assert_eq!(reply.code(), Some(104), "{reply}");
    assert!(reply.msg().contains(&first.id), "the message names the holder: {reply}");
    assert_clean(&second);
    assert_eq!(lan.reservations("ros-lan"), vec!["10.77.1.99"]);
}

#[root_test]
fn missing_master_lists_what_exists() {
    let lan = Lan::new();
    let mut conf = lan.config("1.0.0");
    conf["master"] = json!("eth9");
    let pod = lan.pod();
    let reply = lan.call(&Call::roslan("ADD", &pod.id, &pod.path(), "net1", &conf));
    assert_eq!(reply.code(), Some(102), "{reply}");
    assert!(
        reply.msg().contains("\"eth9\" not found") && reply.msg().contains(MASTER),
        "{reply}"
    );
    assert_clean(&pod);
    assert!(lan.reservations("ros-lan").is_empty());
}

#[root_test]
fn bad_config_touches_nothing() {
    let lan = Lan::new();
    let mut conf = lan.config("1.0.0");
    conf["ipam"]["ranges"] = json!([[{"subnet": "10.77.0.5/16"}]]);
    let pod = lan.pod();
    let reply = lan.call(&Call::roslan("ADD", &pod.id, &pod.path(), "net1", &conf));
    assert_eq!(reply.code(), Some(7), "{reply}");
    assert!(
        reply.msg().contains("host bits set") && reply.msg().contains("10.77.0.0"),
        "{reply}"
    );
    assert_clean(&pod);
    assert!(
        !lan.data_dir().join("ros-lan").exists(),
        "not even the network directory is created"
    );
}

#[root_test]
fn failure_after_the_link_exists_removes_it() {
    // A route the kernel refuses (its gateway is not on any connected network) fails the ADD after
    // the link, the address and the reservation exist: all three must go.
    let lan = Lan::new();
    let mut conf = lan.config("1.0.0");
    conf["ipam"]["routes"] = json!([{"dst": "192.0.2.0/24", "gw": "198.51.100.1"}]);
    let pod = lan.pod();
    let reply = lan.call(&Call::roslan("ADD", &pod.id, &pod.path(), "net1", &conf));
    assert_eq!(reply.code(), Some(100), "{reply}");
    assert!(reply.msg().contains("192.0.2.0/24"), "{reply}");
    assert_clean(&pod);
    assert!(lan.reservations("ros-lan").is_empty());
    // The retry, with a route that works, succeeds in the same pod.
    let good = lan.config("1.0.0");
    lan.add(&pod, "net1", &good);
}
