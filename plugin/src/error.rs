//! roslan's error type and its mapping to CNI error codes: the one place where codes are decided.
//!
//! Spec codes are used wherever the spec has one (1 version, 2 unsupported field, 4 environment, 5 I/O,
//! 6 decode, 7 configuration, 11 try again, 50 unavailable); roslan's own failures use 100 and up, so a
//! runtime log line is enough to tell "the kernel refused" from "the pool is exhausted".

use std::fmt;
use std::io;

use roslan_ipam_core::IpamError;

use crate::netlink::NetlinkError;
use crate::netns::NetnsError;

/// roslan-specific codes (100+), documented in docs/configuration.md.
pub mod code {
    /// The kernel refused a netlink request.
    pub const NETLINK: u32 = 100;
    /// CNI_IFNAME already exists in the pod.
    pub const INTERFACE_EXISTS: u32 = 101;
    /// The master interface is missing or unusable.
    pub const MASTER: u32 = 102;
    /// No free address in a range set.
    pub const EXHAUSTED: u32 = 103;
    /// A requested address cannot be given.
    pub const REQUESTED_ADDRESS: u32 = 104;
    /// The attachment already holds an address.
    pub const DUPLICATE: u32 = 105;
    /// A sysctl could not be read or written.
    pub const SYSCTL: u32 = 106;
    /// CHECK found the attachment different from its ADD result.
    pub const CHECK_FAILED: u32 = 107;
    /// A delegated IPAM plugin failed without a usable CNI error.
    pub const DELEGATE: u32 = 108;
}

/// One problem in the network configuration, with the key it concerns.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigProblem {
    /// Dotted path of the key, e.g. `ipam.ranges[0][1].subnet`.
    pub key: String,
    /// What is wrong and the expected form.
    pub message: String,
    /// Which commands the problem stops, said by the code that found it.
    pub scope: Scope,
}

/// Who reads a configuration key, and so which commands a problem with it must stop. Ordered: each
/// scope is read by everything the one before it is read by, and more.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
pub enum Scope {
    /// Only the main plugin (the master, the link, multicast): ADD, CHECK and STATUS refuse the
    /// problem; DEL and GC go on, so that pods can always be torn down.
    #[default]
    Plugin,
    /// The IPAM reads it too (its section, the requested addresses, the version): the standalone
    /// `roslan-ipam` refuses it as well.
    Ipam,
    /// DEL and GC need it to find the reservations (`name`, `ipam.dataDir`): every command refuses it.
    Store,
}

impl ConfigProblem {
    /// A problem with `key` that concerns only the main plugin ([`Scope::Plugin`]).
    pub fn new(key: impl Into<String>, message: impl Into<String>) -> ConfigProblem {
        ConfigProblem {
            key: key.into(),
            message: message.into(),
            scope: Scope::Plugin,
        }
    }
}

impl fmt::Display for ConfigProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.key.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "\"{}\": {}", self.key, self.message)
        }
    }
}

