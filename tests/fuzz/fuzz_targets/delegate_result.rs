//! Any output from a delegated IPAM plugin: read as a result of any version, or refused with code 6;
//! an accepted result prints in every version and reads back the same.
#![no_main]

use libfuzzer_sys::fuzz_target;
use roslan::cni::{CniResult, version::SUPPORTED};

fuzz_target!(|data: &[u8]| {
    let Ok(value) = serde_json::from_slice::<serde_json::Value>(data) else { return };
    match CniResult::from_json(&value, "IPAM plugin result") {
        Ok(result) => {
            for version in SUPPORTED {
                let printed = result.to_json(*version);
                let back = CniResult::from_json(&printed, "round trip").expect("a printed result reads back");
                if !version.legacy_result() {
                    assert_eq!(back.ips.len(), result.ips.len());
                    assert_eq!(back.routes.len(), result.routes.len());
                }
            }
        }
        Err(err) => assert_eq!(err.code(), 6),
    }
});
