//! The `roslan` binary: the CNI plugin when run without arguments (as runtimes run it), a tool with
//! one (`roslan validate`, ...). All logic lives in the library.

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let code = if args.is_empty() {
        roslan::run(
            |name| std::env::var_os(name),
            std::io::stdin().lock(),
            &mut std::io::stdout().lock(),
        )
    } else {
        roslan::cli::run(&args)
    };
    std::process::exit(code);
}
