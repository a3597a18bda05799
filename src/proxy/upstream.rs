//! The array of Exchange servers: round-robin with passive ejection, a shared pool for
//! ordinary requests, and dedicated never-pooled connections for NTLM/Negotiate.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use hyper::body::Incoming;
use hyper::client::conn::http1;
use hyper::header::{self, HeaderMap, HeaderValue};
use hyper::http::uri::{Authority, PathAndQuery, Scheme};
use hyper::{Method, Request, Response, Uri};
use hyper_rustls::{HttpsConnector, HttpsConnectorBuilder};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use tower_service::Service;

use super::respond::{ProxyBody, empty};
use crate::config::UpstreamConfig;

/// How long a server that refused a connection is left out of the rotation.
const EJECT_FOR: Duration = Duration::from_secs(10);

type Connector = HttpsConnector<HttpConnector>;

/// Why a request could not be forwarded.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum UpstreamError {
    #[error("no upstream server is available")]
    NoServer,
    #[error("upstream server unreachable or failed")]
    Unreachable,
}

/// What is forwarded of a request besides its body.
#[derive(Clone, Debug)]
pub struct Head {
    pub method: Method,
    /// Origin-form target, exactly as the client sent it.
    pub path_and_query: PathAndQuery,
    pub headers: HeaderMap,
}

struct Server {
    /// `scheme://authority`.
    base: Uri,
    scheme: Scheme,
    authority: Authority,
    host_header: HeaderValue,
    /// Milliseconds since `Upstream::epoch` until which the server is skipped.
    ejected_until_ms: AtomicU64,
}

/// The upstream servers and the connections to them.
pub struct Upstream {
    servers: Vec<Server>,
    next: AtomicUsize,
    pool: Client<Connector, ProxyBody>,
    connector: Connector,
    epoch: Instant,
}

impl Upstream {
    /// Builds the server list, the TLS client and the pool.
    pub fn new(
        config: &UpstreamConfig,
        tls: rustls::ClientConfig,
        pool_idle: Duration,
    ) -> Upstream {
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_nodelay(true);
        http.set_connect_timeout(Some(config.connect_timeout));
        let connector = HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        let pool = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(pool_idle)
            .pool_timer(TokioTimer::new())
            .build(connector.clone());
        let servers = config
            .servers
            .iter()
            .map(|uri| {
                let authority = uri
                    .authority()
                    .cloned()
                    .expect("validated: has an authority");
                Server {
                    base: uri.clone(),
                    scheme: uri.scheme().cloned().expect("validated: has a scheme"),
                    host_header: HeaderValue::from_str(authority.as_str())
                        .expect("a parsed authority is a valid header value"),
                    authority,
                    ejected_until_ms: AtomicU64::new(0),
                }
            })
            .collect();
        Upstream {
            servers,
            next: AtomicUsize::new(0),
            pool,
            connector,
            epoch: Instant::now(),
        }
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// The next server in rotation that is not ejected.
    fn pick(&self) -> Option<usize> {
        let n = self.servers.len();
        let now = self.now_ms();
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        (0..n)
            .map(|k| (start + k) % n)
            .find(|&i| self.servers[i].ejected_until_ms.load(Ordering::Relaxed) <= now)
    }

    fn eject(&self, i: usize) {
        let until = self.now_ms() + u64::try_from(EJECT_FOR.as_millis()).unwrap_or(10_000);
        self.servers[i]
            .ejected_until_ms
            .store(until, Ordering::Relaxed);
        tracing::warn!(server = %self.servers[i].base, "upstream server ejected after a connect failure");
    }

    fn request(
        &self,
        server: usize,
        head: Head,
        body: ProxyBody,
        absolute: bool,
    ) -> Request<ProxyBody> {
        let s = &self.servers[server];
        let uri = if absolute {
            Uri::builder()
                .scheme(s.scheme.clone())
                .authority(s.authority.clone())
                .path_and_query(head.path_and_query)
                .build()
                .expect("scheme, authority and path are each valid")
        } else {
            Uri::from(head.path_and_query)
        };
        let mut req = Request::new(body);
        *req.method_mut() = head.method;
        *req.uri_mut() = uri;
        *req.headers_mut() = head.headers;
        // Exchange checks token audiences against Host: keep the client's.
        if !req.headers().contains_key(header::HOST) {
            req.headers_mut()
                .insert(header::HOST, s.host_header.clone());
        }
        req
    }

    /// Sends a request through the shared pool. A request without a body is retried on
    /// the next server when the connection could not be made (no byte was sent).
    pub async fn send(
        &self,
        head: Head,
        body: Option<ProxyBody>,
    ) -> Result<Response<Incoming>, UpstreamError> {
        let retryable = body.is_none();
        let mut body = body;
        let attempts = if retryable { self.servers.len() } else { 1 };
        let mut head = Some(head);
        for attempt in 1..=attempts {
            let server = self.pick().ok_or(UpstreamError::NoServer)?;
            // Only a request that may be retried keeps a copy of its head.
            let this = if attempt < attempts {
                head.clone()
            } else {
                head.take()
            }
            .expect("the head is kept until the last attempt");
            let req = self.request(server, this, body.take().unwrap_or_else(empty), true);
            match self.pool.request(req).await {
                Ok(res) => return Ok(res),
                Err(e) if e.is_connect() => {
                    self.eject(server);
                    tracing::debug!(error = %e, "upstream connect failed");
                }
                Err(e) => {
                    tracing::warn!(error = %e, "upstream request failed");
                    return Err(UpstreamError::Unreachable);
                }
            }
        }
        Err(UpstreamError::Unreachable)
    }

    /// Opens a dedicated connection for one client connection that authenticates with
    /// NTLM or Negotiate (RFC 4559 §6): it is never pooled or shared.
    pub async fn pin(&self) -> Result<Pinned, UpstreamError> {
        for _ in 0..self.servers.len() {
            let server = self.pick().ok_or(UpstreamError::NoServer)?;
            let mut connector = self.connector.clone();
            let io = match connector.call(self.servers[server].base.clone()).await {
                Ok(io) => io,
                Err(e) => {
                    tracing::debug!(error = %e, "pinned upstream connect failed");
                    self.eject(server);
                    continue;
                }
            };
            let (sender, conn) = http1::handshake(io).await.map_err(|e| {
                tracing::warn!(error = %e, "pinned upstream handshake failed");
                UpstreamError::Unreachable
            })?;
            let task = tokio::spawn(async move {
                if let Err(e) = conn.await {
                    tracing::debug!(error = %e, "pinned upstream connection ended");
                }
            });
            return Ok(Pinned {
                sender,
                server,
                task,
            });
        }
        Err(UpstreamError::Unreachable)
    }

    /// Sends a request on a pinned connection.
    pub async fn send_pinned(
        &self,
        pinned: &mut Pinned,
        head: Head,
        body: Option<ProxyBody>,
    ) -> Result<Response<Incoming>, UpstreamError> {
        let req = self.request(pinned.server, head, body.unwrap_or_else(empty), false);
        pinned
            .sender
            .ready()
            .await
            .map_err(|_| UpstreamError::Unreachable)?;
        pinned.sender.send_request(req).await.map_err(|e| {
            tracing::warn!(error = %e, "pinned upstream request failed");
            UpstreamError::Unreachable
        })
    }
}

/// A client connection's own upstream connection. Dropping it closes the connection.
pub struct Pinned {
    sender: http1::SendRequest<ProxyBody>,
    server: usize,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Pinned {
    fn drop(&mut self) {
        self.task.abort();
    }
}
