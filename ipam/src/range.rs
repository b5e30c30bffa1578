//! Address ranges and range sets with host-local's exact semantics.
//!
//! host-local's behaviour is the contract here, quirks included, because a node must be able to switch
//! between host-local and roslan on the same data directory without an address being handed out twice
//! or a pod getting a different address than it would have under host-local:
//! - the gateway defaults to network+1 and is skipped by the iterator, never reserved;
//! - `rangeStart` defaults to network+1, `rangeEnd` to broadcast-1 (IPv4) or the last address (IPv6);
//! - iteration is round-robin: it starts after the last reserved address of the set and wraps around.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnetwork::IpNetwork;

use crate::IpamError;

/// One range as written in the configuration, before defaults are applied.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RangeSpec {
    /// `subnet`: must be the network address of its prefix.
    pub subnet: Option<IpNetwork>,
    /// `rangeStart`, inclusive.
    pub range_start: Option<IpAddr>,
    /// `rangeEnd`, inclusive.
    pub range_end: Option<IpAddr>,
    /// `gateway`; network+1 when absent.
    pub gateway: Option<IpAddr>,
}

/// A canonical range: every field is known and checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Range {
    /// The subnet, with its network address.
    pub subnet: IpNetwork,
    /// First allocatable address (inclusive).
    pub range_start: IpAddr,
    /// Last allocatable address (inclusive).
    pub range_end: IpAddr,
    /// The gateway reported with addresses from this range; never allocated.
    pub gateway: IpAddr,
}

/// Numeric form of an address, so that ranges can be walked with integer arithmetic.
pub(crate) fn to_u128(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(v4) => u32::from(v4) as u128,
        IpAddr::V6(v6) => u128::from(v6),
    }
}

pub(crate) fn from_u128(value: u128, v4: bool) -> IpAddr {
    if v4 {
        IpAddr::V4(Ipv4Addr::from(value as u32))
    } else {
        IpAddr::V6(Ipv6Addr::from(value))
    }
}

/// IPv4-mapped IPv6 addresses are IPv4 addresses to host-local (Go's `To4`); treat them the same way.
pub fn canonical(ip: IpAddr) -> IpAddr {
    ip.to_canonical()
}

