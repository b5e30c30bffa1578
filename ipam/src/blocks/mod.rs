//! Per-node address blocks (`nodeBlocks`): a range set carved into aligned prefixes that the node agent
//! leases for its node, and the part of the set a node may allocate from.
//!
//! One NetworkAttachmentDefinition on many nodes must never give one address to two pods. host-local
//! cannot know what other nodes hand out; asking a cluster-wide store on every ADD (whereabouts) puts
//! the API server on the pod-start path. So, as Calico's block affinities and Cilium's cluster pool do,
//! the cluster hands each node whole blocks (a `/28` is 16 addresses), and the node allocates inside its
//! blocks alone. The lease is the agent's business (`roslan-install`); this module only says which blocks
//! a set has ([`blocks`]) and what a node holding some of them may hand out ([`restrict`]): the same
//! arithmetic for the agent that leases and for ADD that allocates, so that the two can never disagree.
//! The files through which the agent tells ADD are in [`file`].

pub mod file;

use std::net::IpAddr;

use ipnetwork::IpNetwork;

use crate::range::{Range, RangeSet, RangeSpec, from_u128, to_u128};

/// Default IPv4 block: a `/28`, 16 addresses (Calico's `/26` holds 64; robots run a handful of pods
/// each, and a LAN range is often a `/24`, which a `/28` splits among 16 nodes).
pub const DEFAULT_V4_PREFIX: u8 = 28;
/// Default IPv6 block: a `/124`, the same 16 addresses, so that both families of a dual-stack network
/// need new blocks at the same moment.
pub const DEFAULT_V6_PREFIX: u8 = 124;

/// The block size of each family, as prefix lengths.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BlockSize {
    /// Prefix length of IPv4 blocks.
    pub v4: u8,
    /// Prefix length of IPv6 blocks.
    pub v6: u8,
}

impl Default for BlockSize {
    fn default() -> BlockSize {
        BlockSize {
            v4: DEFAULT_V4_PREFIX,
            v6: DEFAULT_V6_PREFIX,
        }
    }
}

impl BlockSize {
    /// The prefix length of `set`'s blocks.
    pub fn of(&self, set: &RangeSet) -> u8 {
        if set.is_ipv4() { self.v4 } else { self.v6 }
    }
}

fn bits(v4: bool) -> u8 {
    if v4 { 32 } else { 128 }
}

/// (first, last) address of the block of `prefix` bits holding the numeric address `n`.
fn block_bounds(n: u128, prefix: u8, v4: bool) -> (u128, u128) {
    let host = u32::from(bits(v4) - prefix);
    let mask = if host >= 128 { u128::MAX } else { (1u128 << host) - 1 };
    (n & !mask, n | mask)
}

fn network(first: u128, prefix: u8, v4: bool) -> IpNetwork {
    IpNetwork::new(from_u128(first, v4), prefix).expect("a prefix length checked against the family")
}

/// The block of `prefix` bits that holds `ip`.
pub fn block_of(ip: IpAddr, prefix: u8) -> IpNetwork {
    let v4 = ip.is_ipv4();
    let prefix = prefix.min(bits(v4));
    network(block_bounds(to_u128(ip), prefix, v4).0, prefix, v4)
}

/// The bounds of `range` as numbers, inclusive.
fn bounds(range: &Range) -> (u128, u128) {
    (to_u128(range.range_start), to_u128(range.range_end))
}

/// How many addresses `set` can hand out inside `block` (its gateways never count).
pub fn capacity_in(set: &RangeSet, block: IpNetwork) -> u128 {
    let (first, last) = (to_u128(block.network()), to_u128(block.broadcast()));
    set.0
        .iter()
        .filter(|r| r.is_ipv4() == block.is_ipv4())
        .map(|r| {
            let (start, end) = bounds(r);
            let (lo, hi) = (start.max(first), end.min(last));
            if lo > hi {
                return 0;
            }
            let gateway = to_u128(r.gateway);
            hi - lo + 1 - u128::from(gateway >= lo && gateway <= hi)
        })
        .sum()
}

