//! Prometheus metrics (SPEC §8). Label values come only from the engine's enums; never
//! a user, an address or a token. Counters for each label combination are resolved on
//! first use and cached, so recording a request takes no lock and no hashing.
//!
//! Every counter with one enum label exists from the start at 0 for each of its values,
//! so `increase()` sees its first event (a series that appears at 1 has not increased).
//! The per-request series, `exgate_requests_total`, `exgate_legacy_auth_attempts_total`
//! and `exgate_request_duration_seconds`, appear with the first request of each
//! combination instead: their cross products (12 protocols × 9 schemes × 5 decisions, and
//! a 16-bucket histogram per protocol and decision) would be some 2,000 series, most of
//! them impossible, and the rules over them (`deploy/prometheus`) compare sums of rates,
//! which do not need the first request.

use std::sync::OnceLock;

use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};

use crate::auth::Scheme;
use crate::policy::{Action, Decision, Protocol};

/// `exgate_requests_total{protocol,scheme,decision}`.
pub const REQUESTS_TOTAL: &str = "exgate_requests_total";
/// `exgate_legacy_auth_attempts_total{protocol,scheme,action}`.
pub const LEGACY_AUTH_ATTEMPTS_TOTAL: &str = "exgate_legacy_auth_attempts_total";
/// `exgate_token_validations_total{result}`.
pub const TOKEN_VALIDATIONS_TOTAL: &str = "exgate_token_validations_total";
/// `exgate_jwks_refreshes_total{result}`.
pub const JWKS_REFRESHES_TOTAL: &str = "exgate_jwks_refreshes_total";
/// `exgate_config_reloads_total{result}`.
pub const CONFIG_RELOADS_TOTAL: &str = "exgate_config_reloads_total";
/// `exgate_request_duration_seconds{protocol,decision}`: until the response head.
pub const REQUEST_DURATION_SECONDS: &str = "exgate_request_duration_seconds";
/// `exgate_upstream_requests_total{status_class}`.
pub const UPSTREAM_REQUESTS_TOTAL: &str = "exgate_upstream_requests_total";
/// `exgate_upstream_errors_total{reason}`.
pub const UPSTREAM_ERRORS_TOTAL: &str = "exgate_upstream_errors_total";
/// `exgate_client_errors_total{reason}`: requests refused as the client's fault
/// (framing, stalled or aborted bodies, oversized heads, refused methods).
pub const CLIENT_ERRORS_TOTAL: &str = "exgate_client_errors_total";
/// `exgate_overload_total{reason}`: connections and requests refused because exgate
/// itself ran out of room (`max_connections`, `file_descriptors`), never an upstream's
/// fault (SPEC §7 "Limits").
pub const OVERLOAD_TOTAL: &str = "exgate_overload_total";
/// `exgate_kerberos_tickets_total{outcome}`: Kerberos tickets read with the keytab
/// (`decrypted`, `cached`) or not (`malformed`, `no_key`, `integrity`, `unusual_name`,
/// `expired`).
pub const KERBEROS_TICKETS_TOTAL: &str = "exgate_kerberos_tickets_total";
/// `exgate_client_connections`: client connections open now.
pub const CLIENT_CONNECTIONS: &str = "exgate_client_connections";
/// `exgate_client_connections_limit`: `server.max_connections` as in effect.
pub const CLIENT_CONNECTIONS_LIMIT: &str = "exgate_client_connections_limit";
/// `exgate_upstream_healthy{server}`: 1 while the server passes every active health
/// check, 0 otherwise (the label is the configured address, a bounded set).
pub const UPSTREAM_HEALTHY: &str = "exgate_upstream_healthy";
/// `exgate_lockouts_total{location}`.
pub const LOCKOUTS_TOTAL: &str = "exgate_lockouts_total";
/// `exgate_spray_suspects_total`.
pub const SPRAY_SUSPECTS_TOTAL: &str = "exgate_spray_suspects_total";
/// `exgate_quick_refusals_total`: refusals answered before hyper read the request
/// (blocked Basic on an idle keep-alive connection, `proxy::service::quick`); each is
/// also counted in `exgate_requests_total` like any other.
pub const QUICK_REFUSALS_TOTAL: &str = "exgate_quick_refusals_total";
/// `exgate_audit_lines_dropped_total`: audit lines lost because the writer fell behind.
pub const AUDIT_LINES_DROPPED_TOTAL: &str = "exgate_audit_lines_dropped_total";
/// `exgate_cluster_errors_total{op}`: Redis operations of `[cluster]` that failed or
/// timed out; the instance went on with its local state (SPEC §9.1).
pub const CLUSTER_ERRORS_TOTAL: &str = "exgate_cluster_errors_total";
/// `exgate_cluster_policy_version`: the length of the fleet's policy log this instance
/// has applied (equal on every instance once converged).
pub const CLUSTER_POLICY_VERSION: &str = "exgate_cluster_policy_version";

