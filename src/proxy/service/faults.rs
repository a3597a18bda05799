//! What the client did wrong (SPEC §6): framing refused before any decision, and bodies
//! that fail on the way to Exchange. Both are the client's fault, answered 400, 405, 408
//! or 431, counted in `exgate_client_errors_total`, never as an upstream error.

use hyper::body::Incoming;
use hyper::header::{self, HeaderValue};
use hyper::{Request, Response};

use super::{Connection, Names, Outcome};
use crate::policy::{Action, Decision, Protocol, Reason};
use crate::proxy::Snapshot;
use crate::proxy::framing::{self, ClientFault};
use crate::proxy::head_guard::HeadVerdict;
use crate::proxy::respond::{self, ProxyBody, Refusal};

impl Connection {
    /// Phase: SPEC §6's strictness table, on the raw head (the guard's verdict) and the
    /// parsed one. A request whose raw head the guard did not see is refused: exgate
    /// does not vouch for framing it could not follow. Returns the verdict.
    pub(super) fn check_framing(
        &self,
        req: &Request<Incoming>,
    ) -> Result<HeadVerdict, ClientFault> {
        let raw = self
            .client
            .verdicts
            .take()
            .ok_or(ClientFault::UnfollowedFraming)?;
        framing::check_head(
            &raw,
            self.client.max_header_bytes,
            req.method(),
            req.uri().authority().map(|a| a.as_str()),
            req.version(),
            req.headers().get(header::HOST).map(HeaderValue::as_bytes),
            (req.headers().get_all(header::CONNECTION).iter()).map(HeaderValue::as_bytes),
        )?;
        Ok(raw)
    }

    /// Answers a request refused as the client's fault before any decision: counted as
    /// a client error, decided `reject`, and the client connection closed (its framing
    /// cannot be trusted).
    pub(super) fn client_fault(
        &self,
        snapshot: &Snapshot,
        fault: ClientFault,
    ) -> (Response<ProxyBody>, Outcome) {
        self.client
            .shared
            .metrics
            .record_client_error(fault.as_str());
        let decision = Decision {
            action: Action::Reject,
            reason: Reason::BadRequest,
            protocol: Protocol::Other,
            scheme: crate::auth::Scheme::None,
            policy: None,
            legacy: false,
            user: None,
            connection: false,
        };
        self.client.shared.metrics.record(&decision);
        let mut res = respond::refusal(Refusal::Client(fault), &snapshot.bearer);
        respond::close_connection(&mut res);
        let outcome = Outcome {
            decision,
            names: Names::default(),
            credentials: false,
            upstream_status: None,
        };
        (res, outcome)
    }

    /// Answers a request whose body failed (malformed chunked coding, stalled, aborted):
    /// the client's fault, never the upstream's. The upstream connection, which may hold
    /// part of the request, is closed; so is the client's.
    pub(super) async fn body_fault(
        &self,
        snapshot: &Snapshot,
        fault: ClientFault,
        pin: bool,
        outcome: Outcome,
    ) -> (Response<ProxyBody>, Outcome) {
        self.client
            .shared
            .metrics
            .record_client_error(fault.as_str());
        let mut auth = self.auth.lock().await;
        auth.upstream = None;
        if pin {
            auth.forget();
        }
        drop(auth);
        let mut res = respond::refusal(Refusal::Client(fault), &snapshot.bearer);
        respond::close_connection(&mut res);
        (res, outcome)
    }
}
