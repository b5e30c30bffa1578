//! `roslan doctor` and `roslan probe` through the built binary, on throwaway LANs: the verdicts an
//! operator gets on a healthy LAN and on each way a LAN breaks, and the probe's report where multicast
//! works (roslan) and where it does not (the reference plugins' gateway on the multicast route).

use std::path::{Path, PathBuf};
use std::process::Output;

use roslan_tests::lan::{HOST_ADDR, MASTER};
use roslan_tests::netns::Netns;
use roslan_tests::root_test;
use roslan_tests::{Call, Lan, MultiNodeLan, Pod, roslan_bin};
use serde_json::{Value, json};

const GROUP: &str = "239.255.0.1";

fn bin() -> String {
    roslan_bin().to_str().expect("utf-8 path").to_string()
}

/// Runs `roslan <args>` inside `ns`.
fn roslan_in(ns: &Netns, args: &[&str]) -> Output {
    ns.command(&bin()).args(args).output().expect("run roslan")
}

fn text(out: &Output) -> String {
    format!(
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// A CNI bin dir holding this build's roslan, so the binary check compares like with like without
/// touching the machine's /opt/cni/bin.
fn bin_dir(dir: &Path) -> PathBuf {
    let bin_dir = dir.join("cni-bin");
    std::fs::create_dir_all(&bin_dir).expect("create bin dir");
    let link = bin_dir.join("roslan");
    if !link.exists() {
        std::os::unix::fs::symlink(roslan_bin(), &link).expect("link roslan");
    }
    bin_dir
}

fn write_config(dir: &Path, conf: &Value) -> PathBuf {
    let path = dir.join("network.json");
    std::fs::write(&path, serde_json::to_vec_pretty(conf).expect("json")).expect("write config");
    path
}

/// Runs the doctor with `--json` and the given extra arguments; returns the exit code and findings.
fn doctor_json(ns: &Netns, dir: &Path, conf: &Value, extra: &[&str]) -> (i32, Vec<Value>, String) {
    let config = write_config(dir, conf);
    let bins = bin_dir(dir);
    let mut args = vec![
        "doctor",
        "--json",
        "--config",
        config.to_str().unwrap(),
        "--cni-bin-dir",
        bins.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    let out = roslan_in(ns, &args);
    let findings: Vec<Value> = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|err| panic!("doctor --json printed no JSON array ({err}): {}", text(&out)));
    assert_shape(&findings);
    (out.status.code().unwrap_or(-1), findings, text(&out))
}

/// Every finding is `{check, status, detail, fix}`, with a fix exactly when it did not pass.
fn assert_shape(findings: &[Value]) {
    assert!(!findings.is_empty(), "no findings at all");
    for f in findings {
        let keys: Vec<&str> = f
            .as_object()
            .map(|o| o.keys().map(String::as_str).collect())
            .unwrap_or_default();
        assert_eq!(keys.len(), 4, "{f}");
        for key in ["check", "status", "detail", "fix"] {
            assert!(keys.contains(&key), "{key} missing: {f}");
        }
        assert!(f["check"].as_str().is_some_and(|c| !c.is_empty()), "{f}");
        assert!(f["detail"].as_str().is_some_and(|d| !d.is_empty()), "{f}");
        match f["status"].as_str() {
            Some("pass") => assert!(f["fix"].is_null(), "a pass has no fix: {f}"),
            Some("warn" | "fail") => assert!(f["fix"].as_str().is_some_and(|x| !x.is_empty()), "{f}"),
            other => panic!("status {other:?}: {f}"),
        }
    }
}

fn finding<'a>(findings: &'a [Value], check: &str) -> &'a Value {
    findings
        .iter()
        .find(|f| f["check"] == check)
        .unwrap_or_else(|| panic!("no {check:?} finding in {}", Value::from(findings.to_vec())))
}

fn status<'a>(findings: &'a [Value], check: &str) -> &'a str {
    finding(findings, check)["status"].as_str().unwrap_or_default()
}

fn detail<'a>(findings: &'a [Value], check: &str) -> &'a str {
    finding(findings, check)["detail"].as_str().unwrap_or_default()
}

fn fix<'a>(findings: &'a [Value], check: &str) -> &'a str {
    finding(findings, check)["fix"].as_str().unwrap_or_default()
}