/// The `op` values of `exgate_cluster_errors_total`: the lockout and spray check before
/// forwarding, recording a bad or a good password, reading and appending the policy
/// log, and the account cmdlets.
pub const CLUSTER_OPS: [&str; 6] = [
    "protect",
    "bad_password",
    "good_password",
    "policy_sync",
    "policy_append",
    "account",
];

/// Latency buckets, 0.5 ms to 60 s (RPC and MAPI answer slowly by design).
const DURATION_BUCKETS: [f64; 16] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
    60.0,
];

const PROTOCOLS: usize = Protocol::ALL.len();
const SCHEMES: usize = Scheme::ALL.len();
const ACTIONS: usize = Action::ALL.len();

/// The `result` values of `exgate_token_validations_total` for refused tokens: the
/// labels of `token::TokenError` (whose tests check that the two agree), kept here so
/// that metrics depend on no module that records them.
pub const TOKEN_ERRORS: [&str; 10] = [
    "malformed",
    "bad_algorithm",
    "bad_issuer",
    "bad_tenant",
    "unknown_key",
    "bad_signature",
    "expired",
    "not_yet_valid",
    "bad_audience",
    "no_keys",
];

/// The `reason` values of `exgate_client_errors_total`: the labels of
/// `proxy::ClientFault` (whose tests check that the two agree).
pub const CLIENT_ERROR_REASONS: [&str; 15] = [
    "method_not_allowed",
    "missing_host",
    "duplicate_host",
    "host_mismatch",
    "content_length_with_transfer_encoding",
    "duplicate_content_length",
    "bare_lf",
    "head_too_large",
    "body_framing",
    "body_stalled",
    "body_aborted",
    "connection_names_end_to_end",
    "malformed_head",
    "unfollowed_framing",
    "response_unread",
];

