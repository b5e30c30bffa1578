//! Any bytes as the network configuration on stdin: parsed with every problem collected, or refused
//! with a CNI error whose reply serialises; never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use roslan::cni::ErrorReply;
use roslan::config::NetConf;

fuzz_target!(|data: &[u8]| {
    match NetConf::decode(data).and_then(|value| NetConf::parse(&value).map(|parsed| (value, parsed))) {
        Ok((value, (conf, problems))) => {
            let _ = NetConf::version_of(&value);
            if let Some(prev) = &conf.prev_result {
                for version in roslan::cni::version::SUPPORTED {
                    let _ = serde_json::to_string(&prev.to_json(*version)).expect("result serialises");
                }
            }
            if !problems.is_empty() {
                let reply = ErrorReply::of(&roslan::error::Error::Config(problems), Some(conf.version));
                assert_eq!(reply.code, 7);
                serde_json::to_string(&reply).expect("error reply serialises");
            }
        }
        Err(err) => {
            let reply = ErrorReply::of(&err, None);
            assert!(reply.code > 0);
            serde_json::to_string(&reply).expect("error reply serialises");
        }
    }
});