impl Range {
    /// Applies host-local's defaults and checks, with its error cases, plus the addresses host-local
    /// would hand out but no host should get (see [`IpamError::ReservedAddress`]).
    pub fn new(spec: &RangeSpec) -> Result<Range, IpamError> {
        let given = spec.subnet.ok_or(IpamError::MissingSubnet)?;
        let ip = canonical(given.ip());
        let v4 = ip.is_ipv4();
        let prefix = given.prefix();
        if v4 && given.is_ipv6() {
            return Err(IpamError::MappedSubnet {
                given,
                ipv4: prefix.checked_sub(96).and_then(|p| IpNetwork::new(ip, p).ok()),
            });
        }
        let bits = if v4 { 32 } else { 128 };
        let subnet = IpNetwork::new(ip, prefix).map_err(|_| IpamError::MissingSubnet)?;
        if prefix > bits - 2 {
            return Err(IpamError::SubnetTooSmall { subnet });
        }
        let network = subnet.network();
        if network != ip {
            return Err(IpamError::HostBitsSet {
                subnet,
                network: IpNetwork::new(network, prefix).unwrap_or(subnet),
            });
        }
        let net = to_u128(network);
        let host_mask = if bits == 128 && prefix == 0 {
            u128::MAX
        } else {
            (1u128 << (bits - prefix)) - 1
        };
        let last = net | host_mask;

        let family_checked = |what: &'static str, value: Option<IpAddr>| -> Result<Option<IpAddr>, IpamError> {
            match value.map(canonical) {
                Some(addr) if addr.is_ipv4() != v4 => Err(IpamError::FamilyMismatch { what, addr, subnet }),
                other => Ok(other),
            }
        };
        let in_subnet = |addr: IpAddr| {
            let n = to_u128(addr);
            n >= net && n <= last
        };
        // An IPv4 subnet's first and last addresses are its network and broadcast addresses (prefixes
        // of /31 and /32, which have neither, are refused above as host-local refuses them).
        let reserved = |what: &'static str, addr: IpAddr| -> Result<(), IpamError> {
            let n = to_u128(addr);
            let role = match (v4, n == net, n == last) {
                (true, true, _) => "network address",
                (true, _, true) => "broadcast address",
                _ => return Ok(()),
            };
            Err(IpamError::ReservedAddress {
                what,
                addr,
                role,
                subnet,
            })
        };
        let gateway = match family_checked("gateway", spec.gateway)? {
            Some(gateway) if !in_subnet(gateway) => {
                return Err(IpamError::OutsideSubnet {
                    what: "gateway",
                    addr: gateway,
                    subnet,
                });
            }
            Some(gateway) => {
                reserved("gateway", gateway)?;
                gateway
            }
            None => from_u128(net + 1, v4),
        };
        let given_start = family_checked("rangeStart", spec.range_start)?;
        let given_end = family_checked("rangeEnd", spec.range_end)?;
        for (what, addr) in [("rangeStart", given_start), ("rangeEnd", given_end)] {
            if let Some(addr) = addr {
                if !in_subnet(addr) {
                    return Err(IpamError::OutsideSubnet { what, addr, subnet });
                }
                reserved(what, addr)?;
            }
        }
        if let (Some(start), Some(end)) = (given_start, given_end)
            && to_u128(start) > to_u128(end)
        {
            return Err(IpamError::RangeReversed { start, end });
        }
        let range_start = given_start.unwrap_or_else(|| from_u128(net + 1, v4));
        let range_end = given_end.unwrap_or_else(|| from_u128(if v4 { last - 1 } else { last }, v4));
        if to_u128(range_end) < to_u128(range_start) {
            // Only a default end can fall before an explicit start: the start is the last address.
            return Err(IpamError::RangeReversed {
                start: range_start,
                end: range_end,
            });
        }
        Ok(Range {
            subnet,
            range_start,
            range_end,
            gateway,
        })
    }

    /// The range as numbers, inclusive, for sweeps and lookups.
    fn bounds(&self) -> (u128, u128) {
        (to_u128(self.range_start), to_u128(self.range_end))
    }

    /// True for addresses of this range's family inside [rangeStart, rangeEnd].
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        ip.is_ipv4() == self.is_ipv4()
            && self.subnet.contains(ip)
            && to_u128(ip) >= to_u128(self.range_start)
            && to_u128(ip) <= to_u128(self.range_end)
    }

    /// host-local's overlap test: either range contains an end of the other.
    pub fn overlaps(&self, other: &Range) -> bool {
        self.is_ipv4() == other.is_ipv4()
            && (self.contains(other.range_start)
                || self.contains(other.range_end)
                || other.contains(self.range_start)
                || other.contains(self.range_end))
    }

    /// Address family of the range.
    pub fn is_ipv4(&self) -> bool {
        self.subnet.is_ipv4()
    }

    /// Number of addresses between rangeStart and rangeEnd, gateway included.
    pub fn len(&self) -> u128 {
        to_u128(self.range_end) - to_u128(self.range_start) + 1
    }

    /// A range always holds at least one address; present for API symmetry with `len`.
    pub fn is_empty(&self) -> bool {
        false
    }
}

impl fmt::Display for Range {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.range_start, self.range_end)
    }
}

/// A pool of disjoint ranges of one family; one address is allocated per set.
///
/// The ranges stay in the configuration's order, which decides host-local's walk; a second list holds
/// their positions sorted by address, so that finding the range of an address is a binary search even
/// for sets of tens of thousands of ranges.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RangeSet(pub Vec<Range>, Vec<usize>);

/// One interval of a sweep: its family, bounds and the group it belongs to.
#[derive(Clone, Copy, Debug)]
pub struct Span<G> {
    /// IPv4 or not; intervals of different families never overlap.
    pub v4: bool,
    /// First address, numeric.
    pub start: u128,
    /// Last address, numeric, inclusive.
    pub end: u128,
    /// Whose interval this is (a range, a range set, a node).
    pub group: G,
}

