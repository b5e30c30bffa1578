//! `make bench`: roslan and the reference macvlan + host-local timed in the same run, on the same LAN,
//! by the same code; writes docs/benchmarks.md (and the raw numbers next to it as JSON).
//!
//! Usage: roslan-bench [--out docs/benchmarks.md] [--iterations N]

use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::Duration;

use roslan_tests::bench::{Stats, enter, kernel_delete_link, round, time_call};
use roslan_tests::lan::{MASTER, SUBNET};
use roslan_tests::netns::sh;
use roslan_tests::plugin::{REFERENCE_DIR, reference_bin, workspace_bin};
use roslan_tests::{Lan, Pod};
use serde_json::{Value, json};

/// A plugin and the configuration it runs with.
struct Plugin {
    label: &'static str,
    bin: PathBuf,
    conf: Vec<u8>,
}

fn env<'a>(command: &'a str, id: &'a str, pod: &'a str) -> Vec<(&'a str, &'a str)> {
    vec![
        ("CNI_COMMAND", command),
        ("CNI_CONTAINERID", id),
        ("CNI_NETNS", pod),
        ("CNI_IFNAME", "net1"),
        ("CNI_PATH", REFERENCE_DIR),
    ]
}

/// roslan and the reference with the same network apart from `type`, the data directory and their
/// address slices: `ranges(k)` gives plugin k's. The slices must be disjoint, or the two allocators hand
/// out one address twice on the same LAN and IPv6 duplicate address detection fails for one of them.
fn pair(lan: &Lan, tag: &str, ranges: impl Fn(usize) -> Value, extra_ipam: Value) -> [Plugin; 2] {
    let conf = |kind: &str, dir: &str, k: usize| {
        let mut ipam =
            json!({"type": "host-local", "dataDir": lan.dir().join(format!("{tag}-{dir}")), "ranges": ranges(k)});
        if let (Some(ipam), Some(extra)) = (ipam.as_object_mut(), extra_ipam.as_object()) {
            ipam.extend(extra.clone());
        }
        let value = json!({"cniVersion": "1.0.0", "name": "ros-lan", "type": kind, "master": MASTER, "logLevel": "warn", "ipam": ipam});
        serde_json::to_vec(&value).unwrap()
    };
    [
        Plugin {
            label: "roslan",
            bin: workspace_bin("roslan"),
            conf: conf("roslan", "roslan", 0),
        },
        Plugin {
            label: "reference",
            bin: reference_bin("macvlan"),
            conf: conf("macvlan", "reference", 1),
        },
    ]
}

fn add(plugin: &Plugin, id: &str, pod: &Pod) -> Duration {
    let (took, ok, stdout) = time_call(&plugin.bin, &env("ADD", id, &pod.path()), &plugin.conf);
    assert!(ok, "{} ADD failed: {}", plugin.label, String::from_utf8_lossy(&stdout));
    took
}

fn del(plugin: &Plugin, id: &str, pod: &Pod) -> Duration {
    let (took, ok, stdout) = time_call(&plugin.bin, &env("DEL", id, &pod.path()), &plugin.conf);
    assert!(ok, "{} DEL failed: {}", plugin.label, String::from_utf8_lossy(&stdout));
    took
}

/// Samples of ADD/DEL rounds: per plugin, and the kernel's own deletion when measured.
#[derive(Default)]
struct Samples {
    add: Vec<Vec<Duration>>,
    del: Vec<Vec<Duration>>,
    kernel_delete: Vec<Duration>,
}

