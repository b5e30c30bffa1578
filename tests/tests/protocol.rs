//! The CNI protocol as runtimes see it: result shapes per version, VERSION, and error replies.

use roslan_tests::plugin::Call;
use roslan_tests::root_test;
use roslan_tests::{Lan, roslan_bin};
use serde_json::{Value, json};

const ALL_VERSIONS: &[&str] = &["0.1.0", "0.2.0", "0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"];

#[root_test]
fn result_shape_follows_requested_version() {
    let lan = Lan::new();
    for version in ALL_VERSIONS {
        let pod = lan.pod();
        let conf = lan.config(version);
        let result = lan.add(&pod, "net1", &conf);
        assert_eq!(result["cniVersion"], *version, "{result}");
        if *version < "0.3.0" {
            assert!(
                result.get("interfaces").is_none() && result.get("ips").is_none(),
                "{version}: {result}"
            );
            let ip4 = &result["ip4"];
            assert!(ip4["ip"].as_str().unwrap().starts_with("10.77.1."), "{result}");
            assert_eq!(ip4["gateway"], "10.77.255.254");
            assert_eq!(ip4["routes"], json!([{"dst": "224.0.0.0/4"}]), "{result}");
        } else {
            let iface = &result["interfaces"][0];
            assert_eq!(iface["name"], "net1");
            assert_eq!(iface["sandbox"], pod.path(), "sandbox must be CNI_NETNS");
            let mac = iface["mac"].as_str().unwrap();
            assert_eq!(pod.ns.link("net1").unwrap()["address"], mac);
            let ip = &result["ips"][0];
            assert_eq!(ip["interface"], 0);
            assert_eq!(ip["gateway"], "10.77.255.254");
            assert_eq!(ip.get("version").is_some(), *version < "1.0.0", "{version}: {result}");
            if *version < "1.0.0" {
                assert_eq!(ip["version"], "4");
            }
            if *version == "1.1.0" {
                assert_eq!(
                    result["routes"],
                    json!([{"dst": "224.0.0.0/4", "scope": 253}]),
                    "{result}"
                );
                assert_eq!(iface["mtu"], 1500, "{result}");
            } else {
                assert_eq!(
                    result["routes"],
                    json!([{"dst": "224.0.0.0/4"}]),
                    "no gateway: {result}"
                );
                assert!(iface.get("mtu").is_none(), "mtu is a 1.1.0 field");
            }
        }
        if *version < "1.0.0" {
            assert_eq!(result["dns"], json!({}));
        } else {
            // As the Go library prints results from 1.0.0: no empty `dns`.
            assert!(result.get("dns").is_none(), "{result}");
        }
        lan.del(&pod, "net1", &conf);
    }
}

#[root_test]
fn missing_cni_version_means_0_1_0() {
    let lan = Lan::new();
    let pod = lan.pod();
    let mut conf = lan.config("0.3.1");
    conf.as_object_mut().unwrap().remove("cniVersion");
    let result = lan.add(&pod, "net1", &conf);
    assert_eq!(result["cniVersion"], "0.1.0");
    assert!(result["ip4"]["ip"].is_string(), "{result}");
}

#[test]
fn version_lists_supported_versions() {
    let bin = roslan_bin();
    for asked in ["0.4.0", "1.0.0", "9.9.9"] {
        let out = std::process::Command::new(&bin)
            .env_clear()
            .env("CNI_COMMAND", "VERSION")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .and_then(|mut child| {
                use std::io::Write;
                child
                    .stdin
                    .take()
                    .unwrap()
                    .write_all(format!("{{\"cniVersion\":\"{asked}\"}}").as_bytes())?;
                child.wait_with_output()
            })
            .unwrap();
        assert!(out.status.success());
        let reply: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(reply["supportedVersions"], json!(ALL_VERSIONS));
        let expected = if asked == "9.9.9" { "1.1.0" } else { asked };
        assert_eq!(reply["cniVersion"], expected);
    }
}

#[test]
fn no_command_prints_a_banner() {
    let out = std::process::Command::new(roslan_bin()).env_clear().output().unwrap();
    assert!(out.status.success());
    assert!(out.stdout.is_empty(), "stdout is the protocol");
    assert!(String::from_utf8_lossy(&out.stderr).contains("CNI protocol versions supported"));
}

fn assert_error(reply: &roslan_tests::Reply, code: u64, needle: &str) {
    assert_eq!(reply.status, 1, "{reply}");
    let json = reply
        .json
        .as_ref()
        .unwrap_or_else(|| panic!("error must be JSON on stdout: {reply}"));
    assert_eq!(json["code"], code, "{reply}");
    assert!(json["cniVersion"].is_string(), "{reply}");
    assert!(
        reply.msg().contains(needle),
        "message should mention {needle:?}: {reply}"
    );
}

