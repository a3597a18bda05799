//! The array of Exchange servers: round-robin with passive ejection, and one dedicated,
//! never-pooled connection per client connection (which is also what NTLM and Negotiate
//! need: the authenticated connection is never shared).

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use hyper::body::Incoming;
use hyper::client::conn::http1;
use hyper::header::{self, HeaderMap, HeaderValue};
use hyper::http::uri::PathAndQuery;
use hyper::{Method, Request, Response, Uri};
use hyper_rustls::{HttpsConnector, HttpsConnectorBuilder};
use hyper_util::client::legacy::connect::HttpConnector;
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
    host_header: HeaderValue,
    /// Milliseconds since `Upstream::epoch` until which the server is skipped.
    ejected_until_ms: AtomicU64,
}

/// The upstream servers and the connections to them.
pub struct Upstream {
    servers: Vec<Server>,
    next: AtomicUsize,
    connector: Connector,
    epoch: Instant,
}

impl Upstream {
    /// Builds the server list, the TLS client and the pool.
    pub fn new(config: &UpstreamConfig, tls: rustls::ClientConfig) -> Upstream {
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_nodelay(true);
        http.set_connect_timeout(Some(config.connect_timeout));
        let connector = HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        let servers = config
            .servers
            .iter()
            .map(|uri| Server {
                base: uri.clone(),
                host_header: HeaderValue::from_str(uri.authority().map_or("", |a| a.as_str()))
                    .expect("a parsed authority is a valid header value"),
                ejected_until_ms: AtomicU64::new(0),
            })
            .collect();
        Upstream {
            servers,
            next: AtomicUsize::new(0),
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

    fn request(&self, server: usize, head: Head, body: ProxyBody) -> Request<ProxyBody> {
        let s = &self.servers[server];
        let uri = Uri::from(head.path_and_query);
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

    /// Sends a request on a client connection's own upstream connection. When the
    /// connection turns out to be closed before the request was written, the request
    /// comes back with the error so that the caller may send it on a new one.
    pub async fn send_on(
        &self,
        own: &mut Pinned,
        req: Request<ProxyBody>,
    ) -> Result<Response<Incoming>, (UpstreamError, Option<Request<ProxyBody>>)> {
        if own.sender.ready().await.is_err() {
            return Err((UpstreamError::Unreachable, Some(req)));
        }
        own.sender.try_send_request(req).await.map_err(|mut e| {
            let unsent = e.take_message();
            if unsent.is_none() {
                tracing::warn!(error = %e.error(), "upstream request failed");
            }
            (UpstreamError::Unreachable, unsent)
        })
    }

    /// Builds the upstream request for `head` on this connection.
    pub fn request_on(
        &self,
        own: &Pinned,
        head: Head,
        body: Option<ProxyBody>,
    ) -> Request<ProxyBody> {
        self.request(own.server, head, body.unwrap_or_else(empty))
    }
}

/// A client connection's own upstream connection. Dropping it closes the connection.
pub struct Pinned {
    sender: http1::SendRequest<ProxyBody>,
    server: usize,
    task: tokio::task::JoinHandle<()>,
}

impl Pinned {
    /// Whether the upstream side has closed the connection.
    pub fn is_closed(&self) -> bool {
        self.sender.is_closed()
    }
}

impl Drop for Pinned {
    fn drop(&mut self) {
        self.task.abort();
    }
}
