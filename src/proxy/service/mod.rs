//! The request path, one phase per step (SPEC §1): `decide` (classify, parse, policy),
//! then `refuse` or `forward`, then `rewrite_response`. One [`ConnectionService`] serves
//! one client connection, which is where NTLM/Negotiate state lives.

use std::borrow::Cow;
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use http_body_util::BodyExt;
use hyper::body::{Body, Incoming};
use hyper::header::{self, HeaderValue};
use hyper::{Request, Response};
use tokio::sync::Mutex;

mod faults;
mod forward;
mod protect;
mod quick;

pub use quick::{QuickHead, Repeat};

use forward::rewrite_response;

use super::body::{BodyFault, RequestBody};
use super::head_guard::Verdicts;
use super::idle::WriteIdle;
use super::park::{Activity, Tracked};
use super::respond::{self, ProxyBody, Refusal};
use super::upstream::{Pinned, UpstreamError};
use super::{Shared, Snapshot, headers};
use crate::audit::{AuditLog, AuditRecord};
use crate::auth::{Credentials, Mechanism};
use crate::kerberos::TicketClient;
use crate::policy::{
    Action, ConnectionIdentity, Context, Decision, Directory, Evaluation, Lookup, Reason,
    RequestFacts, TicketRead,
};
use crate::token::TokenError;

/// What one client connection holds upstream and has established about its
/// authentication.
#[derive(Default)]
struct ConnectionAuth {
    /// The client connection's own upstream connection: never pooled, never shared with
    /// another client, so NTLM and Negotiate can authenticate it (RFC 4559 §6), and no
    /// pool is consulted per request.
    upstream: Option<Pinned>,
    /// The connection carried NTLM or Negotiate: its upstream connection is now
    /// authenticated and must not be silently replaced.
    authenticated: bool,
    /// The mechanism a `Negotiate` leg established, for later NegTokenResp legs.
    mechanism: Option<Mechanism>,
    /// Who authenticated the connection, once Exchange accepted a final leg: every later
    /// request is decided as theirs (SPEC §3 "Connection identity").
    identity: Option<ConnectionIdentity>,
}

impl ConnectionAuth {
    /// Closes the authenticated upstream connection and forgets everything it
    /// established: the client's next attempt starts a new handshake on a new one.
    fn forget(&mut self) {
        *self = ConnectionAuth::default();
    }
}

struct Connection {
    /// What the connection was made of; all a parked connection keeps when nothing was
    /// established on it.
    client: Client,
    /// The peer's address as an `X-Forwarded-For` item, formatted once.
    client_address: HeaderValue,
    // HTTP/1.1 serves one request at a time per connection, so this lock is never
    // contended; it exists because the upstream sender is used across an await.
    auth: Mutex<ConnectionAuth>,
}

/// What a client connection's service is made of, before anything is established on it.
pub struct Client {
    pub shared: Arc<Shared>,
    pub peer: SocketAddr,
    pub https: bool,
    /// What the head guard reports of the connection's raw heads.
    pub verdicts: Verdicts,
    /// `server.max_header_bytes`.
    pub max_header_bytes: usize,
    pub write_idle: WriteIdle,
    pub activity: Activity,
}

/// The hyper service for one client connection.
#[derive(Clone)]
pub struct ConnectionService(Arc<Connection>);

/// A parked connection's service (see [`crate::proxy::park`]).
pub enum Parked {
    /// NTLM or Negotiate authenticated the connection: its service, with the
    /// authenticated upstream connection and who authenticated, is kept whole.
    Kept(ConnectionService),
    /// Nothing was established on the connection: only what rebuilds its service is
    /// kept, smaller than the service's allocation.
    Dormant(Box<Client>),
}

impl Parked {
    /// The service again, for the connection's next request.
    pub fn resume(self) -> ConnectionService {
        match self {
            Parked::Kept(service) => service,
            Parked::Dormant(client) => ConnectionService::new(*client),
        }
    }
}

impl ConnectionService {
    /// A service for `client`'s connection.
    pub fn new(client: Client) -> ConnectionService {
        ConnectionService(Arc::new(Connection {
            client_address: headers::client_address(client.peer.ip()),
            client,
            auth: Mutex::new(ConnectionAuth::default()),
        }))
    }

