//! The mock Exchange: the virtual directories of SPEC §2 with plausible answers, the
//! challenges Exchange sends, a real NTLMv2 server side, bearer tokens checked against
//! the lab identity provider's keys, and a record of what it received
//! (`GET /_lab/received`, on its own address only).

use std::convert::Infallible;
use std::sync::{Arc, Mutex};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::header::HeaderValue;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde::Serialize;

use super::soap::ClientBase;
use super::{Scenario, SharedKeys, TENANT, autodiscover, ews, find_user, ntlm};
use crate::auth::{Credentials, NtlmMessage, parse_header};
use crate::policy::Deployment;

/// A running mock Exchange.
pub struct MockExchange {
    pub url: String,
}

/// One request as the mock Exchange saw it (no secrets: the user, not the password).
#[derive(Clone, Debug, Serialize)]
struct Received {
    method: String,
    path: String,
    scheme: &'static str,
    user: Option<String>,
    status: u16,
}

struct State {
    scenario: Scenario,
    keys: SharedKeys,
    /// The identity provider's authorize URL, which Exchange's Bearer challenge names.
    authorization_uri: String,
    received: Mutex<Vec<Received>>,
}

/// NTLM authenticates the connection: its state lives here.
#[derive(Default)]
struct Connection {
    server_challenge: Option<[u8; 8]>,
    user: Option<String>,
}

/// Starts the mock Exchange on 127.0.0.1:0.
pub async fn start(
    scenario: Scenario,
    keys: SharedKeys,
    idp: &str,
) -> anyhow::Result<MockExchange> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}", listener.local_addr()?);
    let state = Arc::new(State {
        scenario,
        keys,
        authorization_uri: format!("{idp}/common/oauth2/authorize"),
        received: Mutex::new(Vec::new()),
    });
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let state = state.clone();
            let conn = Arc::new(Mutex::new(Connection::default()));
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |req| {
                    let (state, conn) = (state.clone(), conn.clone());
                    async move { Ok::<_, Infallible>(handle(&state, &conn, req).await) }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    Ok(MockExchange { url })
}

fn reply(status: StatusCode, content_type: &'static str, body: String) -> Response<Full<Bytes>> {
    let mut res = Response::new(Full::new(Bytes::from(body)));
    *res.status_mut() = status;
    res.headers_mut()
        .insert("content-type", HeaderValue::from_static(content_type));
    res.headers_mut()
        .insert("x-feserver", HeaderValue::from_static("LAB-EXCH01"));
    res
}