/// The process's metrics and the registry they are exposed from.
pub struct Metrics {
    registry: Registry,
    requests: IntCounterVec,
    legacy: IntCounterVec,
    reloads: IntCounterVec,
    jwks_refreshes: IntCounterVec,
    duration: HistogramVec,
    duration_cells: Vec<OnceLock<Histogram>>,
    upstream_requests: Vec<IntCounter>,
    upstream_errors: IntCounterVec,
    client_errors: IntCounterVec,
    overload: IntCounterVec,
    kerberos_tickets: IntCounterVec,
    cluster_errors: IntCounterVec,
    /// `exgate_cluster_policy_version`.
    pub cluster_policy_version: IntGauge,
    /// `exgate_client_connections`.
    pub client_connections: IntGauge,
    /// `exgate_client_connections_limit`.
    pub client_connections_limit: IntGauge,
    upstream_healthy: IntGaugeVec,
    lockouts: IntCounterVec,
    spray_suspects: IntCounter,
    quick_refusals: IntCounter,
    audit_dropped: IntCounter,
    /// One counter per token-validation result, created up front.
    token_results: Vec<(&'static str, IntCounter)>,
    requests_cells: Vec<OnceLock<IntCounter>>,
    legacy_cells: Vec<OnceLock<IntCounter>>,
}

impl Metrics {
    /// Creates the metrics and registers them in a registry of their own.
    pub fn new() -> Metrics {
        let registry = Registry::new();
        let requests = IntCounterVec::new(
            Opts::new(
                REQUESTS_TOTAL,
                "Requests decided, by protocol, scheme and decision.",
            ),
            &["protocol", "scheme", "decision"],
        )
        .expect("valid metric");
        let legacy = IntCounterVec::new(
            Opts::new(
                LEGACY_AUTH_ATTEMPTS_TOTAL,
                "Legacy authentication attempts, by protocol, scheme and what exgate did.",
            ),
            &["protocol", "scheme", "action"],
        )
        .expect("valid metric");
        let reloads = IntCounterVec::new(
            Opts::new(CONFIG_RELOADS_TOTAL, "Configuration reloads, by result."),
            &["result"],
        )
        .expect("valid metric");
        let tokens = IntCounterVec::new(
            Opts::new(
                TOKEN_VALIDATIONS_TOTAL,
                "Bearer-token validations, by result.",
            ),
            &["result"],
        )
        .expect("valid metric");
        let jwks_refreshes = IntCounterVec::new(
            Opts::new(JWKS_REFRESHES_TOTAL, "Signing-key fetches, by result."),
            &["result"],
        )
        .expect("valid metric");
        let token_results = ["valid", "cached"]
            .into_iter()
            .chain(TOKEN_ERRORS)
            .map(|label| (label, tokens.with_label_values(&[label])))
            .collect();
        let duration = HistogramVec::new(
            HistogramOpts::new(
                REQUEST_DURATION_SECONDS,
                "Time from request head to response head, by protocol and decision.",
            )
            .buckets(DURATION_BUCKETS.to_vec()),
            &["protocol", "decision"],
        )
        .expect("valid metric");
        let counter_vec = |name: &str, help: &str, label: &str| {
            IntCounterVec::new(Opts::new(name, help), &[label]).expect("valid metric")
        };
        let upstream_requests_vec = counter_vec(
            UPSTREAM_REQUESTS_TOTAL,
            "Upstream responses, by status class.",
            "status_class",
        );
        let upstream_errors = counter_vec(
            UPSTREAM_ERRORS_TOTAL,
            "Requests that could not be forwarded, by reason.",
            "reason",
        );
        let client_errors = counter_vec(
            CLIENT_ERRORS_TOTAL,
            "Requests refused as the client's fault (never an upstream error), by reason.",
            "reason",
        );
        for reason in CLIENT_ERROR_REASONS {
            client_errors.with_label_values(&[reason]);
        }
        let overload = counter_vec(
            OVERLOAD_TOTAL,
            "Connections and requests refused because exgate itself was out of room, by reason.",
            "reason",
        );
        for reason in ["max_connections", "file_descriptors"] {
            overload.with_label_values(&[reason]);
        }
        // Every series whose label values are a known enum exists from the start at 0:
        // `increase()` cannot see a series that appears at 1, so an alert on the first
        // lockout, upstream error or failed key refresh would never fire (issue 14).
        for result in ["success", "failure"] {
            reloads.with_label_values(&[result]);
            jwks_refreshes.with_label_values(&[result]);
        }
        for reason in ["unreachable", "no_server", "response_timeout"] {
            upstream_errors.with_label_values(&[reason]);
        }
        let kerberos_tickets = counter_vec(
            KERBEROS_TICKETS_TOTAL,
            "Kerberos tickets read with the keytab, or why not, by outcome.",
            "outcome",
        );
        for outcome in [
            "decrypted",
            "cached",
            "malformed",
            "no_key",
            "integrity",
            "unusual_name",
            "expired",
        ] {
            kerberos_tickets.with_label_values(&[outcome]);
        }
        let cluster_errors = counter_vec(
            CLUSTER_ERRORS_TOTAL,
            "Redis operations of [cluster] that failed or timed out (local state used), by operation.",
            "op",
        );
        for op in CLUSTER_OPS {
            cluster_errors.with_label_values(&[op]);
        }
        let cluster_policy_version = IntGauge::new(
            CLUSTER_POLICY_VERSION,
            "Entries of the fleet's policy log applied by this instance ([cluster]).",
        )
        .expect("valid metric");
        let client_connections =
            IntGauge::new(CLIENT_CONNECTIONS, "Client connections open now.").expect("valid");
        let client_connections_limit = IntGauge::new(
            CLIENT_CONNECTIONS_LIMIT,
            "Client connections served at once at most (server.max_connections).",
        )
        .expect("valid metric");
        let upstream_healthy = IntGaugeVec::new(
            Opts::new(
                UPSTREAM_HEALTHY,
                "1 while the upstream server passes its active health checks, else 0.",
            ),
            &["server"],
        )
        .expect("valid metric");
        let lockouts = counter_vec(
            LOCKOUTS_TOTAL,
            "Smart lockouts engaged, by location (familiar or unknown).",
            "location",
        );
        for location in ["familiar", "unknown"] {
            lockouts.with_label_values(&[location]);
        }
        let spray_suspects = IntCounter::new(
            SPRAY_SUSPECTS_TOTAL,
            "Client addresses flagged for password spray through legacy protocols.",
        )
        .expect("valid metric");
        let quick_refusals = IntCounter::new(
            QUICK_REFUSALS_TOTAL,
            "Refusals answered before hyper read the request (also in exgate_requests_total).",
        )
        .expect("valid metric");
        let audit_dropped = IntCounter::new(
            AUDIT_LINES_DROPPED_TOTAL,
            "Audit lines dropped because the audit writer fell behind.",
        )
        .expect("valid metric");
        for m in [
            &requests,
            &legacy,
            &reloads,
            &tokens,
            &jwks_refreshes,
            &upstream_requests_vec,
            &upstream_errors,
            &client_errors,
            &overload,
            &kerberos_tickets,
            &cluster_errors,
            &lockouts,
        ] {
            registry
                .register(Box::new(m.clone()))
                .expect("metric names are unique");
        }
        registry
            .register(Box::new(duration.clone()))
            .expect("metric names are unique");
        for c in [&spray_suspects, &quick_refusals, &audit_dropped] {
            registry
                .register(Box::new(c.clone()))
                .expect("metric names are unique");
        }
        for g in [
            &client_connections,
            &client_connections_limit,
            &cluster_policy_version,
        ] {
            registry
                .register(Box::new(g.clone()))
                .expect("metric names are unique");
        }
        registry
            .register(Box::new(upstream_healthy.clone()))
            .expect("metric names are unique");
        let upstream_requests = ["1xx", "2xx", "3xx", "4xx", "5xx"]
            .map(|class| upstream_requests_vec.with_label_values(&[class]))
            .to_vec();
        Metrics {
            registry,
            requests,
            legacy,
            reloads,
            jwks_refreshes,
            duration,
            duration_cells: (0..PROTOCOLS * ACTIONS).map(|_| OnceLock::new()).collect(),
            upstream_requests,
            upstream_errors,
            client_errors,
            overload,
            kerberos_tickets,
            cluster_errors,
            cluster_policy_version,
            client_connections,
            client_connections_limit,
            upstream_healthy,
            lockouts,
            spray_suspects,
            quick_refusals,
            audit_dropped,
            token_results,
            requests_cells: (0..PROTOCOLS * SCHEMES * ACTIONS)
                .map(|_| OnceLock::new())
                .collect(),
            legacy_cells: (0..PROTOCOLS * SCHEMES * 3)
                .map(|_| OnceLock::new())
                .collect(),
        }
    }

