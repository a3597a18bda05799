//! Forwarding (SPEC §7): the request head as Exchange gets it, the client connection's
//! own upstream connection, and the response on its way back.

use std::time::Duration;

use http_body_util::BodyExt;
use hyper::body::{Body, Incoming};
use hyper::header::HeaderValue;
use hyper::http::uri::PathAndQuery;
use hyper::{Response, StatusCode};

use super::Connection;
use crate::policy::{Decision, Protocol};
use crate::proxy::idle::IdleTimeout;
use crate::proxy::respond::{BoxError, ProxyBody};
use crate::proxy::upstream::{Head, Pinned, UpstreamError};
use crate::proxy::{Snapshot, headers};

impl Connection {
    /// RPC over HTTP channels and MAPI long polls sit idle for minutes; nothing else
    /// should.
    pub(super) fn idle_timeout(&self, protocol: Protocol) -> Duration {
        let t = &self.shared.timeouts;
        match protocol {
            Protocol::Rpc | Protocol::Mapi => t.long_idle,
            _ => t.idle,
        }
    }

    pub(super) fn forward_head(&self, parts: hyper::http::request::Parts) -> Head {
        let mut headers = parts.headers;
        headers::remove_hop_by_hop(&mut headers);
        headers::append_forwarded(&mut headers, &self.client_address, self.https);
        Head {
            method: parts.method,
            path_and_query: parts
                .uri
                .path_and_query()
                .cloned()
                .unwrap_or_else(|| PathAndQuery::from_static("/")),
            headers,
        }
    }

    pub(super) async fn forward(
        &self,
        head: Head,
        body: Option<ProxyBody>,
    ) -> Result<Response<Incoming>, UpstreamError> {
        let upstream = &self.shared.upstream;
        let mut auth = self.auth.lock().await;
        // An idle upstream connection the server has closed is replaced before anything
        // is sent — unless NTLM or Negotiate authenticated it: that state cannot move.
        let stale = auth.upstream.as_ref().is_some_and(Pinned::is_closed);
        if stale && !auth.authenticated {
            auth.upstream = None;
        }
        if auth.upstream.is_none() {
            auth.upstream = Some(upstream.pin().await?);
        }
        let own = auth.upstream.as_mut().expect("connected above");
        let req = upstream.request_on(own, head, body);
        match upstream.send_on(own, req).await {
            Ok(res) => Ok(res),
            // Closed under us before the request was written: once more on a new
            // connection, if it has no body (SPEC §7) and this one carried no
            // authentication.
            Err((_, Some(req))) if !auth.authenticated && req.body().is_end_stream() => {
                auth.upstream = Some(upstream.pin().await?);
                let own = auth.upstream.as_mut().expect("connected above");
                upstream.send_on(own, req).await.map_err(|(e, _)| {
                    auth.upstream = None;
                    e
                })
            }
            Err((e, _)) => {
                auth.upstream = None;
                Err(e)
            }
        }
    }
}

/// Phase: rewrite the upstream response. Hop-by-hop headers go; an anonymous request's
/// 401 loses its legacy challenges where the organization default blocks legacy.
pub(super) fn rewrite_response(
    res: Response<Incoming>,
    snapshot: &Snapshot,
    decision: &Decision,
    anonymous: bool,
    pinned: bool,
    idle: Duration,
) -> Response<ProxyBody> {
    let (mut parts, body) = res.into_parts();
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
    let body = IdleTimeout::wrap(body.map_err(BoxError::from).boxed(), idle);
    Response::from_parts(parts, body)
}
