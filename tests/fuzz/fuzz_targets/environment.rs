//! Any environment (lines `NAME=value`, the first line's remainder as stdin): the request is read and
//! validated, or refused with a CNI error; never a panic.
#![no_main]

use std::collections::HashMap;

use libfuzzer_sys::fuzz_target;
use roslan::cni::Request;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let mut lines = text.split('\n');
    let stdin = lines.next().unwrap_or_default().as_bytes().to_vec();
    let env: HashMap<String, String> = lines
        .filter_map(|line| line.split_once('=').map(|(k, v)| (format!("CNI_{k}"), v.to_string())))
        .collect();
    match Request::read(|name| env.get(name).cloned(), stdin.as_slice()) {
        Ok(Some(request)) => {
            // An accepted container ID and interface name are safe to use in names and paths.
            assert!(!request.container_id.contains(['/', '\n', '\0']));
            assert!(request.ifname.len() <= 15 && !request.ifname.contains(['/', ':']));
        }
        Ok(None) => {}
        Err(err) => {
            assert!(err.code() > 0);
            serde_json::to_string(&err.reply(None)).expect("error reply serialises");
        }
    }
});
