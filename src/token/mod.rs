//! Bearer-token validation like a hardened resource server (SPEC §5): exact or
//! `{tenantid}` issuers, audiences, an asymmetric-only algorithm allowlist, `exp`/`nbf`
//! with leeway, shared per-issuer key caches, and a verified-token cache.
//!
//! The checks that need no key (shape, algorithm, issuer, tenant) run before any key is
//! looked up or fetched, so a token from nowhere costs no fetch.

mod cache;
mod claims;
mod error;
mod issuer;
mod keys;
#[cfg(feature = "lab")]
pub mod mint;
mod settings;

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::Algorithm;
use jsonwebtoken::errors::ErrorKind;
use serde::Deserialize;

pub use cache::{FAILED_TTL_SECONDS, Failed, FailedCache, Verified, VerifiedCache};
pub use claims::{AUTHN_METHODS_REFERENCES, Claims, MULTIPLE_AUTHN};
pub use error::TokenError;
pub use issuer::IssuerPattern;
pub use keys::{Fetcher, IssuerKeys, KeySet};

use crate::metrics::Metrics;
pub use settings::{IssuerConfig, KeySource, TokensConfig};

/// Tokens longer than this are refused unread (Entra tokens with many groups reach
/// 8–16 KiB; the request head limit caps them anyway).
const MAX_TOKEN_BYTES: usize = 32 * 1024;

struct Issuer {
    config: IssuerConfig,
    pattern: IssuerPattern,
    keys: Arc<IssuerKeys>,
    /// The shared fetcher (system roots), or the issuer's own when it has a `ca_file`.
    fetcher: Arc<Fetcher>,
    /// The allowed algorithms, by their `alg` header names.
    algorithms: Vec<(&'static str, Algorithm)>,
}

/// The token header fields exgate reads before verifying.
#[derive(Deserialize)]
struct JoseHeader {
    #[serde(default)]
    alg: String,
    #[serde(default)]
    kid: Option<String>,
}

/// What the token caches remember of one token (see [`TokenValidator::remembered`]).
enum Remembered {
    /// Verified under the current key set.
    Verified(Arc<Verified>),
    /// Refused under the current key set, for this reason.
    Failed(TokenError),
    /// Neither; with the token's digest when the failed cache keeps anything, for
    /// remembering a failure.
    Unknown(Option<crate::cache::Digest>),
}

/// Validates bearer tokens for the whole process.
pub struct TokenValidator {
    issuers: Vec<Issuer>,
    cache: VerifiedCache,
    failed: FailedCache,
    auth_context_ids: Vec<String>,
    metrics: Arc<Metrics>,
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn algorithm_name(alg: Algorithm) -> &'static str {
    match alg {
        Algorithm::HS256 => "HS256",
        Algorithm::HS384 => "HS384",
        Algorithm::HS512 => "HS512",
        Algorithm::ES256 => "ES256",
        Algorithm::ES384 => "ES384",
        Algorithm::RS256 => "RS256",
        Algorithm::RS384 => "RS384",
        Algorithm::RS512 => "RS512",
        Algorithm::PS256 => "PS256",
        Algorithm::PS384 => "PS384",
        Algorithm::PS512 => "PS512",
        Algorithm::EdDSA => "EdDSA",
    }
}

impl TokenValidator {
    /// A validator for the configured issuers; None when there are none (tokens are
    /// then Exchange's to validate).
    pub fn new(config: &TokensConfig, metrics: Arc<Metrics>) -> Option<TokenValidator> {
        if config.issuers.is_empty() {
            return None;
        }
        let system = Arc::new(Fetcher::new());
        let issuers = config
            .issuers
            .iter()
            .map(|c| {
                let algorithms = c
                    .algorithms
                    .iter()
                    .map(|a| (algorithm_name(*a), *a))
                    .collect();
                Issuer {
                    pattern: IssuerPattern::new(&c.issuer),
                    keys: Arc::new(IssuerKeys::new(
                        c.source.clone(),
                        c.refresh_interval,
                        c.unknown_kid_refresh_min,
                        c.fetch_timeout,
                    )),
                    algorithms,
                    fetcher: match &c.ca_roots {
                        Some(roots) => Arc::new(Fetcher::trusting(roots.clone())),
                        None => system.clone(),
                    },
                    config: c.clone(),
                }
            })
            .collect();
        Some(TokenValidator {
            issuers,
            cache: VerifiedCache::new(config.cache_max_entries),
            failed: FailedCache::new(config.cache_max_entries),
            auth_context_ids: config.auth_context_ids.clone(),
            metrics,
        })
    }

    /// Starts each issuer's background key refresh (the first fetch happens at once).
    pub fn start_refreshers(&self) {
        for issuer in &self.issuers {
            tokio::spawn(
                issuer
                    .keys
                    .clone()
                    .run_refresher(issuer.fetcher.clone(), self.metrics.clone()),
            );
        }
    }

