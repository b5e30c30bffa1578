//! The checks. Each builds its own throwaway LAN (node, LAN host, pods), drives the plugin as a runtime
//! would, and looks at the namespaces and the IPAM files afterwards, so a check cannot pass on what the
//! plugin says alone.
//!
//! The requirements are the spec's MUSTs (result shapes, CHECK, DEL tolerance, error objects, STATUS
//! and GC in 1.1.0) and the CNI conventions runtimes rely on (CNI_ARGS with IgnoreUnknown). "Nothing
//! left behind" is not spelled out in the spec, but a runtime retries a failed ADD with the same
//! interface name, so anything left makes the retry fail: kubelet's retry loop turns a leak into a pod
//! that never starts.

use std::collections::HashSet;
use std::panic::{AssertUnwindSafe, catch_unwind};

use serde_json::{Value, json};

use super::scorecard::{Outcome, Record};
use super::shape::{self, Claims, KNOWN_VERSIONS, at_least};
use super::subject::{CHECK_ROUTE, Pool, Subject, leftovers, reservations};
use crate::lan::{Lan, MASTER, Pod};
use crate::plugin::Reply;

/// The interface name every check asks for.
pub const IFNAME: &str = "net1";
/// How many ADDs run at once in the concurrency check.
pub const CONCURRENT_ADDS: usize = 50;

/// What every check needs.
pub struct Ctx {
    /// The plugin and its configuration.
    pub subject: Subject,
    /// Known versions the plugin claims, oldest first.
    pub versions: Vec<String>,
    /// Run only checks whose id contains this.
    pub only: Option<String>,
}

impl Ctx {
    /// The newest claimed version: what version-independent checks speak.
    fn main(&self) -> &str {
        self.versions.last().map(String::as_str).unwrap_or("0.1.0")
    }

    fn selected(&self, id: &str) -> bool {
        self.only.as_deref().is_none_or(|only| id.contains(only))
    }

    fn claims(&self, version: &str) -> bool {
        self.versions.iter().any(|v| v == version)
    }
}

type Verdict = Result<(), Outcome>;

fn fail(reason: impl Into<String>) -> Outcome {
    Outcome::Fail(reason.into())
}

fn na(reason: impl Into<String>) -> Outcome {
    Outcome::NotApplicable(reason.into())
}

fn ensure(ok: bool, reason: impl FnOnce() -> String) -> Verdict {
    if ok { Ok(()) } else { Err(fail(reason())) }
}

/// The reply in a line: the error message when there is one, else stdout, else stderr.
fn brief(reply: &Reply) -> String {
    let text = match reply.json.as_ref().and_then(|j| j.get("msg")).and_then(Value::as_str) {
        Some(msg) => format!(
            "code {}: {msg}",
            reply.code().map(|c| c.to_string()).unwrap_or_default()
        ),
        None if !reply.stdout.trim().is_empty() => reply.stdout.trim().to_string(),
        None => reply.stderr.trim().to_string(),
    };
    let text = text.replace('\n', " ");
    let cut: String = text.chars().take(200).collect();
    if cut.len() < text.len() {
        format!("{cut}...")
    } else {
        cut
    }
}

/// The call succeeded (exit 0); returns its JSON output, `Null` if it printed none.
fn succeeded(reply: &Reply, what: &str) -> Result<Value, Outcome> {
    if reply.status != 0 {
        return Err(fail(format!("{what} failed (exit {}): {}", reply.status, brief(reply))));
    }
    Ok(reply.json.clone().unwrap_or(Value::Null))
}

