//! The lab console: a page, served by `exgate lab` on loopback under a per-lab secret,
//! that draws the running scenario's architecture as the article does and shows every
//! request live as it passes — exgate's decisions, the identity provider's sign-ins and
//! what the mock Exchange received — with the article's step numbers; a panel shows the
//! effective authentication policies and switches the rollout stage with the README's
//! cmdlets.
//!
//! Routes, all under `/<secret>/` (anything else is 404, and so is a `Host` that is not
//! this loopback listener's, against DNS rebinding):
//! - `GET /<secret>/` the page, `console.js`, `console.css` (embedded: no build step, no
//!   external asset; a strict Content-Security-Policy allows nothing else);
//! - `GET /<secret>/events`: Server-Sent Events, one `data:` line of JSON per [`Event`]
//!   with its `id:`; the last [`HISTORY`] events first (after `Last-Event-ID` when the
//!   browser reconnects, or `?after=N`), then live ones;
//! - `GET /<secret>/state`: the scenario, its steps, the policies (`Get-AuthenticationPolicy`
//!   as Exchange prints it), who has which, the organization default, `policy.mode`, the
//!   rollout stage and each stage's cmdlets;
//! - `POST /<secret>/rollout` with `{"stage": "report-only" | "pilot" | "organization"}`
//!   (`Content-Type: application/json`, which a cross-site form cannot send): applies
//!   that stage's cmdlets through the admin path (persisted to `state.ps1`), answers
//!   what it sent and the new state.

pub mod rollout;
pub mod steps;

use std::collections::VecDeque;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full, Limited, StreamBody, combinators::BoxBody};
use hyper::body::{Frame, Incoming};
use hyper::header::{self, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde::Serialize;
use tokio::sync::broadcast;

use self::rollout::{RolloutState, Stage};
use self::steps::IdpOutcome;
use super::Scenario;
use crate::audit::AuditRecord;
use crate::auth::Secret;
use crate::proxy::Shared;

/// Events kept for a page that opens (or reconnects) later.
pub const HISTORY: usize = 1000;
/// Console connections open at once; more are closed unanswered. Each lasts at most
/// [`HEAD_TIMEOUT`] unless it is an event stream, and a 404 closes it, so a page on
/// another origin that opens connections (it can: browsers let it connect to loopback,
/// and `<link rel=preconnect>` opens them without a request) holds them for seconds, not
/// for ever; and there are more places than a browser opens sockets at once (Chromium:
/// 256 per profile), so one hostile page cannot take them all (red team, twice).
const MAX_CONNECTIONS: usize = 1024;
/// Event streams open at once (they need the secret); more are answered 503.
const MAX_STREAMS: usize = 16;
/// A request head (and, between requests, the next one) must arrive within this; a
/// rollout body too.
const HEAD_TIMEOUT: Duration = Duration::from_secs(5);
/// What a console event keeps of a string from a request: a path of 65 KB, which exgate
/// accepts, must not make the history hold 65 MB (red team).
const MAX_FIELD_CHARS: usize = 256;
/// A comment line on an idle event stream this often, so that a dead page is noticed.
const KEEP_ALIVE: Duration = Duration::from_secs(15);

/// One thing the console shows: a request exgate decided, a request to the identity
/// provider, a request the mock Exchange received, or a cmdlet script applied (by the
/// console's switch or `exgate cmdlet`). Holds
/// what the audit log holds — never a password, token, code or cookie. Every string
/// may be attacker-chosen (user names, paths): the page writes them as text only.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Event {
    /// Assigned by the [`Bus`]: increasing, the SSE `id`.
    pub id: u64,
    pub ts: String,
    /// `exgate`, `identity-provider`, `exchange` or `cmdlet`.
    pub source: &'static str,
    /// The article's step (`"1–2"`, `"3"`, `"legacy"`, …), when the request is one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub step: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub protocol: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scheme: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub policy: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub decision: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    /// exgate's requests: whether exgate forwarded it to Exchange (its decision), and
    /// Exchange's answer when one came (none: the client went away, or Exchange did not
    /// answer).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub forwarded: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub upstream_status: Option<u16>,
    pub legacy: bool,
    /// Legacy authentication exgate refused: drawn on the red line.
    pub blocked_legacy: bool,
    /// The identity provider's answer (`sign-in page`, `AADSTS50076`, `MSIS7068`, the
    /// tokens' `amr`), `applied` for cmdlets, or a note (events not shown).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// The lines of an applied cmdlet script ([`cmdlet_lines`]).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub cmdlets: Vec<String>,
}

