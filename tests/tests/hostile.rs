//! Hostile input, second round: the classes of wrong answers a held-out corpus of hostile inputs found,
//! each through the CNI protocol against the built binary:
//! special files where roslan expects a regular file, unbounded reads, quadratic configurations, the
//! log file, environment values that are not UTF-8, pod-wide state after a failed ADD, error codes
//! that point at the wrong place, addresses nobody should get, DEL refusing what it never uses, and
//! messages that mislead.
//!
//! Every call runs under a time limit: a plugin that blocks (on a FIFO, on a quadratic loop) is reported
//! as hung instead of hanging the suite. The limits are ten to a hundred times what the calls take, so
//! they detect a hang, they do not time anything.

use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use roslan_tests::plugin::{Call, Reply};
use roslan_tests::root_test;
use roslan_tests::{Lan, Pod};
use serde_json::{Value, json};

/// Long enough for any honest call on a loaded 2-core machine, short enough to report a hang.
const LIMIT: Duration = Duration::from_secs(20);

fn run(lan: &Lan, call: &Call<'_>) -> Reply {
    let reply = call.run_in_within(&lan.node, LIMIT);
    assert_ne!(reply.status, -1, "{} hung: {reply}", call.command);
    reply
}

fn add(lan: &Lan, pod: &Pod, conf: &Value) -> Reply {
    run(lan, &Call::roslan("ADD", &pod.id, &pod.path(), "net1", conf))
}

fn del(lan: &Lan, pod: &Pod, conf: &Value) -> Reply {
    run(lan, &Call::roslan("DEL", &pod.id, &pod.path(), "net1", conf))
}

/// Refused with `code`, a message naming `named`, and exactly one JSON object on stdout.
fn refused(reply: &Reply, code: u64, named: &str, what: &str) {
    assert_eq!(reply.status, 1, "{what}: {reply}");
    assert_eq!(reply.code(), Some(code), "{what}: {reply}");
    assert!(
        reply.msg().contains(named),
        "{what}: the message should name {named:?}: {reply}"
    );
    assert_eq!(
        reply.stdout.trim().lines().count(),
        1,
        "{what}: stdout is one JSON object: {reply}"
    );
}

/// The pod and the store as a refused ADD must leave them: only `lo`, no reservation.
fn untouched(lan: &Lan, pod: &Pod, what: &str) {
    assert_eq!(pod.ns.links(), vec!["lo"], "{what} left a link in the pod");
    assert!(lan.reservations("ros-lan").is_empty(), "{what} left a reservation");
}

fn mkfifo(path: &Path) {
    let status = Command::new("mkfifo").arg(path).status().expect("run mkfifo");
    assert!(status.success(), "mkfifo {}", path.display());
}

