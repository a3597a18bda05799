//! Every answer exgate gives itself, built in this one place (SPEC §6).

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Full, combinators::BoxBody};
use hyper::header::{self, HeaderValue};
use hyper::{Response, StatusCode};

use super::framing::ClientFault;
use crate::policy::{Action, Decision, Reason};
use crate::token::TokenError;

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
    /// exgate is out of local resources (file descriptors, ports): 503 with
    /// `Retry-After`, never blamed on a server.
    Overloaded,
    /// The upstream server sent no response headers in time.
    UpstreamTimeout,
    /// The bearer token failed validation.
    InvalidToken(TokenError),
    /// The bearer token shows no MFA where it is required (RFC 9470).
    MfaRequired,
    /// The request is malformed, stalled or refused as the client's fault (SPEC §6).
    Client(ClientFault),
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

/// What of a refusal its response is made from: of a decision, only its action and
/// reason. Two refusals with the same `Answer` get the same response from [`refusal`]
/// (the quick path keeps encoded responses by it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Answer {
    /// A decision's action and reason.
    Decided(Action, Reason),
    /// Any other refusal (never [`Refusal::Decided`] when made by `From`).
    Other(Refusal),
}

impl From<Refusal> for Answer {
    fn from(r: Refusal) -> Answer {
        match r {
            Refusal::Decided(d) => Answer::Decided(d.action, d.reason),
            other => Answer::Other(other),
        }
    }
}

/// The response for a refusal. A blocked request gets the Bearer challenge and nothing
/// else: no legacy challenge, no body, no hint of why (as Exchange answers).
pub fn refusal(r: Refusal, bearer: &HeaderValue) -> Response<ProxyBody> {
    answer(Answer::from(r), bearer)
}

/// The response for an [`Answer`] (see [`refusal`]).
pub fn answer(a: Answer, bearer: &HeaderValue) -> Response<ProxyBody> {
    match a {
        Answer::Decided(action, reason) => decided(action, reason, bearer),
        Answer::Other(r) => other(r, bearer),
    }
}

/// The response for a decision's refusal.
fn decided(action: Action, reason: Reason, bearer: &HeaderValue) -> Response<ProxyBody> {
    match (action, reason) {
        (Action::Reject, _) => text(StatusCode::BAD_REQUEST, "Bad Request\n"),
        (Action::Block, Reason::ModernAuthBlocked) => text(StatusCode::FORBIDDEN, "Forbidden\n"),
        // Not a refusal of the password: come back when an attempt in flight has
        // been answered.
        (Action::Block, Reason::LockoutPending) => {
            let mut res = text(StatusCode::SERVICE_UNAVAILABLE, "Service Unavailable\n");
            res.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            res
        }
        (Action::Block | Action::Challenge, _) => challenge(bearer),
        (Action::Allow | Action::ReportOnly, _) => {
            // Forwarded decisions never reach here; refuse rather than guess.
            text(StatusCode::INTERNAL_SERVER_ERROR, "Internal Server Error\n")
        }
    }
}

/// The response for a refusal other than a decision's.
fn other(r: Refusal, bearer: &HeaderValue) -> Response<ProxyBody> {
    match r {
        Refusal::Decided(d) => decided(d.action, d.reason, bearer),
        Refusal::InvalidToken(TokenError::NoKeys) => {
            text(StatusCode::SERVICE_UNAVAILABLE, "Service Unavailable\n")
        }
        Refusal::InvalidToken(e) => {
            let mut res = challenge(&with_error(bearer, "invalid_token", e.description()));
            if let Ok(v) = HeaderValue::from_str(&e.diagnostics()) {
                res.headers_mut().insert("x-ms-diagnostics", v);
            }
            res
        }
        Refusal::MfaRequired => mfa_required(bearer, &[]),
        Refusal::UpstreamUnreachable => text(StatusCode::BAD_GATEWAY, "Bad Gateway\n"),
        Refusal::NoUpstream => text(StatusCode::SERVICE_UNAVAILABLE, "Service Unavailable\n"),
        Refusal::Overloaded => {
            let mut res = text(StatusCode::SERVICE_UNAVAILABLE, "Service Unavailable\n");
            res.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            res
        }
        Refusal::UpstreamTimeout => text(StatusCode::GATEWAY_TIMEOUT, "Gateway Timeout\n"),
        Refusal::Client(fault) => match fault.status() {
            405 => {
                let mut res = text(StatusCode::METHOD_NOT_ALLOWED, "Method Not Allowed\n");
                res.headers_mut().insert(
                    header::ALLOW,
                    HeaderValue::from_static("GET, HEAD, POST, PUT, DELETE, OPTIONS, PATCH"),
                );
                res
            }
            408 => text(StatusCode::REQUEST_TIMEOUT, "Request Timeout\n"),
            431 => text(
                StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
                "Request Header Fields Too Large\n",
            ),
            _ => text(StatusCode::BAD_REQUEST, "Bad Request\n"),
        },
    }
}