fn sysctl(ns: &Netns, assignment: &str) {
    let out = ns.exec("sysctl", &["-w", assignment]);
    assert!(out.status.success(), "sysctl -w {assignment}: {}", text(&out));
}

/// A roslan configuration for a MultiNodeLan node.
fn multi_config(lan: &MultiNodeLan) -> Value {
    json!({
        "cniVersion": "0.3.1",
        "name": "ros-lan",
        "type": "roslan",
        "master": MASTER,
        "ipam": {
            "type": "host-local",
            "dataDir": lan.dir().join("ipam"),
            "ranges": [[{
                "subnet": "10.77.0.0/16", "rangeStart": "10.77.1.10", "rangeEnd": "10.77.1.19", "gateway": HOST_ADDR
            }]]
        }
    })
}

#[root_test]
fn doctor_passes_a_healthy_lan() {
    // A snooping bridge with a querier that queries only every 300 s: the doctor hears it within its
    // few seconds only because it solicits a query.
    let lan = MultiNodeLan::with_querier(1, 30000);
    let node = &lan.nodes[0];
    sysctl(node, "net.ipv4.conf.all.rp_filter=2");
    sysctl(node, &format!("net.ipv4.conf.{MASTER}.rp_filter=2"));
    node.ip(&[
        "link", "add", "rlshim", "link", MASTER, "type", "macvlan", "mode", "bridge",
    ]);
    node.ip(&["link", "set", "rlshim", "alias", "roslan-shim", "up"]);
    let conf = multi_config(&lan);
    let pod = Pod::new();
    let reply = Call::roslan("ADD", &pod.id, &pod.path(), "net1", &conf).run_in(node);
    assert_eq!(reply.status, 0, "ADD: {reply}");

    let (code, findings, out) = doctor_json(node, lan.dir(), &conf, &[]);
    for f in &findings {
        assert_eq!(f["status"], "pass", "every check passes on a healthy LAN: {f}\n{out}");
    }
    let checks: Vec<&str> = findings.iter().filter_map(|f| f["check"].as_str()).collect();
    for expected in [
        "config",
        "master",
        "link",
        "carrier",
        "wireless",
        "mode",
        "querier",
        "mld-querier",
        "rp_filter",
        "shim",
        "ipam-dir",
        "ipam-free",
        "binary",
    ] {
        assert!(checks.contains(&expected), "{expected} checked: {checks:?}");
    }
    assert_eq!(code, 0, "{out}");
    assert!(detail(&findings, "master").starts_with("lan0"), "{out}");
    assert!(detail(&findings, "carrier").contains("has carrier"), "{out}");
    let querier = detail(&findings, "querier");
    assert!(querier.contains("answered a leave"), "solicited query: {querier}");
    let mld = detail(&findings, "mld-querier");
    assert!(
        mld.contains("answered a leave for ff05::524c") && mld.contains("fe80::"),
        "solicited MLD query from the bridge's link-local address: {mld}"
    );
    assert!(detail(&findings, "ipam-dir").contains("1 reservation(s)"), "{out}");
    assert!(detail(&findings, "ipam-free").contains("9 of 10 free"), "{out}");
    assert!(detail(&findings, "shim").starts_with("rlshim"), "{out}");
    assert!(detail(&findings, "binary").contains("the same as this doctor"), "{out}");
}

#[root_test]
fn doctor_hears_general_queries_when_only_listening() {
    let lan = MultiNodeLan::with_querier(1, 100);
    let node = &lan.nodes[0];
    let (_, findings, out) = doctor_json(
        node,
        lan.dir(),
        &multi_config(&lan),
        &["--passive", "--querier-wait", "4"],
    );
    assert_eq!(status(&findings, "querier"), "pass", "{out}");
    let querier = detail(&findings, "querier");
    assert!(querier.contains("general query"), "{querier}");
    assert!(
        querier.contains("0.0.0.0"),
        "a bridge querier without mcast_query_use_ifaddr has no source address: {querier}"
    );
}