#[root_test]
fn special_files_are_refused_without_blocking() {
    let lan = Lan::new();
    let pod = lan.pod();
    let fifo = lan.dir().join("fifo");
    mkfifo(&fifo);
    let socket_path = lan.dir().join("socket");
    let _socket = std::os::unix::net::UnixListener::bind(&socket_path).expect("bind a unix socket");
    let conf = lan.config("1.0.0");
    // CHECK reads its prevResult before it opens anything.
    let mut chained = conf.clone();
    chained["prevResult"] = json!({"cniVersion": "1.0.0", "interfaces": [{"name": "net1", "sandbox": "x"}],
        "ips": [{"address": "10.77.1.10/16", "interface": 0}]});

    for path in [&fifo, &socket_path] {
        let netns = path.to_str().unwrap();
        chained["prevResult"]["interfaces"][0]["sandbox"] = json!(netns);
        for command in ["ADD", "CHECK"] {
            let conf = if command == "CHECK" { &chained } else { &conf };
            let reply = run(&lan, &Call::roslan(command, &pod.id, netns, "net1", conf));
            refused(&reply, 4, netns, &format!("{command} with CNI_NETNS={netns}"));
            assert!(reply.msg().contains("CNI_NETNS"), "{reply}");
        }
        // DEL treats a path that is no namespace as a pod that is gone, as the reference does.
        let reply = run(&lan, &Call::roslan("DEL", &pod.id, netns, "net1", &conf));
        assert_eq!(reply.status, 0, "DEL with CNI_NETNS={netns}: {reply}");
    }

    for (key, file) in [("resolvConf", &fifo), ("resolvConf", &socket_path)] {
        let mut conf = lan.config("1.0.0");
        conf["ipam"][key] = json!(file);
        let reply = add(&lan, &pod, &conf);
        refused(
            &reply,
            7,
            &format!("ipam.{key}"),
            &format!("ipam.{key} = {}", file.display()),
        );
        assert!(reply.msg().contains(file.to_str().unwrap()), "{reply}");
        untouched(&lan, &pod, "a special resolvConf");
    }

    let mut with_nodes = lan.config("1.0.0");
    with_nodes["ipam"]["nodeNameFile"] = json!(fifo);
    with_nodes["ipam"]["nodeRanges"] =
        json!({"robot-1": [[{"subnet": "10.77.0.0/16", "rangeStart": "10.77.2.10", "rangeEnd": "10.77.2.20"}]]});
    let reply = add(&lan, &pod, &with_nodes);
    refused(&reply, 7, "ipam.nodeNameFile", "nodeNameFile a FIFO");
    untouched(&lan, &pod, "a FIFO nodeNameFile");
    with_nodes["cniVersion"] = json!("1.1.0");
    let reply = run(&lan, &Call::roslan("STATUS", "", "", "", &with_nodes));
    refused(&reply, 7, "ipam.nodeNameFile", "STATUS with nodeNameFile a FIFO");

    // Planted in the data directory: a FIFO as the lock is refused; as a reservation it only makes
    // that address taken, like any file the store did not write.
    let net = lan.data_dir().join("ros-lan");
    std::fs::create_dir_all(&net).unwrap();
    mkfifo(&net.join("lock"));
    refused(&add(&lan, &pod, &conf), 7, "FIFO", "a FIFO as the store's lock");
    untouched(&lan, &pod, "a FIFO lock");
    std::fs::remove_file(net.join("lock")).unwrap();
    mkfifo(&net.join("10.77.1.10"));
    let reply = add(&lan, &pod, &conf);
    assert_eq!(reply.status, 0, "a FIFO reservation: {reply}");
    assert_eq!(
        reply.json.as_ref().unwrap()["ips"][0]["address"],
        "10.77.1.11/16",
        "{reply}"
    );
    let reply = del(&lan, &pod, &conf);
    assert_eq!(reply.status, 0, "DEL next to a FIFO reservation: {reply}");
}

#[root_test]
fn reads_are_bounded() {
    let lan = Lan::new();
    let pod = lan.pod();
    let big = lan.dir().join("big-resolv.conf");
    std::fs::write(&big, "nameserver 10.0.0.1\n".repeat(100_000)).unwrap();
    for (file, named) in [
        (PathBuf::from("/dev/zero"), "character device"),
        (big.clone(), "larger than"),
    ] {
        let mut conf = lan.config("1.0.0");
        conf["ipam"]["resolvConf"] = json!(file);
        let reply = add(&lan, &pod, &conf);
        refused(&reply, 7, "ipam.resolvConf", &format!("resolvConf {}", file.display()));
        assert!(reply.msg().contains(named), "{reply}");
        untouched(&lan, &pod, "an unbounded resolvConf");
    }
    let mut with_nodes = lan.config("1.0.0");
    with_nodes["ipam"]["nodeNameFile"] = json!("/dev/zero");
    with_nodes["ipam"]["nodeRanges"] = json!({"robot-1": [[{"subnet": "10.77.0.0/16", "rangeStart": "10.77.2.10"}]]});
    refused(
        &add(&lan, &pod, &with_nodes),
        7,
        "ipam.nodeNameFile",
        "nodeNameFile /dev/zero",
    );
    untouched(&lan, &pod, "nodeNameFile /dev/zero");
}

/// `count` disjoint /24 ranges in one range set, the first being the LAN's own.
fn many_ranges(lan: &Lan, count: usize) -> Value {
    let mut conf = lan.config("1.0.0");
    let mut ranges = vec![json!({"subnet": "10.77.0.0/16", "rangeStart": "10.77.1.10", "rangeEnd": "10.77.1.250"})];
    ranges.extend(
        (1..count).map(|i| json!({"subnet": format!("{}.{}.{}.0/24", 11 + i / 65536, (i / 256) % 256, i % 256)})),
    );
    conf["ipam"]["ranges"] = json!([ranges]);
    conf
}

