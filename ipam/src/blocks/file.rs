//! The two files through which the node agent tells this node what it holds, so that nothing on the
//! pod-start path talks to the API server:
//!
//! - the blocks file (`nodeBlocks.file`, default [`DEFAULT_BLOCKS_FILE`]): the blocks leased for this
//!   node, per network. ADD reads it under the store's lock and allocates only inside those blocks. The
//!   agent replaces it with a rename, so a reader sees the old or the new list, never half of one;
//! - the status file ([`status_path`], next to it): whether the agent reaches the API server, since when,
//!   and what it could not do. `roslan doctor` reads it, so it needs no API access either.
//!
//! Both are plain lines of `keyword value`, readable with `cat`; `#` starts a comment. Keywords a reader
//! does not know are skipped, so that an older plugin can read a newer agent's files.

use std::fmt::Write as _;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use ipnetwork::IpNetwork;

use crate::IpamError;
use crate::file::{Links, read_regular};

/// Where the agent writes a node's blocks unless `nodeBlocks.file` says otherwise.
pub const DEFAULT_BLOCKS_FILE: &str = "/var/lib/roslan/node-blocks";
/// The status file's name, in the blocks file's directory.
pub const STATUS_FILE_NAME: &str = "agent-status";
/// The largest blocks or status file read: 1 MiB is about 30,000 blocks, more than any LAN range has.
pub const MAX_FILE: u64 = 1 << 20;

/// The status file that belongs to `blocks_file`.
pub fn status_path(blocks_file: &Path) -> PathBuf {
    blocks_file.with_file_name(STATUS_FILE_NAME)
}

/// What the blocks file says: the node it was written for and its blocks, per network.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NodeBlocks {
    /// The Kubernetes node name the agent leased for.
    pub node: String,
    /// (network name, block), in the order written.
    pub blocks: Vec<(String, IpNetwork)>,
}

fn malformed(path: &Path, line: usize, problem: impl Into<String>) -> IpamError {
    IpamError::BlocksFile {
        path: path.to_path_buf(),
        line,
        problem: problem.into(),
    }
}

/// Reads `path` (bounded, never blocking, a regular file only); `None` when it does not exist.
fn read_text(path: &Path) -> Result<Option<String>, IpamError> {
    match read_regular(path, MAX_FILE, Links::Follow) {
        Ok(data) => String::from_utf8(data)
            .map(Some)
            .map_err(|_| malformed(path, 0, "not UTF-8 text")),
        Err(IpamError::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(err) => Err(err),
    }
}

/// The lines that carry something: (line number from 1, keyword, rest).
fn entries(text: &str) -> impl Iterator<Item = (usize, &str, &str)> {
    text.lines().enumerate().filter_map(|(i, line)| {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            return None;
        }
        let (key, rest) = line.split_once(' ').unwrap_or((line, ""));
        Some((i + 1, key, rest.trim()))
    })
}

impl NodeBlocks {
    /// Parses the file's text; `path` is only for messages.
    pub fn parse(text: &str, path: &Path) -> Result<NodeBlocks, IpamError> {
        let mut out = NodeBlocks::default();
        for (line, key, rest) in entries(text) {
            match key {
                "node" => out.node = rest.to_string(),
                "block" => {
                    let (cidr, network) = rest
                        .split_once(' ')
                        .ok_or_else(|| malformed(path, line, "expected \"block <CIDR> <network>\""))?;
                    let block: IpNetwork = cidr
                        .parse()
                        .map_err(|_| malformed(path, line, format!("{cidr:?} is not a CIDR block")))?;
                    if block.ip() != block.network() {
                        return Err(malformed(path, line, format!("{block} has host bits set")));
                    }
                    out.blocks.push((network.trim().to_string(), block));
                }
                _ => {}
            }
        }
        Ok(out)
    }

    /// The file's text.
    pub fn render(&self) -> String {
        let mut text = String::from(
            "# roslan node address blocks: written by roslan-install (the node agent) from its Leases.\n\
             # Every ADD of a nodeBlocks network allocates inside these blocks and never asks the API server.\n",
        );
        let _ = writeln!(text, "node {}", self.node);
        for (network, block) in &self.blocks {
            let _ = writeln!(text, "block {block} {network}");
        }
        text
    }

    /// The blocks of `network`.
    pub fn of(&self, network: &str) -> Vec<IpNetwork> {
        self.blocks
            .iter()
            .filter(|(n, _)| n == network)
            .map(|(_, b)| *b)
            .collect()
    }

    /// Reads the blocks file; `None` when it does not exist (the agent has not written it yet).
    pub fn read(path: &Path) -> Result<Option<NodeBlocks>, IpamError> {
        read_text(path)?.map(|text| NodeBlocks::parse(&text, path)).transpose()
    }
}

/// Whether the agent reached the API server on its last try.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ApiState {
    /// Its last request was answered.
    Reachable,
    /// Its last request failed (no connection, a timeout, a server error); it retries with backoff.
    Unreachable,
}

/// What the status file says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AgentStatus {
    /// When the agent wrote it (Unix seconds): a stale file means the agent is not running.
    pub updated: u64,
    /// The node it works for.
    pub node: String,
    /// The API server's state.
    pub api: ApiState,
    /// Since when (Unix seconds) the API server has been in that state.
    pub since: u64,
    /// When the API server last answered (Unix seconds), if ever.
    pub last_contact: Option<u64>,
    /// The last error talking to it.
    pub error: Option<String>,
    /// Seconds until the next try, while unreachable.
    pub retry_in: Option<u64>,
    /// What the agent cannot do for this node right now, one sentence each (a range with no free block,
    /// a missing Node object, a block another node holds).
    pub problems: Vec<String>,
}

