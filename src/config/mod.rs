//! Configuration: a TOML file plus `EXGATE__SECTION__KEY` environment overrides, read
//! with the `config` crate into raw structs, then validated into typed settings. Every
//! problem is reported at once, each naming its dotted key (or script line).

mod kerberos;
mod observe;
mod raw;
mod tokens;
mod validate;

use std::fmt;
use std::path::{Path, PathBuf};

pub use kerberos::KerberosConfig;
pub use tokens::{IssuerConfig, KeySource, TokensConfig};
pub use validate::{ChallengeConfig, PolicyConfig, ServerConfig, TlsFiles, UpstreamConfig};

use crate::policy::cmdlet::{ScriptContext, ScriptError, run_script};
use crate::policy::{Directory, Engine, PolicyStore};

/// The configuration file `serve` and `validate` read when none is given.
pub const DEFAULT_PATH: &str = "config/exgate.toml";

/// One configuration problem: the key (`policy.mode`, `users[1].upn`,
/// `policy.script:3:14`) and what is wrong with it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigError {
    pub key: String,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.key, self.message)
    }
}

/// Every problem found in a configuration, one per line when displayed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.0.len();
        writeln!(
            f,
            "{n} configuration error{}:",
            if n == 1 { "" } else { "s" }
        )?;
        for e in &self.0 {
            writeln!(f, "  {e}")?;
        }
        Ok(())
    }
}

fn error(key: impl Into<String>, message: impl Into<String>) -> ConfigError {
    ConfigError {
        key: key.into(),
        message: message.into(),
    }
}

/// A loaded and validated configuration (the parts the engine needs so far).
#[derive(Clone, Debug)]
pub struct Config {
    /// The file it came from; relative paths inside it are resolved against its folder.
    pub path: PathBuf,
    pub policy: PolicyConfig,
    pub server: ServerConfig,
    pub upstream: UpstreamConfig,
    pub challenge: ChallengeConfig,
    pub tokens: TokensConfig,
    /// `[kerberos]`: the service keytab, read and parsed; None without `keytab`.
    pub kerberos: Option<KerberosConfig>,
    /// `admin.token`: required as `Authorization: Bearer …` by the admin POST endpoints.
    pub admin_token: Option<crate::auth::Secret>,
    pub audit: crate::audit::AuditConfig,
    pub protect: crate::protect::ProtectConfig,
}

/// Reads and validates `path` with environment overrides from the process environment.
pub fn load(path: &Path) -> Result<Config, ConfigErrors> {
    load_with_env(path, None)
}

/// Reads and validates `path`; `env` replaces the process environment when given
/// (for tests).
pub fn load_with_env(
    path: &Path,
    env: Option<std::collections::HashMap<String, String>>,
) -> Result<Config, ConfigErrors> {
    let file = config::File::from(path).format(config::FileFormat::Toml);
    let environment = config::Environment::with_prefix("EXGATE")
        .prefix_separator("__")
        .separator("__")
        .try_parsing(true)
        .source(env);
    let built = config::Config::builder()
        .add_source(file)
        .add_source(environment)
        .build()
        .map_err(|e| {
            ConfigErrors(vec![error(
                path.display().to_string(),
                redact(&e.to_string()),
            )])
        })?;

    let mut unknown = Vec::new();
    let raw: raw::RawConfig = serde_ignored::deserialize(built, |p| unknown.push(p.to_string()))
        .map_err(|e| {
            ConfigErrors(vec![error(
                path.display().to_string(),
                redact(&e.to_string()),
            )])
        })?;
    let mut errors: Vec<ConfigError> = unknown
        .into_iter()
        .map(|key| error(dotted(&key), "unknown key"))
        .collect();

    let base = path.parent().unwrap_or(Path::new("."));
    let policy = validate::policy(&raw, base, &mut errors);
    let server = validate::server(&raw, base, &mut errors);
    let upstream = validate::upstream(&raw, base, &mut errors);
    let challenge = validate::challenge(&raw, &mut errors);
    let tokens = tokens::tokens(&raw, base, &mut errors);
    let kerberos = kerberos::kerberos(&raw, base, &mut errors);
    let audit = observe::audit(&raw, base, &mut errors);
    let protect = observe::protect(&raw, &mut errors);
    let admin_token = match raw.admin.token.as_deref() {
        Some(t) if t.len() < 16 => {
            errors.push(error("admin.token", "must be at least 16 characters"));
            None
        }
        Some(t) => Some(crate::auth::Secret::new(t.as_bytes())),
        None => None,
    };
    if !errors.is_empty() {
        return Err(ConfigErrors(errors));
    }
    Ok(Config {
        path: path.to_owned(),
        policy,
        server,
        upstream,
        challenge,
        tokens,
        kerberos,
        admin_token,
        audit,
        protect,
    })
}

