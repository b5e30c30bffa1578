//! Real traffic between namespaces with the `mcast` helper: unpinned sockets, as a DDS stack that does
//! not choose an interface behaves.

use std::io::{BufRead, BufReader};
use std::process::{Child, Stdio};

use crate::netns::Netns;
use crate::plugin::workspace_bin;

/// A receiver that has joined its group and is waiting for datagrams.
pub struct Receiver {
    child: Child,
    lines: std::io::Lines<BufReader<std::process::ChildStdout>>,
}

impl Receiver {
    /// Starts `mcast recv` in `ns` and waits until it has joined.
    pub fn start(ns: &Netns, group: &str, port: u16, count: usize, timeout_ms: u64) -> Receiver {
        let bin = workspace_bin("mcast");
        let mut child = ns
            .command(bin.to_str().expect("utf-8"))
            .args([
                "recv",
                group,
                &port.to_string(),
                &count.to_string(),
                &timeout_ms.to_string(),
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start mcast recv");
        let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
        let first = lines.next().and_then(Result::ok).unwrap_or_default();
        assert_eq!(
            first,
            "ready",
            "receiver in {} could not join {group}: {first}",
            ns.name()
        );
        Receiver { child, lines }
    }

    /// Waits for the receiver and returns the sources of what it got.
    pub fn finish(mut self) -> Vec<String> {
        let mut sources = Vec::new();
        for line in self.lines.by_ref().map_while(Result::ok) {
            if let Some(rest) = line.strip_prefix("from ") {
                sources.push(rest.split_whitespace().next().unwrap_or_default().to_string());
            }
        }
        let _ = self.child.wait();
        sources
    }
}

/// Sends `count` datagrams to `group:port` from `ns` without choosing an interface; returns whether
/// the kernel accepted them (it refuses with ENETUNREACH when no route covers the group).
pub fn send(ns: &Netns, group: &str, port: u16, count: usize) -> bool {
    let bin = workspace_bin("mcast");
    ns.exec(
        bin.to_str().expect("utf-8"),
        &["send", group, &port.to_string(), &count.to_string()],
    )
    .status
    .success()
}

/// Sends from `from` to every receiver namespace and returns how many datagrams each received.
pub fn exchange(from: &Netns, to: &[&Netns], group: &str, port: u16, count: usize) -> Vec<usize> {
    let receivers: Vec<Receiver> = to
        .iter()
        .map(|ns| Receiver::start(ns, group, port, count, 2000))
        .collect();
    send(from, group, port, count);
    receivers.into_iter().map(|r| r.finish().len()).collect()
}
