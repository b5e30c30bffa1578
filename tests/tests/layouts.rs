//! The five layouts of the seed ("Exploring ROS 2 Kubernetes configurations", see
//! `roslan_tests::layouts`) with real nodes in containers, each on the cluster network alone, with
//! roslan, with the seed's NetworkAttachmentDefinition on the reference plugins, and with the usual
//! `224.0.0.0/4` route added to it: which talkers the listener hears, and how soon. Every cell states
//! what it must show and why; the tables are printed in every run (to stderr, past the capture) and are
//! those in docs/ros.md.
//!
//! Why the cells differ (each measured; the evidence is in docs/ros.md and tests/dds/README.md):
//! - containers in one pod share its network namespace and, as under containerd, its /dev/shm: they hear
//!   each other whatever `net1` is, over shared memory (Fast DDS) or multicast loopback (Cyclone);
//! - the cluster network carries no multicast, so pods find nothing through `eth0` alone;
//! - Fast DDS sends discovery out of every interface with the interface pinned, so without a route a
//!   plain macvlan `net1` (the seed's NAD) is enough; Cyclone uses one interface and, with `eth0` and
//!   `net1` alike, takes `eth0` unless roslan clears `eth0`'s MULTICAST flag;
//! - the workaround's route gets host-local's gateway (`224.0.0.0/4 via 192.168.1.1`), so multicast on
//!   `net1` is sent to the gateway's MAC and never reaches the other pods, whichever DDS.

use std::io::Write;

use roslan_tests::layouts::{Cell, CellResult, Layout, Network, Reference, at_once, run_all, table};
use roslan_tests::root_test;
use roslan_tests::ros2::{Middleware, require_nodes};

/// What a cell must show, without the reference (which every reference gets alike).
#[derive(Clone, Copy)]
enum Net {
    Cluster,
    Roslan,
    Seed,
    SeedWithRoute,
}

const SAME_POD: &str = "one pod: its containers share its network namespace and /dev/shm";
const NO_MULTICAST: &str = "eth0's cluster network carries no multicast, and there is no net1";
const ROSLAN: &str = "roslan routes multicast through net1 without a gateway and clears eth0's MULTICAST flag";
const FAST_DDS_EVERY_INTERFACE: &str =
    "Fast DDS sends discovery out of every interface, net1 included; no route needed";
const CYCLONE_PICKS_ETH0: &str = "Cyclone uses one interface and takes eth0 (it ties with net1 and comes first)";
const GATEWAY_ROUTE: &str = "224.0.0.0/4 via the gateway: multicast on net1 goes to the gateway's MAC, not to the pods";

/// Every cell for one middleware: (layout, network, talkers heard, why).
fn expectations(middleware: Middleware) -> Vec<(Layout, Net, &'static [&'static str], &'static str)> {
    use Layout::*;
    use Net::*;
    let pods_apart = |net: Net, both: &'static [&'static str]| -> (&'static [&'static str], &'static str) {
        match (middleware, net) {
            (_, Cluster) => (&[], NO_MULTICAST),
            (_, Roslan) => (both, ROSLAN),
            (Middleware::FastDds, Seed) => (both, FAST_DDS_EVERY_INTERFACE),
            (Middleware::Cyclone, Seed) => (&[], CYCLONE_PICKS_ETH0),
            (_, SeedWithRoute) => (&[], GATEWAY_ROUTE),
        }
    };
    let mut cells = Vec::new();
    for net in [Cluster, Roslan, Seed, SeedWithRoute] {
        cells.push((TalkerAndListener, net, &["t1"][..], SAME_POD));
        cells.push((TwoTalkersAndListener, net, &["t1", "t2"][..], SAME_POD));
        let (heard, why) = pods_apart(net, &["t1", "t2"]);
        cells.push((ThreePods, net, heard, why));
        cells.push((TalkerPodAndListenerPod, net, heard, why));
    }
    cells
}

/// The cells: the cluster network and roslan once, the seed's NAD (with and without the route) once per
/// reference build, since every reference gets the same expectation.
fn cells(middleware: Middleware, references: &[Reference]) -> Vec<Cell> {
    let mut cells = Vec::new();
    for (layout, net, expect, why) in expectations(middleware) {
        let networks = match net {
            Net::Cluster => vec![Network::Cluster],
            Net::Roslan => vec![Network::Roslan],
            Net::Seed => references.iter().cloned().map(Network::Seed).collect(),
            Net::SeedWithRoute => references.iter().cloned().map(Network::SeedWithRoute).collect(),
        };
        for network in networks {
            cells.push(Cell {
                layout,
                network,
                middleware,
                expect: expect.to_vec(),
                why,
            });
        }
    }
    cells
}

/// Runs every cell, prints the table, and fails with every unexpected cell's transcripts.
fn check(middleware: Middleware) {
    require_nodes();
    let cells = cells(middleware, &Reference::all());
    let started = std::time::Instant::now();
    let results = run_all(&cells, at_once());
    let table = table(&results);
    // Straight to stderr, past the test harness's capture: the table belongs in every run's output.
    let _ = writeln!(
        std::io::stderr(),
        "{} in the seed's layouts ({} cells, {} at a time, {:.0} s):\n{table}",
        middleware.name(),
        results.len(),
        at_once(),
        started.elapsed().as_secs_f64()
    );
    let wrong: Vec<&CellResult> = results.iter().filter(|r| !r.as_expected()).collect();
    if !wrong.is_empty() {
        let mut text = String::new();
        for r in &wrong {
            text.push_str(&format!(
                "=== {} on {}: expected {:?} ({}), heard {:?}\n{}",
                r.cell.layout.label(),
                r.cell.network.label(),
                r.cell.expect,
                r.cell.why,
                r.outcome.heard(),
                r.outcome.report()
            ));
        }
        panic!("{} of {} cells unexpected\n{table}\n{text}", wrong.len(), results.len());
    }
}

#[root_test]
fn seed_layouts_with_ros2_nodes_on_fast_dds() {
    check(Middleware::FastDds);
}

#[root_test]
fn seed_layouts_with_cyclone_dds() {
    check(Middleware::Cyclone);
}