/// The call failed the way the spec says: non-zero exit and an error object on stdout, with `code`
/// when one is given.
fn refused(reply: &Reply, what: &str, code: Option<u64>) -> Verdict {
    if reply.status == 0 {
        return Err(fail(format!("{what} succeeded (exit 0): {}", brief(reply))));
    }
    let Some(error) = reply.json.as_ref().filter(|j| j.is_object()) else {
        return Err(fail(format!(
            "{what} exited {} without an error object on stdout (stdout: {:?})",
            reply.status,
            reply.stdout.trim()
        )));
    };
    let got = error.get("code").and_then(Value::as_u64);
    if error.get("msg").and_then(Value::as_str).is_none_or(str::is_empty) {
        return Err(fail(format!("{what}: the error object has no msg: {error}")));
    }
    match (code, got) {
        (_, None) => Err(fail(format!("{what}: the error object has no numeric code: {error}"))),
        (Some(want), Some(got)) if want != got => {
            Err(fail(format!("{what}: code {got} instead of {want} ({})", brief(reply))))
        }
        _ => Ok(()),
    }
}

fn nothing_left(lan: &Lan, pod: &Pod, keep: &[&str], held: usize, subject: &Subject, after: &str) -> Verdict {
    let found = leftovers(lan, &pod.ns, keep, held, subject);
    ensure(found.is_empty(), || format!("after {after}: {}", found.join(", ")))
}

/// The namespace holds what the result claims.
fn matches_namespace(pod: &Pod, claims: &Claims) -> Verdict {
    let link = pod
        .ns
        .link(IFNAME)
        .ok_or_else(|| fail(format!("the result is fine but there is no {IFNAME} in the pod")))?;
    let held = pod.ns.addresses(IFNAME);
    for address in &claims.addresses {
        ensure(held.contains(&address.text()), || {
            format!("the result reports {} but {IFNAME} holds {held:?}", address.text())
        })?;
    }
    if let (Some(mac), Some(actual)) = (&claims.mac, link["address"].as_str()) {
        ensure(mac.eq_ignore_ascii_case(actual), || {
            format!("the result reports MAC {mac} but {IFNAME} has {actual}")
        })?;
    }
    Ok(())
}

fn released(lan: &Lan, subject: &Subject, held: usize, after: &str) -> Verdict {
    if !subject.file_ipam() {
        return Ok(());
    }
    let now = reservations(lan, subject.name());
    ensure(now.len() == held, || {
        format!(
            "after {after}, {} reservation(s) remain instead of {held}: {now:?}",
            now.len()
        )
    })
}

/// Runs one check, turning a runner panic (a broken namespace command) into a failure with the reason.
fn guarded(work: impl FnOnce() -> Verdict) -> Outcome {
    match catch_unwind(AssertUnwindSafe(work)) {
        Ok(Ok(())) => Outcome::Pass,
        Ok(Err(outcome)) => outcome,
        Err(panic) => {
            let text = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            fail(format!("the runner itself failed: {text}"))
        }
    }
}

fn record(out: &mut Vec<Record>, id: String, requirement: &str, outcome: Outcome) {
    eprintln!("{:<4} {id}", outcome.word());
    out.push(Record {
        id,
        requirement: requirement.to_string(),
        outcome,
    });
}

/// Every check, in order.
pub fn run_all(ctx: &Ctx) -> Vec<Record> {
    let mut out = Vec::new();
    for version in &ctx.versions {
        let ids = ["add.result", "add.sandbox", "check.after-add", "del.after-add"].map(|id| format!("{id}@{version}"));
        if ids.iter().any(|id| ctx.selected(id)) {
            version_round(ctx, version, &mut out);
        }
    }
    out.retain(|r| ctx.selected(&r.id));
    for (id, requirement, check) in SINGLE {
        if ctx.selected(id) {
            let outcome = guarded(|| check(ctx));
            record(&mut out, id.to_string(), requirement, outcome);
        }
    }
    out
}

/// The known versions among those claimed, oldest first, and the unknown ones.
pub fn split_versions(claimed: &[String]) -> (Vec<String>, Vec<String>) {
    let known = KNOWN_VERSIONS
        .iter()
        .filter(|v| claimed.iter().any(|c| c == *v))
        .map(|v| v.to_string())
        .collect();
    let unknown = claimed
        .iter()
        .filter(|c| !KNOWN_VERSIONS.contains(&c.as_str()))
        .cloned()
        .collect();
    (known, unknown)
}

