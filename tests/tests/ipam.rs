//! roslan's IPAM against the reference host-local, through the binaries: the same inputs give the same
//! results and the same refusals, both can serve one data directory at the same time, and roslan adds
//! what host-local lacks (comma lists in IP=, GC, STATUS). IPAM plugins need no namespace, so these
//! tests run without root.

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use roslan_tests::netns::unique;
use roslan_tests::plugin::{Call, Reference, Reply, workspace_bin};
use serde_json::{Value, json};

/// A scratch directory removed on drop.
struct Scratch(PathBuf);

impl Scratch {
    fn new() -> Scratch {
        let dir = std::env::temp_dir().join(format!("roslan-ipam-test-{}", unique()));
        std::fs::create_dir_all(&dir).unwrap();
        Scratch(dir)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn conf(version: &str, data_dir: &Path, ipam: Value) -> Value {
    let mut ipam = ipam;
    ipam["dataDir"] = json!(data_dir);
    json!({"cniVersion": version, "name": "ipnet", "type": "macvlan", "ipam": ipam})
}

/// Which build of the reference host-local.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
enum Build {
    /// The upstream release (`make peers`), which users run.
    Upstream,
    /// Debian's package, which a Debian node has.
    Debian,
}

#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
enum Tool {
    Roslan,
    HostLocal(Build),
}

const HOST_LOCALS: [Tool; 2] = [Tool::HostLocal(Build::Upstream), Tool::HostLocal(Build::Debian)];

fn call(tool: Tool, command: &str, id: &str, args: &str, conf: &Value) -> Reply {
    let (bin, ipam_type) = match tool {
        Tool::Roslan => (workspace_bin("roslan-ipam"), "roslan-ipam"),
        Tool::HostLocal(Build::Upstream) => (Reference::upstream().bin("host-local"), "host-local"),
        Tool::HostLocal(Build::Debian) => (Reference::debian().bin("host-local"), "host-local"),
    };
    let mut conf = conf.clone();
    conf["ipam"]["type"] = json!(ipam_type);
    Call::new(bin, command, id, "/run/netns/unused", "net1", &conf)
        .args(args)
        .run()
}

/// One step of a scenario: command, container ID, CNI_ARGS, and a change to the configuration.
type Step = (&'static str, &'static str, &'static str, fn(&mut Value));

fn same(_: &mut Value) {}

/// Runs the same steps against roslan-ipam and each build of host-local, each with its own fresh data
/// directory, and requires the same outcome at every step: all succeed with equal JSON, or all refuse.
fn parity(name: &str, version: &str, ipam: Value, setup: fn(&Path), steps: &[Step]) {
    for host_local in HOST_LOCALS {
        let dirs = [Scratch::new(), Scratch::new()];
        for dir in &dirs {
            setup(&dir.0.join("ipnet"));
        }
        for (i, (command, id, args, change)) in steps.iter().enumerate() {
            let replies: Vec<Reply> = [Tool::Roslan, host_local]
                .iter()
                .zip(&dirs)
                .map(|(tool, dir)| {
                    let mut conf = conf(version, &dir.0, ipam.clone());
                    change(&mut conf);
                    call(*tool, command, id, args, &conf)
                })
                .collect();
            let (ours, theirs) = (&replies[0], &replies[1]);
            // Debian's 1.1.1 links CNI library 1.0.1, which still printed an empty `dns` in 1.0.0
            // results; libraries since leave it out, as roslan does.
            let theirs_json = match (host_local, theirs.json.clone()) {
                (Tool::HostLocal(Build::Debian), Some(mut json)) if json["dns"] == json!({}) && version >= "1.0.0" => {
                    json.as_object_mut().map(|o| o.remove("dns"));
                    Some(json)
                }
                (_, json) => json,
            };
            let context =
                format!("{name}, step {i} ({command} {id} {args:?})\n  roslan:     {ours}\n  {host_local:?}: {theirs}");
            assert_eq!(ours.status == 0, theirs.status == 0, "different outcome in {context}");
            if ours.status == 0 && *command == "ADD" {
                assert_eq!(ours.json, theirs_json, "different result in {context}");
            }
            if ours.status != 0 {
                assert!(
                    ours.code().is_some() && !ours.msg().is_empty(),
                    "roslan's refusal is a CNI error: {context}"
                );
            }
        }
    }
}

#[test]
fn parity_with_host_local() {
    let v4 = json!({"ranges": [[{"subnet": "10.1.0.0/24", "rangeStart": "10.1.0.10", "rangeEnd": "10.1.0.14"}]]});
    parity(
        "legacy flat range, round robin and exhaustion",
        "0.3.1",
        json!({"subnet": "10.1.0.0/24", "rangeStart": "10.1.0.10", "rangeEnd": "10.1.0.13", "gateway": "10.1.0.1"}),
        |_| {},
        &[
            ("ADD", "a", "", same),
            ("ADD", "b", "", same),
            ("DEL", "a", "", same),
            ("ADD", "c", "", same),
            ("ADD", "d", "", same),
            ("ADD", "e", "", same),
            ("ADD", "f", "", same),
            ("DEL", "c", "", same),
            ("ADD", "g", "", same),
        ],
    );
    parity(
        "two families, routes",
        "1.0.0",
        json!({"ranges": [[{"subnet": "10.1.0.0/24"}], [{"subnet": "fd00:1::/120", "rangeStart": "fd00:1::10"}]],
               "routes": [{"dst": "0.0.0.0/0"}, {"dst": "10.0.0.0/8", "gw": "10.1.0.254"}, {"dst": "224.0.0.0/4"}]}),
        |_| {},
        &[
            ("ADD", "a", "", same),
            ("ADD", "b", "", same),
            ("CHECK", "a", "", same),
            ("DEL", "a", "", same),
            ("CHECK", "a", "", same),
        ],
    );
    parity(
        "one set of two ranges, gateway inside the range",
        "0.4.0",
        json!({"ranges": [[{"subnet": "10.1.0.0/29", "rangeStart": "10.1.0.2", "gateway": "10.1.0.4"}, {"subnet": "10.2.0.0/30"}]]}),
        |_| {},
        &[
            ("ADD", "a", "", same),
            ("ADD", "b", "", same),
            ("ADD", "c", "", same),
            ("ADD", "d", "", same),
            ("ADD", "e", "", same),
            ("ADD", "f", "", same),
            ("ADD", "g", "", same),
        ],
    );
    parity(
        "runtimeConfig.ipRanges, args.cni.ips and runtimeConfig.ips",
        "1.0.0",
        v4.clone(),
        |_| {},
        &[
            ("ADD", "a", "", |c| {
                c["runtimeConfig"] = json!({"ipRanges": [[{"subnet": "10.3.0.0/24"}]]})
            }),
            ("ADD", "b", "", |c| c["args"] = json!({"cni": {"ips": ["10.1.0.13"]}})),
            ("ADD", "c", "", |c| {
                c["runtimeConfig"] = json!({"ips": ["10.1.0.12/24"]})
            }),
            ("ADD", "d", "", |c| c["runtimeConfig"] = json!({"ips": ["10.1.0.1"]})),
            ("ADD", "e", "", |c| c["runtimeConfig"] = json!({"ips": ["10.9.9.9"]})),
        ],
    );
    parity(
        "requested addresses in CNI_ARGS",
        "1.0.0",
        v4.clone(),
        |_| {},
        &[
            ("ADD", "a", "IgnoreUnknown=1;IP=10.1.0.12", same),
            ("ADD", "b", "IgnoreUnknown=1;IP=10.1.0.12/24", same),
            ("ADD", "c", "IgnoreUnknown=1;IP=10.1.0.13/24", same),
            ("ADD", "d", "Unknown=1", same),
            ("ADD", "a", "", same),
        ],
    );
    parity(
        "resolvConf",
        "1.0.0",
        json!({"ranges": [[{"subnet": "10.1.0.0/24"}]], "resolvConf": "/tmp/roslan-parity-resolv.conf"}),
        |_| {
            std::fs::write("/tmp/roslan-parity-resolv.conf", "# test\nnameserver 10.1.0.53\nnameserver fd00::53\nsearch robots.lan lab.lan\ndomain robots.lan\noptions ndots:2 timeout:1\n").unwrap();
        },
        &[("ADD", "a", "", same)],
    );
    parity(
        "legacy reservation files holding only a container ID",
        "1.0.0",
        v4.clone(),
        |dir| {
            std::fs::create_dir_all(dir).unwrap();
            std::fs::write(dir.join("10.1.0.10"), "old-container").unwrap();
        },
        &[
            ("ADD", "a", "", same),
            ("DEL", "old-container", "", same),
            ("ADD", "b", "", same),
            ("ADD", "c", "", same),
        ],
    );
    parity(
        "a second ADD for the same attachment",
        "1.0.0",
        v4.clone(),
        |_| {},
        &[
            ("ADD", "a", "", same),
            ("ADD", "a", "", same),
            ("DEL", "never-added", "", same),
        ],
    );
    for (name, ipam) in [
        (
            "overlapping range sets",
            json!({"ranges": [[{"subnet": "10.1.0.0/24"}], [{"subnet": "10.1.0.0/25"}]]}),
        ),
        ("host bits set", json!({"ranges": [[{"subnet": "10.1.0.5/24"}]]})),
        ("too small", json!({"ranges": [[{"subnet": "10.1.0.0/31"}]]})),
        (
            "rangeStart outside",
            json!({"ranges": [[{"subnet": "10.1.0.0/24", "rangeStart": "10.2.0.1"}]]}),
        ),
        (
            "rangeEnd before rangeStart",
            json!({"ranges": [[{"subnet": "10.1.0.0/24", "rangeStart": "10.1.0.9", "rangeEnd": "10.1.0.3"}]]}),
        ),
        (
            "mixed families in a set",
            json!({"ranges": [[{"subnet": "10.1.0.0/24"}, {"subnet": "fd00::/64"}]]}),
        ),
        ("no ranges", json!({})),
    ] {
        parity(name, "1.0.0", ipam, |_| {}, &[("ADD", "a", "", same)]);
    }
    parity(
        "two IPv4 sets with an 0.2.0 result",
        "0.2.0",
        json!({"ranges": [[{"subnet": "10.1.0.0/24"}], [{"subnet": "10.2.0.0/24"}]]}),
        |_| {},
        &[("ADD", "a", "", same)],
    );
    parity(
        "0.2.0 result",
        "0.2.0",
        json!({"ranges": [[{"subnet": "10.1.0.0/24"}], [{"subnet": "fd00:1::/64"}]], "routes": [{"dst": "0.0.0.0/0"}, {"dst": "::/0"}]}),
        |_| {},
        &[("ADD", "a", "", same)],
    );
}

#[test]
fn comma_lists_in_ip_work_where_host_local_refuses_them() {
    let dir = Scratch::new();
    let conf = conf(
        "1.0.0",
        &dir.0,
        json!({"ranges": [[{"subnet": "10.1.0.0/24"}], [{"subnet": "fd00:1::/64"}]]}),
    );
    let args = "IgnoreUnknown=true;K8S_POD_NAMESPACE=ns;K8S_POD_NAME=p;IP=10.1.0.33/24,fd00:1::33/64";
    let reply = call(Tool::Roslan, "ADD", "multus", args, &conf);
    assert_eq!(reply.status, 0, "{reply}");
    let ips = &reply.json.as_ref().unwrap()["ips"];
    assert_eq!(ips[0]["address"], "10.1.0.33/24");
    assert_eq!(ips[1]["address"], "fd00:1::33/64");
    let reply = call(Tool::Roslan, "DEL", "multus", args, &conf);
    assert_eq!(reply.status, 0, "DEL with the same CNI_ARGS: {reply}");
    assert!(!dir.0.join("ipnet/10.1.0.33").exists());

    // The reference refuses the same arguments on ADD and, which wedges pods, on DEL: both builds.
    for host_local in HOST_LOCALS {
        let other = Scratch::new();
        let conf = self::conf(
            "1.0.0",
            &other.0,
            json!({"ranges": [[{"subnet": "10.1.0.0/24"}], [{"subnet": "fd00:1::/64"}]]}),
        );
        assert_ne!(
            call(host_local, "ADD", "multus", args, &conf).status,
            0,
            "{host_local:?}"
        );
        assert_ne!(
            call(host_local, "DEL", "multus", args, &conf).status,
            0,
            "{host_local:?}"
        );
    }
}

/// A tiny deterministic generator, so a failing interleaving can be replayed.
struct Lcg(u64);

impl Lcg {
    fn below(&mut self, n: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) % n
    }
}

#[test]
fn host_local_and_roslan_share_a_directory_concurrently() {
    let dir = Scratch::new();
    // 30 addresses for at most 24 live attachments: addresses are reused all the time.
    let conf = conf(
        "1.0.0",
        &dir.0,
        json!({"ranges": [[{"subnet": "10.5.0.0/27", "rangeStart": "10.5.0.2"}]]}),
    );
    let live: Mutex<HashMap<IpAddr, String>> = Mutex::new(HashMap::new());
    let counts: Mutex<HashMap<(&str, Tool), usize>> = Mutex::new(HashMap::new());
    std::thread::scope(|scope| {
        for worker in 0..8u64 {
            let (conf, live, counts) = (&conf, &live, &counts);
            scope.spawn(move || {
                let mut rng = Lcg(worker * 7919 + 1);
                let mut mine: Vec<(String, IpAddr)> = Vec::new();
                for op in 0..32 {
                    let tool = [Tool::Roslan, HOST_LOCALS[0], HOST_LOCALS[1]][rng.below(3) as usize];
                    let delete = !mine.is_empty() && (mine.len() >= 3 || rng.below(2) == 0);
                    if delete {
                        let (id, ip) = mine.remove(rng.below(mine.len() as u64) as usize);
                        // The address may be handed out again as soon as its DEL starts.
                        live.lock().unwrap().remove(&ip);
                        let reply = call(tool, "DEL", &id, "", conf);
                        assert_eq!(reply.status, 0, "{tool:?} DEL {id}: {reply}");
                        *counts.lock().unwrap().entry(("DEL", tool)).or_default() += 1;
                    } else {
                        let id = format!("w{worker}op{op}");
                        let reply = call(tool, "ADD", &id, "", conf);
                        assert_eq!(reply.status, 0, "{tool:?} ADD {id}: {reply}");
                        let address = reply.json.as_ref().unwrap()["ips"][0]["address"]
                            .as_str()
                            .unwrap()
                            .to_string();
                        let ip: IpAddr = address.split('/').next().unwrap().parse().unwrap();
                        if let Some(holder) = live.lock().unwrap().insert(ip, id.clone()) {
                            panic!("{ip} handed to {id} by {tool:?} while {holder} holds it");
                        }
                        *counts.lock().unwrap().entry(("ADD", tool)).or_default() += 1;
                        mine.push((id, ip));
                    }
                }
                for (id, ip) in mine {
                    live.lock().unwrap().remove(&ip);
                    let tool = [Tool::Roslan, HOST_LOCALS[0], HOST_LOCALS[1]][rng.below(3) as usize];
                    assert_eq!(call(tool, "DEL", &id, "", conf).status, 0);
                }
            });
        }
    });
    let counts = counts.into_inner().unwrap();
    let total: usize = counts.values().sum();
    assert!(total >= 200, "{total} operations");
    for key in [
        ("ADD", Tool::Roslan),
        ("ADD", HOST_LOCALS[0]),
        ("ADD", HOST_LOCALS[1]),
        ("DEL", Tool::Roslan),
        ("DEL", HOST_LOCALS[0]),
        ("DEL", HOST_LOCALS[1]),
    ] {
        assert!(
            counts.get(&key).copied().unwrap_or(0) > 10,
            "every tool did both commands: {counts:?}"
        );
    }
    let left: Vec<_> = std::fs::read_dir(dir.0.join("ipnet"))
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().parse::<IpAddr>().is_ok())
        .collect();
    assert!(left.is_empty(), "everything was released: {left:?}");
}

#[test]
fn gc_and_status_through_roslan_ipam() {
    let dir = Scratch::new();
    let conf = conf(
        "1.1.0",
        &dir.0,
        json!({"ranges": [[{"subnet": "10.1.0.0/24", "rangeStart": "10.1.0.10", "rangeEnd": "10.1.0.12"}]]}),
    );
    let status = |conf: &Value| call(Tool::Roslan, "STATUS", "", "", conf);
    assert_eq!(status(&conf).status, 0, "{}", status(&conf));
    for id in ["a", "b", "c"] {
        assert_eq!(call(Tool::Roslan, "ADD", id, "", &conf).status, 0);
    }
    let reply = status(&conf);
    assert_eq!(reply.code(), Some(50), "an exhausted pool is not available: {reply}");
    assert!(reply.msg().contains("exhausted"), "{reply}");
    let reply = call(Tool::Roslan, "ADD", "d", "", &conf);
    assert_eq!(reply.code(), Some(103), "{reply}");

    let mut gc = conf.clone();
    gc["cni.dev/valid-attachments"] =
        json!([{"containerID": "a", "ifname": "net1"}, {"containerID": "b", "ifname": "net1"}]);
    let reply = call(Tool::Roslan, "GC", "", "", &gc);
    assert_eq!(reply.status, 0, "{reply}");
    let held: Vec<String> = ["10.1.0.10", "10.1.0.11", "10.1.0.12"]
        .iter()
        .filter(|ip| dir.0.join("ipnet").join(ip).exists())
        .map(|s| s.to_string())
        .collect();
    assert_eq!(held.len(), 2, "c's reservation is gone, a's and b's stay: {held:?}");
    assert_eq!(status(&conf).status, 0);

    // The older key name works too; no list at all is refused rather than read as "keep nothing".
    let mut legacy = conf.clone();
    legacy["cni.dev/attachments"] = json!([{"containerID": "a", "ifname": "net1"}]);
    assert_eq!(call(Tool::Roslan, "GC", "", "", &legacy).status, 0);
    assert_eq!(
        std::fs::read_dir(dir.0.join("ipnet"))
            .unwrap()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().starts_with("10."))
            .count(),
        1
    );
    assert_eq!(call(Tool::Roslan, "GC", "", "", &conf).code(), Some(7));

