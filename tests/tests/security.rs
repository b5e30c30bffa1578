//! Hostile input: names built for path traversal or injection, symlinks in the data directory, a
//! CNI_NETNS that is not a network namespace, oversized stdin. Each is refused with the right code,
//! and nothing outside the data directory is touched.

use std::os::unix::fs::symlink;
use std::path::PathBuf;

use roslan_tests::plugin::{Call, Reply};
use roslan_tests::root_test;
use roslan_tests::{Lan, Pod};
use serde_json::{Value, json};

/// A file and a directory outside the data directory that must never change.
struct Bystanders {
    dir: PathBuf,
    file: PathBuf,
}

impl Bystanders {
    fn new(lan: &Lan) -> Bystanders {
        let dir = lan.dir().join("outside");
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("precious");
        std::fs::write(&file, "untouched").unwrap();
        Bystanders { dir, file }
    }

    fn assert_untouched(&self, what: &str) {
        assert_eq!(
            std::fs::read_to_string(&self.file).unwrap(),
            "untouched",
            "{what} wrote outside the data directory"
        );
        let entries: Vec<_> = std::fs::read_dir(&self.dir)
            .unwrap()
            .flatten()
            .map(|e| e.file_name())
            .collect();
        assert_eq!(
            entries.len(),
            1,
            "{what} created files outside the data directory: {entries:?}"
        );
    }
}

fn add(lan: &Lan, pod: &Pod, conf: &Value) -> Reply {
    lan.call(&Call::roslan("ADD", &pod.id, &pod.path(), "net1", conf))
}

fn refused(reply: &Reply, code: u64, what: &str) {
    assert_eq!(reply.status, 1, "{what}: {reply}");
    assert_eq!(reply.code(), Some(code), "{what}: {reply}");
}

#[root_test]
fn hostile_names_are_refused() {
    let lan = Lan::new();
    let outside = Bystanders::new(&lan);
    let pod = lan.pod();
    let long = "a".repeat(300);
    for name in [
        "../outside",
        "a/../../outside",
        "..",
        "x\ny",
        "x\u{0}y",
        "x;rm -rf /",
        long.as_str(),
        ".roslan",
    ] {
        let mut conf = lan.config("1.0.0");
        conf["name"] = json!(name);
        refused(&add(&lan, &pod, &conf), 7, &format!("network name {name:?}"));
    }
    let long_id = "c".repeat(2000);
    for id in ["../x", "a/b", "a\nb", "-leading", long_id.as_str()] {
        let reply = lan.call(&Call::roslan("ADD", id, &pod.path(), "net1", &lan.config("1.0.0")));
        refused(&reply, 4, &format!("container ID {id:?}"));
        let reply = lan.call(&Call::roslan("DEL", id, &pod.path(), "net1", &lan.config("1.0.0")));
        refused(&reply, 4, &format!("DEL with container ID {id:?}"));
    }
    for ifname in ["../x", "a/b", "a:b", "a b", "a\nb", ".", "..", "averyveryverylongname"] {
        let reply = lan.call(&Call::roslan("ADD", &pod.id, &pod.path(), ifname, &lan.config("1.0.0")));
        refused(&reply, 4, &format!("ifname {ifname:?}"));
    }
    let mut conf = lan.config("1.0.0");
    conf["ipam"]["type"] = json!("../../../bin/sh");
    refused(&add(&lan, &pod, &conf), 7, "ipam.type as a path");
    let mut conf = lan.config("1.0.0");
    conf["sysctl"] = json!({"net.ipv4.conf.//.//.//.//.etc": "1"});
    refused(&add(&lan, &pod, &conf), 7, "a sysctl key climbing out of /proc/sys");
    let mut conf = lan.config("1.0.0");
    conf["ipam"]["dataDir"] = json!("relative/dir");
    refused(&add(&lan, &pod, &conf), 7, "a relative dataDir");

    assert_eq!(pod.ns.links(), vec!["lo"]);
    assert!(!lan.data_dir().exists(), "refusals create no state");
    outside.assert_untouched("hostile names");
}

