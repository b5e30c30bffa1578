//! ARP on the pod's link, from a packet socket opened inside the pod: RFC 5227 address-conflict checks
//! before an address is used (the `ipam.probe` setting), and announcements (gratuitous ARP) after.
//! (Not to be confused with `roslan probe`, the multicast diagnostic.)
//!
//! The functions must run inside the pod's namespace ([`crate::netns::Netns::run`]): an AF_PACKET
//! socket binds to an interface index of the namespace it was created in.

use std::io;
use std::net::{IpAddr, Ipv4Addr};
use std::os::fd::{AsFd, OwnedFd};
use std::time::{Duration, Instant};

use nix::sys::socket::{
    AddressFamily, LinkAddr, MsgFlags, SockFlag, SockProtocol, SockType, SockaddrLike, bind, recv, send, setsockopt,
    socket, sockopt,
};
use nix::sys::time::TimeVal;

use crate::mac::Mac;

const ETH_P_ARP: u16 = 0x0806;
const ARP_REQUEST: u16 = 1;

fn packet_socket(ifindex: u32) -> io::Result<OwnedFd> {
    let fd = socket(
        AddressFamily::Packet,
        SockType::Raw,
        SockFlag::SOCK_CLOEXEC,
        SockProtocol::EthAll,
    )?;
    let sll = libc::sockaddr_ll {
        sll_family: libc::AF_PACKET as u16,
        sll_protocol: libc::ETH_P_ALL.to_be() as u16,
        sll_ifindex: ifindex as i32,
        sll_hatype: 0,
        sll_pkttype: 0,
        sll_halen: 0,
        sll_addr: [0; 8],
    };
    // SAFETY: `sll` is a fully initialised sockaddr_ll that lives across the call, and the length
    // passed is exactly its size, which is what from_raw checks and reads.
    let addr = unsafe {
        LinkAddr::from_raw(
            std::ptr::from_ref(&sll).cast::<libc::sockaddr>(),
            Some(std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t),
        )
    }
    .ok_or_else(|| io::Error::other("cannot build a link-layer address"))?;
    bind(std::os::fd::AsRawFd::as_raw_fd(&fd), &addr)?;
    Ok(fd)
}

/// An ARP request frame: broadcast, from `mac`, asking for `target` on behalf of `sender`.
fn request_frame(mac: Mac, sender: Ipv4Addr, target: Ipv4Addr) -> Vec<u8> {
    let mut frame = Vec::with_capacity(60);
    frame.extend_from_slice(&[0xff; 6]);
    frame.extend_from_slice(&mac.0);
    frame.extend_from_slice(&ETH_P_ARP.to_be_bytes());
    frame.extend_from_slice(&1u16.to_be_bytes()); // Ethernet
    frame.extend_from_slice(&0x0800u16.to_be_bytes()); // IPv4
    frame.extend_from_slice(&[6, 4]);
    frame.extend_from_slice(&ARP_REQUEST.to_be_bytes());
    frame.extend_from_slice(&mac.0);
    frame.extend_from_slice(&sender.octets());
    frame.extend_from_slice(&[0; 6]);
    frame.extend_from_slice(&target.octets());
    frame.resize(60, 0);
    frame
}

/// Sender hardware and protocol address and target protocol address of an ARP frame, if it is one.
fn parse(frame: &[u8]) -> Option<(Mac, Ipv4Addr, Ipv4Addr)> {
    if frame.len() < 42 || frame[12..14] != ETH_P_ARP.to_be_bytes() || frame[16..18] != [0x08, 0x00] {
        return None;
    }
    let sha = Mac::from_slice(&frame[22..28])?;
    let spa = Ipv4Addr::new(frame[28], frame[29], frame[30], frame[31]);
    let tpa = Ipv4Addr::new(frame[38], frame[39], frame[40], frame[41]);
    Some((sha, spa, tpa))
}

/// Probes `candidate` from the link `ifindex` (which must be up and must not hold the address): two
/// probes within `timeout`, as RFC 5227 allows for a faster, bounded wait. Returns the MAC of a host
/// that claims the address (it answered, or probed for it at the same time), or `None`.
pub fn address_in_use(ifindex: u32, mac: Mac, candidate: Ipv4Addr, timeout: Duration) -> io::Result<Option<Mac>> {
    let fd = packet_socket(ifindex)?;
    let frame = request_frame(mac, Ipv4Addr::UNSPECIFIED, candidate);
    let start = Instant::now();
    let mut sent = 0;
    let mut buf = [0u8; 1600];
    loop {
        let elapsed = start.elapsed();
        if elapsed >= timeout {
            return Ok(None);
        }
        if sent < 2 && elapsed >= timeout / 2 * sent {
            send(std::os::fd::AsRawFd::as_raw_fd(&fd), &frame, MsgFlags::empty())?;
            sent += 1;
        }
        let next_event = if sent < 2 { timeout / 2 } else { timeout };
        let wait = next_event.saturating_sub(start.elapsed()).max(Duration::from_millis(1));
        setsockopt(
            &fd.as_fd(),
            sockopt::ReceiveTimeout,
            &TimeVal::new(wait.as_secs() as _, wait.subsec_micros() as _),
        )?;
        match recv(std::os::fd::AsRawFd::as_raw_fd(&fd), &mut buf, MsgFlags::empty()) {
            Ok(n) => {
                if let Some((sha, spa, tpa)) = parse(&buf[..n])
                    && sha != mac
                    && (spa == candidate || (spa.is_unspecified() && tpa == candidate))
                {
                    return Ok(Some(sha));
                }
            }
            Err(nix::errno::Errno::EAGAIN | nix::errno::Errno::EINTR) => {}
            Err(err) => return Err(err.into()),
        }
    }
}

/// Announces `addresses` (RFC 5227 announcements: sender and target are the address itself), so that
/// neighbours update stale ARP entries at once.
pub fn announce(ifindex: u32, mac: Mac, addresses: &[IpAddr]) -> io::Result<()> {
    let fd = packet_socket(ifindex)?;
    for address in addresses {
        if let IpAddr::V4(v4) = address {
            send(
                std::os::fd::AsRawFd::as_raw_fd(&fd),
                &request_frame(mac, *v4, *v4),
                MsgFlags::empty(),
            )?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip() {
        let mac = Mac([2, 0, 0, 0, 0, 1]);
        let frame = request_frame(mac, Ipv4Addr::UNSPECIFIED, Ipv4Addr::new(10, 0, 0, 5));
        assert_eq!(frame.len(), 60);
        assert_eq!(
            parse(&frame),
            Some((mac, Ipv4Addr::UNSPECIFIED, Ipv4Addr::new(10, 0, 0, 5)))
        );
        assert_eq!(parse(&frame[..30]), None);
    }
}