#[root_test]
fn doctor_warns_without_a_querier() {
    // A LAN with a plain host on the wire.
    let lan = Lan::new();
    sysctl(&lan.node, "net.ipv4.conf.all.rp_filter=0");
    let (code, findings, out) = doctor_json(&lan.node, lan.dir(), &lan.config("0.3.1"), &["--querier-wait", "1"]);
    assert_eq!(status(&findings, "querier"), "warn", "{out}");
    assert!(detail(&findings, "querier").contains("no IGMP querier"), "{out}");
    // The LAN has just come up: the node's link-local address may still be in DAD for this 1 s wait.
    assert_eq!(status(&findings, "mld-querier"), "warn", "{out}");
    let mld = detail(&findings, "mld-querier");
    assert!(
        mld.contains("no MLD querier") || mld.contains("duplicate address detection"),
        "{out}"
    );
    assert!(fix(&findings, "mld-querier").contains("MLD querier"), "{out}");
    let advice = fix(&findings, "querier");
    assert!(
        advice.contains("harmless if no switch") && advice.contains("enable the IGMP querier"),
        "both cases explained: {advice}"
    );
    assert!(findings.iter().all(|f| f["status"] != "fail"), "nothing fails: {out}");
    assert_eq!(code, 0, "a warning alone does not fail the doctor: {out}");

    // A bridge that neither snoops nor queries, and the same answer when only listening.
    let multi = MultiNodeLan::new(1);
    let (_, findings, out) = doctor_json(
        &multi.nodes[0],
        multi.dir(),
        &multi_config(&multi),
        &["--querier-wait", "1", "--passive"],
    );
    assert_eq!(status(&findings, "querier"), "warn", "{out}");
    assert!(detail(&findings, "querier").contains("--querier-wait 130"), "{out}");
}

#[root_test]
fn doctor_fails_when_the_master_is_down() {
    let lan = Lan::new();
    lan.node.ip(&["link", "set", MASTER, "down"]);
    let (code, findings, out) = doctor_json(&lan.node, lan.dir(), &lan.config("0.3.1"), &["--querier-wait", "1"]);
    assert_eq!(code, 1, "{out}");
    assert_eq!(status(&findings, "link"), "fail", "{out}");
    assert!(detail(&findings, "link").contains("lan0 is down"), "{out}");
    assert!(fix(&findings, "link").starts_with("ip link set lan0 up"), "{out}");
    assert_eq!(
        status(&findings, "querier"),
        "warn",
        "not checked on a down link: {out}"
    );

    // The same in the human report: the verdict, then the fix below it.
    let config = write_config(lan.dir(), &lan.config("0.3.1"));
    let out = roslan_in(
        &lan.node,
        &["doctor", "--config", config.to_str().unwrap(), "--querier-wait", "0"],
    );
    let report = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let lines: Vec<&str> = report.lines().collect();
    let at = lines
        .iter()
        .position(|l| l.starts_with("fail  link"))
        .unwrap_or_else(|| panic!("a fail line for the link: {report}"));
    assert!(
        lines[at + 1].trim_start().starts_with("fix: ip link set lan0 up"),
        "{report}"
    );
    assert!(
        !report.contains("querier"),
        "--querier-wait 0 skips the check: {report}"
    );
}

#[root_test]
fn doctor_fails_without_carrier() {
    let lan = Lan::new();
    lan.host.ip(&["link", "set", "lan0p", "down"]);
    let (code, findings, out) = doctor_json(&lan.node, lan.dir(), &lan.config("0.3.1"), &["--querier-wait", "1"]);
    assert_eq!(code, 1, "{out}");
    assert_eq!(status(&findings, "link"), "pass", "administratively up: {out}");
    assert_eq!(status(&findings, "carrier"), "fail", "{out}");
    let said = detail(&findings, "carrier");
    assert!(said.contains("no carrier") && said.contains("silent"), "{said}");
}

