//! The proxy (SPEC §1, §7): listeners, connections, and the shared state they decide
//! and forward with. The request path itself is in [`service`], one phase per step.

pub mod admin;
mod body;
mod direct;
mod fleet;
mod framing;
mod gather;
mod head_guard;
mod headers;
mod health;
mod idle;
mod park;
mod respond;
mod service;
/// TLS for both sides; the lab serves its identity provider with the same listener setup.
mod upstream;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arc_swap::ArcSwap;
use hyper::header::HeaderValue;
use hyper_util::rt::TokioTimer;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;

pub use direct::{
    ChunkedDecoder, Decoded, Framing, LengthField, MAX_HEAD_BYTES as MAX_RESPONSE_HEAD_BYTES,
    Malformed, ParsedHead, may_end_head, parse_head,
};
pub use framing::ClientFault;
pub use head_guard::{HeadVerdict, verdicts_of};
pub use headers::{
    append_forwarded, bearer_challenge, client_address, remove_hop_by_hop, split_challenges,
    strip_legacy_challenges,
};
pub use respond::ProxyBody;
pub use service::QuickHead;

use crate::audit::AuditLog;
use crate::auth::Secret;
use crate::config::{self, Config, ConfigErrors, ServerConfig};
use crate::kerberos::TicketReader;
use crate::metrics::Metrics;
use crate::policy::cmdlet::ScriptError;
use crate::policy::{Engine, Protocol, TicketRead};
use crate::protect::Protect;
use crate::token::TokenValidator;

/// What a configuration reload replaces, swapped in as one piece so that a request sees
/// either the old or the new policy, never a mix.
pub struct Snapshot {
    pub engine: Engine,
    /// The Bearer challenge header, built once.
    pub bearer: HeaderValue,
    /// Per protocol: the organization default blocks legacy authentication, so legacy
    /// challenges are stripped from Exchange's 401s to anonymous requests.
    pub strip_legacy_challenges: [bool; Protocol::ALL.len()],
    /// Reads Kerberos tickets with `[kerberos] keytab` (None without one): a reload
    /// re-reads the keytab, so a new key version is picked up with it.
    pub kerberos: Option<Arc<TicketReader>>,
}

impl Snapshot {
    /// What the keytab stage has read of a request's Kerberos ticket before it runs:
    /// nothing yet, or nothing ever without a keytab.
    pub fn ticket_unread(&self) -> TicketRead<'static> {
        match self.kerberos {
            Some(_) => TicketRead::Unread,
            None => TicketRead::NoKeytab,
        }
    }

    /// Builds a snapshot from a validated configuration (reads the policy script).
    pub fn build(config: &Config) -> Result<Snapshot, ConfigErrors> {
        let engine = config::build_engine(config)?;
        let kerberos = config
            .kerberos
            .as_ref()
            .map(|k| Arc::new(TicketReader::new(k.keytab.clone(), k.cache_max_entries)));
        Ok(Snapshot::with_engine(
            engine,
            headers::bearer_challenge(&config.challenge),
            kerberos,
        ))
    }

    fn with_engine(
        engine: Engine,
        bearer: HeaderValue,
        kerberos: Option<Arc<TicketReader>>,
    ) -> Snapshot {
        let strip = Protocol::ALL.map(|p| engine.org_default_blocks_legacy(p));
        Snapshot {
            engine,
            bearer,
            strip_legacy_challenges: strip,
            kerberos,
        }
    }
}

/// Why cmdlets sent to the admin API were not applied.
#[derive(Debug, thiserror::Error)]
pub enum CmdletError {
    #[error("{}", .0.iter().map(|e| e.to_string()).collect::<Vec<_>>().join("\n"))]
    Script(Vec<ScriptError>),
    #[error("persisting to policy.state_file failed: {0}")]
    Persist(std::io::Error),
    /// `[cluster]`: Redis did not answer, so the cmdlet was not applied anywhere (no
    /// instance may diverge); the policy in force is unchanged.
    #[error(
        "the cluster store (Redis) is unreachable: not applied; the policy in force is unchanged"
    )]
    ClusterUnavailable,
    /// `[cluster]`: other instances kept appending first; nothing was applied.
    #[error("other instances kept changing the policy first: not applied; try again")]
    ClusterBusy,
}

