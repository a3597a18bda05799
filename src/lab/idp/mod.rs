//! The mock identity provider: Entra ID with a Conditional Access policy "Mobile apps
//! and desktop clients require MFA", or AD FS with the access control policy "Permit
//! everyone and require MFA". OpenID discovery, JWKS, a token endpoint (password grant,
//! with the lab's one-time code as the second factor), and key rotation on demand.

use std::convert::Infallible;
use std::path::PathBuf;
use std::sync::Arc;

use arc_swap::ArcSwap;
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio_rustls::TlsAcceptor;

use super::{MFA_CODE, Scenario, SharedKeys, TENANT, find_user, new_kid, save_keys};
use crate::config::TlsFiles;
use crate::token::mint::{SigningKey, entra_v1_claims, jwks, mfa_at_adfs};

/// A running identity provider.
pub struct Idp {
    pub url: String,
    pub keys: SharedKeys,
}

struct State {
    scenario: Scenario,
    url: String,
    keys: SharedKeys,
    dir: PathBuf,
}

/// Starts the identity provider on 127.0.0.1:0, serving HTTPS with `tls` (Entra and
/// AD FS serve nothing else, and MSAL refuses an `http://` authority).
pub async fn start(
    scenario: Scenario,
    keys: Vec<SigningKey>,
    dir: PathBuf,
    tls: &TlsFiles,
) -> anyhow::Result<Idp> {
    let acceptor = TlsAcceptor::from(Arc::new(crate::proxy::tls::server_config(tls)?));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("https://localhost:{}", listener.local_addr()?.port());
    let keys: SharedKeys = Arc::new(ArcSwap::from_pointee(keys));
    let state = Arc::new(State {
        scenario,
        url: url.clone(),
        keys: keys.clone(),
        dir,
    });
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let (state, acceptor) = (state.clone(), acceptor.clone());
            tokio::spawn(async move {
                let Ok(stream) = acceptor.accept(stream).await else {
                    return;
                };
                let service = hyper::service::service_fn(move |req| {
                    let state = state.clone();
                    async move { Ok::<_, Infallible>(handle(&state, req).await) }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    Ok(Idp { url, keys })
}

fn json(status: StatusCode, value: &serde_json::Value) -> Response<Full<Bytes>> {
    let mut res = Response::new(Full::new(Bytes::from(value.to_string())));
    *res.status_mut() = status;
    res.headers_mut().insert(
        "content-type",
        "application/json; charset=utf-8".parse().expect("valid"),
    );
    res
}

async fn handle(state: &State, req: Request<Incoming>) -> Response<Full<Bytes>> {
    let path = req.uri().path().to_owned();
    match (req.method().clone(), path.as_str()) {
        (Method::GET, p) if p.ends_with("/.well-known/openid-configuration") => json(
            StatusCode::OK,
            &serde_json::json!({
                "issuer": format!("https://sts.windows.net/{TENANT}/"),
                "authorization_endpoint": format!("{}/common/oauth2/authorize", state.url),
                "token_endpoint": format!("{}/common/oauth2/token", state.url),
                "jwks_uri": format!("{}/common/discovery/keys", state.url),
                "token_endpoint_auth_methods_supported": ["client_secret_post", "private_key_jwt"],
                "response_types_supported": ["code", "id_token", "code id_token", "token id_token", "token"],
                "tenant_region_scope": "EU",
            }),
        ),
        (Method::GET, "/common/discovery/keys") => {
            let keys = state.keys.load();
            let refs: Vec<&SigningKey> = keys.iter().collect();
            let mut res = Response::new(Full::new(Bytes::from(jwks(&refs))));
            res.headers_mut()
                .insert("content-type", "application/json".parse().expect("valid"));
            res
        }
        (Method::GET, "/common/oauth2/authorize") => {
            let who = if state.scenario.mfa_by_adfs() {
                "AD FS (federated sign-in, access control policy: Permit everyone and require MFA)"
            } else {
                "Azure AD (Conditional Access: mobile apps and desktop clients require MFA)"
            };
            let mut res = Response::new(Full::new(Bytes::from(format!(
                "<html><body><h1>Sign in to your account</h1><p>{who}</p><p>Lab clients use the token endpoint: {}/common/oauth2/token</p></body></html>",
                state.url
            ))));
            res.headers_mut().insert(
                "content-type",
                "text/html; charset=utf-8".parse().expect("valid"),
            );
            res
        }
        (Method::POST, "/common/oauth2/token") => {
            let body = match Limited::new(req.into_body(), 16 * 1024).collect().await {
                Ok(b) => b.to_bytes(),
                Err(_) => {
                    return json(
                        StatusCode::PAYLOAD_TOO_LARGE,
                        &serde_json::json!({"error": "invalid_request"}),
                    );
                }
            };
            token(state, &body)
        }
        (Method::POST, "/_lab/rotate") => rotate(state),
        _ => json(
            StatusCode::NOT_FOUND,
            &serde_json::json!({"error": "not_found"}),
        ),
    }
}

fn form(body: &[u8]) -> Vec<(String, String)> {
    let text = String::from_utf8_lossy(body).replace('+', " ");
    crate::policy::path::query_pairs(&text)
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

fn aad_error(error: &str, code: u32, description: &str) -> Response<Full<Bytes>> {
    json(
        StatusCode::BAD_REQUEST,
        &serde_json::json!({
            "error": error,
            "error_description": format!("AADSTS{code}: {description}"),
            "error_codes": [code],
        }),
    )
}

/// The token endpoint: password grant, then the second factor the scenario demands.
fn token(state: &State, body: &[u8]) -> Response<Full<Bytes>> {
    let fields = form(body);
    let get = |k: &str| fields.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
    if get("grant_type") != Some("password") {
        return aad_error(
            "unsupported_grant_type",
            70003,
            "The app requested an unsupported grant type 'password' only.",
        );
    }
    let resource = get("resource").unwrap_or_default();
    if resource != state.scenario.audience() {
        return aad_error(
            "invalid_resource",
            500011,
            &format!("The resource principal named {resource} was not found in the tenant."),
        );
    }
    let user = get("username").and_then(find_user);
    let Some(user) = user.filter(|u| get("password") == Some(u.password)) else {
        return aad_error(
            "invalid_grant",
            50126,
            "Error validating credentials due to invalid username or password.",
        );
    };
    if get("mfa_code") != Some(MFA_CODE) {
        return if state.scenario.mfa_by_adfs() {
            json(
                StatusCode::BAD_REQUEST,
                &serde_json::json!({
                    "error": "interaction_required",
                    "error_description": "MSIS7068: Access denied. The access control policy 'Permit everyone and require MFA' of the relying party 'Microsoft Office 365 Identity Platform' requires multi-factor authentication.",
                }),
            )
        } else {
            aad_error(
                "interaction_required",
                50076,
                "Due to a configuration change made by your administrator, or because you moved to a new location, you must use multi-factor authentication to access '00000002-0000-0ff1-ce00-000000000000'.",
            )
        };
    }
    let mut claims = entra_v1_claims(TENANT, resource, user.upn, true, 3599);
    if state.scenario.mfa_by_adfs() {
        mfa_at_adfs(&mut claims);
    }
    let keys = state.keys.load();
    let Some(key) = keys.first() else {
        return json(
            StatusCode::SERVICE_UNAVAILABLE,
            &serde_json::json!({"error": "temporarily_unavailable"}),
        );
    };
    json(
        StatusCode::OK,
        &serde_json::json!({
            "token_type": "Bearer",
            "scope": "EWS.AccessAsUser.All",
            "expires_in": "3599",
            "resource": resource,
            "access_token": key.sign(&claims),
            "refresh_token": format!("lab-refresh-{}", super::random_hex(16)),
        }),
    )
}

/// Publishes a new signing key and signs with it; the previous key stays published
/// until the next rotation (as Entra rolls keys over), older ones are dropped.
fn rotate(state: &State) -> Response<Full<Bytes>> {
    let new = SigningKey::generate(&new_kid());
    let kid = new.kid().to_owned();
    let current = state.keys.load();
    let mut next = vec![new];
    if let Some(previous) = current.first() {
        next.extend(SigningKey::from_pkcs8(previous.kid(), previous.pkcs8()));
    }
    if let Err(e) = save_keys(&state.dir, &next) {
        return json(
            StatusCode::INTERNAL_SERVER_ERROR,
            &serde_json::json!({"error": e.to_string()}),
        );
    }
    state.keys.store(Arc::new(next));
    json(StatusCode::OK, &serde_json::json!({"kid": kid}))
}