/// `text` as the console shows it in one cell: at most [`MAX_FIELD_CHARS`] characters
/// (then `…`), [`inert`], and a line feed as U+FFFD too.
pub fn shown(text: &str) -> String {
    let cut: String = text.chars().take(MAX_FIELD_CHARS).collect();
    let mut out = inert(&cut).replace('\n', "\u{FFFD}");
    if text.chars().nth(MAX_FIELD_CHARS).is_some() {
        out.push('…');
    }
    out
}

/// `text` with control characters (but the line feed), bidirectional controls and
/// combining marks past the second on one character replaced: what the console shows of
/// a name the policy store or a client chose (red team: U+202E made a policy named
/// `\u{202E}ycageLkcolBgrO` read as OrgBlockLegacy; 250 stacked accents drew over ten
/// rows). A run of combining marks keeps its first two and shows one U+FFFD for the rest.
pub fn inert(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut marks = 0;
    for c in text.chars() {
        let combining = matches!(c,
            '\u{0300}'..='\u{036F}' | '\u{0483}'..='\u{0489}' | '\u{0591}'..='\u{05BD}'
            | '\u{0610}'..='\u{061A}' | '\u{064B}'..='\u{065F}' | '\u{1AB0}'..='\u{1AFF}'
            | '\u{1DC0}'..='\u{1DFF}' | '\u{20D0}'..='\u{20FF}' | '\u{FE20}'..='\u{FE2F}');
        marks = if combining { marks + 1 } else { 0 };
        match c {
            '\n' => out.push(c),
            _ if combining && marks == 3 => out.push('\u{FFFD}'),
            _ if combining && marks > 3 => {}
            c if c.is_control() => out.push('\u{FFFD}'),
            '\u{200E}'
            | '\u{200F}'
            | '\u{061C}'
            | '\u{202A}'..='\u{202E}'
            | '\u{2066}'..='\u{2069}' => out.push('\u{FFFD}'),
            c => out.push(c),
        }
    }
    out
}

impl Event {
    /// exgate's view of a request, with its step.
    pub fn from_request(scenario: Scenario, r: AuditRecord) -> Event {
        Event {
            step: steps::of_request(scenario, &r),
            blocked_legacy: steps::blocked_legacy(&r),
            forwarded: Some(steps::forwarded(&r)),
            ts: r.ts,
            source: "exgate",
            method: Some(shown(&r.method)),
            path: Some(shown(&r.path)),
            protocol: Some(r.protocol),
            scheme: Some(r.scheme),
            user: r.user.as_deref().map(shown),
            policy: r.policy.as_deref().map(shown),
            decision: Some(r.decision),
            reason: Some(r.reason),
            status: Some(r.status),
            upstream_status: r.upstream_status,
            legacy: r.legacy,
            ..Event::default()
        }
    }

    /// A request to the identity provider's sign-in or token endpoint.
    pub fn from_idp(
        scenario: Scenario,
        method: &str,
        path: &str,
        user: Option<String>,
        status: u16,
        outcome: IdpOutcome,
        detail: Option<String>,
    ) -> Event {
        Event {
            ts: crate::audit::timestamp(),
            source: "identity-provider",
            step: steps::of_idp(scenario, outcome).map(str::to_owned),
            method: Some(shown(method)),
            path: Some(shown(path)),
            user: user.as_deref().map(shown),
            status: Some(status),
            detail: detail.as_deref().map(shown),
            ..Event::default()
        }
    }

    /// A request as the mock Exchange received it.
    pub fn from_exchange(
        method: &str,
        path: &str,
        scheme: &str,
        user: Option<String>,
        status: u16,
    ) -> Event {
        Event {
            ts: crate::audit::timestamp(),
            source: "exchange",
            method: Some(shown(method)),
            path: Some(shown(path)),
            scheme: Some(scheme.to_owned()),
            user: user.as_deref().map(shown),
            status: Some(status),
            ..Event::default()
        }
    }
}

