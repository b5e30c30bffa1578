//! roslan killed dead (SIGKILL) at every step of ADD and DEL: DEL and then GC must leave no link, no
//! reservation and no cleared multicast flag, and a new ADD must succeed.
//!
//! The crash points exist only in the fault-injection build (`cargo build -p roslan --features
//! fault-injection --target-dir target/faults`, which `make test` runs); `ROSLAN_FAULT=<point>` picks one.

use roslan_tests::plugin::{Call, Reply, fault_bin};
use roslan_tests::root_test;
use roslan_tests::{Lan, Pod};
use serde_json::{Value, json};

/// The crash points, read from the plugin's own list (plugin/src/fault.rs), so that a point added there
/// is exercised here without anyone remembering to; a point missing from the binary fails the test
/// (the process is not killed).
fn points(command: &str) -> Vec<String> {
    let source = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../plugin/src/fault.rs"))
        .expect("read plugin/src/fault.rs");
    let list = source
        .split_once("pub const POINTS: &[&str] = &[")
        .and_then(|(_, rest)| rest.split_once("];"))
        .expect("POINTS in plugin/src/fault.rs")
        .0;
    let prefix = format!("{command}:");
    let points: Vec<String> = list
        .split('"')
        .skip(1)
        .step_by(2)
        .filter(|p| p.starts_with(&prefix))
        .map(str::to_string)
        .collect();
    assert!(points.len() >= 5, "too few {command} points parsed: {points:?}");
    points
}

fn killed_at(lan: &Lan, command: &str, pod: &Pod, conf: &Value, point: &str) -> Reply {
    let mut call = Call::new(fault_bin(), command, &pod.id, &pod.path(), "net1", conf);
    call.env.push(("ROSLAN_FAULT", point.to_string()));
    lan.call(&call)
}

/// DEL, then GC keeping nothing; then the pod must be as before ADD.
fn clean_up_and_verify(lan: &Lan, pod: &Pod, conf: &Value, point: &str) {
    let reply = lan.call(&Call::roslan("DEL", &pod.id, &pod.path(), "net1", conf));
    assert_eq!(reply.status, 0, "DEL after a kill at {point}: {reply}");
    let mut gc = conf.clone();
    gc["cni.dev/valid-attachments"] = json!([]);
    let reply = lan.call(&Call::roslan("GC", "", "", "", &gc));
    assert_eq!(reply.status, 0, "GC after a kill at {point}: {reply}");
    let mut links = pod.ns.links();
    links.sort();
    assert_eq!(links, vec!["eth0", "lo"], "no link left after a kill at {point}");
    assert!(
        pod.ns.has_flag("eth0", "MULTICAST"),
        "eth0's multicast flag is back after a kill at {point}"
    );
    assert!(
        lan.reservations("ros-lan").is_empty(),
        "no reservation left after a kill at {point}"
    );
    let result = lan.add(pod, "net1", conf);
    assert!(
        result["ips"][0]["address"].is_string(),
        "a new ADD succeeds after a kill at {point}"
    );
    lan.del(pod, "net1", conf);
}

#[root_test]
fn a_kill_at_any_step_of_add_or_del_is_cleaned_up() {
    let lan = Lan::new();
    let conf = lan.config("1.1.0");
    for point in &points("add") {
        let pod = lan.dual_homed_pod();
        let reply = killed_at(&lan, "ADD", &pod, &conf, point);
        assert_eq!(reply.status, -1, "ADD was not killed at {point}: {reply}");
        clean_up_and_verify(&lan, &pod, &conf, point);
    }
    for point in &points("del") {
        let pod = lan.dual_homed_pod();
        lan.add(&pod, "net1", &conf);
        let reply = killed_at(&lan, "DEL", &pod, &conf, point);
        assert_eq!(reply.status, -1, "DEL was not killed at {point}: {reply}");
        clean_up_and_verify(&lan, &pod, &conf, point);
    }
}
