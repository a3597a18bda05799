//! The mock identity provider: Entra ID with a Conditional Access policy "Mobile apps
//! and desktop clients require MFA", or AD FS with the access control policy "Permit
//! everyone and require MFA", over HTTPS. OpenID discovery for Entra's v1 and v2.0
//! endpoints (`/common/` or the tenant), JWKS, an authorize page, the token endpoint
//! ([`token`]: password and refresh-token grants, the lab's one-time code as the second
//! factor, claims challenges), and key rotation on demand. What MSAL for Python needs:
//! an authority `https://localhost:<port>/<tenant>` with `instance_discovery=False`.

mod entra;
#[cfg(test)]
mod tests;
mod token;

use std::collections::HashMap;
use std::convert::Infallible;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio_rustls::TlsAcceptor;

use super::console::steps::IdpOutcome;
use super::console::{Bus, Event};
use super::{Scenario, SharedKeys, TENANT, new_kid, save_keys};
use crate::config::TlsFiles;
use crate::token::mint::{SigningKey, jwks};

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
    /// Refresh tokens issued, and what each stands for (opaque, like Entra's).
    refresh_tokens: Mutex<HashMap<String, token::Grant>>,
    /// The lab console's: sign-ins and token requests are shown there.
    bus: Bus,
}

/// Entra's two token endpoints (Microsoft identity platform, "Access tokens": the token
/// version follows the resource, the id_token the endpoint).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Version {
    /// `/oauth2/token`: `resource=`, issuer `https://sts.windows.net/<tid>/`.
    V1,
    /// `/oauth2/v2.0/token`: `scope=`, issuer `https://login.microsoftonline.com/<tid>/v2.0`.
    V2,
}

/// Starts the identity provider on 127.0.0.1:0, serving HTTPS with `tls` (Entra and
/// AD FS serve nothing else, and MSAL refuses an `http://` authority).
pub async fn start(
    scenario: Scenario,
    keys: Vec<SigningKey>,
    dir: PathBuf,
    tls: &TlsFiles,
    bus: Bus,
) -> anyhow::Result<Idp> {
    let acceptor = TlsAcceptor::from(Arc::new(
        crate::config::tls::server_config(tls).map_err(|e| anyhow::anyhow!("{e}"))?,
    ));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("https://localhost:{}", listener.local_addr()?.port());
    let keys: SharedKeys = Arc::new(ArcSwap::from_pointee(keys));
    let state = Arc::new(State {
        scenario,
        url: url.clone(),
        keys: keys.clone(),
        dir,
        refresh_tokens: Mutex::new(HashMap::new()),
        bus,
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

/// The tenant a path segment names, as Entra reads it: `common` and `organizations`
/// stay as they are; the tenant id and its domains are the tenant id.
fn tenant_of(segment: &str) -> Option<&'static str> {
    const NAMES: [&str; 3] = [TENANT, "contoso.com", "contoso.onmicrosoft.com"];
    match segment.to_ascii_lowercase().as_str() {
        "common" => Some("common"),
        "organizations" => Some("organizations"),
        s if NAMES.contains(&s) => Some(TENANT),
        _ => None,
    }
}

async fn handle(state: &State, req: Request<Incoming>) -> Response<Full<Bytes>> {
    let path = req.uri().path().to_owned();
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let correlation = entra::correlation_id(&req);
    if let (&Method::POST, ["_lab", "rotate"]) = (req.method(), segments.as_slice()) {
        return rotate(state);
    }
    let Some((first, rest)) = segments.split_first() else {
        return not_found();
    };
    let Some(tenant) = tenant_of(first) else {
        return json(
            StatusCode::BAD_REQUEST,
            &entra::aad_error(
                "invalid_tenant",
                90002,
                &format!(
                    "Tenant '{first}' not found. Check to make sure you have the correct tenant ID and are signing into the correct cloud."
                ),
                &correlation,
            ),
        );
    };
    match (req.method().clone(), rest) {
        (Method::GET, [".well-known", "openid-configuration"]) => {
            discovery(state, tenant, Version::V1)
        }
        (Method::GET, ["v2.0", ".well-known", "openid-configuration"]) => {
            discovery(state, tenant, Version::V2)
        }
        (Method::GET, ["discovery", "keys"] | ["discovery", "v2.0", "keys"]) => {
            let keys = state.keys.load();
            let refs: Vec<&SigningKey> = keys.iter().collect();
            let mut res = Response::new(Full::new(Bytes::from(jwks(&refs))));
            res.headers_mut()
                .insert("content-type", "application/json".parse().expect("valid"));
            res
        }
        (Method::GET, ["oauth2", "authorize"] | ["oauth2", "v2.0", "authorize"]) => {
            let res = authorize_page(state);
            state.bus.publish(Event::from_idp(
                state.scenario,
                "GET",
                &path,
                None,
                res.status().as_u16(),
                IdpOutcome::SignInPage,
                Some("sign-in page".to_owned()),
            ));
            res
        }
        (Method::POST, ["oauth2", "token"] | ["oauth2", "v2.0", "token"]) => {
            let version = if rest.len() == 3 {
                Version::V2
            } else {
                Version::V1
            };
            match Limited::new(req.into_body(), 16 * 1024).collect().await {
                Ok(body) => {
                    let body = body.to_bytes();
                    let res = token::token(state, version, &body, &correlation);
                    show_token_request(state, &path, &body, res).await
                }
                Err(_) => json(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    &serde_json::json!({"error": "invalid_request"}),
                ),
            }
        }
        _ => not_found(),
    }
}

/// Shows a token request on the lab console: who (for tokens issued, the user the token
/// names; for a refused sign-in, the form's `username` — never its password or code) and
/// what came of it (tokens with their `amr`, the MFA demand, or the error code).
async fn show_token_request(
    state: &State,
    path: &str,
    form: &[u8],
    res: Response<Full<Bytes>>,
) -> Response<Full<Bytes>> {
    let (parts, body) = res.into_parts();
    let body = match body.collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(never) => match never {},
    };
    let answer: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
    let description = answer["error_description"].as_str().unwrap_or_default();
    let code = description.split(':').next().unwrap_or_default();
    let outcome = match (parts.status.as_u16(), code) {
        (200, _) if answer.get("access_token").is_some() => IdpOutcome::TokensIssued,
        (_, "AADSTS50076" | "MSIS7068") => IdpOutcome::MfaRequired,
        _ => IdpOutcome::Other,
    };
    let form = token::form(form);
    let field = |name: &str| form.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone());
    let (user, detail) = match outcome {
        IdpOutcome::TokensIssued => {
            let claims = super::token_claims(answer["access_token"].as_str().unwrap_or_default());
            let amr: Vec<&str> = claims["amr"]
                .as_array()
                .map(|a| a.iter().filter_map(|v| v.as_str()).collect())
                .unwrap_or_default();
            let user = ["upn", "unique_name", "preferred_username"]
                .iter()
                .find_map(|c| claims[*c].as_str())
                .map(str::to_owned);
            (
                user,
                Some(format!(
                    "access and refresh tokens issued (amr {})",
                    if amr.is_empty() {
                        "none".to_owned()
                    } else {
                        amr.join(",")
                    }
                )),
            )
        }
        // A refresh token's user is who it was issued to, not what the form says.
        _ if field("grant_type").as_deref() == Some("password") => (
            field("username"),
            (!code.is_empty()).then(|| code.to_owned()),
        ),
        _ => (None, (!code.is_empty()).then(|| code.to_owned())),
    };
    state.bus.publish(Event::from_idp(
        state.scenario,
        "POST",
        path,
        user,
        parts.status.as_u16(),
        outcome,
        detail,
    ));
    Response::from_parts(parts, Full::new(body))
}

