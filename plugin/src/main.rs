//! The `roslan` CNI plugin binary; all logic lives in the library.

fn main() {
    let code = roslan::run(
        |name| std::env::var(name).ok(),
        std::io::stdin().lock(),
        &mut std::io::stdout().lock(),
    );
    std::process::exit(code);
}
