//! Scores a CNI plugin against the spec in throwaway network namespaces (needs root).
//!
//! Usage: cni-conformance --plugin BIN --config FILE [--cni-path DIRS] [--only TEXT] [--json | --markdown]
//!
//! The configuration's `master` is replaced by the runner's own test LAN master; a host-local or
//! roslan-ipam pool is moved onto the test LAN. Exit 0 if no check failed, 1 if one did, 2 if the run
//! could not start.

use std::path::PathBuf;
use std::process::ExitCode;

use roslan_tests::conformance;

const USAGE: &str =
    "usage: cni-conformance --plugin BIN --config FILE [--cni-path DIRS] [--only TEXT] [--json | --markdown]";

#[derive(Default)]
struct Options {
    plugin: Option<PathBuf>,
    config: Option<PathBuf>,
    cni_path: Option<String>,
    only: Option<String>,
    format: Format,
}

#[derive(Default, PartialEq)]
enum Format {
    #[default]
    Text,
    Json,
    Markdown,
}

fn parse(args: &[String]) -> Result<Options, String> {
    let mut options = Options::default();
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        let mut value = || args.next().cloned().ok_or_else(|| format!("{arg} needs a value"));
        match arg.as_str() {
            "--plugin" => options.plugin = Some(PathBuf::from(value()?)),
            "--config" => options.config = Some(PathBuf::from(value()?)),
            "--cni-path" => options.cni_path = Some(value()?),
            "--only" => options.only = Some(value()?),
            "--json" => options.format = Format::Json,
            "--markdown" => options.format = Format::Markdown,
            "-h" | "--help" => return Err(String::new()),
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    if options.plugin.is_none() || options.config.is_none() {
        return Err("--plugin and --config are required".into());
    }
    Ok(options)
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let options = match parse(&args) {
        Ok(options) => options,
        Err(err) => {
            if !err.is_empty() {
                eprintln!("cni-conformance: {err}");
            }
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    if !nix::unistd::geteuid().is_root() {
        eprintln!("cni-conformance: needs root (it creates network namespaces)");
        return ExitCode::from(2);
    }
    let (Some(plugin), Some(config)) = (options.plugin, options.config) else {
        return ExitCode::from(2);
    };
    let card = match conformance::run(&plugin, &config, options.cni_path, options.only) {
        Ok(card) => card,
        Err(err) => {
            eprintln!("cni-conformance: {err}");
            return ExitCode::from(2);
        }
    };
    match options.format {
        Format::Text => print!("{}", card.text()),
        Format::Json => println!("{}", serde_json::to_string_pretty(&card.json()).expect("serialise")),
        Format::Markdown => print!("{}", card.markdown()),
    }
    if card.passed() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