#[root_test]
fn symlinks_in_the_data_directory_are_never_followed() {
    let lan = Lan::new();
    let outside = Bystanders::new(&lan);
    let pod = lan.pod();

    // The data directory itself is a symlink.
    let mut conf = lan.config("1.0.0");
    let linked = lan.dir().join("linked-data");
    symlink(&outside.dir, &linked).unwrap();
    conf["ipam"]["dataDir"] = json!(linked);
    refused(&add(&lan, &pod, &conf), 7, "a symlinked dataDir");
    outside.assert_untouched("a symlinked dataDir");

    // The network's directory is a symlink.
    let conf = lan.config("1.0.0");
    let data = lan.data_dir();
    std::fs::create_dir_all(&data).unwrap();
    symlink(&outside.dir, data.join("ros-lan")).unwrap();
    refused(&add(&lan, &pod, &conf), 7, "a symlinked network directory");
    assert_eq!(
        lan.call(&Call::roslan("DEL", &pod.id, &pod.path(), "net1", &conf))
            .code(),
        Some(7)
    );
    outside.assert_untouched("a symlinked network directory");
    std::fs::remove_file(data.join("ros-lan")).unwrap();

    // Symlinks planted inside: an address file, the round-robin cursor, the index directory.
    let net = data.join("ros-lan");
    std::fs::create_dir_all(&net).unwrap();
    symlink(&outside.file, net.join("10.77.1.10")).unwrap();
    let reply = add(&lan, &pod, &conf);
    assert_eq!(
        reply.status, 0,
        "a planted address link only makes that address taken: {reply}"
    );
    assert_eq!(reply.json.as_ref().unwrap()["ips"][0]["address"], "10.77.1.11/16");
    lan.del(&pod, "net1", &conf);
    outside.assert_untouched("a planted address link");

    std::fs::remove_file(net.join("last_reserved_ip.0")).unwrap();
    symlink(&outside.file, net.join("last_reserved_ip.0")).unwrap();
    refused(&add(&lan, &pod, &conf), 7, "a symlinked round-robin cursor");
    assert_eq!(pod.ns.links(), vec!["lo"], "and rolled back");
    outside.assert_untouched("a symlinked round-robin cursor");
    std::fs::remove_file(net.join("last_reserved_ip.0")).unwrap();

    std::fs::remove_dir_all(data.join(".roslan")).unwrap();
    symlink(&outside.dir, data.join(".roslan")).unwrap();
    let reply = add(&lan, &pod, &conf);
    assert_eq!(
        reply.status, 0,
        "without its index roslan scans, as host-local does: {reply}"
    );
    lan.del(&pod, "net1", &conf);
    outside.assert_untouched("a symlinked index directory");

    std::fs::remove_file(net.join("lock")).unwrap();
    symlink(&outside.file, net.join("lock")).unwrap();
    refused(&add(&lan, &pod, &conf), 7, "a symlinked lock file");
    outside.assert_untouched("a symlinked lock file");
}

#[root_test]
fn a_netns_path_that_is_not_a_network_namespace() {
    let lan = Lan::new();
    let conf = lan.config("1.0.0");
    let dir = lan.dir().to_string_lossy().into_owned();
    for path in [
        "/etc/hostname",
        "/proc/self/ns/uts",
        dir.as_str(),
        "/dev/null",
        "/run/netns/does-not-exist",
    ] {
        let reply = lan.call(&Call::roslan("ADD", "c1", path, "net1", &conf));
        refused(&reply, 4, &format!("CNI_NETNS={path}"));
        assert!(reply.msg().contains("CNI_NETNS"), "{reply}");
        // DEL treats it as a pod that is gone, so teardown never wedges on it.
        assert_eq!(lan.call(&Call::roslan("DEL", "c1", path, "net1", &conf)).status, 0);
    }
    let reply = lan.call(&Call::roslan("ADD", "c1", &lan.node.path(), "net1", &conf));
    refused(&reply, 4, "the plugin's own namespace");
    assert!(!lan.node.has_link("net1"));
}

#[root_test]
fn oversized_stdin_is_refused() {
    let lan = Lan::new();
    let pod = lan.pod();
    let mut conf = lan.config("1.0.0");
    conf["padding"] = json!("x".repeat(5 << 20));
    let reply = add(&lan, &pod, &conf);
    refused(&reply, 6, "5 MiB of configuration");
    assert!(reply.msg().contains("MiB"), "{reply}");
    assert_eq!(pod.ns.links(), vec!["lo"]);
}