/// Found by the e2e's emptied MicroK8s bin dir: for a roslan network a missing binary means every ADD
/// fails, which is a failure, and the fix names the bin dir that exists (MicroK8s', not /opt/cni/bin).
#[root_test]
fn doctor_fails_when_the_networks_plugin_is_not_installed() {
    let lan = Lan::new();
    let empty = lan.dir().join("empty-bin");
    std::fs::create_dir_all(&empty).expect("create an empty bin dir");
    let config = write_config(lan.dir(), &lan.config("0.3.1"));
    let run = |conf: &Path, bin_dir: &Path| {
        let (conf, bin_dir) = (conf.to_str().unwrap(), bin_dir.to_str().unwrap());
        let out = roslan_in(
            &lan.node,
            &[
                "doctor",
                "--json",
                "--querier-wait",
                "0",
                "--config",
                conf,
                "--cni-bin-dir",
                bin_dir,
            ],
        );
        let findings: Vec<Value> =
            serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", text(&out)));
        assert_shape(&findings);
        (out.status.code(), findings, text(&out))
    };
    let (code, findings, out) = run(&config, &empty);
    assert_eq!(code, Some(1), "{out}");
    assert_eq!(status(&findings, "binary"), "fail", "{out}");
    assert!(
        detail(&findings, "binary").contains("every ADD on network \"ros-lan\" fails"),
        "{out}"
    );
    assert!(
        fix(&findings, "binary").contains(&format!("{}/roslan", empty.display())),
        "{out}"
    );

    // A network of another type does not need roslan: only a warning.
    let mut macvlan = lan.config("0.3.1");
    macvlan["type"] = json!("macvlan");
    let other = lan.dir().join("macvlan.json");
    std::fs::write(&other, macvlan.to_string()).unwrap();
    let (code, findings, out) = run(&other, &empty);
    assert_eq!(code, Some(0), "{out}");
    assert_eq!(status(&findings, "binary"), "warn", "{out}");

    // With no bin dir at all, the fix names the one given.
    let missing = lan.dir().join("no-such-dir");
    let (_, findings, out) = run(&config, &missing);
    assert!(
        fix(&findings, "binary").contains(&format!("{}/roslan", missing.display())),
        "{out}"
    );
}

#[root_test]
fn doctor_lists_interfaces_when_the_master_is_missing() {
    let lan = Lan::new();
    let mut conf = lan.config("0.3.1");
    conf["master"] = json!("enp3s0");
    let (code, findings, out) = doctor_json(&lan.node, lan.dir(), &conf, &["--querier-wait", "1"]);
    assert_eq!(code, 1, "{out}");
    assert_eq!(status(&findings, "master"), "fail", "{out}");
    let said = detail(&findings, "master");
    assert!(
        said.contains("\"enp3s0\"") && said.contains("lan0"),
        "names the missing master and what exists: {said}"
    );
    assert!(fix(&findings, "master").contains("masterSubnet"), "{out}");
    assert!(
        !findings.iter().any(|f| f["check"] == "link" || f["check"] == "querier"),
        "no link checks without a link: {out}"
    );
}

#[root_test]
fn doctor_warns_on_strict_rp_filter() {
    let lan = Lan::new();
    let conf = lan.config("0.3.1");
    // The kernel applies max(all, interface): strict on either side is strict.
    for (all, own) in [("1", "0"), ("0", "1")] {
        sysctl(&lan.node, &format!("net.ipv4.conf.all.rp_filter={all}"));
        sysctl(&lan.node, &format!("net.ipv4.conf.{MASTER}.rp_filter={own}"));
        let (code, findings, out) = doctor_json(&lan.node, lan.dir(), &conf, &["--querier-wait", "0"]);
        assert_eq!(
            status(&findings, "rp_filter"),
            "warn",
            "all={all} {MASTER}={own}: {out}"
        );
        let said = detail(&findings, "rp_filter");
        assert!(said.starts_with("strict"), "{said}");
        assert!(said.contains(&format!("net.ipv4.conf.all.rp_filter={all}")), "{said}");
        assert!(fix(&findings, "rp_filter").contains("rp_filter=2"), "{out}");
        assert_eq!(code, 0, "strict rp_filter on the node is a warning: {out}");
    }
    // ... and loose on `all` makes a strict interface loose.
    sysctl(&lan.node, "net.ipv4.conf.all.rp_filter=2");
    let (_, findings, out) = doctor_json(&lan.node, lan.dir(), &conf, &["--querier-wait", "0"]);
    assert_eq!(status(&findings, "rp_filter"), "pass", "all=2 {MASTER}=1: {out}");
    assert!(detail(&findings, "rp_filter").starts_with("loose"), "{out}");
}

