//! The one small facade over rtnetlink: every kernel request roslan makes goes through here.
//!
//! Requests run on a current-thread tokio runtime. That is not a style choice: a netlink socket lives
//! in the namespace of the thread that created it, and a multi-thread runtime could resume a task on a
//! worker in another namespace. Sockets for the pod are created while the thread is inside the pod
//! ([`Netns::run`]) and then driven from the main thread.
//!
//! Errors keep the errno (callers branch on EEXIST/ENODEV) and the kernel's extended-ack text, which
//! says things like "Device for nexthop is not up" and goes into the CNI error's `details`.

use std::fmt;
use std::net::IpAddr;
use std::os::fd::{AsFd, BorrowedFd, RawFd};

use futures_util::StreamExt;
use ipnetwork::IpNetwork;
use rtnetlink::Handle;
use rtnetlink::packet_core::{
    NLM_F_ACK, NLM_F_APPEND, NLM_F_CREATE, NLM_F_DUMP, NLM_F_EXCL, NLM_F_REQUEST, NetlinkBuffer, NetlinkMessage,
    NetlinkPayload,
};
use rtnetlink::packet_route::address::{AddressAttribute, AddressFlags, AddressHeaderFlags, AddressMessage};
use rtnetlink::packet_route::link::{
    InfoData, InfoKind, InfoMacVlan, LinkAttribute, LinkFlags, LinkHeader, LinkInfo, LinkMessage, MacVlanMode,
};
use rtnetlink::packet_route::route::{
    RouteAddress, RouteAttribute, RouteHeader, RouteMessage, RouteProtocol, RouteScope, RouteType,
};
use rtnetlink::packet_route::{AddressFamily, RouteNetlinkMessage};
use rtnetlink::sys::{AsyncSocket, Socket, SocketAddr};
use rtnetlink::{LinkMacVlan, LinkUnspec};

use crate::mac::Mac;
use crate::netns::{Netns, NetnsError};

/// The macvlan mode. Owned here, where links are made and read; the configuration parses into it.
/// Bridge is the only one that lets sibling pods hear each other's multicast.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum MacvlanMode {
    /// Siblings on one master talk directly (multicast included).
    #[default]
    Bridge,
    /// Siblings isolated from each other.
    Private,
    /// Everything goes to the switch (needs hairpin for siblings).
    Vepa,
    /// One child takes over the master.
    Passthru,
}

impl MacvlanMode {
    /// The configuration spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            MacvlanMode::Bridge => "bridge",
            MacvlanMode::Private => "private",
            MacvlanMode::Vepa => "vepa",
            MacvlanMode::Passthru => "passthru",
        }
    }
}

/// Why a request did not succeed: the kernel refused it, or it never got a kernel answer.
#[derive(Debug)]
pub enum NetlinkError {
    /// The kernel answered with an error.
    Kernel {
        /// errno (positive).
        errno: i32,
        /// The kernel's extended-ack message, if any.
        ext_ack: Option<String>,
    },
    /// The runtime or the socket could not be set up, or the socket failed.
    Socket(String),
    /// The conversation broke: no answer, or not the one a request expects.
    Protocol(String),
    /// The namespace to connect in could not be entered.
    Namespace(NetnsError),
}

impl NetlinkError {
    /// True if the kernel answered with `errno`.
    pub fn is(&self, errno: nix::errno::Errno) -> bool {
        self.errno() == Some(errno as i32)
    }

    /// The kernel's errno, when the kernel answered.
    pub fn errno(&self) -> Option<i32> {
        match self {
            NetlinkError::Kernel { errno, .. } => Some(*errno),
            _ => None,
        }
    }

    /// The kernel's extended-ack text, when it gave one.
    pub fn ext_ack(&self) -> Option<&str> {
        match self {
            NetlinkError::Kernel { ext_ack, .. } => ext_ack.as_deref(),
            _ => None,
        }
    }

    /// A kernel refusal with `errno` and no message.
    pub fn from_errno(errno: nix::errno::Errno) -> NetlinkError {
        NetlinkError::Kernel {
            errno: errno as i32,
            ext_ack: None,
        }
    }
}

impl fmt::Display for NetlinkError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NetlinkError::Kernel { errno, ext_ack } => {
                write!(f, "{}", nix::errno::Errno::from_raw(*errno).desc())?;
                if let Some(ack) = ext_ack {
                    write!(f, " ({ack})")?;
                }
                Ok(())
            }
            NetlinkError::Socket(text) | NetlinkError::Protocol(text) => f.write_str(text),
            NetlinkError::Namespace(err) => write!(f, "{err}"),
        }
    }
}

impl std::error::Error for NetlinkError {}

impl From<NetnsError> for NetlinkError {
    fn from(err: NetnsError) -> NetlinkError {
        NetlinkError::Namespace(err)
    }
}

