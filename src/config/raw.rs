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
    pub cluster: RawCluster,
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
    pub quick_refusals: Option<StrictBool>,
}

#[derive(Default, Deserialize)]
#[serde(default)]
pub struct RawUpstream {
    pub servers: Vec<String>,
    pub ca_file: Option<String>,
    pub insecure_skip_verify: Option<StrictBool>,
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
    pub report_only: Option<StrictBool>,
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
    pub enabled: Option<StrictBool>,
    pub threshold: Option<u32>,
    pub familiar_threshold: Option<u32>,
    pub mode: Option<String>,
    pub observation_window_seconds: Option<u64>,
}

#[derive(Default, Deserialize)]
#[serde(default)]
pub struct RawSpray {
    pub enabled: Option<StrictBool>,
    pub distinct_users: Option<u32>,
    pub window_seconds: Option<u64>,
    pub block: Option<StrictBool>,
}

#[derive(Default, Deserialize)]
#[serde(default)]
pub struct RawCluster {
    pub redis_url: Option<String>,
    pub key_prefix: Option<String>,
    pub timeout_milliseconds: Option<u64>,
}

#[derive(Default, Deserialize)]
#[serde(default)]
pub struct RawAdmin {
    pub token: Option<String>,
}

/// The list keys that an environment variable can set, as comma-separated values
/// (`EXGATE__UPSTREAM__SERVERS=http://a:80,http://b:80`). Lists of tables (`[[users]]`,
/// `[[tokens.issuers]]`) cannot be set from the environment.
pub const LIST_KEYS: [&str; 3] = [
    "upstream.servers",
    "tokens.mfa.require_for",
    "tokens.mfa.auth_context_ids",
];

/// A boolean written as `true` or `false` (or, from the environment, the strings
/// `"true"` and `"false"`): unlike serde's `bool` through the `config` crate, `1` and
/// `"yes"` are refused, not read as true.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StrictBool(pub bool);

impl<'a> Deserialize<'a> for StrictBool {
    fn deserialize<D: serde::Deserializer<'a>>(d: D) -> Result<StrictBool, D::Error> {
        // The same words as the other type errors, and never the value.
        fn found<E: serde::de::Error>(kind: &str) -> E {
            E::custom(format!("expected true or false, found {kind}"))
        }
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = StrictBool;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("true or false")
            }
            fn visit_bool<E: serde::de::Error>(self, v: bool) -> Result<StrictBool, E> {
                Ok(StrictBool(v))
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<StrictBool, E> {
                match v {
                    "true" => Ok(StrictBool(true)),
                    "false" => Ok(StrictBool(false)),
                    _ => Err(found("a string")),
                }
            }
            fn visit_i64<E: serde::de::Error>(self, _: i64) -> Result<StrictBool, E> {
                Err(found("an integer"))
            }
            fn visit_u64<E: serde::de::Error>(self, _: u64) -> Result<StrictBool, E> {
                Err(found("an integer"))
            }
            fn visit_f64<E: serde::de::Error>(self, _: f64) -> Result<StrictBool, E> {
                Err(found("a number with a fraction"))
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(self, _: A) -> Result<StrictBool, A::Error> {
                Err(found("a list"))
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, _: A) -> Result<StrictBool, A::Error> {
                Err(found("a table"))
            }
        }
        d.deserialize_any(Visitor)
    }
}
