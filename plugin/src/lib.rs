//! roslan: a CNI plugin that puts ROS 2 pods on the robot's LAN so that DDS discovery just works.
//!
//! On ADD it creates a macvlan (bridge mode) on the node's LAN interface directly inside the pod's
//! network namespace, allocates addresses in-process with host-local's semantics and on-disk format,
//! and routes multicast through that interface with no gateway. The crate is organised in layers by
//! job, each module importing only the ones below it (`tests/import_graph.rs` fails on a cycle):
//!
//! - leaves: [`mac`], [`log`], [`fault`], [`alias`] (the link alias, formatted and parsed only there),
//!   [`netns`] (entering the pod safely), [`sysctl`] (the mechanics of `/proc/sys`), [`child`] (a
//!   program run with a deadline: delegates, the doctor, the installer);
//! - [`netlink`]: the one facade over rtnetlink, with its own error and `MacvlanMode`; [`arp`];
//! - [`error`]: the error type and the single mapping to CNI error codes;
//! - [`cni`]: the protocol (environment, CNI_ARGS, versions, results, the error object);
//! - [`config`]: the network configuration on stdin, every problem reported at once with its scope;
//! - [`master`]; [`ipam`]: the built-in allocator
//!   ([`roslan_ipam_core`] does the pure work), delegation and the standalone `roslan-ipam`;
//! - [`commands`]: ADD, DEL, CHECK, STATUS, GC, VERSION; [`cli`]: `validate`, `doctor`, `probe`.
//!
//! [`run`] is the whole plugin: the `roslan` binary only forwards its exit code.

pub mod alias;
pub mod arp;
pub mod child;
pub mod cli;
pub mod cni;
pub mod commands;
pub mod config;
pub mod error;
pub mod fault;
pub mod ipam;
pub mod log;
pub mod mac;
pub mod master;
pub mod netlink;
pub mod netns;
pub mod sysctl;

use std::ffi::OsString;
use std::io::{Read, Write};

use serde_json::Value;

use cni::{Command, ErrorReply, Request, Version};
use config::NetConf;
use error::{ConfigProblem, Error};

/// The banner printed on stderr when the binary runs without CNI_COMMAND.
pub fn banner() -> String {
    format!(
        "roslan {}: CNI plugin putting ROS 2 pods on the LAN (macvlan + multicast routes).\nCNI protocol versions supported: {}\n",
        env!("CARGO_PKG_VERSION"),
        cni::version::supported_strings().join(", ")
    )
}

/// Which binary is answering.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// `roslan`, the main plugin.
    Plugin,
    /// `roslan-ipam`, the IPAM plugin for other main plugins.
    Ipam,
}

/// Runs one CNI invocation of the `roslan` plugin: reads the environment and stdin, writes the result
/// or error JSON to `stdout`, and returns the process exit code.
pub fn run(env: impl Fn(&str) -> Option<OsString>, stdin: impl Read, stdout: &mut impl Write) -> i32 {
    run_as(Role::Plugin, env, stdin, stdout)
}

/// Runs one CNI invocation in the given role.
pub fn run_as(role: Role, env: impl Fn(&str) -> Option<OsString>, stdin: impl Read, stdout: &mut impl Write) -> i32 {
    let request = match Request::read(env, stdin) {
        Ok(Some(request)) => request,
        Ok(None) => {
            eprint!("{}", banner());
            return 0;
        }
        Err(err) => return fail(stdout, &err, None),
    };
    let mut version = None;
    let outcome = if request.command == Command::Version {
        Ok(Some(commands::version::version(&request.stdin)))
    } else {
        match role {
            Role::Plugin => dispatch(&request, &mut version),
            Role::Ipam => dispatch_ipam(&request, &mut version),
        }
    };
    match outcome {
        Ok(Some(output)) => {
            let _ = writeln!(stdout, "{output}");
            0
        }
        Ok(None) => 0,
        Err(err) => fail(stdout, &err, version),
    }
}

fn fail(stdout: &mut impl Write, err: &Error, version: Option<Version>) -> i32 {
    log::error!("{err}");
    let reply = serde_json::to_string(&ErrorReply::of(err, version)).unwrap_or_else(|_| String::from("{\"code\":100}"));
    let _ = writeln!(stdout, "{reply}");
    1
}

/// The network configuration on stdin, and its version for the error reply. DEL must not fail on a
/// version it does not know (a downgrade would otherwise wedge every pod created by the newer plugin):
/// it cleans up as the newest version roslan speaks.
fn read_config(request: &Request, version: &mut Option<Version>) -> Result<Value, Error> {
    let mut value = NetConf::decode(&request.stdin)?;
    *version = NetConf::version_of(&value);
    if request.command == Command::Del && version.is_none() {
        value["cniVersion"] = Value::from(Version::latest().as_str());
    }
    Ok(value)
}

/// Logging as the configuration asks, before any work, and the warnings parsing collected. A `logFile`
/// roslan must not write to comes back as a configuration problem.
fn start_log(conf: &NetConf, request: &Request, role: &str, problems: &mut Vec<ConfigProblem>) {
    let opened = log::configure(
        conf.log_level,
        conf.log_file.as_deref(),
        format!(
            "{role}{} {} {} {}: ",
            request.command.as_str(),
            conf.name,
            request.container_id,
            request.ifname
        ),
    );
    if let Err(message) = opened {
        problems.push(ConfigProblem::new("logFile", message));
    }
    for line in &conf.warnings {
        log::warn!("{line}");
    }
}

fn dispatch(request: &Request, version: &mut Option<Version>) -> Result<Option<Value>, Error> {
    let value = read_config(request, version)?;
    let (conf, mut problems) = NetConf::parse(&value)?;
    start_log(&conf, request, "", &mut problems);
    if !request.command.is_cleanup() {
        conf.refuse_unsupported()?;
    }
    config::refuse(request.command, problems)?;
    match request.command {
        Command::Add => Ok(Some(commands::add::add(request, &conf)?.to_json(conf.version))),
        Command::Check => commands::check::check(request, &conf).map(|()| None),
        Command::Del => commands::del::del(request, &conf).map(|()| None),
        Command::Status => commands::status::status(request, &conf).map(|()| None),
        Command::Gc => commands::gc::gc(request, &conf, &value).map(|()| None),
        Command::Version => unreachable!("answered before the configuration is read"),
    }
}

fn dispatch_ipam(request: &Request, version: &mut Option<Version>) -> Result<Option<Value>, Error> {
    let value = read_config(request, version)?;
    let (conf, mut problems) = ipam::standalone::parse(&value)?;
    start_log(&conf, request, "ipam ", &mut problems);
    config::refuse(request.command, problems)?;
    ipam::standalone::dispatch(request, &conf, &value)
}
