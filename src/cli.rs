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
    /// Log lines as `text` (colours only on a terminal; `NO_COLOR` turns them off) or
    /// `json` (one object per line, for a SIEM). Applies to `serve` and `lab`.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text, env = "EXGATE_LOG_FORMAT")]
    pub log_format: LogFormat,
    #[command(subcommand)]
    pub command: Command,
}

/// How log lines are written to standard error.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// `2026-12-01T02:34:44Z  INFO exgate::cli: message key=value`.
    Text,
    /// `{"timestamp":…,"level":"INFO","fields":{"message":…},"target":…}`.
    Json,
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
        /// Also print the effective configuration (file, environment and defaults) as
        /// TOML, with admin.token redacted.
        #[arg(long)]
        print: bool,
    },
    /// One-command lab: mock Exchange, mock identity provider and exgate, wired for one of
    /// the article's four architectures.
    #[cfg(feature = "lab")]
    Lab(LabArgs),
    /// Mint a lab token, signed with a running (or stopped) lab's identity-provider key.
    #[cfg(feature = "lab")]
    Token(TokenArgs),
    /// Send cmdlet lines to a running exgate's admin API (applied atomically, persisted).
    Cmdlet(CmdletArgs),
    /// Load-test the enforcement path of a loopback exgate (bounded in time and requests).
    #[cfg(feature = "lab")]
    Load(LoadArgs),
    /// Who still uses legacy authentication, from an audit log: per user, protocol and
    /// scheme; what report-only policies would block; top sources of blocked attempts.
    Report {
        /// Audit logs (JSON lines), each read with its rotated files (`PATH.N` … `PATH.1`,
        /// oldest first).
        #[arg(required = true)]
        audit: Vec<PathBuf>,
        /// table, json, csv or html (one self-contained page: a chart of legacy attempts
        /// over time and the tables).
        #[arg(long, default_value = "table", value_parser = ["table", "json", "csv", "html"])]
        format: String,
    },
}

/// `exgate lab`.
#[cfg(feature = "lab")]
#[derive(Debug, clap::Args)]
pub struct LabArgs {
    #[command(subcommand)]
    pub walk: Option<LabCommand>,
    /// online-ca, online-adfs, onprem-ca or onprem-adfs.
    #[arg(long, default_value = "online-ca", value_parser = parse_scenario)]
    pub scenario: crate::lab::Scenario,
    /// Where the lab keeps its configuration, keys and state (default: a folder per
    /// scenario under the system temp dir).
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// exgate's port on 127.0.0.1 (0 picks a free one).
    #[arg(long, default_value_t = 18443)]
    pub port: u16,
    /// The lab console's port on 127.0.0.1 (0 picks a free one); its URL, with a secret
    /// made at every start, is printed and written to lab.json.
    #[arg(long, default_value_t = 0)]
    pub console_port: u16,
    /// On-premises scenarios: the keytab of Exchange's HTTP service principal
    /// (HTTP/<host>, exported from your KDC with `ktadd -norandkey`). exgate reads who
    /// Kerberos tickets name (`[kerberos] keytab`) and the mock Exchange accepts them.
    /// Ignored online: Exchange Online has no Kerberos for clients.
    #[arg(long, value_name = "FILE")]
    pub keytab: Option<PathBuf>,
}

/// `exgate lab walk`.
#[cfg(feature = "lab")]
#[derive(Debug, Subcommand)]
pub enum LabCommand {
    /// Perform the article's numbered steps against the running lab, like Outlook would.
    Walk {
        /// The running lab's scenario (finds its default directory); also accepted
        /// before `walk` (`exgate lab --scenario S walk`). Default online-ca.
        #[arg(long, value_parser = parse_scenario)]
        scenario: Option<crate::lab::Scenario>,
        /// The running lab's directory; also accepted before `walk`.
        #[arg(long)]
        dir: Option<PathBuf>,
    },
    /// Return a stopped lab to a fresh lab's state: remove the cmdlets sent to it, its
    /// audit log and configuration (its CA and signing keys stay). Refuses while the lab
    /// runs.
    Reset {
        /// The lab's scenario (finds its default directory); also accepted before
        /// `reset`. Default online-ca.
        #[arg(long, value_parser = parse_scenario)]
        scenario: Option<crate::lab::Scenario>,
        /// The lab's directory; also accepted before `reset`.
        #[arg(long)]
        dir: Option<PathBuf>,
    },
}