/// The blocks of `set` at `prefix` bits, in address order, each once: every aligned prefix that holds at
/// least one address the set can hand out. Lazy, because an IPv6 range has more blocks than memory.
pub fn blocks(set: &RangeSet, prefix: u8) -> impl Iterator<Item = IpNetwork> + '_ {
    let v4 = set.is_ipv4();
    let prefix = prefix.min(bits(v4));
    let mut sorted: Vec<(u128, u128)> = set.0.iter().map(bounds).collect();
    sorted.sort_unstable();
    let mut next = sorted.first().map(|(start, _)| *start);
    let mut i = 0;
    std::iter::from_fn(move || {
        loop {
            let at = next?;
            while i < sorted.len() && sorted[i].1 < at {
                i += 1;
            }
            let (start, _) = *sorted.get(i)?;
            let at = at.max(start);
            let (first, last) = block_bounds(at, prefix, v4);
            next = last.checked_add(1).filter(|n| !v4 || *n <= u128::from(u32::MAX));
            let block = network(first, prefix, v4);
            if capacity_in(set, block) > 0 {
                return Some(block);
            }
        }
    })
}

/// The part of `set` that lies in `blocks`: one range per piece of a range inside a block, in the set's
/// order and then the blocks' order, with the range's subnet and gateway (so a result reports the LAN's
/// prefix and gateway, not the block's). `None` when no block holds an address of the set, which means
/// this node has nothing to hand out from it.
pub fn restrict(set: &RangeSet, blocks: &[IpNetwork]) -> Option<RangeSet> {
    let mut sorted: Vec<(u128, u128)> = blocks
        .iter()
        .filter(|b| b.is_ipv4() == set.is_ipv4())
        .map(|b| (to_u128(b.network()), to_u128(b.broadcast())))
        .collect();
    sorted.sort_unstable();
    sorted.dedup();
    let v4 = set.is_ipv4();
    let mut specs = Vec::new();
    for range in &set.0 {
        let (start, end) = bounds(range);
        let gateway = to_u128(range.gateway);
        let first = sorted.partition_point(|(_, last)| *last < start);
        for &(block_first, block_last) in sorted[first..].iter().take_while(|(f, _)| *f <= end) {
            let (lo, hi) = (start.max(block_first), end.min(block_last));
            if lo > hi || (lo == hi && lo == gateway) {
                continue;
            }
            specs.push(RangeSpec {
                subnet: Some(range.subnet),
                range_start: Some(from_u128(lo, v4)),
                range_end: Some(from_u128(hi, v4)),
                gateway: Some(range.gateway),
            });
        }
    }
    if specs.is_empty() {
        return None;
    }
    // Pieces of valid, disjoint ranges inside disjoint blocks are valid and disjoint themselves.
    RangeSet::new(&specs).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(ranges: &[(&str, &str, &str, Option<&str>)]) -> RangeSet {
        let specs: Vec<RangeSpec> = ranges
            .iter()
            .map(|(subnet, start, end, gw)| RangeSpec {
                subnet: Some(subnet.parse().unwrap()),
                range_start: Some(start.parse().unwrap()),
                range_end: Some(end.parse().unwrap()),
                gateway: gw.map(|g| g.parse().unwrap()),
            })
            .collect();
        RangeSet::new(&specs).unwrap()
    }

    fn names(blocks: impl Iterator<Item = IpNetwork>) -> Vec<String> {
        blocks.map(|b| b.to_string()).collect()
    }

    #[test]
    fn blocks_cover_the_range_once_each_and_skip_a_lone_gateway() {
        // 10.0.0.1 is the gateway: the first block still holds .2-.15.
        let s = set(&[("10.0.0.0/24", "10.0.0.1", "10.0.0.40", None)]);
        assert_eq!(names(blocks(&s, 28)), ["10.0.0.0/28", "10.0.0.16/28", "10.0.0.32/28"]);
        assert_eq!(capacity_in(&s, "10.0.0.0/28".parse().unwrap()), 14);
        assert_eq!(capacity_in(&s, "10.0.0.32/28".parse().unwrap()), 9);
        // A block that would hold only the gateway is no block at all.
        let lone = set(&[("10.0.0.0/24", "10.0.0.10", "10.0.0.16", Some("10.0.0.16"))]);
        assert_eq!(names(blocks(&lone, 28)), ["10.0.0.0/28"]);
        // Two ranges in one block: one block.
        let two = set(&[
            ("10.0.0.0/24", "10.0.0.2", "10.0.0.4", None),
            ("10.0.0.0/24", "10.0.0.8", "10.0.0.20", None),
        ]);
        assert_eq!(names(blocks(&two, 28)), ["10.0.0.0/28", "10.0.0.16/28"]);
    }

    #[test]
    fn ipv6_blocks_are_lazy() {
        let s = set(&[("fd00::/64", "fd00::1", "fd00::ffff:ffff:ffff:fffe", Some("fd00::1"))]);
        let first: Vec<String> = blocks(&s, 124).take(2).map(|b| b.to_string()).collect();
        assert_eq!(first, ["fd00::/124", "fd00::10/124"]);
        assert_eq!(
            block_of("fd00::1234".parse().unwrap(), 124).to_string(),
            "fd00::1230/124"
        );
        let end = set(&[("10.255.255.0/24", "10.255.255.240", "10.255.255.254", None)]);
        assert_eq!(names(blocks(&end, 28)), ["10.255.255.240/28"]);
    }

    #[test]
    fn restrict_keeps_subnet_and_gateway_and_only_the_blocks() {
        let s = set(&[("10.77.0.0/16", "10.77.1.10", "10.77.1.250", Some("10.77.255.254"))]);
        let mine: Vec<IpNetwork> = vec!["10.77.1.32/28".parse().unwrap(), "10.77.1.0/28".parse().unwrap()];
        let node = restrict(&s, &mine).unwrap();
        assert_eq!(node.to_string(), "10.77.1.10-10.77.1.15,10.77.1.32-10.77.1.47");
        assert_eq!(node.0[0].subnet.prefix(), 16);
        assert_eq!(node.0[0].gateway.to_string(), "10.77.255.254");
        assert_eq!(node.capacity(), 6 + 16);
        assert!(restrict(&s, &["10.78.0.0/28".parse().unwrap()]).is_none());
        assert!(restrict(&s, &["fd00::/124".parse().unwrap()]).is_none());
        // The gateway inside a block is never handed out, and a block of only the gateway is dropped.
        let g = set(&[("10.0.0.0/24", "10.0.0.1", "10.0.0.40", None)]);
        let node = restrict(&g, &["10.0.0.0/28".parse().unwrap()]).unwrap();
        assert_eq!(node.iter_from(None).next().unwrap().ip.to_string(), "10.0.0.2");
        assert_eq!(node.capacity(), 14);
    }

    #[test]
    fn every_block_of_a_set_restricts_to_exactly_its_capacity() {
        let s = set(&[
            ("10.0.0.0/24", "10.0.0.3", "10.0.0.70", Some("10.0.0.33")),
            ("10.0.1.0/24", "10.0.1.5", "10.0.1.9", None),
        ]);
        let all: Vec<IpNetwork> = blocks(&s, 28).collect();
        let total: u128 = all.iter().map(|b| capacity_in(&s, *b)).sum();
        assert_eq!(total, s.capacity());
        assert_eq!(restrict(&s, &all).unwrap().capacity(), s.capacity());
        for b in &all {
            assert_eq!(restrict(&s, &[*b]).unwrap().capacity(), capacity_in(&s, *b), "{b}");
        }
    }
}
