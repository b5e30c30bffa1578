//! Allocation across range sets: one address per set, requested addresses first, host-local's rules.

use std::net::IpAddr;

use crate::IpamError;
use crate::range::{RangeSet, canonical, first_overlap};
use crate::store::{Free, LockedStore, Owner};

/// One reserved address with what a CNI result needs to report about it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Allocation {
    /// The address.
    pub ip: IpAddr,
    /// Prefix length of its range's subnet.
    pub prefix: u8,
    /// Its range's gateway.
    pub gateway: IpAddr,
    /// Index of the range set it came from.
    pub set_index: usize,
}

/// Checks that range sets do not overlap each other (host-local: "range set i overlaps with j"), in one
/// sweep over all their ranges.
pub fn check_disjoint(sets: &[RangeSet]) -> Result<(), IpamError> {
    let spans = sets.iter().enumerate().flat_map(|(i, set)| set.spans(i)).collect();
    match first_overlap(spans) {
        Some((a, b)) => Err(IpamError::RangeSetsOverlap {
            first: a.min(b),
            second: a.max(b),
        }),
        None => Ok(()),
    }
}

/// Why a requested address no set takes cannot be given: it is a subnet's network or broadcast
/// address, it shares a set with another requested address, or it is outside every range.
fn unplaced(sets: &[RangeSet], requested: &[IpAddr], pending: &[IpAddr]) -> IpamError {
    for &ip in pending {
        let net = |r: &crate::Range| r.subnet.network() == ip && ip.is_ipv4();
        let broadcast = |r: &crate::Range| r.subnet.broadcast() == ip && ip.is_ipv4();
        for range in sets.iter().flat_map(|s| s.0.iter()) {
            let role = if net(range) {
                "network address"
            } else if broadcast(range) {
                "broadcast address"
            } else {
                continue;
            };
            return IpamError::RequestedReserved {
                ip,
                role,
                subnet: range.subnet,
            };
        }
        if let Some(set) = sets.iter().position(|s| s.contains(ip))
            && let Some(first) = requested
                .iter()
                .map(|r| canonical(*r))
                .find(|r| *r != ip && sets[set].contains(*r))
        {
            return IpamError::RequestedSameSet { first, second: ip, set };
        }
    }
    let ips = pending.iter().map(ToString::to_string).collect::<Vec<_>>().join(" ");
    IpamError::RequestedOutsideRanges { ips }
}

/// Reserves one address in each set for `owner`.
///
/// A requested address is used for the set that contains it; in every other set a `preferred` address
/// (a sticky one: what the pod had last) is taken when it is free, and otherwise the set is walked
/// round-robin from its cursor. A set is refused if `owner` already holds an address in it (unless that set's
/// address was requested explicitly, as in host-local), as far as the index knows without reading files
/// another program wrote ([`LockedStore::find_known`]): host-local pays a read of every file per ADD for
/// that check, roslan pays nothing, and only an attachment added twice by two different plugins slips
/// through it. On any failure, the addresses reserved by this
/// call, and only those, are released again, so that a failed ADD leaves the store as it found it.
pub fn allocate(
    store: &mut LockedStore<'_>,
    sets: &[RangeSet],
    owner: &Owner,
    requested: &[IpAddr],
    preferred: &[IpAddr],
) -> Result<Vec<Allocation>, IpamError> {
    let mut pending: Vec<IpAddr> = requested.iter().copied().map(canonical).collect();
    pending.dedup();
    let mut done: Vec<Allocation> = Vec::with_capacity(sets.len());
    let result = (|| {
        let mut held: Option<Vec<IpAddr>> = None;
        for (index, set) in sets.iter().enumerate() {
            let wanted = pending
                .iter()
                .position(|ip| set.contains(*ip))
                .map(|pos| pending.remove(pos));
            let allocation = match wanted {
                Some(ip) => reserve_requested(store, set, index, owner, ip)?,
                None => {
                    let held = match &held {
                        Some(held) => held,
                        None => held.insert(store.find_known(owner)?),
                    };
                    if let Some(ip) = held.iter().find(|ip| set.contains(**ip)) {
                        return Err(IpamError::Duplicate {
                            ip: *ip,
                            id: owner.container_id.clone(),
                        });
                    }
                    match reserve_preferred(store, set, index, owner, preferred)? {
                        Some(allocation) => allocation,
                        None => reserve_next(store, set, index, owner)?,
                    }
                }
            };
            done.push(allocation);
        }
        if !pending.is_empty() {
            return Err(unplaced(sets, requested, &pending));
        }
        Ok(())
    })();
    match result {
        Ok(()) => Ok(done),
        Err(err) => {
            for allocation in &done {
                let _ = store.release(allocation.ip, owner);
            }
            Err(err)
        }
    }
}

fn reserve_requested(
    store: &mut LockedStore<'_>,
    set: &RangeSet,
    index: usize,
    owner: &Owner,
    ip: IpAddr,
) -> Result<Allocation, IpamError> {
    let range = set
        .range_for(ip)
        .ok_or_else(|| IpamError::RequestedOutsideRanges { ips: ip.to_string() })?;
    if ip == range.gateway {
        return Err(IpamError::RequestedIsGateway { ip });
    }
    if !store.reserve(ip, owner, index)? {
        let holder = store
            .holder(ip)
            .map_or_else(|| "another attachment".to_string(), |o| o.to_string());
        return Err(IpamError::RequestedUnavailable {
            ip,
            set: set.to_string(),
            holder,
        });
    }
    Ok(Allocation {
        ip,
        prefix: range.subnet.prefix(),
        gateway: range.gateway,
        set_index: index,
    })
}

/// The first of `preferred` that lies in `set` and is free, reserved without moving the cursor.
fn reserve_preferred(
    store: &mut LockedStore<'_>,
    set: &RangeSet,
    index: usize,
    owner: &Owner,
    preferred: &[IpAddr],
) -> Result<Option<Allocation>, IpamError> {
    for ip in preferred.iter().copied().map(canonical) {
        let Some(range) = set.range_for(ip).filter(|r| r.gateway != ip) else {
            continue;
        };
        if store.reserve_keeping_cursor(ip, owner)? {
            return Ok(Some(Allocation {
                ip,
                prefix: range.subnet.prefix(),
                gateway: range.gateway,
                set_index: index,
            }));
        }
    }
    Ok(None)
}

fn reserve_next(
    store: &mut LockedStore<'_>,
    set: &RangeSet,
    index: usize,
    owner: &Owner,
) -> Result<Allocation, IpamError> {
    let cursor = store.last_reserved(index);
    let found = |ip: IpAddr| {
        let range = set.range_for(ip).unwrap_or(&set.0[0]);
        Allocation {
            ip,
            prefix: range.subnet.prefix(),
            gateway: range.gateway,
            set_index: index,
        }
    };
    // The index knows the first free address without trying each taken one in turn.
    match store.next_free(set, cursor)? {
        Free::Address(ip) => {
            if store.reserve(ip, owner, index)? {
                return Ok(found(ip));
            }
            store.index_was_wrong(ip);
        }
        Free::Exhausted => {
            // Full, says the index. Check the hard way once, then believe it.
            store.index_was_wrong(cursor.unwrap_or(set.0[0].range_start));
        }
        Free::Unknown => {}
    }
    for candidate in set.iter_from(cursor) {
        if store.reserve(candidate.ip, owner, index)? {
            return Ok(found(candidate.ip));
        }
    }
    Err(IpamError::Exhausted {
        index,
        set: set.to_string(),
    })
}
