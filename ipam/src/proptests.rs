//! Property tests: the allocator and the store index against ground truth.
//!
//! Ground truth is what host-local would see: the files in the directory. After every step of a random
//! history (allocations, requested addresses, releases, reservations and releases made directly in the
//! directory the way host-local makes them, and processes killed before the index was stamped), every
//! owner's lookup must equal a full scan, what ADD knows without reading foreign files must be part of
//! it (all of it for roslan's own owners), and every allocation must be exactly the address
//! host-local's round-robin walk would pick.

use std::collections::BTreeMap;
use std::fs;
use std::net::IpAddr;
use std::path::PathBuf;

use proptest::prelude::*;

use crate::range::{RangeSet, RangeSpec};
use crate::store::{Owner, Store};
use crate::{IpamError, allocate};

#[derive(Clone, Debug)]
enum Step {
    Allocate(usize),
    Request(usize, usize),
    Release(usize),
    ForeignReserve(usize, usize),
    ForeignRelease(usize),
    KilledAllocate(usize),
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        4 => (0..6usize).prop_map(Step::Allocate),
        1 => (0..6usize, 0..20usize).prop_map(|(o, i)| Step::Request(o, i)),
        3 => (0..6usize).prop_map(Step::Release),
        1 => (6..9usize, 0..20usize).prop_map(|(o, i)| Step::ForeignReserve(o, i)),
        1 => (0..20usize).prop_map(Step::ForeignRelease),
        1 => (0..6usize).prop_map(Step::KilledAllocate),
    ]
}

fn owner(i: usize) -> Owner {
    Owner::new(format!("c{i}"), "net1")
}

/// Two ranges with a gateway inside the first: 10.0.0.2-10.0.0.9 (gateway .5) and 10.0.1.10-10.0.1.15.
fn set() -> RangeSet {
    let spec = |subnet: &str, start: &str, end: &str, gw: Option<&str>| RangeSpec {
        subnet: Some(subnet.parse().unwrap()),
        range_start: Some(start.parse().unwrap()),
        range_end: Some(end.parse().unwrap()),
        gateway: gw.map(|g| g.parse().unwrap()),
    };
    RangeSet::new(&[
        spec("10.0.0.0/24", "10.0.0.2", "10.0.0.9", Some("10.0.0.5")),
        spec("10.0.1.0/24", "10.0.1.10", "10.0.1.15", None),
    ])
    .unwrap()
}

fn address(set: &RangeSet, i: usize) -> IpAddr {
    let all: Vec<IpAddr> = set.iter_from(None).map(|c| c.ip).collect();
    all[i % all.len()]
}

/// What host-local sees: address -> owner.
fn truth(dir: &std::path::Path) -> BTreeMap<IpAddr, Owner> {
    fs::read_dir(dir)
        .unwrap()
        .flatten()
        .filter_map(|e| {
            let ip: IpAddr = e.file_name().to_str()?.parse().ok()?;
            Some((ip, Owner::parse(&fs::read_to_string(e.path()).ok()?)?))
        })
        .collect()
}

/// host-local's choice: the first address after the cursor without a file.
fn expected_next(set: &RangeSet, dir: &std::path::Path) -> Option<IpAddr> {
    let cursor = fs::read_to_string(dir.join("last_reserved_ip.0"))
        .ok()
        .and_then(|t| t.parse().ok());
    let taken = truth(dir);
    set.iter_from(cursor).map(|c| c.ip).find(|ip| !taken.contains_key(ip))
}