    let mut old = conf.clone();
    old["cniVersion"] = json!("1.0.0");
    assert_eq!(status(&old).code(), Some(1), "STATUS needs 1.1.0");

    let mut probe = conf.clone();
    probe["ipam"]["probe"] = json!(true);
    assert_eq!(
        call(Tool::Roslan, "ADD", "p", "", &probe).code(),
        Some(2),
        "probing needs the roslan main plugin"
    );
}

/// The first address of an ADD reply.
fn first_ip(reply: &Reply) -> String {
    assert_eq!(reply.status, 0, "{reply}");
    roslan_tests::plugin::result_ip(reply.json.as_ref().expect("result"), 0)
}

#[test]
fn sticky_addresses_follow_the_pod_and_leave_the_store_host_locals() {
    let dir = Scratch::new();
    let ipam = json!({"ranges": [[{"subnet": "10.1.0.0/24", "rangeStart": "10.1.0.10", "rangeEnd": "10.1.0.20"}]]});
    let sticky = conf("1.0.0", &dir.0, ipam.clone());
    let pod = |name: &str| format!("IgnoreUnknown=true;K8S_POD_NAMESPACE=robots;K8S_POD_NAME={name}");
    let talker = first_ip(&call(Tool::Roslan, "ADD", "s1", &pod("talker-0"), &sticky));
    assert_eq!(talker, "10.1.0.10");
    assert_eq!(call(Tool::Roslan, "DEL", "s1", &pod("talker-0"), &sticky).status, 0);
    // Other pods come and go meanwhile, host-local among them on the same directory: the cursor moves on.
    assert_eq!(
        first_ip(&call(Tool::Roslan, "ADD", "o1", &pod("other-1"), &sticky)),
        "10.1.0.11"
    );
    assert_eq!(first_ip(&call(HOST_LOCALS[0], "ADD", "o2", "", &sticky)), "10.1.0.12");
    // The restarted pod (a new sandbox, the same name) gets its address back.
    assert_eq!(
        first_ip(&call(Tool::Roslan, "ADD", "s2", &pod("talker-0"), &sticky)),
        talker
    );
    // Its memory did not move the cursor: the next new pod continues after .12, as host-local would.
    assert_eq!(first_ip(&call(HOST_LOCALS[1], "ADD", "o3", "", &sticky)), "10.1.0.13");
    // Taken by someone else while the pod was away: a fresh address, and the memory follows the holder.
    assert_eq!(call(Tool::Roslan, "DEL", "s2", &pod("talker-0"), &sticky).status, 0);
    let reply = call(
        Tool::Roslan,
        "ADD",
        "l1",
        &format!("{};IP=10.1.0.10", pod("listener-0")),
        &sticky,
    );
    assert_eq!(first_ip(&reply), "10.1.0.10");
    assert_eq!(
        first_ip(&call(Tool::Roslan, "ADD", "s3", &pod("talker-0"), &sticky)),
        "10.1.0.14"
    );
    assert_eq!(call(Tool::Roslan, "DEL", "l1", &pod("listener-0"), &sticky).status, 0);
    assert_eq!(
        first_ip(&call(Tool::Roslan, "ADD", "l2", &pod("listener-0"), &sticky)),
        "10.1.0.10"
    );

    // "sticky": false is host-local's plain round robin.
    let mut plain = conf("1.0.0", &dir.0, ipam);
    plain["ipam"]["sticky"] = json!(false);
    assert_eq!(call(Tool::Roslan, "DEL", "s3", &pod("talker-0"), &plain).status, 0);
    assert_eq!(
        first_ip(&call(Tool::Roslan, "ADD", "s4", &pod("talker-0"), &plain)),
        "10.1.0.15"
    );

    // The network's directory holds host-local's files only; the memory is in roslan's own area.
    let mut names: Vec<String> = std::fs::read_dir(dir.0.join("ipnet"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.parse::<IpAddr>().is_err())
        .collect();
    names.sort();
    assert_eq!(names, ["last_reserved_ip.0", "lock"]);
    assert!(dir.0.join(".roslan/ipnet/sticky/pods/robots_talker-0@net1").is_file());
}

#[test]
fn node_blocks_allocate_only_inside_the_blocks_file_and_name_the_agent() {
    let dir = Scratch::new();
    let file = dir.0.join("node-blocks");
    let mut nb = conf(
        "1.1.0",
        &dir.0,
        json!({"ranges": [[{"subnet": "10.1.0.0/16", "rangeStart": "10.1.0.1", "rangeEnd": "10.1.3.254"}]],
               "nodeBlocks": {"size": 28, "file": file}}),
    );
    // No file yet: try again later (11), naming the agent that writes it.
    let reply = call(Tool::Roslan, "ADD", "a", "", &nb);
    assert_eq!(reply.code(), Some(11), "{reply}");
    assert!(
        reply.msg().contains("roslan-install") && reply.msg().contains("node-blocks"),
        "{reply}"
    );
    assert_eq!(call(Tool::Roslan, "STATUS", "", "", &nb).code(), Some(50));
    // The agent's file: two blocks of this network, one of another.
    std::fs::write(
        &file,
        "node robot-1\nblock 10.1.2.16/28 ipnet\nblock 10.1.0.0/28 other\nblock 10.1.3.240/28 ipnet\n",
    )
    .unwrap();
    assert_eq!(call(Tool::Roslan, "STATUS", "", "", &nb).status, 0);
    // A requested address outside this node's blocks is refused: another node may own it.
    let reply = call(Tool::Roslan, "ADD", "req", "IP=10.1.1.5", &nb);
    assert_eq!(reply.code(), Some(104), "{reply}");
    let mut got = Vec::new();
    for i in 0..31 {
        got.push(first_ip(&call(Tool::Roslan, "ADD", &format!("c{i}"), "", &nb)));
    }
    // Exactly the addresses of the two blocks (10.1.3.255 is outside the range).
    let mut expected: Vec<String> = (16..32)
        .map(|i| format!("10.1.2.{i}"))
        .chain((240..255).map(|i| format!("10.1.3.{i}")))
        .collect();
    got.sort();
    expected.sort();
    assert_eq!(got, expected);
    // 16 in the first block, 15 in the second (the range ends at .254): full. The runtime retries.
    let reply = call(Tool::Roslan, "ADD", "full", "", &nb);
    assert_eq!(reply.code(), Some(11), "{reply}");
    assert!(
        reply.msg().contains("blocks") && reply.msg().contains("roslan-install"),
        "{reply}"
    );
    // A broken file is the agent's to fix: 11 again.
    std::fs::write(&file, "block nonsense ipnet\n").unwrap();
    assert_eq!(
        call(Tool::Roslan, "DEL", "c0", "", &nb).status,
        0,
        "DEL never needs the blocks"
    );
    assert_eq!(call(Tool::Roslan, "ADD", "c0", "", &nb).code(), Some(11));

    // Blocks wider than the subnet, and nodeBlocks with nodeRanges, are configuration errors.
    nb["ipam"]["nodeBlocks"]["size"] = json!(12);
    let reply = call(Tool::Roslan, "ADD", "x", "", &nb);
    assert_eq!(reply.code(), Some(7), "{reply}");
    assert!(reply.msg().contains("ipam.nodeBlocks.size"), "{reply}");
    nb["ipam"]["nodeBlocks"]["size"] = json!(28);
    nb["ipam"]["nodeRanges"] =
        json!({"robot-1": [[{"subnet": "10.1.0.0/16", "rangeStart": "10.1.9.1", "rangeEnd": "10.1.9.9"}]]});
    let reply = call(Tool::Roslan, "ADD", "x", "", &nb);
    assert_eq!(reply.code(), Some(7), "{reply}");
    assert!(reply.msg().contains("nodeRanges"), "{reply}");
}
