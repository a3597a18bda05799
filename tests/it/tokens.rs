//! Bearer tokens through the proxy, with a JWKS server on loopback.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use exgate::token::mint::{SigningKey, entra_v1_claims, jwks};
use http_body_util::Full;
use hyper::{Response, StatusCode};
use hyper_util::rt::TokioIo;

use crate::quick::{answer_alike, quick_refusals};
use crate::support::*;

const TENANT: &str = "72f988bf-86f1-41af-91ab-2d7cd011db47";
const AUDIENCE: &str = "https://outlook.office365.com";

/// An identity provider's key endpoints: `/keys` (JWKS) and the OpenID document.
struct Idp {
    addr: std::net::SocketAddr,
    jwks: Arc<Mutex<String>>,
    down: Arc<AtomicBool>,
    /// Accept, then never answer (a hung endpoint).
    hang: Arc<AtomicBool>,
    fetches: Arc<AtomicUsize>,
}

impl Idp {
    async fn start(keys: &[&SigningKey]) -> Idp {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let jwks_doc = Arc::new(Mutex::new(jwks(keys)));
        let down = Arc::new(AtomicBool::new(false));
        let hang = Arc::new(AtomicBool::new(false));
        let fetches = Arc::new(AtomicUsize::new(0));
        let (doc, is_down, count) = (jwks_doc.clone(), down.clone(), fetches.clone());
        let hung = hang.clone();
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let (doc, is_down, count) = (doc.clone(), is_down.clone(), count.clone());
                let hung = hung.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(
                        move |req: hyper::Request<hyper::body::Incoming>| {
                            let (doc, is_down, count) =
                                (doc.clone(), is_down.clone(), count.clone());
                            let hung = hung.clone();
                            async move {
                                if hung.load(Ordering::SeqCst) {
                                    tokio::time::sleep(Duration::from_secs(3600)).await;
                                }
                                let mut res = Response::new(Full::new(Bytes::new()));
                                if is_down.load(Ordering::SeqCst) {
                                    *res.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
                                } else if req.uri().path() == "/keys" {
                                    count.fetch_add(1, Ordering::SeqCst);
                                    *res.body_mut() =
                                        Full::new(Bytes::from(doc.lock().unwrap().clone()));
                                } else {
                                    let host = req.headers()["host"].to_str().unwrap().to_owned();
                                    *res.body_mut() = Full::new(Bytes::from(format!(
                                        r#"{{"issuer":"https://sts.windows.net/{TENANT}/","jwks_uri":"http://{host}/keys"}}"#
                                    )));
                                }
                                Ok::<_, std::convert::Infallible>(res)
                            }
                        },
                    );
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Idp {
            addr,
            jwks: jwks_doc,
            down,
            hang,
            fetches,
        }
    }

    fn publish(&self, keys: &[&SigningKey]) {
        *self.jwks.lock().unwrap() = jwks(keys);
    }

    fn fetches(&self) -> usize {
        self.fetches.load(Ordering::SeqCst)
    }
}

fn tokens_toml(deployment: &str, source: &str, unknown_kid_min: u64) -> String {
    format!(
        "[exchange]\ndeployment = \"{deployment}\"\n[policy]\nscript = \"policies.ps1\"\n[[users]]\nupn = \"user01@contoso.com\"\n[[users]]\nupn = \"user02@contoso.com\"\n[[tokens.issuers]]\nissuer = \"https://sts.windows.net/{{tenantid}}/\"\naudiences = [\"{AUDIENCE}\"]\n{source}\nunknown_kid_refresh_min_seconds = {unknown_kid_min}\n[tokens.mfa]\nrequire_for = [\"Mapi\"]\n"
    )
}

async fn wait_ready(gate: &Exgate) {
    for _ in 0..400 {
        let mut c = Client::connect(gate.running.admin_addr).await;
        if c.get("/readyz", &[]).await.status == 200 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("exgate never became ready");
}

/// A key, its identity provider, a fake Exchange and exgate validating against them.
struct Setup {
    key: SigningKey,
    idp: Idp,
    upstream: Upstream,
    gate: Exgate,
}

/// How [`Setup::start`] wires things.
struct Wiring<'a> {
    deployment: &'a str,
    script: &'a str,
    unknown_kid_min: u64,
    /// Discover the keys through the OpenID configuration rather than the JWKS URL.
    openid: bool,
    /// Take the identity provider down before exgate starts (and do not wait for keys).
    idp_down: bool,
    /// `fetch_timeout_seconds` of the issuer, when set.
    fetch_timeout: Option<u64>,
    /// `tokens.mfa.auth_context_ids`.
    auth_context_ids: &'a [&'a str],
}