/// State shared by every connection.
pub struct Shared {
    pub snapshot: ArcSwap<Snapshot>,
    pub metrics: Arc<Metrics>,
    /// Bearer-token validation; None when no issuer is configured.
    pub tokens: Option<Arc<TokenValidator>>,
    /// Per protocol: bearer tokens must show MFA (`tokens.mfa.require_for`).
    require_mfa: [bool; Protocol::ALL.len()],
    upstream: Arc<upstream::Upstream>,
    timeouts: Timeouts,
    config_path: PathBuf,
    /// The configuration exgate started with: a reload warns about the settings it
    /// cannot apply by comparing with it.
    started: Config,
    state_file: Option<PathBuf>,
    /// Required by the admin POST endpoints when set.
    pub admin_token: Option<Secret>,
    /// The audit log, when `audit.path` is set.
    pub audit: Option<AuditLog>,
    /// An in-process observer of every request's record, forwarded or not, with or
    /// without credentials (the lab console's live view; SPEC is silent, exgate's
    /// addition). Set once with [`Shared::observe`]; while unset a request pays one
    /// atomic load for it.
    observer: std::sync::OnceLock<tokio::sync::broadcast::Sender<crate::audit::AuditRecord>>,
    /// An in-process observer of the cmdlet scripts that changed the policy, from any
    /// caller of [`Shared::apply_cmdlets`] (the admin API, the lab console). Set once with
    /// [`Shared::observe_cmdlets`].
    cmdlet_observer: std::sync::OnceLock<tokio::sync::broadcast::Sender<String>>,
    /// Smart lockout and spray state (this instance's; with `[cluster]`, what decides
    /// while Redis is unavailable).
    pub protect: Protect,
    /// `[cluster]`: the fleet's Redis.
    pub cluster: Option<Arc<crate::cluster::Cluster>>,
    /// What this instance holds of the fleet's policy log.
    fleet: fleet::FleetState,
    /// Serializes cmdlet applications and reloads, so none is lost between a read of
    /// the store and the swap.
    writer: std::sync::Mutex<()>,
}

/// Body idle timeouts (`server.idle_timeout_seconds`, `server.long_idle_timeout_seconds`).
struct Timeouts {
    idle: std::time::Duration,
    long_idle: std::time::Duration,
    lockout_hold: std::time::Duration,
}

impl Shared {
    /// Whether a request's record is read by anyone: an audit log or an observer. Without
    /// either, nothing is copied for it.
    pub fn recorded(&self) -> bool {
        self.audit.is_some() || self.observer.get().is_some()
    }

    /// Sends every request's record, from now on, to `observer` (the lab console). The
    /// first call wins; later ones return false and change nothing. Records hold what
    /// the audit log holds: never a password, token or cookie.
    pub fn observe(
        &self,
        observer: tokio::sync::broadcast::Sender<crate::audit::AuditRecord>,
    ) -> bool {
        self.observer.set(observer).is_ok()
    }

    /// Sends every cmdlet script that changes the policy, once applied, to `observer`
    /// (the lab console). The first call wins; later ones return false.
    pub fn observe_cmdlets(&self, observer: tokio::sync::broadcast::Sender<String>) -> bool {
        self.cmdlet_observer.set(observer).is_ok()
    }

    /// Ready to serve: the configuration is loaded, every token issuer has keys, and
    /// with `[cluster]` the fleet's policy has been loaded once.
    pub fn ready(&self) -> bool {
        self.not_ready_because().is_none()
    }

