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