    /// The client connection parks (see [`crate::proxy::park`]): an upstream connection
    /// that no NTLM or Negotiate authenticated goes back to the shared idle pool, and a
    /// service on which nothing is established is reduced to what rebuilds it. An
    /// authenticated connection keeps its upstream connection and its identity (SPEC §3).
    pub fn park(self) -> Parked {
        self.0.client.verdicts.shrink();
        let established = match self.0.auth.try_lock() {
            // A request holds it: kept as it is.
            Err(_) => true,
            Ok(auth) if auth.authenticated || auth.identity.is_some() => true,
            Ok(auth) if auth.mechanism.is_some() => true,
            Ok(mut auth) => {
                if let Some(own) = auth.upstream.take() {
                    self.0.client.shared.upstream.release(own);
                }
                false
            }
        };
        if established {
            return Parked::Kept(self);
        }
        match Arc::try_unwrap(self.0) {
            Ok(c) => Parked::Dormant(Box::new(c.client)),
            Err(shared) => Parked::Kept(ConnectionService(shared)),
        }
    }

    /// The metrics the connection counts in.
    pub fn metrics(&self) -> &crate::metrics::Metrics {
        &self.0.client.shared.metrics
    }

    /// The client's address.
    pub fn peer(&self) -> SocketAddr {
        self.0.client.peer
    }
}

impl hyper::service::Service<Request<Incoming>> for ConnectionService {
    type Response = Response<Tracked>;
    // The outermost service never fails: hyper would drop the connection.
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response<Tracked>, Infallible>> + Send>>;

    fn call(&self, req: Request<Incoming>) -> Self::Future {
        let conn = self.0.clone();
        let busy = conn.client.activity.begin();
        Box::pin(async move { Ok(conn.handle(req).await.map(|body| Tracked::new(body, busy))) })
    }
}

/// Request bodies of known length up to this are read whole before they are forwarded
/// (HAProxy's `option http-buffer-request`, bounded): a stalled EWS or Autodiscover
/// upload then never holds an Exchange connection.
const READ_WHOLE_BELOW_BYTES: u64 = 64 * 1024;

/// What a request's audit line takes from its head.
struct Audited {
    method: String,
    path: String,
    /// At most 256 characters.
    user_agent: Option<String>,
}

/// What the request path learned, for metrics, the audit log and protection.
struct Outcome {
    decision: Decision,
    /// Who and which policy the audit line names (only with an audit log).
    names: Names,
    /// The request carried an `Authorization` header.
    credentials: bool,
    upstream_status: Option<u16>,
}

/// The names on a request's audit line, resolved against the snapshot that decided it
/// (a reload may since have renumbered its users and policies).
#[derive(Default)]
struct Names {
    /// The directory identity when known, else the name as presented.
    user: Option<String>,
    /// The name as presented, when it differs from `user`.
    presented_user: Option<String>,
    policy: Option<String>,
}

impl Names {
    /// [`Names::new`] when the request's record is read by anyone (only the audit log
    /// and an observer read names), else none.
    fn recorded(
        shared: &Shared,
        snapshot: &Snapshot,
        decision: &Decision,
        presented: Option<&str>,
    ) -> Names {
        match shared.recorded() {
            true => Names::new(snapshot, decision, presented),
            false => Names::default(),
        }
    }

    fn new(snapshot: &Snapshot, decision: &Decision, presented: Option<&str>) -> Names {
        let engine = &snapshot.engine;
        let (user, presented_user) =
            crate::audit::user_names(engine.directory(), decision.user, presented);
        Names {
            user,
            presented_user,
            policy: decision
                .policy
                .map(|p| engine.store().policy(p).name.clone()),
        }
    }
}