/// ADD, the result's shape and sandbox, CHECK and DEL, all in one version.
fn version_round(ctx: &Ctx, version: &str, out: &mut Vec<Record>) {
    let subject = &ctx.subject;
    let lan = Lan::new();
    let pod = lan.pod();
    let conf = subject.config(&lan, version, Pool::Wide);
    let reply = subject.add(&lan, &pod, IFNAME, &conf);
    let mut claims = None;
    let add = guarded(|| {
        let result = succeeded(&reply, "ADD")?;
        let found = shape::verify(version, &result, IFNAME).map_err(fail)?;
        matches_namespace(&pod, &found)?;
        claims = Some(found);
        Ok(())
    });
    let add_ok = add == Outcome::Pass;
    record(
        out,
        format!("add.result@{version}"),
        "ADD prints a result in exactly the requested version's format, and the namespace holds what it reports",
        add,
    );

    let sandbox = if !at_least(version, "0.3.0") {
        na("results before 0.3.0 have no interfaces")
    } else {
        guarded(|| {
            let claims = claims.as_ref().ok_or_else(|| fail("no valid ADD result to look at"))?;
            match &claims.sandbox {
                Some(sandbox) if *sandbox == pod.path() => Ok(()),
                Some(sandbox) => Err(fail(format!("sandbox is {sandbox:?}, CNI_NETNS was {:?}", pod.path()))),
                None => Err(fail(format!("the result lists no {IFNAME} with a sandbox"))),
            }
        })
    };
    record(
        out,
        format!("add.sandbox@{version}"),
        "the container interface in the result has sandbox = CNI_NETNS",
        sandbox,
    );

    let check = if !at_least(version, "0.4.0") {
        na("CHECK exists from 0.4.0 on")
    } else if !add_ok {
        na("ADD did not succeed (see add.result)")
    } else {
        guarded(|| {
            let result = reply.json.clone().unwrap_or(Value::Null);
            succeeded(&subject.check(&lan, &pod, IFNAME, &conf, &result), "CHECK").map(|_| ())
        })
    };
    record(
        out,
        format!("check.after-add@{version}"),
        "CHECK with the ADD's result as prevResult passes",
        check,
    );

    let del = guarded(|| {
        let reply = subject.del(&lan, &pod.id, &pod.path(), IFNAME, &conf, reply.json.as_ref());
        succeeded(&reply, "DEL")?;
        ensure(!pod.ns.has_link(IFNAME), || format!("{IFNAME} is still in the pod"))?;
        released(&lan, subject, 0, "DEL")?;
        nothing_left(&lan, &pod, &[], 0, subject, "DEL")
    });
    record(
        out,
        format!("del.after-add@{version}"),
        "DEL succeeds, removes the interface and releases the address",
        del,
    );
}

type Check = fn(&Ctx) -> Verdict;

