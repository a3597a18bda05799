//! `exgate validate --print`: the effective configuration (the file, the environment
//! overrides and every default) as TOML that `exgate` reads back, with secrets redacted.

use std::fmt::Write as _;
use std::path::Path;
use std::time::Duration;

use super::Config;
use crate::policy::{Mode, OtherPaths, Protocol};
use crate::token::KeySource;

/// What stands for a secret value (`admin.token`) in the output.
pub const REDACTED: &str = "[redacted]";

/// A TOML basic string (JSON's escapes are TOML's).
fn quoted(s: &str) -> String {
    serde_json::to_string(s).expect("a string serializes")
}

/// A path made absolute (against the current folder), so that the output reads back the
/// same from anywhere.
fn path(p: &Path) -> String {
    let p = std::path::absolute(p).unwrap_or_else(|_| p.to_owned());
    quoted(&p.display().to_string())
}

fn list<'a>(items: impl IntoIterator<Item = &'a str>) -> String {
    let items: Vec<String> = items.into_iter().map(quoted).collect();
    format!("[{}]", items.join(", "))
}

fn secs(d: Duration) -> u64 {
    d.as_secs()
}

/// The effective configuration of `config`, section by section in the order of the
/// configuration reference; paths are shown absolute. Never prints a secret:
/// `admin.token` is [`REDACTED`], and keys (keytab, JWKS) are named by their files.
pub fn effective(config: &Config) -> String {
    let mut out = String::new();
    let o = &mut out;
    let s = &config.server;
    let _ = writeln!(
        o,
        "# {}: the effective configuration",
        config.path.display()
    );
    let _ = writeln!(o, "[server]");
    let _ = writeln!(o, "listen = {}", quoted(&s.listen.to_string()));
    let _ = writeln!(o, "admin_listen = {}", quoted(&s.admin_listen.to_string()));
    if let Some(tls) = &s.tls {
        let _ = writeln!(o, "tls_cert_file = {}", path(&tls.files.cert));
        let _ = writeln!(o, "tls_key_file = {}", path(&tls.files.key));
    }
    let _ = writeln!(
        o,
        "header_read_timeout_seconds = {}",
        secs(s.header_read_timeout)
    );
    let _ = writeln!(o, "idle_timeout_seconds = {}", secs(s.idle_timeout));
    let _ = writeln!(
        o,
        "long_idle_timeout_seconds = {}",
        secs(s.long_idle_timeout)
    );
    let _ = writeln!(o, "max_header_bytes = {}", s.max_header_bytes);
    let _ = writeln!(o, "shutdown_grace_seconds = {}", secs(s.shutdown_grace));
    let _ = writeln!(o, "listen_backlog = {}", s.listen_backlog);
    let _ = writeln!(o, "quick_refusals = {}", s.quick_refusals);
    match s.max_connections {
        Some(n) => {
            let _ = writeln!(o, "max_connections = {n}");
        }
        None => {
            let _ = writeln!(
                o,
                "# max_connections: sized from the open-file limit when serve starts"
            );
        }
    }

    let u = &config.upstream;
    let _ = writeln!(o, "\n[upstream]");
    // As written in the reference: scheme and authority, no path.
    let servers: Vec<String> = u
        .servers
        .iter()
        .map(|s| match (s.scheme_str(), s.authority()) {
            (Some(scheme), Some(authority)) => format!("{scheme}://{authority}"),
            _ => s.to_string(),
        })
        .collect();
    let _ = writeln!(o, "servers = {}", list(servers.iter().map(String::as_str)));
    if let Some(ca) = &u.ca_file {
        let _ = writeln!(o, "ca_file = {}", path(ca));
    }
    let _ = writeln!(o, "insecure_skip_verify = {}", u.insecure_skip_verify);
    let _ = writeln!(o, "connect_timeout_seconds = {}", secs(u.connect_timeout));
    let _ = writeln!(
        o,
        "response_header_timeout_seconds = {}",
        secs(u.response_header_timeout)
    );
    let _ = writeln!(
        o,
        "health_check_interval_seconds = {}",
        u.health_check_interval.map_or(0, secs)
    );

    let p = &config.policy;
    let c = &config.challenge;
    let _ = writeln!(o, "\n[exchange]");
    let _ = writeln!(o, "deployment = {}", quoted(p.settings.deployment.as_str()));
    let _ = writeln!(o, "\n[exchange.challenge]");
    let _ = writeln!(o, "client_id = {}", quoted(&c.client_id));
    let _ = writeln!(o, "trusted_issuers = {}", quoted(&c.trusted_issuers));
    let _ = writeln!(o, "token_types = {}", quoted(&c.token_types));
    let _ = writeln!(o, "authorization_uri = {}", quoted(&c.authorization_uri));

    let _ = writeln!(o, "\n[policy]");
    if let Some(script) = &p.script {
        let _ = writeln!(o, "script = {}", path(script));
    }
    if let Some(state) = &p.state_file {
        let _ = writeln!(o, "state_file = {}", path(state));
    }
    let mode = match p.settings.mode {
        Mode::Enforce => "enforce",
        Mode::ReportOnly => "report-only",
    };
    let _ = writeln!(o, "mode = {}", quoted(mode));
    let other = match p.settings.other_paths {
        OtherPaths::BlockLegacy => "block-legacy",
        OtherPaths::Pass => "pass",
    };
    let _ = writeln!(o, "other_paths = {}", quoted(other));
    for (name, report_only) in &p.report_only {
        let _ = writeln!(o, "\n[policy.policies.{}]", quoted(name));
        let _ = writeln!(o, "report_only = {report_only}");
    }

    for user in &p.users {
        let _ = writeln!(o, "\n[[users]]");
        let _ = writeln!(o, "upn = {}", quoted(&user.upn));
        if let Some(sam) = &user.sam {
            let _ = writeln!(o, "sam = {}", quoted(sam));
        }
        if !user.aliases.is_empty() {
            let _ = writeln!(
                o,
                "aliases = {}",
                list(user.aliases.iter().map(String::as_str))
            );
        }
    }

    let t = &config.tokens;
    let _ = writeln!(o, "\n[tokens]");
    let _ = writeln!(o, "cache_max_entries = {}", t.cache_max_entries);
    for i in &t.issuers {
        let _ = writeln!(o, "\n[[tokens.issuers]]");
        let _ = writeln!(o, "issuer = {}", quoted(&i.issuer));
        let _ = writeln!(
            o,
            "audiences = {}",
            list(i.audiences.iter().map(String::as_str))
        );
        match &i.source {
            KeySource::OpenIdConfiguration(url) => {
                let _ = writeln!(o, "openid_configuration_url = {}", quoted(&url.to_string()));
            }
            KeySource::JwksUrl(url) => {
                let _ = writeln!(o, "jwks_url = {}", quoted(&url.to_string()));
            }
            KeySource::JwksFile(file) => {
                let _ = writeln!(o, "jwks_file = {}", path(file.as_path()));
            }
        }
        if let Some(ca) = &i.ca_file {
            let _ = writeln!(o, "ca_file = {}", path(ca));
        }
        let algorithms: Vec<String> = i.algorithms.iter().map(|a| format!("{a:?}")).collect();
        let _ = writeln!(
            o,
            "algorithms = {}",
            list(algorithms.iter().map(String::as_str))
        );
        let _ = writeln!(o, "leeway_seconds = {}", secs(i.leeway));
        let _ = writeln!(o, "refresh_interval_seconds = {}", secs(i.refresh_interval));
        let _ = writeln!(
            o,
            "unknown_kid_refresh_min_seconds = {}",
            secs(i.unknown_kid_refresh_min)
        );
        let _ = writeln!(o, "fetch_timeout_seconds = {}", secs(i.fetch_timeout));
    }
    let _ = writeln!(o, "\n[tokens.mfa]");
    let require: Vec<&str> = Protocol::ALL
        .iter()
        .filter(|p| t.require_mfa[p.index()])
        .map(|p| p.as_str())
        .collect();
    let _ = writeln!(o, "require_for = {}", list(require));
    let _ = writeln!(
        o,
        "auth_context_ids = {}",
        list(t.auth_context_ids.iter().map(String::as_str))
    );

    if let Some(k) = &config.kerberos {
        let _ = writeln!(o, "\n[kerberos]");
        let _ = writeln!(o, "keytab = {}", path(&k.keytab_path));
        let _ = writeln!(o, "cache_max_entries = {}", k.cache_max_entries);
    }

    let a = &config.audit;
    let _ = writeln!(o, "\n[audit]");
    match (&a.path, a.enabled) {
        (Some(p), _) => {
            let _ = writeln!(o, "path = {}", path(p));
        }
        (None, true) => {
            let _ = writeln!(o, "path = \"-\"");
        }
        (None, false) => {
            let _ = writeln!(o, "# path: not set, no audit log");
        }
    }
    let _ = writeln!(o, "max_file_bytes = {}", a.max_file_bytes);
    let _ = writeln!(o, "max_files = {}", a.max_files);

    let pr = &config.protect;
    let _ = writeln!(o, "\n[lockout]");
    let _ = writeln!(o, "enabled = {}", pr.lockout_enabled);
    let _ = writeln!(o, "threshold = {}", pr.lockout_threshold);
    let _ = writeln!(o, "familiar_threshold = {}", pr.familiar_threshold);
    let _ = writeln!(o, "mode = {}", quoted(pr.lockout_mode.as_str()));
    let _ = writeln!(
        o,
        "observation_window_seconds = {}",
        secs(pr.observation_window)
    );
    let _ = writeln!(o, "\n[spray]");
    let _ = writeln!(o, "enabled = {}", pr.spray_enabled);
    let _ = writeln!(o, "distinct_users = {}", pr.spray_distinct_users);
    let _ = writeln!(o, "window_seconds = {}", secs(pr.spray_window));
    let _ = writeln!(o, "block = {}", pr.spray_block);

    if let Some(c) = &config.cluster {
        let _ = writeln!(o, "\n[cluster]");
        // Without its password, if it has one: the URL as it would be printed in a log.
        let _ = writeln!(o, "redis_url = {}", quoted(&c.redis_url.to_string()));
        let _ = writeln!(o, "key_prefix = {}", quoted(&c.key_prefix));
        let _ = writeln!(o, "timeout_milliseconds = {}", c.timeout.as_millis());
    }

    let _ = writeln!(o, "\n[admin]");
    match &config.admin_token {
        Some(_) => {
            let _ = writeln!(o, "token = {}", quoted(REDACTED));
        }
        None => {
            let _ = writeln!(
                o,
                "# token: not set, the admin API's POST endpoints are open"
            );
        }
    }
    out
}

