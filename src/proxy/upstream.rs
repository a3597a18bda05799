//! The array of Exchange servers: round-robin over the servers whose active health
//! checks pass, passive ejection on connect failures, and one upstream connection per
//! client connection while it is in use. A client connection parked while idle (see
//! [`super::park`]) hands its upstream connection back to a small per-server pool
//! unless NTLM or Negotiate authenticated it: an authenticated connection is never
//! shared (RFC 4559 §6, SPEC §3).
//!
//! A new connection first speaks exgate's own client ([`super::direct`]) for requests
//! without a body; the first request with one hands it to hyper's client for good.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use http_body_util::BodyExt;
use hyper::client::conn::http1;
use hyper::header::{self, HeaderMap, HeaderValue};
use hyper::http::uri::PathAndQuery;
use hyper::{Method, Request, Response, Uri};
use hyper_rustls::{HttpsConnector, HttpsConnectorBuilder, MaybeHttpsStream};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioIo;
use tower_service::Service;

use super::direct::{self, Direct, Failed, Slot};
use super::gather::Gather;
use super::health::{InUse, Probe, ServerHealth};
use super::respond::{BoxError, ProxyBody, empty};
use crate::config::UpstreamConfig;
use crate::metrics::Metrics;
use crate::policy::Protocol;

/// How long a server that refused a connection is left out of the rotation.
const EJECT_FOR: Duration = Duration::from_secs(10);

type Connector = HttpsConnector<HttpConnector>;

/// An upstream connection as [`direct`] speaks on it: small writes gathered
/// ([`Gather`]), TLS or not.
type Io = TokioIo<Gather<MaybeHttpsStream<TokioIo<tokio::net::TcpStream>>>>;

/// Why a request could not be forwarded.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum UpstreamError {
    #[error("no upstream server is available")]
    NoServer,
    #[error("upstream server unreachable or failed")]
    Unreachable,
    /// exgate itself is out of file descriptors, memory or local ports: not the
    /// server's fault, so no server is ejected (SPEC §7 "Limits").
    #[error("out of local resources (file descriptors, memory or ports)")]
    LocalExhaustion,
    /// The server did not send response headers within the protocol's wait.
    #[error("upstream server sent no response headers in time")]
    ResponseTimeout,
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
    /// The address as configured: the `server` label of `exgate_upstream_healthy`.
    label: String,
    host_header: HeaderValue,
    /// Milliseconds since `Upstream::epoch` until which the server is skipped.
    ejected_until_ms: AtomicU64,
    health: ServerHealth,
    /// Connections handed back by parked client connections, newest last.
    idle: std::sync::Mutex<Vec<(Pinned, Instant)>>,
}

/// A pooled connection may serve again: not known to be closed, and pooled less than
/// [`POOL_IDLE_FOR`].
fn reusable(own: &Pinned, since: Instant) -> bool {
    !own.is_closed() && since.elapsed() < POOL_IDLE_FOR
}

/// Idle upstream connections kept per server at most; more are closed.
const POOL_MAX_PER_SERVER: usize = 64;
/// How long an upstream connection is kept idle in the pool: below IIS's 120 s
/// `connectionTimeout`, so exgate drops it before Exchange does.
const POOL_IDLE_FOR: Duration = Duration::from_secs(60);

/// The upstream servers and the connections to them.
pub struct Upstream {
    servers: Vec<Server>,
    next: AtomicUsize,
    connector: Connector,
    epoch: Instant,
    /// The protocols requests used, whose virtual directories the checks cover.
    in_use: InUse,
    /// The wait for response headers (`upstream.response_header_timeout_seconds`).
    pub response_header_timeout: Duration,
    health_check_interval: Option<Duration>,
}

/// `errno` values that mean this host, not the server, ran out of something (Linux):
/// ENOMEM, ENFILE, EMFILE, EADDRNOTAVAIL (no ephemeral port left), ENOBUFS.
const LOCAL_EXHAUSTION_ERRNOS: [i32; 5] = [12, 23, 24, 99, 105];