#[root_test]
fn doctor_checks_the_configuration_and_the_ipam_directory() {
    let lan = Lan::new();
    let mut conf = lan.config("0.3.1");
    conf["ipam"]["ranges"] = json!([[{
        "subnet": "10.77.0.0/16", "rangeStart": "10.77.1.10", "rangeEnd": "10.77.1.11", "gateway": HOST_ADDR
    }]]);
    let net_dir = lan.data_dir().join("ros-lan");
    std::fs::create_dir_all(&net_dir).unwrap();
    std::fs::write(net_dir.join("10.77.1.10"), "sandboxgone\r\nnet1").unwrap();
    std::fs::write(net_dir.join("10.77.1.11"), "foreign-host\r\narp 02:00:00:00:00:01").unwrap();
    let (code, findings, out) = doctor_json(&lan.node, lan.dir(), &conf, &["--querier-wait", "0"]);
    assert_eq!(status(&findings, "config"), "pass", "{out}");
    assert!(
        detail(&findings, "ipam-dir").contains("2 reservation(s), 1 of them foreign"),
        "{out}"
    );
    assert_eq!(status(&findings, "ipam-free"), "fail", "{out}");
    assert!(detail(&findings, "ipam-free").contains("0 of 2 free"), "{out}");
    assert_eq!(status(&findings, "foreign"), "warn", "{out}");
    assert!(detail(&findings, "foreign").contains("10.77.1.11"), "{out}");
    assert_eq!(code, 1, "{out}");

    // A data directory that is a symbolic link: roslan refuses it, so every ADD would fail.
    let real = lan.dir().join("real-ipam");
    std::fs::rename(lan.data_dir(), &real).unwrap();
    std::os::unix::fs::symlink(&real, lan.data_dir()).unwrap();
    let (code, findings, out) = doctor_json(&lan.node, lan.dir(), &conf, &["--querier-wait", "0"]);
    assert_eq!(status(&findings, "ipam-dir"), "fail", "{out}");
    assert!(detail(&findings, "ipam-dir").contains("symbolic link"), "{out}");
    assert_eq!(code, 1, "{out}");

    // Every configuration problem at once, each by its key.
    let mut bad = lan.config("0.3.1");
    bad["mode"] = json!("brdge");
    bad["ipam"]["ranges"][0][0]["subnet"] = json!("10.77.0.0/33");
    let (code, findings, out) = doctor_json(&lan.node, lan.dir(), &bad, &["--querier-wait", "0"]);
    assert_eq!(code, 1, "{out}");
    assert_eq!(status(&findings, "config"), "fail", "{out}");
    let said = detail(&findings, "config");
    assert!(
        said.contains("\"mode\"") && said.contains("ipam.ranges[0][0].subnet"),
        "{said}"
    );
}

#[root_test]
fn doctor_refuses_a_wireless_master() {
    // The kernel marks a wireless interface with a `wireless/` directory (and a `phy80211` link) in its
    // sysfs directory; roslan looks for exactly that. A veth cannot be made wireless, so this run shows
    // the doctor a sysfs in which lan0 has that directory: a tmpfs over lan0's sysfs directory, in a
    // private mount namespace inside the one `ip netns exec` creates, so nothing outside sees it.
    let lan = Lan::new();
    let config = write_config(lan.dir(), &lan.config("0.3.1"));
    let bins = bin_dir(lan.dir());
    let script = format!(
        "mount -t tmpfs roslan-test /sys/devices/virtual/net/{MASTER} \
         && mkdir /sys/devices/virtual/net/{MASTER}/wireless \
         && exec {} doctor --json --querier-wait 0 --config {} --cni-bin-dir {}",
        bin(),
        config.display(),
        bins.display()
    );
    let out = lan
        .node
        .command("unshare")
        .args(["--mount", "--propagation", "private", "sh", "-c", &script])
        .output()
        .expect("run unshare");
    let findings: Vec<Value> =
        serde_json::from_slice(&out.stdout).unwrap_or_else(|err| panic!("no JSON ({err}): {}", text(&out)));
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert_eq!(status(&findings, "master"), "pass", "the master itself is found");
    assert_eq!(status(&findings, "wireless"), "fail", "{}", text(&out));
    assert!(detail(&findings, "wireless").contains("access point"), "explains why");
    assert!(fix(&findings, "wireless").contains("ipvlan"), "points to ipvlan L2");
    // The outer namespace's sysfs is untouched.
    assert!(
        !lan.node
            .exec("test", &["-e", "/sys/class/net/lan0/wireless"])
            .status
            .success()
    );
}