impl<G> Span<G> {
    /// The span of `range`, owned by `group`.
    pub fn of(range: &Range, group: G) -> Span<G> {
        let (start, end) = range.bounds();
        Span {
            v4: range.is_ipv4(),
            start,
            end,
            group,
        }
    }
}

/// The first pair of overlapping intervals that belong to different groups, in address order, or
/// `None`. One sort and one pass: O(n log n) where comparing every pair (host-local's way) is O(n²),
/// which took seconds per ADD for a set of 40,000 ranges.
///
/// Sweeping in order of start, an interval overlaps an earlier one exactly when it starts at or before
/// the largest end seen so far; keeping the largest end of the two leading groups finds an overlap with
/// another group even when the interval's own group holds the largest end.
pub fn first_overlap<G: Copy + PartialEq>(mut spans: Vec<Span<G>>) -> Option<(G, G)> {
    spans.sort_unstable_by_key(|s| (s.v4, s.start));
    let mut family = None;
    // (end, group) of the interval reaching furthest, and of the furthest one of any other group.
    let mut best: Option<(u128, G)> = None;
    let mut runner_up: Option<(u128, G)> = None;
    for span in spans {
        if family != Some(span.v4) {
            family = Some(span.v4);
            best = None;
            runner_up = None;
        }
        let rival = match best {
            Some((_, group)) if group == span.group => runner_up,
            other => other,
        };
        if let Some((end, group)) = rival
            && end >= span.start
        {
            return Some((group, span.group));
        }
        match best {
            Some((end, group)) if group == span.group => {
                if span.end > end {
                    best = Some((span.end, span.group));
                }
            }
            Some((end, group)) if span.end > end => {
                runner_up = Some((end, group));
                best = Some((span.end, span.group));
            }
            Some(_) => {
                if runner_up.is_none_or(|(end, _)| span.end > end) {
                    runner_up = Some((span.end, span.group));
                }
            }
            None => best = Some((span.end, span.group)),
        }
    }
    None
}

impl RangeSet {
    /// Canonicalises every range and rejects empty, mixed-family and overlapping sets.
    pub fn new(specs: &[RangeSpec]) -> Result<RangeSet, IpamError> {
        if specs.is_empty() {
            return Err(IpamError::EmptyRangeSet);
        }
        let ranges = specs.iter().map(Range::new).collect::<Result<Vec<_>, _>>()?;
        if ranges.iter().any(|r| r.is_ipv4() != ranges[0].is_ipv4()) {
            return Err(IpamError::MixedFamilies);
        }
        let spans = ranges.iter().enumerate().map(|(i, r)| Span::of(r, i)).collect();
        if let Some((a, b)) = first_overlap(spans) {
            let (a, b) = (a.min(b), a.max(b));
            return Err(IpamError::RangesOverlap {
                first: ranges[a].to_string(),
                second: ranges[b].to_string(),
            });
        }
        let mut sorted: Vec<usize> = (0..ranges.len()).collect();
        sorted.sort_unstable_by_key(|&i| ranges[i].bounds().0);
        Ok(RangeSet(ranges, sorted))
    }

    /// Address family of the set (all ranges share it).
    pub fn is_ipv4(&self) -> bool {
        self.0[0].is_ipv4()
    }

    /// True if any range of the set contains the address.
    pub fn contains(&self, ip: IpAddr) -> bool {
        self.range_for(ip).is_some()
    }

    /// The position of the range holding `ip` in the configuration's order.
    pub fn position_of(&self, ip: IpAddr) -> Option<usize> {
        let ip = canonical(ip);
        if ip.is_ipv4() != self.is_ipv4() {
            return None;
        }
        let n = to_u128(ip);
        let after = self.1.partition_point(|&i| self.0[i].bounds().0 <= n);
        let candidate = *self.1.get(after.checked_sub(1)?)?;
        (self.0[candidate].bounds().1 >= n).then_some(candidate)
    }

