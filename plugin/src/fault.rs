//! Crash points for fault-injection tests, compiled in only with the `fault-injection` feature (the
//! test build in `target/faults`); in every other build [`point`] is an empty inline function.
//!
//! A test sets `ROSLAN_FAULT=<point>` and roslan sends itself SIGKILL when it reaches that point:
//! nothing runs afterwards, no destructor, no rollback, as when the node's OOM killer or a power cut
//! stops it. The tests then check that DEL and GC still leave no link and no reservation behind and
//! that a new ADD succeeds.

/// Every crash point, in the order a command reaches them.
pub const POINTS: &[&str] = &[
    "add:parsed",
    "add:created",
    "add:pod-visited",
    "add:ipam-uncommitted",
    "add:reserved",
    "add:sysctls",
    "add:addressed",
    "add:up",
    "add:flags",
    "add:routed",
    "del:parsed",
    "del:pod-visited",
    "del:link-deleted",
    "del:ipam-uncommitted",
    "del:released",
];

/// Stops the process dead if `ROSLAN_FAULT` names this point.
#[cfg(feature = "fault-injection")]
pub fn point(name: &str) {
    debug_assert!(POINTS.contains(&name), "unknown fault point {name}");
    if std::env::var("ROSLAN_FAULT").is_ok_and(|wanted| wanted == name) {
        let _ = nix::sys::signal::kill(nix::unistd::getpid(), nix::sys::signal::Signal::SIGKILL);
        std::process::abort();
    }
}

/// Nothing: fault injection is not compiled in.
#[cfg(not(feature = "fault-injection"))]
#[inline(always)]
pub fn point(_name: &str) {}