/// Decodes an NLMSG_ERROR: the errno, and NLMSGERR_ATTR_MSG from the extended-ack TLVs that follow the
/// echoed request header (the socket asks for capped acks, so only the 16-byte header is echoed).
fn decode_error(err: rtnetlink::packet_core::ErrorMessage) -> NetlinkError {
    const NLMSGHDR_LEN: usize = 16;
    const NLMSGERR_ATTR_MSG: u16 = 1;
    let mut ext_ack = None;
    let mut tlvs = err.header.get(NLMSGHDR_LEN..).unwrap_or_default();
    while tlvs.len() >= 4 {
        let len = u16::from_ne_bytes([tlvs[0], tlvs[1]]) as usize;
        let kind = u16::from_ne_bytes([tlvs[2], tlvs[3]]) & 0x3fff;
        if len < 4 || len > tlvs.len() {
            break;
        }
        if kind == NLMSGERR_ATTR_MSG {
            let text = String::from_utf8_lossy(&tlvs[4..len])
                .trim_end_matches('\0')
                .to_string();
            ext_ack = Some(text).filter(|t| !t.is_empty());
        }
        tlvs = &tlvs[((len + 3) & !3).min(tlvs.len())..];
    }
    NetlinkError::Kernel {
        errno: err.raw_code().abs(),
        ext_ack,
    }
}

/// The runtime every connection of one plugin invocation shares.
pub struct Runtime {
    rt: tokio::runtime::Runtime,
}

/// A route-netlink connection bound to one namespace.
pub struct Netlink<'r> {
    rt: &'r tokio::runtime::Runtime,
    handle: Handle,
}

/// What roslan needs to know about a link.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Link {
    /// ifindex.
    pub index: u32,
    /// Name.
    pub name: String,
    /// Hardware address.
    pub mac: Option<Mac>,
    /// MTU.
    pub mtu: u32,
    /// IFF_UP.
    pub up: bool,
    /// IFF_LOWER_UP (carrier).
    pub lower_up: bool,
    /// IFF_MULTICAST.
    pub multicast: bool,
    /// IFF_LOOPBACK.
    pub loopback: bool,
    /// `Some(mode)` for macvlan links.
    pub macvlan_mode: Option<MacvlanMode>,
    /// IFLA_IFALIAS.
    pub alias: Option<String>,
    /// IFLA_LINK: the parent's index (in the parent's namespace).
    pub parent: Option<u32>,
}

/// An address on a link.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Address {
    /// ifindex.
    pub index: u32,
    /// Address and prefix.
    pub net: IpNetwork,
    /// IFA_F_TENTATIVE: duplicate address detection still running.
    pub tentative: bool,
    /// IFA_F_DADFAILED: another host holds it.
    pub dad_failed: bool,
}

/// A route from a dump.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RouteEntry {
    /// Destination.
    pub dst: IpNetwork,
    /// Gateway.
    pub gateway: Option<IpAddr>,
    /// Output interface.
    pub oif: Option<u32>,
    /// Table.
    pub table: u32,
    /// Scope (253 = link).
    pub scope: u8,
    /// Metric.
    pub priority: Option<u32>,
}

/// The kernel's answer to [`Netlink::route_get`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RouteDecision {
    /// Output interface.
    pub oif: Option<u32>,
    /// Next hop, when the matching route has one.
    pub gateway: Option<IpAddr>,
    /// The source address the kernel would pick.
    pub source: Option<IpAddr>,
}

/// A macvlan to create.
#[derive(Clone, Debug)]
pub struct MacvlanSpec<'a> {
    /// Its (temporary) name.
    pub name: &'a str,
    /// The master's index in the namespace of the connection that creates it.
    pub master_index: u32,
    /// The macvlan mode.
    pub mode: MacvlanMode,
    /// MTU; `None` inherits the master's.
    pub mtu: Option<u32>,
    /// MAC; `None` lets the kernel pick a random one.
    pub mac: Option<Mac>,
    /// Broadcast/multicast queue length.
    pub bc_queue_len: Option<u32>,
}

/// A route to add.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RouteSpec {
    /// Destination.
    pub dst: IpNetwork,
    /// Gateway; `None` gives a `dev <if> scope link` route.
    pub gateway: Option<IpAddr>,
    /// Output interface.
    pub oif: u32,
}

/// The local routing table, where the kernel keeps one `multicast ff00::/8` route per IPv6 interface.
pub const LOCAL_TABLE: u32 = 255;
/// Metric of roslan's IPv6 multicast route: below the kernel's 256, so it wins the lookup.
pub const MULTICAST6_METRIC: u32 = 128;
/// The last metric a standby IPv6 multicast route may take (one per further roslan interface in a pod).
pub const MULTICAST6_LAST_METRIC: u32 = 191;

/// The main routing table.
pub const MAIN_TABLE: u32 = 254;
/// RT_SCOPE_LINK.
pub const SCOPE_LINK: u8 = 253;

fn mode_to_kernel(mode: MacvlanMode) -> MacVlanMode {
    match mode {
        MacvlanMode::Bridge => MacVlanMode::Bridge,
        MacvlanMode::Private => MacVlanMode::Private,
        MacvlanMode::Vepa => MacVlanMode::Vepa,
        MacvlanMode::Passthru => MacVlanMode::Passthrough,
    }
}