/// The name lockout and spray count a request under (SPEC §9): the directory identity,
/// so that `user01`, `CONTOSO\user01` and `user01@contoso.com` are one user, not three.
/// The decision usually found the user already; the name is looked up only when it did
/// not. A request decided as its connection's user presented no password: it is neither
/// a lockout attempt nor a spray name. A name that is no declared user's counts under
/// its account key, so that the spellings Active Directory takes for one account
/// (`carol@contoso.com`, `CONTOSO\carol`, `carol@contoso.com.`) meet one threshold, not
/// one each.
fn protect_key<'a>(
    directory: &'a Directory,
    decision: &Decision,
    user: Option<&'a str>,
) -> Option<Cow<'a, str>> {
    match (decision.connection, decision.user, user) {
        (true, _, _) => None,
        (false, Some(id), _) => Some(Cow::Borrowed(&directory.user(id).upn)),
        // A refused request only counts for spray detection, where the name as presented
        // is enough (variants of one name count as several: stricter).
        (false, None, Some(u)) if !decision.action.forwards() => Some(Cow::Borrowed(u)),
        (false, None, Some(u)) => Some(match directory.lookup(u) {
            Lookup::Found(id) => Cow::Borrowed(&directory.user(id).upn),
            Lookup::Unknown | Lookup::Ambiguous => directory.unmapped_key(u),
        }),
        (false, None, None) => None,
    }
}

impl Connection {
    /// Runs the phases, then records the outcome: duration, audit line, protection.
    /// This future is copied whole into hyper's box once per request, so the awaits that
    /// are rare (a new upstream connection, a Redis round trip) or need a token (its
    /// validation) are boxed: their state is not part of it.
    async fn handle(&self, req: Request<Incoming>) -> Response<ProxyBody> {
        let started = Instant::now();
        let audited = self.audited(
            req.method(),
            req.uri().path(),
            req.headers()
                .get(header::USER_AGENT)
                .map(HeaderValue::as_bytes),
        );
        let (res, outcome) = self.phases(req, started).await;
        self.record(audited, res.status().as_u16(), outcome, started.elapsed());
        res
    }

    /// What the audit line of a request needs from its head; copied only when there is
    /// an audit log or an observer.
    fn audited(
        &self,
        method: &hyper::Method,
        path: &str,
        user_agent: Option<&[u8]>,
    ) -> Option<Audited> {
        let shared = &self.client.shared;
        shared.recorded().then(|| Audited {
            method: method.to_string(),
            path: path.to_owned(),
            // Visible ASCII only, as `HeaderValue::to_str` reads a value.
            user_agent: user_agent
                .filter(|v| v.iter().all(|&b| b == b'\t' || (0x20..0x7f).contains(&b)))
                .and_then(|v| std::str::from_utf8(v).ok())
                .map(|s| s.chars().take(256).collect::<String>()),
        })
    }

    /// Records an answered request: its duration, and its audit line (to the audit log
    /// when it carried credentials or was refused, and to an observer).
    fn record(&self, audited: Option<Audited>, status: u16, outcome: Outcome, elapsed: Duration) {
        let shared = &self.client.shared;
        shared.metrics.record_duration(
            outcome.decision.protocol,
            outcome.decision.action,
            elapsed.as_secs_f64(),
        );
        let Some(Audited {
            method,
            path,
            user_agent,
        }) = audited
        else {
            return;
        };
        let observer = shared.observer.get();
        let audit = shared
            .audit
            .as_ref()
            .filter(|_| outcome.credentials || !outcome.decision.action.forwards());
        if audit.is_none() && observer.is_none() {
            return;
        }
        let d = &outcome.decision;
        let names = outcome.names;
        let record = AuditRecord {
            ts: crate::audit::timestamp(),
            request_id: shared
                .audit
                .as_ref()
                .map(AuditLog::request_id)
                .unwrap_or_default(),
            client_ip: self.client.peer.ip().to_string(),
            method,
            path,
            protocol: d.protocol.as_str().into(),
            client_app: d.protocol.client_app().into(),
            scheme: d.scheme.as_str().into(),
            user: names.user,
            presented_user: names.presented_user,
            policy: names.policy,
            decision: d.action.as_str().into(),
            reason: d.reason.as_str().into(),
            status,
            upstream_status: outcome.upstream_status,
            duration_ms: (elapsed.as_secs_f64() * 1e6).round() / 1e3,
            user_agent,
            legacy: d.legacy,
        };
        if let Some(audit) = audit {
            audit.write(&record);
        }
        if let Some(observer) = observer {
            // No receiver (no console page open) is not an error.
            let _ = observer.send(record);
        }
    }