/// `serde_ignored` writes sequence indices as `.0`; the rest of exgate says `[0]`.
fn dotted(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    for (i, part) in path.split('.').enumerate() {
        if !part.is_empty() && part.bytes().all(|b| b.is_ascii_digit()) {
            out.push_str(&format!("[{part}]"));
        } else {
            if i > 0 {
                out.push('.');
            }
            out.push_str(part);
        }
    }
    out
}

fn script_errors(key: &str, path: &Path, errs: Vec<ScriptError>) -> ConfigErrors {
    ConfigErrors(
        errs.into_iter()
            .map(|e| {
                let at = format!("{key} ({}:{}:{})", path.display(), e.pos.line, e.pos.column);
                error(at, e.message)
            })
            .collect(),
    )
}

/// Replays the cmdlets persisted by the admin API (`policy.state_file`) after the script.
fn replay(
    path: &Path,
    store: &PolicyStore,
    directory: &Directory,
    deployment: crate::policy::Deployment,
) -> Result<PolicyStore, ConfigErrors> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        ConfigErrors(vec![error(
            "policy.state_file",
            format!("cannot read {}: {e}", path.display()),
        )])
    })?;
    let ctx = ScriptContext {
        deployment,
        directory,
    };
    run_script(&text, store, ctx)
        .map(|a| a.store)
        .map_err(|errs| script_errors("policy.state_file", path, errs))
}

/// Builds the policy engine: users, then the policy script (read from disk here, at the
/// edge), then the per-policy options from TOML.
pub fn build_engine(config: &Config) -> Result<Engine, ConfigErrors> {
    let policy = &config.policy;
    let directory = Directory::new(policy.users.clone()).map_err(|errs| {
        ConfigErrors(errs.into_iter().map(|e| error(e.key, e.message)).collect())
    })?;
    let mut store = PolicyStore::default();
    if let Some(script_path) = &policy.script {
        let script = std::fs::read_to_string(script_path).map_err(|e| {
            ConfigErrors(vec![error(
                "policy.script",
                format!("cannot read {}: {e}", script_path.display()),
            )])
        })?;
        let ctx = ScriptContext {
            deployment: policy.settings.deployment,
            directory: &directory,
        };
        store = run_script(&script, &store, ctx)
            .map_err(|errs| script_errors("policy.script", script_path, errs))?
            .store;
    }
    if let Some(state_path) = policy.state_file.as_ref().filter(|p| p.exists()) {
        store = replay(state_path, &store, &directory, policy.settings.deployment)?;
    }
    let mut errors = Vec::new();
    for (name, report_only) in &policy.report_only {
        match store.find(name) {
            Some(id) => store.set_report_only(id, *report_only),
            None => errors.push(error(
                format!("policy.policies.{name}"),
                "no policy of this name is created by policy.script",
            )),
        }
    }
    if errors.is_empty() {
        Ok(Engine::new(policy.settings, directory, store))
    } else {
        Err(ConfigErrors(errors))
    }
}

#[cfg(test)]
mod tests;

/// A parser's error message without the values it quotes: the TOML parser prints the
/// offending source line, and serde the value of a wrong type — either may be a secret
/// (`admin.token`, a key pasted into the wrong field). Positions and keys stay.
fn redact(message: &str) -> String {
    message
        .lines()
        .filter(|line| {
            // Source snippets: `  |`, `8 | token = "…"`, `  |      ^`.
            let t = line.trim_start();
            let t = t.trim_start_matches(|c: char| c.is_ascii_digit());
            !t.trim_start().starts_with('|')
        })
        .map(redact_value)
        .collect::<Vec<_>>()
        .join("\n")
}

/// `invalid type: string "v", expected …` → `invalid type: string [redacted], expected …`
/// (also `invalid value:` and backtick-quoted values).
fn redact_value(line: &str) -> String {
    let mut out = line.to_owned();
    for marker in ["invalid type: ", "invalid value: "] {
        let Some(start) = out.find(marker).map(|i| i + marker.len()) else {
            continue;
        };
        let end = out[start..]
            .find(", expected")
            .map_or(out.len(), |i| start + i);
        let value = &out[start..end];
        let open = value.find(['"', '`']);
        let close = value.rfind(['"', '`']);
        if let (Some(open), Some(close)) = (open, close)
            && close > open
        {
            out.replace_range(start + open..=start + close, "[redacted]");
        }
    }
    out
}
