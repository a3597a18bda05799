//! Raw configuration → typed settings, collecting every error with its key.

use std::path::{Path, PathBuf};

use super::raw::RawConfig;
use super::{ConfigError, error};
use crate::policy::{Deployment, Directory, Mode, OtherPaths, Protocol, Settings, UserEntry};

/// The policy-related part of the configuration, validated.
#[derive(Clone, Debug)]
pub struct PolicyConfig {
    pub settings: Settings,
    pub users: Vec<UserEntry>,
    /// `policy.script`, resolved against the config file's folder.
    pub script: Option<PathBuf>,
    /// `policy.state_file`, resolved likewise.
    pub state_file: Option<PathBuf>,
    /// `policy.policies.<Name>.report_only`, in name order.
    pub report_only: Vec<(String, bool)>,
}

fn one_of<T: Copy>(
    key: &str,
    value: Option<&str>,
    default: T,
    choices: &[(&str, T)],
    errors: &mut Vec<ConfigError>,
) -> T {
    let Some(value) = value else {
        return default;
    };
    match choices.iter().find(|(name, _)| *name == value) {
        Some((_, v)) => *v,
        None => {
            let names: Vec<String> = choices.iter().map(|(n, _)| format!("\"{n}\"")).collect();
            errors.push(error(
                key,
                format!("\"{value}\" is not one of {}", names.join(", ")),
            ));
            default
        }
    }
}

/// Validates `exchange`, `policy` and `[[users]]`.
pub fn policy(raw: &RawConfig, base: &Path, errors: &mut Vec<ConfigError>) -> Option<PolicyConfig> {
    let deployment = match raw.exchange.deployment.as_deref() {
        None => {
            errors.push(error(
                "exchange.deployment",
                "missing: set \"online\" or \"onpremises\"",
            ));
            Deployment::Online
        }
        value => one_of(
            "exchange.deployment",
            value,
            Deployment::Online,
            &[
                ("online", Deployment::Online),
                ("onpremises", Deployment::OnPremises),
            ],
            errors,
        ),
    };
    let mode = one_of(
        "policy.mode",
        raw.policy.mode.as_deref(),
        Mode::Enforce,
        &[
            ("enforce", Mode::Enforce),
            ("report-only", Mode::ReportOnly),
        ],
        errors,
    );
    let other_paths = one_of(
        "policy.other_paths",
        raw.policy.other_paths.as_deref(),
        OtherPaths::BlockLegacy,
        &[
            ("block-legacy", OtherPaths::BlockLegacy),
            ("pass", OtherPaths::Pass),
        ],
        errors,
    );

    let mut users = Vec::with_capacity(raw.users.len());
    for (i, u) in raw.users.iter().enumerate() {
        match &u.upn {
            Some(upn) => users.push(UserEntry {
                upn: upn.clone(),
                sam: u.sam.clone(),
                aliases: u.aliases.clone(),
            }),
            None => errors.push(error(format!("users[{i}].upn"), "missing")),
        }
    }
    if let Err(errs) = Directory::new(users.clone()) {
        errors.extend(errs.into_iter().map(|e| error(e.key, e.message)));
    }

    let resolve = |key: &str, p: &Option<String>, errors: &mut Vec<ConfigError>| {
        p.as_ref().and_then(|p| {
            if p.trim().is_empty() {
                errors.push(error(key, "is empty"));
                None
            } else {
                Some(base.join(p))
            }
        })
    };
    let script = resolve("policy.script", &raw.policy.script, errors);
    let state_file = resolve("policy.state_file", &raw.policy.state_file, errors);
    let report_only = raw
        .policy
        .policies
        .iter()
        .map(|(name, opts)| (name.clone(), opts.report_only.unwrap_or(false)))
        .collect();

    Some(PolicyConfig {
        settings: Settings {
            deployment,
            mode,
            other_paths,
        },
        users,
        script,
        state_file,
        report_only,
    })
}

/// Checks in the remaining sections that the engine does not use yet but that a typo
/// would silently break later.
pub fn other_sections(raw: &RawConfig, errors: &mut Vec<ConfigError>) {
    for (i, name) in raw.tokens.mfa.require_for.iter().enumerate() {
        if Protocol::from_name(name).is_none() {
            let names: Vec<&str> = Protocol::ALL.iter().map(|p| p.as_str()).collect();
            errors.push(error(
                format!("tokens.mfa.require_for[{i}]"),
                format!("\"{name}\" is not a protocol ({})", names.join(", ")),
            ));
        }
    }
    for (i, issuer) in raw.tokens.issuers.iter().enumerate() {
        let key = |k: &str| format!("tokens.issuers[{i}].{k}");
        if issuer.issuer.is_none() {
            errors.push(error(key("issuer"), "missing"));
        }
        if issuer.audiences.is_empty() {
            errors.push(error(key("audiences"), "needs at least one audience"));
        }
        let sources = [
            issuer.openid_configuration_url.is_some(),
            issuer.jwks_url.is_some(),
            issuer.jwks_file.is_some(),
        ];
        if sources.iter().filter(|s| **s).count() != 1 {
            errors.push(error(
                key("jwks_file"),
                "set exactly one of openid_configuration_url, jwks_url, jwks_file",
            ));
        }
        for (j, alg) in issuer.algorithms.iter().enumerate() {
            if alg.eq_ignore_ascii_case("none") || alg.to_ascii_uppercase().starts_with("HS") {
                errors.push(error(
                    format!("tokens.issuers[{i}].algorithms[{j}]"),
                    format!("\"{alg}\" is never accepted (none and HMAC are refused)"),
                ));
            }
        }
    }
    for (i, server) in raw.upstream.servers.iter().enumerate() {
        if !(server.starts_with("http://") || server.starts_with("https://")) {
            errors.push(error(
                format!("upstream.servers[{i}]"),
                format!("\"{server}\" must start with http:// or https://"),
            ));
        }
    }
    if raw.server.tls_cert_file.is_some() != raw.server.tls_key_file.is_some() {
        errors.push(error(
            "server.tls_key_file",
            "tls_cert_file and tls_key_file go together",
        ));
    }
}