    /// Fetches every issuer's keys once now; for start-up and tests.
    pub async fn refresh_all(&self) {
        for issuer in &self.issuers {
            let _ = issuer.keys.refresh(&issuer.fetcher, &self.metrics).await;
        }
    }

    /// `tokens.mfa.auth_context_ids`: `acrs` values that count as MFA, the first of
    /// which a missing-MFA refusal asks for (SPEC §5 step-up).
    pub fn auth_context_ids(&self) -> &[String] {
        &self.auth_context_ids
    }

    /// Whether every issuer has keys (`/readyz`).
    pub fn ready(&self) -> bool {
        self.issuers.iter().all(|i| i.keys.current().is_some())
    }

    /// Validates a token, counting the result in `exgate_token_validations_total`.
    pub async fn validate(&self, token: &[u8]) -> Result<Arc<Verified>, TokenError> {
        let result = self.validate_uncounted(token).await;
        let label = match &result {
            Ok((_, true)) => "cached",
            Ok((_, false)) => "valid",
            Err(e) => e.as_str(),
        };
        self.metrics.record_token_validation(label);
        result.map(|(v, _)| v)
    }

    /// The failure remembered for `token`, when the caches answer it without any
    /// verification: what [`TokenValidator::validate`] would return for it now, found
    /// with a hash lookup or two and nothing counted. None when the token verified
    /// (under the current key set), or was never refused, or its remembered failure no
    /// longer holds: only validation can tell then. For refusals answered without
    /// hyper (`proxy::service::quick`), which count the result themselves once they
    /// answer.
    pub fn known_failure(&self, token: &[u8]) -> Option<TokenError> {
        if token.len() > MAX_TOKEN_BYTES {
            return None;
        }
        let token = std::str::from_utf8(token).ok()?;
        match self.remembered(token, now()) {
            Remembered::Failed(error) => Some(error),
            Remembered::Verified(_) | Remembered::Unknown(_) => None,
        }
    }

    /// Whether a failure may be remembered for `token` (any bytes): false only when it
    /// certainly is not ([`FailedCache::may_hold`]), for far less than
    /// [`TokenValidator::known_failure`] costs.
    pub fn may_have_failed(&self, token: &[u8]) -> bool {
        self.failed.may_hold(token)
    }

    /// What the caches remember of `token` at `now`, as both [`TokenValidator::validate`]
    /// and [`TokenValidator::known_failure`] read them: the verified cache first, then
    /// the failed cache (whose stale entry, of another key set, is dropped here).
    fn remembered(&self, token: &str, now: u64) -> Remembered {
        if let Some(hit) = self.cache.get(token, now) {
            // Only under the very key set that verified it: a key replaced under the same
            // `kid` (a compromised key swapped out) must not keep its tokens alive. After
            // a refresh each cached token is verified once more.
            let same_keys = self.issuers[hit.issuer]
                .keys
                .current()
                .is_some_and(|keys| keys.generation() == hit.generation);
            if same_keys {
                return Remembered::Verified(hit);
            }
        }
        // A token that failed before under the same key set fails again: its digest is
        // all it costs (a forged token in a loop pays one RSA verification, not one per
        // request).
        let Some(digest) = self
            .failed
            .is_enabled()
            .then(|| crate::cache::digest(token.as_bytes()))
        else {
            return Remembered::Unknown(None);
        };
        if let Some(failed) = self.failed.get(&digest, now) {
            let holds = self.issuers[failed.issuer]
                .keys
                .current()
                .is_some_and(|keys| failed.holds(keys.generation(), now));
            if holds {
                return Remembered::Failed(failed.error);
            }
            self.failed.remove(&digest);
        }
        Remembered::Unknown(Some(digest))
    }