    /// What `/readyz` still waits for, in its 503's words; None when ready.
    pub fn not_ready_because(&self) -> Option<&'static str> {
        if self.tokens.as_ref().is_some_and(|t| !t.ready()) {
            return Some("waiting for token signing keys");
        }
        if self.cluster.is_some() && !self.fleet.synced() {
            return Some("waiting for the fleet's policy from the cluster store (Redis)");
        }
        None
    }

    /// Re-reads the configuration file and policy script and swaps them in atomically.
    /// An invalid new version is rejected and the old one keeps serving.
    pub fn reload(&self) -> Result<(), ConfigErrors> {
        let _writer = self.writer.lock().unwrap_or_else(|e| e.into_inner());
        let result = config::load(&self.config_path)
            .and_then(|c| Snapshot::build(&c).map(|s| (c, s)))
            // With [cluster], the fleet's cmdlets are replayed on the new base.
            .map(|(c, s)| match &self.cluster {
                Some(_) => (c, fleet::replay(s, &self.fleet_log())),
                None => (c, s),
            });
        self.metrics.record_reload(result.is_ok());
        match result {
            Ok((config, snapshot)) => {
                self.snapshot.store(Arc::new(snapshot));
                tracing::info!(config = %self.config_path.display(), "configuration reloaded");
                let ignored = config::print::start_only_changes(&self.started, &config);
                if !ignored.is_empty() {
                    tracing::warn!(
                        changed = %ignored.join(" "),
                        "settings read at start only changed and were NOT applied; restart exgate to apply them"
                    );
                }
                Ok(())
            }
            Err(errors) => {
                tracing::error!(
                    config = %self.config_path.display(),
                    "configuration reload rejected, the previous configuration keeps serving: {errors}"
                );
                Err(errors)
            }
        }
    }
}

impl Shared {
    /// Applies cmdlet lines (the admin API, `exgate cmdlet`): all or nothing, persisted
    /// to `policy.state_file` before the new policy is swapped in, so what serves is what
    /// a restart replays. Returns what `Get-AuthenticationPolicy` printed.
    pub fn apply_cmdlets(&self, script: &str) -> Result<Vec<String>, CmdletError> {
        let _writer = self.writer.lock().unwrap_or_else(|e| e.into_inner());
        let current = self.snapshot.load_full();
        let engine = &current.engine;
        let applied = engine.run_script(script).map_err(CmdletError::Script)?;
        if applied.store == *engine.store() {
            return Ok(applied.output); // read-only (Get-AuthenticationPolicy): nothing to keep
        }
        if let Some(path) = &self.state_file {
            persist(path, script).map_err(CmdletError::Persist)?;
        }
        let next = Snapshot::with_engine(
            engine.with_store(applied.store),
            current.bearer.clone(),
            current.kerberos.clone(),
        );
        self.snapshot.store(Arc::new(next));
        tracing::info!(lines = script.lines().count(), "cmdlets applied");
        if let Some(observer) = self.cmdlet_observer.get() {
            let _ = observer.send(script.to_owned());
        }
        Ok(applied.output)
    }
}

/// Appends a script to the state file and flushes it to disk.
fn persist(path: &std::path::Path, script: &str) -> std::io::Result<()> {
    use std::io::Write as _;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)?;
    let mut text = script.trim_end().to_owned();
    text.push('\n');
    file.write_all(text.as_bytes())?;
    file.sync_all()
}

/// A running proxy: its addresses and the handles to stop it.
pub struct Running {
    pub proxy_addr: SocketAddr,
    pub admin_addr: SocketAddr,
    pub shared: Arc<Shared>,
    shutdown: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
    /// Background work that runs until stopped (the health checks).
    background: Vec<JoinHandle<()>>,
}

impl Running {
    /// The configuration file this proxy was started from.
    pub fn config_path(&self) -> PathBuf {
        self.shared.config_path.clone()
    }

    /// Stops accepting, lets in-flight requests finish (up to the grace period), and
    /// returns when every connection is closed.
    pub async fn shutdown(self) {
        let _ = self.shutdown.send(true);
        for task in &self.background {
            task.abort();
        }
        for task in self.tasks {
            let _ = task.await;
        }
    }
}

