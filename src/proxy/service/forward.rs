//! Forwarding (SPEC §7): the request head as Exchange gets it, the client connection's
//! own upstream connection, and the response on its way back.

use std::time::Duration;

use http_body_util::BodyExt;
use hyper::body::Body;
use hyper::header::HeaderValue;
use hyper::http::uri::PathAndQuery;
use hyper::{Response, StatusCode};

use super::Connection;
use crate::policy::{Decision, Protocol};
use crate::proxy::body::SignalEnd;
use crate::proxy::direct;
use crate::proxy::idle::IdleTimeout;
use crate::proxy::respond::ProxyBody;
use crate::proxy::upstream::{Head, UpstreamError};
use crate::proxy::{Snapshot, headers};

impl Connection {
    /// RPC over HTTP channels and MAPI long polls sit idle for minutes; nothing else
    /// should.
    pub(super) fn idle_timeout(&self, protocol: Protocol) -> Duration {
        let t = &self.client.shared.timeouts;
        match protocol {
            Protocol::Rpc | Protocol::Mapi => t.long_idle,
            _ => t.idle,
        }
    }

    /// How long to wait for the response headers (SPEC §7): a MAPI `NotificationWait`
    /// long poll (MS-OXCMAPIHTTP §2.2.2.2: `X-RequestType: NotificationWait`) and every
    /// RPC over HTTP request may be held by Exchange for minutes; the rest get
    /// `upstream.response_header_timeout_seconds`.
    pub(super) fn response_header_wait(&self, protocol: Protocol, head: &Head) -> Duration {
        let long_poll = match protocol {
            Protocol::Rpc => true,
            Protocol::Mapi => head
                .headers
                .get("x-requesttype")
                .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"NotificationWait")),
            _ => false,
        };
        match long_poll {
            true => self.client.shared.timeouts.long_idle,
            false => self.client.shared.upstream.response_header_timeout,
        }
    }

    pub(super) fn forward_head(&self, parts: hyper::http::request::Parts) -> Head {
        let mut headers = parts.headers;
        headers::remove_hop_by_hop(&mut headers);
        headers::append_forwarded(&mut headers, &self.client_address, self.client.https);
        Head {
            method: parts.method,
            path_and_query: origin_form(parts.uri.path_and_query()),
            headers,
        }
    }

    /// Sends the request on the client connection's own upstream connection, opening
    /// one to a server that serves `protocol` when there is none, and waits at most
    /// `wait` for the response headers (then the upstream connection is closed). A
    /// `GET`, `HEAD` or `OPTIONS` without a body goes through exgate's own client while
    /// the connection speaks it (see [`direct`]); everything else through hyper's.
    /// `first_leg`: the request starts a handshake (an NTLM Type 1, a Kerberos AP-REQ),
    /// so it may move to a new upstream connection even on a connection NTLM or
    /// Negotiate authenticated.
    pub(super) async fn forward(
        &self,
        protocol: Protocol,
        head: Head,
        body: Option<ProxyBody>,
        wait: Duration,
        first_leg: bool,
    ) -> Result<Response<ProxyBody>, UpstreamError> {
        let upstream = &self.client.shared.upstream;
        upstream.note_in_use(protocol);
        let mut auth = self.auth.lock().await;
        // Whether the request may leave the upstream connection it would go on: unless an
        // earlier leg of a handshake went on it (red team, issue 16: a Type 1 after
        // the upstream connection closed got 502).
        let movable = !auth.authenticated || first_leg;
        let direct = body.is_none() && direct::speaks(&head.method);
        // An idle upstream connection the server has closed, or whose server has left the
        // rotation for this protocol, is replaced before anything is sent — unless NTLM
        // or Negotiate authenticated it and this request continues that handshake: that
        // state cannot move. One that hyper's client is about to take over is checked for
        // a close while it sat idle (exgate's own client checks before each request it
        // sends).
        let replace = auth.upstream.as_ref().is_some_and(|own| {
            own.is_closed()
                || !upstream.serves(own, protocol)
                || (!direct && upstream.speaks_direct(own) && own.is_stale())
        });
        if replace && movable {
            auth.upstream = None;
        }
        let mut retried = false;
        loop {
            if auth.upstream.is_none() {
                auth.upstream = Some(Box::pin(upstream.pin(protocol, !retried)).await?);
            }
            let own = auth.upstream.as_ref().expect("connected above");
            if !(direct && upstream.speaks_direct(own)) {
                break;
            }
            match tokio::time::timeout(wait, upstream.send_direct(own, &head)).await {
                Ok(Ok(res)) => return Ok(res),
                // The server closed the reused connection while it sat idle: once more
                // on a new connection, not a pooled one (RFC 9112 §9.3.1: the method is
                // idempotent), if the request may move.
                Ok(Err(failed)) if failed.retriable && !retried && movable => {
                    auth.upstream = None;
                    retried = true;
                }
                Ok(Err(failed)) => {
                    auth.upstream = None;
                    return Err(failed.error);
                }
                Err(_) => {
                    auth.upstream = None;
                    return Err(UpstreamError::ResponseTimeout);
                }
            }
        }
        let own = auth.upstream.as_mut().expect("connected above");
        // The wait for response headers starts once the body has gone out whole.
        // (A request without a body, most of them, pays for no signal.)
        let (body, body_sent) = match body {
            Some(body) => {
                let (body, sent) = SignalEnd::new(body);
                (Some(body.boxed()), Some(sent))
            }
            None => (None, None),
        };
        let req = upstream.request_on(own, head, body);
        let deadline = async {
            if let Some(sent) = &body_sent {
                sent.wait().await;
            }
            tokio::time::sleep(wait).await;
        };
        let sent = tokio::select! {
            sent = upstream.send_on(own, req) => sent,
            () = deadline => {
                auth.upstream = None;
                return Err(UpstreamError::ResponseTimeout);
            }
        };
        match sent {
            Ok(res) => Ok(res),
            // Closed under us before the request was written: once more on a new
            // connection, if it has no body (SPEC §7) and may move.
            Err((_, Some(req))) if movable && !retried && req.body().is_end_stream() => {
                auth.upstream = Some(Box::pin(upstream.pin(protocol, false)).await?);
                let own = auth.upstream.as_mut().expect("connected above");
                // Only a body-less request is sent again: its wait starts at once.
                match tokio::time::timeout(wait, upstream.send_on(own, req)).await {
                    Ok(Ok(res)) => Ok(res),
                    Ok(Err((e, _))) => {
                        auth.upstream = None;
                        Err(e)
                    }
                    Err(_) => {
                        auth.upstream = None;
                        Err(UpstreamError::ResponseTimeout)
                    }
                }
            }
            Err((e, _)) => {
                auth.upstream = None;
                Err(e)
            }
        }
    }
}

