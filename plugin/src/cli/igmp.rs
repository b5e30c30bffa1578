//! Hearing the LAN's IGMP querier from the node, for `roslan doctor`.
//!
//! Why it matters: a switch with IGMP snooping forwards a multicast group only to ports that reported
//! membership, and forgets a port after the group membership interval (2 x 125 s + 10 s = 260 s by
//! default) unless a querier keeps asking. Linux hosts report only when asked (after their initial
//! join), so without a querier DDS discovery works for about four minutes and then new peers stop
//! finding anyone. Whether snooping is on cannot be seen from a host; whether a querier exists can.
//!
//! Listening alone is not enough in a few seconds: queriers send general queries every 125 s by
//! default. So unless told to stay passive, the node also *solicits* one: it joins a private group
//! ([`SOLICIT_GROUP`]) on the master, then sends a leave for it (IGMPv2 Leave and the IGMPv3
//! equivalent, a change to include-nothing). A querier answers a leave at once with a group-specific
//! query, to learn whether anyone else still wants the group; the node is still a member, so that query
//! is delivered here, and the kernel answers it with a report, keeping the membership consistent until
//! the socket closes and the kernel leaves for real. Nobody else uses the group, so nobody else is
//! disturbed; `--passive` turns this off.
//!
//! A raw IGMP socket receives a copy of every IGMP packet the node accepts. General queries go to
//! 224.0.0.1, which every host joins; group-specific ones to 224.0.0.1 or the group itself, which the
//! node joined. The socket is bound to the master (SO_BINDTODEVICE), so only the LAN is heard.

use std::ffi::OsString;
use std::io;
use std::net::{Ipv4Addr, SocketAddrV4, UdpSocket};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::{Duration, Instant};

use nix::sys::socket::{MsgFlags, SockaddrIn, sendto, setsockopt, sockopt};
use nix::sys::time::{TimeVal, TimeValLike};

/// The group the node joins and leaves to make a querier speak: organisation-local scope, outside
/// what DDS uses (239.255.0.1 and the user multicast ports), and fixed so it is recognisable in
/// captures (82.76 is "RL").
pub const SOLICIT_GROUP: Ipv4Addr = Ipv4Addr::new(239, 255, 82, 76);

const IGMP_QUERY: u8 = 0x11;
const IGMP_V2_LEAVE: u8 = 0x17;
const IGMP_V3_REPORT: u8 = 0x22;
const IGMP_V3_CHANGE_TO_INCLUDE: u8 = 3;
const ALL_ROUTERS: Ipv4Addr = Ipv4Addr::new(224, 0, 0, 2);
const IGMP_V3_ROUTERS: Ipv4Addr = Ipv4Addr::new(224, 0, 0, 22);
/// IP Router Alert (RFC 2113): IGMPv3 routers may ignore reports without it.
const ROUTER_ALERT: [u8; 4] = [0x94, 0x04, 0x00, 0x00];

/// What listening found.
pub type Outcome = super::querier::Outcome<Ipv4Addr>;

/// Creates the raw IGMP socket. nix offers no IPPROTO_IGMP protocol constant, hence libc.
fn raw_igmp_socket() -> io::Result<OwnedFd> {
    // SAFETY: socket(2) takes three integers and borrows nothing; it returns a new descriptor or -1.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_RAW | libc::SOCK_CLOEXEC, libc::IPPROTO_IGMP) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` was just returned by a successful socket(2), so it is open and owned by nothing
    // else; OwnedFd becomes its only owner and closes it exactly once.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Adds the Router Alert option to what `fd` sends. Best effort: queriers that do not insist on it
/// (most, and the Linux bridge) answer anyway.
fn set_router_alert(fd: &OwnedFd) {
    // SAFETY: the value points to ROUTER_ALERT, a 4-byte constant that outlives the call, and exactly
    // its length is passed, so the kernel reads only valid memory; `fd` is an open socket.
    let _ = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::IPPROTO_IP,
            libc::IP_OPTIONS,
            ROUTER_ALERT.as_ptr().cast(),
            ROUTER_ALERT.len() as libc::socklen_t,
        )
    };
}

