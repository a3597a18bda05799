//! The admin listener (SPEC §8): `GET /metrics`, `/healthz`, `/readyz`, and `POST
//! /cmdlet` and `/reload`. Loopback by default; the POST endpoints require
//! `Authorization: Bearer <admin.token>` when a token is configured.

use std::convert::Infallible;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::header::{self, HeaderValue};
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::sync::watch;

use super::{CmdletError, Shared};
use crate::auth::Secret;

/// Largest cmdlet script accepted by `POST /cmdlet`.
const MAX_SCRIPT_BYTES: usize = 64 * 1024;

/// Admin connections served at once: they come out of the descriptors exgate keeps in
/// reserve (SPEC §7 "Limits"), so a local scraper gone wrong cannot take the proxy's.
pub const MAX_ADMIN_CONNECTIONS: usize = 32;
/// How long one admin connection lasts at most, keep-alive included: a stuck or
/// trickling client, or a persistent scraper, holds its place this long and no longer.
const ADMIN_CONNECTION_DEADLINE: std::time::Duration = std::time::Duration::from_secs(10);
/// After the deadline: time to finish the request in progress.
const ADMIN_DRAIN: std::time::Duration = std::time::Duration::from_secs(2);

/// Serves the admin endpoints until `stop` fires.
pub async fn serve(listener: TcpListener, shared: Arc<Shared>, mut stop: watch::Receiver<bool>) {
    let capacity = Arc::new(tokio::sync::Semaphore::new(MAX_ADMIN_CONNECTIONS));
    loop {
        let (stream, _) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(error = %e, "admin accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = stop.changed() => return,
        };
        let Ok(permit) = capacity.clone().try_acquire_owned() else {
            continue; // closed: the admin listener is full
        };
        let shared = shared.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req| {
                let shared = shared.clone();
                async move { Ok::<_, Infallible>(route(&shared, req).await) }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service);
            tokio::pin!(conn);
            // At the deadline the connection finishes the request in progress, if any,
            // and closes (a keep-alive scraper reconnects); one that cannot finish
            // within a few more seconds is dropped.
            if tokio::time::timeout(ADMIN_CONNECTION_DEADLINE, conn.as_mut())
                .await
                .is_err()
            {
                conn.as_mut().graceful_shutdown();
                let _ = tokio::time::timeout(ADMIN_DRAIN, conn).await;
            }
            drop(permit);
        });
    }
}

async fn route(shared: &Shared, req: Request<Incoming>) -> Response<Full<Bytes>> {
    match (req.method(), req.uri().path()) {
        (&Method::GET, "/metrics") => respond(
            StatusCode::OK,
            "text/plain; version=0.0.4; charset=utf-8",
            shared.metrics.render(),
        ),
        (&Method::GET, "/healthz") => respond(StatusCode::OK, "text/plain", "ok\n".into()),
        // Ready once the configuration is loaded and every token issuer has keys.
        (&Method::GET, "/readyz") => match shared.not_ready_because() {
            None => respond(StatusCode::OK, "text/plain", "ready\n".into()),
            Some(why) => respond(
                StatusCode::SERVICE_UNAVAILABLE,
                "text/plain",
                format!("not ready: {why}\n"),
            ),
        },
        (&Method::POST, "/cmdlet" | "/reload") if !authorized(shared, &req) => {
            let why = match req.headers().contains_key(header::AUTHORIZATION) {
                true => "admin token does not match admin.token\n",
                false => "admin token required (Authorization: Bearer <admin.token>)\n",
            };
            let mut res = respond(StatusCode::UNAUTHORIZED, "text/plain", why.into());
            res.headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            res
        }
        (&Method::POST, "/cmdlet") => cmdlet(shared, req).await,
        (&Method::POST, "/reload") => match shared.reload() {
            Ok(()) => respond(StatusCode::OK, "text/plain", "reloaded\n".into()),
            Err(errors) => respond(StatusCode::BAD_REQUEST, "text/plain", errors.to_string()),
        },
        _ => respond(StatusCode::NOT_FOUND, "text/plain", "not found\n".into()),
    }
}

/// Constant-time check of `Authorization: Bearer <admin.token>`.
fn authorized(shared: &Shared, req: &Request<Incoming>) -> bool {
    let Some(expected) = &shared.admin_token else {
        return true;
    };
    req.headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.as_bytes().strip_prefix(b"Bearer "))
        .is_some_and(|presented| Secret::new(presented) == *expected)
}

async fn cmdlet(shared: &Shared, req: Request<Incoming>) -> Response<Full<Bytes>> {
    let body = match Limited::new(req.into_body(), MAX_SCRIPT_BYTES)
        .collect()
        .await
    {
        Ok(b) => b.to_bytes(),
        Err(_) => {
            return respond(
                StatusCode::PAYLOAD_TOO_LARGE,
                "text/plain",
                "script too large\n".into(),
            );
        }
    };
    let Ok(script) = std::str::from_utf8(&body) else {
        return respond(
            StatusCode::BAD_REQUEST,
            "text/plain",
            "script is not UTF-8\n".into(),
        );
    };
    // AD FS account cmdlets act on lockout state; the rest on the policy store — the
    // fleet's through Redis with [cluster], else this instance's (and its state file).
    let result = match crate::policy::cmdlet::account_commands(script) {
        Some(Ok(commands)) => shared
            .account_cmdlets(&commands)
            .await
            .map(|text| vec![text]),
        Some(Err(errors)) => Err(CmdletError::Script(errors)),
        None => match &shared.cluster {
            Some(cluster) => shared.apply_cmdlets_fleet(cluster, script).await,
            None => shared.apply_cmdlets(script),
        },
    };
    match result {
        Ok(output) => {
            let mut text = output.join("\n");
            if !text.is_empty() && !text.ends_with('\n') {
                text.push('\n');
            }
            respond(StatusCode::OK, "text/plain; charset=utf-8", text)
        }
        Err(CmdletError::Script(errors)) => respond(
            StatusCode::BAD_REQUEST,
            "text/plain; charset=utf-8",
            format!("{}\n", CmdletError::Script(errors)),
        ),
        Err(e @ CmdletError::Persist(_)) => {
            tracing::error!(error = %e, "cmdlets not applied");
            respond(
                StatusCode::INTERNAL_SERVER_ERROR,
                "text/plain",
                format!("{e}\n"),
            )
        }
        Err(e @ (CmdletError::ClusterUnavailable | CmdletError::ClusterBusy)) => {
            let mut res = respond(
                StatusCode::SERVICE_UNAVAILABLE,
                "text/plain",
                format!("{e}\n"),
            );
            res.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            res
        }
    }
}

fn respond(status: StatusCode, content_type: &'static str, body: String) -> Response<Full<Bytes>> {
    let mut res = Response::new(Full::new(Bytes::from(body)));
    *res.status_mut() = status;
    res.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    res
}