/// Each round ADDs with every plugin (each into its own pod), waits so the links are as settled as a
/// living pod's, then DELs in an order that rotates every round. With `kernel`, one more roslan link
/// per round is deleted with a raw RTM_DELLINK in the same rotation.
fn rounds(plugins: &[Plugin], pods: &[Pod], iterations: usize, settle: Duration, kernel: bool) -> Samples {
    let n = plugins.len();
    let mut samples = Samples {
        add: vec![Vec::new(); n],
        del: vec![Vec::new(); n],
        ..Default::default()
    };
    for round in 0..iterations + 3 {
        let keep = round >= 3;
        let ids: Vec<String> = (0..=n).map(|k| format!("bench-{k}-{round}")).collect();
        for (k, plugin) in plugins.iter().enumerate() {
            let took = add(plugin, &ids[k], &pods[k]);
            if keep {
                samples.add[k].push(took);
            }
        }
        if kernel {
            add(&plugins[0], &ids[n], &pods[n]);
        }
        std::thread::sleep(settle);
        for step in 0..=n {
            let k = (step + round) % (n + 1);
            if k == n {
                if kernel {
                    let took = kernel_delete_link(&pods[n].ns, "net1");
                    del(&plugins[0], &ids[n], &pods[n]);
                    if keep {
                        samples.kernel_delete.push(took);
                    }
                }
            } else {
                let took = del(&plugins[k], &ids[k], &pods[k]);
                if keep {
                    samples.del[k].push(took);
                }
            }
        }
    }
    samples
}

/// Fills a plugin's data directory with `count` reservations in host-local's format, contiguous from
/// the first address of its slice, with the round-robin cursor on the last (a busy pool's steady state).
fn prefill(plugin: &Plugin, count: usize, first: std::net::Ipv4Addr) {
    let conf: Value = serde_json::from_slice(&plugin.conf).unwrap();
    let dir = PathBuf::from(conf["ipam"]["dataDir"].as_str().unwrap()).join("ros-lan");
    std::fs::create_dir_all(&dir).unwrap();
    let base = u32::from(first);
    let mut last = String::new();
    for i in 0..count {
        last = std::net::Ipv4Addr::from(base + i as u32).to_string();
        std::fs::write(dir.join(&last), format!("fill{i}\r\nnet1")).unwrap();
    }
    if count > 0 {
        std::fs::write(dir.join("last_reserved_ip.0"), &last).unwrap();
    }
}

fn machine() -> Value {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string())
        })
        .unwrap_or_default();
    let reference = sh("dpkg-query", &["-W", "-f", "${Version}", "containernetworking-plugins"]);
    json!({
        "kernel": sh("uname", &["-r"]).trim(),
        "cpu": cpu,
        "cpus": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
        "reference": format!("containernetworking-plugins {reference} (Debian)"),
        "roslan": env!("CARGO_PKG_VERSION"),
    })
}

/// Plugin k's IPv4 slice: 10.77.<k+1>.10-250.
fn v4_slice(k: usize) -> Value {
    json!([[{"subnet": SUBNET, "rangeStart": format!("10.77.{}.10", k + 1), "rangeEnd": format!("10.77.{}.250", k + 1)}]])
}

fn pods(n: usize) -> Vec<Pod> {
    (0..n).map(|_| Pod::new()).collect()
}

fn empty_pool(lan: &Lan, iterations: usize) -> Value {
    eprintln!("ADD/DEL on an empty pool, {iterations} rounds...");
    let plugins = pair(lan, "empty", v4_slice, json!({}));
    let s = rounds(&plugins, &pods(3), iterations, Duration::from_millis(200), true);
    let (r_add, r_del, f_add, f_del, kdel) = (
        Stats::of(&s.add[0]),
        Stats::of(&s.del[0]),
        Stats::of(&s.add[1]),
        Stats::of(&s.del[1]),
        Stats::of(&s.kernel_delete),
    );
    json!({
        "roslan": {"add": r_add.json(), "del": r_del.json()},
        "reference": {"add": f_add.json(), "del": f_del.json()},
        "add_speedup": round(f_add.median / r_add.median),
        "kernel_link_delete": kdel.json(),
        "roslan_del_over_kernel": round(r_del.median / kdel.median),
    })
}