    async fn phases(
        &self,
        req: Request<Incoming>,
        started: Instant,
    ) -> (Response<ProxyBody>, Outcome) {
        let snapshot = self.client.shared.snapshot.load_full();
        // Phase: refuse what a strict HTTP/1.1 server refuses, before any decision.
        let raw = match self.check_framing(&req) {
            Ok(raw) => raw,
            Err(fault) => return self.client_fault(&snapshot, fault),
        };
        let mut auth = self.auth.lock().await;

        // Phase: decide (pure), then validate a bearer token. The credentials, password
        // included, are dropped before anything is forwarded or answered.
        let has_body = !req.body().is_end_stream();
        let (mut decision, token_refusal, credentials, user, ticket_client, classified) = {
            let target = req.uri().path_and_query().map_or("/", |p| p.as_str());
            let headers = req.headers().get_all(header::AUTHORIZATION);
            // Only the ProxyShell guard reads cookies, and only on Autodiscover v2 paths.
            let cookies: Vec<&[u8]> = match raw.cookie {
                false => Vec::new(),
                true => req
                    .headers()
                    .get_all(header::COOKIE)
                    .iter()
                    .map(HeaderValue::as_bytes)
                    .collect(),
            };
            let ctx = Context {
                prior_mechanism: auth.mechanism,
                token_user: None,
                connection: auth.identity.as_ref(),
                ticket: snapshot.ticket_unread(),
                request: RequestFacts {
                    method: Some(req.method().as_str()),
                    has_body,
                    cookies: &cookies,
                },
            };
            let mut eval =
                snapshot
                    .engine
                    .evaluate(target, headers.iter().map(HeaderValue::as_bytes), ctx);
            let ticket_client = self.kerberos_stage(&snapshot, &mut eval, ctx);
            let (decision, token_refusal, token_user) =
                self.token_stage(&snapshot, &eval, ctx).await;
            let user = match (decision.connection, token_user, &ticket_client) {
                (true, _, _) => auth
                    .identity
                    .as_ref()
                    .and_then(|i| i.user().map(Into::into)),
                (false, Some(u), _) => Some(u),
                (false, None, Some(c)) => Some(c.principal.clone()),
                (false, None, None) => eval.credentials.user().map(|u| u.into_owned()),
            };
            (
                decision,
                token_refusal,
                eval.credentials,
                user,
                ticket_client,
                eval.target,
            )
        };
        if credentials.authenticates_connection() {
            if auth.identity.is_some() {
                // A new authentication leg never reaches the upstream connection an
                // earlier one authenticated: Exchange might keep serving that connection
                // as its old user after the new leg fails, while exgate would no longer
                // know who it is. The leg goes to a new upstream connection instead.
                auth.forget();
            }
            auth.authenticated = true;
        }
        if let Some(m) = credentials.negotiated_mechanism() {
            auth.mechanism = Some(m);
        }
        let pin = auth.authenticated;
        let anonymous = matches!(credentials, Credentials::None);
        let protect_key = protect_key(snapshot.engine.directory(), &decision, user.as_deref());
        let mut attempt = None;
        if token_refusal.is_none() {
            // The request's start is "now" enough for windows of seconds.
            let (refusal, admitted) = self
                .protect_before(&decision, protect_key.as_deref(), started)
                .await;
            attempt = admitted;
            if let Some(reason) = refusal {
                decision = Decision {
                    action: Action::Block,
                    reason,
                    ..decision
                };
            }
        }
        self.client.shared.metrics.record(&decision);
        let mut outcome = Outcome {
            decision,
            names: Names::recorded(&self.client.shared, &snapshot, &decision, user.as_deref()),
            credentials: !anonymous || decision.connection,
            upstream_status: None,
        };

        if let Some(refusal) = token_refusal {
            let res = match (refusal, self.client.shared.tokens.as_deref()) {
                (Refusal::MfaRequired, Some(tokens)) => {
                    respond::mfa_required(&snapshot.bearer, tokens.auth_context_ids())
                }
                _ => respond::refusal(refusal, &snapshot.bearer),
            };
            return (res, outcome);
        }
        if !decision.action.forwards() {
            return (self.refuse(&snapshot, decision, pin, &mut auth), outcome);
        }
        drop(auth);
        let (parts, body) = req.into_parts();
        let head = self.forward_head(parts);
        // The target as the evaluation classified it (not classified a second time).
        let password_checked = attempt.is_some()
            && classified.is_some_and(|t| {
                crate::policy::answer_checks_password(
                    &t,
                    head.path_and_query.as_str(),
                    head.method.as_str(),
                )
            });
        let idle = self.idle_timeout(decision.protocol);
        self.client.write_idle.set(idle);
        let mut fault = None;
        let body = match has_body {
            false => None,
            true => {
                let (mut body, f) = RequestBody::new(body, idle);
                // A body malformed or stalled before that never reaches Exchange.
                if let Err(fault) = body.read_ahead(READ_WHOLE_BELOW_BYTES).await {
                    return self.body_fault(&snapshot, fault, pin, outcome).await;
                }
                fault = Some(f);
                Some(body.boxed())
            }
        };

        // Phase: forward, on the client connection's own upstream connection.
        let wait = self.response_header_wait(decision.protocol, &head);
        let first_leg = credentials.starts_handshake();
        let result = self
            .forward(decision.protocol, head, body, wait, first_leg)
            .await;
        if let Some(fault) = fault.as_ref().and_then(BodyFault::get)
            && result.is_err()
        {
            return self.body_fault(&snapshot, fault, pin, outcome).await;
        }
        let res = match result {
            Ok(res) => {
                let status = res.status().as_u16();
                outcome.upstream_status = Some(status);
                self.client.shared.metrics.record_upstream_status(status);
                self.protect_after(&decision, attempt.take(), status, password_checked)
                    .await;
                if pin {
                    let ticket = match (&snapshot.kerberos, &ticket_client) {
                        (None, _) => TicketRead::NoKeytab,
                        (Some(_), Some(c)) => TicketRead::Client(&c.principal),
                        (Some(_), None) => TicketRead::Unread,
                    };
                    self.note_authentication(&credentials, ticket, status).await;
                }
                rewrite_response(res, &snapshot, &decision, anonymous, pin, idle)
            }
            Err(e) => {
                let refusal = match e {
                    UpstreamError::NoServer => Refusal::NoUpstream,
                    UpstreamError::Unreachable => Refusal::UpstreamUnreachable,
                    UpstreamError::ResponseTimeout => Refusal::UpstreamTimeout,
                    UpstreamError::LocalExhaustion => Refusal::Overloaded,
                };
                match e {
                    UpstreamError::NoServer => self
                        .client
                        .shared
                        .metrics
                        .record_upstream_error("no_server"),
                    UpstreamError::Unreachable => self
                        .client
                        .shared
                        .metrics
                        .record_upstream_error("unreachable"),
                    UpstreamError::ResponseTimeout => self
                        .client
                        .shared
                        .metrics
                        .record_upstream_error("response_timeout"),
                    // exgate's own exhaustion is never counted against Exchange.
                    UpstreamError::LocalExhaustion => self
                        .client
                        .shared
                        .metrics
                        .record_overload("file_descriptors"),
                }
                let mut res = respond::refusal(refusal, &snapshot.bearer);
                if pin {
                    // The authenticated upstream connection is gone: the client must
                    // start its handshake again on a new connection.
                    respond::close_connection(&mut res);
                }
                res
            }
        };
        (res, outcome)
    }