    /// Counts one decided request.
    pub fn record(&self, d: &Decision) {
        let (p, s) = (d.protocol.index(), scheme_index(d.scheme));
        let a = action_index(d.action);
        let labels = [d.protocol.as_str(), d.scheme.as_str(), d.action.as_str()];
        self.requests_cells[(p * SCHEMES + s) * ACTIONS + a]
            .get_or_init(|| self.requests.with_label_values(&labels))
            .inc();
        if d.legacy {
            let (i, action) = match d.action {
                Action::Allow => (0, "allowed"),
                Action::ReportOnly => (1, "report_only"),
                _ => (2, "blocked"),
            };
            let labels = [d.protocol.as_str(), d.scheme.as_str(), action];
            self.legacy_cells[(p * SCHEMES + s) * 3 + i]
                .get_or_init(|| self.legacy.with_label_values(&labels))
                .inc();
        }
    }

    /// Counts a configuration reload.
    pub fn record_reload(&self, ok: bool) {
        let result = if ok { "success" } else { "failure" };
        self.reloads.with_label_values(&[result]).inc();
    }

    /// Counts a bearer-token validation by result (`valid`, `cached`, or an error label).
    pub fn record_token_validation(&self, result: &str) {
        if let Some((_, c)) = self.token_results.iter().find(|(l, _)| *l == result) {
            c.inc();
        }
    }