#[root_test]
fn configurations_are_read_in_near_linear_time() {
    // 60,000 ranges took more than 10 s per ADD when every pair of ranges was compared; one sort takes
    // milliseconds. The limit detects the quadratic case, it does not time the linear one.
    let lan = Lan::new();
    let pod = lan.pod();
    let conf = many_ranges(&lan, 60_000);
    let reply = add(&lan, &pod, &conf);
    assert_eq!(reply.status, 0, "ADD with 60,000 ranges: {reply}");
    assert_eq!(reply.json.as_ref().unwrap()["ips"][0]["address"], "10.77.1.10/16");
    let reply = run(&lan, &Call::roslan("DEL", &pod.id, &pod.path(), "net1", &conf));
    assert_eq!(reply.status, 0, "DEL with 60,000 ranges: {reply}");
    // An overlap among them is still found, and named.
    let mut overlapping = many_ranges(&lan, 60_000);
    overlapping["ipam"]["ranges"][0]
        .as_array_mut()
        .unwrap()
        .push(json!({"subnet": "11.200.0.0/16"}));
    let reply = add(&lan, &pod, &overlapping);
    refused(&reply, 7, "overlap", "an overlap among 60,001 ranges");
    untouched(&lan, &pod, "60,001 overlapping ranges");
}

#[root_test]
fn the_log_file_follows_the_data_directory_rules() {
    let lan = Lan::new();
    let pod = lan.pod();
    let target = lan.dir().join("precious");
    std::fs::write(&target, "untouched").unwrap();
    let link = lan.dir().join("roslan.log");
    symlink(&target, &link).unwrap();
    let fifo = lan.dir().join("log-fifo");
    mkfifo(&fifo);
    let cwd = lan.dir().join("cwd");
    std::fs::create_dir_all(&cwd).unwrap();

    for (path, named) in [
        (link.to_str().unwrap(), "symbolic link"),
        ("/dev/stdout", "symbolic link"),
        ("/proc/self/fd/1", "symbolic link"),
        (fifo.to_str().unwrap(), "FIFO"),
        ("/dev/null", "character device"),
        ("relative.log", "relative"),
    ] {
        let mut conf = lan.config("1.0.0");
        conf["logFile"] = json!(path);
        let mut call = Call::roslan("ADD", &pod.id, &pod.path(), "net1", &conf);
        call.cwd = Some(cwd.clone());
        let reply = run(&lan, &call);
        refused(&reply, 7, "logFile", &format!("logFile {path}"));
        assert!(reply.msg().contains(named), "logFile {path}: {reply}");
        untouched(&lan, &pod, &format!("logFile {path}"));
        // A rejected configuration with another problem too writes nowhere either.
        conf["mode"] = json!("no-such-mode");
        run(&lan, &Call::roslan("ADD", &pod.id, &pod.path(), "net1", &conf));
        // DEL is not refused for it (nothing to tear down needs a log), and still writes nowhere.
        let mut call = Call::roslan("DEL", &pod.id, &pod.path(), "net1", &conf);
        call.cwd = Some(cwd.clone());
        assert_eq!(run(&lan, &call).status, 0, "DEL with logFile {path}");
    }
    assert_eq!(
        std::fs::read_to_string(&target).unwrap(),
        "untouched",
        "a link's target was written"
    );
    assert_eq!(
        std::fs::read_dir(&cwd).unwrap().count(),
        0,
        "a relative logFile was created"
    );

    // A regular file is written, and stdout stays the result alone.
    let log = lan.dir().join("logs/roslan.log");
    let mut conf = lan.config("1.0.0");
    conf["logFile"] = json!(log);
    let reply = add(&lan, &pod, &conf);
    assert_eq!(reply.status, 0, "{reply}");
    assert!(
        reply.json.is_some() && reply.stdout.trim().lines().count() == 1,
        "{reply}"
    );
    assert!(std::fs::read_to_string(&log).unwrap().contains("attached net1"));
    assert_eq!(del(&lan, &pod, &conf).status, 0);
}

