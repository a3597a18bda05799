//! Configuration: a TOML file plus `EXGATE__SECTION__KEY` environment overrides, read
//! with the `config` crate into raw structs, then validated into typed settings. Every
//! problem is reported at once, each naming its dotted key (or script line).

mod kerberos;
mod observe;
pub mod print;
mod raw;
pub mod tls;
mod tokens;
mod validate;

use std::fmt;
use std::path::{Path, PathBuf};

pub use tls::{ServerTls, TlsFiles};
pub use validate::{ChallengeConfig, PolicyConfig, ServerConfig, UpstreamConfig};

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

impl ConfigErrors {
    /// A single error for `key`.
    pub fn one(key: impl Into<String>, message: impl Into<String>) -> ConfigErrors {
        ConfigErrors(vec![error(key, message)])
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
    pub tokens: crate::token::TokensConfig,
    /// `[kerberos]`: the service keytab, read and parsed; None without `keytab`.
    pub kerberos: Option<crate::kerberos::KerberosConfig>,
    /// `admin.token`: required as `Authorization: Bearer …` by the admin POST endpoints.
    pub admin_token: Option<crate::auth::Secret>,
    pub audit: crate::audit::AuditConfig,
    pub protect: crate::protect::ProtectConfig,
    /// `[cluster]`: the fleet's Redis; None for a standalone instance.
    pub cluster: Option<crate::cluster::ClusterConfig>,
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
    let overrides = environment_overrides(env.as_ref());
    let mut builder = config::Config::builder()
        .add_source(config::File::from(path).format(config::FileFormat::Toml));
    for o in &overrides {
        let value = if raw::LIST_KEYS.contains(&o.key.as_str()) {
            config::ValueKind::from(
                o.value
                    .split(',')
                    .map(|s| s.trim().to_owned())
                    .filter(|s| !s.is_empty())
                    .collect::<Vec<_>>(),
            )
        } else {
            config::ValueKind::String(o.value.clone())
        };
        builder = builder.set_override(&o.key, value).map_err(|_| {
            ConfigErrors(vec![error(
                o.variable.clone(),
                "is not a key like EXGATE__SECTION__KEY",
            )])
        })?;
    }
    let built = builder
        .build()
        .and_then(|c| c.try_deserialize::<config::Value>())
        .map_err(|e| {
            ConfigErrors(vec![error(
                path.display().to_string(),
                redact(&e.to_string()),
            )])
        })?;
    let mut errors = Vec::new();
    let raw = deserialize_every_error(built, &mut errors);

    let base = path.parent().unwrap_or(Path::new("."));
    let policy = validate::policy(&raw, base, &mut errors);
    let server = validate::server(&raw, base, &mut errors);
    let upstream = validate::upstream(&raw, base, &mut errors);
    let challenge = validate::challenge(&raw, &mut errors);
    let tokens = tokens::tokens(&raw, base, &mut errors);
    let kerberos = kerberos::kerberos(&raw, base, &mut errors);
    let audit = observe::audit(&raw, base, &mut errors);
    let protect = observe::protect(&raw, &mut errors);
    let cluster = observe::cluster(&raw, &mut errors);
    let admin_token = match raw.admin.token.as_deref() {
        Some(t) if t.len() < 16 => {
            errors.push(error("admin.token", "must be at least 16 characters"));
            None
        }
        Some(t) => Some(crate::auth::Secret::new(t.as_bytes())),
        None => None,
    };
    distinct_files(&policy, &audit, path, &mut errors);
    if !errors.is_empty() {
        // The policy script and state file are checked too, so that configuration errors
        // do not hide script errors (a script that cannot be read is already named).
        if let Err(more) = engine(&policy) {
            for e in more.0 {
                if !errors.contains(&e) {
                    errors.push(e);
                }
            }
        }
        // An error in a value set from the environment says so: the file does not
        // hold it.
        for e in &mut errors {
            let from = overrides.iter().find(|o| {
                o.key == e.key
                    || o.key.starts_with(&format!("{}.", e.key))
                    || e.key.starts_with(&format!("{}.", o.key))
                    || e.key.starts_with(&format!("{}[", o.key))
            });
            if let Some(o) = from {
                e.message.push_str(&format!(" (set by {})", o.variable));
            }
        }
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
        cluster,
    })
}