fn mode_from_kernel(mode: &MacVlanMode) -> Option<MacvlanMode> {
    Some(match mode {
        MacVlanMode::Bridge => MacvlanMode::Bridge,
        MacVlanMode::Private => MacvlanMode::Private,
        MacVlanMode::Vepa => MacvlanMode::Vepa,
        MacVlanMode::Passthrough => MacvlanMode::Passthru,
        _ => return None,
    })
}

fn link_from(msg: LinkMessage) -> Link {
    let flags = msg.header.flags;
    let mut link = Link {
        index: msg.header.index,
        name: String::new(),
        mac: None,
        mtu: 0,
        up: flags.contains(LinkFlags::Up),
        lower_up: flags.contains(LinkFlags::LowerUp),
        multicast: flags.contains(LinkFlags::Multicast),
        loopback: flags.contains(LinkFlags::Loopback),
        macvlan_mode: None,
        alias: None,
        parent: None,
    };
    for attr in msg.attributes {
        match attr {
            LinkAttribute::IfName(name) => link.name = name,
            LinkAttribute::Address(bytes) => link.mac = Mac::from_slice(&bytes),
            LinkAttribute::Mtu(mtu) => link.mtu = mtu,
            LinkAttribute::IfAlias(alias) => link.alias = Some(alias),
            LinkAttribute::Link(parent) => link.parent = Some(parent),
            LinkAttribute::LinkInfo(infos) => {
                let mut is_macvlan = false;
                let mut mode = None;
                for info in infos {
                    match info {
                        LinkInfo::Kind(InfoKind::MacVlan) => is_macvlan = true,
                        LinkInfo::Data(InfoData::MacVlan(data)) => {
                            mode = data.iter().find_map(|d| match d {
                                InfoMacVlan::Mode(m) => mode_from_kernel(m),
                                _ => None,
                            });
                        }
                        _ => {}
                    }
                }
                if is_macvlan {
                    link.macvlan_mode = Some(mode.unwrap_or(MacvlanMode::Bridge));
                }
            }
            _ => {}
        }
    }
    link
}

fn family_of(ip: IpAddr) -> AddressFamily {
    if ip.is_ipv4() {
        AddressFamily::Inet
    } else {
        AddressFamily::Inet6
    }
}

fn ip_of(addr: &RouteAddress) -> Option<IpAddr> {
    match addr {
        RouteAddress::Inet(v4) => Some(IpAddr::V4(*v4)),
        RouteAddress::Inet6(v6) => Some(IpAddr::V6(*v6)),
        _ => None,
    }
}

impl Runtime {
    /// A current-thread runtime with I/O enabled (netlink sockets need the reactor).
    pub fn new() -> Result<Runtime, NetlinkError> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .build()
            .map_err(|err| NetlinkError::Socket(format!("start the netlink runtime: {err}")))?;
        Ok(Runtime { rt })
    }

    fn open(&self) -> Result<(rtnetlink::proto::Connection<RouteNetlinkMessage>, Handle), NetlinkError> {
        let _context = self.rt.enter();
        let (mut conn, handle, _) =
            rtnetlink::new_connection().map_err(|err| NetlinkError::Socket(format!("open netlink socket: {err}")))?;
        let socket = conn.socket_mut().socket_mut();
        // Best effort: without these the errors are just less descriptive.
        let _ = socket.set_ext_ack(true);
        let _ = socket.set_cap_ack(true);
        Ok((conn, handle))
    }

    /// A connection in the calling thread's namespace (the node, for a runtime-invoked plugin).
    pub fn connect(&self) -> Result<Netlink<'_>, NetlinkError> {
        let (conn, handle) = self.open()?;
        self.rt.spawn(conn);
        Ok(Netlink { rt: &self.rt, handle })
    }

    /// A connection inside `netns`: the socket is created while the thread is in that namespace and stays bound
    /// to it for its whole life.
    pub fn connect_in(&self, netns: &Netns) -> Result<Netlink<'_>, NetlinkError> {
        let (conn, handle) = netns
            .run(|| self.open())?
            .map_err(|err| NetlinkError::Socket(format!("in {}: {err}", netns.path())))?;
        self.rt.spawn(conn);
        Ok(Netlink { rt: &self.rt, handle })
    }
}

/// One request for [`Netlink::pipeline`]: a message and its flags (NLM_F_REQUEST is added).
pub struct Request(RouteNetlinkMessage, u16);

impl Request {
    /// RTM_GETLINK by name (not a dump).
    fn link_by_name(name: &str) -> Request {
        Request(RouteNetlinkMessage::GetLink(LinkUnspec::new_with_name(name).build()), 0)
    }

    /// The link a [`Request::link_by_name`] answered with; ENODEV is "no such link".
    fn link_answer(answer: Result<Vec<RouteNetlinkMessage>, NetlinkError>) -> Result<Option<Link>, NetlinkError> {
        match answer {
            Ok(replies) => Ok(replies.into_iter().find_map(|r| match r {
                RouteNetlinkMessage::NewLink(link) => Some(link_from(link)),
                _ => None,
            })),
            Err(err) if err.is(nix::errno::Errno::ENODEV) => Ok(None),
            Err(err) => Err(err),
        }
    }