#[test]
fn doctor_and_probe_refuse_bad_usage() {
    for args in [
        &["doctor", "--bogus"][..],
        &["doctor", "--querier-wait", "soon"],
        &["doctor", "--config", "/nonexistent/roslan.json"],
        &["probe", "--from", "node"],
        &["probe", "--to", "node"],
        &["probe", "--from", "node", "--to", "node", "--group", "10.0.0.1"],
        &["probe", "--from", "node", "--to", "/proc/self/ns/pid"],
        &["probe", "--from", "node", "--to", "no-such-netns-roslan-test"],
    ] {
        let out = std::process::Command::new(roslan_bin())
            .args(args)
            .output()
            .expect("run roslan");
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", text(&out));
        assert!(out.stdout.is_empty(), "{args:?}: nothing on stdout on a usage error");
        assert!(!out.stderr.is_empty(), "{args:?}: the reason on stderr");
    }
}

/// Runs `roslan probe --json` from the node namespace; returns the exit code and the report.
fn probe_json(lan: &Lan, from: &str, to: &[&str], extra: &[&str]) -> (i32, Value, String) {
    let mut args = vec![
        "probe",
        "--from",
        from,
        "--count",
        "5",
        "--interval-ms",
        "20",
        "--timeout-ms",
        "500",
        "--json",
    ];
    for place in to {
        args.extend_from_slice(&["--to", place]);
    }
    args.extend_from_slice(extra);
    let out = roslan_in(&lan.node, &args);
    let report: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|err| panic!("probe --json printed no JSON ({err}): {}", text(&out)));
    (out.status.code().unwrap_or(-1), report, text(&out))
}

fn receiver<'a>(report: &'a Value, place: &str) -> &'a Value {
    report["receivers"]
        .as_array()
        .and_then(|list| list.iter().find(|r| r["place"] == place))
        .unwrap_or_else(|| panic!("no receiver {place} in {report}"))
}

#[root_test]
fn probe_reports_delivery_between_roslan_pods_and_a_lan_host() {
    let lan = Lan::new();
    let conf = lan.config("0.3.1");
    let a = lan.dual_homed_pod();
    let b = lan.dual_homed_pod();
    lan.add(&a, "net1", &conf);
    lan.add(&b, "net1", &conf);
    let (a_path, b_path, host_path) = (a.path(), b.path(), lan.host.path());

    let (code, report, out) = probe_json(&lan, &a_path, &[&b_path, &host_path], &[]);
    assert_eq!(code, 0, "{out}");
    assert_eq!(report["ok"], true, "{out}");
    assert_eq!(report["group"], GROUP);
    assert_eq!(report["port"], 7399, "default port: next to DDS's 7400, not on it");
    let sender = &report["sender"];
    assert_eq!(sender["sent"], 5, "{out}");
    assert_eq!(
        sender["route"]["dev"], "net1",
        "unpinned multicast leaves through roslan's interface: {out}"
    );
    assert_eq!(sender["route"]["gateway"], Value::Null, "{out}");
    for place in [&b_path, &host_path] {
        let r = receiver(&report, place);
        assert_eq!(r["received"], 5, "{place}: {out}");
        assert_eq!(r["loss"], 0.0, "{place}: {out}");
        let median = r["latency_ms"]["median"].as_f64().expect("latency");
        let max = r["latency_ms"]["max"].as_f64().expect("latency");
        assert!(median > 0.0 && median <= max && max < 1000.0, "{place}: {r}");
        assert_eq!(
            r["sources"].as_array().map(Vec::len),
            Some(1),
            "{place}: one sender address: {r}"
        );
    }
    assert_eq!(receiver(&report, &b_path)["join"]["dev"], "net1", "{out}");
    assert_eq!(receiver(&report, &host_path)["join"]["dev"], "lan0p", "{out}");

    // The readable report says the same.
    let out = roslan_in(
        &lan.node,
        &[
            "probe",
            "--from",
            &a_path,
            "--to",
            &b_path,
            "--count",
            "3",
            "--interval-ms",
            "10",
        ],
    );
    let report = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(report.contains("leaves dev net1"), "{report}");
    assert!(report.contains("3/3 received"), "{report}");
    assert!(report.contains("verdict: ok"), "{report}");
}