/// Who the request authenticated as, or the 401 to send.
enum Auth {
    User(String, &'static str),
    Anonymous,
    Refused(Response<Full<Bytes>>),
}

async fn handle(
    state: &State,
    conn: &Mutex<Connection>,
    req: Request<Incoming>,
) -> Response<Full<Bytes>> {
    let path = req.uri().path().to_ascii_lowercase();
    if path == "/_lab/received" {
        let received = state
            .received
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        return reply(
            StatusCode::OK,
            "application/json",
            serde_json::to_string(&received).unwrap_or_default(),
        );
    }
    if path.ends_with("/healthcheck.htm") {
        return reply(
            StatusCode::OK,
            "text/html",
            "200 OK<br/>LAB-EXCH01.contoso.com<br/>".into(),
        );
    }
    let method = req.method().clone();
    let auth = authenticate(state, conn, &req);
    // Answers name the address the client used (Host, X-Forwarded-Proto), never the
    // mock's own.
    let base = ClientBase::from_headers(req.headers(), state.scenario.deployment());
    let query = req.uri().query().unwrap_or_default().to_owned();
    // Bodies are read (RPC_IN_DATA streams up to its Content-Length); only the SOAP and
    // POX services' requests are kept.
    let keep = path.starts_with("/ews") || path.starts_with("/autodiscover");
    let mut kept = Vec::new();
    let mut body = req.into_body();
    while let Some(frame) = body.frame().await {
        let Ok(frame) = frame else { break };
        if let Some(data) = frame.data_ref().filter(|_| keep) {
            if kept.len() + data.len() <= MAX_KEPT_BODY {
                kept.extend_from_slice(data);
            }
        }
    }
    let v2 = path.starts_with("/autodiscover/autodiscover.json");
    let (scheme, user, res) = match auth {
        Auth::Refused(res) => ("refused", None, res),
        Auth::Anonymous if v2 => ("none", None, autodiscover_v2(&base, &path, &query)),
        Auth::Anonymous => ("none", None, challenge(state)),
        Auth::User(user, scheme) => {
            let res = if v2 {
                autodiscover_v2(&base, &path, &query)
            } else {
                let request = Served {
                    method: &method,
                    path: &path,
                    user: &user,
                    base: &base,
                    body: &kept,
                };
                content(state.scenario.deployment(), &request)
            };
            (scheme, Some(user), res)
        }
    };
    state
        .received
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .push(Received {
            method: method.to_string(),
            path,
            scheme,
            user,
            status: res.status().as_u16(),
        });
    res
}

fn authenticate(state: &State, conn: &Mutex<Connection>, req: &Request<Incoming>) -> Auth {
    let mut conn = conn.lock().unwrap_or_else(|e| e.into_inner());
    let Some(header) = req.headers().get("authorization") else {
        return match &conn.user {
            Some(user) => Auth::User(user.clone(), "ntlm"),
            None => Auth::Anonymous,
        };
    };
    let scheme_word = header
        .as_bytes()
        .split(|b| *b == b' ')
        .next()
        .map(|s| String::from_utf8_lossy(s).into_owned())
        .unwrap_or_default();
    match parse_header(header.as_bytes()) {
        Credentials::Basic(b) => match b.user().and_then(find_user) {
            Some(u) if b.password().expose() == u.password.as_bytes() => {
                Auth::User(u.upn.to_owned(), "basic")
            }
            _ => Auth::Refused(challenge(state)),
        },
        Credentials::Ntlm { message, .. } => match message {
            NtlmMessage::Negotiate => {
                let mut server_challenge = [0u8; 8];
                aws_lc_rs::rand::fill(&mut server_challenge).expect("system randomness");
                conn.server_challenge = Some(server_challenge);
                let msg = ntlm::build_challenge("CONTOSO", server_challenge);
                let mut res = reply(StatusCode::UNAUTHORIZED, "text/html", String::new());
                res.headers_mut().insert(
                    "www-authenticate",
                    HeaderValue::from_str(&format!("{scheme_word} {}", STANDARD.encode(msg)))
                        .expect("base64 is a valid header value"),
                );
                Auth::Refused(res)
            }
            NtlmMessage::Authenticate(id) => {
                let user = find_user(&id.user).filter(|u| {
                    conn.server_challenge.is_some_and(|c| {
                        let raw = header
                            .as_bytes()
                            .splitn(2, |b| *b == b' ')
                            .nth(1)
                            .unwrap_or_default();
                        let msg = STANDARD.decode(raw.trim_ascii()).unwrap_or_default();
                        ntlm::verify_response(&msg, c, &id.domain, &id.user, u.password)
                    })
                });
                conn.server_challenge = None;
                match user {
                    Some(u) => {
                        conn.user = Some(u.upn.to_owned());
                        Auth::User(u.upn.to_owned(), "ntlm")
                    }
                    None => Auth::Refused(challenge(state)),
                }
            }
            _ => Auth::Refused(challenge(state)),
        },
        Credentials::Bearer(token) => match verify_token(state, token.expose()) {
            Some(user) => Auth::User(user, "bearer"),
            None => {
                let mut res = challenge(state);
                res.headers_mut().insert(
                    "x-ms-diagnostics",
                    HeaderValue::from_static(
                        "2000001;reason=\"OAuth token submitted with the request cannot be parsed.\";error_category=\"invalid_token\"",
                    ),
                );
                Auth::Refused(res)
            }
        },
        _ => Auth::Refused(challenge(state)),
    }
}

/// Exchange validates the token itself (signature, issuer, audience); the user is `upn`.
fn verify_token(state: &State, token: &[u8]) -> Option<String> {
    let token = std::str::from_utf8(token).ok()?;
    let kid = jsonwebtoken::decode_header(token).ok()?.kid?;
    let keys = state.keys.load();
    let key = keys.iter().find(|k| k.kid() == kid)?;
    let decoding = jsonwebtoken::DecodingKey::from_jwk(key.jwk()).ok()?;
    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::RS256);
    validation.set_audience(&[state.scenario.audience()]);
    validation.set_issuer(&[format!("https://sts.windows.net/{TENANT}/")]);
    let data = jsonwebtoken::decode::<serde_json::Value>(token, &decoding, &validation).ok()?;
    data.claims["upn"].as_str().map(str::to_owned)
}

