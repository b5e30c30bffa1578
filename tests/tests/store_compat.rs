//! roslan's reservation files are host-local's, byte for byte, and each releases what the other
//! reserved.

use roslan_tests::plugin::{Reference, result_ip};
use roslan_tests::root_test;
use roslan_tests::{Call, Lan};
use serde_json::Value;

fn host_local(lan: &Lan, reference: &Reference, command: &str, id: &str, conf: &Value) -> roslan_tests::Reply {
    lan.call(&reference.call("host-local", command, id, "/run/netns/unused", "net1", conf))
}

#[root_test]
fn roslan_writes_what_host_local_reads() {
    for reference in Reference::all() {
        let lan = Lan::new();
        let conf = lan.config("1.0.0");
        let pod = lan.pod();
        let result = lan.add(&pod, "net1", &conf);
        let ip = result_ip(&result, 0);
        let dir = lan.data_dir().join("ros-lan");
        assert_eq!(
            std::fs::read(dir.join(&ip)).unwrap(),
            format!("{}\r\nnet1", pod.id).into_bytes()
        );
        assert_eq!(std::fs::read_to_string(dir.join("last_reserved_ip.0")).unwrap(), ip);
        assert!(dir.join("lock").exists());

        // host-local continues the round robin after roslan's cursor and refuses the same attachment twice.
        let reply = host_local(&lan, &reference, "ADD", "from-host-local", &conf);
        assert_eq!(reply.status, 0, "{reply}");
        let next = reply.json.as_ref().unwrap()["ips"][0]["address"]
            .as_str()
            .unwrap()
            .to_string();
        assert_ne!(next.split('/').next().unwrap(), ip);
        let reply = host_local(&lan, &reference, "ADD", &pod.id, &conf);
        assert_ne!(
            reply.status, 0,
            "host-local sees roslan's reservation for the same attachment: {reply}"
        );

        // host-local's DEL releases roslan's reservation.
        let reply = host_local(&lan, &reference, "DEL", &pod.id, &conf);
        assert_eq!(reply.status, 0, "{reply}");
        assert!(!dir.join(&ip).exists());
    }
}

#[root_test]
fn roslan_releases_what_host_local_wrote() {
    for reference in Reference::all() {
        let lan = Lan::new();
        let conf = lan.config("1.0.0");
        let reply = host_local(&lan, &reference, "ADD", "hl-1", &conf);
        assert_eq!(reply.status, 0, "{reply}");
        let held = result_ip(reply.json.as_ref().unwrap(), 0);
        let dir = lan.data_dir().join("ros-lan");

        // roslan's next ADD does not reuse it and continues after host-local's cursor.
        let pod = lan.pod();
        let result = lan.add(&pod, "net1", &conf);
        let mine = result_ip(&result, 0);
        assert_ne!(mine, held);

        // roslan's DEL releases host-local's reservation (no namespace needed), and a legacy file that
        // holds only a container ID.
        let reply = lan.call(&Call::roslan("DEL", "hl-1", "", "net1", &conf));
        assert_eq!(reply.status, 0, "{reply}");
        assert!(!dir.join(&held).exists());
        std::fs::write(dir.join("10.77.1.200"), "legacy-id").unwrap();
        let reply = lan.call(&Call::roslan("DEL", "legacy-id", "", "eth0", &conf));
        assert_eq!(reply.status, 0, "{reply}");
        assert!(!dir.join("10.77.1.200").exists());
    }
}

/// Writes `count` reservations the way host-local does (exclusive create, `id\r\nifname`, then the
/// cursor), for containers roslan has never seen, from `first` on.
fn host_local_writes(dir: &std::path::Path, first: std::net::Ipv4Addr, count: u32) -> Vec<String> {
    use std::io::Write;
    let mut written = Vec::new();
    for i in 0..count {
        let ip = std::net::Ipv4Addr::from(u32::from(first) + i).to_string();
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(dir.join(&ip))
            .unwrap();
        file.write_all(format!("{:064x}\r\neth0", i + 1).as_bytes()).unwrap();
        written.push(ip);
    }
    std::fs::write(dir.join("last_reserved_ip.0"), written.last().unwrap()).unwrap();
    written
}

#[root_test]
fn thousands_of_foreign_reservations_are_avoided_released_and_collected() {
    let lan = Lan::new();
    let mut conf = lan.config("1.1.0");
    conf["ipam"]["ranges"][0][0]["rangeEnd"] = "10.77.40.250".into();
    let dir = lan.data_dir().join("ros-lan");
    // roslan has used the directory: its index is current when the other program writes.
    let first = lan.pod();
    let first_ip = result_ip(&lan.add(&first, "net1", &conf), 0);
    assert_eq!(first_ip, "10.77.1.10");
    let foreign = host_local_writes(&dir, "10.77.1.11".parse().unwrap(), 3000);

    // ADD continues after host-local's cursor, on an address no foreign file names.
    let pod = lan.pod();
    let ip = result_ip(&lan.add(&pod, "net1", &conf), 0);
    assert_eq!(ip, "10.77.12.195", "the address after host-local's last (10.77.12.194)");
    assert!(!foreign.contains(&ip));
    assert_eq!(
        std::fs::read(dir.join(&ip)).unwrap(),
        format!("{}\r\nnet1", pod.id).into_bytes()
    );

    // DEL of a foreign-written reservation by its container ID (no namespace: the container is gone).
    let victim = &foreign[1234];
    let reply = lan.call(&Call::roslan("DEL", &format!("{:064x}", 1235), "", "eth0", &conf));
    assert_eq!(reply.status, 0, "{reply}");
    assert!(
        !dir.join(victim).exists(),
        "DEL released the foreign reservation {victim}"
    );
    assert_eq!(lan.reservations("ros-lan").len(), 3000 - 1 + 2);
    // And a second one, after the first DEL read the other owners.
    let reply = lan.call(&Call::roslan("DEL", &format!("{:064x}", 7), "", "eth0", &conf));
    assert_eq!(reply.status, 0, "{reply}");
    assert!(!dir.join(&foreign[6]).exists());

    // CHECK of roslan's own attachment still finds its reservation.
    let mut check = conf.clone();
    let checked = lan.pod();
    let checked_result = lan.add(&checked, "net1", &conf);
    check["prevResult"] = checked_result.clone();
    let reply = lan.call(&Call::roslan("CHECK", &checked.id, &checked.path(), "net1", &check));
    assert_eq!(reply.status, 0, "{reply}");

    // GC keeps the listed attachments and releases every foreign reservation.
    let mut gc = conf.clone();
    gc["cni.dev/valid-attachments"] = serde_json::json!([
        {"containerID": first.id, "ifname": "net1"},
        {"containerID": pod.id, "ifname": "net1"},
        {"containerID": checked.id, "ifname": "net1"},
    ]);
    let reply = lan.call(&Call::roslan("GC", "", "", "", &gc));
    assert_eq!(reply.status, 0, "{reply}");
    let mut left = lan.reservations("ros-lan");
    left.sort();
    let mut want = vec![first_ip, ip, result_ip(&checked_result, 0)];
    want.sort();
    assert_eq!(left, want, "GC left only the listed attachments' addresses");
}
