//! The `exgate` binary: parse the command line, run, print the error chain, exit.

use std::process::ExitCode;

use clap::Parser;

/// jemalloc: what a parked idle connection freed leaves the resident set (Cargo.toml says
/// why, `.cargo/config.toml` how fast).
#[cfg(feature = "jemalloc")]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> ExitCode {
    let cli = exgate::cli::Cli::parse();
    match exgate::cli::run(cli) {
        Ok(code) => code,
        Err(err) => {
            // A closed standard error must not turn the exit code into a panic's.
            use std::io::Write as _;
            let _ = writeln!(std::io::stderr(), "exgate: {err:#}");
            ExitCode::FAILURE
        }
    }
}