#[root_test]
fn errors_carry_spec_codes_and_leave_nothing() {
    let lan = Lan::new();
    let pod = lan.pod();
    let conf = lan.config("1.0.0");

    let mut bad_json = Call::roslan("ADD", &pod.id, &pod.path(), "net1", &conf);
    bad_json.stdin = b"{\"cniVersion\": \"1.0.0\", \"name\":".to_vec();
    assert_error(&lan.call(&bad_json), 6, "JSON");

    let mut no_netns = Call::roslan("ADD", &pod.id, "", "net1", &conf);
    no_netns.unset.push("CNI_NETNS");
    assert_error(&lan.call(&no_netns), 4, "CNI_NETNS");

    let long_ifname = Call::roslan("ADD", &pod.id, &pod.path(), "averyveryverylongname", &conf);
    assert_error(&lan.call(&long_ifname), 4, "CNI_IFNAME");

    let bad_id = Call::roslan("ADD", "../etc", &pod.path(), "net1", &conf);
    assert_error(&lan.call(&bad_id), 4, "CNI_CONTAINERID");

    let mut future = conf.clone();
    future["cniVersion"] = json!("9.9.9");
    let reply = lan.call(&Call::roslan("ADD", &pod.id, &pod.path(), "net1", &future));
    assert_error(&reply, 1, "9.9.9");

    let mut nameless = conf.clone();
    nameless.as_object_mut().unwrap().remove("name");
    assert_error(
        &lan.call(&Call::roslan("ADD", &pod.id, &pod.path(), "net1", &nameless)),
        7,
        "name",
    );

    let mut wrong = conf.clone();
    wrong["mtu"] = json!("big");
    wrong["mode"] = json!("bridged");
    let reply = lan.call(&Call::roslan("ADD", &pod.id, &pod.path(), "net1", &wrong));
    assert_error(&reply, 7, "\"mtu\"");
    assert!(reply.msg().contains("\"mode\""), "every problem is listed: {reply}");

    let unknown_arg = Call::roslan("ADD", &pod.id, &pod.path(), "net1", &conf).args("FOO=bar");
    assert_error(&lan.call(&unknown_arg), 4, "IgnoreUnknown");

    let not_netns = Call::roslan("ADD", &pod.id, "/etc/hostname", "net1", &conf);
    assert_error(&lan.call(&not_netns), 4, "not a network namespace");

    let mut bad_dns = conf.clone();
    bad_dns["dns"] = json!({"nameservers": "10.0.0.53"});
    let reply = lan.call(&Call::roslan("ADD", &pod.id, &pod.path(), "net1", &bad_dns));
    assert_error(&reply, 7, "dns.nameservers");

    // A key roslan cannot honour refuses ADD (code 2), but never the DEL a runtime sends after it.
    let mut in_container = conf.clone();
    in_container["linkInContainer"] = json!(true);
    let reply = lan.call(&Call::roslan("ADD", &pod.id, &pod.path(), "net1", &in_container));
    assert_error(&reply, 2, "linkInContainer");
    let reply = lan.call(&Call::roslan("DEL", &pod.id, &pod.path(), "net1", &in_container));
    assert_eq!(reply.status, 0, "DEL ignores what it does not need: {reply}");

    assert!(!pod.ns.has_link("net1"), "failed ADDs leave no link");
    assert!(
        lan.reservations("ros-lan").is_empty(),
        "failed ADDs leave no reservation"
    );

    let ignored = Call::roslan("ADD", &pod.id, &pod.path(), "net1", &conf).args("IgnoreUnknown=1;FOO=bar");
    assert_eq!(
        lan.call(&ignored).status,
        0,
        "IgnoreUnknown lets unknown CNI_ARGS through"
    );
}

#[root_test]
fn unknown_keys_are_logged_with_a_suggestion_not_fatal() {
    let lan = Lan::new();
    let pod = lan.pod();
    let mut conf = lan.config("0.3.1");
    conf["isDefaultgateway"] = json!(true);
    conf["mastr"] = json!("lan0");
    let reply = lan.call(&Call::roslan("ADD", &pod.id, &pod.path(), "net1", &conf));
    assert_eq!(reply.status, 0, "{reply}");
    assert!(reply.stderr.contains("\"mastr\"; did you mean \"master\""), "{reply}");
    assert!(reply.stderr.contains("isDefaultgateway"), "{reply}");
    assert!(!reply.stdout.contains("mastr"), "warnings never go to stdout");
}

#[test]
fn validate_reports_every_problem_without_a_pod() {
    use std::io::Write;
    let run = |conf: &str| {
        let mut child = std::process::Command::new(roslan_bin())
            .arg("validate")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(conf.as_bytes()).unwrap();
        let out = child.wait_with_output().unwrap();
        (out.status.code(), String::from_utf8_lossy(&out.stdout).into_owned())
    };
    let (code, text) = run(
        r#"{"cniVersion":"0.3.1","name":"x","type":"roslan","mtu":"big","mastr":"eth0",
        "ipam":{"type":"host-local","subnet":"10.0.0.5/24"}}"#,
    );
    assert_eq!(code, Some(1), "{text}");
    assert!(text.contains("\"mtu\""), "{text}");
    assert!(text.contains("host bits set"), "{text}");
    assert!(text.contains("did you mean \"master\""), "{text}");
    let (code, text) =
        run(r#"{"cniVersion":"0.3.1","name":"x","type":"roslan","ipam":{"type":"host-local","subnet":"10.0.0.0/24"}}"#);
    assert_eq!(code, Some(0), "{text}");
    let (code, _) = run("not json");
    assert_eq!(code, Some(1));
    let (code, text) = run(
        r#"{"cniVersion":"0.3.1","name":"x","type":"roslan","linkInContainer":true,
        "ipam":{"type":"host-local","subnet":"10.0.0.0/24","probeTimeoutMs":50}}"#,
    );
    assert_eq!(code, Some(1), "{text}");
    assert!(
        text.contains("linkInContainer") && text.contains("CNI code 2"),
        "{text}"
    );
    assert!(text.contains("probeTimeoutMs is ignored"), "{text}");
}
