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

use super::console::{Bus, Event};
use super::kerberos::{LabKeytab, lab_user, now_unix};
use super::soap::ClientBase;
use super::spnego::{self, ClientToken};
use super::{Scenario, SharedKeys, TENANT, autodiscover, ews, find_user, ntlm};
use crate::auth::{Credentials, KerberosLeg, NtlmIdentity, NtlmMessage, parse_header};
use crate::kerberos::TicketReader;
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
    /// With `exgate lab --keytab`: the service key Kerberos tickets are read with.
    tickets: Option<TicketReader>,
    received: Mutex<Vec<Received>>,
    /// The lab console's: what Exchange received is shown there.
    bus: Bus,
}

/// NTLM and Kerberos authenticate the connection: its state lives here.
#[derive(Default)]
struct Connection {
    /// The NTLM handshake under way, between the CHALLENGE and the AUTHENTICATE.
    handshake: Option<Handshake>,
    /// Who authenticated the connection, and how (`ntlm`, `negotiate`, `kerberos`).
    user: Option<(String, &'static str)>,
}

/// An NTLM handshake under way, raw or inside SPNEGO.
struct Handshake {
    ntlm: ntlm::ServerHandshake,
    /// Inside SPNEGO: the DER of the client's mechTypes, which the mechListMICs sign.
    spnego_mech_types: Option<Vec<u8>>,
}

/// Starts the mock Exchange on 127.0.0.1:0; with a keytab it also accepts Kerberos.
pub async fn start(
    scenario: Scenario,
    keys: SharedKeys,
    idp: &str,
    keytab: Option<&LabKeytab>,
    bus: Bus,
) -> anyhow::Result<MockExchange> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}", listener.local_addr()?);
    let state = Arc::new(State {
        scenario,
        keys,
        authorization_uri: format!("{idp}/common/oauth2/authorize"),
        tickets: keytab.map(LabKeytab::reader),
        received: Mutex::new(Vec::new()),
        bus,
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
    /// The user, the scheme to record, and the `WWW-Authenticate` the answer carries (the
    /// last SPNEGO leg rides on the 200, RFC 4559 §5).
    User(String, &'static str, Option<HeaderValue>),
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
        if let Some(data) = frame.data_ref().filter(|_| keep)
            && kept.len() + data.len() <= MAX_KEPT_BODY
        {
            kept.extend_from_slice(data);
        }
    }
    let v2 = path.starts_with("/autodiscover/autodiscover.json");
    let (scheme, user, res) = match auth {
        Auth::Refused(res) => ("refused", None, res),
        Auth::Anonymous if v2 => ("none", None, autodiscover_v2(&base, &path, &query)),
        Auth::Anonymous => ("none", None, challenge(state)),
        Auth::User(user, scheme, last_leg) => {
            let mut res = if v2 {
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
            if let Some(value) = last_leg {
                res.headers_mut().insert("www-authenticate", value);
            }
            (scheme, Some(user), res)
        }
    };
    state.bus.publish(Event::from_exchange(
        method.as_str(),
        &path,
        scheme,
        user.clone(),
        res.status().as_u16(),
    ));
    state
        .received
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .push(Received {
            method: method.to_string(),
            // Bounded: a lab that takes many 64 KB paths must not hold them all (red team).
            path: path.chars().take(1024).collect(),
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
            Some((user, scheme)) => Auth::User(user.clone(), scheme, None),
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
                Auth::User(u.upn.to_owned(), "basic", None)
            }
            _ => Auth::Refused(challenge(state)),
        },
        Credentials::Ntlm { negotiate, .. } => {
            let raw = header
                .as_bytes()
                .splitn(2, |b| *b == b' ')
                .nth(1)
                .unwrap_or_default();
            let token = STANDARD.decode(raw.trim_ascii()).unwrap_or_default();
            let leg = match negotiate.then(|| spnego::parse(&token)).flatten() {
                None => Leg::Raw(&token),
                Some(ClientToken::Init {
                    mech_types,
                    mech_token: Some(t),
                }) => Leg::Init(t, mech_types),
                Some(ClientToken::Resp {
                    response_token: Some(t),
                    mech_list_mic,
                }) => Leg::Resp(t, mech_list_mic),
                Some(_) => return Auth::Refused(challenge(state)),
            };
            ntlm_leg(state, &mut conn, &scheme_word, leg)
        }
        Credentials::Kerberos(leg) => kerberos(state, &mut conn, &leg),
        Credentials::Bearer(token) => match verify_token(state, token.expose()) {
            Some(user) => Auth::User(user, "bearer", None),
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

/// Where an NTLM message came: bare (`NTLM`, or `Negotiate` as Windows sends it when NTLM
/// is all it has), or inside SPNEGO's first or later token (RFC 4559, MS-SPNG).
enum Leg<'a> {
    Raw(&'a [u8]),
    /// The NTLM message and the DER of the client's mechTypes.
    Init(&'a [u8], Vec<u8>),
    /// The NTLM message and the client's mechListMIC.
    Resp(&'a [u8], Option<&'a [u8]>),
}

/// One leg of the NTLMv2 server side: a NEGOTIATE starts a handshake, an AUTHENTICATE
/// finishes the connection's, each in the wrapping the handshake began with.
fn ntlm_leg(state: &State, conn: &mut Connection, scheme_word: &str, leg: Leg<'_>) -> Auth {
    let message = match &leg {
        Leg::Raw(m) | Leg::Init(m, _) | Leg::Resp(m, _) => *m,
    };
    match (crate::auth::ntlm::parse(message), leg) {
        (NtlmMessage::Negotiate, Leg::Raw(_)) => {
            start_handshake(state, conn, scheme_word, message, None)
        }
        (NtlmMessage::Negotiate, Leg::Init(_, mech_types)) => {
            start_handshake(state, conn, scheme_word, message, Some(mech_types))
        }
        (NtlmMessage::Authenticate(id), Leg::Raw(_)) => {
            finish_handshake(state, conn, scheme_word, (message, &id), false, None)
        }
        (NtlmMessage::Authenticate(id), Leg::Resp(_, client_mic)) => {
            finish_handshake(state, conn, scheme_word, (message, &id), true, client_mic)
        }
        _ => Auth::Refused(challenge(state)),
    }
}

/// Answers a NEGOTIATE with the CHALLENGE, inside a NegTokenResp when the NEGOTIATE came
/// inside SPNEGO (MS-SPNG 3.2.5.2), and keeps the handshake on the connection.
fn start_handshake(
    state: &State,
    conn: &mut Connection,
    scheme_word: &str,
    negotiate: &[u8],
    spnego_mech_types: Option<Vec<u8>>,
) -> Auth {
    let mut server_challenge = [0u8; 8];
    aws_lc_rs::rand::fill(&mut server_challenge).expect("system randomness");
    let Some(ntlm) =
        ntlm::ServerHandshake::start(negotiate, "CONTOSO", server_challenge, ntlm::filetime_now())
    else {
        return Auth::Refused(challenge(state));
    };
    let answer = match spnego_mech_types {
        Some(_) => spnego::accept_incomplete(ntlm.challenge()),
        None => ntlm.challenge().to_vec(),
    };
    conn.handshake = Some(Handshake {
        ntlm,
        spnego_mech_types,
    });
    let mut res = reply(StatusCode::UNAUTHORIZED, "text/html", String::new());
    res.headers_mut()
        .insert("www-authenticate", auth_header(scheme_word, &answer));
    Auth::Refused(res)
}

/// Checks an AUTHENTICATE against the lab user's password and the connection's
/// handshake, which must have begun in the same wrapping; inside SPNEGO, completes the
/// mechListMIC exchange and gives the last token for the 200.
fn finish_handshake(
    state: &State,
    conn: &mut Connection,
    scheme_word: &str,
    (message, id): (&[u8], &NtlmIdentity),
    spnego: bool,
    client_mic: Option<&[u8]>,
) -> Auth {
    let handshake = conn.handshake.take();
    let checked = handshake.and_then(|h| {
        (h.spnego_mech_types.is_some() == spnego).then_some(())?;
        let user = find_user(&id.user)?;
        let session = h
            .ntlm
            .finish(message, &id.domain, &id.user, user.password)?;
        let last_leg = match h.spnego_mech_types {
            Some(mech_types) => Some(auth_header(
                scheme_word,
                &spnego_completion(&session, &mech_types, client_mic)?,
            )),
            None => None,
        };
        Some((user, last_leg))
    });
    let Some((user, last_leg)) = checked else {
        return Auth::Refused(challenge(state));
    };
    let scheme = if spnego { "negotiate" } else { "ntlm" };
    conn.user = Some((user.upn.to_owned(), scheme));
    Auth::User(user.upn.to_owned(), scheme, last_leg)
}

/// A Kerberos leg of `Negotiate` (raw GSS or inside SPNEGO): with the lab's keytab, an
/// AP-REQ whose ticket opens with the service key and names a lab user authenticates the
/// connection as that user, as Exchange's HTTP.SYS does; anything else (no keytab, an
/// offer without a ticket, a ticket for another key or realm, an expired ticket) gets the
/// challenge again.
fn kerberos(state: &State, conn: &mut Connection, leg: &KerberosLeg) -> Auth {
    let now = now_unix();
    let user = match (&state.tickets, leg) {
        (Some(reader), KerberosLeg::ApReq(ap_req)) => reader
            .read(ap_req.der(), now)
            .ok()
            .filter(|(client, _)| client.endtime > now)
            .and_then(|(client, _)| lab_user(&client)),
        _ => None,
    };
    let Some(user) = user else {
        conn.user = None;
        return Auth::Refused(challenge(state));
    };
    conn.user = Some((user.upn.to_owned(), "kerberos"));
    Auth::User(user.upn.to_owned(), "kerberos", None)
}

/// The last SPNEGO token, after a good AUTHENTICATE: `accept-completed`, with the
/// mechListMIC exchange (RFC 4178 §5) when the client sent a mechListMIC or its
/// AUTHENTICATE carried a MIC (which makes it mandatory for Windows: MS-SPNG Appendix A,
/// note on 3.1.5.1). None when the client's mechListMIC is missing or wrong.
fn spnego_completion(
    session: &ntlm::Session,
    mech_types: &[u8],
    client_mic: Option<&[u8]>,
) -> Option<Vec<u8>> {
    if client_mic.is_none() && !session.mic_present() {
        return Some(spnego::accept_completed(None));
    }
    session
        .verify_client_signature(mech_types, client_mic?)
        .then_some(())?;
    let ours = session.server_signature(mech_types)?;
    Some(spnego::accept_completed(Some(&ours)))
}

fn auth_header(scheme_word: &str, token: &[u8]) -> HeaderValue {
    HeaderValue::from_str(&format!("{scheme_word} {}", STANDARD.encode(token)))
        .expect("base64 is a valid header value")
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