    /// Counts a signing-key fetch.
    pub fn record_jwks_refresh(&self, ok: bool) {
        let result = if ok { "success" } else { "failure" };
        self.jwks_refreshes.with_label_values(&[result]).inc();
    }

    /// Observes how long a request took until its response head.
    pub fn record_duration(&self, protocol: Protocol, action: Action, seconds: f64) {
        let cell = protocol.index() * ACTIONS + action_index(action);
        self.duration_cells[cell]
            .get_or_init(|| {
                self.duration
                    .with_label_values(&[protocol.as_str(), action.as_str()])
            })
            .observe(seconds);
    }

    /// Counts an upstream response by status class.
    pub fn record_upstream_status(&self, status: u16) {
        let class = usize::from(status / 100).clamp(1, 5) - 1;
        self.upstream_requests[class].inc();
    }

    /// Counts a request that could not be forwarded (`unreachable`, `no_server`,
    /// `response_timeout`).
    pub fn record_upstream_error(&self, reason: &'static str) {
        self.upstream_errors.with_label_values(&[reason]).inc();
    }

    /// Counts a request refused as the client's fault.
    pub fn record_client_error(&self, reason: &'static str) {
        self.client_errors.with_label_values(&[reason]).inc();
    }

    /// Counts a connection or request refused because exgate was out of room
    /// (`max_connections`, `file_descriptors`).
    pub fn record_overload(&self, reason: &'static str) {
        self.overload.with_label_values(&[reason]).inc();
    }

    /// Counts a Kerberos ticket the keytab stage read (`decrypted`, `cached`) or could not
    /// (`malformed`, `no_key`, `integrity`, `unusual_name`, `expired`).
    pub fn record_kerberos_ticket(&self, outcome: &'static str) {
        self.kerberos_tickets.with_label_values(&[outcome]).inc();
    }

    /// Sets `exgate_upstream_healthy{server}` (the configured address).
    pub fn set_upstream_healthy(&self, server: &str, healthy: bool) {
        self.upstream_healthy
            .with_label_values(&[server])
            .set(i64::from(healthy));
    }

    /// Counts a lockout that engaged (`familiar` or `unknown`).
    pub fn record_lockout(&self, location: &'static str) {
        self.lockouts.with_label_values(&[location]).inc();
    }

    /// Counts a `[cluster]` Redis operation that failed or timed out (`op` is one of
    /// [`CLUSTER_OPS`]).
    pub fn record_cluster_error(&self, op: &'static str) {
        self.cluster_errors.with_label_values(&[op]).inc();
    }

    /// Counts a client address flagged for spray.
    pub fn record_spray_suspect(&self) {
        self.spray_suspects.inc();
    }

    /// Counts a refusal answered before hyper read the request.
    pub fn record_quick_refusal(&self) {
        self.quick_refusals.inc();
    }