/// The version-independent checks: id, requirement, check.
const SINGLE: [(&str, &str, Check); 23] = [
    (
        "add.existing-ifname",
        "ADD fails with an error when CNI_IFNAME already exists in the netns, and leaves that interface alone",
        existing_ifname,
    ),
    (
        "check.address-removed",
        "CHECK fails once the address is removed from the interface",
        |ctx| check_after_breaking(ctx, Breakage::Address),
    ),
    (
        "check.route-removed",
        "CHECK fails once a route from the result is removed",
        |ctx| check_after_breaking(ctx, Breakage::Route),
    ),
    (
        "check.link-removed",
        "CHECK fails once the interface is deleted",
        |ctx| check_after_breaking(ctx, Breakage::Link),
    ),
    ("del.twice", "a second DEL of the same attachment succeeds", del_twice),
    (
        "del.netns-gone",
        "DEL succeeds and releases the address when the netns no longer exists",
        del_netns_gone,
    ),
    (
        "del.netns-empty",
        "DEL succeeds and releases the address with an empty CNI_NETNS (containerd's second DEL)",
        del_netns_empty,
    ),
    (
        "del.never-added",
        "DEL of a container that was never added succeeds",
        del_never_added,
    ),
    (
        "del.master-gone",
        "DEL succeeds and releases the address after the master interface was deleted",
        del_master_gone,
    ),
    (
        "error.bad-json",
        "stdin that is not JSON: error object with code 6 on stdout, non-zero exit",
        error_bad_json,
    ),
    (
        "error.missing-name",
        "a configuration without name: error object with code 7, non-zero exit",
        error_missing_name,
    ),
    (
        "error.missing-env",
        "ADD without CNI_CONTAINERID: error object with code 4, non-zero exit",
        error_missing_env,
    ),
    (
        "error.unsupported-version",
        "a cniVersion the plugin does not support: error object with code 1, non-zero exit",
        error_unsupported_version,
    ),
    (
        "args.unknown-refused",
        "ADD refuses an unknown CNI_ARGS key without IgnoreUnknown, and leaves nothing behind",
        args_unknown_refused,
    ),
    (
        "args.ignore-unknown",
        "ADD accepts an unknown CNI_ARGS key with IgnoreUnknown=1",
        args_ignore_unknown,
    ),
    (
        "cleanup.exhausted",
        "an ADD that fails because the pool is exhausted leaves no link and no reservation",
        cleanup_exhausted,
    ),
    (
        "cleanup.address-taken",
        "an ADD asking (CNI_ARGS IP=) for an address another attachment holds fails and leaves nothing",
        cleanup_address_taken,
    ),
    (
        "concurrency.distinct",
        "50 concurrent ADDs all succeed with 50 distinct addresses, and their DELs release them all",
        concurrency_distinct,
    ),
    (
        "gc.valid-attachments",
        "GC (1.1.0) releases what no attachment in cni.dev/valid-attachments holds, and keeps the rest",
        |ctx| gc(ctx, "cni.dev/valid-attachments"),
    ),
    (
        "gc.attachments",
        "GC also understands the pre-release key cni.dev/attachments",
        |ctx| gc(ctx, "cni.dev/attachments"),
    ),
    (
        "status.available",
        "STATUS (1.1.0) succeeds while the pool has free addresses",
        status_available,
    ),
    (
        "status.exhausted",
        "STATUS (1.1.0) fails with code 50 once the pool is exhausted",
        status_exhausted,
    ),
    (
        "error.unknown-command",
        "an unknown CNI_COMMAND: error object on stdout, non-zero exit",
        unknown_command,
    ),
];

fn added(ctx: &Ctx, lan: &Lan, pod: &Pod, conf: &Value) -> Result<Value, Outcome> {
    let reply = ctx.subject.add(lan, pod, IFNAME, conf);
    succeeded(&reply, "ADD").map_err(|err| match err {
        Outcome::Fail(reason) => na(format!("needs a working ADD, but {reason}")),
        other => other,
    })
}

fn existing_ifname(ctx: &Ctx) -> Verdict {
    let lan = Lan::new();
    let pod = lan.pod();
    pod.ns
        .ip(&["link", "add", IFNAME, "type", "veth", "peer", "name", "taken-peer"]);
    let before = pod.ns.link(IFNAME).map(|l| l["ifindex"].clone());
    let conf = ctx.subject.config(&lan, ctx.main(), Pool::Wide);
    let reply = ctx.subject.add(&lan, &pod, IFNAME, &conf);
    refused(&reply, "ADD onto an existing interface name", None)?;
    let after = pod.ns.link(IFNAME).map(|l| l["ifindex"].clone());
    ensure(before == after, || {
        format!("the existing {IFNAME} was replaced or removed")
    })?;
    nothing_left(&lan, &pod, &[IFNAME, "taken-peer"], 0, &ctx.subject, "the failed ADD")
}

