//! Signing keys per issuer: one shared cache for the whole process, refreshed in the
//! background with jitter, refetched at most once per interval on an unknown `kid`
//! (single-flight: concurrent misses wait for one fetch instead of starting many), and
//! kept when a fetch fails (the last good keys keep serving). While an issuer has no
//! keys at all (a start during an outage), a bearer request fetches at once, at most
//! once a second, so service returns with the endpoint instead of with the background
//! retry. Every fetch is bounded by the issuer's `fetch_timeout_seconds`.

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwapOption;
use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Limited};
use hyper::Uri;
use hyper_rustls::{HttpsConnector, HttpsConnectorBuilder};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use jsonwebtoken::DecodingKey;
use jsonwebtoken::jwk::{AlgorithmParameters, JwkSet, PublicKeyUse};
use tokio::sync::Mutex;
use tokio::time::Instant;

use super::KeySource;
use crate::metrics::Metrics;

/// Largest key document accepted.
const MAX_DOCUMENT_BYTES: usize = 1 << 20;
/// Time allowed for one connect (the whole fetch has the issuer's own bound as well).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// While an issuer has no keys, the least time between two fetches requests trigger.
const EMPTY_REFETCH_MIN: Duration = Duration::from_secs(1);
/// The background retry's longest pause while an issuer has no keys.
const EMPTY_BACKOFF_MAX: Duration = Duration::from_secs(30);

/// Why keys could not be fetched.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("fetching {0}: {1}")]
    Http(String, String),
    #[error("reading {0}: {1}")]
    File(String, std::io::Error),
    #[error("{0} is not a usable key document: {1}")]
    Document(String, String),
}

/// The keys of one issuer at one moment.
#[derive(Default)]
pub struct KeySet {
    by_kid: HashMap<String, DecodingKey>,
    /// A lone key without `kid` (static lab JWKS files), used for tokens without `kid`.
    unnamed: Option<DecodingKey>,
    generation: u64,
}

/// The last [`KeySet::generation`] given out.
static GENERATIONS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

impl KeySet {
    /// Parses a JWKS document, keeping the signature keys exgate can use.
    pub fn from_jwks(json: &[u8]) -> Result<KeySet, String> {
        let set: JwkSet = serde_json::from_slice(json).map_err(|e| e.to_string())?;
        let mut keys = KeySet {
            generation: GENERATIONS.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1,
            ..KeySet::default()
        };
        let mut unnamed = Vec::new();
        for jwk in &set.keys {
            if matches!(&jwk.common.public_key_use, Some(u) if *u != PublicKeyUse::Signature)
                || matches!(jwk.algorithm, AlgorithmParameters::OctetKey(_))
            {
                // Encryption keys, and symmetric keys: HMAC is never accepted.
                continue;
            }
            let Ok(key) = DecodingKey::from_jwk(jwk) else {
                continue; // a key type exgate does not verify with (e.g. oct)
            };
            match &jwk.common.key_id {
                Some(kid) => {
                    keys.by_kid.insert(kid.clone(), key);
                }
                None => unnamed.push(key),
            }
        }
        if unnamed.len() == 1 && keys.by_kid.is_empty() {
            keys.unnamed = unnamed.pop();
        }
        if keys.by_kid.is_empty() && keys.unnamed.is_none() {
            return Err("it holds no usable signing key".into());
        }
        Ok(keys)
    }

    /// The key for a token's `kid`.
    pub fn get(&self, kid: Option<&str>) -> Option<&DecodingKey> {
        match kid {
            Some(kid) => self.by_kid.get(kid),
            None => self.unnamed.as_ref(),
        }
    }

    /// This set's number, unique in the process: every parsed key document gets a new
    /// one, even when it holds the same keys as the last, so a remembered failure
    /// ([`super::FailedCache`]) never outlives the key set that refused it.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// How many keys the set holds.
    pub fn len(&self) -> usize {
        self.by_kid.len() + usize::from(self.unnamed.is_some())
    }

    /// Whether the set holds no key.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Fetches key documents over HTTP(S) or from files.
pub struct Fetcher {
    client: Client<HttpsConnector<HttpConnector>, Empty<Bytes>>,
}

impl Fetcher {
    /// A fetcher trusting the system's root certificates.
    pub fn new() -> Fetcher {
        let mut roots = rustls::RootCertStore::empty();
        for cert in rustls_native_certs::load_native_certs().certs {
            let _ = roots.add(cert);
        }
        Fetcher::trusting(roots)
    }