/// Whether a connect error is exgate's own exhaustion rather than the server's failure:
/// walks the error's sources for an I/O error with one of the errnos above.
pub fn is_local_exhaustion(error: &(dyn std::error::Error + 'static)) -> bool {
    super::error_chain(error)
        .filter_map(|e| e.downcast_ref::<std::io::Error>())
        .any(|io| {
            io.raw_os_error()
                .is_some_and(|n| LOCAL_EXHAUSTION_ERRNOS.contains(&n))
        })
}

impl Upstream {
    /// Builds the server list, the TLS client and the pool.
    pub fn new(config: &UpstreamConfig) -> Upstream {
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_nodelay(true);
        http.set_connect_timeout(Some(config.connect_timeout));
        let connector = HttpsConnectorBuilder::new()
            .with_tls_config((*config.tls).clone())
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        let servers = config
            .servers
            .iter()
            .map(|uri| Server {
                base: uri.clone(),
                label: uri.to_string().trim_end_matches('/').to_owned(),
                host_header: HeaderValue::from_str(uri.authority().map_or("", |a| a.as_str()))
                    .expect("a parsed authority is a valid header value"),
                ejected_until_ms: AtomicU64::new(0),
                health: ServerHealth::default(),
                idle: std::sync::Mutex::new(Vec::new()),
            })
            .collect();
        Upstream {
            servers,
            next: AtomicUsize::new(0),
            connector,
            epoch: Instant::now(),
            in_use: InUse::default(),
            response_header_timeout: config.response_header_timeout,
            health_check_interval: config.health_check_interval,
        }
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// The next server in rotation that is not ejected and passes its checks for
    /// `protocol`. When none passes, any server not ejected: a health check that fails
    /// everywhere (a missing `healthcheck.htm`, a probe blocked on the way) must not turn
    /// into an outage exgate caused itself (Envoy's "panic threshold").
    fn pick(&self, protocol: Protocol) -> Option<usize> {
        let n = self.servers.len();
        let now = self.now_ms();
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        let available =
            |i: &usize| self.servers[*i].ejected_until_ms.load(Ordering::Relaxed) <= now;
        let mut order = (0..n).map(|k| (start + k) % n);
        order
            .clone()
            .filter(available)
            .find(|&i| self.servers[i].health.serves(protocol))
            .or_else(|| order.find(available))
    }

    /// Notes that a request for `protocol` is forwarded: its virtual directory joins the
    /// health checks.
    pub fn note_in_use(&self, protocol: Protocol) {
        self.in_use.note(protocol);
    }

    /// Whether the server behind `own` still passes its checks for `protocol`.
    pub fn serves(&self, own: &Pinned, protocol: Protocol) -> bool {
        self.servers[own.server].health.serves(protocol)
    }

    /// Leaves server `i` out of the rotation for [`EJECT_FOR`], logging why at WARN
    /// (the whole error chain: a TLS failure's reason is its innermost error).
    fn eject(&self, i: usize, why: &(dyn std::error::Error + 'static)) {
        let until = self.now_ms() + u64::try_from(EJECT_FOR.as_millis()).unwrap_or(10_000);
        self.servers[i]
            .ejected_until_ms
            .store(until, Ordering::Relaxed);
        let reason: Vec<String> = super::error_chain(why).map(|e| e.to_string()).collect();
        tracing::warn!(
            server = %self.servers[i].base,
            reason = %reason.join(": "),
            "upstream server ejected after a connect failure"
        );
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

    /// A connection for one client connection, to a server that serves `protocol`: an
    /// idle one from that server's pool (handed back by a parked client connection and
    /// never authenticated by NTLM or Negotiate), else a new one. It is the client
    /// connection's alone until that connection parks; if NTLM or Negotiate
    /// authenticates it, for good (RFC 4559 §6). A connect that fails or times out
    /// ejects the server and tries the next; one that fails for lack of local
    /// descriptors or ports ejects nobody and returns [`UpstreamError::LocalExhaustion`].
    ///
    /// `pooled` false: always a new connection (a retry after a pooled one failed: the
    /// pool's others may have died with it).
    pub async fn pin(&self, protocol: Protocol, pooled: bool) -> Result<Pinned, UpstreamError> {
        for _ in 0..self.servers.len() {
            let server = self.pick(protocol).ok_or(UpstreamError::NoServer)?;
            if let Some(pooled) = pooled.then(|| self.take_idle(server)).flatten() {
                return Ok(pooled);
            }
            let mut connector = self.connector.clone();
            let io = match connector.call(self.servers[server].base.clone()).await {
                Ok(io) => io,
                Err(e) if is_local_exhaustion(e.as_ref()) => {
                    tracing::warn!(error = %e, "out of local resources connecting upstream; no server ejected");
                    return Err(UpstreamError::LocalExhaustion);
                }
                Err(e) => {
                    self.eject(server, e.as_ref());
                    continue;
                }
            };
            // Small requests go out as one `send` (see `gather`).
            let direct = Direct::new(TokioIo::new(Gather(io)));
            return Ok(Pinned {
                server,
                conn: Conn::Direct(Arc::new(std::sync::Mutex::new(Some(Box::new(direct))))),
            });
        }
        Err(UpstreamError::Unreachable)
    }

    /// Hands a connection [`direct`] speaks on to hyper's client, for a request with a
    /// body; one already handed over stays as it is. Fails when the connection is closed,
    /// has a response body out, or was closed by the server while idle.
    async fn hand_to_hyper(&self, own: &mut Pinned) -> Result<(), UpstreamError> {
        let Conn::Direct(slot) = &own.conn else {
            return Ok(());
        };
        let taken = slot.lock().unwrap_or_else(|e| e.into_inner()).take();
        let io = match taken {
            Some(mut conn) => match conn.is_stale() {
                true => None,
                false => conn.into_io(),
            },
            None => None,
        };
        let io = io.ok_or(UpstreamError::Unreachable)?.into_inner();
        // Boxed: the handshake's state (2.4 KiB) would otherwise be part of every
        // request's future, copied whole each time hyper boxes it, though a handshake
        // is rare.
        let (sender, conn) = Box::pin(http1::handshake(io)).await.map_err(|e| {
            tracing::warn!(error = %e, "pinned upstream handshake failed");
            UpstreamError::Unreachable
        })?;
        let task = tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "pinned upstream connection ended");
            }
        });
        own.conn = Conn::Hyper { sender, task };
        Ok(())
    }

    /// Takes server `server`'s most recently pooled connection that is still open and
    /// fresh; stale ones found on the way are closed.
    fn take_idle(&self, server: usize) -> Option<Pinned> {
        let mut idle = self.servers[server]
            .idle
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        while let Some((own, since)) = idle.pop() {
            if reusable(&own, since) && !own.is_stale() {
                return Some(own);
            }
        }
        None
    }

    /// Hands back the upstream connection of a client connection that parked. The
    /// caller guarantees that no NTLM or Negotiate authenticated it and that its last
    /// response was read whole. Closed, stale and surplus connections are dropped
    /// (closed) instead; the pool of each server holds [`POOL_MAX_PER_SERVER`] at most.
    pub fn release(&self, own: Pinned) {
        if own.is_closed() {
            return;
        }
        let mut idle = self.servers[own.server]
            .idle
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        idle.retain(|(c, since)| reusable(c, *since));
        if idle.len() < POOL_MAX_PER_SERVER {
            idle.push((own, Instant::now()));
        }
    }

    /// Whether `own` speaks exgate's own client (see [`direct`]), not yet handed to
    /// hyper's.
    pub fn speaks_direct(&self, own: &Pinned) -> bool {
        matches!(own.conn, Conn::Direct(_))
    }

    /// Sends a request without a body on a connection [`direct`] speaks on and reads
    /// its response head. `Failed::retriable`: the connection had served before and
    /// nothing came back, so the request may go again on a new connection.
    pub async fn send_direct(
        &self,
        own: &Pinned,
        head: &Head,
    ) -> Result<Response<ProxyBody>, Failed> {
        let Conn::Direct(slot) = &own.conn else {
            return Err(Failed {
                error: UpstreamError::Unreachable,
                retriable: false,
            });
        };
        let request = direct::encode_request(head, &self.servers[own.server].host_header);
        direct::exchange(slot, &request, &head.method).await
    }

    /// Sends a request on a client connection's own upstream connection through hyper's
    /// client, handing the connection over to it first if [`direct`] spoke on it. When
    /// the connection turns out to be closed before the request was written, the
    /// request comes back with the error so that the caller may send it on a new one.
    pub async fn send_on(
        &self,
        own: &mut Pinned,
        req: Request<ProxyBody>,
    ) -> Result<Response<ProxyBody>, (UpstreamError, Option<Request<ProxyBody>>)> {
        if let Err(e) = self.hand_to_hyper(own).await {
            return Err((e, Some(req)));
        }
        let Conn::Hyper { sender, .. } = &mut own.conn else {
            return Err((UpstreamError::Unreachable, Some(req)));
        };
        if sender.ready().await.is_err() {
            return Err((UpstreamError::Unreachable, Some(req)));
        }
        let sent = sender.try_send_request(req).await.map_err(|mut e| {
            let unsent = e.take_message();
            // A request body the client abandoned fails the send too ("error from user's
            // Body stream"): that is the client's doing, counted as `body_aborted`, not
            // an upstream warning one client could repeat thousands of times (red team).
            match (unsent.is_some(), e.error().is_user()) {
                (true, _) => {}
                (false, true) => {
                    tracing::debug!(error = %e.error(), "request body ended by the client")
                }
                (false, false) => tracing::warn!(error = %e.error(), "upstream request failed"),
            }
            (UpstreamError::Unreachable, unsent)
        });
        sent.map(|res| res.map(|body| body.map_err(BoxError::from).boxed()))
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

impl Upstream {
    /// Runs the active health checks until the process ends (SPEC §7 "Health"): every
    /// half interval a round probes, on every server at once, the health-check page of
    /// each protocol in use, each probe on a new connection and bounded by half an
    /// interval. So a server that freezes is out of the rotation within one interval,
    /// and one that recovers is back within half of one. Does nothing when the checks
    /// are off (`health_check_interval_seconds = 0`).
    pub async fn run_health_checks(self: Arc<Self>, metrics: Arc<Metrics>) {
        let Some(interval) = self.health_check_interval else {
            return;
        };
        for server in &self.servers {
            metrics.set_upstream_healthy(&server.label, true);
        }
        let every = interval / 2;
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            self.check_round(every, &metrics).await;
        }
    }

    /// One round of checks on every server; updates health, the gauge and the log.
    async fn check_round(self: &Arc<Self>, timeout: Duration, metrics: &Metrics) {
        let checked = self.in_use.checked();
        let mut probes = tokio::task::JoinSet::new();
        for server in 0..self.servers.len() {
            for &(protocol, path) in &checked {
                let this = self.clone();
                probes.spawn(async move {
                    let probe = tokio::time::timeout(timeout, this.probe(server, path))
                        .await
                        .unwrap_or(Probe::NoAnswer);
                    (server, protocol, probe)
                });
            }
        }
        let mut results = vec![Vec::new(); self.servers.len()];
        while let Some(done) = probes.join_next().await {
            if let Ok((server, protocol, probe)) = done {
                results[server].push((protocol, probe));
            }
        }
        for (server, results) in self.servers.iter().zip(results) {
            for (protocol, passes) in server.health.record(&results) {
                match passes {
                    true => {
                        tracing::info!(server = %server.label, protocol = protocol.as_str(), "upstream health check passes again; back in rotation")
                    }
                    false => {
                        tracing::warn!(server = %server.label, protocol = protocol.as_str(), "upstream health check failed; out of rotation for this protocol")
                    }
                }
            }
            let mut known = results
                .iter()
                .filter(|(_, p)| *p != Probe::Unknown)
                .peekable();
            if known.peek().is_some() {
                let healthy = known.all(|(_, p)| *p == Probe::Pass);
                metrics.set_upstream_healthy(&server.label, healthy);
            }
        }
    }

    /// One check: `GET <path>` on a new connection, as a load balancer probes Exchange.
    async fn probe(&self, server: usize, path: &'static str) -> Probe {
        let s = &self.servers[server];
        let mut connector = self.connector.clone();
        let io = match connector.call(s.base.clone()).await {
            Ok(io) => io,
            Err(e) if is_local_exhaustion(e.as_ref()) => return Probe::Unknown,
            Err(_) => return Probe::NoAnswer,
        };
        let Ok((mut sender, conn)) = http1::handshake::<_, ProxyBody>(io).await else {
            return Probe::NoAnswer;
        };
        let conn = tokio::spawn(conn);
        let mut req = Request::new(empty());
        *req.uri_mut() = Uri::from_static(path);
        let headers = req.headers_mut();
        headers.insert(header::HOST, s.host_header.clone());
        headers.insert(
            header::USER_AGENT,
            HeaderValue::from_static("exgate-healthcheck"),
        );
        headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
        let probe = match sender.send_request(req).await {
            Ok(res) => Probe::of_status(res.status().as_u16()),
            Err(_) => Probe::NoAnswer,
        };
        conn.abort();
        probe
    }
}

/// A client connection's own upstream connection. Dropping it closes the connection.
pub struct Pinned {
    server: usize,
    conn: Conn,
}

/// Which client speaks on a connection.
enum Conn {
    /// exgate's own, for requests without a body (see [`direct`]).
    Direct(Arc<Slot<Io>>),
    /// hyper's, on a task of its own, since the connection's first request with a body.
    Hyper {
        sender: http1::SendRequest<ProxyBody>,
        task: tokio::task::JoinHandle<()>,
    },
}

impl Pinned {
    /// Whether the connection is known to be closed: hyper's client saw it close, or a
    /// response read by [`direct`] left it unusable (or is still being read).
    pub fn is_closed(&self) -> bool {
        match &self.conn {
            Conn::Direct(slot) => slot.lock().unwrap_or_else(|e| e.into_inner()).is_none(),
            Conn::Hyper { sender, .. } => sender.is_closed(),
        }
    }

    /// Whether a connection [`direct`] speaks on was closed by the server, or got bytes
    /// nobody asked for, while idle: one read that does not block. hyper's client
    /// watches its connections itself ([`Pinned::is_closed`]).
    pub fn is_stale(&self) -> bool {
        match &self.conn {
            Conn::Direct(slot) => slot
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .as_mut()
                .is_none_or(|conn| conn.is_stale()),
            Conn::Hyper { .. } => false,
        }
    }
}

impl Drop for Pinned {
    fn drop(&mut self) {
        if let Conn::Hyper { task, .. } = &self.conn {
            task.abort();
        }
    }
}