/// An event as sent: its id and its JSON.
struct Published {
    id: u64,
    json: String,
}

struct BusInner {
    /// The last [`HISTORY`] events; the lock also orders ids with sends.
    history: Mutex<(u64, VecDeque<Arc<Published>>)>,
    live: broadcast::Sender<Arc<Published>>,
}

/// Where the lab's parts publish [`Event`]s and the console's pages read them. Cheap to
/// clone; publishing never waits (a page that falls behind skips events and is told).
#[derive(Clone)]
pub struct Bus(Arc<BusInner>);

impl Default for Bus {
    fn default() -> Bus {
        Bus::new()
    }
}

impl Bus {
    /// An empty bus.
    pub fn new() -> Bus {
        Bus(Arc::new(BusInner {
            history: Mutex::new((0, VecDeque::with_capacity(HISTORY))),
            live: broadcast::channel(HISTORY).0,
        }))
    }

    /// Numbers `event`, keeps it for pages that open later, and sends it to the open ones.
    pub fn publish(&self, mut event: Event) {
        let mut history = self.0.history.lock().unwrap_or_else(|e| e.into_inner());
        history.0 += 1;
        event.id = history.0;
        let Ok(json) = serde_json::to_string(&event) else {
            return;
        };
        let published = Arc::new(Published { id: event.id, json });
        if history.1.len() == HISTORY {
            history.1.pop_front();
        }
        history.1.push_back(published.clone());
        // No page open is not an error.
        let _ = self.0.live.send(published);
    }

    /// The kept events after `after`, and a receiver for the ones after them (no gap,
    /// no repeat: both are taken under the publishing lock).
    fn subscribe(&self, after: u64) -> (Vec<Arc<Published>>, broadcast::Receiver<Arc<Published>>) {
        let history = self.0.history.lock().unwrap_or_else(|e| e.into_inner());
        let past = history.1.iter().filter(|p| p.id > after).cloned().collect();
        (past, self.0.live.subscribe())
    }

    /// The kept events, as JSON values (what a page that opens now is sent first).
    pub fn history(&self) -> Vec<serde_json::Value> {
        let history = self.0.history.lock().unwrap_or_else(|e| e.into_inner());
        history
            .1
            .iter()
            .filter_map(|p| serde_json::from_str(&p.json).ok())
            .collect()
    }
}

/// Publishes every request exgate decides, and every cmdlet script that changes its
/// policy (sent by the console's switch or by `exgate cmdlet`), until the proxy is gone.
pub fn watch_proxy(shared: &Shared, bus: Bus, scenario: Scenario) {
    let (tx, mut requests) = broadcast::channel(HISTORY);
    let (cmdlet_tx, mut cmdlets) = broadcast::channel(64);
    if !shared.observe(tx) || !shared.observe_cmdlets(cmdlet_tx) {
        return;
    }
    let lagged = |bus: &Bus, n: u64, what: &str| {
        bus.publish(Event {
            ts: crate::audit::timestamp(),
            source: "exgate",
            detail: Some(format!("{n} {what} not shown (the console fell behind)")),
            ..Event::default()
        })
    };
    tokio::spawn(async move {
        loop {
            tokio::select! {
                request = requests.recv() => match request {
                    Ok(record) => bus.publish(Event::from_request(scenario, record)),
                    Err(broadcast::error::RecvError::Lagged(n)) => lagged(&bus, n, "requests"),
                    Err(broadcast::error::RecvError::Closed) => break,
                },
                script = cmdlets.recv() => match script {
                    Ok(script) => bus.publish(Event {
                        ts: crate::audit::timestamp(),
                        source: "cmdlet",
                        cmdlets: cmdlet_lines(&script),
                        detail: Some("applied".to_owned()),
                        ..Event::default()
                    }),
                    Err(broadcast::error::RecvError::Lagged(n)) => lagged(&bus, n, "cmdlet scripts"),
                    Err(broadcast::error::RecvError::Closed) => break,
                },
            }
        }
    });
}

