//! `cni-conformance`: scores any CNI plugin against the spec's MUSTs in throwaway namespaces.
//!
//! There is no official conformance suite (containernetworking/cni#540), so plugins are judged by
//! their own unit tests, which is how a link leaked after an IPAM failure survives for years. This
//! runner treats the plugin as a black box, as a runtime does: it asks VERSION which spec versions the
//! plugin claims, runs ADD/CHECK/DEL in each, and then the version-independent checks (DEL tolerance,
//! error objects, cleanup after failed ADDs, concurrency, STATUS and GC), judging by what the
//! namespaces and the IPAM files hold afterwards. See docs/conformance.md.

pub mod checks;
pub mod scorecard;
pub mod shape;
pub mod subject;

use std::path::Path;

use serde_json::{Value, json};

use crate::lan::Lan;
use checks::Ctx;
use scorecard::{Outcome, Record, Scorecard};
use subject::Subject;

/// Runs every check (or those whose id contains `only`) and returns the scorecard; `Err` only when
/// the runner cannot start (unreadable config, a plugin that does not answer VERSION at all).
pub fn run(plugin: &Path, config: &Path, cni_path: Option<String>, only: Option<String>) -> Result<Scorecard, String> {
    let subject = Subject::load(plugin, config, cni_path)?;
    let lan = Lan::new();
    let asked = subject.base["cniVersion"].as_str().unwrap_or("0.1.0").to_string();
    let reply = subject.call_plain(&lan, "VERSION", &json!({"cniVersion": asked}));
    drop(lan);
    let claimed: Vec<String> = reply
        .json
        .as_ref()
        .and_then(|j| j.get("supportedVersions"))
        .and_then(Value::as_array)
        .map(|list| list.iter().filter_map(|v| v.as_str().map(str::to_string)).collect())
        .unwrap_or_default();
    if reply.status != 0 || claimed.is_empty() {
        return Err(format!(
            "{} does not answer VERSION with supportedVersions (exit {}): {}",
            plugin.display(),
            reply.status,
            reply.stdout.trim()
        ));
    }
    let (versions, unknown) = checks::split_versions(&claimed);
    let mut card = Scorecard {
        plugin: plugin.display().to_string(),
        config: config.display().to_string(),
        claimed,
        records: vec![Record {
            id: "version.reply".into(),
            requirement: "VERSION lists the supported spec versions".into(),
            outcome: if unknown.is_empty() {
                Outcome::Pass
            } else {
                Outcome::Fail(format!("claims versions that do not exist: {}", unknown.join(", ")))
            },
        }],
    };
    let ctx = Ctx {
        subject,
        versions,
        only,
    };
    card.records.extend(checks::run_all(&ctx));
    Ok(card)
}