    /// Renames a link, labels it with `alias` and brings it up, in one request (the kernel applies the
    /// name before the flags, so a name clash leaves the link down and untouched).
    pub fn rename_and_up(index: u32, name: &str, alias: &str) -> Request {
        let msg = LinkUnspec::new_with_index(index)
            .name(name.to_string())
            .alias(alias.to_string())
            .up()
            .build();
        Request(RouteNetlinkMessage::SetLink(msg), NLM_F_ACK)
    }

    /// Sets or clears IFF_MULTICAST.
    pub fn set_multicast(index: u32, on: bool) -> Request {
        let msg = LinkUnspec::new_with_index(index).multicast(on).build();
        Request(RouteNetlinkMessage::SetLink(msg), NLM_F_ACK)
    }

    /// Adds an address. IPv6 addresses get IFA_F_NODAD when `nodad`: roslan's IPAM guarantees
    /// uniqueness, and waiting out duplicate address detection costs about 1.7 s per ADD.
    pub fn add_address(index: u32, net: IpNetwork, nodad: bool) -> Request {
        let mut msg = AddressMessage::default();
        msg.header.family = family_of(net.ip());
        msg.header.prefix_len = net.prefix();
        msg.header.index = index;
        match net {
            IpNetwork::V4(v4) => {
                msg.attributes.push(AddressAttribute::Local(net.ip()));
                msg.attributes.push(AddressAttribute::Address(net.ip()));
                if v4.prefix() < 31 {
                    msg.attributes.push(AddressAttribute::Broadcast(v4.broadcast()));
                }
            }
            IpNetwork::V6(_) => {
                msg.attributes.push(AddressAttribute::Address(net.ip()));
                if nodad {
                    msg.header.flags = AddressHeaderFlags::Nodad;
                    msg.attributes.push(AddressAttribute::Flags(AddressFlags::Nodad));
                }
            }
        }
        Request(
            RouteNetlinkMessage::NewAddress(msg),
            NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL,
        )
    }

    /// A main-table route; with `append`, added behind an existing route for the same destination.
    fn route(spec: &RouteSpec, append: bool) -> Request {
        let v4 = spec.dst.is_ipv4();
        let mut msg = RouteMessage::default();
        msg.header.address_family = if v4 { AddressFamily::Inet } else { AddressFamily::Inet6 };
        msg.header.destination_prefix_length = spec.dst.prefix();
        msg.header.table = RouteHeader::RT_TABLE_MAIN;
        msg.header.protocol = RouteProtocol::Boot;
        msg.header.scope = if spec.gateway.is_some() {
            RouteScope::Universe
        } else {
            RouteScope::Link
        };
        msg.header.kind = RouteType::Unicast;
        msg.attributes
            .push(RouteAttribute::Destination(RouteAddress::from(spec.dst.network())));
        if let Some(gw) = spec.gateway {
            msg.attributes.push(RouteAttribute::Gateway(RouteAddress::from(gw)));
        }
        msg.attributes.push(RouteAttribute::Oif(spec.oif));
        let flags = if append {
            NLM_F_ACK | NLM_F_CREATE | NLM_F_APPEND
        } else {
            NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL
        };
        Request(RouteNetlinkMessage::NewRoute(msg), flags)
    }

    /// Adds a route in the main table, failing with EEXIST if one exists for the destination.
    pub fn add_route(spec: &RouteSpec) -> Request {
        Request::route(spec, false)
    }

    /// Steers IPv6 multicast without an explicit interface to `oif`: a `multicast` route for `dst` in the
    /// local table with a metric below the kernel's per-interface ones. Unpinned IPv6 sockets pick their
    /// interface by this lookup (for sending and for joins on interface 0), and the local table is
    /// consulted before the main one, so a main-table route would never be seen.
    pub fn add_multicast6_route(dst: IpNetwork, oif: u32, metric: u32) -> Request {
        let mut msg = RouteMessage::default();
        msg.header.address_family = AddressFamily::Inet6;
        msg.header.destination_prefix_length = dst.prefix();
        msg.header.table = LOCAL_TABLE as u8;
        msg.header.protocol = RouteProtocol::Boot;
        msg.header.scope = RouteScope::Universe;
        msg.header.kind = RouteType::Multicast;
        msg.attributes
            .push(RouteAttribute::Destination(RouteAddress::from(dst.network())));
        msg.attributes.push(RouteAttribute::Oif(oif));
        msg.attributes.push(RouteAttribute::Priority(metric));
        Request(
            RouteNetlinkMessage::NewRoute(msg),
            NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL,
        )
    }
}

/// Collects a request's answers: its messages, or the kernel's error.
async fn answers(
    mut responses: impl futures_util::Stream<Item = NetlinkMessage<RouteNetlinkMessage>> + Unpin,
) -> Result<Vec<RouteNetlinkMessage>, NetlinkError> {
    let mut out = Vec::new();
    while let Some(response) = responses.next().await {
        match response.payload {
            NetlinkPayload::InnerMessage(inner) => out.push(inner),
            NetlinkPayload::Error(err) if err.code.is_some() => return Err(decode_error(err)),
            _ => {}
        }
    }
    Ok(out)
}

