//! The `exgate` binary: parse the command line, run, print the error chain, exit.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = exgate::cli::Cli::parse();
    match exgate::cli::run(cli) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("exgate: {err:#}");
            ExitCode::FAILURE
        }
    }
}
