//! The `[tokens]` settings (SPEC §5): the issuers whose bearer tokens exgate validates,
//! where their keys come from, and the MFA requirement. `config` reads them from the
//! file; this module owns their shape.

use std::path::PathBuf;
use std::time::Duration;

use jsonwebtoken::Algorithm;

use crate::policy::Protocol;

/// Where an issuer's signing keys come from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KeySource {
    /// An OpenID configuration document whose `jwks_uri` names the keys.
    OpenIdConfiguration(hyper::Uri),
    /// A JWKS document.
    JwksUrl(hyper::Uri),
    /// A JWKS file (air-gapped labs); re-read on every refresh.
    JwksFile(PathBuf),
}

/// One trusted token issuer (`[[tokens.issuers]]`).
#[derive(Clone, Debug)]
pub struct IssuerConfig {
    /// Exact issuer, or a template with `{tenantid}` checked against the `tid` claim.
    pub issuer: String,
    pub audiences: Vec<String>,
    pub source: KeySource,
    pub algorithms: Vec<Algorithm>,
    pub leeway: Duration,
    pub refresh_interval: Duration,
    pub unknown_kid_refresh_min: Duration,
    /// `fetch_timeout_seconds`: bounds one key fetch, discovery document included.
    pub fetch_timeout: Duration,
    /// `ca_file`, read: the only roots trusted for this issuer's `https://` key
    /// documents; None trusts the system's roots.
    pub ca_roots: Option<rustls::RootCertStore>,
    /// `ca_file` itself, resolved against the configuration's folder (for display).
    pub ca_file: Option<PathBuf>,
}

impl IssuerConfig {
    /// SPEC §5's defaults: RS256, 300 s leeway, a refresh every 12 h, unknown-`kid`
    /// refetches at most every 5 min, 5 s per fetch.
    pub fn new(issuer: &str, audiences: &[&str], source: KeySource) -> IssuerConfig {
        IssuerConfig {
            issuer: issuer.to_owned(),
            audiences: audiences.iter().map(|a| (*a).to_owned()).collect(),
            source,
            algorithms: vec![Algorithm::RS256],
            leeway: Duration::from_secs(300),
            refresh_interval: Duration::from_secs(43_200),
            unknown_kid_refresh_min: Duration::from_secs(300),
            fetch_timeout: Duration::from_secs(5),
            ca_roots: None,
            ca_file: None,
        }
    }
}

/// The validated `[tokens]` section.
#[derive(Clone, Debug, Default)]
pub struct TokensConfig {
    pub issuers: Vec<IssuerConfig>,
    /// Per protocol: a bearer token must carry an MFA claim.
    pub require_mfa: [bool; Protocol::ALL.len()],
    /// `acrs` values that count as MFA (v2 tokens have no `amr`).
    pub auth_context_ids: Vec<String>,
    /// Bound of the verified-token cache; 0 switches the cache off.
    pub cache_max_entries: usize,
}
