//! Measurement helpers for `roslan-bench`: timing plugin invocations with as little harness overhead
//! as possible, and the kernel's own link deletion for comparison.
//!
//! The benchmark process moves its main thread into the node namespace, so each plugin call is a
//! plain fork/exec of the plugin (no `ip netns exec`, which costs about 1 ms and would dilute the
//! comparison). Both plugins are timed by the same code, interleaved, on the same LAN.

use std::io::Write;
use std::os::fd::AsFd;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use nix::sched::{CloneFlags, setns};
use nix::sys::socket::{AddressFamily, MsgFlags, NetlinkAddr, SockFlag, SockProtocol, SockType, recv, sendto, socket};
use serde_json::Value;

use crate::netns::Netns;

/// Moves the calling thread into `ns` for good (the benchmark's main thread lives in the node).
pub fn enter(ns: &Netns) {
    let file = std::fs::File::open(ns.path()).expect("open netns");
    setns(file.as_fd(), CloneFlags::CLONE_NEWNET).expect("setns into the node namespace");
}

/// One timed plugin call from the current thread's namespace.
pub fn time_call(plugin: &std::path::Path, env: &[(&str, &str)], stdin: &[u8]) -> (Duration, bool, Vec<u8>) {
    let mut cmd = Command::new(plugin);
    cmd.env_clear()
        .envs(env.iter().copied())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    let start = Instant::now();
    let mut child = cmd.spawn().expect("spawn plugin");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(stdin)
        .expect("write stdin");
    let out = child.wait_with_output().expect("wait plugin");
    (start.elapsed(), out.status.success(), out.stdout)
}

/// Deletes a link by name inside `ns` with one raw RTM_DELLINK and returns how long the kernel took
/// to answer: the floor any DEL implementation pays.
pub fn kernel_delete_link(ns: &Netns, ifname: &str) -> Duration {
    let path = ns.path();
    let name = ifname.to_string();
    std::thread::spawn(move || {
        let file = std::fs::File::open(path).expect("open netns");
        setns(file.as_fd(), CloneFlags::CLONE_NEWNET).expect("setns");
        let sock = socket(
            AddressFamily::Netlink,
            SockType::Raw,
            SockFlag::SOCK_CLOEXEC,
            SockProtocol::NetlinkRoute,
        )
        .expect("netlink socket");
        // nlmsghdr + ifinfomsg + IFLA_IFNAME.
        const RTM_DELLINK: u16 = 17;
        const NLM_F_REQUEST_ACK: u16 = 1 | 4;
        const IFLA_IFNAME: u16 = 3;
        let attr_len = 4 + name.len() + 1;
        let padded = (attr_len + 3) & !3;
        let total = 16 + 16 + padded;
        let mut msg = Vec::with_capacity(total);
        msg.extend_from_slice(&(total as u32).to_ne_bytes());
        msg.extend_from_slice(&RTM_DELLINK.to_ne_bytes());
        msg.extend_from_slice(&NLM_F_REQUEST_ACK.to_ne_bytes());
        msg.extend_from_slice(&1u32.to_ne_bytes());
        msg.extend_from_slice(&0u32.to_ne_bytes());
        msg.extend_from_slice(&[0u8; 16]);
        msg.extend_from_slice(&(attr_len as u16).to_ne_bytes());
        msg.extend_from_slice(&IFLA_IFNAME.to_ne_bytes());
        msg.extend_from_slice(name.as_bytes());
        msg.resize(total, 0);
        let start = Instant::now();
        sendto(
            std::os::fd::AsRawFd::as_raw_fd(&sock),
            &msg,
            &NetlinkAddr::new(0, 0),
            MsgFlags::empty(),
        )
        .expect("send");
        let mut buf = [0u8; 4096];
        let n = recv(std::os::fd::AsRawFd::as_raw_fd(&sock), &mut buf, MsgFlags::empty()).expect("recv");
        let elapsed = start.elapsed();
        let errno = i32::from_ne_bytes([buf[16], buf[17], buf[18], buf[19]]);
        assert!(n >= 20 && errno == 0, "RTM_DELLINK {name} failed: errno {}", -errno);
        elapsed
    })
    .join()
    .expect("delete thread")
}

/// Summary statistics in milliseconds.
#[derive(Clone, Debug)]
pub struct Stats {
    /// Number of samples.
    pub n: usize,
    /// Median.
    pub median: f64,
    /// 10th percentile.
    pub p10: f64,
    /// 90th percentile.
    pub p90: f64,
}

impl Stats {
    /// Summarises durations.
    pub fn of(samples: &[Duration]) -> Stats {
        let mut ms: Vec<f64> = samples.iter().map(|d| d.as_secs_f64() * 1000.0).collect();
        ms.sort_by(|a, b| a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal));
        let at = |q: f64| {
            ms.get(((ms.len() as f64 - 1.0) * q).round() as usize)
                .copied()
                .unwrap_or(f64::NAN)
        };
        Stats {
            n: ms.len(),
            median: at(0.5),
            p10: at(0.1),
            p90: at(0.9),
        }
    }

    /// As JSON.
    pub fn json(&self) -> Value {
        serde_json::json!({"n": self.n, "median_ms": round(self.median), "p10_ms": round(self.p10), "p90_ms": round(self.p90)})
    }
}

/// Rounds to two decimals.
pub fn round(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}