/// `exgate token`.
#[cfg(feature = "lab")]
#[derive(Debug, clap::Args)]
pub struct TokenArgs {
    /// The user (UPN) the token is for.
    #[arg(long, default_value = "user01@contoso.com")]
    pub user: String,
    /// Issue the token without an MFA claim.
    #[arg(long)]
    pub no_mfa: bool,
    /// The audience (default: the scenario's Exchange resource).
    #[arg(long)]
    pub audience: Option<String>,
    /// Lifetime in seconds (negative: already expired).
    #[arg(long, default_value_t = 3600, allow_hyphen_values = true)]
    pub expires_in: i64,
    /// The lab's scenario (finds its default directory).
    #[arg(long, default_value = "online-ca", value_parser = parse_scenario)]
    pub scenario: crate::lab::Scenario,
    /// The lab's directory (its identity-provider key signs the token).
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// Mint this many tokens, one per line, for users load0000@… upwards.
    #[arg(long)]
    pub count: Option<usize>,
    /// Print the signing key's JWKS instead of a token.
    #[arg(long, conflicts_with = "public_key_pem")]
    pub jwks: bool,
    /// Print the signing key's public key as PEM instead of a token.
    #[arg(long)]
    pub public_key_pem: bool,
    /// Make signing keys in DIR when it has none (benchmarks and tests that mint their
    /// own tokens without a lab); without it, a DIR that holds no lab is an error.
    #[arg(long)]
    pub new_keys: bool,
}

/// `exgate load`.
#[cfg(feature = "lab")]
#[derive(Debug, clap::Args)]
pub struct LoadArgs {
    /// exgate's URL, loopback only (default: the lab's); https:// is verified against
    /// the lab's CA (ca.pem in --dir).
    #[arg(long)]
    pub target: Option<String>,
    /// Stop after this many seconds.
    #[arg(long, default_value_t = 10)]
    pub duration_seconds: u64,
    /// Stop after this many requests (an NTLM handshake counts once).
    #[arg(long, default_value_t = 200_000)]
    pub requests: u64,
    /// Connections, each kept alive.
    #[arg(long, default_value_t = 32)]
    pub concurrency: usize,
    /// Traffic mix as class=weight: bearer-mfa, bearer-no-mfa, basic, ntlm, kerberos, spray.
    #[arg(long, default_value = crate::load::DEFAULT_MIX)]
    pub mix: String,
    /// Also write the report as JSON to this file.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// The lab whose identity-provider key mints the tokens.
    #[arg(long, default_value = "online-ca", value_parser = parse_scenario)]
    pub scenario: crate::lab::Scenario,
    /// The lab's directory.
    #[arg(long)]
    pub dir: Option<PathBuf>,
}

/// `exgate cmdlet`.
#[derive(Debug, clap::Args)]
pub struct CmdletArgs {
    /// Cmdlet lines, as typed in Exchange PowerShell.
    #[arg(required = true)]
    pub lines: Vec<String>,
    /// The admin listener, e.g. http://127.0.0.1:9464 (default: the lab's).
    #[arg(long)]
    pub admin: Option<String>,
    /// The admin token (or EXGATE_ADMIN_TOKEN).
    #[arg(long, env = "EXGATE_ADMIN_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// A running lab's directory: its admin address and token are read from lab.json.
    #[cfg(feature = "lab")]
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// The lab's scenario (finds its default directory).
    #[cfg(feature = "lab")]
    #[arg(long, default_value = "online-ca", value_parser = parse_scenario)]
    pub scenario: crate::lab::Scenario,
}

#[cfg(feature = "lab")]
fn parse_scenario(s: &str) -> Result<crate::lab::Scenario, String> {
    crate::lab::Scenario::parse(s).ok_or_else(|| {
        format!("unknown scenario '{s}': use online-ca, online-adfs, onprem-ca or onprem-adfs")
    })
}

/// Runs a parsed command line and returns the process exit code.
pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Serve { config } => serve(&config, cli.log_format),
        Command::Validate { config, print } => Ok(validate(&config, print)),
        #[cfg(feature = "lab")]
        Command::Lab(args) => lab(args, cli.log_format),
        #[cfg(feature = "lab")]
        Command::Token(args) => token(&args),
        Command::Cmdlet(args) => cmdlet(args),
        Command::Report { audit, format } => crate::report::run(&audit, &format),
        #[cfg(feature = "lab")]
        Command::Load(args) => load(&args),
    }
}