    /// After Exchange answered a leg of NTLM or Negotiate: a final leg it accepted leaves
    /// its user on the connection (SPEC §3 "Connection identity"); one it refused leaves
    /// nobody.
    async fn note_authentication(
        &self,
        credentials: &Credentials,
        ticket: TicketRead<'_>,
        status: u16,
    ) {
        let mut auth = self.auth.lock().await;
        match ConnectionIdentity::established_by(credentials, auth.mechanism, ticket) {
            Some(_) if status == 401 => auth.identity = None,
            Some(identity) => auth.identity = Some(identity),
            None => {}
        }
    }

    /// Phase: read the client out of a Kerberos AP-REQ's ticket with the keytab (SPEC §3
    /// "Kerberos") and decide again as that client. Without a keytab, or without an
    /// AP-REQ, nothing changes; a ticket the keytab does not open leaves the decision
    /// `evaluate` took for it (nobody identified: the strictest policy).
    fn kerberos_stage(
        &self,
        snapshot: &Snapshot,
        eval: &mut Evaluation,
        ctx: Context<'_>,
    ) -> Option<Arc<TicketClient>> {
        let reader = snapshot.kerberos.as_deref()?;
        let ap_req = eval.credentials.ap_req()?;
        let target = eval.target?;
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let client = match reader.read(ap_req.der(), now) {
            Ok((client, source)) => {
                self.client
                    .shared
                    .metrics
                    .record_kerberos_ticket(source.label());
                client
            }
            Err(e) => {
                self.client.shared.metrics.record_kerberos_ticket(e.label());
                tracing::debug!(peer = %self.client.peer, "Kerberos ticket not read: {e}");
                return None;
            }
        };
        let ctx = Context {
            ticket: TicketRead::Client(&client.principal),
            ..ctx
        };
        eval.decision = snapshot.engine.decide(&target, &eval.credentials, ctx);
        Some(client)
    }

