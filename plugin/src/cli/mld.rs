//! Hearing the LAN's MLD querier from the node, for `roslan doctor`: IGMP's counterpart for IPv6
//! multicast ([`super::igmp`] says why a querier matters to DDS; IPv6 DDS, Cyclone's
//! `ff02::ffff:239.255.0.1` for one, meets the same snooping switches through MLD).
//!
//! The same two steps as for IGMP: the node joins a private group ([`SOLICIT_GROUP`]) on the master and
//! sends a leave for it while still a member, an MLDv1 Done and the MLDv2 equivalent (a report changing the
//! group to include-nothing). A querier answers a leave at once with a multicast-address-specific query,
//! which reaches the node because it is still a member. A raw ICMPv6 socket bound to the master receives a
//! copy of every MLD query; IPv6 raw sockets deliver the ICMPv6 message without the IP header, and the
//! kernel fills in the ICMPv6 checksum of what is sent.
//!
//! MLD messages must carry a Router Alert (RFC 2711) and be sent from a link-local address with hop
//! limit 1; queriers, the Linux bridge among them, drop them otherwise.

use std::io;
use std::net::{Ipv6Addr, SocketAddrV6, UdpSocket};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::Path;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::sys::socket::{MsgFlags, SockaddrIn6, sendto, setsockopt, sockopt};
use nix::sys::time::{TimeVal, TimeValLike};
use roslan_ipam_core::file::{Links, read_regular};

/// The group the node joins and leaves to make a querier speak: site-local scope (a snooping switch
/// tracks it, as it may not a link-local one), outside anything DDS uses, and fixed so it is
/// recognisable in captures (0x52 0x4c is "RL", as 239.255.82.76 for IGMP).
pub const SOLICIT_GROUP: Ipv6Addr = Ipv6Addr::new(0xff05, 0, 0, 0, 0, 0, 0, 0x524c);

const MLD_QUERY: u8 = 130;
const MLD_V1_DONE: u8 = 132;
const MLD_V2_REPORT: u8 = 143;
const MLD_V2_CHANGE_TO_INCLUDE: u8 = 3;
const ALL_ROUTERS: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 2);
const MLD_V2_ROUTERS: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 0x16);
/// A Hop-by-Hop Options header with Router Alert (type 5, value 0: MLD) and a two-byte PadN; the
/// kernel fills in the next-header byte.
const HOP_BY_HOP_ROUTER_ALERT: [u8; 8] = [0, 0, 5, 2, 0, 0, 1, 0];

/// What listening found.
pub type Outcome = super::querier::Outcome<Ipv6Addr>;