/// Binds the listeners and starts serving. Fails on an invalid configuration or a
/// listener that cannot be bound.
pub async fn start(config: Config) -> anyhow::Result<Running> {
    let snapshot = Snapshot::build(&config).map_err(anyhow::Error::new)?;
    if config.admin_token.is_none() {
        let open = if config.server.admin_listen.ip().is_loopback() {
            "any local user or process"
        } else {
            "anyone who can reach it"
        };
        tracing::warn!(
            admin_listen = %config.server.admin_listen,
            "admin.token is not set: {open} can send cmdlets to the admin API and reload the configuration"
        );
    }
    if config.upstream.insecure_skip_verify {
        tracing::warn!(
            "upstream.insecure_skip_verify = true: upstream certificates are NOT verified"
        );
    }
    let upstream = Arc::new(upstream::Upstream::new(&config.upstream));
    let acceptor = config
        .server
        .tls
        .as_ref()
        .map(|tls| TlsAcceptor::from(tls.config.clone()));
    let metrics = Arc::new(Metrics::new());
    let cluster = match config.cluster.clone() {
        Some(c) => Some(Arc::new(
            crate::cluster::Cluster::new(c, metrics.clone())
                .map_err(|m| crate::config::ConfigErrors::one("cluster.redis_url", m))?,
        )),
        None => None,
    };
    let tokens = TokenValidator::new(&config.tokens, metrics.clone()).map(Arc::new);
    match &tokens {
        Some(v) => v.start_refreshers(),
        None => tracing::warn!(
            "no [[tokens.issuers]]: bearer tokens are forwarded unvalidated (Exchange validates them)"
        ),
    }
    let shared = Arc::new(Shared {
        snapshot: ArcSwap::from_pointee(snapshot),
        metrics: metrics.clone(),
        tokens,
        require_mfa: config.tokens.require_mfa,
        state_file: config.policy.state_file.clone(),
        admin_token: config.admin_token.clone(),
        writer: std::sync::Mutex::new(()),
        observer: std::sync::OnceLock::new(),
        cmdlet_observer: std::sync::OnceLock::new(),
        audit: match config.audit.enabled {
            // `validate` checked the path; a failure now (a folder removed since) is
            // still the configuration's, exit 78.
            true => Some(
                AuditLog::start(config.audit.clone(), metrics.clone()).map_err(|e| {
                    let path = config.audit.path.as_deref().unwrap_or(Path::new("-"));
                    crate::config::ConfigErrors::one(
                        "audit.path",
                        format!("{}: {e}", path.display()),
                    )
                })?,
            ),
            false => None,
        },
        protect: Protect::new(config.protect),
        cluster,
        fleet: fleet::FleetState::default(),
        upstream,
        timeouts: Timeouts {
            idle: config.server.idle_timeout,
            long_idle: config.server.long_idle_timeout,
            // An attempt in flight is given up on (in Redis) once no answer can come:
            // after the longest wait for response headers, long polls included.
            lockout_hold: config
                .upstream
                .response_header_timeout
                .max(config.server.long_idle_timeout)
                + std::time::Duration::from_secs(60),
        },
        config_path: config.path.clone(),
        started: config.clone(),
    });
    let listener = bind_with_backlog(config.server.listen, config.server.listen_backlog)
        .map_err(|e| bind_error("server.listen", config.server.listen, e))?;
    let admin = TcpListener::bind(config.server.admin_listen)
        .await
        .map_err(|e| bind_error("server.admin_listen", config.server.admin_listen, e))?;
    let proxy_addr = listener.local_addr()?;
    let admin_addr = admin.local_addr()?;
    let max_connections = config
        .server
        .max_connections
        .unwrap_or_else(|| default_max_connections(config.upstream.servers.len()));
    metrics
        .client_connections_limit
        .set(i64::try_from(max_connections).unwrap_or(i64::MAX));
    tracing::info!(max_connections, "client connections served at once at most");
    if config.server.max_connections.is_none() && max_connections < FEW_CONNECTIONS {
        // A handful of idle clients would then refuse everyone else for the header read
        // timeout (red team: at 64 descriptors the limit is 1).
        tracing::warn!(
            max_connections,
            open_file_limit =
                rlimit::getrlimit(rlimit::Resource::NOFILE).map_or(0, |(soft, _)| soft),
            "the open-file limit leaves room for very few client connections: raise it (the systemd unit sets LimitNOFILE=65536) or set server.max_connections"
        );
    }
    let mut background = vec![tokio::spawn(
        shared.upstream.clone().run_health_checks(metrics.clone()),
    )];
    if let Some(cluster) = &shared.cluster {
        tracing::info!(redis = %cluster.config().redis_url, "cluster: lockout, spray and the policy store are shared through Redis");
        background.push(tokio::spawn(fleet::run_sync(
            shared.clone(),
            cluster.clone(),
        )));
    }
    let (shutdown, watch) = watch::channel(false);
    let tasks = vec![
        tokio::spawn(accept_loop(
            listener,
            acceptor,
            shared.clone(),
            config.server.clone(),
            Arc::new(Semaphore::new(max_connections)),
            max_connections,
            watch.clone(),
        )),
        tokio::spawn(admin::serve(admin, shared.clone(), watch)),
    ];
    Ok(Running {
        proxy_addr,
        admin_addr,
        shared,
        shutdown,
        tasks,
        background,
    })
}