impl Netlink<'_> {
    fn exec(&self, message: RouteNetlinkMessage, flags: u16) -> Result<Vec<RouteNetlinkMessage>, NetlinkError> {
        self.pipeline(vec![Request(message, flags)])
            .pop()
            .unwrap_or_else(|| Err(NetlinkError::Protocol("no answer".into())))
    }

    /// Sends every request before reading any answer, so that they cost one trip through the runtime
    /// instead of one each; the answers come back in order. The kernel handles the requests of one
    /// socket in the order sent and goes on after a refused one, so a caller pipelines only requests
    /// whose later members are harmless, or undone, when an earlier one fails.
    pub fn pipeline(&self, requests: Vec<Request>) -> Vec<Result<Vec<RouteNetlinkMessage>, NetlinkError>> {
        let mut handle = self.handle.clone();
        self.rt.block_on(async move {
            let streams: Vec<_> = requests
                .into_iter()
                .map(|Request(message, flags)| {
                    let mut request = NetlinkMessage::from(message);
                    request.header.flags = flags | NLM_F_REQUEST;
                    handle
                        .request(request)
                        .map_err(|err| NetlinkError::Socket(err.to_string()))
                })
                .collect();
            let mut out = Vec::with_capacity(streams.len());
            for stream in streams {
                out.push(match stream {
                    Ok(responses) => answers(responses).await,
                    Err(err) => Err(err),
                });
            }
            out
        })
    }

    /// Runs requests that only need an acknowledgement, pipelined; one result per request.
    pub fn acked(&self, requests: Vec<Request>) -> Vec<Result<(), NetlinkError>> {
        self.pipeline(requests).into_iter().map(|r| r.map(drop)).collect()
    }

    /// Looks a link up by name; `None` if there is no such link.
    pub fn link_by_name(&self, name: &str) -> Result<Option<Link>, NetlinkError> {
        let Request(message, flags) = Request::link_by_name(name);
        Request::link_answer(self.exec(message, flags))
    }

    /// Looks several links up by name in one pipeline; `None` for each that does not exist.
    pub fn links_by_name(&self, names: &[&str]) -> Vec<Result<Option<Link>, NetlinkError>> {
        let requests = names.iter().map(|name| Request::link_by_name(name)).collect();
        self.pipeline(requests).into_iter().map(Request::link_answer).collect()
    }

    /// Every link in the namespace.
    pub fn links(&self) -> Result<Vec<Link>, NetlinkError> {
        let replies = self.exec(RouteNetlinkMessage::GetLink(LinkMessage::default()), NLM_F_DUMP)?;
        Ok(replies
            .into_iter()
            .filter_map(|r| match r {
                RouteNetlinkMessage::NewLink(link) => Some(link_from(link)),
                _ => None,
            })
            .collect())
    }

    /// Every address in the namespace.
    pub fn addresses(&self) -> Result<Vec<Address>, NetlinkError> {
        let replies = self.exec(RouteNetlinkMessage::GetAddress(AddressMessage::default()), NLM_F_DUMP)?;
        Ok(replies
            .into_iter()
            .filter_map(|r| match r {
                RouteNetlinkMessage::NewAddress(msg) => {
                    let ip = msg.attributes.iter().find_map(|a| match a {
                        AddressAttribute::Local(ip) => Some(*ip),
                        _ => None,
                    });
                    let ip = ip.or_else(|| {
                        msg.attributes.iter().find_map(|a| match a {
                            AddressAttribute::Address(ip) => Some(*ip),
                            _ => None,
                        })
                    })?;
                    let net = IpNetwork::new(ip, msg.header.prefix_len).ok()?;
                    let flags = msg
                        .attributes
                        .iter()
                        .find_map(|a| match a {
                            AddressAttribute::Flags(f) => Some(*f),
                            _ => None,
                        })
                        .unwrap_or_else(|| AddressFlags::from_bits_truncate(u32::from(msg.header.flags.bits())));
                    Some(Address {
                        index: msg.header.index,
                        net,
                        tentative: flags.contains(AddressFlags::Tentative),
                        dad_failed: flags.contains(AddressFlags::Dadfailed),
                    })
                }
                _ => None,
            })
            .collect())
    }

    /// Every route of `family` (Inet or Inet6) in every table.
    pub fn routes(&self, v4: bool) -> Result<Vec<RouteEntry>, NetlinkError> {
        let mut msg = RouteMessage::default();
        msg.header.address_family = if v4 { AddressFamily::Inet } else { AddressFamily::Inet6 };
        let replies = self.exec(RouteNetlinkMessage::GetRoute(msg), NLM_F_DUMP)?;
        Ok(replies
            .into_iter()
            .filter_map(|r| match r {
                RouteNetlinkMessage::NewRoute(msg) => {
                    let mut entry = RouteEntry {
                        dst: IpNetwork::new(
                            if v4 {
                                IpAddr::from([0u8; 4])
                            } else {
                                IpAddr::from([0u8; 16])
                            },
                            msg.header.destination_prefix_length,
                        )
                        .ok()?,
                        gateway: None,
                        oif: None,
                        table: u32::from(msg.header.table),
                        scope: u8::from(msg.header.scope),
                        priority: None,
                    };
                    for attr in &msg.attributes {
                        match attr {
                            RouteAttribute::Destination(dst) => {
                                entry.dst = IpNetwork::new(ip_of(dst)?, msg.header.destination_prefix_length).ok()?;
                            }
                            RouteAttribute::Gateway(gw) => entry.gateway = ip_of(gw),
                            RouteAttribute::Oif(oif) => entry.oif = Some(*oif),
                            RouteAttribute::Table(table) => entry.table = *table,
                            RouteAttribute::Priority(p) => entry.priority = Some(*p),
                            _ => {}
                        }
                    }
                    Some(entry)
                }
                _ => None,
            })
            .collect())
    }

    /// Creates a macvlan on `master_index` (a link of *this* connection's namespace) directly inside
    /// `target`, in one RTM_NEWLINK: creating it here and moving it costs 10-40 ms more.
    pub fn create_macvlan(&self, spec: &MacvlanSpec<'_>, target: RawFd) -> Result<(), NetlinkError> {
        let mut builder = LinkMacVlan::new(spec.name, spec.master_index, mode_to_kernel(spec.mode)).setns_by_fd(target);
        if let Some(mtu) = spec.mtu {
            builder = builder.mtu(mtu);
        }
        if let Some(mac) = spec.mac {
            builder = builder.address(mac.bytes());
        }
        if let Some(len) = spec.bc_queue_len {
            builder = builder.append_info_data(InfoMacVlan::BcQueueLen(len));
        }
        self.exec(
            RouteNetlinkMessage::NewLink(builder.build()),
            NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL,
        )?;
        Ok(())
    }

    /// Renames a link, labels it with `alias` and brings it up, in one request (the kernel applies the
    /// name before the flags, so a name clash leaves the link down and untouched).
    pub fn rename_and_up(&self, index: u32, name: &str, alias: &str) -> Result<(), NetlinkError> {
        self.one(Request::rename_and_up(index, name, alias))
    }

    fn one(&self, request: Request) -> Result<(), NetlinkError> {
        self.exec(request.0, request.1).map(drop)
    }

    /// Replaces a link's alias (IFLA_IFALIAS).
    pub fn set_alias(&self, index: u32, alias: &str) -> Result<(), NetlinkError> {
        let msg = LinkUnspec::new_with_index(index).alias(alias.to_string()).build();
        self.exec(RouteNetlinkMessage::SetLink(msg), NLM_F_ACK)?;
        Ok(())
    }

    /// Brings a link up.
    pub fn set_up(&self, index: u32) -> Result<(), NetlinkError> {
        self.exec(
            RouteNetlinkMessage::SetLink(LinkUnspec::new_with_index(index).up().build()),
            NLM_F_ACK,
        )?;
        Ok(())
    }

    /// Changes a (down) link's MAC.
    pub fn set_address(&self, index: u32, mac: Mac) -> Result<(), NetlinkError> {
        let msg = LinkUnspec::new_with_index(index).address(mac.bytes()).build();
        self.exec(RouteNetlinkMessage::SetLink(msg), NLM_F_ACK)?;
        Ok(())
    }

    /// Sets or clears IFF_MULTICAST.
    pub fn set_multicast(&self, index: u32, on: bool) -> Result<(), NetlinkError> {
        self.one(Request::set_multicast(index, on))
    }

    /// Deletes a link by index.
    pub fn delete_link(&self, index: u32) -> Result<(), NetlinkError> {
        let mut msg = LinkMessage::default();
        msg.header.index = index;
        self.exec(RouteNetlinkMessage::DelLink(msg), NLM_F_ACK)?;
        Ok(())
    }

    /// Adds an address; see [`Request::add_address`].
    pub fn add_address(&self, index: u32, net: IpNetwork, nodad: bool) -> Result<(), NetlinkError> {
        self.one(Request::add_address(index, net, nodad))
    }

    /// Removes an address from a link.
    pub fn delete_address(&self, index: u32, net: IpNetwork) -> Result<(), NetlinkError> {
        let mut msg = AddressMessage::default();
        msg.header.family = family_of(net.ip());
        msg.header.prefix_len = net.prefix();
        msg.header.index = index;
        msg.attributes.push(AddressAttribute::Local(net.ip()));
        msg.attributes.push(AddressAttribute::Address(net.ip()));
        self.exec(RouteNetlinkMessage::DelAddress(msg), NLM_F_ACK)?;
        Ok(())
    }

    /// Adds a route in the main table. With `append_if_exists`, a route that another interface already
    /// holds for the same destination is added behind it instead of failing, so it takes over when the
    /// other interface goes away. Returns whether it had to append.
    pub fn add_route(&self, spec: &RouteSpec, append_if_exists: bool) -> Result<bool, NetlinkError> {
        match self.one(Request::route(spec, false)) {
            Ok(()) => Ok(false),
            Err(err) if append_if_exists && err.is(nix::errno::Errno::EEXIST) => {
                self.one(Request::route(spec, true))?;
                Ok(true)
            }
            Err(err) => Err(err),
        }
    }

    /// Adds the IPv6 multicast route; see [`Request::add_multicast6_route`].
    pub fn add_multicast6_route(&self, dst: IpNetwork, oif: u32, metric: u32) -> Result<(), NetlinkError> {
        self.one(Request::add_multicast6_route(dst, oif, metric))
    }

    /// The kernel's decision for one destination: `ip route get`, one RTM_GETROUTE without the dump flag.
    /// Diagnostics ask this instead of matching the table themselves, so policy rules, metrics and the
    /// kernel's multicast special cases are the kernel's own. An unreachable, blackhole or prohibit
    /// answer is ENETUNREACH, as `sendto` would report it.
    pub fn route_get(&self, dst: IpAddr) -> Result<RouteDecision, NetlinkError> {
        let mut msg = RouteMessage::default();
        msg.header.address_family = if dst.is_ipv4() {
            AddressFamily::Inet
        } else {
            AddressFamily::Inet6
        };
        msg.header.destination_prefix_length = if dst.is_ipv4() { 32 } else { 128 };
        msg.attributes
            .push(RouteAttribute::Destination(RouteAddress::from(dst)));
        let reply = self
            .exec(RouteNetlinkMessage::GetRoute(msg), 0)?
            .into_iter()
            .find_map(|r| match r {
                RouteNetlinkMessage::NewRoute(route) => Some(route),
                _ => None,
            })
            .ok_or_else(|| NetlinkError::Protocol("the kernel gave no answer".into()))?;
        if matches!(
            reply.header.kind,
            RouteType::Unreachable | RouteType::BlackHole | RouteType::Prohibit
        ) {
            return Err(NetlinkError::from_errno(nix::errno::Errno::ENETUNREACH));
        }
        let mut decision = RouteDecision::default();
        for attr in &reply.attributes {
            match attr {
                RouteAttribute::Oif(oif) => decision.oif = Some(*oif),
                RouteAttribute::Gateway(gw) => decision.gateway = ip_of(gw),
                RouteAttribute::PrefSource(src) => decision.source = ip_of(src),
                _ => {}
            }
        }
        Ok(decision)
    }

    /// The interface of the first default route (IPv4 first, then IPv6), as the reference macvlan
    /// picks its master when none is configured.
    pub fn default_route_interface(&self) -> Result<Option<u32>, NetlinkError> {
        for v4 in [true, false] {
            let found = self
                .routes(v4)?
                .into_iter()
                .filter(|r| r.dst.prefix() == 0 && r.table == MAIN_TABLE)
                .find_map(|r| r.oif);
            if found.is_some() {
                return Ok(found);
            }
        }
        Ok(None)
    }
}

