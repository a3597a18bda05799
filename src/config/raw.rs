//! The configuration file as written (SPEC §11): plain serde structs, every field
//! optional or defaulted, enums as strings so that validation can report every bad value
//! at once with its key instead of stopping at the first.

use std::collections::BTreeMap;

use serde::Deserialize;

#[derive(Default, Deserialize)]
#[serde(default)]
pub struct RawConfig {
    pub server: RawServer,
    pub upstream: RawUpstream,
    pub exchange: RawExchange,
    pub policy: RawPolicy,
    pub users: Vec<RawUser>,
    pub tokens: RawTokens,
    pub kerberos: RawKerberos,
    pub audit: RawAudit,
    pub lockout: RawLockout,
    pub spray: RawSpray,
    pub admin: RawAdmin,
}

#[derive(Default, Deserialize)]
#[serde(default)]
pub struct RawServer {
    pub listen: Option<String>,
    pub admin_listen: Option<String>,
    pub tls_cert_file: Option<String>,
    pub tls_key_file: Option<String>,
    pub header_read_timeout_seconds: Option<u64>,
    pub idle_timeout_seconds: Option<u64>,
    pub long_idle_timeout_seconds: Option<u64>,
    pub max_header_bytes: Option<u64>,
    pub shutdown_grace_seconds: Option<u64>,
    pub listen_backlog: Option<u64>,
    pub max_connections: Option<u64>,
}

#[derive(Default, Deserialize)]
#[serde(default)]
pub struct RawUpstream {
    pub servers: Vec<String>,
    pub ca_file: Option<String>,
    pub insecure_skip_verify: Option<bool>,
    pub connect_timeout_seconds: Option<u64>,
    pub response_header_timeout_seconds: Option<u64>,
    pub health_check_interval_seconds: Option<u64>,
}

#[derive(Default, Deserialize)]
#[serde(default)]
pub struct RawExchange {
    pub deployment: Option<String>,
    pub challenge: RawChallenge,
}

#[derive(Default, Deserialize)]
#[serde(default)]
pub struct RawChallenge {
    pub client_id: Option<String>,
    pub trusted_issuers: Option<String>,
    pub token_types: Option<String>,
    pub authorization_uri: Option<String>,
}

#[derive(Default, Deserialize)]
#[serde(default)]
pub struct RawPolicy {
    pub script: Option<String>,
    pub state_file: Option<String>,
    pub mode: Option<String>,
    pub other_paths: Option<String>,
    /// Per-policy settings that cmdlets cannot express, keyed by policy name.
    pub policies: BTreeMap<String, RawPolicyOptions>,
}

#[derive(Default, Deserialize)]
#[serde(default)]
pub struct RawPolicyOptions {
    pub report_only: Option<bool>,
}

#[derive(Default, Deserialize)]
#[serde(default)]
pub struct RawUser {
    pub upn: Option<String>,
    pub sam: Option<String>,
    pub aliases: Vec<String>,
}

#[derive(Default, Deserialize)]
#[serde(default)]
pub struct RawTokens {
    pub issuers: Vec<RawIssuer>,
    pub mfa: RawMfa,
    pub cache_max_entries: Option<usize>,
}

#[derive(Default, Deserialize)]
#[serde(default)]
pub struct RawIssuer {
    pub issuer: Option<String>,
    pub audiences: Vec<String>,
    pub openid_configuration_url: Option<String>,
    pub jwks_url: Option<String>,
    pub jwks_file: Option<String>,
    pub ca_file: Option<String>,
    pub algorithms: Vec<String>,
    pub leeway_seconds: Option<u64>,
    pub refresh_interval_seconds: Option<u64>,
    pub unknown_kid_refresh_min_seconds: Option<u64>,
    pub fetch_timeout_seconds: Option<u64>,
}

#[derive(Default, Deserialize)]
#[serde(default)]
pub struct RawMfa {
    pub require_for: Vec<String>,
    pub auth_context_ids: Vec<String>,
}

#[derive(Default, Deserialize)]
#[serde(default)]
pub struct RawKerberos {
    pub keytab: Option<String>,
    pub cache_max_entries: Option<usize>,
}

#[derive(Default, Deserialize)]
#[serde(default)]
pub struct RawAudit {
    pub path: Option<String>,
    pub max_file_bytes: Option<u64>,
    pub max_files: Option<u32>,
}

#[derive(Default, Deserialize)]
#[serde(default)]
pub struct RawLockout {
    pub enabled: Option<bool>,
    pub threshold: Option<u32>,
    pub observation_window_seconds: Option<u64>,
}

#[derive(Default, Deserialize)]
#[serde(default)]
pub struct RawSpray {
    pub enabled: Option<bool>,
    pub distinct_users: Option<u32>,
    pub window_seconds: Option<u64>,
    pub block: Option<bool>,
}

#[derive(Default, Deserialize)]
#[serde(default)]
pub struct RawAdmin {
    pub token: Option<String>,
}
