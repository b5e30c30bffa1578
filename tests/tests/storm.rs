//! A storm of randomized ADD, DEL and CHECK over 8 workers and 24 pods, with processes killed at random
//! crash points, the way kubelet retries on a node under stress. Invariants are checked all along:
//! - no address is ever on two pods at once;
//! - every address on a pod's link has a reservation belonging to that pod's attachment;
//! - at quiescent points, the reservations are exactly the live attachments' (GC, told the live ones,
//!   keeps them all), and at the end nothing remains.
//!
//! `make test` runs a short storm (ROSLAN_STORM_OPS, default 240 operations); `make stress` a long one.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Barrier, Mutex};
use std::time::Duration;

use roslan_tests::plugin::{Call, fault_bin, result_ip};
use roslan_tests::root_test;
use roslan_tests::{Lan, Pod};
use serde_json::{Value, json};

const WORKERS: usize = 8;
const PODS_PER_WORKER: usize = 3;
const PHASES: usize = 4;
const KILL_POINTS_ADD: &[&str] = &[
    "add:created",
    "add:pod-visited",
    "add:ipam-uncommitted",
    "add:reserved",
    "add:up",
    "add:flags",
    "add:routed",
];
const KILL_POINTS_DEL: &[&str] = &["del:pod-visited", "del:link-deleted", "del:ipam-uncommitted"];

struct Lcg(u64);

impl Lcg {
    fn below(&mut self, n: usize) -> usize {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((self.0 >> 33) % n as u64) as usize
    }
}

/// One pod's attachment as the "runtime" sees it.
#[derive(Clone, Debug)]
enum State {
    Detached,
    Live {
        id: String,
        result: Value,
    },
    /// An ADD or DEL was killed: the runtime must (and does, next) DEL it.
    Limbo {
        id: String,
    },
}