#[root_test]
fn probe_names_the_gateway_when_the_reference_plugins_route_multicast() {
    // The reference macvlan + host-local with the usual 224.0.0.0/4 route (the upstream release users
    // run): host-local attaches the range gateway, so frames go to the gateway's MAC and the sibling pod
    // hears nothing.
    let lan = Lan::new();
    let conf = lan.reference_config("0.3.1");
    let a = lan.dual_homed_pod();
    let b = lan.dual_homed_pod();
    for pod in [&a, &b] {
        lan.reference_add(&roslan_tests::plugin::Reference::upstream(), pod, "net1", &conf);
    }
    let (a_path, b_path, host_path) = (a.path(), b.path(), lan.host.path());
    let (code, report, out) = probe_json(&lan, &a_path, &[&b_path, &host_path], &[]);
    assert_eq!(code, 1, "{out}");
    assert_eq!(report["ok"], false, "{out}");
    assert_eq!(report["sender"]["route"]["gateway"], HOST_ADDR, "{out}");
    assert_eq!(
        receiver(&report, &b_path)["received"],
        0,
        "the sibling pod hears nothing: {out}"
    );
    assert_eq!(
        receiver(&report, &host_path)["received"],
        5,
        "only the gateway's owner does: {out}"
    );
    let hints = report["hints"].to_string();
    assert!(
        hints.contains("gateway") && hints.contains(HOST_ADDR),
        "the hint names the gateway: {hints}"
    );
    assert!(
        report["verdict"].as_str().unwrap_or_default().starts_with("FAIL"),
        "{out}"
    );

    let out = roslan_in(
        &lan.node,
        &[
            "probe",
            "--from",
            &a_path,
            "--to",
            &b_path,
            "--count",
            "3",
            "--interval-ms",
            "10",
            "--timeout-ms",
            "300",
        ],
    );
    let text_report = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text_report.contains(&format!("via {HOST_ADDR} dev net1")),
        "{text_report}"
    );
    assert!(text_report.contains("0/3 received"), "{text_report}");
}

#[root_test]
fn probe_from_the_node_to_its_own_pod_points_at_the_shim() {
    let lan = Lan::new();
    let pod = lan.dual_homed_pod();
    lan.add(&pod, "net1", &lan.config("0.3.1"));
    let pod_path = pod.path();
    let host_path = lan.host.path();
    let (code, report, out) = probe_json(&lan, "node", &[&pod_path, &host_path], &[]);
    assert_eq!(code, 1, "{out}");
    assert_eq!(
        receiver(&report, &host_path)["received"],
        5,
        "the LAN host hears the node: {out}"
    );
    assert_eq!(
        receiver(&report, &pod_path)["received"],
        0,
        "the kernel never passes frames from a master to its macvlans: {out}"
    );
    let hints = report["hints"].to_string();
    assert!(hints.contains("host shim"), "{hints}");

    // With a shim, a sibling macvlan of the pod's, the node reaches it.
    lan.node.ip(&[
        "link", "add", "rlshim", "link", MASTER, "type", "macvlan", "mode", "bridge",
    ]);
    lan.node.ip(&["addr", "add", "10.77.255.200/32", "dev", "rlshim"]);
    lan.node.ip(&["link", "set", "rlshim", "up"]);
    lan.node.ip(&["route", "add", "224.0.0.0/4", "dev", "rlshim"]);
    let (code, report, out) = probe_json(&lan, "node", &[&pod_path], &[]);
    assert_eq!(code, 0, "{out}");
    assert_eq!(report["sender"]["route"]["dev"], "rlshim", "{out}");
    assert_eq!(receiver(&report, &pod_path)["received"], 5, "{out}");
}

#[root_test]
fn probe_carries_ipv6_groups() {
    let lan = Lan::new();
    // Link-local addresses must finish duplicate address detection before they can be a source.
    let settled = |ns: &Netns| ns.ip(&["-6", "addr", "show", "tentative"]).trim().is_empty();
    let start = std::time::Instant::now();
    while !(settled(&lan.node) && settled(&lan.host)) {
        assert!(start.elapsed().as_secs() < 10, "IPv6 DAD did not finish");
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let host_path = lan.host.path();
    let (code, report, out) = probe_json(&lan, "node", &[&host_path, "node"], &["--group", "ff12::7399"]);
    assert_eq!(code, 0, "{out}");
    assert_eq!(report["group"], "ff12::7399");
    assert_eq!(report["sender"]["route"]["dev"], "lan0", "{out}");
    assert_eq!(receiver(&report, &host_path)["received"], 5, "{out}");
    assert_eq!(
        receiver(&report, "node")["received"],
        5,
        "looped back to the sender's own namespace: {out}"
    );
}