fn occupancy(lan: &Lan, iterations: usize) -> Value {
    let mut rows = Vec::new();
    for count in [0usize, 2000, 10000] {
        eprintln!("ADD/DEL with {count} addresses allocated...");
        // Two disjoint slices of 30,000 addresses: 10.77.16.1- and 10.77.160.1-.
        let starts = [
            std::net::Ipv4Addr::new(10, 77, 16, 1),
            std::net::Ipv4Addr::new(10, 77, 160, 1),
        ];
        let ranges = |k: usize| {
            let end = std::net::Ipv4Addr::from(u32::from(starts[k]) + 29_999);
            json!([[{"subnet": SUBNET, "rangeStart": starts[k].to_string(), "rangeEnd": end.to_string()}]])
        };
        let plugins = pair(lan, &format!("occ{count}"), ranges, json!({}));
        for (plugin, first) in plugins.iter().zip(starts) {
            prefill(plugin, count, first);
        }
        // roslan's first call indexes files it did not write (here: all of them), once.
        let pod = Pod::new();
        let first = add(&plugins[0], "catch-up", &pod);
        del(&plugins[0], "catch-up", &pod);
        let s = rounds(&plugins, &pods(2), iterations, Duration::from_millis(100), false);
        rows.push(json!({
            "allocated": count,
            "roslan": {"add": Stats::of(&s.add[0]).json(), "del": Stats::of(&s.del[0]).json()},
            "reference": {"add": Stats::of(&s.add[1]).json(), "del": Stats::of(&s.del[1]).json()},
            "roslan_first_call_ms": round(first.as_secs_f64() * 1000.0),
        }));
    }
    let empty = rows[0]["roslan"]["add"]["median_ms"].as_f64().unwrap_or(f64::NAN);
    let full = rows[2]["roslan"]["add"]["median_ms"].as_f64().unwrap_or(f64::NAN);
    json!({"rows": rows, "roslan_10000_over_empty": round(full / empty)})
}

fn dual_stack(lan: &Lan, iterations: usize) -> Value {
    eprintln!("dual-stack ADD, {iterations} rounds (the reference waits for IPv6 DAD)...");
    let ranges = |k: usize| {
        let mut sets = v4_slice(k);
        sets.as_array_mut()
            .unwrap()
            .push(json!([{"subnet": format!("fd00:77:{}::/64", k + 1)}]));
        sets
    };
    let plugins = pair(lan, "dual", ranges, json!({}));
    let s = rounds(&plugins, &pods(2), iterations, Duration::from_millis(50), false);
    let (r, f) = (Stats::of(&s.add[0]), Stats::of(&s.add[1]));
    json!({"roslan": r.json(), "reference": f.json(), "speedup": round(f.median / r.median)})
}

fn concurrency(lan: &Lan, repetitions: usize) -> Value {
    eprintln!("50 concurrent ADDs, {repetitions} times per plugin...");
    let plugins = pair(lan, "conc", v4_slice, json!({}));
    let pods = pods(50);
    let mut out = serde_json::Map::new();
    for plugin in &plugins {
        let mut per_op = Vec::new();
        let mut wall = Vec::new();
        for rep in 0..repetitions {
            let start = std::time::Instant::now();
            let took: Vec<Duration> = std::thread::scope(|scope| {
                let handles: Vec<_> = pods
                    .iter()
                    .enumerate()
                    .map(|(i, pod)| scope.spawn(move || add(plugin, &format!("conc-{rep}-{i}"), pod)))
                    .collect();
                handles.into_iter().map(|h| h.join().unwrap()).collect()
            });
            wall.push(start.elapsed());
            per_op.extend(took);
            std::thread::scope(|scope| {
                for (i, pod) in pods.iter().enumerate() {
                    scope.spawn(move || del(plugin, &format!("conc-{rep}-{i}"), pod));
                }
            });
        }
        out.insert(
            plugin.label.into(),
            json!({"per_op": Stats::of(&per_op).json(), "wall": Stats::of(&wall).json()}),
        );
    }
    Value::Object(out)
}

fn probe(lan: &Lan, iterations: usize) -> Value {
    eprintln!("ADD with and without the ARP probe, {iterations} rounds...");
    let [off, _] = pair(lan, "probe-off", v4_slice, json!({}));
    let [on, _] = pair(lan, "probe-on", |k| v4_slice(k + 2), json!({"probe": true}));
    let s = rounds(&[off, on], &pods(2), iterations, Duration::from_millis(20), false);
    let (off, on) = (Stats::of(&s.add[0]), Stats::of(&s.add[1]));
    json!({"off": off.json(), "on": on.json(), "added_ms": round(on.median - off.median), "timeout_ms": 100})
}