/// Deserializes `tree` into [`raw::RawConfig`], collecting every unknown key and every
/// value of the wrong type into `errors`: a value of the wrong type is reported with its
/// key and removed, and the rest is read again, so that one wrong type does not hide the
/// other errors. Values are never quoted in the messages (any may be a secret).
fn deserialize_every_error(
    mut tree: config::Value,
    errors: &mut Vec<ConfigError>,
) -> raw::RawConfig {
    // Each pass removes one bad value; a configuration has far fewer keys than this.
    for _ in 0..256 {
        let mut unknown = Vec::new();
        match serde_ignored::deserialize(tree.clone(), |p| unknown.push(p.to_string())) {
            Ok(raw) => {
                errors.extend(
                    unknown
                        .into_iter()
                        .map(|key| error(dotted(&key), "unknown key")),
                );
                // The table's order is a hash map's: sorted, the list reads the same each run.
                errors.sort_by(|a, b| a.key.cmp(&b.key));
                return raw;
            }
            Err(e) => {
                let (key, message) = type_error(&e);
                let removed = key.as_deref().is_some_and(|k| remove_key(&mut tree, k));
                errors.push(error(
                    key.unwrap_or_else(|| "configuration".into()),
                    message,
                ));
                if !removed {
                    return raw::RawConfig::default();
                }
            }
        }
    }
    raw::RawConfig::default()
}

/// The key (dotted, `[i]` for indices) and a value-free message of a deserialization error.
fn type_error(e: &config::ConfigError) -> (Option<String>, String) {
    match e {
        config::ConfigError::Type {
            unexpected,
            expected,
            key,
            ..
        } => {
            // `Unexpected`'s own text quotes the value; only its kind is kept.
            let text = unexpected.to_string();
            let found = match text.split([' ', '`', '"']).next().unwrap_or("") {
                "64-bit" | "128-bit" if text.contains("`-") => "a negative integer",
                "boolean" => "a boolean",
                "64-bit" | "128-bit" => "an integer",
                "floating" => "a number with a fraction",
                "string" => "a string",
                "unit" => "nothing",
                "sequence" => "a list",
                "map" => "a table",
                _ => "another type",
            };
            (
                key.as_deref().map(dotted),
                format!("expected {expected}, found {found}"),
            )
        }
        config::ConfigError::At { error, key, .. } => {
            let (inner_key, message) = type_error(error);
            (inner_key.or_else(|| key.as_deref().map(dotted)), message)
        }
        other => (None, plain(&redact(&other.to_string()))),
    }
}

/// serde's words for a table and a wide integer, as a configuration's reader says them.
fn plain(message: &str) -> String {
    let mut out = message.replace(" as i128", "");
    while let Some(i) = out.find("struct Raw") {
        let end = out[i..]
            .find(|c: char| !c.is_ascii_alphanumeric() && c != ' ')
            .map_or(out.len(), |e| i + e);
        let end = out[i + "struct ".len()..end]
            .find(' ')
            .map_or(end, |e| i + "struct ".len() + e);
        out.replace_range(i..end, "a table");
    }
    out
}

/// Removes `key` (`server.listen`, `users[1].upn`, `upstream.servers[2]`) from `tree`:
/// a table's entry, or a list's element. False when there is no such key.
fn remove_key(tree: &mut config::Value, key: &str) -> bool {
    enum Step<'a> {
        Name(&'a str),
        Index(usize),
    }
    let mut steps = Vec::new();
    for part in key.split('.') {
        let (name, mut rest) = part.split_at(part.find('[').unwrap_or(part.len()));
        if !name.is_empty() {
            steps.push(Step::Name(name));
        }
        while let Some(end) = rest.find(']') {
            match rest[1..end].parse() {
                Ok(i) => steps.push(Step::Index(i)),
                Err(_) => return false,
            }
            rest = &rest[end + 1..];
        }
    }
    let Some((last, path)) = steps.split_last() else {
        return false;
    };
    let mut node = tree;
    for step in path {
        let next = match (&mut node.kind, step) {
            (config::ValueKind::Table(map), Step::Name(n)) => map.get_mut(*n),
            (config::ValueKind::Array(items), Step::Index(i)) => items.get_mut(*i),
            _ => None,
        };
        match next {
            Some(n) => node = n,
            None => return false,
        }
    }
    match (&mut node.kind, last) {
        (config::ValueKind::Table(map), Step::Name(n)) => map.remove(*n).is_some(),
        (config::ValueKind::Array(items), Step::Index(i)) if *i < items.len() => {
            items.remove(*i);
            true
        }
        _ => false,
    }
}