    /// The range holding `ip`.
    pub fn range_for(&self, ip: IpAddr) -> Option<&Range> {
        self.position_of(ip).map(|i| &self.0[i])
    }

    /// The spans of this set's ranges, all owned by `group`, for [`first_overlap`].
    pub fn spans<G: Copy + 'static>(&self, group: G) -> impl Iterator<Item = Span<G>> + '_ {
        self.0.iter().map(move |r| Span::of(r, group))
    }

    /// True if any range of one set overlaps any range of the other.
    pub fn overlaps(&self, other: &RangeSet) -> bool {
        first_overlap(self.spans(0u8).chain(other.spans(1u8)).collect()).is_some()
    }

    /// Total number of addresses in the set that the iterator can hand out.
    pub fn capacity(&self) -> u128 {
        self.0.iter().map(|r| r.len() - u128::from(r.contains(r.gateway))).sum()
    }

    /// host-local's round-robin walk: starts after `last_reserved` when the set contains it,
    /// otherwise at the first range's start; skips gateways; visits each address at most once.
    pub fn iter_from(&self, last_reserved: Option<IpAddr>) -> RangeIter<'_> {
        let start = last_reserved
            .map(canonical)
            .and_then(|last| self.position_of(last).map(|idx| (idx, to_u128(last))));
        match start {
            Some((range_idx, cur)) => RangeIter {
                set: self,
                range_idx,
                cur: Some(cur),
                start: None,
            },
            None => RangeIter {
                set: self,
                range_idx: 0,
                cur: None,
                start: Some((0, to_u128(self.0[0].range_start))),
            },
        }
    }
}

impl fmt::Display for RangeSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, r) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{r}")?;
        }
        Ok(())
    }
}

/// Iterator over candidate addresses of a range set, in host-local's order.
#[derive(Clone, Debug)]
pub struct RangeIter<'a> {
    set: &'a RangeSet,
    range_idx: usize,
    cur: Option<u128>,
    /// (range index, address) where the walk began; reaching it again ends the walk.
    start: Option<(usize, u128)>,
}

/// One candidate: the address and the range it belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Candidate<'a> {
    /// The address to try.
    pub ip: IpAddr,
    /// Its range (prefix length and gateway come from here).
    pub range: &'a Range,
}

impl<'a> Iterator for RangeIter<'a> {
    type Item = Candidate<'a>;