fn main() {
    let mut args = std::env::args().skip(1);
    let mut out = PathBuf::from("docs/benchmarks.md");
    let mut iterations = 40;
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--out" => out = PathBuf::from(args.next().expect("--out FILE")),
            "--iterations" => iterations = args.next().and_then(|n| n.parse().ok()).expect("--iterations N"),
            _ => {
                eprintln!("usage: roslan-bench [--out FILE] [--iterations N]");
                std::process::exit(2);
            }
        }
    }
    let lan = Lan::new();
    enter(&lan.node);
    let results = json!({
        "machine": machine(),
        "iterations": iterations,
        "empty_pool": empty_pool(&lan, iterations),
        "occupancy": occupancy(&lan, iterations.min(30)),
        "dual_stack": dual_stack(&lan, 8),
        "concurrency": concurrency(&lan, 2),
        "probe": probe(&lan, 20),
    });
    std::fs::write(
        out.with_extension("json"),
        serde_json::to_string_pretty(&results).unwrap() + "\n",
    )
    .expect("write json");
    std::fs::write(&out, report(&results)).expect("write report");
    println!("{}", serde_json::to_string_pretty(&results).unwrap());
}

fn cell(stats: &Value) -> String {
    format!("{} ({}-{})", stats["median_ms"], stats["p10_ms"], stats["p90_ms"])
}

