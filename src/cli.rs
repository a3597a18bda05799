//! The command line (SPEC §10): raw flags parsed by clap, then run.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::config;

/// Exit code for a configuration error (sysexits `EX_CONFIG`).
pub const EXIT_CONFIG: u8 = 78;

/// exgate: enforce Exchange authentication policies in front of Exchange.
#[derive(Debug, Parser)]
#[command(name = "exgate", version, about)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Check the configuration and the policy script; list every error; exit 78 on error.
    Validate {
        /// The configuration file.
        #[arg(long, default_value = config::DEFAULT_PATH)]
        config: PathBuf,
    },
    /// One-command lab: mock Exchange, mock identity provider and exgate (not yet built).
    Lab {
        /// online-ca, online-adfs, onprem-ca or onprem-adfs.
        #[arg(long, default_value = "online-ca")]
        scenario: String,
    },
}

/// Runs a parsed command line and returns the process exit code.
pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Validate { config } => Ok(validate(&config)),
        Command::Lab { scenario } => {
            eprintln!(
                "exgate lab --scenario {scenario}: not yet. The lab arrives with the proxy, token \
                 validation and mock Exchange (issues 3-5); `exgate validate` and the policy \
                 engine work today."
            );
            Ok(ExitCode::FAILURE)
        }
    }
}

fn validate(path: &std::path::Path) -> ExitCode {
    let result = config::load(path).and_then(|cfg| config::build_engine(&cfg).map(|e| (cfg, e)));
    match result {
        Ok((cfg, engine)) => {
            let store = engine.store();
            println!(
                "{}: OK ({} deployment, {} users, {} policies, organization default: {})",
                cfg.path.display(),
                engine.settings().deployment.as_str(),
                engine.directory().len(),
                store.policies().count(),
                store
                    .org_default()
                    .map_or("none", |p| store.policy(p).name.as_str()),
            );
            ExitCode::SUCCESS
        }
        Err(errors) => {
            eprint!("{}: {errors}", path.display());
            ExitCode::from(EXIT_CONFIG)
        }
    }
}