    fn next(&mut self) -> Option<Candidate<'a>> {
        loop {
            let ranges = &self.set.0;
            let v4 = self.set.is_ipv4();
            match self.cur {
                None => {
                    let r = &ranges[self.range_idx];
                    let first = to_u128(r.range_start);
                    self.cur = Some(first);
                    if self.start.is_none() {
                        self.start = Some((self.range_idx, first));
                    }
                }
                Some(cur) => {
                    let r = &ranges[self.range_idx];
                    if cur == to_u128(r.range_end) {
                        self.range_idx = (self.range_idx + 1) % ranges.len();
                        self.cur = Some(to_u128(ranges[self.range_idx].range_start));
                    } else {
                        self.cur = Some(cur + 1);
                    }
                    let now = (self.range_idx, self.cur.unwrap_or_default());
                    match self.start {
                        None => self.start = Some(now),
                        Some(start) if start == now => return None,
                        Some(_) => {}
                    }
                }
            }
            let r = &ranges[self.range_idx];
            let ip = from_u128(self.cur.unwrap_or_default(), v4);
            if ip == r.gateway {
                continue;
            }
            return Some(Candidate { ip, range: r });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(subnet: &str) -> RangeSpec {
        RangeSpec {
            subnet: Some(subnet.parse().unwrap()),
            ..Default::default()
        }
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn defaults_follow_host_local() {
        let r = Range::new(&spec("10.1.2.0/24")).unwrap();
        assert_eq!(r.gateway, ip("10.1.2.1"));
        assert_eq!(r.range_start, ip("10.1.2.1"));
        assert_eq!(r.range_end, ip("10.1.2.254"));
        let r6 = Range::new(&spec("fd00::/120")).unwrap();
        assert_eq!(r6.range_end, ip("fd00::ff"));
    }

    #[test]
    fn rejects_what_host_local_rejects() {
        assert!(matches!(
            Range::new(&spec("10.0.0.0/31")),
            Err(IpamError::SubnetTooSmall { .. })
        ));
        assert!(matches!(
            Range::new(&spec("10.0.0.5/24")),
            Err(IpamError::HostBitsSet { .. })
        ));
        let mut s = spec("10.0.0.0/24");
        s.range_start = Some(ip("10.0.1.1"));
        assert!(matches!(
            Range::new(&s),
            Err(IpamError::OutsideSubnet { what: "rangeStart", .. })
        ));
        let set = RangeSet::new(&[spec("10.0.0.0/24"), spec("10.0.0.0/25")]);
        assert!(matches!(set, Err(IpamError::RangesOverlap { .. })));
        assert!(matches!(
            RangeSet::new(&[spec("10.0.0.0/24"), spec("fd00::/64")]),
            Err(IpamError::MixedFamilies)
        ));
    }

    #[test]
    fn refuses_addresses_no_host_can_use() {
        let with = |start: Option<&str>, end: Option<&str>, gw: Option<&str>| RangeSpec {
            subnet: Some("10.0.0.0/24".parse().unwrap()),
            range_start: start.map(ip),
            range_end: end.map(ip),
            gateway: gw.map(ip),
        };
        let role = |spec: RangeSpec| match Range::new(&spec) {
            Err(IpamError::ReservedAddress { what, role, .. }) => format!("{what} {role}"),
            other => format!("{other:?}"),
        };
        assert_eq!(role(with(Some("10.0.0.0"), None, None)), "rangeStart network address");
        assert_eq!(role(with(None, Some("10.0.0.255"), None)), "rangeEnd broadcast address");
        assert_eq!(role(with(None, None, Some("10.0.0.255"))), "gateway broadcast address");
        assert!(matches!(
            Range::new(&with(None, None, Some("10.0.1.1"))),
            Err(IpamError::OutsideSubnet { what: "gateway", .. })
        ));
        assert!(matches!(
            Range::new(&with(Some("10.0.0.9"), Some("10.0.0.8"), None)),
            Err(IpamError::RangeReversed { .. })
        ));
        // IPv6 has no broadcast address: the last one is a host's.
        let mut v6 = spec("fd00::/120");
        v6.range_end = Some(ip("fd00::ff"));
        assert!(Range::new(&v6).is_ok());
        let mapped = Range::new(&spec("::ffff:10.0.0.0/120")).unwrap_err();
        assert!(mapped.to_string().contains("\"10.0.0.0/24\""), "{mapped}");
    }

    #[test]
    fn iteration_skips_gateway_and_wraps() {
        let mut s = spec("10.0.0.0/29");
        s.range_start = Some(ip("10.0.0.1"));
        let set = RangeSet::new(&[s]).unwrap();
        let all: Vec<_> = set.iter_from(None).map(|c| c.ip.to_string()).collect();
        assert_eq!(all, ["10.0.0.2", "10.0.0.3", "10.0.0.4", "10.0.0.5", "10.0.0.6"]);
        let from: Vec<_> = set.iter_from(Some(ip("10.0.0.4"))).map(|c| c.ip.to_string()).collect();
        assert_eq!(from, ["10.0.0.5", "10.0.0.6", "10.0.0.2", "10.0.0.3", "10.0.0.4"]);
        assert_eq!(set.capacity(), 5);
    }

    #[test]
    fn iteration_crosses_ranges_of_a_set() {
        let set = RangeSet::new(&[spec("10.0.0.0/30"), spec("10.0.1.0/30")]).unwrap();
        let all: Vec<_> = set.iter_from(Some(ip("10.0.0.2"))).map(|c| c.ip.to_string()).collect();
        assert_eq!(all, ["10.0.1.2", "10.0.0.2"]);
    }
}
