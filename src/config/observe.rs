//! `[audit]`, `[lockout]` and `[spray]`.

use std::path::Path;
use std::time::Duration;

use super::raw::RawConfig;
use super::validate::seconds;
use super::{ConfigError, error};
use crate::audit::AuditConfig;
use crate::cluster::{ClusterConfig, DEFAULT_KEY_PREFIX, DEFAULT_TIMEOUT_MILLISECONDS, RedisUrl};
use crate::protect::{LockoutMode, ProtectConfig};

/// Validates `[audit]`: `path` is a file (relative to the config file) or `"-"` for
/// standard output; without it there is no audit log.
pub fn audit(raw: &RawConfig, base: &Path, errors: &mut Vec<ConfigError>) -> AuditConfig {
    let a = &raw.audit;
    let max_file_bytes = a.max_file_bytes.unwrap_or(100 * 1024 * 1024);
    if max_file_bytes < 4096 {
        errors.push(error("audit.max_file_bytes", "must be at least 4096"));
    }
    let max_files = a.max_files.unwrap_or(10);
    if max_files == 0 {
        errors.push(error("audit.max_files", "must be at least 1"));
    }
    if a.path.as_deref().is_some_and(|p| p.trim().is_empty()) {
        errors.push(error(
            "audit.path",
            "is empty: leave it out for no audit log, or \"-\" for standard output",
        ));
    }
    let path = a
        .path
        .as_deref()
        .filter(|p| *p != "-" && !p.trim().is_empty())
        .map(|p| base.join(p));
    if let Some(path) = &path {
        super::check_writable("audit.path", path, errors);
    }
    AuditConfig {
        enabled: a.path.as_deref().is_some_and(|p| !p.is_empty()),
        path,
        max_file_bytes,
        max_files,
    }
}

/// Validates `[lockout]` and `[spray]`.
pub fn protect(raw: &RawConfig, errors: &mut Vec<ConfigError>) -> ProtectConfig {
    let d = ProtectConfig::default();
    let (l, s) = (&raw.lockout, &raw.spray);
    let threshold = l.threshold.unwrap_or(d.lockout_threshold);
    if threshold == 0 {
        errors.push(error("lockout.threshold", "must be at least 1"));
    }
    let familiar_threshold = l.familiar_threshold.unwrap_or(threshold);
    if familiar_threshold == 0 {
        errors.push(error("lockout.familiar_threshold", "must be at least 1"));
    }
    let lockout_mode = match l.mode.as_deref() {
        None | Some("enforce") => LockoutMode::Enforce,
        Some("log-only") => LockoutMode::LogOnly,
        Some(_) => {
            errors.push(error(
                "lockout.mode",
                "is not one of \"enforce\", \"log-only\"",
            ));
            LockoutMode::Enforce
        }
    };
    let distinct = s.distinct_users.unwrap_or(d.spray_distinct_users);
    if distinct < 2 {
        errors.push(error("spray.distinct_users", "must be at least 2"));
    }
    let window = |key: &str, v: Option<u64>, default: Duration, errors: &mut Vec<ConfigError>| {
        seconds(key, v, default.as_secs(), errors)
    };
    ProtectConfig {
        lockout_enabled: l.enabled.map_or(d.lockout_enabled, |b| b.0),
        lockout_threshold: threshold,
        familiar_threshold,
        lockout_mode,
        observation_window: window(
            "lockout.observation_window_seconds",
            l.observation_window_seconds,
            d.observation_window,
            errors,
        ),
        spray_enabled: s.enabled.map_or(d.spray_enabled, |b| b.0),
        spray_distinct_users: distinct,
        spray_window: window(
            "spray.window_seconds",
            s.window_seconds,
            d.spray_window,
            errors,
        ),
        spray_block: s.block.map_or(d.spray_block, |b| b.0),
    }
}

/// Validates `[cluster]`: None without `redis_url`. The URL's password never appears in
/// an error.
pub fn cluster(raw: &RawConfig, errors: &mut Vec<ConfigError>) -> Option<ClusterConfig> {
    let c = &raw.cluster;
    let Some(url) = c.redis_url.as_deref() else {
        for (key, set) in [
            ("cluster.key_prefix", c.key_prefix.is_some()),
            (
                "cluster.timeout_milliseconds",
                c.timeout_milliseconds.is_some(),
            ),
        ] {
            if set {
                errors.push(error(key, "set without cluster.redis_url"));
            }
        }
        return None;
    };
    let redis_url = match RedisUrl::parse(url) {
        Ok(u) => u,
        Err(message) => {
            errors.push(error("cluster.redis_url", message));
            return None;
        }
    };
    let key_prefix = c
        .key_prefix
        .clone()
        .unwrap_or_else(|| DEFAULT_KEY_PREFIX.to_owned());
    if key_prefix.is_empty()
        || key_prefix
            .chars()
            .any(|ch| ch.is_whitespace() || ch.is_control())
    {
        errors.push(error(
            "cluster.key_prefix",
            "must be non-empty, without spaces or control characters",
        ));
    }
    let timeout = c
        .timeout_milliseconds
        .unwrap_or(DEFAULT_TIMEOUT_MILLISECONDS);
    if !(1..=10_000).contains(&timeout) {
        errors.push(error(
            "cluster.timeout_milliseconds",
            format!("{timeout} is outside 1..=10000"),
        ));
    }
    if raw.policy.state_file.is_some() {
        errors.push(error(
            "policy.state_file",
            "not with [cluster]: cmdlets persist in the fleet's policy log in Redis",
        ));
    }
    Some(ClusterConfig {
        redis_url,
        key_prefix,
        timeout: Duration::from_millis(timeout.clamp(1, 10_000)),
    })
}
