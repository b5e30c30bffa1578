//! One network on three nodes of one LAN with `nodeBlocks`: per-node address blocks leased through the
//! real API server by each node's own agent (roslan-install with the service account's token and the
//! RBAC of manifests/), ADD reading only the node's blocks file. Proven here, in one cluster:
//! - 3 x 60 concurrent ADDs (retrying on code 11, as the kubelet does): no address twice across the nodes,
//!   and on the LAN each address answers ARP from exactly one MAC;
//! - the API server stopped: ADDs on every node still succeed from the blocks they hold, the agents say so;
//!   started again: the agents catch up;
//! - a Node object deleted: the garbage collector deletes its Leases, its agent stops handing out its
//!   blocks, other nodes lease them;
//! - an agent SIGKILLed in the middle of leasing: no block is held twice, and after its restart nothing
//!   leaks (every Lease it holds is in its blocks file, the empty ones are given back);
//! - the negative control: the seed's plain NetworkAttachmentDefinition (reference macvlan + host-local,
//!   one range on every node) on the same nodes hands out the same addresses on each node.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use roslan_tests::Pod;
use roslan_tests::cluster::{Cluster, NETWORK, wait_until};
use roslan_tests::lan::{HOST_ADDR, MASTER, SUBNET};
use roslan_tests::peer;
use roslan_tests::plugin::{Call, result_ip};
use roslan_tests::root_test;
use serde_json::{Value, json};

/// The range the nodes share: 10.77.1.0-10.77.2.255, 32 blocks of 16.
fn ipam() -> Value {
    json!({
        "ranges": [[{"subnet": SUBNET, "rangeStart": "10.77.1.0", "rangeEnd": "10.77.2.255", "gateway": HOST_ADDR}]],
        // Empty blocks go back after 3 s here (600 s by default), so that the test sees a give-back.
        "nodeBlocks": {"size": 28, "releaseAfter": 3}
    })
}

/// A pod attached on a node.
struct Attached {
    node: usize,
    name: String,
    pod: Pod,
    ip: String,
    /// How many ADDs were answered with code 11 before one succeeded.
    retries: u32,
}

