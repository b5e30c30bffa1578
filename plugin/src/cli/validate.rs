//! `roslan validate`: the configuration check ADD does, without a pod, for CI pipelines and for
//! NetworkAttachmentDefinitions before they are applied. Reports every problem and every ignored key.

use std::io::Read;
use std::path::Path;

use roslan_ipam_core::file::{Links, read_regular};

use crate::cni::env::MAX_STDIN;
use crate::config::NetConf;

/// Validates the configuration in `args[0]` (a file) or on stdin. Exit code 0 when ADD would accept it,
/// 1 when it has problems, 2 when it cannot be read.
pub fn run(args: &[String]) -> i32 {
    let mut text = Vec::new();
    let read = match args.first() {
        Some(path) => read_regular(Path::new(path), MAX_STDIN as u64, Links::Follow)
            .map(|data| text = data)
            .map_err(|err| err.to_string()),
        None => std::io::stdin()
            .take(MAX_STDIN as u64 + 1)
            .read_to_end(&mut text)
            .map(|_| ())
            .map_err(|err| err.to_string())
            .and_then(|()| {
                if text.len() > MAX_STDIN {
                    Err(format!("stdin is larger than {} MiB", MAX_STDIN >> 20))
                } else {
                    Ok(())
                }
            }),
    };
    if let Err(err) = read {
        eprintln!("roslan validate: cannot read the configuration: {err}");
        return 2;
    }
    let (conf, problems) = match NetConf::decode(&text).and_then(|value| NetConf::parse(&value)) {
        Ok(parsed) => parsed,
        Err(err) => {
            println!("error: {err} (CNI code {})", err.code());
            return 1;
        }
    };
    for warning in &conf.warnings {
        println!("warning: {warning}");
    }
    for problem in &problems {
        println!("error: {problem}");
    }
    let unsupported = conf.refuse_unsupported().err();
    if let Some(err) = &unsupported {
        println!("error: {err} (CNI code {})", err.code());
    }
    let count = problems.len() + usize::from(unsupported.is_some());
    if count == 0 {
        println!("ok: network {:?}, cniVersion {}", conf.name, conf.version);
        0
    } else {
        println!("{count} problem(s)");
        1
    }
}
