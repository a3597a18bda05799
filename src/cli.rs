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
    /// Run the proxy: enforce the policies and forward to Exchange.
    Serve {
        /// The configuration file.
        #[arg(long, default_value = config::DEFAULT_PATH)]
        config: PathBuf,
    },
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
        Command::Serve { config } => serve(&config),
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

fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}

fn serve(path: &std::path::Path) -> anyhow::Result<ExitCode> {
    init_tracing();
    let config = match config::load(path) {
        Ok(c) => c,
        Err(errors) => {
            eprint!("{}: {errors}", path.display());
            return Ok(ExitCode::from(EXIT_CONFIG));
        }
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let running = match crate::proxy::start(config).await {
            Ok(r) => r,
            Err(e) if e.downcast_ref::<config::ConfigErrors>().is_some() => {
                eprint!("{}: {e}", path.display());
                return Ok(ExitCode::from(EXIT_CONFIG));
            }
            Err(e) => return Err(e),
        };
        // A stable line that scripts and tests read to learn the bound ports.
        println!(
            "exgate listening proxy={} admin={}",
            running.proxy_addr, running.admin_addr
        );
        use std::io::Write as _;
        std::io::stdout().flush()?;
        wait_for_signals(&running).await?;
        tracing::info!("shutting down: draining in-flight requests");
        running.shutdown().await;
        Ok(ExitCode::SUCCESS)
    })
}

/// SIGHUP reloads; SIGTERM or SIGINT returns so the caller can drain and exit.
async fn wait_for_signals(running: &crate::proxy::Running) -> anyhow::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut hup = signal(SignalKind::hangup())?;
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    loop {
        tokio::select! {
            _ = hup.recv() => {
                // The outcome is logged and counted by reload() itself.
                let _ = running.shared.reload();
            }
            _ = term.recv() => return Ok(()),
            _ = int.recv() => return Ok(()),
        }
    }
}