/// Every error roslan reports.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The request's cniVersion is not one roslan implements, or the command needs a newer one.
    #[error("incompatible CNI versions: {detail}")]
    IncompatibleVersion {
        /// What was asked and what is supported.
        detail: String,
    },
    /// A field roslan knows but cannot honour.
    #[error("unsupported field \"{key}\": {why}")]
    UnsupportedField {
        /// The key.
        key: String,
        /// Why, and what to use instead.
        why: String,
    },
    /// A missing or invalid environment variable.
    #[error("{var}: {problem}")]
    Env {
        /// The variable's name.
        var: &'static str,
        /// What is wrong with it.
        problem: String,
    },
    /// Reading stdin or another I/O step failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// stdin (or a delegate's output) is not the JSON it should be.
    #[error("{what}: {detail}")]
    Decode {
        /// What was being decoded.
        what: &'static str,
        /// The parser's complaint.
        detail: String,
    },
    /// The network configuration is invalid; all problems are listed.
    #[error("{}", join_problems(.0))]
    Config(Vec<ConfigProblem>),
    /// A condition that should clear by itself.
    #[error("{0}; try again later")]
    TryAgain(String),
    /// STATUS: ADD cannot be served now.
    #[error("{0}")]
    Unavailable(String),
    /// The kernel refused an operation.
    #[error("{op}: {source}")]
    Netlink {
        /// The step, in words (e.g. "create macvlan on enp3s0").
        op: String,
        /// The kernel's answer.
        #[source]
        source: NetlinkError,
    },
    /// CNI_IFNAME is taken in the pod.
    #[error(
        "interface {ifname:?} already exists in {netns}; choose another CNI_IFNAME or DEL the attachment that owns it"
    )]
    InterfaceExists {
        /// The name.
        ifname: String,
        /// CNI_NETNS.
        netns: String,
    },
    /// The master interface cannot be used.
    #[error("{0}")]
    Master(String),
    /// Allocation or the store failed.
    #[error(transparent)]
    Ipam(#[from] IpamError),
    /// A sysctl write or read failed.
    #[error("sysctl {key}: {source}")]
    Sysctl {
        /// The dotted key.
        key: String,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// CHECK found a difference; each entry names what is wrong.
    #[error("CHECK failed: {}", .0.join("; "))]
    CheckFailed(Vec<String>),
    /// A delegated IPAM plugin reported an error (its own code is kept).
    #[error("IPAM plugin {plugin:?}: {msg}")]
    Delegate {
        /// The delegate's type.
        plugin: String,
        /// The code it returned (or roslan's delegate code if it returned none).
        code: u32,
        /// Its message.
        msg: String,
        /// Its details.
        details: Option<String>,
    },
}

fn join_problems(problems: &[ConfigProblem]) -> String {
    match problems {
        [] => "invalid network configuration".to_string(),
        [one] => format!("invalid network configuration: {one}"),
        many => {
            let list = many.iter().map(ToString::to_string).collect::<Vec<_>>().join("; ");
            format!("invalid network configuration ({} problems): {list}", many.len())
        }
    }
}

impl Error {
    /// The CNI error code for this error.
    pub fn code(&self) -> u32 {
        match self {
            Error::IncompatibleVersion { .. } => 1,
            Error::UnsupportedField { .. } => 2,
            Error::Env { .. } => 4,
            Error::Io { .. } => 5,
            Error::Decode { .. } => 6,
            Error::Config(_) => 7,
            Error::TryAgain(_) => 11,
            Error::Unavailable(_) => 50,
            Error::Netlink { .. } => code::NETLINK,
            Error::InterfaceExists { .. } => code::INTERFACE_EXISTS,
            Error::Master(_) => code::MASTER,
            Error::Ipam(err) => ipam_code(err),
            Error::Sysctl { .. } => code::SYSCTL,
            Error::CheckFailed(_) => code::CHECK_FAILED,
            Error::Delegate { code, .. } => *code,
        }
    }

    /// Longer context for the `details` field, when there is any. A version error's details, the
    /// versions roslan speaks, are the protocol's to say: [`crate::cni::reply`] adds them.
    pub fn details(&self) -> Option<String> {
        match self {
            Error::IncompatibleVersion { .. } => None,
            Error::Netlink { source, .. } => source.ext_ack().map(str::to_string),
            Error::Delegate { details, .. } => details.clone(),
            _ => None,
        }
    }

    /// Shorthand for an invalid environment variable.
    pub fn env(var: &'static str, problem: impl Into<String>) -> Error {
        Error::Env {
            var,
            problem: problem.into(),
        }
    }

    /// Shorthand for a single configuration problem.
    pub fn config(key: impl Into<String>, message: impl Into<String>) -> Error {
        Error::Config(vec![ConfigProblem::new(key, message)])
    }

    /// Shorthand for a netlink failure during `op`.
    pub fn netlink(op: impl Into<String>) -> impl FnOnce(NetlinkError) -> Error {
        let op = op.into();
        move |source| match source {
            // Not a netlink failure: the namespace was the problem, reported as such.
            NetlinkError::Namespace(err) => Error::from(err),
            source => Error::Netlink { op, source },
        }
    }
}

/// A namespace that cannot be opened or entered is CNI_NETNS's problem (code 4); not being able to read
/// the thread's own namespace is an I/O failure.
impl From<NetnsError> for Error {
    fn from(err: NetnsError) -> Error {
        match err {
            NetnsError::Current { path, source } => Error::Io {
                what: format!("open {path}"),
                source,
            },
            other => Error::env("CNI_NETNS", other.to_string()),
        }
    }
}

/// Setting up netlink (runtime, socket, entering the namespace to connect in), where no step names
/// the request.
impl From<NetlinkError> for Error {
    fn from(err: NetlinkError) -> Error {
        Error::netlink("connect to netlink")(err)
    }
}

fn ipam_code(err: &IpamError) -> u32 {
    match err {
        IpamError::Exhausted { .. } => code::EXHAUSTED,
        IpamError::RequestedIsGateway { .. }
        | IpamError::RequestedUnavailable { .. }
        | IpamError::RequestedReserved { .. }
        | IpamError::RequestedSameSet { .. }
        | IpamError::RequestedOutsideRanges { .. } => code::REQUESTED_ADDRESS,
        IpamError::Duplicate { .. } => code::DUPLICATE,
        IpamError::Io { .. } => 5,
        // The agent replaces the file whole; a broken one is fixed by its next write, not by the user.
        IpamError::BlocksFile { .. } => 11,
        IpamError::MissingSubnet
        | IpamError::MappedSubnet { .. }
        | IpamError::RangeReversed { .. }
        | IpamError::ReservedAddress { .. }
        | IpamError::NotRegularFile { .. }
        | IpamError::FileTooLarge { .. }
        | IpamError::SubnetTooSmall { .. }
        | IpamError::HostBitsSet { .. }
        | IpamError::OutsideSubnet { .. }
        | IpamError::FamilyMismatch { .. }
        | IpamError::EmptyRangeSet
        | IpamError::MixedFamilies
        | IpamError::RangesOverlap { .. }
        | IpamError::RangeSetsOverlap { .. }
        | IpamError::NoRanges
        | IpamError::BadNetworkName(_)
        | IpamError::Symlink(_) => 7,
    }
}