/// The request target as Exchange gets it (RFC 9112 §3.2.1 origin-form): the client's
/// path and query, with `/` for an empty path — an absolute-form target without a path
/// (`http://host`, `http://host?x`, and `http://host#/mapi/` once its fragment is gone)
/// would otherwise go out as `GET  HTTP/1.1` or `GET ?x HTTP/1.1`, which servers read
/// differently (red team, issue 16). `*` (OPTIONS) stays as it is.
pub(super) fn origin_form(target: Option<&PathAndQuery>) -> PathAndQuery {
    match target {
        Some(pq) if pq.as_str().starts_with('/') || pq.as_str() == "*" => pq.clone(),
        Some(pq) => format!("/{}", pq.as_str())
            .parse()
            .unwrap_or_else(|_| PathAndQuery::from_static("/")),
        None => PathAndQuery::from_static("/"),
    }
}

/// Phase: rewrite the upstream response. Hop-by-hop headers go; an anonymous request's
/// 401 loses its legacy challenges where the organization default blocks legacy.
pub(super) fn rewrite_response(
    res: Response<ProxyBody>,
    snapshot: &Snapshot,
    decision: &Decision,
    anonymous: bool,
    pinned: bool,
    idle: Duration,
) -> Response<ProxyBody> {
    let (mut parts, body) = res.into_parts();
    // The protocol version is the hop's: exgate speaks HTTP/1.1 to its client whatever
    // Exchange answered in (an HTTP/1.0 status line would tell an HTTP/1.1 client the
    // connection closes, while exgate keeps it open; red team, issue 16).
    parts.version = hyper::Version::HTTP_11;
    headers::remove_hop_by_hop(&mut parts.headers);
    if parts.status == StatusCode::UNAUTHORIZED
        && anonymous
        && snapshot.strip_legacy_challenges[decision.protocol.index()]
    {
        headers::strip_legacy_challenges(&mut parts.headers, &snapshot.bearer);
    }
    if pinned {
        // RFC 4559 §6: this proxy keeps authenticated connections apart.
        parts.headers.insert(
            "proxy-support",
            HeaderValue::from_static("Session-Based-Authentication"),
        );
    }
    let body = IdleTimeout::wrap(body, idle);
    Response::from_parts(parts, body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_forwarded_target_is_always_origin_form() {
        let of = |uri: &str| {
            let uri: hyper::Uri = uri.parse().unwrap();
            origin_form(uri.path_and_query()).as_str().to_owned()
        };
        assert_eq!(of("/mapi/emsmdb/?x=1"), "/mapi/emsmdb/?x=1");
        assert_eq!(of("http://mail.contoso.com"), "/");
        assert_eq!(of("http://mail.contoso.com/ews/x"), "/ews/x");
        assert_eq!(of("http://mail.contoso.com?x"), "/?x");
        assert_eq!(of("*"), "*");
        // The red team's request line: the fragment dropped, nothing left of the path.
        let pq: PathAndQuery = ""
            .parse()
            .unwrap_or_else(|_| PathAndQuery::from_static("/"));
        assert_eq!(origin_form(Some(&pq)).as_str(), "/");
        assert_eq!(origin_form(None).as_str(), "/");
    }
}