/// RTM_DELLINK (linux/rtnetlink.h); the message crate keeps its own copy private.
const RTM_DELLINK: u16 = 17;

/// The link notifications (RTNLGRP_LINK) of one namespace, read with plain blocking calls so that a
/// helper thread can wait for them while the main thread is inside a request of its own.
///
/// DEL uses them to learn the moment its link is unregistered. The kernel answers an RTM_DELLINK only
/// after `rtnl_unlock()` has run `netdev_run_todo()`, whose RCU barriers and reference waits take
/// 10-25 ms, but it multicasts the RTM_DELLINK notification from `unregister_netdevice_many()` well
/// before that: after the link was closed and unlisted, after one `synchronize_net()`, and after the
/// NETDEV_UNREGISTER notifiers, which is where IPv4 and IPv6 drop the link's addresses. Measured on
/// this kernel (6.18, a macvlan in a pod, 30 rounds, a third socket asking the pod at the moment the
/// notification arrived): the notification came 0.67 ms after the request was sent (median), the
/// acknowledgement 17.8 ms after; at that moment the link's index answered ENODEV and the address
/// dump listed nothing on it, every round. From the notification on, no link of the namespace holds
/// the link's addresses, which is the state a finished deletion leaves.
pub struct LinkEvents {
    socket: Socket,
}