/// The Internet checksum (RFC 1071), which IGMP messages carry and raw sockets do not fill in.
fn checksum(data: &[u8]) -> u16 {
    let mut sum: u32 = data
        .chunks(2)
        .map(|pair| u32::from(u16::from_be_bytes([pair[0], pair.get(1).copied().unwrap_or(0)])))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

fn with_checksum(mut message: Vec<u8>) -> Vec<u8> {
    let sum = checksum(&message);
    message[2..4].copy_from_slice(&sum.to_be_bytes());
    message
}

/// IGMPv2 Leave Group for `group`.
pub fn v2_leave(group: Ipv4Addr) -> Vec<u8> {
    let mut message = vec![IGMP_V2_LEAVE, 0, 0, 0];
    message.extend_from_slice(&group.octets());
    with_checksum(message)
}

/// IGMPv3 Membership Report with one CHANGE_TO_INCLUDE_MODE record and no sources: a v3 leave.
pub fn v3_leave(group: Ipv4Addr) -> Vec<u8> {
    let mut message = vec![IGMP_V3_REPORT, 0, 0, 0, 0, 0, 0, 1];
    message.extend_from_slice(&[IGMP_V3_CHANGE_TO_INCLUDE, 0, 0, 0]);
    message.extend_from_slice(&group.octets());
    with_checksum(message)
}

/// Reads a Membership Query out of a raw IPv4 packet (IP header included, as raw sockets deliver).
pub fn parse_query(packet: &[u8]) -> Option<(Ipv4Addr, Ipv4Addr, u8)> {
    if packet.len() < 20 || packet[0] >> 4 != 4 || packet[9] != libc::IPPROTO_IGMP as u8 {
        return None;
    }
    let header = usize::from(packet[0] & 0x0f) * 4;
    let total = usize::from(u16::from_be_bytes([packet[2], packet[3]])).min(packet.len());
    let igmp = packet.get(header..total)?;
    if igmp.len() < 8 || igmp[0] != IGMP_QUERY {
        return None;
    }
    let version = if igmp.len() >= 12 {
        3
    } else if igmp[1] == 0 {
        1
    } else {
        2
    };
    let source = Ipv4Addr::new(packet[12], packet[13], packet[14], packet[15]);
    let group = Ipv4Addr::new(igmp[4], igmp[5], igmp[6], igmp[7]);
    Some((source, group, version))
}

/// Joins [`SOLICIT_GROUP`] on the master and sends leaves for it; the returned socket holds the
/// membership until it is dropped.
fn solicit(fd: &OwnedFd, master_address: Ipv4Addr) -> io::Result<UdpSocket> {
    let member = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0))?;
    member.join_multicast_v4(&SOLICIT_GROUP, &master_address)?;
    // Let the join's own report (sent within a jiffy) reach the querier first: a leave for a group it
    // never saw is ignored. A switch CPU may take a few milliseconds; 100 ms is ample.
    std::thread::sleep(Duration::from_millis(100));
    let _ = setsockopt(fd, sockopt::IpMulticastLoop, &false);
    set_router_alert(fd);
    for (message, to) in [
        (v2_leave(SOLICIT_GROUP), ALL_ROUTERS),
        (v3_leave(SOLICIT_GROUP), IGMP_V3_ROUTERS),
    ] {
        sendto(
            fd.as_raw_fd(),
            &message,
            &SockaddrIn::from(SocketAddrV4::new(to, 0)),
            MsgFlags::empty(),
        )
        .map_err(io::Error::from)?;
    }
    Ok(member)
}

/// Listens on `master` for up to `wait` and returns the first query heard. With `master_address`
/// (the master's IPv4 address) a query is solicited first; without one only listening is possible.
pub fn listen(master: &str, master_address: Option<Ipv4Addr>, wait: Duration) -> io::Result<Outcome> {
    let fd = raw_igmp_socket()?;
    setsockopt(&fd, sockopt::BindToDevice, &OsString::from(master)).map_err(io::Error::from)?;
    setsockopt(&fd, sockopt::ReceiveTimeout, &TimeVal::milliseconds(100)).map_err(io::Error::from)?;
    let start = Instant::now();
    let _membership = match master_address {
        Some(address) => Some(solicit(&fd, address)?),
        None => None,
    };
    let solicit = (SOLICIT_GROUP, master_address.is_some());
    super::querier::first_query(&fd, start, wait, solicit, |packet, _| parse_query(packet))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_carry_a_valid_checksum() {
        for message in [v2_leave(SOLICIT_GROUP), v3_leave(SOLICIT_GROUP)] {
            // A correct checksum makes the sum over the whole message 0xffff, i.e. checksum() == 0.
            assert_eq!(checksum(&message), 0, "{message:x?}");
        }
        assert_eq!(v2_leave(SOLICIT_GROUP).len(), 8);
        assert_eq!(v3_leave(SOLICIT_GROUP).len(), 16);
    }

    fn packet(igmp: &[u8], source: [u8; 4]) -> Vec<u8> {
        let mut p = vec![0x45, 0, 0, 0, 0, 0, 0, 0, 1, 2, 0, 0];
        p.extend_from_slice(&source);
        p.extend_from_slice(&[224, 0, 0, 1]);
        p.extend_from_slice(igmp);
        let total = p.len() as u16;
        p[2..4].copy_from_slice(&total.to_be_bytes());
        p
    }

    #[test]
    fn queries_are_recognised_by_version() {
        let v2 = packet(&[0x11, 100, 0, 0, 0, 0, 0, 0], [10, 0, 0, 1]);
        assert_eq!(
            parse_query(&v2),
            Some((Ipv4Addr::new(10, 0, 0, 1), Ipv4Addr::UNSPECIFIED, 2))
        );
        let v1 = packet(&[0x11, 0, 0, 0, 0, 0, 0, 0], [10, 0, 0, 1]);
        assert_eq!(parse_query(&v1).map(|q| q.2), Some(1));
        let v3 = packet(&[0x11, 100, 0, 0, 239, 255, 82, 76, 2, 125, 0, 0], [0, 0, 0, 0]);
        assert_eq!(parse_query(&v3), Some((Ipv4Addr::UNSPECIFIED, SOLICIT_GROUP, 3)));
        let report = packet(&[0x16, 0, 0, 0, 239, 255, 0, 1], [10, 0, 0, 2]);
        assert_eq!(parse_query(&report), None);
        assert_eq!(parse_query(&v2[..20]), None);
    }
}