    /// The verified token and whether it came from the cache.
    async fn validate_uncounted(&self, token: &[u8]) -> Result<(Arc<Verified>, bool), TokenError> {
        if token.len() > MAX_TOKEN_BYTES {
            return Err(TokenError::Malformed);
        }
        let token = std::str::from_utf8(token).map_err(|_| TokenError::Malformed)?;
        let now = now();
        let digest = match self.remembered(token, now) {
            Remembered::Verified(hit) => return Ok((hit, true)),
            Remembered::Failed(error) => return Err(error),
            Remembered::Unknown(digest) => digest,
        };

        let (message, signature) = token.rsplit_once('.').ok_or(TokenError::Malformed)?;
        let (header, payload) = message.split_once('.').ok_or(TokenError::Malformed)?;
        if payload.contains('.') {
            return Err(TokenError::Malformed);
        }
        let header: JoseHeader = decode_segment(header)?;
        // `none` and HMAC are refused before anything else, whatever the issuer.
        if header.alg.eq_ignore_ascii_case("none")
            || header.alg.to_ascii_uppercase().starts_with("HS")
        {
            return Err(TokenError::Algorithm);
        }
        if signature.is_empty() {
            return Err(TokenError::Malformed);
        }
        // The payload is read once, unverified, to pick the issuer; the same bytes are
        // what the signature covers, so once it verifies these claims are the token's.
        let claims: Claims = decode_segment(payload)?;
        if header.alg.is_empty() || claims.iss.is_empty() {
            return Err(TokenError::Malformed);
        }
        let (index, issuer) = self
            .issuers
            .iter()
            .enumerate()
            .find(|(_, i)| i.pattern.matches(&claims.iss))
            .ok_or(TokenError::UntrustedIssuer)?;
        issuer
            .pattern
            .check_tenant(&claims.iss, claims.tid.as_deref())?;
        let alg = issuer
            .algorithms
            .iter()
            .find(|(name, _)| *name == header.alg)
            .map(|(_, a)| *a)
            .ok_or(TokenError::Algorithm)?;

        let kid = header.kid.as_deref();
        let keys = match issuer.keys.current() {
            Some(keys) if keys.get(kid).is_some() => keys,
            Some(_) => {
                issuer
                    .keys
                    .refresh_for_unknown_kid(&issuer.fetcher, &self.metrics)
                    .await;
                issuer.keys.current().ok_or(TokenError::UnknownKey)?
            }
            None => {
                // A start during an outage: fetch now rather than at the next retry.
                issuer
                    .keys
                    .refresh_when_empty(&issuer.fetcher, &self.metrics)
                    .await;
                issuer.keys.current().ok_or(TokenError::NoKeys)?
            }
        };
        let key = keys.get(kid).ok_or(TokenError::UnknownKey)?;
        let valid_until = match issuer.check_signed(key, alg, message, signature, &claims, now) {
            Ok(valid_until) => valid_until,
            Err(error) => {
                // Remembered unless time could change it forward (a token not yet
                // valid); an expired one holds only while the clock stays past its `exp`.
                if let Some(digest) = digest
                    && error != TokenError::NotYetValid
                {
                    let failed = Failed {
                        issuer: index,
                        generation: keys.generation(),
                        error,
                        expired_after: claims
                            .exp
                            .map_or(0, |exp| exp.saturating_add(issuer.config.leeway.as_secs())),
                    };
                    self.failed.insert(token, digest, failed, now);
                }
                return Err(error);
            }
        };
        let verified = Arc::new(Verified::new(
            if self.cache.is_enabled() { token } else { "" },
            index,
            keys.generation(),
            valid_until,
            claims.user().map(str::to_owned),
            claims.has_mfa(&self.auth_context_ids),
        ));
        self.cache.insert(verified.clone(), now);
        Ok((verified, false))
    }
}

impl Issuer {
    /// Checks the signature over `message`, then `exp` and `nbf` (with the issuer's
    /// leeway) and the audience; the token's last instant (Unix seconds) when all hold.
    /// Each failure is a function of the token, this key and, for `nbf` only, the time.
    fn check_signed(
        &self,
        key: &jsonwebtoken::DecodingKey,
        alg: Algorithm,
        message: &str,
        signature: &str,
        claims: &Claims,
        now: u64,
    ) -> Result<u64, TokenError> {
        match jsonwebtoken::crypto::verify(signature, message.as_bytes(), key, alg) {
            Ok(true) => {}
            Ok(false) => return Err(TokenError::BadSignature),
            // A key of another family than the algorithm (say, an EC key for RS256).
            Err(e) if matches!(e.kind(), ErrorKind::InvalidAlgorithm) => {
                return Err(TokenError::Algorithm);
            }
            Err(_) => return Err(TokenError::BadSignature),
        }
        let leeway = self.config.leeway.as_secs();
        let exp = claims.exp.ok_or(TokenError::Malformed)?;
        if exp.saturating_add(leeway) < now {
            return Err(TokenError::Expired);
        }
        if claims
            .nbf
            .is_some_and(|nbf| nbf > now.saturating_add(leeway))
        {
            return Err(TokenError::NotYetValid);
        }
        if !claims
            .aud
            .any(|a| self.config.audiences.iter().any(|x| x == a))
        {
            return Err(TokenError::Audience);
        }
        Ok(exp.saturating_add(leeway))
    }

    /// Where this issuer's keys come from.
    #[cfg(all(test, feature = "lab"))]
    fn keys_source(&self) -> &KeySource {
        &self.config.source
    }
}

fn decode_segment<T: serde::de::DeserializeOwned>(segment: &str) -> Result<T, TokenError> {
    let bytes = URL_SAFE_NO_PAD
        .decode(segment.trim_end_matches('='))
        .map_err(|_| TokenError::Malformed)?;
    serde_json::from_slice(&bytes).map_err(|_| TokenError::Malformed)
}

#[cfg(all(test, feature = "lab"))]
mod tests;
