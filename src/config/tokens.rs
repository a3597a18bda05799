//! `[tokens]`: bearer-token issuers, their keys, and the MFA requirement (SPEC §5).

use std::path::Path;
use std::time::Duration;

use jsonwebtoken::Algorithm;

use super::raw::RawConfig;
use super::validate::seconds;
use super::{ConfigError, error};
use crate::policy::Protocol;
use crate::token::{IssuerConfig, KeySource, TokensConfig};

/// Asymmetric algorithms only: `none` and HMAC are refused whatever the configuration
/// says (an HMAC "secret" would be the issuer's public key).
const ALLOWED: [(&str, Algorithm); 8] = [
    ("RS256", Algorithm::RS256),
    ("RS384", Algorithm::RS384),
    ("RS512", Algorithm::RS512),
    ("PS256", Algorithm::PS256),
    ("PS384", Algorithm::PS384),
    ("PS512", Algorithm::PS512),
    ("ES256", Algorithm::ES256),
    ("ES384", Algorithm::ES384),
];

fn url(key: &str, text: &str, errors: &mut Vec<ConfigError>) -> Option<hyper::Uri> {
    match super::validate::http_url(text, true) {
        Some(u) => Some(u),
        None => {
            errors.push(error(
                key,
                "is not an http(s) URL without user name or password",
            ));
            None
        }
    }
}

/// Validates `[tokens]`.
pub fn tokens(raw: &RawConfig, base: &Path, errors: &mut Vec<ConfigError>) -> TokensConfig {
    let t = &raw.tokens;
    let mut require_mfa = [false; Protocol::ALL.len()];
    for (i, name) in t.mfa.require_for.iter().enumerate() {
        match Protocol::from_name(name) {
            Some(p) => require_mfa[p.index()] = true,
            None => {
                let names: Vec<&str> = Protocol::ALL.iter().map(|p| p.as_str()).collect();
                errors.push(error(
                    format!("tokens.mfa.require_for[{i}]"),
                    format!("is not a protocol ({})", names.join(", ")),
                ));
            }
        }
    }
    if require_mfa.contains(&true) && t.issuers.is_empty() {
        errors.push(error(
            "tokens.mfa.require_for",
            "requires at least one [[tokens.issuers]] to validate tokens with",
        ));
    }
    let mut issuers = Vec::new();
    for (i, raw_issuer) in t.issuers.iter().enumerate() {
        let key = |k: &str| format!("tokens.issuers[{i}].{k}");
        let issuer = raw_issuer.issuer.clone().unwrap_or_else(|| {
            errors.push(error(key("issuer"), "missing"));
            String::new()
        });
        if issuer.matches("{tenantid}").count() > 1 {
            errors.push(error(key("issuer"), "{tenantid} may appear once"));
        }
        if raw_issuer.audiences.is_empty() {
            errors.push(error(key("audiences"), "needs at least one audience"));
        }
        let source = match (
            &raw_issuer.openid_configuration_url,
            &raw_issuer.jwks_url,
            &raw_issuer.jwks_file,
        ) {
            (Some(u), None, None) => {
                url(&key("openid_configuration_url"), u, errors).map(KeySource::OpenIdConfiguration)
            }
            (None, Some(u), None) => url(&key("jwks_url"), u, errors).map(KeySource::JwksUrl),
            (None, None, Some(f)) => {
                let path = base.join(f);
                // A static key file is read now, so that a typo fails validation, not
                // the first token.
                match std::fs::read(&path) {
                    Ok(bytes) => {
                        if let Err(e) = crate::token::KeySet::from_jwks(&bytes) {
                            errors
                                .push(error(key("jwks_file"), format!("{}: {e}", path.display())));
                        }
                    }
                    Err(e) => {
                        errors.push(error(key("jwks_file"), format!("{}: {e}", path.display())))
                    }
                }
                Some(KeySource::JwksFile(path))
            }
            (openid, jwks_url, jwks_file) => {
                // Named by what is set: the keys to choose between, or the issuer's table.
                let set: Vec<&str> = [
                    ("openid_configuration_url", openid.is_some()),
                    ("jwks_url", jwks_url.is_some()),
                    ("jwks_file", jwks_file.is_some()),
                ]
                .into_iter()
                .filter_map(|(name, is)| is.then_some(name))
                .collect();
                let at = match set.as_slice() {
                    [] => format!("tokens.issuers[{i}]"),
                    names => names.iter().map(|n| key(n)).collect::<Vec<_>>().join(", "),
                };
                errors.push(error(
                    at,
                    "set exactly one of openid_configuration_url, jwks_url, jwks_file",
                ));
                None
            }
        };
        let mut algorithms = Vec::new();
        for (j, alg) in raw_issuer.algorithms.iter().enumerate() {
            match ALLOWED.iter().find(|(n, _)| n.eq_ignore_ascii_case(alg)) {
                Some((_, a)) => algorithms.push(*a),
                None => errors.push(error(
                    format!("tokens.issuers[{i}].algorithms[{j}]"),
                    format!(
                        "is not accepted (none and HMAC never are); use one of {}",
                        ALLOWED.map(|(n, _)| n).join(", ")
                    ),
                )),
            }
        }
        let ca_roots = raw_issuer.ca_file.as_ref().and_then(|f| {
            if matches!(source, Some(KeySource::JwksFile(_))) {
                errors.push(error(
                    key("ca_file"),
                    "applies to openid_configuration_url and jwks_url, not jwks_file",
                ));
                return None;
            }
            super::tls::ca_roots(&base.join(f))
                .map_err(|e| errors.push(error(key("ca_file"), e)))
                .ok()
        });
        let Some(source) = source else {
            continue;
        };
        let mut config = IssuerConfig::new(&issuer, &[], source);
        config.audiences = raw_issuer.audiences.clone();
        if !algorithms.is_empty() {
            config.algorithms = algorithms;
        }
        if let Some(leeway) = raw_issuer.leeway_seconds {
            // 0 is a valid leeway (no clock skew tolerated); a week is the bound.
            if leeway > super::validate::MAX_SECONDS {
                errors.push(error(
                    key("leeway_seconds"),
                    format!("is outside 0..={}", super::validate::MAX_SECONDS),
                ));
            }
            config.leeway = Duration::from_secs(leeway.min(super::validate::MAX_SECONDS));
        }
        config.refresh_interval = seconds(
            &key("refresh_interval_seconds"),
            raw_issuer.refresh_interval_seconds,
            config.refresh_interval.as_secs(),
            errors,
        );
        config.unknown_kid_refresh_min = seconds(
            &key("unknown_kid_refresh_min_seconds"),
            raw_issuer.unknown_kid_refresh_min_seconds,
            config.unknown_kid_refresh_min.as_secs(),
            errors,
        );
        config.fetch_timeout = seconds(
            &key("fetch_timeout_seconds"),
            raw_issuer.fetch_timeout_seconds,
            config.fetch_timeout.as_secs(),
            errors,
        );
        config.ca_roots = ca_roots;
        config.ca_file = raw_issuer.ca_file.as_ref().map(|f| base.join(f));
        issuers.push(config);
    }
    let cache_max_entries = t.cache_max_entries.unwrap_or(10_000);
    TokensConfig {
        issuers,
        require_mfa,
        auth_context_ids: t.mfa.auth_context_ids.clone(),
        cache_max_entries,
    }
}
