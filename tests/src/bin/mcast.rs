//! Test helper: unpinned UDP multicast, the way a DDS implementation that does not pick an interface
//! sends and receives it.
//!
//! `mcast recv GROUP PORT COUNT TIMEOUT_MS`: joins GROUP on "any interface" (INADDR_ANY / ifindex 0),
//! prints `ready`, then one `from <addr> <text>` line per datagram; exits 0 once COUNT arrived, 1 on
//! timeout.
//! `mcast send GROUP PORT COUNT`: sends COUNT datagrams without IP_MULTICAST_IF / IPV6_MULTICAST_IF, so
//! the routing table picks the interface; exits non-zero if the kernel refuses to send.

use std::io::Write;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

fn usage() -> ! {
    eprintln!("usage: mcast recv GROUP PORT COUNT TIMEOUT_MS | mcast send GROUP PORT COUNT");
    std::process::exit(2);
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 5 {
        usage();
    }
    let group: IpAddr = args[2].parse().unwrap_or_else(|_| usage());
    let port: u16 = args[3].parse().unwrap_or_else(|_| usage());
    let count: usize = args[4].parse().unwrap_or_else(|_| usage());
    match args[1].as_str() {
        "recv" => {
            let timeout = Duration::from_millis(args.get(5).and_then(|t| t.parse().ok()).unwrap_or(3000));
            std::process::exit(recv(group, port, count, timeout));
        }
        "send" => std::process::exit(send(group, port, count)),
        _ => usage(),
    }
}

fn recv(group: IpAddr, port: u16, count: usize, timeout: Duration) -> i32 {
    let socket = match group {
        IpAddr::V4(g) => {
            let s = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, port)).expect("bind");
            if let Err(err) = s.join_multicast_v4(&g, &Ipv4Addr::UNSPECIFIED) {
                println!("join failed: {err}");
                return 1;
            }
            s
        }
        IpAddr::V6(g) => {
            let s = UdpSocket::bind((Ipv6Addr::UNSPECIFIED, port)).expect("bind");
            if let Err(err) = s.join_multicast_v6(&g, 0) {
                println!("join failed: {err}");
                return 1;
            }
            s
        }
    };
    println!("ready");
    let _ = std::io::stdout().flush();
    let deadline = Instant::now() + timeout;
    let mut got = 0;
    let mut buf = [0u8; 2048];
    while got < count {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        socket.set_read_timeout(Some(left)).expect("timeout");
        match socket.recv_from(&mut buf) {
            Ok((n, from)) => {
                got += 1;
                println!("from {} {}", from.ip(), String::from_utf8_lossy(&buf[..n]));
                let _ = std::io::stdout().flush();
            }
            Err(_) => break,
        }
    }
    println!("received {got} of {count}");
    if got >= count { 0 } else { 1 }
}

fn send(group: IpAddr, port: u16, count: usize) -> i32 {
    let socket = match group {
        IpAddr::V4(_) => {
            let s = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0)).expect("bind");
            s.set_multicast_ttl_v4(1).expect("ttl");
            s
        }
        IpAddr::V6(_) => UdpSocket::bind((Ipv6Addr::UNSPECIFIED, 0)).expect("bind"),
    };
    for i in 0..count {
        if let Err(err) = socket.send_to(format!("hello {i}").as_bytes(), SocketAddr::new(group, port)) {
            println!("send failed: {err}");
            return 1;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    println!("sent {count}");
    0
}