/// Creates the raw ICMPv6 socket. nix offers no IPPROTO_ICMPV6 raw socket constructor, hence libc.
fn raw_icmpv6_socket() -> io::Result<OwnedFd> {
    // SAFETY: socket(2) takes three integers and borrows nothing; it returns a new descriptor or -1.
    let fd = unsafe {
        libc::socket(
            libc::AF_INET6,
            libc::SOCK_RAW | libc::SOCK_CLOEXEC,
            libc::IPPROTO_ICMPV6,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` was just returned by a successful socket(2), so it is open and owned by nothing
    // else; OwnedFd becomes its only owner and closes it exactly once.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Sets an integer IPv6 socket option that nix does not wrap.
fn set_ipv6_int(fd: &OwnedFd, option: libc::c_int, value: libc::c_int) -> io::Result<()> {
    // SAFETY: the value points to a live c_int on this stack frame and exactly its size is passed, so
    // the kernel reads only valid memory; `fd` is an open socket.
    let rc = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::IPPROTO_IPV6,
            option,
            (&raw const value).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// Adds the Router Alert hop-by-hop option to what `fd` sends.
fn set_router_alert(fd: &OwnedFd) -> io::Result<()> {
    // SAFETY: the value points to HOP_BY_HOP_ROUTER_ALERT, an 8-byte constant that outlives the call,
    // and exactly its length is passed; `fd` is an open socket.
    let rc = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::IPPROTO_IPV6,
            libc::IPV6_HOPOPTS,
            HOP_BY_HOP_ROUTER_ALERT.as_ptr().cast(),
            HOP_BY_HOP_ROUTER_ALERT.len() as libc::socklen_t,
        )
    };
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// MLDv1 Done for `group` (the checksum is the kernel's).
pub fn v1_done(group: Ipv6Addr) -> Vec<u8> {
    let mut message = vec![MLD_V1_DONE, 0, 0, 0, 0, 0, 0, 0];
    message.extend_from_slice(&group.octets());
    message
}

/// MLDv2 Report with one CHANGE_TO_INCLUDE_MODE record and no sources: a v2 leave.
pub fn v2_leave(group: Ipv6Addr) -> Vec<u8> {
    let mut message = vec![MLD_V2_REPORT, 0, 0, 0, 0, 0, 0, 1];
    message.extend_from_slice(&[MLD_V2_CHANGE_TO_INCLUDE, 0, 0, 0]);
    message.extend_from_slice(&group.octets());
    message
}

/// Reads an MLD query out of an ICMPv6 message: (group, version).
pub fn parse_query(message: &[u8]) -> Option<(Ipv6Addr, u8)> {
    if message.len() < 24 || message[0] != MLD_QUERY {
        return None;
    }
    let group: [u8; 16] = message[8..24].try_into().ok()?;
    let version = if message.len() >= 28 { 2 } else { 1 };
    Some((Ipv6Addr::from(group), version))
}

/// IFA_F_TENTATIVE in /proc/net/if_inet6: the address is still in duplicate address detection.
const TENTATIVE: u32 = 0x40;
/// IPv6 link-local scope in /proc/net/if_inet6.
const LINK_SCOPE: u32 = 0x20;

/// Whether `master`'s link-local address is still tentative (in this network namespace's
/// /proc/net/if_inet6: address, index, prefix length, scope, flags, name).
fn link_local_tentative(master: &str) -> bool {
    let Ok(data) = read_regular(Path::new("/proc/net/if_inet6"), 1 << 20, Links::Follow) else {
        return false;
    };
    String::from_utf8_lossy(&data).lines().any(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let hex = |i: usize| fields.get(i).and_then(|f| u32::from_str_radix(f, 16).ok());
        fields.get(5) == Some(&master) && hex(3) == Some(LINK_SCOPE) && hex(4).is_some_and(|f| f & TENTATIVE != 0)
    })
}

/// Joins [`SOLICIT_GROUP`] on interface `index` and sends leaves for it; the returned socket holds the
/// membership until it is dropped; `None` when the master's link-local address is still in duplicate
/// address detection at `deadline` (it cannot send until then: EADDRNOTAVAIL).
fn solicit(fd: &OwnedFd, master: &str, index: u32, deadline: Instant) -> io::Result<Option<UdpSocket>> {
    // The kernel sends the join's report only once the link-local address has passed DAD; a leave sent
    // before that report is ignored by the querier.
    while link_local_tentative(master) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    let member = UdpSocket::bind((Ipv6Addr::UNSPECIFIED, 0))?;
    member.join_multicast_v6(&SOLICIT_GROUP, index)?;
    // The join's own report first (see igmp.rs): a leave for a group the querier never saw is ignored.
    std::thread::sleep(Duration::from_millis(100));
    set_ipv6_int(fd, libc::IPV6_MULTICAST_HOPS, 1)?;
    set_ipv6_int(fd, libc::IPV6_MULTICAST_LOOP, 0)?;
    set_router_alert(fd)?;
    for (message, to) in [
        (v1_done(SOLICIT_GROUP), ALL_ROUTERS),
        (v2_leave(SOLICIT_GROUP), MLD_V2_ROUTERS),
    ] {
        let address = SockaddrIn6::from(SocketAddrV6::new(to, 0, 0, index));
        loop {
            match sendto(fd.as_raw_fd(), &message, &address, MsgFlags::empty()) {
                Ok(_) => break,
                Err(Errno::EADDRNOTAVAIL) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(200));
                }
                Err(Errno::EADDRNOTAVAIL) => return Ok(None),
                Err(errno) => return Err(errno.into()),
            }
        }
    }
    Ok(Some(member))
}

/// Listens on `master` (interface `index`) for up to `wait` and returns the first MLD query heard;
/// with `solicit_first` a query is solicited first.
pub fn listen(master: &str, index: u32, solicit_first: bool, wait: Duration) -> io::Result<Outcome> {
    let fd = raw_icmpv6_socket()?;
    setsockopt(&fd, sockopt::BindToDevice, &std::ffi::OsString::from(master)).map_err(io::Error::from)?;
    setsockopt(&fd, sockopt::ReceiveTimeout, &TimeVal::milliseconds(100)).map_err(io::Error::from)?;
    let start = Instant::now();
    let _membership = if solicit_first {
        match solicit(&fd, master, index, start + wait)? {
            Some(member) => Some(member),
            None => return Ok(Outcome::Tentative),
        }
    } else {
        None
    };
    super::querier::first_query(&fd, start, wait, (SOLICIT_GROUP, solicit_first), |message, from| {
        let (group, version) = parse_query(message)?;
        let source = from.and_then(|a| a.as_sockaddr_in6().map(|a| a.ip()));
        Some((source.unwrap_or(Ipv6Addr::UNSPECIFIED), group, version))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_and_queries() {
        let done = v1_done(SOLICIT_GROUP);
        assert_eq!(done.len(), 24);
        assert_eq!(done[0], 132);
        assert_eq!(&done[8..], &SOLICIT_GROUP.octets());
        let leave = v2_leave(SOLICIT_GROUP);
        assert_eq!(leave.len(), 28);
        assert_eq!((leave[0], leave[7], leave[8]), (143, 1, 3));
        let mut v1 = vec![130, 0, 0, 0, 0, 100, 0, 0];
        v1.extend_from_slice(&SOLICIT_GROUP.octets());
        assert_eq!(parse_query(&v1), Some((SOLICIT_GROUP, 1)));
        let mut v2 = vec![130, 0, 0, 0, 0, 100, 0, 0];
        v2.extend_from_slice(&Ipv6Addr::UNSPECIFIED.octets());
        v2.extend_from_slice(&[2, 125, 0, 0]);
        assert_eq!(parse_query(&v2), Some((Ipv6Addr::UNSPECIFIED, 2)));
        assert_eq!(parse_query(&leave), None);
        assert_eq!(parse_query(&v1[..20]), None);
    }
}