/// ADD with retries on code 11 (try again), as the kubelet retries a pod sandbox; panics on any other
/// failure or after `limit`.
fn add_retrying(cluster: &Cluster, node: usize, pod: &Pod, name: &str, limit: Duration) -> (Value, u32) {
    let conf = cluster.config(node);
    let start = Instant::now();
    let mut retries = 0;
    loop {
        let reply = cluster.call(node, "ADD", pod, name, &conf);
        if reply.status == 0 {
            return (reply.json.expect("ADD result"), retries);
        }
        assert_eq!(reply.code(), Some(11), "ADD of {name} on node {node} failed: {reply}");
        assert!(
            start.elapsed() < limit,
            "ADD of {name} on node {node} still code 11 after {limit:?}: {reply}\n{}",
            cluster.nodes[node].agent_log()
        );
        retries += 1;
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// `per_node` pods on each of `nodes`, all ADDed at once.
fn attach_all(cluster: &Cluster, nodes: &[usize], per_node: usize, tag: &str) -> Vec<Attached> {
    let jobs: Vec<(usize, String)> = nodes
        .iter()
        .flat_map(|&n| (0..per_node).map(move |i| (n, format!("{tag}-{n}-{i}"))))
        .collect();
    let pods: Vec<Pod> = jobs.iter().map(|_| Pod::new()).collect();
    std::thread::scope(|scope| {
        let handles: Vec<_> = jobs
            .into_iter()
            .zip(pods)
            .map(|((node, name), pod)| {
                scope.spawn(move || {
                    let (result, retries) = add_retrying(cluster, node, &pod, &name, Duration::from_secs(120));
                    let ip = result_ip(&result, 0);
                    Attached {
                        node,
                        name,
                        pod,
                        ip,
                        retries,
                    }
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().expect("ADD thread")).collect()
    })
}

fn del(cluster: &Cluster, a: &Attached) {
    let reply = cluster.call(a.node, "DEL", &a.pod, &a.name, &cluster.config(a.node));
    assert_eq!(reply.status, 0, "DEL {}: {reply}", a.name);
}

/// Addresses given to more than one pod.
fn duplicates<'a>(ips: impl Iterator<Item = &'a String>) -> BTreeMap<String, usize> {
    let mut count: BTreeMap<String, usize> = BTreeMap::new();
    for ip in ips {
        *count.entry(ip.clone()).or_default() += 1;
    }
    count.retain(|_, n| *n > 1);
    count
}

/// The MACs that answer an ARP request for each address, asked from the LAN host (arping on its bridge).
fn arp_answers(cluster: &Cluster, ips: &[String]) -> BTreeMap<String, BTreeSet<String>> {
    let mut out = BTreeMap::new();
    for chunk in ips.chunks(24) {
        let answers: Vec<(String, BTreeSet<String>)> = std::thread::scope(|scope| {
            let handles: Vec<_> = chunk
                .iter()
                .map(|ip| {
                    scope.spawn(move || {
                        let out = cluster
                            .lan
                            .host
                            .exec("arping", &["-c", "2", "-w", "3", "-I", "br0", ip]);
                        let text = String::from_utf8_lossy(&out.stdout);
                        let macs: BTreeSet<String> = text
                            .lines()
                            .filter(|l| l.contains("reply from"))
                            .filter_map(|l| Some(l.split('[').nth(1)?.split(']').next()?.to_ascii_lowercase()))
                            .collect();
                        (ip.clone(), macs)
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().expect("arping thread")).collect()
        });
        out.extend(answers);
    }
    out
}

/// Checks that no block is in two nodes' blocks files, and that every node's file lists exactly the
/// blocks the API says it holds.
fn blocks_agree(cluster: &Cluster) -> Result<(), String> {
    let leases = cluster.leases();
    let mut seen: BTreeMap<String, String> = BTreeMap::new();
    for node in &cluster.nodes {
        for block in node.blocks() {
            if let Some(other) = seen.insert(block.clone(), node.name.clone()) {
                return Err(format!("block {block} is in the files of {other} and {}", node.name));
            }
        }
        let leased: Vec<String> = leases
            .iter()
            .filter(|(_, h)| *h == node.name)
            .map(|(b, _)| b.clone())
            .collect();
        if leased != node.blocks() {
            return Err(format!(
                "{}: leased {leased:?}, blocks file {:?}",
                node.name,
                node.blocks()
            ));
        }
    }
    Ok(())
}

fn wait_agree(cluster: &Cluster, what: &str) {
    wait_until(
        what,
        Duration::from_secs(30),
        || blocks_agree(cluster).ok(),
        || {
            let logs: Vec<String> = cluster
                .nodes
                .iter()
                .map(|n| format!("{}:\n{}", n.name, n.agent_log()))
                .collect();
            format!(
                "{:?}\nleases {:?}\n{}",
                blocks_agree(cluster),
                cluster.leases(),
                logs.join("\n")
            )
        },
    );
}

/// `roslan probe --send --json` from `from`'s namespace to the listeners at `to`.
fn probe_send(cluster: &Cluster, from: &Attached, to: &[&str]) -> Value {
    let plugin = cluster.nodes[from.node].plugin();
    let mut args = vec!["probe", "--send", "--json", "--count", "5", "--interval-ms", "50"];
    for address in to {
        args.extend(["--to", address]);
    }
    let out = from.pod.ns.exec(plugin.to_str().expect("utf-8"), &args);
    serde_json::from_slice(&out.stdout).unwrap_or_else(|_| {
        panic!(
            "probe JSON: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

/// The cross-node probe mesh: a listener in one pod per node, each of them sending to the others, IPv4
/// and IPv6 DDS groups; then one node's bridge port stops flooding multicast while snooping runs without
/// a querier (what a managed switch without a querier does to a port whose membership it lost), and the
/// probe must name that cause.
fn probe_mesh(cluster: &Cluster, attached: &[Attached]) {
    let members: Vec<&Attached> = (0..3)
        .map(|n| attached.iter().find(|a| a.node == n).expect("a pod per node"))
        .collect();
    let mut listeners: Vec<std::process::Child> = members
        .iter()
        .map(|m| {
            let plugin = cluster.nodes[m.node].plugin();
            m.pod
                .ns
                .command(plugin.to_str().expect("utf-8"))
                .args([
                    "probe",
                    "--listen",
                    "--for",
                    "25",
                    "--name",
                    &format!("node-{}", m.node),
                ])
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .spawn()
                .expect("start a listener")
        })
        .collect();
    std::thread::sleep(Duration::from_millis(700));
    let mut matrix = Vec::new();
    for from in &members {
        let to: Vec<&str> = members
            .iter()
            .filter(|m| m.node != from.node)
            .map(|m| m.ip.as_str())
            .collect();
        let report = probe_send(cluster, from, &to);
        assert_eq!(report["ok"], true, "probe from node-{}: {report:#}", from.node);
        for pair in report["pairs"].as_array().expect("pairs") {
            for (group, stats) in pair["groups"].as_object().expect("groups") {
                matrix.push(format!(
                    "node-{} -> {} {group}: {}/{} rtt {} ms",
                    from.node,
                    pair["listener"].as_str().unwrap_or("?"),
                    stats["received"],
                    stats["sent"],
                    stats["rtt_ms"]["median"]
                ));
            }
        }
    }
    println!("probe mesh:\n  {}", matrix.join("\n  "));

    // Snooping without a querier, and node 2's port no longer flooded: unicast still works, the groups
    // do not, and the probe says why.
    let host = &cluster.lan.host;
    let bridge = |args: &[&str]| {
        let mut all = vec!["netns", "exec", host.name(), "bridge"];
        all.extend_from_slice(args);
        roslan_tests::netns::sh("ip", &all);
    };
    host.ip(&[
        "link",
        "set",
        "br0",
        "type",
        "bridge",
        "mcast_snooping",
        "1",
        "mcast_querier",
        "0",
    ]);
    bridge(&["link", "set", "dev", "port2", "mcast_flood", "off"]);
    let report = probe_send(cluster, members[0], &[members[2].ip.as_str()]);
    bridge(&["link", "set", "dev", "port2", "mcast_flood", "on"]);
    host.ip(&["link", "set", "br0", "type", "bridge", "mcast_snooping", "0"]);
    assert_eq!(report["ok"], false, "{report:#}");
    let pair = &report["pairs"][0];
    assert!(pair["unicast"]["received"].as_u64().unwrap_or(0) > 0, "{report:#}");
    assert_eq!(pair["groups"]["239.255.0.1"]["received"], 0, "{report:#}");
    let hints = report["hints"].to_string();
    assert!(
        hints.contains("no IGMP querier") && hints.contains("snooping"),
        "the probe names the missing querier: {report:#}"
    );
    for listener in &mut listeners {
        let _ = listener.kill();
        let _ = listener.wait();
    }
}

/// Whether the IPv4 address `ip` lies in one of the CIDR `blocks`.
/// `roslan doctor --json` on node `i` for the network (no querier wait): its findings by check name.
fn doctor(cluster: &Cluster, i: usize) -> BTreeMap<String, (String, String)> {
    let node = &cluster.nodes[i];
    let file = node.root.join("network.json");
    std::fs::write(&file, cluster.config(i).to_string()).expect("write config");
    let out = cluster.lan.nodes[i].exec(
        node.plugin().to_str().expect("utf-8"),
        &[
            "doctor",
            "--json",
            "--querier-wait",
            "0",
            "--config",
            file.to_str().expect("utf-8"),
            "--cni-bin-dir",
            node.root.join("opt/cni/bin").to_str().expect("utf-8"),
        ],
    );
    let findings: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|_| panic!("doctor JSON: {}", String::from_utf8_lossy(&out.stdout)));
    findings
        .as_array()
        .expect("a list of findings")
        .iter()
        .map(|f| {
            let text = |k: &str| f[k].as_str().unwrap_or_default().to_string();
            (text("check"), (text("status"), text("detail")))
        })
        .collect()
}

fn in_blocks(ip: &str, blocks: &[String]) -> bool {
    let ip = u32::from(ip.parse::<std::net::Ipv4Addr>().expect("an IPv4 address"));
    blocks.iter().any(|b| {
        let (net, prefix) = b.split_once('/').expect("a CIDR block");
        let net = u32::from(net.parse::<std::net::Ipv4Addr>().expect("an IPv4 block"));
        let mask = u32::MAX
            .checked_shl(32 - prefix.parse::<u32>().expect("a prefix"))
            .unwrap_or(0);
        ip & mask == net & mask
    })
}

#[root_test("needs root, network namespaces and the peers: run `make peers` and `make test` as root")]
fn node_blocks_across_three_nodes() {
    let mut cluster = Cluster::start(3, ipam());

    // Every node gets its first block from its own agent.
    let started = Instant::now();
    for i in 0..3 {
        cluster.wait_for_blocks(i, 1, Duration::from_secs(60));
    }
    println!("first blocks on 3 nodes after {:?}", started.elapsed());
    wait_agree(&cluster, "blocks files match the Leases");

    // 3 x 60 at once: no duplicate, every address inside its node's blocks, one MAC per address.
    let attached = attach_all(&cluster, &[0, 1, 2], 60, "burst");
    let dups = duplicates(attached.iter().map(|a| &a.ip));
    assert!(dups.is_empty(), "duplicate addresses across nodes: {dups:?}");
    let retries: u32 = attached.iter().map(|a| a.retries).sum();
    println!(
        "roslan nodeBlocks: 180 pods, 0 duplicate addresses, {retries} ADDs answered code 11 first (headroom exceeded)"
    );
    wait_agree(&cluster, "blocks files match the Leases after the burst");
    for a in &attached {
        let blocks = cluster.nodes[a.node].blocks();
        assert!(
            in_blocks(&a.ip, &blocks),
            "{} got {} outside its node's blocks {blocks:?}",
            a.name,
            a.ip
        );
    }
    let ips: Vec<String> = attached.iter().map(|a| a.ip.clone()).collect();
    let answers = arp_answers(&cluster, &ips);
    let bad: Vec<(&String, &BTreeSet<String>)> = answers.iter().filter(|(_, macs)| macs.len() != 1).collect();
    assert!(
        bad.is_empty(),
        "addresses that do not answer ARP from exactly one MAC: {bad:?}"
    );

    probe_mesh(&cluster, &attached);

    // The API server goes away: pods still start on every node, from the blocks each holds.
    cluster.cp.stop_apiserver();
    for i in 0..3 {
        let node = &cluster.nodes[i];
        wait_until(
            &format!("{} reports the API server unreachable", node.name),
            Duration::from_secs(30),
            || (node.api_state().as_deref() == Some("unreachable")).then_some(()),
            || node.agent_log(),
        );
    }
    // The doctor, which asks no API server either, says what the node holds and that its agent is cut off.
    let findings = doctor(&cluster, 0);
    assert_eq!(findings["blocks"].0, "pass", "{findings:?}");
    assert_eq!(findings["agent"].0, "warn", "{findings:?}");
    assert!(
        findings["agent"].1.contains("cannot reach the API server"),
        "{findings:?}"
    );
    let offline = attach_all(&cluster, &[0, 1, 2], 8, "offline");
    assert!(
        offline.iter().all(|a| a.retries == 0),
        "an ADD waited while the API server was down"
    );
    let all_ips: Vec<&String> = attached.iter().chain(&offline).map(|a| &a.ip).collect();
    assert!(duplicates(all_ips.into_iter()).is_empty());
    for i in 0..3 {
        assert!(
            cluster.nodes[i].agent_log().contains("does not answer"),
            "the agent of node {i} does not say that the API server is gone"
        );
    }
    cluster.cp.start_apiserver();
    for i in 0..3 {
        let node = &cluster.nodes[i];
        wait_until(
            &format!("{} catches up with the API server", node.name),
            Duration::from_secs(60),
            || (node.api_state().as_deref() == Some("reachable")).then_some(()),
            || node.agent_log(),
        );
    }
    wait_agree(&cluster, "blocks files match the Leases after the API server came back");
    // The agent restores its headroom within a look or two of the API server's return.
    let findings = wait_until(
        "the doctor sees node-0's agent in contact and nothing to report",
        Duration::from_secs(15),
        || Some(doctor(&cluster, 0)).filter(|f| f["agent"].0 == "pass"),
        || format!("{:?}\n{}", doctor(&cluster, 0), cluster.nodes[0].agent_log()),
    );
    assert_eq!(findings["ipam-free"].0, "pass", "{findings:?}");

    // Node 2 is deleted: its Leases go with it, its agent stops handing out its blocks, others lease them.
    let node2_blocks = cluster.leased_by("node-2");
    assert!(!node2_blocks.is_empty());
    cluster.cp.kubectl_ok(&["delete", "node", "node-2"]);
    wait_until(
        "the garbage collector deletes node-2's Leases",
        Duration::from_secs(60),
        || cluster.leased_by("node-2").is_empty().then_some(()),
        || format!("{:?}", cluster.leases()),
    );
    wait_until(
        "node-2's agent drops its blocks",
        Duration::from_secs(30),
        || cluster.nodes[2].blocks().is_empty().then_some(()),
        || cluster.nodes[2].agent_log(),
    );
    let stranded = Pod::new();
    let reply = cluster.call(2, "ADD", &stranded, "stranded", &cluster.config(2));
    assert_eq!(reply.code(), Some(11), "{reply}");
    assert!(reply.msg().contains("roslan-install"), "{}", reply.msg());
    let more = attach_all(&cluster, &[0], 40, "after-delete");
    let reused: Vec<String> = cluster
        .leased_by("node-0")
        .into_iter()
        .chain(cluster.leased_by("node-1"))
        .filter(|b| node2_blocks.contains(b))
        .collect();
    assert!(
        !reused.is_empty(),
        "no block of the deleted node was leased again: node-2 had {node2_blocks:?}, now {:?}",
        cluster.leases()
    );
    let live: Vec<&Attached> = attached
        .iter()
        .chain(&offline)
        .chain(&more)
        .filter(|a| a.node != 2)
        .collect();
    assert!(duplicates(live.iter().map(|a| &a.ip)).is_empty());

    // Node 1's agent is killed while it leases: no block twice; after its restart nothing leaks.
    let before = cluster.leased_by("node-1").len();
    let burst = std::thread::scope(|scope| {
        let burst = scope.spawn(|| attach_all(&cluster, &[1], 50, "kill"));
        wait_until(
            "node-1 leases a new block",
            Duration::from_secs(60),
            || (cluster.leased_by("node-1").len() > before).then_some(()),
            || cluster.nodes[1].agent_log(),
        );
        cluster.kill_agent(1);
        // Dead agent: every block in its file is leased by it, and no block is in two files. A Lease it
        // created but had not written down yet is what the restart must adopt.
        let leased = cluster.leased_by("node-1");
        let file = cluster.nodes[1].blocks();
        assert!(
            file.iter().all(|b| leased.contains(b)),
            "file {file:?}, leased {leased:?}"
        );
        let mut all: Vec<String> = cluster.nodes.iter().flat_map(|n| n.blocks()).collect();
        let count = all.len();
        all.sort();
        all.dedup();
        assert_eq!(all.len(), count, "a block is in two nodes' files");
        println!(
            "agent of node-1 killed while leasing: {} Lease(s), {} in its blocks file",
            leased.len(),
            file.len()
        );
        cluster.start_agent(1);
        burst.join().expect("burst thread")
    });
    wait_agree(
        &cluster,
        "the restarted agent adopts what it leased before it was killed",
    );
    let live: Vec<&Attached> = live.into_iter().chain(&burst).collect();
    assert!(duplicates(live.iter().map(|a| &a.ip)).is_empty());
    // Node 1's pods all go: its empty blocks go back after the grace time, down to the one it keeps.
    for a in live.iter().filter(|a| a.node == 1) {
        del(&cluster, a);
    }
    wait_until(
        "node-1 gives its empty blocks back, keeping one",
        Duration::from_secs(60),
        || (cluster.leased_by("node-1").len() == 1 && cluster.nodes[1].blocks().len() == 1).then_some(()),
        || format!("{:?}\n{}", cluster.leases(), cluster.nodes[1].agent_log()),
    );
    wait_agree(&cluster, "nothing leaked");
    for node in &cluster.nodes {
        assert!(!node.agent_log().contains("panicked"), "{}", node.agent_log());
    }

    // The network's definition goes: its blocks stay (pods attached before may still use them), and the
    // agent says how to free them.
    let kept = cluster.nodes[0].blocks();
    cluster
        .cp
        .kubectl_ok(&["-n", "default", "delete", "net-attach-def", NETWORK]);
    wait_until(
        "node-0's agent reports the blocks of a network without a definition",
        Duration::from_secs(15),
        || {
            doctor(&cluster, 0)["agent"]
                .1
                .contains("no NetworkAttachmentDefinition")
                .then_some(())
        },
        || format!("{:?}\n{}", doctor(&cluster, 0), cluster.nodes[0].agent_log()),
    );
    assert_eq!(cluster.nodes[0].blocks(), kept, "the blocks stay in the file");

    // The negative control: the seed's definition (reference macvlan + host-local, the same 21 addresses
    // on every node), through the upstream plugins, on the same nodes.
    let plugins = peer("plugins");
    let seed = |i: usize| {
        json!({
            "cniVersion": "0.3.1",
            "name": "seed-net",
            "type": "macvlan",
            "master": MASTER,
            "mode": "bridge",
            "ipam": {
                "type": "host-local",
                "subnet": SUBNET,
                "rangeStart": "10.77.3.160",
                "rangeEnd": "10.77.3.180",
                "gateway": HOST_ADDR,
                "dataDir": cluster.nodes[i].root.join("var/lib/cni/seed"),
            }
        })
    };
    let seeded: Vec<(usize, Pod, String)> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..3)
            .flat_map(|n| (0..20).map(move |i| (n, i)))
            .map(|(n, _)| {
                let (plugins, seed) = (&plugins, &seed);
                let cluster = &cluster;
                scope.spawn(move || {
                    let pod = Pod::new();
                    let mut call = Call::new(plugins.bin("macvlan"), "ADD", &pod.id, &pod.path(), "net1", &seed(n));
                    call.cni_path = plugins.bin_dir().to_string_lossy().into_owned();
                    let reply = call.run_in(&cluster.lan.nodes[n]);
                    assert_eq!(reply.status, 0, "reference ADD on node {n}: {reply}");
                    let ip = result_ip(reply.json.as_ref().expect("result"), 0);
                    (n, pod, ip)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().expect("seed thread")).collect()
    });
    let seed_dups = duplicates(seeded.iter().map(|(_, _, ip)| ip));
    let seed_ips: Vec<String> = seed_dups.keys().cloned().collect();
    let multi_mac = arp_answers(&cluster, &seed_ips)
        .values()
        .filter(|m| m.len() > 1)
        .count();
    println!(
        "negative control, seed NAD (reference macvlan + host-local, one range) on 3 nodes x 20 pods: {} duplicate \
         addresses held by {} pods, {multi_mac} of them answering ARP from more than one MAC; roslan nodeBlocks: 0",
        seed_dups.len(),
        seed_dups.values().sum::<usize>()
    );
    assert!(
        !seed_dups.is_empty() && multi_mac > 0,
        "the negative control shows no duplicate: it cannot tell the difference"
    );
}