fn scratch() -> PathBuf {
    static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("roslan-prop-{}-{n}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    dir
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn index_matches_a_full_scan_and_allocation_matches_host_local(steps in proptest::collection::vec(step(), 1..60)) {
        let data = scratch();
        let store = Store::open(&data, "net").unwrap();
        let dir = data.join("net");
        let set = set();
        let sets = [set.clone()];
        for step in steps {
            match step {
                Step::Allocate(o) | Step::KilledAllocate(o) => {
                    let expected = expected_next(&set, &dir);
                    let mut locked = store.lock().unwrap();
                    prop_assert!(locked.indexed());
                    let held_before = locked.find(&owner(o)).unwrap();
                    match allocate(&mut locked, &sets, &owner(o), &[], &[]) {
                        Ok(got) => {
                            prop_assert!(held_before.is_empty());
                            prop_assert_eq!(Some(got[0].ip), expected, "host-local would pick another address");
                            prop_assert!(set.contains(got[0].ip) && got[0].ip != "10.0.0.5".parse::<IpAddr>().unwrap());
                        }
                        Err(IpamError::Duplicate { .. }) => prop_assert!(!held_before.is_empty()),
                        Err(IpamError::Exhausted { .. }) => prop_assert_eq!(expected, None),
                        Err(other) => prop_assert!(false, "unexpected error {other}"),
                    }
                    if matches!(step, Step::KilledAllocate(_)) { locked.die() }
                }
                Step::Request(o, i) => {
                    let ip = address(&set, i);
                    let was_free = !truth(&dir).contains_key(&ip);
                    let mut locked = store.lock().unwrap();
                    let result = allocate(&mut locked, &sets, &owner(o), &[ip], &[]);
                    prop_assert_eq!(result.is_ok(), was_free, "{:?}", result);
                }
                Step::Release(o) => {
                    let mut locked = store.lock().unwrap();
                    let released = locked.release_owner(&owner(o)).unwrap();
                    drop(locked);
                    let after = truth(&dir);
                    for ip in released {
                        prop_assert!(!after.contains_key(&ip), "a released address is reusable");
                    }
                }
                Step::ForeignReserve(o, i) => {
                    // What host-local does: O_EXCL create, then the cursor.
                    let ip = address(&set, i);
                    let path = dir.join(ip.to_string());
                    if fs::OpenOptions::new().write(true).create_new(true).open(&path).is_ok() {
                        fs::write(&path, owner(o).record()).unwrap();
                        fs::write(dir.join("last_reserved_ip.0"), ip.to_string()).unwrap();
                    }
                }
                Step::ForeignRelease(i) => {
                    let _ = fs::remove_file(dir.join(address(&set, i).to_string()));
                }
            }
            let scan = truth(&dir);
            let locked = store.lock().unwrap();
            // What ADD's duplicate check sees without reading foreign files: everything roslan
            // reserved, and never an address the owner does not hold.
            for o in 0..9 {
                let mut want: Vec<IpAddr> = scan.iter().filter(|(_, w)| **w == owner(o)).map(|(ip, _)| *ip).collect();
                want.sort();
                let known = locked.find_known(&owner(o)).unwrap();
                prop_assert!(known.iter().all(|ip| want.contains(ip)), "owner c{} known {:?}, holds {:?}", o, known, want);
                if o < 6 {
                    prop_assert_eq!(known, want, "roslan's own reservations are always known (c{})", o);
                }
            }
            for o in 0..9 {
                let mut want: Vec<IpAddr> = scan.iter().filter(|(_, w)| **w == owner(o)).map(|(ip, _)| *ip).collect();
                want.sort();
                prop_assert_eq!(locked.find(&owner(o)).unwrap(), want, "owner c{} after {:?}", o, step);
            }
        }
        drop(store);
        let _ = fs::remove_dir_all(&data);
    }
}

/// Random intervals in groups, small enough to collide often.
fn spans() -> impl Strategy<Value = Vec<crate::range::Span<u8>>> {
    proptest::collection::vec((any::<bool>(), 0u128..64, 0u128..8, 0u8..5), 0..24).prop_map(|items| {
        items
            .into_iter()
            .map(|(v4, start, len, group)| crate::range::Span {
                v4,
                start,
                end: start + len,
                group,
            })
            .collect()
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    /// The sweep finds an overlap between different groups exactly when comparing every pair does,
    /// and the pair it names does overlap.
    #[test]
    fn sweep_agrees_with_every_pair(spans in spans()) {
        let overlap = |a: &crate::range::Span<u8>, b: &crate::range::Span<u8>| {
            a.v4 == b.v4 && a.group != b.group && a.start <= b.end && b.start <= a.end
        };
        let pairwise = spans
            .iter()
            .enumerate()
            .any(|(i, a)| spans[i + 1..].iter().any(|b| overlap(a, b)));
        let found = crate::range::first_overlap(spans.clone());
        prop_assert_eq!(found.is_some(), pairwise);
        if let Some((g, h)) = found {
            prop_assert!(g != h);
            prop_assert!(spans.iter().any(|a| a.group == g && spans.iter().any(|b| b.group == h && overlap(a, b))));
        }
    }
}