/// Checks that `serve` will be able to write `path` (`audit.path`, `policy.state_file`):
/// an existing file must open for appending (nothing is written); the folder it is in,
/// or the nearest existing folder on the way to it, must let exgate create entries
/// (probed by creating an empty folder and removing it at once), since `serve` creates
/// the missing folders and rotates files by renaming them there. Nothing else is left
/// behind.
pub(super) fn check_writable(key: &str, path: &Path, errors: &mut Vec<ConfigError>) {
    if path.is_dir() {
        errors.push(error(
            key,
            format!("{} is a folder, not a file", path.display()),
        ));
        return;
    }
    if path.exists()
        && let Err(e) = std::fs::OpenOptions::new().append(true).open(path)
    {
        errors.push(error(
            key,
            format!("{} cannot be written: {e}", path.display()),
        ));
        return;
    }
    let mut dir = path.parent().unwrap_or(Path::new(""));
    while !dir.as_os_str().is_empty() && !dir.exists() {
        dir = dir.parent().unwrap_or(Path::new(""));
    }
    let dir = if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    };
    if !dir.is_dir() {
        errors.push(error(key, format!("{} is not a folder", dir.display())));
        return;
    }
    static PROBES: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = PROBES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let probe = dir.join(format!(".exgate-probe-{}-{n}", std::process::id()));
    match std::fs::create_dir(&probe) {
        Ok(()) => {
            let _ = std::fs::remove_dir(&probe);
        }
        Err(e) => errors.push(error(
            key,
            format!(
                "{} cannot be created: {e} (in {})",
                path.display(),
                dir.display()
            ),
        )),
    }
}

/// The files exgate writes (`audit.path`, `policy.state_file`) must be files of their
/// own: the audit log written into the state file (or the script, or the configuration)
/// would make the next start fail on it.
fn distinct_files(
    policy: &PolicyConfig,
    audit: &crate::audit::AuditConfig,
    config: &Path,
    errors: &mut Vec<ConfigError>,
) {
    let same = |a: &Path, b: &Path| {
        let resolve = |p: &Path| {
            std::fs::canonicalize(p)
                .or_else(|_| std::path::absolute(p))
                .unwrap_or_else(|_| p.to_owned())
        };
        resolve(a) == resolve(b)
    };
    let read: Vec<(&str, &Path)> = [
        ("the configuration file", Some(config)),
        ("policy.script", policy.script.as_deref()),
    ]
    .into_iter()
    .filter_map(|(k, p)| p.map(|p| (k, p)))
    .collect();
    let written: Vec<(&str, &Path)> = [
        ("audit.path", audit.path.as_deref()),
        ("policy.state_file", policy.state_file.as_deref()),
    ]
    .into_iter()
    .filter_map(|(k, p)| p.map(|p| (k, p)))
    .collect();
    for (i, (key, path)) in written.iter().enumerate() {
        let clash = read
            .iter()
            .chain(written[..i].iter())
            .find(|(_, other)| same(path, other));
        if let Some((other, _)) = clash {
            errors.push(error(*key, format!("is the same file as {other}")));
        }
    }
}

/// One `EXGATE__SECTION__KEY` environment variable.
struct Override {
    /// `EXGATE__UPSTREAM__SERVERS`, as set.
    variable: String,
    /// `upstream.servers`: lower case, `__` read as `.`.
    key: String,
    value: String,
}

/// The `EXGATE__…` variables of `env` (the process environment when None), in name order.
/// Every value is a string, converted by the key's type like a TOML string would be;
/// the list keys ([`raw::LIST_KEYS`]) are split at commas.
fn environment_overrides(env: Option<&std::collections::HashMap<String, String>>) -> Vec<Override> {
    let vars: Vec<(String, String)> = match env {
        Some(map) => map.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
        None => std::env::vars_os()
            .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
            .collect(),
    };
    let mut overrides: Vec<Override> = vars
        .into_iter()
        .filter_map(|(variable, value)| {
            let rest = variable
                .get(..8)?
                .eq_ignore_ascii_case("EXGATE__")
                .then(|| &variable[8..])?;
            let key = rest.to_lowercase().replace("__", ".");
            Some(Override {
                key,
                variable,
                value,
            })
        })
        .collect();
    overrides.sort_by(|a, b| a.variable.cmp(&b.variable));
    overrides
}

/// `serde_ignored` writes sequence indices as `.0`, the `config` crate `[0]` with no dot
/// after it (`users[0]sam`); the rest of exgate says `users[0].sam`.
fn dotted(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    let path = path
        .replace("]", "].")
        .replace("].[", "][")
        .replace("]..", "].");
    let path = path.trim_end_matches('.');
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
    engine(&config.policy)
}

/// [`build_engine`] from the `[policy]` settings alone.
fn engine(policy: &PolicyConfig) -> Result<Engine, ConfigErrors> {
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