    /// Phase: validate the bearer token (SPEC §5), when issuers are configured. A valid
    /// token's user re-decides on-premises `BlockModernAuth*` in the request's own context
    /// (`ctx`, the connection's identity included); then the MFA requirement of the
    /// protocol applies.
    async fn token_stage(
        &self,
        snapshot: &Snapshot,
        eval: &Evaluation,
        ctx: Context<'_>,
    ) -> (Decision, Option<Refusal>, Option<String>) {
        let (Some(validator), Some(token), Some(target)) =
            (&self.client.shared.tokens, eval.token(), eval.target)
        else {
            return (eval.decision, None, None);
        };
        if eval.decision.reason == Reason::NotGoverned {
            return (eval.decision, None, None); // OWA and ECP are Exchange's own business
        }
        if eval.decision.connection {
            // The connection's NTLM/Kerberos user is refused this protocol, whatever the
            // token says (SPEC §3): the re-decision below would refuse it too, so no
            // signature is verified for it.
            return (eval.decision, None, None);
        }
        let refused = |reason, refusal| {
            let decision = Decision {
                action: Action::Block,
                reason,
                ..eval.decision
            };
            (decision, Some(refusal), None)
        };
        let verified = match Box::pin(validator.validate(token)).await {
            Ok(v) => v,
            Err(TokenError::NoKeys) => {
                return refused(
                    Reason::SigningKeysUnavailable,
                    Refusal::InvalidToken(TokenError::NoKeys),
                );
            }
            Err(e) => return refused(Reason::InvalidToken, Refusal::InvalidToken(e)),
        };
        let ctx = Context {
            token_user: verified.user.as_deref(),
            ..ctx
        };
        let decision = snapshot.engine.decide(&target, &eval.credentials, ctx);
        if decision.action.forwards()
            && self.client.shared.require_mfa[target.protocol.index()]
            && !verified.mfa
        {
            // The token is valid, only without MFA: the audit line names its user.
            let (decision, refusal, _) = refused(Reason::MfaRequired, Refusal::MfaRequired);
            return (decision, refusal, verified.user.clone());
        }
        (decision, None, verified.user.clone())
    }

    /// Phase: refuse. A block on a connection that NTLM or Negotiate authenticated (or
    /// was authenticating) also closes the pinned upstream connection and forgets who
    /// authenticated it, so no authenticated state survives; the client connection stays
    /// open, because clients read `Connection: close` on a 401 as "server busy" and
    /// retry (SPEC §3), and their next attempt starts a new handshake anyway.
    fn refuse(
        &self,
        snapshot: &Snapshot,
        decision: Decision,
        pin: bool,
        auth: &mut ConnectionAuth,
    ) -> Response<ProxyBody> {
        if pin && decision.action == Action::Block {
            auth.forget();
        }
        respond::refusal(Refusal::Decided(decision), &snapshot.bearer)
    }
}
