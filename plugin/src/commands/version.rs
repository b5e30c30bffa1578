//! VERSION: the spec versions roslan implements completely.

use serde_json::{Value, json};

use crate::cni::Version;
use crate::cni::version::supported_strings;

/// The VERSION reply. `cniVersion` echoes the request's version when roslan knows it (as the spec's
/// example shows), otherwise the newest one roslan speaks; stdin is optional.
pub fn version(stdin: &[u8]) -> Value {
    let asked = serde_json::from_slice::<Value>(stdin)
        .ok()
        .and_then(|v| v.get("cniVersion").and_then(Value::as_str).and_then(Version::parse));
    json!({
        "cniVersion": asked.unwrap_or_else(Version::latest).as_str(),
        "supportedVersions": supported_strings(),
    })
}