/// The 401 Exchange sends to a client that has not authenticated: Exchange Online joins
/// Bearer and Basic in one header; Exchange Server sends Bearer, Negotiate, NTLM and
/// Basic apart.
fn challenge(state: &State) -> Response<Full<Bytes>> {
    let mut res = reply(StatusCode::UNAUTHORIZED, "text/html", String::new());
    let bearer = format!(
        "Bearer client_id=\"00000002-0000-0ff1-ce00-000000000000\", trusted_issuers=\"00000001-0000-0000-c000-000000000000@*\", token_types=\"app_asserted_user_v1 service_asserted_app_v1\", authorization_uri=\"{}\"",
        state.authorization_uri
    );
    let values: Vec<String> = match state.scenario.deployment() {
        Deployment::Online => vec![format!("{bearer},Basic Realm=\"\"")],
        Deployment::OnPremises => vec![
            bearer,
            "Negotiate".into(),
            "NTLM".into(),
            "Basic realm=\"mail.contoso.com\"".into(),
        ],
    };
    for v in values {
        if let Ok(v) = HeaderValue::from_str(&v) {
            res.headers_mut().append("www-authenticate", v);
        }
    }
    res
}

fn autodiscover_v2(base: &ClientBase, path: &str, query: &str) -> Response<Full<Bytes>> {
    let (status, json) = autodiscover::v2(base, path, query);
    reply(status, "application/json; charset=utf-8", json)
}

/// The largest SOAP or POX request body the mock keeps (larger ones are cut, and so
/// fail to parse).
const MAX_KEPT_BODY: usize = 4 << 20;

/// An authenticated request, as `content` needs it.
struct Served<'a> {
    method: &'a Method,
    /// Lowercased.
    path: &'a str,
    /// The user's UPN.
    user: &'a str,
    base: &'a ClientBase,
    body: &'a [u8],
}

/// What each virtual directory answers an authenticated user.
fn content(deployment: Deployment, request: &Served) -> Response<Full<Bytes>> {
    let Served {
        method,
        path,
        user,
        base,
        body,
    } = *request;
    let first = |vdir: &str| path.starts_with(vdir);
    let soap = |(status, xml): (StatusCode, String)| reply(status, "text/xml; charset=utf-8", xml);
    let mailbox = find_user(user);
    if first("/autodiscover") && method == Method::POST {
        match path {
            "/autodiscover/autodiscover.svc" => soap(autodiscover::soap(deployment, base, body)),
            _ => soap(autodiscover::pox(deployment, base, body)),
        }
    } else if let (true, true, Some(mailbox)) = (first("/ews"), method == Method::POST, mailbox) {
        soap(ews::respond(deployment, mailbox, body))
    } else if first("/mapi") {
        let mut res = reply(
            StatusCode::OK,
            "application/mapi-http",
            "PROCESSING\r\nDONE\r\nX-ElapsedTime: 3\r\nX-StartTime: lab\r\n\r\n".into(),
        );
        res.headers_mut()
            .insert("x-responsecode", HeaderValue::from_static("0"));
        res.headers_mut()
            .insert("x-requesttype", HeaderValue::from_static("Execute"));
        res
    } else if first("/oab") {
        reply(
            StatusCode::OK,
            "text/xml",
            r#"<?xml version="1.0" encoding="utf-8"?><OAB><OAL id="lab" dn="/" name="\Default Offline Address Book"><Full seq="12" ver="32" size="4096" uncompressedsize="8192" SHA="0">lab-oab-full.lzx</Full></OAL></OAB>"#.into(),
        )
    } else if first("/rpc") {
        // RPC over HTTP: the channel's PDUs are opaque here.
        reply(StatusCode::OK, "application/rpc", String::new())
    } else if first("/microsoft-server-activesync") && method == Method::OPTIONS {
        let mut res = reply(StatusCode::OK, "text/plain", String::new());
        res.headers_mut().insert(
            "ms-asprotocolversions",
            HeaderValue::from_static("14.0,14.1,16.0,16.1"),
        );
        res
    } else {
        reply(
            StatusCode::OK,
            "text/plain",
            format!("Exchange lab: {method} {path} for {user}\n"),
        )
    }
}