fn validate(path: &std::path::Path, print: bool) -> ExitCode {
    let result = config::load(path).and_then(|cfg| config::build_engine(&cfg).map(|e| (cfg, e)));
    match result {
        Ok((cfg, engine)) => {
            let store = engine.store();
            let (users, policies) = (engine.directory().len(), store.policies().count());
            let mut summary = vec![format!(
                "{}: OK ({} deployment, {users} user{}, {policies} polic{}, organization default: {})",
                cfg.path.display(),
                engine.settings().deployment.as_str(),
                if users == 1 { "" } else { "s" },
                if policies == 1 { "y" } else { "ies" },
                store
                    .org_default()
                    .map_or("none", |p| store.policy(p).name.as_str()),
            )];
            if let Some(k) = &cfg.kerberos {
                summary.push(format!(
                    "kerberos.keytab {}: {} keys",
                    k.keytab_path.display(),
                    k.keytab.entries.len()
                ));
                summary.extend(k.keytab.describe().into_iter().map(|l| format!("  {l}")));
            }
            // With --print, standard output is the TOML alone (it reads back as a
            // configuration file); the summary goes to standard error.
            for line in &summary {
                match print {
                    true => errln!("{line}"),
                    false => outln!("{line}"),
                }
            }
            if print {
                out!("{}", config::print::effective(&cfg));
            }
            ExitCode::SUCCESS
        }
        Err(errors) => {
            err!("{}: {errors}", path.display());
            ExitCode::from(EXIT_CONFIG)
        }
    }
}

/// Logs to standard error at `RUST_LOG`'s levels, else `default`'s, as `format` says;
/// text carries colours only when standard error is a terminal and `NO_COLOR` is unset.
fn init_tracing(default: &str, format: LogFormat) {
    use std::io::IsTerminal as _;
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder
            .with_ansi(std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none())
            .init(),
        LogFormat::Json => builder.json().with_current_span(false).init(),
    }
}

fn serve(path: &std::path::Path, log_format: LogFormat) -> anyhow::Result<ExitCode> {
    init_tracing("info", log_format);
    serve_runtime()?.block_on(async {
        // First of all: SIGHUP's default action ends the process, and `systemctl start`
        // followed at once by `systemctl reload` may send it while the configuration is
        // still loading. A SIGHUP that arrives before the proxy runs is a reload after.
        let mut signals = Signals::install()?;
        raise_file_limit();
        let config = match config::load(path) {
            Ok(c) => c,
            Err(errors) => {
                err!("{}: {errors}", path.display());
                return Ok(ExitCode::from(EXIT_CONFIG));
            }
        };
        let running = match crate::proxy::start(config).await {
            Ok(r) => r,
            Err(e) if e.downcast_ref::<config::ConfigErrors>().is_some() => {
                err!("{}: {e}", path.display());
                return Ok(ExitCode::from(EXIT_CONFIG));
            }
            Err(e) => return Err(e),
        };
        // A stable line that scripts and tests read to learn the bound ports.
        outln!(
            "exgate listening proxy={} admin={}",
            running.proxy_addr,
            running.admin_addr
        );
        use std::io::Write as _;
        let _ = std::io::stdout().flush(); // a closed stdout is no reason to stop
        signals.serve(&running).await;
        tracing::info!("shutting down: draining in-flight requests");
        running.shutdown().await;
        Ok(ExitCode::SUCCESS)
    })
}

/// Raises the open-file soft limit to the hard limit (SPEC §7 "Limits"), as HAProxy and
/// nginx size themselves at start: the default soft limit of 1024 runs out at about 500
/// forwarded connections, two descriptors each. Logs the capacity that follows.
fn raise_file_limit() {
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(limit) => tracing::info!(
            open_files = limit,
            "open-file limit raised to the hard limit"
        ),
        Err(e) => tracing::warn!(error = %e, "could not raise the open-file limit"),
    }
}

/// The signals `exgate serve` answers, registered before anything else is done.
struct Signals {
    hup: tokio::signal::unix::Signal,
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
}

impl Signals {
    fn install() -> std::io::Result<Signals> {
        use tokio::signal::unix::{SignalKind, signal};
        Ok(Signals {
            hup: signal(SignalKind::hangup())?,
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
        })
    }

    /// SIGHUP reloads; SIGTERM or SIGINT returns so the caller can drain and exit.
    async fn serve(&mut self, running: &crate::proxy::Running) {
        loop {
            tokio::select! {
                _ = self.hup.recv() => {
                    // The outcome is logged and counted by reload() itself.
                    let _ = running.shared.reload();
                }
                _ = self.term.recv() => return,
                _ = self.int.recv() => return,
            }
        }
    }
}

