//! What listening for the LAN's multicast querier found: one shape for IGMP ([`super::igmp`], IPv4) and
//! MLD ([`super::mld`], IPv6), so that the doctor and the probe read both the same way.

use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::sys::socket::{SockaddrStorage, recvfrom};

/// A query that was heard; `A` is the family's address type.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Query<A> {
    /// The querier's address (IGMP: 0.0.0.0 for a switch or bridge that queries without an address;
    /// MLD: its link-local address).
    pub source: A,
    /// The unspecified address for a general query, else the group asked about.
    pub group: A,
    /// The protocol version of the query (IGMP 1 to 3, MLD 1 or 2).
    pub version: u8,
    /// When it arrived, from the start of listening.
    pub after: Duration,
    /// It answers the leave the listener sent for its private group.
    pub solicited: bool,
}

/// What listening found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome<A> {
    /// A query arrived.
    Heard(Query<A>),
    /// Nothing within the wait. `solicited` says whether a leave was sent to provoke one.
    Silent {
        /// Whether the solicitation was sent.
        solicited: bool,
    },
    /// Nothing within the wait, and no leave could be sent: the interface's address stayed in duplicate
    /// address detection all along (MLD only: IPv6 link-local addresses).
    Tentative,
}

/// Receives on `fd` (a raw socket with a short receive timeout) until `wait` has passed since `start`, and
/// returns the first packet `parse` reads as a query: (querier, group, version) from the packet and the
/// sender's address. A query for `solicit_group` answers the listener's leave; `solicited` says whether a
/// leave was sent, for the silent outcome.
pub fn first_query<A: Copy + PartialEq>(
    fd: &OwnedFd,
    start: Instant,
    wait: Duration,
    (solicit_group, solicited): (A, bool),
    mut parse: impl FnMut(&[u8], Option<SockaddrStorage>) -> Option<(A, A, u8)>,
) -> io::Result<Outcome<A>> {
    let mut buf = [0u8; 1500];
    while start.elapsed() < wait {
        match recvfrom::<SockaddrStorage>(fd.as_raw_fd(), &mut buf) {
            Ok((len, from)) => {
                if let Some((source, group, version)) = parse(&buf[..len], from) {
                    return Ok(Outcome::Heard(Query {
                        source,
                        group,
                        version,
                        after: start.elapsed(),
                        solicited: group == solicit_group,
                    }));
                }
            }
            Err(Errno::EAGAIN | Errno::EINTR) => {}
            Err(errno) => return Err(errno.into()),
        }
    }
    Ok(Outcome::Silent { solicited })
}
