//! `make bench`: roslan and the reference macvlan + host-local timed in the same run, on the same LAN,
//! by the same code; writes docs/benchmarks.md (and the raw numbers next to it as JSON).
//!
//! Usage: roslan-bench [--out docs/benchmarks.md] [--iterations N]

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use roslan_tests::bench::{Stats, enter, kernel_delete_link, round, time_call};
use roslan_tests::netns::sh;
use roslan_tests::plugin::{REFERENCE_DIR, reference_bin, workspace_bin};
use roslan_tests::{Lan, Pod};
use serde_json::{Value, json};

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

/// Samples of one empty-pool round: ADD and DEL per plugin, and the kernel's own deletion.
#[derive(Default)]
struct Samples {
    add: Vec<Vec<Duration>>,
    del: Vec<Vec<Duration>>,
    kernel_delete: Vec<Duration>,
}

/// Each round: ADD with every plugin (each into its own pod), one more roslan ADD whose link the
/// kernel deletes directly, a pause so the links are settled as a living pod's are, then the DELs and
/// the raw kernel deletion in an order that rotates every round.
fn empty_pool(plugins: &[Plugin], pods: &[Pod], iterations: usize) -> Samples {
    let mut samples = Samples {
        add: vec![Vec::new(); plugins.len()],
        del: vec![Vec::new(); plugins.len()],
        ..Default::default()
    };
    let kernel_pod = &pods[plugins.len()];
    for round in 0..iterations + 3 {
        let ids: Vec<String> = (0..=plugins.len()).map(|k| format!("bench-{k}-{round}")).collect();
        for (k, plugin) in plugins.iter().enumerate() {
            let (took, ok, stdout) = time_call(&plugin.bin, &env("ADD", &ids[k], &pods[k].path()), &plugin.conf);
            assert!(ok, "{} ADD failed: {}", plugin.label, String::from_utf8_lossy(&stdout));
            if round >= 3 {
                samples.add[k].push(took);
            }
        }
        let kernel_path = kernel_pod.path();
        let (_, ok, _) = time_call(
            &plugins[0].bin,
            &env("ADD", &ids[plugins.len()], &kernel_path),
            &plugins[0].conf,
        );
        assert!(ok, "ADD for the kernel deletion failed");
        std::thread::sleep(Duration::from_millis(200));
        for step in 0..=plugins.len() {
            let k = (step + round) % (plugins.len() + 1);
            if k == plugins.len() {
                let took = kernel_delete_link(&kernel_pod.ns, "net1");
                // Release the reservation (the link is already gone).
                time_call(&plugins[0].bin, &env("DEL", &ids[k], &kernel_path), &plugins[0].conf);
                if round >= 3 {
                    samples.kernel_delete.push(took);
                }
            } else {
                let plugin = &plugins[k];
                let (took, ok, stdout) = time_call(&plugin.bin, &env("DEL", &ids[k], &pods[k].path()), &plugin.conf);
                assert!(ok, "{} DEL failed: {}", plugin.label, String::from_utf8_lossy(&stdout));
                if round >= 3 {
                    samples.del[k].push(took);
                }
            }
        }
    }
    samples
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
    let roslan_conf = lan.config("1.0.0");
    let mut reference_conf = roslan_conf.clone();
    reference_conf["type"] = json!("macvlan");
    reference_conf["ipam"]["dataDir"] = json!(lan.dir().join("ref-ipam"));
    let plugins = [
        Plugin {
            label: "roslan",
            bin: workspace_bin("roslan"),
            conf: serde_json::to_vec(&roslan_conf).unwrap(),
        },
        Plugin {
            label: "reference",
            bin: reference_bin("macvlan"),
            conf: serde_json::to_vec(&reference_conf).unwrap(),
        },
    ];
    let pods: Vec<Pod> = (0..=plugins.len()).map(|_| lan.pod()).collect();
    enter(&lan.node);

    eprintln!("ADD/DEL on an empty pool, {iterations} rounds...");
    let seq = empty_pool(&plugins, &pods, iterations);
    let kdel = Stats::of(&seq.kernel_delete);
    let (r_add, r_del) = (Stats::of(&seq.add[0]), Stats::of(&seq.del[0]));
    let (f_add, f_del) = (Stats::of(&seq.add[1]), Stats::of(&seq.del[1]));

    let results = json!({
        "machine": machine(),
        "empty_pool": {
            "roslan": {"add": r_add.json(), "del": r_del.json()},
            "reference": {"add": f_add.json(), "del": f_del.json()},
            "add_speedup": round(f_add.median / r_add.median),
            "kernel_link_delete": kdel.json(),
            "roslan_del_over_kernel": round(r_del.median / kdel.median),
        },
    });
    write_report(&out, &results, iterations);
    println!("{}", serde_json::to_string_pretty(&results).unwrap());
}