#[derive(Clone, Copy)]
enum Breakage {
    Address,
    Route,
    Link,
}

fn check_after_breaking(ctx: &Ctx, breakage: Breakage) -> Verdict {
    if !at_least(ctx.main(), "0.4.0") {
        return Err(na("the plugin claims no version with CHECK (0.4.0 on)"));
    }
    let lan = Lan::new();
    let pod = lan.pod();
    let conf = ctx.subject.config(&lan, ctx.main(), Pool::Wide);
    let result = added(ctx, &lan, &pod, &conf)?;
    let claims = shape::verify(ctx.main(), &result, IFNAME).map_err(|e| na(format!("bad ADD result: {e}")))?;
    let before = ctx.subject.check(&lan, &pod, IFNAME, &conf, &result);
    if before.status != 0 {
        return Err(na("CHECK fails before anything is broken (see check.after-add)"));
    }
    match breakage {
        Breakage::Address => {
            let address = claims
                .addresses
                .first()
                .ok_or_else(|| na("the result reports no address"))?;
            pod.ns.ip(&["addr", "del", &address.text(), "dev", IFNAME]);
        }
        Breakage::Route => {
            let (dst, _) = claims
                .routes
                .iter()
                .find(|(dst, _)| dst == CHECK_ROUTE)
                .or_else(|| claims.routes.first())
                .ok_or_else(|| na("the result reports no route"))?;
            let family = if dst.contains(':') { "-6" } else { "-4" };
            pod.ns.ip(&[family, "route", "del", dst, "dev", IFNAME]);
        }
        Breakage::Link => {
            pod.ns.ip(&["link", "del", IFNAME]);
        }
    }
    let reply = ctx.subject.check(&lan, &pod, IFNAME, &conf, &result);
    let verdict = refused(&reply, "CHECK after the breakage", None);
    let _ = ctx
        .subject
        .del(&lan, &pod.id, &pod.path(), IFNAME, &conf, Some(&result));
    verdict
}

fn del_twice(ctx: &Ctx) -> Verdict {
    let lan = Lan::new();
    let pod = lan.pod();
    let conf = ctx.subject.config(&lan, ctx.main(), Pool::Wide);
    let result = added(ctx, &lan, &pod, &conf)?;
    succeeded(
        &ctx.subject
            .del(&lan, &pod.id, &pod.path(), IFNAME, &conf, Some(&result)),
        "the first DEL",
    )?;
    succeeded(
        &ctx.subject
            .del(&lan, &pod.id, &pod.path(), IFNAME, &conf, Some(&result)),
        "the second DEL",
    )?;
    released(&lan, &ctx.subject, 0, "two DELs")
}

fn del_netns_gone(ctx: &Ctx) -> Verdict {
    let lan = Lan::new();
    let pod = lan.pod();
    let conf = ctx.subject.config(&lan, ctx.main(), Pool::Wide);
    let result = added(ctx, &lan, &pod, &conf)?;
    crate::netns::sh("ip", &["netns", "del", pod.ns.name()]);
    let reply = ctx
        .subject
        .del(&lan, &pod.id, &pod.path(), IFNAME, &conf, Some(&result));
    succeeded(&reply, "DEL with the netns gone")?;
    released(&lan, &ctx.subject, 0, "DEL with the netns gone")
}

fn del_netns_empty(ctx: &Ctx) -> Verdict {
    let lan = Lan::new();
    let pod = lan.pod();
    let conf = ctx.subject.config(&lan, ctx.main(), Pool::Wide);
    let result = added(ctx, &lan, &pod, &conf)?;
    let reply = ctx.subject.del(&lan, &pod.id, "", IFNAME, &conf, Some(&result));
    succeeded(&reply, "DEL with an empty CNI_NETNS")?;
    released(&lan, &ctx.subject, 0, "DEL with an empty CNI_NETNS")
}