#[root_test]
fn environment_values_that_are_not_utf8_are_named() {
    let lan = Lan::new();
    let pod = lan.pod();
    let conf = lan.config("1.0.0");
    let call = || Call::roslan("ADD", &pod.id, &pod.path(), "net1", &conf);

    let reply = run(&lan, &call().env_bytes("CNI_COMMAND", b"AD\xffD"));
    refused(&reply, 4, "CNI_COMMAND", "CNI_COMMAND not UTF-8");
    assert!(
        reply.msg().contains("unknown CNI_COMMAND") && reply.msg().contains("UTF-8"),
        "{reply}"
    );

    // A requested address next to a bad byte is not dropped in silence (another address handed out).
    let reply = run(
        &lan,
        &call().env_bytes("CNI_ARGS", b"IgnoreUnknown=1;IP=10.77.1.99;K8S_POD_NAME=p\xfe"),
    );
    refused(&reply, 4, "CNI_ARGS", "CNI_ARGS not UTF-8");
    untouched(&lan, &pod, "CNI_ARGS not UTF-8");

    let bad_netns = [pod.path().as_bytes(), b"\xff"].concat();
    for (var, value) in [
        ("CNI_CONTAINERID", b"sandbox\xff".to_vec()),
        ("CNI_IFNAME", b"net\xff".to_vec()),
        ("CNI_NETNS", bad_netns),
    ] {
        let reply = run(&lan, &call().env_bytes(var, &value));
        refused(&reply, 4, var, &format!("{var} not UTF-8"));
        assert!(
            reply.msg().contains("UTF-8") && !reply.msg().contains("missing"),
            "{var}: {reply}"
        );
        untouched(&lan, &pod, &format!("{var} not UTF-8"));
    }

    // DEL does not fail on arguments only ADD needs.
    let added = add(&lan, &pod, &conf);
    assert_eq!(added.status, 0, "{added}");
    let reply = run(
        &lan,
        &Call::roslan("DEL", &pod.id, &pod.path(), "net1", &conf).env_bytes("CNI_ARGS", b"K8S_POD_NAME=p\xfe"),
    );
    assert_eq!(reply.status, 0, "DEL with CNI_ARGS not UTF-8: {reply}");
    untouched(&lan, &pod, "DEL");
}

#[root_test]
fn a_failed_add_leaves_pod_wide_settings_as_they_were() {
    let lan = Lan::new();
    let pod = lan.pod();
    let pod_wide = [
        "net.ipv4.conf.all.rp_filter",
        "net.ipv4.ipfrag_time",
        "net.ipv4.ipfrag_high_thresh",
        "net.ipv4.igmp_max_memberships",
        "net.ipv4.conf.default.arp_ignore",
    ];
    let before: Vec<String> = pod_wide.iter().map(|k| pod.ns.sysctl(k)).collect();
    let lo_multicast = pod.ns.has_flag("lo", "MULTICAST");
    for (sysctl, value) in [
        ("net.ipv4.conf.IFNAME.no_such_knob", "1"),
        ("net.ipv4.conf.IFNAME.rp_filter", "loose"),
    ] {
        let mut conf = lan.config("1.0.0");
        conf["sysctl"] = json!({"net.ipv4.conf.default.arp_ignore": "2", sysctl: value});
        let reply = add(&lan, &pod, &conf);
        refused(&reply, 7, &format!("sysctl.{sysctl}"), &format!("{sysctl} = {value}"));
        assert!(reply.msg().contains(value), "the value is named: {reply}");
        assert!(
            !reply.msg().contains("conf.rl"),
            "the temporary link's name is not the user's key: {reply}"
        );
        untouched(&lan, &pod, &format!("a refused {sysctl}"));
        let after: Vec<String> = pod_wide.iter().map(|k| pod.ns.sysctl(k)).collect();
        assert_eq!(after, before, "pod-wide sysctls after a failed ADD ({sysctl})");
        assert_eq!(
            pod.ns.has_flag("lo", "MULTICAST"),
            lo_multicast,
            "lo's multicast flag after a failed ADD"
        );
    }

    // The documented choice for DEL in a pod that lives on: lo keeps IFF_MULTICAST and pod-wide sysctls
    // keep roslan's values (other attachments and the pod's processes may rely on both).
    let conf = lan.config("1.0.0");
    assert_eq!(add(&lan, &pod, &conf).status, 0);
    assert_eq!(pod.ns.sysctl("net.ipv4.conf.all.rp_filter"), "2");
    assert_eq!(del(&lan, &pod, &conf).status, 0);
    assert!(pod.ns.has_flag("lo", "MULTICAST"), "DEL leaves lo's multicast flag");
    assert_eq!(
        pod.ns.sysctl("net.ipv4.conf.all.rp_filter"),
        "2",
        "DEL leaves pod-wide sysctls"
    );
}