    /// Counts an audit line the writer could not take.
    pub fn record_audit_dropped(&self) {
        self.audit_dropped.inc();
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let mut out = Vec::new();
        TextEncoder::new()
            .encode(&self.registry.gather(), &mut out)
            .expect("encoding to a Vec cannot fail");
        String::from_utf8(out).expect("the text format is UTF-8")
    }
}

impl Default for Metrics {
    fn default() -> Metrics {
        Metrics::new()
    }
}

fn scheme_index(s: Scheme) -> usize {
    Scheme::ALL
        .iter()
        .position(|x| *x == s)
        .expect("every scheme is in ALL")
}

fn action_index(a: Action) -> usize {
    Action::ALL
        .iter()
        .position(|x| *x == a)
        .expect("every action is in ALL")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::Reason;

    fn decision(action: Action, legacy: bool) -> Decision {
        Decision {
            action,
            reason: Reason::LegacyBlocked,
            protocol: Protocol::Mapi,
            scheme: Scheme::Basic,
            policy: None,
            legacy,
            user: None,
            connection: false,
        }
    }

    #[test]
    fn requests_and_legacy_attempts_are_counted_with_enum_labels() {
        let m = Metrics::new();
        m.record(&decision(Action::Block, true));
        m.record(&decision(Action::Block, true));
        m.record(&decision(Action::ReportOnly, true));
        m.record(&decision(Action::Allow, false));
        let text = m.render();
        assert!(text.contains(
            r#"exgate_requests_total{decision="block",protocol="Mapi",scheme="basic"} 2"#
        ));
        assert!(text.contains(
            r#"exgate_legacy_auth_attempts_total{action="blocked",protocol="Mapi",scheme="basic"} 2"#
        ));
        assert!(text.contains(
            r#"exgate_legacy_auth_attempts_total{action="report_only",protocol="Mapi",scheme="basic"} 1"#
        ));
        assert!(!text.contains(r#"action="allowed""#));
    }

    #[test]
    fn enum_labelled_counters_exist_from_the_start_at_zero() {
        let text = Metrics::new().render();
        for series in [
            r#"exgate_config_reloads_total{result="success"} 0"#,
            r#"exgate_config_reloads_total{result="failure"} 0"#,
            r#"exgate_jwks_refreshes_total{result="failure"} 0"#,
            r#"exgate_upstream_errors_total{reason="unreachable"} 0"#,
            r#"exgate_upstream_errors_total{reason="no_server"} 0"#,
            r#"exgate_upstream_errors_total{reason="response_timeout"} 0"#,
            r#"exgate_lockouts_total{location="familiar"} 0"#,
            r#"exgate_lockouts_total{location="unknown"} 0"#,
            r#"exgate_kerberos_tickets_total{outcome="integrity"} 0"#,
            r#"exgate_jwks_refreshes_total{result="success"} 0"#,
            r#"exgate_overload_total{reason="max_connections"} 0"#,
            r#"exgate_overload_total{reason="file_descriptors"} 0"#,
            r#"exgate_upstream_requests_total{status_class="5xx"} 0"#,
            r#"exgate_token_validations_total{result="bad_signature"} 0"#,
            "exgate_spray_suspects_total 0",
            "exgate_quick_refusals_total 0",
            "exgate_audit_lines_dropped_total 0",
        ] {
            assert!(text.contains(series), "{series} missing:\n{text}");
        }
        let counters = |name: &str| {
            text.lines()
                .filter(|l| l.starts_with(name) && l[name.len()..].starts_with('{'))
                .count()
        };
        assert_eq!(counters(KERBEROS_TICKETS_TOTAL), 7);
        assert_eq!(counters(CLIENT_ERRORS_TOTAL), CLIENT_ERROR_REASONS.len());
        assert_eq!(counters(TOKEN_VALIDATIONS_TOTAL), 2 + TOKEN_ERRORS.len());
        // The per-request series appear with their first request (see the module doc).
        for name in [
            REQUESTS_TOTAL,
            LEGACY_AUTH_ATTEMPTS_TOTAL,
            REQUEST_DURATION_SECONDS,
        ] {
            assert!(
                !text.lines().any(|l| l.starts_with(name)),
                "{name}:\n{text}"
            );
        }
    }

    #[test]
    fn reloads_are_counted_by_result() {
        let m = Metrics::new();
        m.record_reload(false);
        assert!(
            m.render()
                .contains(r#"exgate_config_reloads_total{result="failure"} 1"#)
        );
    }
}