/// One line of text: what a status line may hold.
fn one_line(text: &str) -> String {
    text.replace(['\n', '\r'], " ")
}

impl AgentStatus {
    /// The file's text.
    pub fn render(&self) -> String {
        let mut text =
            String::from("# roslan node agent status: written by roslan-install, read by `roslan doctor`.\n");
        let _ = writeln!(text, "updated {}", self.updated);
        let _ = writeln!(text, "node {}", one_line(&self.node));
        let state = match self.api {
            ApiState::Reachable => "reachable",
            ApiState::Unreachable => "unreachable",
        };
        let _ = writeln!(text, "api {state}");
        let _ = writeln!(text, "api-since {}", self.since);
        if let Some(at) = self.last_contact {
            let _ = writeln!(text, "api-last-contact {at}");
        }
        if let Some(err) = &self.error {
            let _ = writeln!(text, "api-error {}", one_line(err));
        }
        if let Some(seconds) = self.retry_in {
            let _ = writeln!(text, "api-retry-in {seconds}");
        }
        for problem in &self.problems {
            let _ = writeln!(text, "problem {}", one_line(problem));
        }
        text
    }

    /// Parses the file's text; `path` is only for messages.
    pub fn parse(text: &str, path: &Path) -> Result<AgentStatus, IpamError> {
        let mut status = AgentStatus {
            updated: 0,
            node: String::new(),
            api: ApiState::Unreachable,
            since: 0,
            last_contact: None,
            error: None,
            retry_in: None,
            problems: Vec::new(),
        };
        let mut seen_api = false;
        for (line, key, rest) in entries(text) {
            let number = || {
                rest.parse::<u64>()
                    .map_err(|_| malformed(path, line, format!("{key}: {rest:?} is not a number")))
            };
            match key {
                "updated" => status.updated = number()?,
                "node" => status.node = rest.to_string(),
                "api" => {
                    seen_api = true;
                    status.api = match rest {
                        "reachable" => ApiState::Reachable,
                        "unreachable" => ApiState::Unreachable,
                        other => return Err(malformed(path, line, format!("api {other:?}"))),
                    }
                }
                "api-since" => status.since = number()?,
                "api-last-contact" => status.last_contact = Some(number()?),
                "api-error" => status.error = Some(rest.to_string()),
                "api-retry-in" => status.retry_in = Some(number()?),
                "problem" => status.problems.push(rest.to_string()),
                _ => {}
            }
        }
        if !seen_api {
            return Err(malformed(path, 0, "no \"api\" line"));
        }
        Ok(status)
    }

    /// Reads the status file; `None` when it does not exist.
    pub fn read(path: &Path) -> Result<Option<AgentStatus>, IpamError> {
        read_text(path)?.map(|text| AgentStatus::parse(&text, path)).transpose()
    }
}

/// Whether `ip` lies in one of `blocks`.
pub fn in_blocks(blocks: &[IpNetwork], ip: IpAddr) -> bool {
    blocks.iter().any(|b| b.contains(ip))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_round_trip_and_refuse_what_is_not_a_block() {
        let path = Path::new("/x");
        let blocks = NodeBlocks {
            node: "robot-1".into(),
            blocks: vec![
                ("ros-lan".into(), "10.77.1.0/28".parse().unwrap()),
                ("other net".into(), "fd00::10/124".parse().unwrap()),
            ],
        };
        let text = blocks.render();
        assert_eq!(NodeBlocks::parse(&text, path).unwrap(), blocks);
        assert_eq!(blocks.of("ros-lan").len(), 1);
        assert_eq!(blocks.of("other net")[0].to_string(), "fd00::10/124");
        assert!(in_blocks(&blocks.of("ros-lan"), "10.77.1.15".parse().unwrap()));
        let err = NodeBlocks::parse("node a\nblock 10.0.0.1/28 net\n", path).unwrap_err();
        assert!(err.to_string().contains("line 2"), "{err}");
        assert!(NodeBlocks::parse("block nonsense net\n", path).is_err());
        assert!(NodeBlocks::parse("block 10.0.0.0/28\n", path).is_err());
        // Unknown keywords are a newer agent's: skipped.
        assert_eq!(NodeBlocks::parse("future x\nnode b\n", path).unwrap().node, "b");
    }

    #[test]
    fn status_round_trips() {
        let status = AgentStatus {
            updated: 10,
            node: "robot-1".into(),
            api: ApiState::Unreachable,
            since: 5,
            last_contact: Some(4),
            error: Some("connect: refused\nsecond line".into()),
            retry_in: Some(8),
            problems: vec!["no free block".into()],
        };
        let parsed = AgentStatus::parse(&status.render(), Path::new("/s")).unwrap();
        assert_eq!(parsed.error.as_deref(), Some("connect: refused second line"));
        assert_eq!(parsed.retry_in, Some(8));
        assert_eq!(parsed.problems, ["no free block"]);
        assert_eq!(parsed.api, ApiState::Unreachable);
        assert!(AgentStatus::parse("updated 1\n", Path::new("/s")).is_err());
        assert_eq!(
            status_path(Path::new("/var/lib/roslan/node-blocks")),
            Path::new("/var/lib/roslan/agent-status")
        );
    }
}