/// Lines shown of an applied cmdlet script: at most 50, each at most 1,000 characters,
/// inert; what is left out is said, never dropped silently (red team).
fn cmdlet_lines(script: &str) -> Vec<String> {
    const LINES: usize = 50;
    const CHARS: usize = 1000;
    let lines: Vec<&str> = script
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    let mut shown: Vec<String> = lines
        .iter()
        .take(LINES)
        .map(|l| match l.chars().nth(CHARS) {
            None => inert(l),
            Some(_) => format!(
                "{}… ({} more characters not shown)",
                inert(&l.chars().take(CHARS).collect::<String>()),
                l.chars().count() - CHARS
            ),
        })
        .collect();
    if lines.len() > LINES {
        shown.push(format!("… ({} more lines not shown)", lines.len() - LINES));
    }
    shown
}

/// The console's parts: what it shows and acts on.
struct Console {
    scenario: Scenario,
    bus: Bus,
    shared: Arc<Shared>,
    secret: Secret,
    /// The path prefix, `/<secret>/`.
    prefix: String,
    /// The `Host` values this listener answers: `127.0.0.1:<port>`, `localhost:<port>`.
    hosts: [String; 2],
    /// Places for event streams ([`MAX_STREAMS`]).
    streams: Arc<tokio::sync::Semaphore>,
}

/// A started console.
pub struct Started {
    pub addr: SocketAddr,
    /// The page's URL, secret included: `http://127.0.0.1:<port>/<secret>/`.
    pub url: String,
}

/// Starts the console on 127.0.0.1:0 (`port` 0) or the given port, serving `shared`'s
/// policy and `bus`'s events under a new random secret.
pub async fn start(
    scenario: Scenario,
    bus: Bus,
    shared: Arc<Shared>,
    port: u16,
) -> anyhow::Result<Started> {
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
    let addr = listener.local_addr()?;
    let secret = super::random_hex(16);
    let url = format!("http://127.0.0.1:{}/{secret}/", addr.port());
    let console = Arc::new(Console {
        scenario,
        bus,
        shared,
        prefix: format!("/{secret}/"),
        secret: Secret::new(secret.as_bytes()),
        hosts: [
            format!("127.0.0.1:{}", addr.port()),
            format!("localhost:{}", addr.port()),
        ],
        streams: Arc::new(tokio::sync::Semaphore::new(MAX_STREAMS)),
    });
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    tokio::spawn(async move {
        loop {
            let stream = match listener.accept().await {
                Ok((stream, _)) => stream,
                // Out of descriptors, say: try again shortly rather than stop for good.
                Err(_) => {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            let Ok(permit) = slots.clone().try_acquire_owned() else {
                continue; // dropped: closed unanswered
            };
            let console = console.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |req| {
                    let console = console.clone();
                    async move { Ok::<_, Infallible>(console.route(req).await) }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .timer(hyper_util::rt::TokioTimer::new())
                    .header_read_timeout(HEAD_TIMEOUT)
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
                drop(permit);
            });
        }
    });
    Ok(Started { addr, url })
}

type ConsoleBody = BoxBody<Bytes, Infallible>;

fn full(body: impl Into<Bytes>) -> ConsoleBody {
    Full::new(body.into()).boxed()
}

/// A response with the console's security headers: nothing but this origin's own files
/// (no inline script), not framed, not cached, and no `Referer` carrying the secret.
fn respond(
    status: StatusCode,
    content_type: &'static str,
    body: ConsoleBody,
) -> Response<ConsoleBody> {
    let mut res = Response::new(body);
    *res.status_mut() = status;
    let headers = res.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
        ),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    res
}

/// 404, and the connection closed: whoever is not the console's page gets nothing to
/// keep open.
fn not_found() -> Response<ConsoleBody> {
    let mut res = respond(StatusCode::NOT_FOUND, "text/plain", full("not found\n"));
    res.headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    res
}

fn json(status: StatusCode, value: &impl Serialize) -> Response<ConsoleBody> {
    respond(
        status,
        "application/json",
        full(serde_json::to_vec(value).unwrap_or_default()),
    )
}

const PAGE: &str = include_str!("page.html");
const SCRIPT: &str = include_str!("console.js");
const STYLE: &str = include_str!("console.css");

/// A stage's cmdlets from the current state, for the panel and `rollout`.
#[derive(Serialize)]
struct StagePlan {
    stage: Stage,
    cmdlets: Vec<String>,
}