/// The runtime `serve` runs on, sized like HAProxy's `nbthread` and nginx's
/// `worker_processes auto`: a worker thread per CPU this process may use
/// (`available_parallelism`: its affinity mask and cgroup CPU quota). On a single CPU
/// (`taskset`, a container limited to one CPU) that is tokio's current-thread scheduler:
/// the same work without waking a second thread for each connection's tasks (issue 16,
/// proxy pinned to one core: 3.2–3.4% fewer instructions per request in callgrind, and
/// about 9% less CPU per anonymous pass-through).
fn serve_runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    let cpus = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
    let scheduler = if cpus == 1 {
        "current-thread"
    } else {
        "multi-thread"
    };
    tracing::info!(cpus, scheduler, "runtime");
    match cpus {
        1 => Ok(tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?),
        _ => runtime(),
    }
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?)
}

#[cfg(feature = "lab")]
fn lab(args: LabArgs, log_format: LogFormat) -> anyhow::Result<ExitCode> {
    use crate::lab;
    // `--scenario` and `--dir` mean the same before and after `walk`/`reset`; after
    // wins.
    if let Some(LabCommand::Reset { scenario, dir }) = &args.walk {
        let scenario = scenario.unwrap_or(args.scenario);
        let dir = dir
            .clone()
            .or(args.dir.clone())
            .unwrap_or_else(|| lab::default_dir(scenario));
        let removed = lab::reset(&dir)?;
        for path in &removed {
            outln!("removed {}", path.display());
        }
        outln!(
            "{} is a fresh lab: `exgate lab --scenario {scenario} --dir {}` starts it",
            dir.display(),
            dir.display()
        );
        return Ok(ExitCode::SUCCESS);
    }
    if let Some(LabCommand::Walk { scenario, dir }) = args.walk {
        let scenario = scenario.unwrap_or(args.scenario);
        let dir = dir
            .or(args.dir)
            .unwrap_or_else(|| lab::default_dir(scenario));
        let info = lab::LabInfo::read(&dir, scenario)?;
        let steps = runtime()?.block_on(lab::walk(&info, &dir))?;
        outln!("{}\n", lab::heading(info.scenario));
        for s in &steps {
            outln!("{s}");
        }
        let failed = steps.iter().filter(|s| !s.ok).count();
        outln!(
            "\n{} steps, {} passed, {failed} failed",
            steps.len(),
            steps.len() - failed
        );
        return Ok(if failed == 0 {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        });
    }
    init_tracing("warn", log_format);
    let dir = args.dir.unwrap_or_else(|| lab::default_dir(args.scenario));
    let exe = std::env::current_exe()?;
    runtime()?.block_on(async {
        let mut signals = Signals::install()?;
        raise_file_limit();
        let options = lab::LabOptions {
            scenario: args.scenario,
            dir: dir.clone(),
            port: args.port,
            console_port: args.console_port,
        };
        let keytab = match (&args.keytab, args.scenario.deployment()) {
            (Some(_), crate::policy::Deployment::Online) => {
                errln!(
                    "exgate lab: --keytab ignored in {}: {}",
                    args.scenario,
                    lab::ONLINE_KEYTAB_IGNORED
                );
                None
            }
            (keytab, _) => keytab.as_deref(),
        };
        let running = lab::start_with_keytab(options, keytab).await?;
        out!("{}", lab::banner(&running, &dir, &exe));
        use std::io::Write as _;
        let _ = std::io::stdout().flush(); // a closed stdout is no reason to stop
        signals.serve(&running.running).await;
        running.running.shutdown().await;
        Ok(ExitCode::SUCCESS)
    })
}