fn write_report(out: &Path, r: &Value, iterations: usize) {
    let m = &r["machine"];
    let e = &r["empty_pool"];
    let mut md = String::new();
    let _ = writeln!(md, "# Benchmarks\n");
    let _ = writeln!(
        md,
        "Generated by `make bench` (`target/release/roslan-bench`); do not edit by hand. Raw numbers: [benchmarks.json](benchmarks.json).\n"
    );
    let _ = writeln!(md, "## Machine\n");
    let _ = writeln!(md, "| | |\n|---|---|");
    let _ = writeln!(
        md,
        "| kernel | {} |\n| CPU | {} ({} CPUs) |\n| roslan | {} (release build: lto, codegen-units 1, panic abort) |\n| reference | {} |\n",
        m["kernel"].as_str().unwrap_or(""),
        m["cpu"].as_str().unwrap_or(""),
        m["cpus"],
        m["roslan"].as_str().unwrap_or(""),
        m["reference"].as_str().unwrap_or("")
    );
    let _ = writeln!(md, "## Method\n");
    let _ = writeln!(
        md,
        "- One throwaway LAN in network namespaces (a veth master `lan0` in a node namespace, its peer in a LAN-host namespace). The benchmark process moves into the node namespace and runs each plugin as a runtime does: fork/exec with the CNI environment, configuration on stdin, no `ip netns exec`. Times are wall clock around the whole process, exec included."
    );
    let _ = writeln!(
        md,
        "- roslan (`type: roslan`, built-in host-local IPAM, static release binary) and the reference (`type: macvlan` + `host-local` from Debian) get the same configuration apart from `type` and their own dataDir. Each of {iterations} rounds (after 3 warm-up rounds) ADDs with both plugins, each into its own pod namespace with a fresh container ID, waits 200 ms so the links are as settled as a living pod's, then DELs; the DEL order rotates every round."
    );
    let _ = writeln!(
        md,
        "- Kernel link deletion, in the same rounds: one raw RTM_DELLINK for a roslan-created macvlan of the same age, sent from a thread inside its pod; the time until the kernel's ACK. That is the floor of any DEL: most of it is the kernel waiting for the device's last references (RCU), which varies from run to run."
    );
    let _ = writeln!(
        md,
        "- Medians, with the 10th and 90th percentiles. Numbers vary with machine load; the ratios from one run are what compare.\n"
    );
    let _ = writeln!(md, "## ADD and DEL on an empty pool\n");
    let _ = writeln!(
        md,
        "| | ADD median (p10-p90) ms | DEL median (p10-p90) ms |\n|---|---|---|"
    );
    for (label, key) in [("roslan", "roslan"), ("reference macvlan + host-local", "reference")] {
        let a = &e[key]["add"];
        let d = &e[key]["del"];
        let _ = writeln!(
            md,
            "| {label} | {} ({}-{}) | {} ({}-{}) |",
            a["median_ms"], a["p10_ms"], a["p90_ms"], d["median_ms"], d["p10_ms"], d["p90_ms"]
        );
    }
    let k = &e["kernel_link_delete"];
    let _ = writeln!(
        md,
        "| kernel RTM_DELLINK alone | | {} ({}-{}) |\n",
        k["median_ms"], k["p10_ms"], k["p90_ms"]
    );
    let _ = writeln!(
        md,
        "- ADD: roslan is **{}x** faster than the reference (goal: at least 3.5x).",
        e["add_speedup"]
    );
    let _ = writeln!(
        md,
        "- DEL: roslan's whole DEL takes **{}x** the kernel's own link deletion (goal: within 1.10x).",
        e["roslan_del_over_kernel"]
    );
    std::fs::write(out, md).expect("write report");
    std::fs::write(
        out.with_extension("json"),
        serde_json::to_string_pretty(r).unwrap() + "\n",
    )
    .expect("write json");
}