/// Below this many client connections (sized from the open-file limit, not configured)
/// `serve` warns at start.
const FEW_CONNECTIONS: usize = 100;

/// Descriptors kept back from client connections whatever the configuration: listeners,
/// the audit log, key fetches, standard streams.
const RESERVED_DESCRIPTORS: u64 = 32;
/// Descriptors one health-check round may hold per upstream server: one probe per
/// virtual directory checked (at most nine).
const PROBE_DESCRIPTORS_PER_SERVER: u64 = 9;

/// `server.max_connections` when not configured (SPEC §7 "Limits"): what the open-file
/// soft limit allows once exgate's own needs are kept back — the fixed reserve, the
/// connections refused over capacity that linger, the admin listener's, and a round of
/// health checks on `servers` servers — at two descriptors per forwarded connection
/// (the client's and its upstream's), at least 1.
pub fn default_max_connections(servers: usize) -> usize {
    let soft = rlimit::getrlimit(rlimit::Resource::NOFILE).map_or(1024, |(soft, _)| soft);
    let kept = RESERVED_DESCRIPTORS
        + OVER_CAPACITY_ANSWERS as u64
        + admin::MAX_ADMIN_CONNECTIONS as u64
        + PROBE_DESCRIPTORS_PER_SERVER * servers as u64;
    let n = soft.saturating_sub(kept) / 2;
    usize::try_from(n.max(1)).unwrap_or(usize::MAX)
}

/// Binds `addr` with an accept queue of `backlog` connections (`server.listen_backlog`,
/// SPEC §7): a burst of connects waits in the queue instead of for a SYN retransmit.
fn bind_with_backlog(addr: SocketAddr, backlog: u32) -> std::io::Result<TcpListener> {
    let socket = match addr {
        SocketAddr::V4(_) => tokio::net::TcpSocket::new_v4()?,
        SocketAddr::V6(_) => tokio::net::TcpSocket::new_v6()?,
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(backlog)
}

/// Connections refused over capacity that may be lingering at once (each holds its
/// descriptor for up to [`OVER_CAPACITY_LINGER`]); beyond this they are closed unanswered.
const OVER_CAPACITY_ANSWERS: usize = 64;
/// How long a refused connection is drained after its 503, so that the client reads the
/// answer instead of a reset (a close with unread bytes sends RST).
const OVER_CAPACITY_LINGER: std::time::Duration = std::time::Duration::from_secs(1);

/// How long a connection taken on the spare descriptor is given to send its request
/// before its 503 is written: a 503 sent before the request reaches a client that has not
/// written yet, which then takes it for a stray answer (or is reset when its request
/// meets the closed socket), and the client never sees why it was refused. Short, as
/// the spare answers one client at a time: a real client has written its request long
/// before exgate takes it from the queue, and a flood of silent connects costs the
/// clients queued behind it no more than this each.
const SPARE_REQUEST_WAIT: std::time::Duration = std::time::Duration::from_millis(100);
/// How long [`answer_unavailable_now`] holds the spare's descriptor at most: the wait
/// for the request, the 503, and the drain until the client closes.
const SPARE_ANSWER_MAX: std::time::Duration = std::time::Duration::from_millis(200);

async fn accept_loop(
    listener: TcpListener,
    acceptor: Option<TlsAcceptor>,
    shared: Arc<Shared>,
    server: ServerConfig,
    capacity: Arc<Semaphore>,
    max_connections: usize,
    mut stop: watch::Receiver<bool>,
) {
    let serving = Arc::new(serving(&server));
    let answering = Arc::new(Semaphore::new(OVER_CAPACITY_ANSWERS));
    // A descriptor held back for the moment the others run out (libev's and nginx's
    // trick): freed, it lets exgate take one waiting connection and answer it 503.
    let mut spare = open_spare();
    let mut short = false;
    loop {
        // A spare lost to another task (see `take_with_spare`) is taken back as soon as a
        // descriptor frees: without it, clients waiting at the limit get no answer.
        if spare.is_none() {
            spare = open_spare();
        }
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    short = false;
                    match capacity.clone().try_acquire_owned() {
                        Ok(permit) => {
                            let open = OpenConnection::new(permit, &shared.metrics);
                            spawn_connection(stream, peer, acceptor.clone(), shared.clone(), &server, &serving, open);
                        }
                        Err(_) => {
                            shared.metrics.record_overload("max_connections");
                            refuse_over_capacity(stream, acceptor.is_some(), &answering);
                        }
                    }
                }
                Err(e) if upstream::is_local_exhaustion(&e) => {
                    // exgate's own exhaustion, counted as such (once per shortage, and
                    // once per connection answered). Linux fails accept with EMFILE
                    // before it looks at the queue, so this does not mean a client is
                    // waiting: the spare is traded for one only if one is there.
                    let waiting = take_with_spare(&listener, &mut spare);
                    if !std::mem::replace(&mut short, true) {
                        shared.metrics.record_overload("file_descriptors");
                        tracing::warn!(error = %e, "out of file descriptors: refusing connections with 503");
                    }
                    match waiting {
                        // Answered 503 and closed; the next waiting client, if any, is
                        // taken the same way on the next turn.
                        Some(Ok((stream, _))) => {
                            shared.metrics.record_overload("file_descriptors");
                            answer_unavailable_now(stream, acceptor.is_some()).await;
                            spare = open_spare();
                        }
                        // Nobody waiting: the spare is back, and the listener waits for
                        // the next client instead of failing again at once.
                        None if spare.is_some() => {}
                        // The spare was lost, or accept failed otherwise: back off
                        // instead of spinning.
                        _ => tokio::time::sleep(std::time::Duration::from_millis(50)).await,
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                }
            },
            _ = stop.changed() => break,
        }
    }
    drop(listener);
    // Every connection holds a place under `capacity` until it ends: all of them back
    // means every connection is closed.
    serving.drain();
    let all = u32::try_from(max_connections).unwrap_or(u32::MAX);
    if tokio::time::timeout(server.shutdown_grace, capacity.acquire_many(all))
        .await
        .is_err()
    {
        tracing::warn!("shutdown grace period over; closing the remaining connections");
    }
}

