//! Every answer exgate gives itself, built in this one place (SPEC §6).

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Full, combinators::BoxBody};
use hyper::header::{self, HeaderValue};
use hyper::{Response, StatusCode};

use crate::policy::{Action, Decision, Reason};

/// The error type of proxied bodies: hyper's, or an idle timeout.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The body type of everything exgate sends either way: upstream and client bodies
/// stream through it.
pub type ProxyBody = BoxBody<Bytes, BoxError>;

/// Why exgate answers a request itself.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// The engine blocked, challenged or rejected the request.
    Decided(Decision),
    /// An upstream server was chosen but could not be reached or failed mid-request.
    UpstreamUnreachable,
    /// No upstream server is available (all ejected).
    NoUpstream,
}

/// An empty body.
pub fn empty() -> ProxyBody {
    Empty::<Bytes>::new()
        .map_err(|never| match never {})
        .boxed()
}

fn text(status: StatusCode, body: &'static str) -> Response<ProxyBody> {
    let mut res = Response::new(
        Full::new(Bytes::from_static(body.as_bytes()))
            .map_err(|never| match never {})
            .boxed(),
    );
    *res.status_mut() = status;
    res.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    res
}

fn challenge(bearer: &HeaderValue) -> Response<ProxyBody> {
    let mut res = Response::new(empty());
    *res.status_mut() = StatusCode::UNAUTHORIZED;
    res.headers_mut()
        .insert(header::WWW_AUTHENTICATE, bearer.clone());
    res.headers_mut()
        .insert(header::CONTENT_LENGTH, HeaderValue::from_static("0"));
    res
}

/// The response for a refusal. A blocked request gets the Bearer challenge and nothing
/// else: no legacy challenge, no body, no hint of why (as Exchange answers).
pub fn refusal(r: Refusal, bearer: &HeaderValue) -> Response<ProxyBody> {
    match r {
        Refusal::Decided(d) => match (d.action, d.reason) {
            (Action::Reject, _) => text(StatusCode::BAD_REQUEST, "Bad Request\n"),
            (Action::Block, Reason::ModernAuthBlocked) => {
                text(StatusCode::FORBIDDEN, "Forbidden\n")
            }
            (Action::Block | Action::Challenge, _) => challenge(bearer),
            (Action::Allow | Action::ReportOnly, _) => {
                // Forwarded decisions never reach here; refuse rather than guess.
                text(StatusCode::INTERNAL_SERVER_ERROR, "Internal Server Error\n")
            }
        },
        Refusal::UpstreamUnreachable => text(StatusCode::BAD_GATEWAY, "Bad Gateway\n"),
        Refusal::NoUpstream => text(StatusCode::SERVICE_UNAVAILABLE, "Service Unavailable\n"),
    }
}

/// Asks the client to close the connection after this response (used when an NTLM or
/// Negotiate connection's upstream is gone or its Type 3 was blocked).
pub fn close_connection(res: &mut Response<ProxyBody>) {
    res.headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::Scheme;
    use crate::policy::Protocol;

    fn decided(action: Action, reason: Reason) -> Refusal {
        Refusal::Decided(Decision {
            action,
            reason,
            protocol: Protocol::Mapi,
            scheme: Scheme::Basic,
            policy: None,
            legacy: true,
        })
    }

    #[test]
    fn each_refusal_has_its_spec_status() {
        let bearer = HeaderValue::from_static("Bearer x=\"y\"");
        let status = |r| refusal(r, &bearer).status().as_u16();
        assert_eq!(status(decided(Action::Block, Reason::LegacyBlocked)), 401);
        assert_eq!(status(decided(Action::Challenge, Reason::BearerProbe)), 401);
        assert_eq!(
            status(decided(Action::Block, Reason::ModernAuthBlocked)),
            403
        );
        assert_eq!(status(decided(Action::Reject, Reason::AmbiguousPath)), 400);
        assert_eq!(status(Refusal::UpstreamUnreachable), 502);
        assert_eq!(status(Refusal::NoUpstream), 503);
    }

    #[test]
    fn a_blocked_request_gets_only_the_bearer_challenge() {
        let bearer = HeaderValue::from_static("Bearer x=\"y\"");
        let res = refusal(decided(Action::Block, Reason::LegacyBlocked), &bearer);
        let challenges: Vec<_> = res
            .headers()
            .get_all(header::WWW_AUTHENTICATE)
            .iter()
            .collect();
        assert_eq!(challenges, [&bearer]);
        assert_eq!(res.headers()[header::CONTENT_LENGTH], "0");
    }
}