fn not_found() -> Response<Full<Bytes>> {
    json(
        StatusCode::NOT_FOUND,
        &serde_json::json!({"error": "not_found"}),
    )
}

/// The issuer of `version` for `tenant`: a `{tenantid}` template under `/common/` and
/// `/organizations/`, as Entra publishes it there.
fn issuer(tenant: &str, version: Version) -> String {
    let tid = if tenant == TENANT {
        TENANT
    } else {
        "{tenantid}"
    };
    match version {
        Version::V1 => format!("https://sts.windows.net/{tid}/"),
        Version::V2 => format!("https://login.microsoftonline.com/{tid}/v2.0"),
    }
}

/// OpenID Connect Discovery 1.0 §3, with Entra's endpoint layout (Microsoft identity
/// platform, "OpenID Connect on the Microsoft identity platform").
fn discovery(state: &State, tenant: &str, version: Version) -> Response<Full<Bytes>> {
    let base = format!("{}/{tenant}", state.url);
    let (oauth2, keys, scopes) = match version {
        Version::V1 => ("oauth2", "discovery/keys", vec!["openid"]),
        Version::V2 => (
            "oauth2/v2.0",
            "discovery/v2.0/keys",
            vec!["openid", "profile", "email", "offline_access"],
        ),
    };
    json(
        StatusCode::OK,
        &serde_json::json!({
            "issuer": issuer(tenant, version),
            "authorization_endpoint": format!("{base}/{oauth2}/authorize"),
            "token_endpoint": format!("{base}/{oauth2}/token"),
            "jwks_uri": format!("{base}/{keys}"),
            "token_endpoint_auth_methods_supported": ["client_secret_post", "private_key_jwt", "client_secret_basic"],
            "response_modes_supported": ["query", "fragment", "form_post"],
            "response_types_supported": ["code", "id_token", "code id_token", "id_token token"],
            "subject_types_supported": ["pairwise"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "scopes_supported": scopes,
            "claims_supported": ["sub", "iss", "aud", "exp", "iat", "auth_time", "acr", "nonce", "preferred_username", "name", "tid", "ver", "oid", "upn", "unique_name", "amr"],
            "tenant_region_scope": "EU",
            "cloud_instance_name": "microsoftonline.com",
        }),
    )
}

fn authorize_page(state: &State) -> Response<Full<Bytes>> {
    let who = if state.scenario.mfa_by_adfs() {
        "AD FS (federated sign-in, access control policy: Permit everyone and require MFA)"
    } else {
        "Azure AD (Conditional Access: mobile apps and desktop clients require MFA)"
    };
    let mut res = Response::new(Full::new(Bytes::from(format!(
        "<html><body><h1>Sign in to your account</h1><p>{who}</p><p>Lab clients use the token endpoint: {}/common/oauth2/token (v1) or {}/common/oauth2/v2.0/token (v2.0, MSAL)</p></body></html>",
        state.url, state.url
    ))));
    res.headers_mut().insert(
        "content-type",
        "text/html; charset=utf-8".parse().expect("valid"),
    );
    res
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