const ONLINE: Wiring<'static> = Wiring {
    deployment: "online",
    script: "",
    unknown_kid_min: 300,
    openid: false,
    idp_down: false,
    fetch_timeout: None,
    auth_context_ids: &[],
};

impl Setup {
    async fn start(w: Wiring<'_>) -> Setup {
        let key = SigningKey::generate("k1");
        let idp = Idp::start(&[&key]).await;
        idp.down.store(w.idp_down, Ordering::SeqCst);
        let upstream = Upstream::start().await;
        let source = if w.openid {
            format!(
                "openid_configuration_url = \"http://{}/.well-known/openid-configuration\"",
                idp.addr
            )
        } else {
            format!("jwks_url = \"http://{}/keys\"", idp.addr)
        };
        let source = match w.fetch_timeout {
            Some(t) => format!("{source}\nfetch_timeout_seconds = {t}"),
            None => source,
        };
        let mut toml = tokens_toml(w.deployment, &source, w.unknown_kid_min);
        if !w.auth_context_ids.is_empty() {
            let ids: Vec<String> = w
                .auth_context_ids
                .iter()
                .map(|i| format!("\"{i}\""))
                .collect();
            toml.push_str(&format!("auth_context_ids = [{}]\n", ids.join(", ")));
        }
        let gate = Exgate::start(&toml, w.script, &[upstream.url()]).await;
        if !w.idp_down {
            wait_ready(&gate).await;
        }
        Setup {
            key,
            idp,
            upstream,
            gate,
        }
    }
}

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

fn claims(user: &str, mfa: bool) -> serde_json::Value {
    entra_v1_claims(TENANT, AUDIENCE, user, mfa, 3600)
}

/// The clock, in Unix seconds.
fn unix_now() -> i64 {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH);
    i64::try_from(now.unwrap().as_secs()).unwrap()
}