fn report(r: &Value) -> String {
    let m = &r["machine"];
    let mut md = String::new();
    let w = &mut md;
    let _ = writeln!(w, "# Benchmarks\n");
    let _ = writeln!(
        w,
        "Generated by `make bench` (`roslan-bench`); do not edit by hand. Raw numbers: [benchmarks.json](benchmarks.json).\n"
    );
    let _ = writeln!(w, "## Machine\n\n| | |\n|---|---|");
    let _ = writeln!(w, "| kernel | {} |", m["kernel"].as_str().unwrap_or(""));
    let _ = writeln!(w, "| CPU | {} ({} CPUs) |", m["cpu"].as_str().unwrap_or(""), m["cpus"]);
    let _ = writeln!(
        w,
        "| roslan | {} (static release build: lto, codegen-units 1, panic abort) |",
        m["roslan"].as_str().unwrap_or("")
    );
    let _ = writeln!(w, "| reference | {} |\n", m["reference"].as_str().unwrap_or(""));
    let _ = writeln!(w, "## Method\n");
    let _ = writeln!(
        w,
        "- One throwaway LAN in network namespaces (a veth master `lan0` in a node namespace, its peer in a LAN-host namespace). The benchmark process moves into the node namespace and runs each plugin as a runtime does: fork/exec with the CNI environment, configuration on stdin, no `ip netns exec`. Times are wall clock around the whole process, exec included."
    );
    let _ = writeln!(
        w,
        "- roslan (`type: roslan`, built-in host-local IPAM) and the reference (`type: macvlan` + `host-local` from Debian) get the same configuration apart from `type` and their own dataDir, and are timed interleaved: each round ADDs with both plugins, each into its own pod namespace with a fresh container ID, waits so the links are settled as a living pod's are, then DELs in an order that rotates every round; 3 warm-up rounds are discarded."
    );
    let _ = writeln!(
        w,
        "- Kernel link deletion, in the same rounds: one raw RTM_DELLINK for a roslan-created macvlan of the same age, sent from a thread inside its pod; the time until the kernel's ACK. That is the floor of any DEL: most of it is the kernel waiting for the device's last references (RCU), which varies from round to round."
    );
    let _ = writeln!(
        w,
        "- Medians, with the 10th and 90th percentiles in brackets. Numbers move with machine load; the ratios within one run are what compare.\n"
    );

    let e = &r["empty_pool"];
    let _ = writeln!(w, "## ADD and DEL on an empty pool ({} rounds)\n", r["iterations"]);
    let _ = writeln!(w, "| | ADD ms | DEL ms |\n|---|---|---|");
    let _ = writeln!(
        w,
        "| roslan | {} | {} |",
        cell(&e["roslan"]["add"]),
        cell(&e["roslan"]["del"])
    );
    let _ = writeln!(
        w,
        "| reference macvlan + host-local | {} | {} |",
        cell(&e["reference"]["add"]),
        cell(&e["reference"]["del"])
    );
    let _ = writeln!(
        w,
        "| kernel RTM_DELLINK alone | | {} |\n",
        cell(&e["kernel_link_delete"])
    );
    let _ = writeln!(
        w,
        "- ADD: roslan is **{}x** faster than the reference (goal: at least 3.5x).",
        e["add_speedup"]
    );
    let _ = writeln!(
        w,
        "- DEL: roslan's whole DEL takes **{}x** the kernel's own link deletion (goal: within 1.10x). The kernel's part varies by tens of percent between rounds, so a ratio near or below 1 means roslan's own work (process start, one pod visit, two lookups, the reservation) is lost in that variation.\n",
        e["roslan_del_over_kernel"]
    );

    let o = &r["occupancy"];
    let _ = writeln!(w, "## Cost against the number of allocated addresses\n");
    let _ = writeln!(
        w,
        "Each plugin's pool (30,000 addresses) is prefilled with reservation files in host-local's format, contiguous, with the round-robin cursor on the last one: a busy pool's steady state. 100 ms between ADD and DEL.\n"
    );
    let _ = writeln!(
        w,
        "| allocated | roslan ADD ms | roslan DEL ms | reference ADD ms | reference DEL ms | roslan's first call ms |\n|---|---|---|---|---|---|"
    );
    for row in o["rows"].as_array().into_iter().flatten() {
        let _ = writeln!(
            w,
            "| {} | {} | {} | {} | {} | {} |",
            row["allocated"],
            cell(&row["roslan"]["add"]),
            cell(&row["roslan"]["del"]),
            cell(&row["reference"]["add"]),
            cell(&row["reference"]["del"]),
            row["roslan_first_call_ms"]
        );
    }
    let _ = writeln!(
        w,
        "\n- roslan's ADD at 10,000 allocations is **{}x** its empty-pool figure (goal: within 1.2x); the reference reads every reservation file on each ADD and DEL.",
        o["roslan_10000_over_empty"]
    );
    let _ = writeln!(
        w,
        "- \"First call\": the prefilled files were written by someone else, so roslan's first call indexes them all once (one directory listing and one read per file it has not seen); afterwards it never reads them again. The same catch-up happens after host-local or an operator changes the directory.\n"
    );

    let d = &r["dual_stack"];
    let _ = writeln!(
        w,
        "## Dual-stack ADD (IPv4 + IPv6)\n\n| | ADD ms |\n|---|---|\n| roslan | {} |\n| reference | {} |\n",
        cell(&d["roslan"]),
        cell(&d["reference"])
    );
    let _ = writeln!(
        w,
        "roslan adds IPv6 addresses without duplicate address detection (its allocator guarantees uniqueness; `ipam.dad` turns DAD on) and is **{}x** faster. The reference waits for DAD whenever the range has an IPv6 gateway, which host-local always reports.\n",
        d["speedup"]
    );

    let c = &r["concurrency"];
    let _ = writeln!(
        w,
        "## 50 concurrent ADDs\n\n50 ADDs started at once, one per pod, twice per plugin.\n\n| | per-ADD ms | wall time for 50 ms |\n|---|---|---|"
    );
    let _ = writeln!(
        w,
        "| roslan | {} | {} |",
        cell(&c["roslan"]["per_op"]),
        cell(&c["roslan"]["wall"])
    );
    let _ = writeln!(
        w,
        "| reference | {} | {} |\n",
        cell(&c["reference"]["per_op"]),
        cell(&c["reference"]["wall"])
    );
    let _ = writeln!(
        w,
        "Both serialise allocation on the `flock`; roslan holds it for about 0.1 ms instead of a full host-local run.\n"
    );

    let p = &r["probe"];
    let _ = writeln!(
        w,
        "## ARP probe (`ipam.probe`)\n\n| | ADD ms |\n|---|---|\n| probe off | {} |\n| probe on ({} ms timeout) | {} |\n",
        cell(&p["off"]),
        p["timeout_ms"],
        cell(&p["on"])
    );
    let _ = writeln!(
        w,
        "The probe adds **{} ms** per ADD: two ARP probes within the timeout, waiting the whole timeout when nobody answers (the common case). Answers end the wait early.",
        p["added_ms"]
    );
    md
}