fn del_never_added(ctx: &Ctx) -> Verdict {
    let lan = Lan::new();
    let pod = lan.pod();
    let conf = ctx.subject.config(&lan, ctx.main(), Pool::Wide);
    let reply = ctx.subject.del(&lan, &pod.id, &pod.path(), IFNAME, &conf, None);
    succeeded(&reply, "DEL of a container never added").map(|_| ())
}

fn del_master_gone(ctx: &Ctx) -> Verdict {
    let lan = Lan::new();
    let pod = lan.pod();
    let conf = ctx.subject.config(&lan, ctx.main(), Pool::Wide);
    let result = added(ctx, &lan, &pod, &conf)?;
    lan.node.ip(&["link", "del", MASTER]);
    let reply = ctx
        .subject
        .del(&lan, &pod.id, &pod.path(), IFNAME, &conf, Some(&result));
    succeeded(&reply, "DEL after the master was deleted")?;
    released(&lan, &ctx.subject, 0, "DEL after the master was deleted")
}

/// How a deliberately bad ADD differs from a good one.
#[derive(Default)]
struct Bad {
    stdin: Option<Vec<u8>>,
    args: &'static str,
    unset: Vec<&'static str>,
}

/// A bad ADD must be refused (with `code`, when given) and leave nothing behind.
fn refused_add(ctx: &Ctx, what: &str, code: Option<u64>, bad: Bad, edit: impl FnOnce(&mut Value)) -> Verdict {
    let lan = Lan::new();
    let pod = lan.pod();
    let mut conf = ctx.subject.config(&lan, ctx.main(), Pool::Wide);
    edit(&mut conf);
    let mut call = ctx.subject.call("ADD", &pod.id, &pod.path(), IFNAME, &conf);
    if let Some(stdin) = bad.stdin {
        call.stdin = stdin;
    }
    call.args = bad.args.to_string();
    call.unset = bad.unset;
    let reply = ctx.subject.run(&lan, &call);
    refused(&reply, what, code)?;
    nothing_left(&lan, &pod, &[], 0, &ctx.subject, "the refused ADD")
}

fn error_bad_json(ctx: &Ctx) -> Verdict {
    let bad = Bad {
        stdin: Some(format!("{{\"cniVersion\": \"{}\", \"name\": ", ctx.main()).into_bytes()),
        ..Bad::default()
    };
    refused_add(ctx, "ADD with truncated JSON", Some(6), bad, |_| {})
}

fn error_missing_name(ctx: &Ctx) -> Verdict {
    refused_add(ctx, "ADD without a network name", Some(7), Bad::default(), |conf| {
        conf.as_object_mut().map(|c| c.remove("name"));
    })
}

fn error_missing_env(ctx: &Ctx) -> Verdict {
    let bad = Bad {
        unset: vec!["CNI_CONTAINERID"],
        ..Bad::default()
    };
    refused_add(ctx, "ADD without CNI_CONTAINERID", Some(4), bad, |_| {})
}

fn error_unsupported_version(ctx: &Ctx) -> Verdict {
    refused_add(ctx, "ADD with cniVersion 99.0.0", Some(1), Bad::default(), |conf| {
        conf["cniVersion"] = json!("99.0.0")
    })
}

/// A key no plugin knows.
const UNKNOWN_ARG: &str = "CONFORMANCE_UNKNOWN_KEY=1";

fn args_unknown_refused(ctx: &Ctx) -> Verdict {
    let bad = Bad {
        args: UNKNOWN_ARG,
        ..Bad::default()
    };
    refused_add(ctx, &format!("ADD with CNI_ARGS {UNKNOWN_ARG}"), None, bad, |_| {})
}

