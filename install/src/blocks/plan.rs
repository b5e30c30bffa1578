//! When to lease another block and when to give one back: pure decisions over what the node holds and
//! uses, so that the policy is tested without an API server or a file system.
//!
//! Headroom: the agent leases when fewer than `minFree` addresses are free in the node's blocks of a
//! set, by default one block's worth (16 at `/28`). ADD never waits for the API, so the headroom is what
//! a burst of pod starts can take before the agent's next look (a tick, 1 s) and one API round trip:
//! a node rebooting with all its pods, or a rollout, starts a robot's pods together, and a robot runs a
//! handful to a couple of dozen. One whole free block absorbs such a burst without any ADD failing,
//! while holding more would starve other nodes of a LAN range that is often a `/24` (16 blocks of 16).
//! A burst larger than the headroom fails with code 11 (try again) for the pods past it until the
//! blocks the agent leases in the same look arrive (it leases as many as the shortfall needs at once).
//!
//! Give-back: a block empty for `releaseAfter` (default 10 min) is given back when the node keeps at
//! least the headroom without it, and never the node's last block (its pods must start offline). The
//! grace outlasts a rollout and the kubelet's longest crash-loop back-off (5 min), so a pod that comes
//! back finds its block, and its sticky address, still there; it also bounds lease churn to one create
//! and one delete per block per ten minutes at worst.

use std::time::{Duration, Instant};

use ipnetwork::IpNetwork;

/// One held block of a set, as the node uses it now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BlockUse {
    /// The block.
    pub block: IpNetwork,
    /// Addresses of the set inside it.
    pub capacity: u128,
    /// Of those, how many are reserved.
    pub used: u128,
    /// Since when it has been empty, if it is.
    pub empty_since: Option<Instant>,
}

/// The policy of one network (`nodeBlocks`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Policy {
    /// Prefix length of the set's blocks.
    pub prefix: u8,
    /// IPv4 or IPv6 (for the nominal block size).
    pub ipv4: bool,
    /// `minFree`; `None`: one block's worth.
    pub min_free: Option<u64>,
    /// `releaseAfter`.
    pub release_after: Duration,
}

impl Policy {
    /// Addresses in a whole block of this size (saturating for huge IPv6 blocks).
    pub fn block_addresses(&self) -> u128 {
        let bits = if self.ipv4 { 32 } else { 128 };
        1u128.checked_shl(u32::from(bits - self.prefix)).unwrap_or(u128::MAX)
    }

    /// The headroom to keep.
    pub fn threshold(&self) -> u128 {
        self.min_free.map_or_else(|| self.block_addresses(), u128::from)
    }
}

/// What to do for one set.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Lease this many more blocks.
    Lease(usize),
    /// Give this empty block back.
    GiveBack(IpNetwork),
    /// Enough headroom, nothing to give back.
    Keep,
}

/// Free addresses in the held blocks.
pub fn free(held: &[BlockUse]) -> u128 {
    held.iter().map(|b| b.capacity.saturating_sub(b.used)).sum()
}

/// The decision for one set holding `held`.
pub fn decide(held: &[BlockUse], policy: &Policy, now: Instant) -> Decision {
    let free = free(held);
    let threshold = policy.threshold();
    if held.is_empty() || free < threshold {
        let per_block = policy.block_addresses().max(1);
        let missing = threshold.saturating_sub(free).div_ceil(per_block).max(1);
        return Decision::Lease(usize::try_from(missing).unwrap_or(usize::MAX).min(64));
    }
    if held.len() < 2 {
        return Decision::Keep;
    }
    let expired = |b: &&BlockUse| {
        b.used == 0
            && b.empty_since
                .is_some_and(|since| now.saturating_duration_since(since) >= policy.release_after)
            && free - b.capacity >= threshold
    };
    // The highest block first: the node's addresses stay packed at the start of what it holds.
    match held.iter().rev().find(expired) {
        Some(b) => Decision::GiveBack(b.block),
        None => Decision::Keep,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn block(i: u8, capacity: u128, used: u128, empty_for: Option<u64>, now: Instant) -> BlockUse {
        BlockUse {
            block: format!("10.0.0.{}/28", i * 16).parse().unwrap(),
            capacity,
            used,
            empty_since: empty_for.map(|s| now - Duration::from_secs(s)),
        }
    }

    const POLICY: Policy = Policy {
        prefix: 28,
        ipv4: true,
        min_free: None,
        release_after: Duration::from_secs(600),
    };

    #[test]
    fn keeps_one_block_of_headroom() {
        let now = Instant::now() + Duration::from_secs(10_000);
        assert_eq!(decide(&[], &POLICY, now), Decision::Lease(1));
        // 16 free of 16: enough; the first ADD makes it 15, and another block is leased.
        assert_eq!(decide(&[block(0, 16, 0, Some(1), now)], &POLICY, now), Decision::Keep);
        assert_eq!(decide(&[block(0, 16, 1, None, now)], &POLICY, now), Decision::Lease(1));
        // A burst that ate 60 addresses of 64 leases the whole shortfall at once.
        let burst = [
            block(0, 16, 16, None, now),
            block(1, 16, 16, None, now),
            block(2, 16, 16, None, now),
            block(3, 16, 12, None, now),
        ];
        assert_eq!(decide(&burst, &POLICY, now), Decision::Lease(1));
        let drained = [block(0, 16, 16, None, now), block(1, 16, 16, None, now)];
        let wide = Policy {
            min_free: Some(40),
            ..POLICY
        };
        assert_eq!(decide(&drained, &wide, now), Decision::Lease(3));
    }

    #[test]
    fn gives_back_only_after_the_grace_and_never_below_the_headroom() {
        let now = Instant::now() + Duration::from_secs(10_000);
        let young = [
            block(0, 16, 3, None, now),
            block(1, 16, 0, Some(599), now),
            block(2, 16, 0, Some(10), now),
        ];
        assert_eq!(decide(&young, &POLICY, now), Decision::Keep);
        let old = [
            block(0, 16, 3, None, now),
            block(1, 16, 0, Some(601), now),
            block(2, 16, 0, Some(700), now),
        ];
        assert_eq!(
            decide(&old, &POLICY, now),
            Decision::GiveBack("10.0.0.32/28".parse().unwrap())
        );
        // Without it the node would fall below one block free: kept.
        let needed = [block(0, 16, 3, None, now), block(1, 16, 0, Some(900), now)];
        assert_eq!(decide(&needed, &POLICY, now), Decision::Keep);
        // The last block stays, even empty for ever.
        assert_eq!(
            decide(&[block(0, 16, 0, Some(99_999), now)], &POLICY, now),
            Decision::Keep
        );
    }
}