#[root_test]
fn storm_of_add_del_check_with_kills() {
    let total: usize = std::env::var("ROSLAN_STORM_OPS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(240);
    let lan = Lan::new();
    let mut conf = lan.config("1.1.0");
    // 40 addresses for 24 pods: addresses are reused constantly.
    conf["ipam"]["ranges"] =
        json!([[{"subnet": "10.77.0.0/16", "rangeStart": "10.77.1.10", "rangeEnd": "10.77.1.49"}]]);
    let pods: Vec<Pod> = (0..WORKERS * PODS_PER_WORKER)
        .map(|i| if i % 2 == 0 { lan.dual_homed_pod() } else { lan.pod() })
        .collect();
    let states: Vec<Mutex<State>> = pods.iter().map(|_| Mutex::new(State::Detached)).collect();
    let done = AtomicBool::new(false);
    let ops = AtomicUsize::new(0);
    let kills = AtomicUsize::new(0);
    let violations: Mutex<Vec<String>> = Mutex::new(Vec::new());
    let barrier = Barrier::new(WORKERS + 1);
    let data = lan.data_dir().join("ros-lan");
    let generation = AtomicUsize::new(0);

    std::thread::scope(|scope| {
        // The monitor: invariants that must hold at every instant.
        scope.spawn(|| {
            while !done.load(Ordering::Relaxed) {
                let mut seen: HashMap<String, usize> = HashMap::new();
                for (i, pod) in pods.iter().enumerate() {
                    for addr in pod.ns.addresses("net1") {
                        let ip = addr.split('/').next().unwrap().to_string();
                        // The scan reads one pod after the other, so an address can move from a pod
                        // read earlier to one read later between the two reads. Read both again: if
                        // each still holds it, neither can have given it up in between (the other
                        // held it all along), so they held it at the same time.
                        if let Some(other) = seen.insert(ip.clone(), i)
                            && pods[other].ns.addresses("net1").contains(&addr)
                            && pod.ns.addresses("net1").contains(&addr)
                        {
                            violations
                                .lock()
                                .unwrap()
                                .push(format!("{ip} on pods {other} and {i} at once"));
                        }
                        // Read the reservation after the address: an address is added only after its
                        // reservation and released only after the link is gone, so it must be there.
                        let owner = std::fs::read_to_string(data.join(&ip)).unwrap_or_default();
                        let still_there = pod.ns.addresses("net1").contains(&addr);
                        if still_there && !owner.starts_with(&format!("storm-{i}-")) {
                            violations
                                .lock()
                                .unwrap()
                                .push(format!("{ip} on pod {i} is reserved for {owner:?}"));
                        }
                    }
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        });

        for worker in 0..WORKERS {
            let (pods, states, conf, lan, ops, kills, barrier, generation) =
                (&pods, &states, &conf, &lan, &ops, &kills, &barrier, &generation);
            scope.spawn(move || {
                let mut rng = Lcg(worker as u64 * 104_729 + 7);
                let mine: Vec<usize> = (worker * PODS_PER_WORKER..(worker + 1) * PODS_PER_WORKER).collect();
                let per_phase = total.div_ceil(WORKERS * PHASES);
                for _phase in 0..PHASES {
                    for _ in 0..per_phase {
                        let p = mine[rng.below(mine.len())];
                        let pod = &pods[p];
                        let state = states[p].lock().unwrap().clone();
                        let kill = rng.below(100) < 15;
                        let next = match state {
                            State::Detached => {
                                let id = format!("storm-{p}-{}", generation.fetch_add(1, Ordering::Relaxed));
                                let mut call = Call::roslan("ADD", &id, &pod.path(), "net1", conf);
                                if kill {
                                    call.plugin = fault_bin();
                                    call.env.push((
                                        "ROSLAN_FAULT",
                                        KILL_POINTS_ADD[rng.below(KILL_POINTS_ADD.len())].to_string(),
                                    ));
                                }
                                let reply = lan.call(&call);
                                match (reply.status, kill) {
                                    (0, _) => State::Live {
                                        id,
                                        result: reply.json.unwrap(),
                                    },
                                    (-1, true) => {
                                        kills.fetch_add(1, Ordering::Relaxed);
                                        State::Limbo { id }
                                    }
                                    // An exhausted pool is a legitimate answer; the runtime DELs anyway.
                                    (_, _) if reply.code() == Some(103) => State::Limbo { id },
                                    _ => panic!("ADD {id}: {reply}"),
                                }
                            }
                            State::Live { id, result } if rng.below(3) == 0 => {
                                let mut check = conf.clone();
                                check["prevResult"] = result.clone();
                                let reply = lan.call(&Call::roslan("CHECK", &id, &pod.path(), "net1", &check));
                                assert_eq!(reply.status, 0, "CHECK {id}: {reply}");
                                State::Live { id, result }
                            }
                            State::Live { id, .. } | State::Limbo { id } => {
                                let mut call = Call::roslan("DEL", &id, &pod.path(), "net1", conf);
                                if kill {
                                    call.plugin = fault_bin();
                                    call.env.push((
                                        "ROSLAN_FAULT",
                                        KILL_POINTS_DEL[rng.below(KILL_POINTS_DEL.len())].to_string(),
                                    ));
                                }
                                let reply = lan.call(&call);
                                match (reply.status, kill) {
                                    (0, _) => State::Detached,
                                    (-1, true) => {
                                        kills.fetch_add(1, Ordering::Relaxed);
                                        State::Limbo { id }
                                    }
                                    _ => panic!("DEL {id}: {reply}"),
                                }
                            }
                        };
                        *states[p].lock().unwrap() = next;
                        ops.fetch_add(1, Ordering::Relaxed);
                    }
                    // Before each quiescent check the runtime finishes what was interrupted.
                    for &p in &mine {
                        let state = states[p].lock().unwrap().clone();
                        if let State::Limbo { id } = state {
                            let reply = lan.call(&Call::roslan("DEL", &id, &pods[p].path(), "net1", conf));
                            assert_eq!(reply.status, 0, "DEL {id}: {reply}");
                            *states[p].lock().unwrap() = State::Detached;
                        }
                    }
                    barrier.wait();
                    barrier.wait();
                }
            });
        }

        // Quiescent checks between phases: the store holds exactly the live attachments, and GC told
        // about them releases nothing.
        for _ in 0..PHASES {
            barrier.wait();
            let live: BTreeMap<String, String> = states
                .iter()
                .filter_map(|s| match &*s.lock().unwrap() {
                    State::Live { id, result } => Some((result_ip(result, 0), id.clone())),
                    _ => None,
                })
                .collect();
            let store: BTreeMap<String, String> = lan
                .reservations("ros-lan")
                .into_iter()
                .map(|ip| {
                    let owner = std::fs::read_to_string(data.join(&ip)).unwrap();
                    (ip, owner.split("\r\n").next().unwrap().to_string())
                })
                .collect();
            assert_eq!(store, live, "reservations are exactly the live attachments");
            let mut gc = conf.clone();
            gc["cni.dev/valid-attachments"] = json!(
                live.values()
                    .map(|id| json!({"containerID": id, "ifname": "net1"}))
                    .collect::<Vec<_>>()
            );
            let reply = lan.call(&Call::roslan("GC", "", "", "", &gc));
            assert_eq!(reply.status, 0, "{reply}");
            assert_eq!(
                lan.reservations("ros-lan").len(),
                live.len(),
                "GC kept every live attachment"
            );
            barrier.wait();
        }
        done.store(true, Ordering::Relaxed);
    });

    let violations = violations.into_inner().unwrap();
    assert!(violations.is_empty(), "invariant violations: {violations:#?}");
    let ops = ops.into_inner();
    let kills = kills.into_inner();
    assert!(ops >= total, "{ops} operations");
    assert!(kills > 0, "some processes were killed");
    eprintln!("storm: {ops} operations, {kills} killed");

    // The end: DEL what is live, GC with nothing valid; nothing remains.
    for (p, state) in states.iter().enumerate() {
        if let State::Live { id, .. } | State::Limbo { id } = &*state.lock().unwrap() {
            let reply = lan.call(&Call::roslan("DEL", id, &pods[p].path(), "net1", &conf));
            assert_eq!(reply.status, 0, "{reply}");
        }
    }
    let mut gc = conf.clone();
    gc["cni.dev/valid-attachments"] = json!([]);
    assert_eq!(lan.call(&Call::roslan("GC", "", "", "", &gc)).status, 0);
    assert!(lan.reservations("ros-lan").is_empty());
    for pod in &pods {
        assert!(!pod.ns.has_link("net1"));
        if pod.ns.has_link("eth0") {
            assert!(pod.ns.has_flag("eth0", "MULTICAST"));
        }
    }
}