fn args_ignore_unknown(ctx: &Ctx) -> Verdict {
    let lan = Lan::new();
    let pod = lan.pod();
    let conf = ctx.subject.config(&lan, ctx.main(), Pool::Wide);
    let mut call = ctx.subject.call("ADD", &pod.id, &pod.path(), IFNAME, &conf);
    call.args = format!("IgnoreUnknown=1;{UNKNOWN_ARG}");
    let reply = ctx.subject.run(&lan, &call);
    let result = succeeded(&reply, &format!("ADD with CNI_ARGS {}", call.args))?;
    let _ = ctx
        .subject
        .del(&lan, &pod.id, &pod.path(), IFNAME, &conf, Some(&result));
    Ok(())
}

fn cleanup_exhausted(ctx: &Ctx) -> Verdict {
    if let Some(why) = ctx.subject.pool_unshapeable() {
        return Err(na(why));
    }
    let lan = Lan::new();
    let (first, second) = (lan.pod(), lan.pod());
    let conf = ctx.subject.config(&lan, ctx.main(), Pool::Single);
    added(ctx, &lan, &first, &conf)?;
    let reply = ctx.subject.add(&lan, &second, IFNAME, &conf);
    refused(&reply, "ADD into an exhausted pool", None)?;
    nothing_left(&lan, &second, &[], 1, &ctx.subject, "the ADD into an exhausted pool")
}

fn cleanup_address_taken(ctx: &Ctx) -> Verdict {
    if let Some(why) = ctx.subject.pool_unshapeable() {
        return Err(na(why));
    }
    let lan = Lan::new();
    let (first, second) = (lan.pod(), lan.pod());
    let conf = ctx.subject.config(&lan, ctx.main(), Pool::Wide);
    let result = added(ctx, &lan, &first, &conf)?;
    let claims = shape::verify(ctx.main(), &result, IFNAME).map_err(|e| na(format!("bad ADD result: {e}")))?;
    let taken = claims
        .addresses
        .first()
        .ok_or_else(|| na("the result reports no address"))?;
    let mut call = ctx.subject.call("ADD", &second.id, &second.path(), IFNAME, &conf);
    // IgnoreUnknown, as Multus sends it: a plugin that does not know IP= must not fail on the key.
    call.args = format!("IgnoreUnknown=1;IP={}", taken.ip);
    let reply = ctx.subject.run(&lan, &call);
    if reply.status == 0 {
        let got = reply
            .json
            .as_ref()
            .and_then(|r| shape::verify(ctx.main(), r, IFNAME).ok())
            .and_then(|c| c.addresses.first().map(|a| a.ip));
        return match got {
            Some(ip) if ip == taken.ip => Err(fail(format!("{ip} was given to a second attachment"))),
            _ => Err(na(
                "the plugin ignores CNI_ARGS IP=, so it cannot be asked for a taken address",
            )),
        };
    }
    refused(&reply, "ADD asking for a taken address", None)?;
    nothing_left(
        &lan,
        &second,
        &[],
        1,
        &ctx.subject,
        "the ADD asking for a taken address",
    )
}