#[derive(Serialize)]
struct UserRow {
    upn: String,
    /// The policy assigned to the user (`Set-User -AuthenticationPolicy`).
    assigned: Option<String>,
    /// The policy that decides for them: theirs, else the organization default.
    effective: Option<String>,
    /// Whether the effective policy only reports.
    report_only: bool,
    /// What happens to their legacy authentication on Outlook's protocols, from the
    /// effective policy: `blocked: Mapi, …; allowed: …`, or `reported, not blocked: …`.
    legacy: String,
}

/// The protocols Outlook desktop uses, whose legacy authentication the article's policies
/// are about.
const OUTLOOK_SWITCHES: [crate::policy::Switch; 5] = [
    crate::policy::Switch::Autodiscover,
    crate::policy::Switch::Mapi,
    crate::policy::Switch::OfflineAddressBook,
    crate::policy::Switch::Rpc,
    crate::policy::Switch::WebServices,
];

/// [`UserRow::legacy`] for a user whose effective policy is `policy`.
fn legacy_outcome(
    deployment: crate::policy::Deployment,
    mode: crate::policy::Mode,
    policy: Option<&crate::policy::AuthenticationPolicy>,
) -> String {
    let Some(policy) = policy else {
        return "allowed everywhere (no policy)".to_owned();
    };
    let (blocked, allowed): (Vec<_>, Vec<_>) = OUTLOOK_SWITCHES
        .iter()
        .partition(|s| policy.blocks_legacy(deployment, **s));
    let names = |list: &[&crate::policy::Switch]| {
        list.iter()
            .map(|s| s.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    };
    let reported = policy.report_only || mode == crate::policy::Mode::ReportOnly;
    match (blocked.is_empty(), allowed.is_empty(), reported) {
        (true, _, _) => "allowed on Outlook's protocols".to_owned(),
        (false, true, false) => format!("blocked: {}", names(&blocked)),
        (false, false, false) => {
            format!("blocked: {}; allowed: {}", names(&blocked), names(&allowed))
        }
        (false, _, true) => format!("reported, not blocked (report-only): {}", names(&blocked)),
    }
}

#[derive(Serialize)]
struct State {
    scenario: Scenario,
    title: &'static str,
    deployment: &'static str,
    steps: [steps::ArticleStep; 8],
    /// `policy.mode`: `enforce` or `report-only`.
    mode: &'static str,
    /// `Get-AuthenticationPolicy`, as Exchange PowerShell prints it.
    policies: String,
    org_default: Option<String>,
    users: Vec<UserRow>,
    /// The rollout stage the policy is at, if exactly one.
    stage: Option<Stage>,
    /// When it is at none: what it is instead.
    stage_note: Option<&'static str>,
    stages: Vec<StagePlan>,
}

impl Console {
    async fn route(&self, req: Request<Incoming>) -> Response<ConsoleBody> {
        let host_ok = req
            .headers()
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .is_some_and(|h| self.hosts.iter().any(|ours| ours.eq_ignore_ascii_case(h)));
        let path = req.uri().path();
        let rest = match path.get(..self.prefix.len()) {
            Some(prefix)
                if host_ok
                    && prefix.starts_with('/')
                    && prefix.ends_with('/')
                    && Secret::new(&prefix.as_bytes()[1..prefix.len() - 1]) == self.secret =>
            {
                path[self.prefix.len()..].to_owned()
            }
            _ => return not_found(),
        };
        match (req.method(), rest.as_str()) {
            (&Method::GET, "" | "index.html") => {
                respond(StatusCode::OK, "text/html; charset=utf-8", full(PAGE))
            }
            (&Method::GET, "console.js") => respond(
                StatusCode::OK,
                "text/javascript; charset=utf-8",
                full(SCRIPT),
            ),
            (&Method::GET, "console.css") => {
                respond(StatusCode::OK, "text/css; charset=utf-8", full(STYLE))
            }
            (&Method::GET, "state") => json(StatusCode::OK, &self.state()),
            (&Method::GET, "events") => self.events(&req),
            (&Method::POST, "rollout") => self.rollout(req).await,
            _ => not_found(),
        }
    }

    fn state(&self) -> State {
        let snapshot = self.shared.snapshot.load_full();
        let engine = &snapshot.engine;
        let store = engine.store();
        let directory = engine.directory();
        // Policy names are the admin's, shown inert (a U+202E could make one read as
        // another).
        let name = |id| inert(&store.policy(id).name);
        let deployment = engine.settings().deployment;
        let users = (0..directory.len())
            .map(|i| {
                let id = crate::policy::UserId(u32::try_from(i).unwrap_or(u32::MAX));
                let effective = store.effective(Some(id));
                UserRow {
                    upn: inert(&directory.user(id).upn),
                    assigned: store.user_policy(id).map(name),
                    effective: effective.map(name),
                    report_only: effective.is_some_and(|p| store.policy(p).report_only),
                    legacy: legacy_outcome(
                        deployment,
                        engine.settings().mode,
                        effective.map(|p| store.policy(p)),
                    ),
                }
            })
            .collect();
        let rollout = RolloutState::of(engine);
        State {
            scenario: self.scenario,
            title: self.scenario.title(),
            deployment: deployment.as_str(),
            steps: steps::steps(self.scenario),
            mode: match engine.settings().mode {
                crate::policy::Mode::Enforce => "enforce",
                crate::policy::Mode::ReportOnly => "report-only",
            },
            policies: inert(
                &engine
                    .run_script("Get-AuthenticationPolicy")
                    .map(|a| a.output.join("\n"))
                    .unwrap_or_default(),
            ),
            org_default: store.org_default().map(name),
            users,
            stage: rollout.stage(),
            stage_note: rollout.note(),
            stages: Stage::ALL
                .into_iter()
                .map(|stage| StagePlan {
                    stage,
                    cmdlets: rollout::cmdlets(deployment, &rollout, stage),
                })
                .collect(),
        }
    }

    /// `GET events`: Server-Sent Events (HTML Living Standard §9.2), the kept events after
    /// `Last-Event-ID`, then live ones, with a comment line when idle.
    fn events(&self, req: &Request<Incoming>) -> Response<ConsoleBody> {
        // The browser's reconnection says where it was in `Last-Event-ID`; a stream the
        // page opens anew, in `?after=`.
        let after = req
            .headers()
            .get("last-event-id")
            .and_then(|v| v.to_str().ok())
            .or_else(|| req.uri().query()?.strip_prefix("after="))
            .and_then(|v| v.trim().parse::<u64>().ok())
            .unwrap_or(0);
        let Ok(slot) = self.streams.clone().try_acquire_owned() else {
            let mut res = respond(
                StatusCode::SERVICE_UNAVAILABLE,
                "text/plain",
                full("too many console pages open\n"),
            );
            res.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
            return res;
        };
        let (past, live) = self.bus.subscribe(after);
        let mut opening = String::from("retry: 1000\n\n");
        for p in &past {
            opening.push_str(&format!("id: {}\ndata: {}\n\n", p.id, p.json));
        }
        struct Stream {
            opening: Option<String>,
            live: broadcast::Receiver<Arc<Published>>,
            /// Held while the stream lasts.
            _slot: tokio::sync::OwnedSemaphorePermit,
        }
        let stream = futures_util::stream::unfold(
            Stream {
                opening: Some(opening),
                live,
                _slot: slot,
            },
            |mut s| async move {
                if let Some(opening) = s.opening.take() {
                    return Some((Ok(Frame::data(Bytes::from(opening))), s));
                }
                let text = match tokio::time::timeout(KEEP_ALIVE, s.live.recv()).await {
                    Err(_) => ": keep-alive\n\n".to_owned(),
                    Ok(Ok(p)) => format!("id: {}\ndata: {}\n\n", p.id, p.json),
                    Ok(Err(broadcast::error::RecvError::Lagged(n))) => {
                        format!("event: lagged\ndata: {n}\n\n")
                    }
                    Ok(Err(broadcast::error::RecvError::Closed)) => return None,
                };
                Some((Ok::<_, Infallible>(Frame::data(Bytes::from(text))), s))
            },
        );
        respond(
            StatusCode::OK,
            "text/event-stream",
            StreamBody::new(stream).boxed(),
        )
    }

    /// `POST rollout`: applies the chosen stage's cmdlets, all or nothing.
    async fn rollout(&self, req: Request<Incoming>) -> Response<ConsoleBody> {
        let is_json = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| {
                v.split(';')
                    .next()
                    .is_some_and(|t| t.trim() == "application/json")
            });
        if !is_json {
            return json(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                &serde_json::json!({"error": "send {\"stage\": …} as application/json"}),
            );
        }
        let body = Limited::new(req.into_body(), 4096).collect();
        let body = match tokio::time::timeout(HEAD_TIMEOUT, body).await {
            Ok(Ok(body)) => body.to_bytes(),
            Err(_) => {
                return json(
                    StatusCode::REQUEST_TIMEOUT,
                    &serde_json::json!({"error": "the body did not arrive"}),
                );
            }
            Ok(Err(_)) => {
                return json(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    &serde_json::json!({"error": "too large"}),
                );
            }
        };
        let stage = serde_json::from_slice::<serde_json::Value>(&body)
            .ok()
            .and_then(|v| v.get("stage")?.as_str().and_then(Stage::parse));
        let Some(stage) = stage else {
            return json(
                StatusCode::BAD_REQUEST,
                &serde_json::json!({"error": "stage must be report-only, pilot or organization"}),
            );
        };
        let snapshot = self.shared.snapshot.load_full();
        let deployment = snapshot.engine.settings().deployment;
        let cmdlets = rollout::cmdlets(deployment, &RolloutState::of(&snapshot.engine), stage);
        let (status, output) = match cmdlets.is_empty() {
            true => (StatusCode::OK, Ok(String::new())),
            false => match self.shared.apply_cmdlets(&cmdlets.join("\n")) {
                Ok(output) => (StatusCode::OK, Ok(output.join("\n"))),
                Err(e) => (StatusCode::CONFLICT, Err(e.to_string())),
            },
        };
        // What was applied reaches the pages as a `cmdlet` event, as `exgate cmdlet`'s does.
        json(
            status,
            &serde_json::json!({
                "stage": stage,
                "cmdlets": cmdlets,
                "applied": output.is_ok(),
                "error": output.err(),
                "state": self.state(),
            }),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::{MAX_FIELD_CHARS, cmdlet_lines, inert, shown};

    #[test]
    fn what_the_console_shows_cannot_reorder_hide_or_grow() {
        // Bidirectional controls and control characters; a cell keeps no line feed.
        assert_eq!(
            shown("a\u{202E}b\u{2066}c\u{7}d\ne"),
            "a\u{FFFD}b\u{FFFD}c\u{FFFD}d\u{FFFD}e"
        );
        assert_eq!(inert("line one\nline two"), "line one\nline two");
        // Two combining marks stay on their letter; the rest of the run is one U+FFFD.
        let stacked = format!("e{}x", "\u{0301}".repeat(125) + &"\u{0316}".repeat(125));
        assert_eq!(inert(&stacked), "e\u{0301}\u{0301}\u{FFFD}x");
        assert_eq!(inert("Zoë, José"), "Zoë, José");
        // Cut, and said so.
        let long = "a".repeat(MAX_FIELD_CHARS + 10);
        assert_eq!(shown(&long).chars().count(), MAX_FIELD_CHARS + 1);
        assert!(shown(&long).ends_with('…'));
        assert_eq!(
            shown(&"a".repeat(MAX_FIELD_CHARS)),
            "a".repeat(MAX_FIELD_CHARS)
        );
    }

    #[test]
    fn applied_cmdlets_are_shown_whole_or_said_cut() {
        let script = format!(
            "Set-User user01 -AuthenticationPolicy $null\n\n  {}{} -ReportOnly\n{}",
            "Set-AuthenticationPolicy P -AllowBasicAuthImap:$false",
            " ".repeat(1000),
            "Get-AuthenticationPolicy\n".repeat(60)
        );
        let lines = cmdlet_lines(&script);
        assert_eq!(lines[0], "Set-User user01 -AuthenticationPolicy $null");
        assert!(
            lines[1].ends_with("more characters not shown)"),
            "{}",
            lines[1]
        );
        assert_eq!(lines.len(), 51);
        assert_eq!(lines[50], "… (12 more lines not shown)");
    }
}