#[root_test]
fn codes_point_at_the_cause() {
    let lan = Lan::new();
    let pod = lan.pod();

    let mut conf = lan.config("1.0.0");
    conf["mtu"] = json!(40);
    let reply = add(&lan, &pod, &conf);
    refused(&reply, 7, "mtu", "an mtu below the device minimum");
    assert!(reply.msg().contains("68"), "{reply}");
    untouched(&lan, &pod, "mtu 40");
    let mut conf = lan.config("1.0.0");
    conf["mtu"] = json!(1000);
    conf["ipam"]["ranges"] = json!([[{"subnet": "fd00:77::/64"}]]);
    refused(
        &add(&lan, &pod, &conf),
        7,
        "1280",
        "an IPv6 range on a link below IPv6's minimum MTU",
    );
    untouched(&lan, &pod, "mtu 1000 with IPv6");

    // The kernel refuses an all-zero MAC: CNI_ARGS asked for it, so CNI_ARGS is named (code 4).
    let conf = lan.config("1.0.0");
    let reply = run(
        &lan,
        &Call::roslan("ADD", &pod.id, &pod.path(), "net1", &conf).args("IgnoreUnknown=1;MAC=00:00:00:00:00:00"),
    );
    refused(&reply, 4, "CNI_ARGS", "a MAC= the kernel refuses");
    untouched(&lan, &pod, "MAC=00:00:00:00:00:00");
    let mut conf = lan.config("1.0.0");
    conf["runtimeConfig"] = json!({"mac": "00:00:00:00:00:00"});
    refused(
        &add(&lan, &pod, &conf),
        7,
        "runtimeConfig.mac",
        "a runtimeConfig.mac the kernel refuses",
    );
    untouched(&lan, &pod, "runtimeConfig.mac");

    for ifname in ["all", "default"] {
        let reply = run(
            &lan,
            &Call::roslan("ADD", &pod.id, &pod.path(), ifname, &lan.config("1.0.0")),
        );
        refused(&reply, 4, "CNI_IFNAME", &format!("CNI_IFNAME={ifname}"));
        assert!(reply.msg().contains("reserved"), "{reply}");
        untouched(&lan, &pod, &format!("CNI_IFNAME={ifname}"));
    }

    let conf = lan.config("1.0.0");
    let net = lan.data_dir().join("ros-lan");
    std::fs::create_dir_all(&net).unwrap();
    symlink(lan.dir().join("elsewhere"), net.join("lock")).unwrap();
    refused(
        &add(&lan, &pod, &conf),
        7,
        "ipam.dataDir",
        "a symlinked lock file, like every link in the store",
    );
    untouched(&lan, &pod, "a symlinked lock");
}

#[root_test]
fn addresses_nobody_should_get() {
    let lan = Lan::new();
    let pod = lan.pod();
    let with_range = |range: Value| {
        let mut conf = lan.config("1.0.0");
        conf["ipam"]["ranges"] = json!([[range]]);
        conf
    };
    for (range, named) in [
        (json!({"subnet": "10.77.0.0/16", "gateway": "10.78.0.1"}), "gateway"),
        (
            json!({"subnet": "10.77.0.0/16", "rangeStart": "10.77.0.0"}),
            "network address",
        ),
        (
            json!({"subnet": "10.77.0.0/16", "rangeEnd": "10.77.255.255"}),
            "broadcast address",
        ),
        (
            json!({"subnet": "10.77.1.0/24", "rangeStart": "10.77.1.0", "rangeEnd": "10.77.1.255"}),
            "network address",
        ),
        (
            json!({"subnet": "10.77.0.0/16", "gateway": "10.77.0.0"}),
            "network address",
        ),
    ] {
        let reply = add(&lan, &pod, &with_range(range.clone()));
        refused(&reply, 7, named, &format!("range {range}"));
        untouched(&lan, &pod, &format!("range {range}"));
    }
    // With the default range, a requested network or broadcast address is refused by name.
    let conf = with_range(json!({"subnet": "10.77.1.0/24"}));
    for (ip, role) in [("10.77.1.0", "network address"), ("10.77.1.255", "broadcast address")] {
        let reply = run(
            &lan,
            &Call::roslan("ADD", &pod.id, &pod.path(), "net1", &conf).args(&format!("IgnoreUnknown=1;IP={ip}")),
        );
        refused(&reply, 104, role, &format!("IP={ip}"));
        untouched(&lan, &pod, &format!("IP={ip}"));
    }
    // The whole range is still handed out: .1 is the gateway, .2 to .254 are hosts.
    let small = with_range(json!({"subnet": "10.77.1.0/29"}));
    let mut given = Vec::new();
    let pods: Vec<Pod> = (0..6).map(|_| lan.pod()).collect();
    for p in &pods {
        let reply = add(&lan, p, &small);
        if reply.status == 0 {
            given.push(roslan_tests::plugin::result_ip(reply.json.as_ref().unwrap(), 0));
        } else {
            assert_eq!(reply.code(), Some(103), "the seventh is the exhausted pool: {reply}");
        }
    }
    given.sort();
    assert_eq!(given, ["10.77.1.2", "10.77.1.3", "10.77.1.4", "10.77.1.5", "10.77.1.6"]);
    for p in &pods {
        assert_eq!(del(&lan, p, &small).status, 0);
    }
}