impl LinkEvents {
    /// Subscribes to the link notifications of `netns`. The socket is made while the thread is inside
    /// the namespace and hears that namespace only; it hears every notification sent after this
    /// returns, so subscribing before sending a request cannot miss the request's own notification.
    pub fn subscribe_in(netns: &Netns) -> Result<LinkEvents, NetlinkError> {
        let subscribed = netns.run(|| -> std::io::Result<LinkEvents> {
            let mut socket = Socket::new(rtnetlink::sys::constants::NETLINK_ROUTE)?;
            socket.bind(&SocketAddr::new(0, rtnetlink::constants::RTMGRP_LINK))?;
            // Reads drain what is queued; the waiting happens in poll(2), together with the stop signal.
            socket.set_non_blocking(true)?;
            Ok(LinkEvents { socket })
        })?;
        subscribed.map_err(|err| NetlinkError::Socket(format!("subscribe to link events in {}: {err}", netns.path())))
    }

    /// Blocks until the kernel has announced every link of `indexes` unregistered (`Ok(true)`), or
    /// until `stop` is readable or hung up first (`Ok(false)`: the caller's request ended without
    /// the announcements). What is queued is read before `stop` is looked at, so an announcement that
    /// came before the stop counts. An error (ENOBUFS: the kernel dropped notifications because the
    /// queue was full) means the announcements cannot be known; the caller waits for its answer instead.
    /// Only RTM_DELLINK of family AF_UNSPEC counts: a bridge's AF_BRIDGE RTM_DELLINK of the same index
    /// reports a port leaving, not the link going.
    pub fn wait_unregistered(&self, indexes: &[u32], stop: BorrowedFd<'_>) -> Result<bool, NetlinkError> {
        use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
        let mut pending = indexes.to_vec();
        // One notification per datagram, about 1.5 KiB for a macvlan. One longer than the buffer would
        // be cut and is not trusted (its length says more than was read): the wait then ends at `stop`.
        let mut buf = vec![0u8; 16 * 1024];
        let failed = |what: &str, err: &dyn fmt::Display| NetlinkError::Socket(format!("{what} link events: {err}"));
        while !pending.is_empty() {
            let mut fds = [
                PollFd::new(self.socket.as_fd(), PollFlags::POLLIN),
                PollFd::new(stop, PollFlags::POLLIN),
            ];
            match poll(&mut fds, PollTimeout::NONE) {
                Ok(_) => {}
                Err(nix::errno::Errno::EINTR) => continue,
                Err(err) => return Err(failed("wait for", &err)),
            }
            let stopped = fds[1].revents().is_some_and(|r| !r.is_empty());
            loop {
                let mut window: &mut [u8] = &mut buf;
                match self.socket.recv(&mut window, 0) {
                    Ok(len) => forget_unregistered(&buf[..len.min(buf.len())], &mut pending),
                    Err(err) if err.kind() == std::io::ErrorKind::WouldBlock => break,
                    Err(err) if err.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(err) => return Err(failed("read", &err)),
                }
            }
            if stopped && !pending.is_empty() {
                return Ok(false);
            }
        }
        Ok(true)
    }
}

