//! Any CNI_ARGS: strict parsing answers or refuses with code 4; lenient parsing (DEL) never fails.
#![no_main]

use libfuzzer_sys::fuzz_target;
use roslan::cni::CniArgs;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    match CniArgs::parse(&text) {
        Ok(args) => {
            // Whatever strict parsing accepts, lenient parsing reads the same way.
            let lenient = CniArgs::parse_lenient(&text);
            assert_eq!(lenient.ips, args.ips);
            assert_eq!(lenient.mac, args.mac);
        }
        Err(err) => assert_eq!(err.code(), 4),
    }
    let _ = CniArgs::parse_lenient(&text);
});