/// The settings a reload cannot change (SPEC §11: listeners, upstreams, token issuers,
/// the audit log, lockout and spray counters, the admin API are set up once, at start),
/// as the section headers [`effective`] writes.
pub const START_ONLY: [&str; 10] = [
    "[server]",
    "[upstream]",
    "[tokens]",
    "[[tokens.issuers]]",
    "[tokens.mfa]",
    "[audit]",
    "[lockout]",
    "[spray]",
    "[admin]",
    "[cluster]",
];

/// The [`START_ONLY`] sections (and `policy.state_file`) whose effective values differ
/// between `old` and `new`, by header; `admin.token` is compared itself, not its
/// redacted text.
pub fn start_only_changes(old: &Config, new: &Config) -> Vec<String> {
    let (old_text, new_text) = (effective(old), effective(new));
    let (a, b) = (sections(&old_text), sections(&new_text));
    let mut changed: Vec<String> = START_ONLY
        .iter()
        .filter(|h| a.get(**h) != b.get(**h))
        .map(|h| (*h).to_owned())
        .collect();
    let token = |c: &Config| c.admin_token.as_ref().map(|t| t.expose().to_vec());
    if token(old) != token(new) && !changed.iter().any(|h| h == "[admin]") {
        changed.push("[admin]".into());
    }
    if old.policy.state_file != new.policy.state_file {
        changed.push("policy.state_file".into());
    }
    changed
}

/// The lines of each section of [`effective`]'s output, by header (the tables of an
/// array of tables together).
fn sections(text: &str) -> std::collections::BTreeMap<&str, String> {
    let mut out = std::collections::BTreeMap::new();
    let mut header = "";
    for line in text.lines() {
        if line.starts_with('[') {
            header = line;
            if header.starts_with("[policy.policies.") {
                header = "[policy.policies]";
            }
        }
        let entry: &mut String = out.entry(header).or_default();
        entry.push_str(line);
        entry.push('\n');
    }
    out
}
