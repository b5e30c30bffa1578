//! Subcommands of the `roslan` binary for people, as opposed to runtimes: with no arguments the binary
//! is the CNI plugin; with one of these it is a tool.

mod args;
pub mod doctor;
mod igmp;
mod mld;
pub mod probe;
mod querier;
mod remote;
mod route;
pub mod validate;

/// Usage text.
pub fn usage() -> String {
    format!(
        "{}\nUsage:\n  roslan                     CNI plugin (reads CNI_* variables and stdin)\n  roslan validate [FILE]     check a network configuration (stdin by default), listing every problem\n  roslan doctor [--config FILE] [--json] [--querier-wait SECONDS] [--passive] [--cni-bin-dir DIR]\n                             on a node: why DDS discovery may fail (master, IGMP/MLD querier, rp_filter, IPAM, blocks, binary)\n  roslan probe --from PLACE --to PLACE [--to PLACE ...] [--group G] [--port P] [--count N] [--json]\n                             multicast between namespaces (node, /proc/<pid>/ns/net, /run/netns/<name>)\n  roslan probe --listen [--in PLACE] [--name N] | --send --to ADDRESS [--to ADDRESS ...] [--json]\n                             multicast between machines: listeners echo, the sender reports per pair and names the cause\n  roslan --version\n",
        crate::banner()
    )
}

/// Runs a subcommand; returns the exit code.
pub fn run(args: &[String]) -> i32 {
    match args.first().map(String::as_str) {
        Some("validate") => validate::run(&args[1..]),
        Some("doctor") => doctor::run(&args[1..]),
        // Between machines (listeners echo to a sender) or between namespaces of this one.
        Some("probe") if args[1..].iter().any(|a| a == "--listen" || a == "--send") => remote::run(&args[1..]),
        Some("probe") => probe::run(&args[1..]),
        Some("--version" | "version") => {
            println!("roslan {}", env!("CARGO_PKG_VERSION"));
            0
        }
        Some("--help" | "-h" | "help") => {
            print!("{}", usage());
            0
        }
        _ => {
            eprint!("{}", usage());
            2
        }
    }
}
