use std::io;
use std::net::IpAddr;
use std::path::PathBuf;

use ipnetwork::IpNetwork;

/// Everything that can go wrong in configuration checks, allocation and the on-disk store.
///
/// Messages keep host-local's key phrases (so logs and existing runbooks still match) and add what to do.
/// The mapping to CNI error codes lives in the plugin crate, next to every other mapping.
#[derive(Debug, thiserror::Error)]
pub enum IpamError {
    /// A range without `subnet`.
    #[error("a range needs a \"subnet\" such as \"192.168.1.0/24\"")]
    MissingSubnet,
    /// /31, /32, /127, /128: nothing left to hand out.
    #[error("Network {subnet} too small to allocate from; use a prefix of at most /30 (IPv4) or /126 (IPv6)")]
    SubnetTooSmall {
        /// The offending subnet.
        subnet: IpNetwork,
    },
    /// The subnet was given with host bits set, e.g. 10.0.0.5/24.
    #[error("Network has host bits set. For a subnet mask of length {} the network address is {}; write \"subnet\": \"{network}\"", subnet.prefix(), network.ip())]
    HostBitsSet {
        /// The subnet as written.
        subnet: IpNetwork,
        /// What it should have been.
        network: IpNetwork,
    },
    /// An IPv4-mapped IPv6 subnet (`::ffff:10.0.0.0/120`): host-local would treat its addresses as IPv4
    /// under a 128-bit mask; the IPv4 form says what is meant.
    #[error("{given} is an IPv4-mapped IPv6 subnet; {}", match ipv4 {
        Some(v4) => format!("write it as the IPv4 subnet \"{v4}\""),
        None => "write the IPv4 subnet it stands for, such as \"192.168.1.0/24\"".to_string(),
    })]
    MappedSubnet {
        /// The subnet as written.
        given: IpNetwork,
        /// The same subnet in IPv4 form, when the prefix allows one.
        ipv4: Option<IpNetwork>,
    },
    /// rangeStart, rangeEnd or gateway outside the subnet.
    #[error("{what} {addr} not in network {subnet}; it must lie inside the subnet")]
    OutsideSubnet {
        /// Which key.
        what: &'static str,
        /// Its value.
        addr: IpAddr,
        /// The range's subnet.
        subnet: IpNetwork,
    },
    /// rangeStart after rangeEnd.
    #[error("rangeStart {start} is after rangeEnd {end}; swap them, or move rangeEnd up")]
    RangeReversed {
        /// rangeStart (given, or its default).
        start: IpAddr,
        /// rangeEnd (given, or its default).
        end: IpAddr,
    },
    /// An IPv4 subnet's network or broadcast address as rangeStart, rangeEnd or gateway: host-local hands
    /// them out, and no host can use them.
    #[error("{what} {addr} is the {role} of {subnet}; no host can use it: {}", if *role == "network address" {
        "start the range one address higher"
    } else {
        "end the range one address lower"
    })]
    ReservedAddress {
        /// Which key.
        what: &'static str,
        /// Its value.
        addr: IpAddr,
        /// "network address" or "broadcast address".
        role: &'static str,
        /// The range's subnet.
        subnet: IpNetwork,
    },
    /// An IPv6 gateway in an IPv4 range or the reverse.
    #[error("{what} {addr} is not of the same address family as subnet {subnet}")]
    FamilyMismatch {
        /// Which key.
        what: &'static str,
        /// Its value.
        addr: IpAddr,
        /// The range's subnet.
        subnet: IpNetwork,
    },
    /// `[]` as a range set.
    #[error("empty range set; each entry of \"ranges\" must list at least one range")]
    EmptyRangeSet,
    /// IPv4 and IPv6 ranges in one set.
    #[error("mixed address families in one range set; put IPv4 and IPv6 ranges in separate range sets")]
    MixedFamilies,
    /// Two ranges of one set overlap.
    #[error("subnets {first} and {second} overlap; ranges of one set must be disjoint")]
    RangesOverlap {
        /// First range (start-end).
        first: String,
        /// Second range (start-end).
        second: String,
    },
    /// Two range sets overlap.
    #[error("range set {first} overlaps with {second}; range sets must be disjoint")]
    RangeSetsOverlap {
        /// Index of the first set.
        first: usize,
        /// Index of the second set.
        second: usize,
    },
    /// No ranges at all.
    #[error(
        "no IP ranges specified; set \"ipam\": {{\"ranges\": [[{{\"subnet\": \"192.168.1.0/24\"}}]]}} or the legacy \"subnet\""
    )]
    NoRanges,
    /// Nothing free in a set.
    #[error(
        "no IP addresses available in range set {index}: {set}; widen the range, or free addresses held by deleted pods (CNI GC, or `roslan doctor`)"
    )]
    Exhausted {
        /// Index of the set.
        index: usize,
        /// The set, as start-end pairs.
        set: String,
    },
    /// A requested address is the gateway.
    #[error("requested ip {ip} is subnet's gateway; request another address")]
    RequestedIsGateway {
        /// The address.
        ip: IpAddr,
    },
    /// A requested address is already reserved.
    #[error("requested IP address {ip} is not available in range set {set}: it is already reserved by {holder}")]
    RequestedUnavailable {
        /// The address.
        ip: IpAddr,
        /// The set it belongs to.
        set: String,
        /// Who holds it (container ID and interface), as far as the store knows.
        holder: String,
    },
    /// A requested address that is its subnet's network or broadcast address.
    #[error("requested IP address {ip} is the {role} of {subnet}; request a host address")]
    RequestedReserved {
        /// The address.
        ip: IpAddr,
        /// "network address" or "broadcast address".
        role: &'static str,
        /// The subnet.
        subnet: IpNetwork,
    },
    /// Two requested addresses in one range set, which yields one address per attachment.
    #[error(
        "requested IP addresses {first} and {second} are both in range set {set}; an attachment gets one address per range set, so request one of them, or add a range set for the other"
    )]
    RequestedSameSet {
        /// The first requested address of the set.
        first: IpAddr,
        /// The one that cannot be placed.
        second: IpAddr,
        /// Index of the set.
        set: usize,
    },
    /// Requested addresses outside every range set.
    #[error(
        "failed to allocate all requested IPs: {ips}; each requested address must lie in one of the configured ranges"
    )]
    RequestedOutsideRanges {
        /// The unplaced addresses, space separated.
        ips: String,
    },
    /// The same attachment already holds an address of this set.
    #[error("{ip} has been allocated to {id}, duplicate allocation is not allowed; DEL the attachment first")]
    Duplicate {
        /// The address it holds.
        ip: IpAddr,
        /// The container ID.
        id: String,
    },
    /// A network name that cannot be a directory name.
    #[error("network name {0:?} cannot name a directory under dataDir")]
    BadNetworkName(String),
    /// A symlink where the store expects a directory or a file.
    #[error(
        "{0} is a symbolic link; roslan follows no links in its data directory (ipam.dataDir) so that nothing outside it is touched: set ipam.dataDir to the real directory, or replace the link with a directory"
    )]
    Symlink(PathBuf),
    /// A path that must be a regular file is something else (a FIFO, a socket, a device, a directory).
    #[error("{} is {kind}, not a regular file", path.display())]
    NotRegularFile {
        /// The path.
        path: PathBuf,
        /// What it is, in words ("a FIFO (named pipe)").
        kind: &'static str,
    },
    /// A file larger than anything of its purpose can be.
    #[error("{} is larger than {limit} bytes", path.display())]
    FileTooLarge {
        /// The path.
        path: PathBuf,
        /// The bound.
        limit: u64,
    },
    /// The node agent's blocks or status file does not say what it should.
    #[error("{}{}: {problem}; the node agent (roslan-install) rewrites it: check its log", path.display(), if *line > 0 { format!(" line {line}") } else { String::new() })]
    BlocksFile {
        /// The file.
        path: PathBuf,
        /// The line (from 1), or 0 for the whole file.
        line: usize,
        /// What is wrong.
        problem: String,
    },
    /// A file system operation failed.
    #[error("{op} {}: {source}", path.display())]
    Io {
        /// What was attempted.
        op: &'static str,
        /// On which path.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: io::Error,
    },
}

impl IpamError {
    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>) -> impl FnOnce(io::Error) -> IpamError {
        let path = path.into();
        move |source| IpamError::Io { op, path, source }
    }
}