/// Frees the spare descriptor, takes the connection waiting on `listener` if there is
/// one, and opens the spare again at once when there is none — all without yielding,
/// so that the freed descriptor goes to this accept and not to another task's socket
/// (an upstream connect on another worker thread). Before, the spare was freed and the
/// listener awaited for up to 10 ms: the freed descriptor went to the upstream connect
/// of the connection just accepted, `/dev/null` could not be opened again, and from
/// then on no waiting client was answered at all until descriptors freed. Returns None
/// when nobody was waiting (the listener's readiness is then cleared, so the accept loop
/// sleeps until the next client) or when there was no spare. The spare is None after a
/// connection was taken (the connection holds its descriptor), or when another thread
/// took the descriptor within these few system calls.
fn take_with_spare(
    listener: &TcpListener,
    spare: &mut Option<std::fs::File>,
) -> Option<std::io::Result<(TcpStream, SocketAddr)>> {
    drop(spare.take()?);
    // Polled once: a waiting connection is taken, an empty queue answers Pending.
    let once = &mut std::task::Context::from_waker(std::task::Waker::noop());
    let taken = match listener.poll_accept(once) {
        std::task::Poll::Ready(taken) => Some(taken),
        std::task::Poll::Pending => None,
    };
    if !matches!(taken, Some(Ok(_))) {
        *spare = open_spare();
    }
    taken
}

/// A listener that cannot be bound: an address in use is a runtime failure (exit 1, so
/// systemd restarts once it frees); an address that is not this machine's, or a port
/// exgate may not bind, is the configuration's (exit 78). Either names the key.
fn bind_error(key: &str, addr: SocketAddr, e: std::io::Error) -> anyhow::Error {
    let message = format!("{addr}: {e}");
    match e.kind() {
        std::io::ErrorKind::AddrInUse => anyhow::anyhow!("{key} {message}"),
        _ => crate::config::ConfigErrors::one(key, message).into(),
    }
}

/// `error` and its sources, outermost first.
pub(crate) fn error_chain<'a>(
    error: &'a (dyn std::error::Error + 'static),
) -> impl Iterator<Item = &'a (dyn std::error::Error + 'static)> {
    std::iter::successors(Some(error), |e| e.source())
}

