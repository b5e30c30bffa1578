//! The `roslan-install` binary; everything lives in the library.

use clap::Parser;

fn main() {
    let args = roslan_install::Args::parse();
    std::process::exit(roslan_install::run(args));
}
