//! The `flowgate` command.

fn main() -> std::process::ExitCode {
    flowgate::cli::main()
}