/// Whether `error` or one of its sources is an `E` (I/O errors included: their inner
/// error is searched too).
fn caused_by<E: std::error::Error + 'static>(error: &(dyn std::error::Error + 'static)) -> bool {
    error_chain(error).any(|e| {
        e.is::<E>()
            || e.downcast_ref::<std::io::Error>()
                .and_then(|io| io.get_ref())
                .is_some_and(|inner| inner.is::<E>())
    })
}

/// The spare descriptor [`accept_loop`] frees when the others run out.
fn open_spare() -> Option<std::fs::File> {
    std::fs::File::open("/dev/null").ok()
}

/// Answers a connection taken on the spare descriptor with the raw 503 (a TLS one is
/// just closed) and closes it within [`SPARE_ANSWER_MAX`]: the descriptor is needed
/// back. The client's request is waited for first (up to [`SPARE_REQUEST_WAIT`]), so
/// that the 503 answers it; when one came, exgate half-closes after the answer and
/// reads until the client closes, so that the close is a FIN, not a reset that could
/// discard the answer (a silent connection has nothing unread: it is closed at once).
/// The 503 is written by awaiting the socket, not with `try_write`: on a socket just
/// accepted tokio has no readiness yet, and `try_write` fails with `WouldBlock` without
/// writing — such clients got a bare close.
async fn answer_unavailable_now(stream: TcpStream, tls: bool) {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    if tls {
        return;
    }
    let mut stream = stream;
    let answer = async {
        let mut sink = [0u8; 4096];
        let asked = match tokio::time::timeout(SPARE_REQUEST_WAIT, stream.read(&mut sink)).await {
            Ok(Ok(0)) => return Ok(()), // the client left without a request
            Ok(read) => read.map(|_| true)?,
            Err(_) => false, // silent so far: answered all the same
        };
        stream.write_all(respond::OVER_CAPACITY).await?;
        stream.shutdown().await?;
        if asked {
            discard_until_closed(&mut stream, usize::MAX).await;
        }
        std::io::Result::Ok(())
    };
    let _ = tokio::time::timeout(SPARE_ANSWER_MAX, answer).await;
}

/// Reads and drops what the peer still sends, after exgate's last answer and FIN, until
/// it closes, a read fails, or `max_bytes` were read (callers bound the time): closed
/// with bytes unread, a socket sends a reset that discards what the peer has not read
/// yet (RFC 9112 §9.6).
async fn discard_until_closed<R: tokio::io::AsyncRead + Unpin>(io: &mut R, max_bytes: usize) {
    use tokio::io::AsyncReadExt as _;
    let mut sink = vec![0u8; 4096];
    let mut read = 0;
    while read < max_bytes {
        match io.read(&mut sink).await {
            Ok(0) | Err(_) => return,
            Ok(n) => read += n,
        }
    }
}

/// A client connection beyond `server.max_connections` (SPEC §6): a plain-HTTP one is
/// sent a raw 503 with `Retry-After` and drained briefly before it is closed; a TLS one
/// is closed at once (a handshake would cost what the limit protects). Never touches an
/// upstream.
fn refuse_over_capacity(stream: TcpStream, tls: bool, answering: &Arc<Semaphore>) {
    let Ok(permit) = answering.clone().try_acquire_owned() else {
        return; // dropped: closed unanswered
    };
    if tls {
        return;
    }
    tokio::spawn(async move {
        use tokio::io::AsyncWriteExt as _;
        let mut stream = stream;
        let linger = async {
            stream.write_all(respond::OVER_CAPACITY).await?;
            stream.shutdown().await?;
            discard_until_closed(&mut stream, usize::MAX).await;
            std::io::Result::Ok(())
        };
        let _ = tokio::time::timeout(OVER_CAPACITY_LINGER, linger).await;
        drop(permit);
    });
}

/// A client connection's place under `server.max_connections`, counted in
/// `exgate_client_connections`; released when the connection ends.
struct OpenConnection {
    _permit: OwnedSemaphorePermit,
    gauge: prometheus::IntGauge,
}

