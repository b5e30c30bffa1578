//! Subcommands of the `roslan` binary for people, as opposed to runtimes: with no arguments the binary
//! is the CNI plugin; with one of these it is a tool.

pub mod validate;

/// Usage text.
pub fn usage() -> String {
    format!(
        "{}\nUsage:\n  roslan                     CNI plugin (reads CNI_* variables and stdin)\n  roslan validate [FILE]     check a network configuration (stdin by default), listing every problem\n  roslan --version\n",
        crate::banner()
    )
}

/// Runs a subcommand; returns the exit code.
pub fn run(args: &[String]) -> i32 {
    match args.first().map(String::as_str) {
        Some("validate") => validate::run(&args[1..]),
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