    /// A fetcher trusting only `roots` for `https://` (an issuer's `ca_file`: a private
    /// AD FS or the lab's identity provider).
    pub fn trusting(roots: rustls::RootCertStore) -> Fetcher {
        let tls = rustls::ClientConfig::builder()
            .with_root_certificates(roots)
            .with_no_client_auth();
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_connect_timeout(Some(CONNECT_TIMEOUT));
        let connector = HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        Fetcher {
            client: Client::builder(TokioExecutor::new()).build(connector),
        }
    }

    async fn get(&self, uri: &Uri) -> Result<Bytes, FetchError> {
        let fail = |e: String| FetchError::Http(uri.to_string(), e);
        let res = self
            .client
            .get(uri.clone())
            .await
            .map_err(|e| fail(e.to_string()))?;
        if !res.status().is_success() {
            return Err(fail(format!("status {}", res.status())));
        }
        let body = Limited::new(res.into_body(), MAX_DOCUMENT_BYTES);
        Ok(body
            .collect()
            .await
            .map_err(|e| fail(e.to_string()))?
            .to_bytes())
    }

    /// Fetches and parses the key set a source names, all within `timeout` (the
    /// discovery document and the key document together).
    pub async fn key_set_within(
        &self,
        source: &KeySource,
        timeout: Duration,
    ) -> Result<KeySet, FetchError> {
        tokio::time::timeout(timeout, self.key_set(source))
            .await
            .unwrap_or_else(|_| {
                Err(FetchError::Http(
                    source_name(source),
                    format!("timed out after {timeout:?}"),
                ))
            })
    }

    /// Fetches and parses the key set a source names.
    pub async fn key_set(&self, source: &KeySource) -> Result<KeySet, FetchError> {
        let (name, bytes) = match source {
            KeySource::JwksFile(path) => {
                let name = path.display().to_string();
                let bytes = tokio::fs::read(path)
                    .await
                    .map_err(|e| FetchError::File(name.clone(), e))?;
                (name, Bytes::from(bytes))
            }
            KeySource::JwksUrl(uri) => (uri.to_string(), self.get(uri).await?),
            KeySource::OpenIdConfiguration(uri) => {
                #[derive(serde::Deserialize)]
                struct Discovery {
                    jwks_uri: String,
                }
                let doc = self.get(uri).await?;
                let discovery: Discovery = serde_json::from_slice(&doc)
                    .map_err(|e| FetchError::Document(uri.to_string(), e.to_string()))?;
                let jwks: Uri =
                    discovery
                        .jwks_uri
                        .parse()
                        .map_err(|e: hyper::http::uri::InvalidUri| {
                            FetchError::Document(uri.to_string(), format!("jwks_uri: {e}"))
                        })?;
                (jwks.to_string(), self.get(&jwks).await?)
            }
        };
        KeySet::from_jwks(&bytes).map_err(|e| FetchError::Document(name, e))
    }
}

impl Default for Fetcher {
    fn default() -> Fetcher {
        Fetcher::new()
    }
}

/// Where a key source points, for messages.
fn source_name(source: &KeySource) -> String {
    match source {
        KeySource::JwksFile(path) => path.display().to_string(),
        KeySource::JwksUrl(uri) | KeySource::OpenIdConfiguration(uri) => uri.to_string(),
    }
}

/// One issuer's keys, shared by every connection.
pub struct IssuerKeys {
    source: KeySource,
    current: ArcSwapOption<KeySet>,
    /// When the last fetch started; held while fetching (single flight).
    last_fetch: Mutex<Option<Instant>>,
    refresh_interval: Duration,
    unknown_kid_min: Duration,
    fetch_timeout: Duration,
}

impl IssuerKeys {
    /// Keys for `source`, not yet fetched.
    pub fn new(
        source: KeySource,
        refresh_interval: Duration,
        unknown_kid_min: Duration,
        fetch_timeout: Duration,
    ) -> IssuerKeys {
        IssuerKeys {
            source,
            current: ArcSwapOption::empty(),
            last_fetch: Mutex::new(None),
            refresh_interval,
            unknown_kid_min,
            fetch_timeout,
        }
    }

    /// The current keys, or None before the first successful fetch.
    pub fn current(&self) -> Option<Arc<KeySet>> {
        self.current.load_full()
    }