/// The 401 for a valid token without MFA where MFA is required (SPEC §5). With no
/// authentication-context ids: RFC 9470's `insufficient_user_authentication`. With
/// `tokens.mfa.auth_context_ids`: the Conditional Access authentication-context claims
/// challenge, `error="insufficient_claims", claims="<base64 of
/// {"access_token":{"acrs":{"essential":true,"value":"<first id>"}}}>"`, which is what
/// makes MSAL (and so Outlook) re-acquire a token with the step-up (Microsoft identity
/// platform, "Claims challenges, claims requests, and client capabilities").
pub fn mfa_required(bearer: &HeaderValue, auth_context_ids: &[String]) -> Response<ProxyBody> {
    let Some(id) = auth_context_ids.first() else {
        return challenge(&with_error(
            bearer,
            "insufficient_user_authentication",
            "Multi-factor authentication is required",
        ));
    };
    use base64::Engine as _;
    let claims = serde_json::json!({"access_token": {"acrs": {"essential": true, "value": id}}});
    let encoded = base64::engine::general_purpose::STANDARD.encode(claims.to_string());
    let mut v = bearer.as_bytes().to_vec();
    v.extend_from_slice(
        format!(", error=\"insufficient_claims\", claims=\"{encoded}\"").as_bytes(),
    );
    challenge(&HeaderValue::from_bytes(&v).unwrap_or_else(|_| bearer.clone()))
}

/// The Bearer challenge with an RFC 6750 `error` and `error_description`.
fn with_error(bearer: &HeaderValue, error: &str, description: &str) -> HeaderValue {
    let mut v = bearer.as_bytes().to_vec();
    v.extend_from_slice(
        format!(", error=\"{error}\", error_description=\"{description}\"").as_bytes(),
    );
    HeaderValue::from_bytes(&v).unwrap_or_else(|_| bearer.clone())
}

/// What a client connection beyond `server.max_connections` is sent, raw, before it is
/// closed (SPEC §6): exgate reads nothing from it.
pub const OVER_CAPACITY: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\nRetry-After: 1\r\nConnection: close\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: 20\r\n\r\nService Unavailable\n";

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
            user: None,
            connection: false,
        })
    }

    #[test]
    fn each_refusal_has_its_spec_status() {
        let bearer = HeaderValue::from_static("Bearer x=\"y\"");
        let status = |r| refusal(r, &bearer).status().as_u16();
        assert_eq!(status(decided(Action::Block, Reason::LegacyBlocked)), 401);
        assert_eq!(status(decided(Action::Block, Reason::LockoutPending)), 503);
        assert_eq!(status(decided(Action::Challenge, Reason::BearerProbe)), 401);
        assert_eq!(
            status(decided(Action::Block, Reason::ModernAuthBlocked)),
            403
        );
        assert_eq!(status(decided(Action::Reject, Reason::AmbiguousPath)), 400);
        assert_eq!(status(Refusal::UpstreamUnreachable), 502);
        assert_eq!(status(Refusal::NoUpstream), 503);
        assert_eq!(status(Refusal::Overloaded), 503);
        assert_eq!(status(Refusal::UpstreamTimeout), 504);
        assert_eq!(
            refusal(Refusal::Overloaded, &bearer).headers()[header::RETRY_AFTER],
            "1"
        );
        assert_eq!(status(Refusal::InvalidToken(TokenError::Expired)), 401);
        assert_eq!(status(Refusal::InvalidToken(TokenError::NoKeys)), 503);
        assert_eq!(status(Refusal::MfaRequired), 401);
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

#[cfg(test)]
mod token_tests {
    use super::*;

    #[test]
    fn with_auth_context_ids_missing_mfa_is_a_claims_challenge() {
        let bearer = HeaderValue::from_static("Bearer client_id=\"x\"");
        let res = mfa_required(&bearer, &["c1".to_owned(), "c2".to_owned()]);
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
        // Microsoft's documented example challenge for auth context c1.
        assert_eq!(
            res.headers()[header::WWW_AUTHENTICATE],
            "Bearer client_id=\"x\", error=\"insufficient_claims\", claims=\"eyJhY2Nlc3NfdG9rZW4iOnsiYWNycyI6eyJlc3NlbnRpYWwiOnRydWUsInZhbHVlIjoiYzEifX19\""
        );
    }

    #[test]
    fn invalid_tokens_get_error_description_and_diagnostics() {
        let bearer = HeaderValue::from_static("Bearer client_id=\"x\"");
        let res = refusal(Refusal::InvalidToken(TokenError::Audience), &bearer);
        assert_eq!(
            res.headers()[header::WWW_AUTHENTICATE],
            "Bearer client_id=\"x\", error=\"invalid_token\", error_description=\"The access token's audience is not accepted\""
        );
        assert!(
            res.headers()["x-ms-diagnostics"]
                .to_str()
                .unwrap()
                .starts_with("2000003;reason=")
        );
        let res = refusal(Refusal::MfaRequired, &bearer);
        assert!(
            res.headers()[header::WWW_AUTHENTICATE]
                .to_str()
                .unwrap()
                .contains("error=\"insufficient_user_authentication\"")
        );
    }
}