#[root_test]
fn del_refuses_only_what_it_needs() {
    let lan = Lan::new();
    let pod = lan.pod();
    for plugin in ["../../bin/sh", "a/b", ".", ".."] {
        let mut conf = lan.config("1.1.0");
        conf["ipam"] = json!({"type": plugin});
        let reply = del(&lan, &pod, &conf);
        assert_eq!(reply.status, 0, "DEL with ipam.type {plugin:?}: {reply}");
        let reply = run(
            &lan,
            &Call::roslan("GC", "", "", "", &{
                let mut gc = conf.clone();
                gc["cni.dev/valid-attachments"] = json!([]);
                gc
            }),
        );
        assert_eq!(reply.status, 0, "GC with ipam.type {plugin:?}: {reply}");
    }
}

#[root_test]
fn messages_say_what_is_wrong() {
    let lan = Lan::new();
    let pod = lan.pod();

    let mut call = Call::roslan("ADD", &pod.id, &pod.path(), "net1", &lan.config("1.0.0"));
    call.stdin = [b"\xef\xbb\xbf".as_slice(), &call.stdin].concat();
    refused(&run(&lan, &call), 6, "byte-order mark", "a UTF-8 BOM before the JSON");

    let mut conf = lan.config("1.0.0");
    conf["ipam"]["ranges"] = json!([[{"subnet": "::ffff:10.77.0.0/112"}]]);
    let reply = add(&lan, &pod, &conf);
    refused(&reply, 7, "IPv4-mapped", "an IPv4-mapped subnet");
    assert!(
        reply.msg().contains("10.77.0.0/16") && !reply.msg().contains("needs a"),
        "{reply}"
    );

    let reply = run(
        &lan,
        &Call::roslan("ADD", &pod.id, &pod.path(), "net1", &lan.config("1.0.0"))
            .args("IgnoreUnknown=1;IP=10.77.1.20,10.77.1.21"),
    );
    refused(&reply, 104, "both in range set 0", "two requested addresses in one set");
    assert!(!reply.msg().contains("outside"), "{reply}");
    untouched(&lan, &pod, "IP=a,b in one set");

    let mut conf = lan.config("1.0.0");
    conf["name"] = json!(5);
    let reply = add(&lan, &pod, &conf);
    refused(&reply, 7, "expected a string", "a numeric name");
    assert!(!reply.msg().contains("missing"), "one problem, not two: {reply}");

    let mut conf = lan.config("1.0.0");
    conf["ipam"]["ranges"] =
        json!([[{"subnet": "10.77.0.0/16", "rangeStart": "10.77.1.20", "rangeEnd": "10.77.1.10"}]]);
    let reply = add(&lan, &pod, &conf);
    refused(&reply, 7, "after rangeEnd", "rangeStart after rangeEnd");
    assert!(!reply.msg().contains("not in network"), "{reply}");

    for ifname in [".", ".."] {
        let reply = run(
            &lan,
            &Call::roslan("ADD", &pod.id, &pod.path(), ifname, &lan.config("1.0.0")),
        );
        refused(&reply, 4, "name directories", &format!("CNI_IFNAME={ifname:?}"));
    }

    let conf = lan.config("1.0.0");
    let data = lan.data_dir();
    let _ = std::fs::remove_dir_all(&data);
    std::fs::create_dir_all(&data).unwrap();
    symlink(lan.dir(), data.join("ros-lan")).unwrap();
    let reply = add(&lan, &pod, &conf);
    refused(&reply, 7, "ipam.dataDir", "a symlinked network directory");
    assert!(
        reply.msg().contains("set ipam.dataDir to the real directory"),
        "{reply}"
    );
    untouched(&lan, &pod, "a symlinked store");
}