fn concurrency_distinct(ctx: &Ctx) -> Verdict {
    let lan = Lan::new();
    let pods: Vec<Pod> = (0..CONCURRENT_ADDS).map(|_| lan.pod()).collect();
    let conf = ctx.subject.config(&lan, ctx.main(), Pool::Wide);
    let replies: Vec<Reply> = std::thread::scope(|scope| {
        let handles: Vec<_> = pods
            .iter()
            .map(|pod| scope.spawn(|| ctx.subject.add(&lan, pod, IFNAME, &conf)))
            .collect();
        handles.into_iter().map(|h| h.join().expect("ADD thread")).collect()
    });
    let mut seen = HashSet::new();
    let mut problems = Vec::new();
    for reply in &replies {
        let addresses = succeeded(reply, "ADD")
            .map_err(|e| format!("{e:?}"))
            .and_then(|r| shape::verify(ctx.main(), &r, IFNAME));
        match addresses {
            Ok(claims) => {
                for address in claims.addresses {
                    if !seen.insert(address.ip) {
                        problems.push(format!("{} given twice", address.ip));
                    }
                }
            }
            Err(err) => problems.push(err),
        }
    }
    let dels: Vec<Reply> = std::thread::scope(|scope| {
        let handles: Vec<_> = pods
            .iter()
            .zip(&replies)
            .map(|(pod, add)| {
                let (lan, conf) = (&lan, &conf);
                scope.spawn(move || {
                    ctx.subject
                        .del(lan, &pod.id, &pod.path(), IFNAME, conf, add.json.as_ref())
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().expect("DEL thread")).collect()
    });
    for reply in &dels {
        if let Err(err) = succeeded(reply, "DEL") {
            problems.push(format!("{err:?}"));
        }
    }
    ensure(problems.is_empty(), || {
        let mut unique: Vec<_> = problems.iter().collect::<HashSet<_>>().into_iter().cloned().collect();
        unique.sort();
        format!("{} problem(s): {}", problems.len(), unique.join("; "))
    })?;
    released(&lan, &ctx.subject, 0, "the DELs")
}

fn needs_1_1(ctx: &Ctx) -> Verdict {
    ensure(ctx.claims("1.1.0"), String::new).map_err(|_| na("the plugin does not claim 1.1.0 (STATUS and GC)"))
}

fn gc(ctx: &Ctx, key: &str) -> Verdict {
    needs_1_1(ctx)?;
    if let Some(why) = ctx.subject.pool_unshapeable() {
        return Err(na(why));
    }
    let lan = Lan::new();
    let (kept, stale) = (lan.pod(), lan.pod());
    let conf = ctx.subject.config(&lan, "1.1.0", Pool::Wide);
    let kept_result = added(ctx, &lan, &kept, &conf)?;
    added(ctx, &lan, &stale, &conf)?;
    let kept_ip = shape::verify("1.1.0", &kept_result, IFNAME)
        .ok()
        .and_then(|c| c.addresses.first().map(|a| a.ip))
        .ok_or_else(|| na("the kept attachment's result has no address"))?;
    let mut gc_conf = conf.clone();
    gc_conf[key] = json!([{"containerID": kept.id, "ifname": IFNAME}]);
    succeeded(&ctx.subject.call_plain(&lan, "GC", &gc_conf), "GC")?;
    let left = reservations(&lan, ctx.subject.name());
    ensure(left == vec![kept_ip], || {
        format!("after GC keeping only {kept_ip}, the reservations are {left:?}")
    })
}

fn status_available(ctx: &Ctx) -> Verdict {
    needs_1_1(ctx)?;
    let lan = Lan::new();
    let conf = ctx.subject.config(&lan, "1.1.0", Pool::Wide);
    succeeded(&ctx.subject.call_plain(&lan, "STATUS", &conf), "STATUS").map(|_| ())
}

fn status_exhausted(ctx: &Ctx) -> Verdict {
    needs_1_1(ctx)?;
    if let Some(why) = ctx.subject.pool_unshapeable() {
        return Err(na(why));
    }
    let lan = Lan::new();
    let pod = lan.pod();
    let conf = ctx.subject.config(&lan, "1.1.0", Pool::Single);
    added(ctx, &lan, &pod, &conf)?;
    refused(
        &ctx.subject.call_plain(&lan, "STATUS", &conf),
        "STATUS with the pool exhausted",
        Some(50),
    )
}

fn unknown_command(ctx: &Ctx) -> Verdict {
    let lan = Lan::new();
    let pod = lan.pod();
    let conf = ctx.subject.config(&lan, ctx.main(), Pool::Wide);
    let reply = ctx
        .subject
        .run(&lan, &ctx.subject.call("FROB", &pod.id, &pod.path(), IFNAME, &conf));
    refused(&reply, "CNI_COMMAND=FROB", None)?;
    nothing_left(&lan, &pod, &[], 0, &ctx.subject, "CNI_COMMAND=FROB")
}
