//! Any environment (lines `NAME=value`, the first line's remainder as stdin; values are raw bytes, so
//! they may be invalid UTF-8 as a hostile runtime can make them): the request is read and validated, or
//! refused with a CNI error; never a panic.
#![no_main]

use std::collections::HashMap;
use std::ffi::OsString;
use std::os::unix::ffi::OsStringExt;

use libfuzzer_sys::fuzz_target;
use roslan::cni::Request;

fuzz_target!(|data: &[u8]| {
    let mut lines = data.split(|b| *b == b'\n');
    let stdin = lines.next().unwrap_or_default().to_vec();
    let env: HashMap<String, OsString> = lines
        .filter_map(|line| {
            let eq = line.iter().position(|b| *b == b'=')?;
            let name = String::from_utf8_lossy(&line[..eq]);
            Some((format!("CNI_{name}"), OsString::from_vec(line[eq + 1..].to_vec())))
        })
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
            serde_json::to_string(&roslan::cni::ErrorReply::of(&err, None)).expect("error reply serialises");
        }
    }
});
