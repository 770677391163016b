//! The `flowgate` command, built inside this package so the end-to-end tests can run it
//! (cargo hands integration tests the binaries of their own package only). Same `main` as
//! `host/src/main.rs`.

fn main() -> std::process::ExitCode {
    flowgate::cli::main()
}