    async fn fetch_locked(
        &self,
        last: &mut Option<Instant>,
        fetcher: &Fetcher,
        metrics: &Metrics,
    ) -> Result<(), FetchError> {
        *last = Some(Instant::now());
        match fetcher
            .key_set_within(&self.source, self.fetch_timeout)
            .await
        {
            Ok(set) => {
                tracing::debug!(keys = set.len(), "signing keys refreshed");
                self.current.store(Some(Arc::new(set)));
                metrics.record_jwks_refresh(true);
                Ok(())
            }
            Err(e) => {
                match self.current.load().is_some() {
                    true => {
                        tracing::warn!(error = %e, "signing key refresh failed; the last good keys stay in use")
                    }
                    false => {
                        tracing::warn!(error = %e, "signing key fetch failed and no key was ever fetched: tokens of this issuer get 503 and /readyz says 503 until one is")
                    }
                }
                metrics.record_jwks_refresh(false);
                Err(e)
            }
        }
    }

    /// Fetches now (start-up and the background schedule).
    pub async fn refresh(&self, fetcher: &Fetcher, metrics: &Metrics) -> Result<(), FetchError> {
        let mut last = self.last_fetch.lock().await;
        self.fetch_locked(&mut last, fetcher, metrics).await
    }

    /// The fetch lock, or None after waiting out a fetch that was in progress when the
    /// caller arrived: its outcome is the caller's too (single flight), so no caller
    /// waits for more than the fetch in progress or its own, never for a queue of them.
    async fn lock_or_join(&self) -> Option<tokio::sync::MutexGuard<'_, Option<Instant>>> {
        match self.last_fetch.try_lock() {
            Ok(guard) => Some(guard),
            Err(_) => {
                drop(self.last_fetch.lock().await);
                None
            }
        }
    }

    /// On a token with an unknown `kid`: fetch, unless a fetch started less than
    /// `unknown_kid_refresh_min_seconds` ago or one is in progress (then its outcome
    /// serves), so a burst of unknown `kid`s costs one fetch and waits for one at most.
    pub async fn refresh_for_unknown_kid(&self, fetcher: &Fetcher, metrics: &Metrics) {
        let Some(mut last) = self.lock_or_join().await else {
            return;
        };
        if last.is_some_and(|t| t.elapsed() < self.unknown_kid_min) {
            return;
        }
        let _ = self.fetch_locked(&mut last, fetcher, metrics).await;
    }

    /// While the issuer has no keys: a request with a token fetches, at most once a
    /// second; one that arrives while a fetch is in progress (or waits out the second)
    /// takes that fetch's outcome. So a caller waits at most a second plus one fetch
    /// timeout, a burst costs one fetch per second, and after an outage the first
    /// request gets keys within a second of the endpoint's return plus the fetch itself.
    pub async fn refresh_when_empty(&self, fetcher: &Fetcher, metrics: &Metrics) {
        let Some(mut last) = self.lock_or_join().await else {
            return;
        };
        if self.current.load().is_some() {
            return;
        }
        if let Some(since) = last.map(|t| t.elapsed())
            && since < EMPTY_REFETCH_MIN
        {
            tokio::time::sleep(EMPTY_REFETCH_MIN - since).await;
        }
        let _ = self.fetch_locked(&mut last, fetcher, metrics).await;
    }

    /// Fetches until the first success (backing off to 30 s; requests fetch sooner, see
    /// [`IssuerKeys::refresh_when_empty`]), then every `refresh_interval` ±10%. Runs
    /// until the process ends.
    pub async fn run_refresher(self: Arc<Self>, fetcher: Arc<Fetcher>, metrics: Arc<Metrics>) {
        let mut backoff = Duration::from_secs(1);
        while self.current.load().is_none() && self.refresh(&fetcher, &metrics).await.is_err() {
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(EMPTY_BACKOFF_MAX);
        }
        loop {
            tokio::time::sleep(jitter(self.refresh_interval)).await;
            let _ = self.refresh(&fetcher, &metrics).await;
        }
    }
}

/// `d` ±10%, so that many exgate instances do not refresh in step.
fn jitter(d: Duration) -> Duration {
    let random = RandomState::new().hash_one(std::time::SystemTime::now());
    let permille = 900 + random % 201; // 900..=1100
    d * u32::try_from(permille).unwrap_or(1000) / 1000
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jitter_stays_within_ten_percent() {
        for _ in 0..100 {
            let j = jitter(Duration::from_secs(1000));
            assert!(
                j >= Duration::from_secs(900) && j <= Duration::from_secs(1100),
                "{j:?}"
            );
        }
    }

    #[test]
    fn key_documents_without_usable_keys_are_refused() {
        assert!(KeySet::from_jwks(b"{}").is_err());
        assert!(KeySet::from_jwks(br#"{"keys":[]}"#).is_err());
        assert!(
            KeySet::from_jwks(br#"{"keys":[{"kty":"oct","k":"c2VjcmV0","kid":"h"}]}"#).is_err()
        );
        assert!(KeySet::from_jwks(b"not json").is_err());
    }
}