/// Removes from `pending` every index a datagram announces unregistered (RTM_DELLINK, AF_UNSPEC).
/// Only the fixed headers are read: nothing in the attributes matters here.
fn forget_unregistered(mut datagram: &[u8], pending: &mut Vec<u32>) {
    while let Ok(message) = NetlinkBuffer::new_checked(datagram) {
        if message.message_type() == RTM_DELLINK
            && let Ok(header) = LinkHeader::parse(message.payload())
            && header.interface_family == AddressFamily::Unspec
        {
            pending.retain(|&index| index != header.index);
        }
        let aligned = (message.length() as usize + 3) & !3;
        datagram = datagram.get(aligned..).unwrap_or_default();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One netlink message: nlmsghdr, then an ifinfomsg of `family` and `index`, then `extra` bytes of
    /// attributes (unaligned on purpose when odd, as a cut datagram can be).
    fn link_message(kind: u16, family: u8, index: u32, extra: usize) -> Vec<u8> {
        let len = 16 + 16 + extra;
        let mut out = Vec::new();
        out.extend_from_slice(&(len as u32).to_ne_bytes());
        out.extend_from_slice(&kind.to_ne_bytes());
        out.extend_from_slice(&[0u8; 10]);
        out.push(family);
        out.extend_from_slice(&[0u8; 3]);
        out.extend_from_slice(&index.to_ne_bytes());
        out.extend_from_slice(&[0u8; 8]);
        out.resize(len, 0);
        out.resize((len + 3) & !3, 0);
        out
    }

    #[test]
    fn only_an_unspec_dellink_of_a_pending_index_counts() {
        const RTM_NEWLINK: u16 = 16;
        const AF_BRIDGE: u8 = 7;
        let mut datagram = link_message(RTM_NEWLINK, 0, 7, 40);
        datagram.extend(link_message(RTM_DELLINK, AF_BRIDGE, 7, 8));
        datagram.extend(link_message(RTM_DELLINK, 0, 9, 1));
        let mut pending = vec![7, 8];
        forget_unregistered(&datagram, &mut pending);
        assert_eq!(
            pending,
            vec![7, 8],
            "a NEWLINK, a bridge-port DELLINK and another index change nothing"
        );
        datagram.extend(link_message(RTM_DELLINK, 0, 7, 1500));
        forget_unregistered(&datagram, &mut pending);
        assert_eq!(pending, vec![8]);
    }

    #[test]
    fn a_cut_or_garbled_datagram_is_read_up_to_its_damage() {
        let mut pending = vec![7];
        let whole = link_message(RTM_DELLINK, 0, 7, 1500);
        forget_unregistered(&whole[..100], &mut pending);
        assert_eq!(pending, vec![7], "a message longer than what was read is not trusted");
        let mut zero_length = whole.clone();
        zero_length[..4].copy_from_slice(&0u32.to_ne_bytes());
        forget_unregistered(&zero_length, &mut pending);
        assert_eq!(pending, vec![7], "a zero length ends the walk (and does not loop)");
        forget_unregistered(&whole, &mut pending);
        assert!(pending.is_empty());
    }
}