#[cfg(feature = "lab")]
fn token(args: &TokenArgs) -> anyhow::Result<ExitCode> {
    use crate::lab;
    let dir = args
        .dir
        .clone()
        .unwrap_or_else(|| lab::default_dir(args.scenario));
    let scenario = lab::LabInfo::read(&dir, args.scenario).map_or(args.scenario, |i| i.scenario);
    // A lab's folder holds its signing keys; a mistyped --dir must not make new ones
    // that no lab trusts.
    if args.new_keys {
        std::fs::create_dir_all(&dir)?;
    }
    anyhow::ensure!(
        args.new_keys || lab::has_signing_keys(&dir),
        "{} holds no lab (no signing keys): start one with `exgate lab --dir {}`, or pass the --dir of a running lab",
        dir.display(),
        dir.display()
    );
    let key = lab::current_signing_key(&dir)?;
    if args.jwks {
        outln!("{}", crate::token::mint::jwks(&[&key]));
        return Ok(ExitCode::SUCCESS);
    }
    if args.public_key_pem {
        out!("{}", key.public_key_pem());
        return Ok(ExitCode::SUCCESS);
    }
    let audience = args.audience.as_deref().unwrap_or(scenario.audience());
    let users: Vec<String> = match args.count {
        Some(n) => (0..n).map(|i| format!("load{i:04}@contoso.com")).collect(),
        None => vec![args.user.clone()],
    };
    for user in users {
        let mut claims = crate::token::mint::entra_v1_claims(
            lab::TENANT,
            audience,
            &user,
            !args.no_mfa,
            args.expires_in,
        );
        if scenario.mfa_by_adfs() && !args.no_mfa {
            crate::token::mint::mfa_at_adfs(&mut claims);
        }
        outln!("{}", key.sign(&claims));
    }
    Ok(ExitCode::SUCCESS)
}

fn cmdlet(args: CmdletArgs) -> anyhow::Result<ExitCode> {
    #[allow(unused_mut)]
    let (mut admin, mut token) = (args.admin.clone(), args.token.clone());
    #[cfg(feature = "lab")]
    if admin.is_none() {
        let dir = args
            .dir
            .clone()
            .unwrap_or_else(|| crate::lab::default_dir(args.scenario));
        let info = crate::lab::LabInfo::read(&dir, args.scenario)?;
        admin = Some(info.admin);
        token = token.or(Some(info.admin_token));
    }
    let admin = admin.ok_or_else(|| anyhow::anyhow!("--admin is required"))?;
    let script = args.lines.join("\n");
    let bearer = token.map(|t| format!("Bearer {t}"));
    let mut headers = vec![("content-type", "text/plain; charset=utf-8")];
    if let Some(b) = &bearer {
        headers.push(("authorization", b.as_str()));
    }
    let url = format!("{}/cmdlet", admin.trim_end_matches('/'));
    let res = runtime()?
        .block_on(crate::client::request("POST", &url, &headers, script))
        .map_err(|e| anyhow::anyhow!("POST {url}: {e:#}"))?;
    let text = res.text();
    if res.status == 200 {
        // Changing cmdlets print nothing in PowerShell; a word on stderr confirms them.
        if text.is_empty() {
            errln!("exgate cmdlet: applied");
        }
        out!("{text}");
        Ok(ExitCode::SUCCESS)
    } else {
        err!("exgate cmdlet: {} {text}", res.status);
        Ok(ExitCode::FAILURE)
    }
}

#[cfg(feature = "lab")]
fn load(args: &LoadArgs) -> anyhow::Result<ExitCode> {
    use crate::{lab, load};
    let dir = args
        .dir
        .clone()
        .unwrap_or_else(|| lab::default_dir(args.scenario));
    let info = lab::LabInfo::read(&dir, args.scenario).ok();
    let target = match (&args.target, &info) {
        (Some(t), _) => t.clone(),
        (None, Some(i)) => i.proxy.clone(),
        (None, None) => anyhow::bail!("--target is required when no lab runs in {}", dir.display()),
    };
    let options = load::LoadOptions {
        // An https:// target (the lab's exgate) is verified against the lab's CA.
        target: load::loopback_target(&target)?.trusting(&dir.join(lab::pki::CA_FILE))?,
        duration: std::time::Duration::from_secs(args.duration_seconds),
        max_requests: args.requests,
        concurrency: args.concurrency,
        mix: load::parse_mix(&args.mix).map_err(|e| anyhow::anyhow!("--mix: {e}"))?,
        progress: true,
    };
    let scenario = info.map_or(args.scenario, |i| i.scenario);
    let key = lab::current_signing_key(&dir)?;
    errln!(
        "exgate load → {target}: {} connections, up to {} s or {} requests",
        options.concurrency,
        args.duration_seconds,
        args.requests
    );
    let report = runtime()?.block_on(load::run(options, &key, scenario))?;
    out!("{report}");
    if let Some(path) = &args.json {
        std::fs::write(path, serde_json::to_string_pretty(&report)?)?;
    }
    Ok(ExitCode::SUCCESS)
}