/// A token of user01 with MFA signed by `key`, one claim set to `value`.
fn altered(key: &SigningKey, field: &str, value: serde_json::Value) -> String {
    let mut c = claims("user01@contoso.com", true);
    c[field] = value;
    key.sign(&c)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mfa_is_required_where_configured_and_only_there() {
    let Setup {
        key,
        idp: _,
        upstream,
        gate,
    } = Setup::start(Wiring {
        unknown_kid_min: 300,
        ..ONLINE
    })
    .await;

    let with_mfa = key.sign(&claims("user01@contoso.com", true));
    let without = key.sign(&claims("user01@contoso.com", false));
    let mut c = gate.client().await;
    let r = c
        .get("/mapi/emsmdb", &[("authorization", &bearer(&with_mfa))])
        .await;
    assert_eq!(r.status, 200);
    let r = c
        .get("/mapi/emsmdb", &[("authorization", &bearer(&without))])
        .await;
    assert_eq!(r.status, 401);
    let challenge = r.header("www-authenticate").unwrap();
    assert!(
        challenge.contains("error=\"insufficient_user_authentication\""),
        "{challenge}"
    );
    let r = c
        .get(
            "/EWS/Exchange.asmx",
            &[("authorization", &bearer(&without))],
        )
        .await;
    assert_eq!(r.status, 200, "EWS does not require MFA here");
    let seen = upstream.requests();
    assert_eq!(seen.len(), 2);
    assert_eq!(
        seen[0].headers["authorization"],
        bearer(&with_mfa).as_str(),
        "forwarded as sent"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_bad_token_gets_401_with_its_description() {
    let Setup {
        key,
        upstream,
        gate,
        ..
    } = Setup::start(Wiring {
        openid: true,
        ..ONLINE
    })
    .await;

    let now = unix_now();
    let altered = |field: &str, value: serde_json::Value| altered(&key, field, value);
    let mut cases: Vec<(String, &str, &str)> = vec![
        (
            altered("exp", (now - 1000).into()),
            "The access token is expired",
            "2000001",
        ),
        (
            altered("nbf", (now + 1000).into()),
            "The access token is not yet valid",
            "2000001",
        ),
        (
            altered("aud", "https://graph.microsoft.com".into()),
            "The access token's audience is not accepted",
            "2000003",
        ),
        (
            altered("iss", "https://evil.example/".into()),
            "The access token's issuer is not trusted",
            "2000001",
        ),
        (
            altered("tid", "00000000-0000-0000-0000-000000000000".into()),
            "The access token's tenant does not match its issuer",
            "2000001",
        ),
    ];
    let forger = SigningKey::generate("k1");
    cases.push((
        forger.sign(&claims("user01@contoso.com", true)),
        "The access token's signature is invalid",
        "2000001",
    ));
    let stranger = SigningKey::generate("k9");
    cases.push((
        stranger.sign(&claims("user01@contoso.com", true)),
        "The access token is signed with an unknown key",
        "2000001",
    ));
    cases.push((
        "not.a.token".into(),
        "The access token is malformed",
        "2000001",
    ));
    use base64::Engine as _;
    let b64 = |s: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s);
    let payload = b64(&claims("user01@contoso.com", true).to_string());
    cases.push((
        format!("{}.{payload}.", b64(r#"{"alg":"none"}"#)),
        "The access token's signing algorithm is not accepted",
        "2000001",
    ));
    let hs = jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &claims("user01@contoso.com", true),
        &jsonwebtoken::EncodingKey::from_secret(
            serde_json::to_string(key.jwk()).unwrap().as_bytes(),
        ),
    )
    .unwrap();
    cases.push((
        hs,
        "The access token's signing algorithm is not accepted",
        "2000001",
    ));

    for (token, description, code) in cases {
        let mut c = gate.client().await;
        let r = c
            .get("/EWS/Exchange.asmx", &[("authorization", &bearer(&token))])
            .await;
        assert_eq!(r.status, 401, "{description}");
        let challenge = r.header("www-authenticate").unwrap();
        assert!(challenge.starts_with("Bearer client_id="), "{challenge}");
        assert!(challenge.contains("error=\"invalid_token\""), "{challenge}");
        assert!(
            challenge.contains(&format!("error_description=\"{description}\"")),
            "{challenge}"
        );
        assert!(
            r.header("x-ms-diagnostics")
                .unwrap()
                .starts_with(&format!("{code};reason="))
        );
    }
    assert!(
        upstream.requests().is_empty(),
        "no invalid token reached Exchange"
    );
    let metrics = gate.metrics().await;
    assert!(
        metrics.contains(r#"exgate_token_validations_total{result="expired"} 1"#),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_rotation_is_picked_up_and_a_removed_key_stops_validating() {
    let Setup {
        key: k1,
        idp,
        upstream: _,
        gate,
    } = Setup::start(Wiring {
        unknown_kid_min: 1,
        ..ONLINE
    })
    .await;
    let old = k1.sign(&claims("user01@contoso.com", true));
    let mut c = gate.client().await;
    assert_eq!(
        c.get("/ews/", &[("authorization", &bearer(&old))])
            .await
            .status,
        200
    );

    let k2 = SigningKey::generate("k2");
    idp.publish(&[&k2]);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let new = k2.sign(&claims("user01@contoso.com", true));
    let r = c.get("/ews/", &[("authorization", &bearer(&new))]).await;
    assert_eq!(
        r.status, 200,
        "the first token with the new kid is accepted"
    );
    let r = c.get("/ews/", &[("authorization", &bearer(&old))]).await;
    assert_eq!(
        r.status, 401,
        "the removed key's (cached) token no longer validates"
    );
    assert!(
        r.header("www-authenticate")
            .unwrap()
            .contains("unknown key")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_jwks_server_that_goes_down_leaves_the_cached_keys_serving() {
    let Setup {
        key: k1,
        idp,
        upstream: _,
        gate,
    } = Setup::start(Wiring {
        unknown_kid_min: 1,
        ..ONLINE
    })
    .await;
    idp.down.store(true, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    // An unknown kid forces a fetch, which fails.
    let stranger = SigningKey::generate("k9");
    let mut c = gate.client().await;
    let r = c
        .get(
            "/ews/",
            &[(
                "authorization",
                &bearer(&stranger.sign(&claims("user02@contoso.com", true))),
            )],
        )
        .await;
    assert_eq!(r.status, 401);
    let fresh = k1.sign(&claims("user02@contoso.com", true));
    assert_eq!(
        c.get("/ews/", &[("authorization", &bearer(&fresh))])
            .await
            .status,
        200
    );
    let metrics = gate.metrics().await;
    assert!(
        metrics.contains(r#"exgate_jwks_refreshes_total{result="failure"} 1"#),
        "{metrics}"
    );
    let mut admin = Client::connect(gate.running.admin_addr).await;
    assert_eq!(
        admin.get("/readyz", &[]).await.status,
        200,
        "keys are still held"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_unknown_kids_costs_at_most_one_fetch_per_interval() {
    let Setup {
        key: k1,
        idp,
        upstream,
        gate,
    } = Setup::start(Wiring {
        unknown_kid_min: 2,
        ..ONLINE
    })
    .await;
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let before = idp.fetches();
    // 1,000 tokens with random unknown kids, 20 connections at a time.
    let tokens: Vec<String> = (0..1000)
        .map(|i| {
            let mut h = k1.header();
            h.kid = Some(format!("unknown-{i}-{}", i * 7919 % 1000));
            k1.sign_with_header(&claims("user01@contoso.com", true), &h)
        })
        .collect();
    let tokens = Arc::new(tokens);
    let started = std::time::Instant::now();
    let mut tasks = Vec::new();
    for w in 0..20 {
        let (tokens, addr) = (tokens.clone(), gate.addr());
        tasks.push(tokio::spawn(async move {
            let mut c = Client::connect(addr).await;
            for t in tokens.iter().skip(w).step_by(20) {
                let r = c.get("/ews/", &[("authorization", &bearer(t))]).await;
                assert_eq!(r.status, 401);
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let during = idp.fetches() - before;
    // One fetch per 2-second interval the burst spans (one, unless the machine is slow).
    let intervals = 1 + (started.elapsed().as_secs_f64() / 2.0) as usize;
    assert!(
        (1..=intervals).contains(&during),
        "{during} fetches in {intervals} intervals"
    );
    assert!(upstream.requests().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_keys_tokens_get_503_and_readyz_waits() {
    let Setup {
        key: k1, idp, gate, ..
    } = Setup::start(Wiring {
        unknown_kid_min: 1,
        idp_down: true,
        ..ONLINE
    })
    .await;
    let mut admin = Client::connect(gate.running.admin_addr).await;
    assert_eq!(admin.get("/readyz", &[]).await.status, 503);
    let token = k1.sign(&claims("user01@contoso.com", true));
    let mut c = gate.client().await;
    assert_eq!(
        c.get("/ews/", &[("authorization", &bearer(&token))])
            .await
            .status,
        503
    );
    idp.down.store(false, Ordering::SeqCst);
    wait_ready(&gate).await;
    assert_eq!(
        c.get("/ews/", &[("authorization", &bearer(&token))])
            .await
            .status,
        200
    );
}

/// SPEC §5 step-up: with `tokens.mfa.auth_context_ids`, a token without MFA gets
/// Conditional Access's claims challenge for the first id, which MSAL answers by
/// acquiring a token whose `acrs` holds it; that token passes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_auth_context_ids_missing_mfa_gets_the_claims_challenge() {
    let Setup {
        key,
        upstream,
        gate,
        ..
    } = Setup::start(Wiring {
        auth_context_ids: &["c1", "c7"],
        ..ONLINE
    })
    .await;
    let mut c = gate.client().await;
    let without = key.sign(&claims("user01@contoso.com", false));
    let r = c
        .get("/mapi/emsmdb/", &[("authorization", &bearer(&without))])
        .await;
    assert_eq!(r.status, 401);
    let challenge = r.header("www-authenticate").unwrap();
    assert!(
        challenge.ends_with(
            r#", error="insufficient_claims", claims="eyJhY2Nlc3NfdG9rZW4iOnsiYWNycyI6eyJlc3NlbnRpYWwiOnRydWUsInZhbHVlIjoiYzEifX19""#
        ),
        "{challenge}"
    );
    assert!(challenge.starts_with("Bearer "), "{challenge}");
    let mut stepped_up = claims("user01@contoso.com", false);
    stepped_up["acrs"] = serde_json::json!(["c1"]);
    let r = c
        .get(
            "/mapi/emsmdb/",
            &[("authorization", &bearer(&key.sign(&stepped_up)))],
        )
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(upstream.requests().len(), 1);
}

/// Issue 11: after a start during an outage long enough for the background retry to
/// back off, the first bearer request after the endpoint returns is answered 200 within
/// 2 s (it fetches the keys itself), and a burst during the outage costs about one fetch
/// per second, not one per request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_an_outage_at_start_the_first_token_is_served_within_two_seconds() {
    let Setup {
        key: k1, idp, gate, ..
    } = Setup::start(Wiring {
        idp_down: true,
        ..ONLINE
    })
    .await;
    let token = k1.sign(&claims("user01@contoso.com", true));
    let auth = bearer(&token);
    // 4.5 s of outage: the background retry is now sleeping 4 s at a time.
    let outage = std::time::Instant::now();
    let mut refused = 0;
    let tasks: Vec<_> = (0..20)
        .map(|_| {
            let (addr, auth) = (gate.addr(), auth.clone());
            tokio::spawn(async move {
                let mut c = Client::connect(addr).await;
                c.get("/ews/", &[("authorization", &auth)]).await.status
            })
        })
        .collect();
    for t in tasks {
        refused += usize::from(t.await.unwrap() == 503);
    }
    assert_eq!(refused, 20, "no keys, no service");
    tokio::time::sleep(Duration::from_millis(4500).saturating_sub(outage.elapsed())).await;
    let failed = gate.metrics().await;
    let failures: f64 = failed
        .lines()
        .find_map(|l| l.strip_prefix("exgate_jwks_refreshes_total{result=\"failure\"} "))
        .and_then(|v| v.parse().ok())
        .unwrap();
    assert!(failures <= 10.0, "{failures} fetches in a 4.5 s outage");
    idp.down.store(false, Ordering::SeqCst);
    let back = std::time::Instant::now();
    let mut c = gate.client().await;
    let status = c.get("/ews/", &[("authorization", &auth)]).await.status;
    assert_eq!(status, 200);
    assert!(
        back.elapsed() < Duration::from_secs(2),
        "{:?} after the endpoint returned",
        back.elapsed()
    );
}

/// Issue 11: against a key endpoint that accepts and never answers, a token with an
/// unknown `kid` is answered 401 within the issuer's `fetch_timeout_seconds`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_kid_against_a_hung_endpoint_is_answered_within_the_fetch_timeout() {
    let Setup { idp, gate, .. } = Setup::start(Wiring {
        unknown_kid_min: 1,
        fetch_timeout: Some(2),
        ..ONLINE
    })
    .await;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    idp.hang.store(true, Ordering::SeqCst);
    let stranger = SigningKey::generate("k9");
    let token = stranger.sign(&claims("user01@contoso.com", true));
    let mut c = gate.client().await;
    let started = std::time::Instant::now();
    let r = c.get("/ews/", &[("authorization", &bearer(&token))]).await;
    assert_eq!(r.status, 401);
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(1900) && took < Duration::from_secs(3),
        "answered after {took:?}"
    );
}

/// Red-team finding: concurrent callers queued for one fetch each. Now 20 concurrent
/// unknown `kid`s against a hung endpoint all get their 401 within one fetch timeout
/// (they share the one fetch), even with `unknown_kid_refresh_min_seconds` shorter
/// than the fetch timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_unknown_kids_against_a_hung_endpoint_share_one_fetch() {
    let Setup { idp, gate, .. } = Setup::start(Wiring {
        unknown_kid_min: 1,
        fetch_timeout: Some(2),
        ..ONLINE
    })
    .await;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    idp.hang.store(true, Ordering::SeqCst);
    // Signed before the clock starts: RSA key generation is slow in a debug build.
    let tokens: Vec<String> = (0..20)
        .map(|i| SigningKey::generate(&format!("k{i}")).sign(&claims("user01@contoso.com", true)))
        .collect();
    let started = std::time::Instant::now();
    let tasks: Vec<_> = tokens
        .into_iter()
        .map(|token| {
            let addr = gate.addr();
            tokio::spawn(async move {
                let mut c = Client::connect(addr).await;
                let status = c
                    .get("/ews/", &[("authorization", &bearer(&token))])
                    .await
                    .status;
                (status, started.elapsed())
            })
        })
        .collect();
    for t in tasks {
        let (status, took) = t.await.unwrap();
        assert_eq!(status, 401);
        assert!(
            took < Duration::from_millis(3500),
            "answered after {took:?}"
        );
    }
}

/// Red-team finding: while no keys were held, callers waited for the fetch in progress
/// and then for one of their own. Now 20 concurrent tokens against a hung endpoint all
/// get their 503 within a second plus one fetch timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_keys_concurrent_tokens_wait_for_one_fetch_at_most() {
    let Setup {
        key: k1, idp, gate, ..
    } = Setup::start(Wiring {
        idp_down: true,
        fetch_timeout: Some(2),
        ..ONLINE
    })
    .await;
    idp.hang.store(true, Ordering::SeqCst);
    idp.down.store(false, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let token = k1.sign(&claims("user01@contoso.com", true));
    let started = std::time::Instant::now();
    let tasks: Vec<_> = (0..20)
        .map(|_| {
            let (addr, auth) = (gate.addr(), bearer(&token));
            tokio::spawn(async move {
                let mut c = Client::connect(addr).await;
                let status = c.get("/ews/", &[("authorization", &auth)]).await.status;
                (status, started.elapsed())
            })
        })
        .collect();
    for t in tasks {
        let (status, took) = t.await.unwrap();
        assert_eq!(status, 503);
        assert!(
            took < Duration::from_millis(3500),
            "answered after {took:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_premises_block_modern_auth_applies_to_the_tokens_user() {
    let script = "New-AuthenticationPolicy NoModernMapi -BlockModernAuthMapi
Set-User user01 -AuthenticationPolicy NoModernMapi
";
    let Setup { key, gate, .. } = Setup::start(Wiring {
        deployment: "onpremises",
        script,
        ..ONLINE
    })
    .await;
    let mut c = gate.client().await;
    let user01 = key.sign(&claims("user01@contoso.com", true));
    let user02 = key.sign(&claims("user02@contoso.com", true));
    assert_eq!(
        c.get("/mapi/", &[("authorization", &bearer(&user01))])
            .await
            .status,
        403
    );
    assert_eq!(
        c.get("/mapi/", &[("authorization", &bearer(&user02))])
            .await
            .status,
        200
    );
    assert_eq!(
        c.get("/ews/", &[("authorization", &bearer(&user01))])
            .await
            .status,
        200
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn basic_auth_to_oauth_conversion_validates_the_password_as_a_token() {
    // Basic is blocked for everyone: the conversion path must not be.
    let script = "New-AuthenticationPolicy P
Set-OrganizationConfig -DefaultAuthenticationPolicy P
";
    let Setup { key, gate, .. } = Setup::start(Wiring { script, ..ONLINE }).await;
    let target = "/PowerShell-LiveID?BasicAuthToOAuthConversion=true";
    let token = key.sign(&claims("user01@contoso.com", true));
    let mut c = gate.client().await;
    let r = c
        .get(
            target,
            &[("authorization", &basic("user01@contoso.com", &token))],
        )
        .await;
    assert_eq!(r.status, 200);
    // The form real scripts send: the password is `Bearer <token>`.
    let r = c
        .get(
            target,
            &[(
                "authorization",
                &basic("user01@contoso.com", &format!("Bearer {token}")),
            )],
        )
        .await;
    assert_eq!(r.status, 200);
    // A forged token in the password is an invalid token.
    let mut forged = token.clone().into_bytes();
    let i = token.rfind('.').unwrap() + 5;
    forged[i] = if forged[i] == b'A' { b'B' } else { b'A' };
    let forged = String::from_utf8(forged).unwrap();
    let r = c
        .get(
            target,
            &[("authorization", &basic("user01@contoso.com", &forged))],
        )
        .await;
    assert_eq!(r.status, 401);
    assert!(
        r.header("www-authenticate")
            .unwrap()
            .contains("invalid_token")
    );
    // A password is a password: legacy Basic, blocked by the policy, no token error.
    let r = c
        .get(
            target,
            &[("authorization", &basic("user01@contoso.com", "Summer2026!"))],
        )
        .await;
    assert_eq!(r.status, 401);
    assert_eq!(r.header("www-authenticate"), Some(BEARER_CHALLENGE));
    let r = c
        .get(
            "/PowerShell-LiveID",
            &[("authorization", &basic("user01@contoso.com", &token))],
        )
        .await;
    assert_eq!(r.status, 401, "without the flag it is plain Basic, blocked");
}

/// Found by the red team: on a connection user01 authenticated with NTLM, a valid token
/// of another user, to a protocol user01's policy blocks, was forwarded — and with
/// `Connection: Authorization` Exchange then served it as user01. The connection's user
/// is refused whatever the token says, and no `Connection` option may remove a field
/// the decision read.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_does_not_carry_a_blocked_ntlm_connection_past_the_policy() {
    let script = "New-AuthenticationPolicy -Name BlockLegacyOutlookAuth -BlockLegacyAuthMapi -BlockLegacyAuthRpc -BlockLegacyAuthOfflineAddressBook -BlockLegacyAuthAutodiscover
Set-User user01 -AuthenticationPolicy BlockLegacyOutlookAuth
";
    let Setup {
        key,
        upstream,
        gate,
        ..
    } = Setup::start(Wiring {
        deployment: "onpremises",
        script,
        ..ONLINE
    })
    .await;
    let other = bearer(&key.sign(&claims("nobody@contoso.com", true)));
    for connection in [None, Some("Authorization"), Some("close, AUTHORIZATION")] {
        for path in ["/mapi/emsmdb/", "/rpc/rpcproxy.dll", "/OAB/x/oab.xml"] {
            let mut c = gate.client().await;
            let t1 = c
                .get("/owa/", &[("authorization", &ntlm_type1("NTLM"))])
                .await;
            assert_eq!(t1.status, 401);
            let t3 = c
                .get(
                    "/owa/",
                    &[("authorization", &ntlm_type3("NTLM", "CONTOSO", "user01"))],
                )
                .await;
            assert_eq!(t3.status, 200);
            let before = upstream.requests().len();
            let mut headers = vec![("authorization", other.as_str())];
            headers.extend(connection.map(|c| ("connection", c)));
            let r = c
                .send("GET", path, &headers, full(bytes::Bytes::new()))
                .await
                .map(|r| r.status);
            let cell = format!("{path} Connection: {connection:?}");
            assert!(matches!(r, Ok(400 | 401) | Err(_)), "{cell}: {r:?}");
            assert_eq!(
                upstream.requests().len(),
                before,
                "{cell}: reached Exchange"
            );
        }
    }
    // Without an NTLM connection the same token is served.
    let mut c = gate.client().await;
    assert_eq!(
        c.get("/mapi/emsmdb/", &[("authorization", &other)])
            .await
            .status,
        200
    );
}

/// The series of `exgate_token_validations_total` and of the request counter.
fn token_series(metrics: &str) -> Vec<String> {
    metrics
        .lines()
        .filter(|l| {
            l.starts_with("exgate_token_validations_total{")
                || l.starts_with("exgate_requests_total{")
        })
        .map(str::to_owned)
        .collect()
}

/// Bad-signature floods (issue 16): a token refused once is answered without hyper when
/// it comes again, from the failed cache, byte for byte, counted and audited as hyper's
/// path answers it; a token never seen, a valid one, one never remembered (not yet
/// valid), one of a protocol exgate does not govern, and one whose remembered failure
/// belongs to an old key set are not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_token_sent_again_is_answered_without_hyper_as_hyper_answers_it() {
    let key = SigningKey::generate("k1");
    let idp = Idp::start(&[&key]).await;
    let upstreams = [Upstream::start().await, Upstream::start().await];
    let mut toml = tokens_toml(
        "online",
        &format!("jwks_url = \"http://{}/keys\"", idp.addr),
        1,
    );
    toml.push_str("[audit]\npath = \"audit/exgate.jsonl\"\n");
    let quick = Exgate::start(&toml, "", &[upstreams[0].url()]).await;
    let plain =
        Exgate::start_with("quick_refusals = false", &toml, "", &[upstreams[1].url()]).await;
    wait_ready(&quick).await;
    wait_ready(&plain).await;

    let now = unix_now();
    let altered = |field: &str, value: serde_json::Value| altered(&key, field, value);
    // Signed by another key under the published kid.
    let impostor = SigningKey::generate("k1");
    let forged = impostor.sign(&claims("user01@contoso.com", true));
    let valid = key.sign(&claims("user02@contoso.com", true));
    let ews = |auth: &str| {
        format!(
            "GET /EWS/Exchange.asmx HTTP/1.1\r\nHost: mail.contoso.com\r\nAuthorization: {auth}\r\n\r\n"
        )
    };
    // Each head, and whether its first and second sending take the quick path.
    let table: Vec<(&str, String, [bool; 2])> = vec![
        ("forged signature", ews(&bearer(&forged)), [false, true]),
        (
            "forged, again (remembered)",
            ews(&bearer(&forged)),
            [true, true],
        ),
        (
            "forged, lower-case scheme",
            ews(&format!("bearer {forged}")),
            [true, true],
        ),
        (
            "expired",
            ews(&bearer(&altered("exp", (now - 1000).into()))),
            [false, true],
        ),
        (
            "wrong audience",
            ews(&bearer(&altered(
                "aud",
                "https://graph.microsoft.com".into(),
            ))),
            [false, true],
        ),
        (
            "not yet valid (never remembered)",
            ews(&bearer(&altered("nbf", (now + 1000).into()))),
            [false, false],
        ),
        (
            "untrusted issuer (refused before any key)",
            ews(&bearer(&altered("iss", "https://evil.example/".into()))),
            [false, false],
        ),
        ("valid (forwarded)", ews(&bearer(&valid)), [false, false]),
        (
            "forged, on OWA (not governed, forwarded)",
            format!(
                "GET /owa/ HTTP/1.1\r\nHost: mail.contoso.com\r\nAuthorization: Bearer {forged}\r\n\r\n"
            ),
            [false, false],
        ),
        (
            "forged, with a body",
            format!(
                "POST /EWS/Exchange.asmx HTTP/1.1\r\nHost: mail.contoso.com\r\nContent-Length: 2\r\nAuthorization: Bearer {forged}\r\n\r\nhi"
            ),
            [false, false],
        ),
        (
            "forged, two Authorization fields",
            format!(
                "GET /EWS/Exchange.asmx HTTP/1.1\r\nHost: mail.contoso.com\r\nAuthorization: Bearer {valid}\r\nAuthorization: Bearer {forged}\r\n\r\n"
            ),
            [false, false],
        ),
        (
            "forged, after Basic (the engine reads the Basic field, a blocked Basic)",
            format!(
                "GET /EWS/Exchange.asmx HTTP/1.1\r\nHost: mail.contoso.com\r\nAuthorization: {}\r\nAuthorization: Bearer {forged}\r\n\r\n",
                basic("user01@contoso.com", "Summer2026!")
            ),
            [true, true],
        ),
    ];
    let mut audited = 0;
    for (shape, head, expect_quick) in &table {
        for (sending, expect_quick) in expect_quick.iter().enumerate() {
            let shape = format!("{shape} #{sending}");
            let taken = answer_alike(&quick, &plain, &shape, head, &mut audited).await;
            assert_eq!(taken, *expect_quick, "{shape}: quick path");
        }
    }

    // The issuer now publishes the impostor's key under k1, and a new key k2: a token of
    // k2 makes exgate fetch the new key set (unknown kid, after a second), and the forged
    // token, remembered as refused under the old set, is valid under the new one.
    let k2 = SigningKey::generate("k2");
    idp.publish(&[&impostor, &k2]);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let newcomer = k2.sign(&claims("user01@contoso.com", true));
    for gate in [&quick, &plain] {
        let (status, _) = raw_exchange(
            gate.addr(),
            ews(&bearer(&newcomer)).as_bytes(),
            Duration::from_millis(300),
        )
        .await;
        assert_eq!(status, 200, "the new key set is fetched");
        let before = quick_refusals(&gate.metrics().await);
        let (status, _) = raw_exchange(
            gate.addr(),
            ews(&bearer(&forged)).as_bytes(),
            Duration::from_millis(300),
        )
        .await;
        assert_eq!(status, 200, "a failure of the old key set refuses nothing");
        assert_eq!(quick_refusals(&gate.metrics().await), before);
    }
    assert_eq!(
        token_series(&quick.metrics().await),
        token_series(&plain.metrics().await)
    );

    // Only what the policy forwards reached Exchange, the same through both gates.
    let forwarded: Vec<Vec<String>> = upstreams
        .iter()
        .map(|u| u.requests().iter().map(|r| r.target.clone()).collect())
        .collect();
    assert_eq!(forwarded[0], forwarded[1]);
    assert_eq!(
        forwarded[0],
        [
            "/EWS/Exchange.asmx",
            "/EWS/Exchange.asmx",
            "/owa/",
            "/owa/",
            "/EWS/Exchange.asmx",
            "/EWS/Exchange.asmx"
        ]
    );
}

/// A forged token in a loop on one keep-alive connection: one RSA verification on
/// hyper's path, then every sending answered without hyper, none reaching Exchange.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forged_token_in_a_loop_is_answered_without_hyper() {
    let Setup { upstream, gate, .. } = Setup::start(ONLINE).await;
    let forged = SigningKey::generate("k1").sign(&claims("user01@contoso.com", true));
    let mut c = gate.client().await;
    for _ in 0..50 {
        let r = c
            .get("/EWS/Exchange.asmx", &[("authorization", &bearer(&forged))])
            .await;
        assert_eq!(r.status, 401);
        let challenge = r.header("www-authenticate").unwrap();
        assert!(challenge.contains("signature is invalid"), "{challenge}");
    }
    let metrics = gate.metrics().await;
    assert_eq!(quick_refusals(&metrics), 49);
    assert!(
        metrics.contains(r#"exgate_token_validations_total{result="bad_signature"} 50"#),
        "{metrics}"
    );
    assert!(upstream.requests().is_empty());
}