impl OpenConnection {
    fn new(permit: OwnedSemaphorePermit, metrics: &Metrics) -> OpenConnection {
        metrics.client_connections.inc();
        OpenConnection {
            _permit: permit,
            gauge: metrics.client_connections.clone(),
        }
    }
}

impl Drop for OpenConnection {
    fn drop(&mut self) {
        self.gauge.dec();
    }
}

/// How far above `server.max_header_bytes` hyper's read buffer may grow: heads up to
/// there reach the head guard's exact check; beyond it hyper refuses them itself.
const HYPER_BUFFER_MARGIN: usize = 16 * 1024;

/// hyper's settings for the client connections of one listener, built once.
fn serving(server: &ServerConfig) -> park::Serving {
    let mut builder = hyper::server::conn::http1::Builder::new();
    // hyper's own head limit sits above the configured one, so that the head guard,
    // which measures heads exactly, decides (SPEC §6: 431 above `max_header_bytes`).
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(server.header_read_timeout)
        .max_buf_size(server.max_header_bytes + HYPER_BUFFER_MARGIN)
        .keep_alive(true);
    park::Serving::new(builder, server.header_read_timeout, server.quick_refusals)
}

fn spawn_connection(
    stream: TcpStream,
    peer: SocketAddr,
    acceptor: Option<TlsAcceptor>,
    shared: Arc<Shared>,
    server: &ServerConfig,
    serving: &Arc<park::Serving>,
    open: OpenConnection,
) {
    let _ = stream.set_nodelay(true);
    let verdicts = head_guard::Verdicts::default();
    let write_idle = idle::WriteIdle::new(server.idle_timeout);
    let activity = park::Activity::default();
    let service = service::ConnectionService::new(service::Client {
        shared,
        peer,
        https: acceptor.is_some(),
        verdicts: verdicts.clone(),
        max_header_bytes: server.max_header_bytes,
        write_idle: write_idle.clone(),
        activity: activity.clone(),
    });
    let serving = serving.clone();
    // Plain and TLS connections are separate tasks, so that a plain connection's task
    // does not carry the TLS state's room.
    match acceptor {
        None => {
            let io = client_stack(stream, verdicts, write_idle, activity);
            tokio::spawn(park::serve(serving, io, service, open));
        }
        Some(acceptor) => {
            let handshake_timeout = server.header_read_timeout;
            tokio::spawn(async move {
                let tls =
                    match tokio::time::timeout(handshake_timeout, acceptor.accept(stream)).await {
                        Ok(Ok(tls)) => tls,
                        Ok(Err(e)) => {
                            tracing::debug!(%peer, error = %e, "TLS handshake failed");
                            return;
                        }
                        Err(_) => return,
                    };
                let io = client_stack(tls, verdicts, write_idle, activity);
                park::serve(serving, io, service, open).await;
            });
        }
    }
}

/// The client byte stream as hyper reads it: the head guard next to the socket, the
/// write stall timer, and the parking on top.
fn client_stack<T>(
    io: T,
    verdicts: head_guard::Verdicts,
    write_idle: idle::WriteIdle,
    activity: park::Activity,
) -> Box<park::Parking<idle::WriteStall<head_guard::HeadGuard<T>>>> {
    let guard = head_guard::HeadGuard::new(io, verdicts);
    // Boxed: it moves into hyper and back at every park, and a parked connection's
    // task holds a pointer instead of the stream's room.
    Box::new(park::Parking::new(
        idle::WriteStall::new(guard, write_idle),
        activity,
    ))
}

/// Counts how a client connection ended, when it was the client's fault.
fn connection_ended(result: hyper::Result<()>, metrics: &Metrics, peer: SocketAddr) {
    if let Err(e) = &result {
        if caused_by::<idle::ClientNotReading>(e) {
            metrics.record_client_error(ClientFault::ResponseUnread.as_str());
        }
        // hyper answered a head it could not parse (400) or that overflowed its
        // buffer (431) itself: still the client's fault, and counted as such.
        if e.is_parse() || e.is_parse_too_large() {
            let fault = match e.is_parse_too_large() {
                true => ClientFault::HeadTooLarge,
                false => ClientFault::MalformedHead,
            };
            metrics.record_client_error(fault.as_str());
        }
    }
    if let Err(e) = result {
        tracing::debug!(%peer, error = %e, "connection ended with an error");
    }
}
