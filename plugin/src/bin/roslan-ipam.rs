//! `roslan-ipam`: roslan's host-local-compatible IPAM as a standalone CNI IPAM plugin. All logic lives
//! in the library (`roslan::ipam::standalone`).

fn main() {
    let code = roslan::run_as(
        roslan::Role::Ipam,
        |name| std::env::var_os(name),
        std::io::stdin().lock(),
        &mut std::io::stdout().lock(),
    );
    std::process::exit(code);
}
