//! The token endpoint, v1 (`resource=`) and v2.0 (`scope=`): the password grant (RFC
//! 6749 §4.3) and the refresh-token grant (§6), the scenario's MFA with the lab's
//! one-time code (`mfa_code`, the lab's authenticator; MSAL sends it with `data=`), the
//! OpenID Connect claims request parameter (Core §5.5) as Conditional Access's claims
//! challenge, and the answers MSAL builds its cache from: a signed `id_token` and
//! `client_info` (Microsoft identity platform, "ID token claims reference").

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use bytes::Bytes;
use http_body_util::Full;
use hyper::{Response, StatusCode};

use super::entra::{ScopeError, aad_error, object_id, requested_acrs, resource_of};
use super::{State, Version, issuer, json};
use crate::lab::{LabUser, MFA_CODE, TENANT, find_user};
use crate::token::mint::{entra_v1_claims, mfa_at_adfs};

/// Exchange's resource id, named in Entra's AADSTS50076 text.
const EXCHANGE_APP_ID: &str = "00000002-0000-0ff1-ce00-000000000000";
/// The lab's Conditional Access policy "Mobile apps and desktop clients require MFA",
/// named in the claims challenge of AADSTS50076 (`capolids`).
const CA_POLICY_ID: &str = "4f1d2a3b-6c5e-4d7f-8a9b-0c1d2e3f4a5b";
/// Refresh tokens kept at most; past that every session is forgotten (the lab's
/// clients sign in again) rather than growing without bound.
const MAX_REFRESH_TOKENS: usize = 10_000;
/// Lifetime of the tokens issued, as Entra's default.
const LIFETIME_SECONDS: i64 = 3599;

/// What a refresh token stands for: who signed in (with MFA: the scenario allows no
/// other sign-in) and the client it was issued to.
pub(super) struct Grant {
    user: &'static LabUser,
    client_id: String,
}

fn bad_request(
    error: &str,
    code: u32,
    description: &str,
    correlation: &str,
) -> Response<Full<Bytes>> {
    json(
        StatusCode::BAD_REQUEST,
        &aad_error(error, code, description, correlation),
    )
}

pub(super) fn form(body: &[u8]) -> Vec<(String, String)> {
    let text = String::from_utf8_lossy(body).replace('+', " ");
    crate::policy::path::query_pairs(&text)
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

/// The token endpoint.
pub(super) fn token(
    state: &State,
    version: Version,
    body: &[u8],
    correlation: &str,
) -> Response<Full<Bytes>> {
    let fields = form(body);
    let get = |k: &str| {
        fields
            .iter()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.as_str())
            .filter(|v| !v.is_empty())
    };
    let grant_type = get("grant_type").unwrap_or_default();
    if !matches!(grant_type, "password" | "refresh_token") {
        return bad_request(
            "unsupported_grant_type",
            70003,
            &format!("The app requested an unsupported grant type '{grant_type}'."),
            correlation,
        );
    }
    let Some(client_id) = get("client_id") else {
        return bad_request(
            "invalid_request",
            900144,
            "The request body must contain the following parameter: 'client_id'.",
            correlation,
        );
    };
    let (resource, permissions) = match version {
        Version::V1 => (get("resource").unwrap_or_default().to_owned(), Vec::new()),
        Version::V2 => match resource_of(get("scope").unwrap_or_default()) {
            Ok(found) => found,
            Err(ScopeError::SeveralResources) => {
                return bad_request(
                    "invalid_scope",
                    28000,
                    "Provided value for the input parameter scope is not valid because it contains more than one resource.",
                    correlation,
                );
            }
            Err(ScopeError::NoResource) => {
                return bad_request(
                    "invalid_scope",
                    70011,
                    "The provided value for the input parameter 'scope' is not valid: the lab issues tokens for Exchange only.",
                    correlation,
                );
            }
        },
    };
    if resource != state.scenario.audience() {
        return bad_request(
            "invalid_resource",
            500011,
            &format!(
                "The resource principal named {resource} was not found in the tenant named {TENANT}."
            ),
            correlation,
        );
    }
    let acrs = match get("claims").map(requested_acrs) {
        None => None,
        Some(Ok(acrs)) => Some(acrs),
        Some(Err(())) => {
            return bad_request(
                "invalid_request",
                50117,
                "Failed to deserialize policy specified in the request's claim parameter.",
                correlation,
            );
        }
    };

    let user = if grant_type == "password" {
        let user = get("username").and_then(find_user);
        match user.filter(|u| get("password") == Some(u.password)) {
            Some(user) => user,
            None => {
                return bad_request(
                    "invalid_grant",
                    50126,
                    "Error validating credentials due to invalid username or password.",
                    correlation,
                );
            }
        }
    } else {
        let sessions = state.refresh_tokens.lock().expect("not poisoned");
        match get("refresh_token").and_then(|t| sessions.get(t)) {
            Some(grant) if grant.client_id == client_id => grant.user,
            Some(_) => {
                return bad_request(
                    "invalid_grant",
                    70000,
                    "Provided grant is invalid or malformed: the refresh token was issued to another client.",
                    correlation,
                );
            }
            None => {
                return bad_request(
                    "invalid_grant",
                    9002313,
                    "Invalid request. Request is malformed or invalid.",
                    correlation,
                );
            }
        }
    };
    // A sign-in always meets the scenario's MFA rule; a refresh carries the MFA of its
    // sign-in, except under a claims challenge, which the lab answers as a step-up:
    // the code again, in this very request.
    if (grant_type == "password" || acrs.is_some()) && get("mfa_code") != Some(MFA_CODE) {
        return mfa_required(state, version, correlation);
    }
    let issued = Issued {
        version,
        user,
        client_id,
        resource: &resource,
        permissions: &permissions,
        acrs: acrs.as_deref().unwrap_or_default(),
        nonce: get("nonce"),
        scope: get("scope").unwrap_or_default(),
        client_info: get("client_info") == Some("1"),
    };
    issue(state, &issued)
}

/// The scenario's refusal of a sign-in without the second factor: Conditional Access's
/// AADSTS50076 (v1: `interaction_required`; v2.0: `invalid_grant` with
/// `suberror: basic_action`; both with the claims naming the policy), or the AD FS
/// access control policy's MSIS7068.
fn mfa_required(state: &State, version: Version, correlation: &str) -> Response<Full<Bytes>> {
    if state.scenario.mfa_by_adfs() {
        return json(
            StatusCode::BAD_REQUEST,
            &serde_json::json!({
                "error": "interaction_required",
                "error_description": "MSIS7068: Access denied. The access control policy 'Permit everyone and require MFA' of the relying party 'Microsoft Office 365 Identity Platform' requires multi-factor authentication.",
            }),
        );
    }
    let error = match version {
        Version::V1 => "interaction_required",
        Version::V2 => "invalid_grant",
    };
    let mut body = aad_error(
        error,
        50076,
        &format!(
            "Due to a configuration change made by your administrator, or because you moved to a new location, you must use multi-factor authentication to access '{EXCHANGE_APP_ID}'."
        ),
        correlation,
    );
    body["claims"] = serde_json::json!(
        serde_json::json!({"access_token": {"capolids": {"essential": true, "values": [CA_POLICY_ID]}}})
            .to_string()
    );
    if version == Version::V2 {
        body["suberror"] = serde_json::json!("basic_action");
    }
    json(StatusCode::BAD_REQUEST, &body)
}

/// What a successful request gets tokens for.
struct Issued<'a> {
    version: Version,
    user: &'static LabUser,
    client_id: &'a str,
    resource: &'a str,
    /// v2.0: the permissions asked for (`EWS.AccessAsUser.All`, `.default`).
    permissions: &'a [String],
    /// Authentication-context ids the claims challenge asked for.
    acrs: &'a [String],
    nonce: Option<&'a str>,
    /// The request's `scope` (`openid` asks for an id_token).
    scope: &'a str,
    client_info: bool,
}

fn now() -> i64 {
    i64::try_from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()),
    )
    .unwrap_or(0)
}

/// The id_token (OpenID Connect Core §2; Entra's v1 or v2.0 claims): `aud` is the
/// client, `sub` pairwise per client, `nonce` echoed.
fn id_token_claims(i: &Issued<'_>) -> serde_json::Value {
    let now = now();
    let oid = object_id(i.user.upn);
    let digest = aws_lc_rs::digest::digest(
        &aws_lc_rs::digest::SHA256,
        format!("{oid}/{}", i.client_id).as_bytes(),
    );
    let mut claims = serde_json::json!({
        "aud": i.client_id,
        "iss": issuer(TENANT, i.version),
        "iat": now,
        "nbf": now,
        "exp": now + LIFETIME_SECONDS,
        "name": crate::lab::mailbox::display_name(i.user),
        "oid": oid,
        "sub": URL_SAFE_NO_PAD.encode(digest.as_ref()),
        "tid": TENANT,
    });
    match i.version {
        Version::V1 => {
            claims["upn"] = i.user.upn.into();
            claims["unique_name"] = i.user.upn.into();
            claims["ver"] = "1.0".into();
        }
        Version::V2 => {
            claims["preferred_username"] = i.user.upn.into();
            claims["ver"] = "2.0".into();
        }
    }
    if let Some(nonce) = i.nonce {
        claims["nonce"] = nonce.into();
    }
    claims
}

/// The token response: a v1 access token for Exchange (its resource accepts v1 tokens,
/// whichever endpoint is asked), a refresh token, and, when asked, an id_token and
/// `client_info` (`{"uid": oid, "utid": tid}`, which MSAL keys its accounts on).
fn issue(state: &State, i: &Issued<'_>) -> Response<Full<Bytes>> {
    let keys = state.keys.load();
    let Some(key) = keys.first() else {
        return json(
            StatusCode::SERVICE_UNAVAILABLE,
            &serde_json::json!({"error": "temporarily_unavailable"}),
        );
    };
    let oid = object_id(i.user.upn);
    let mut access = entra_v1_claims(TENANT, i.resource, i.user.upn, true, LIFETIME_SECONDS);
    access["appid"] = i.client_id.into();
    access["oid"] = oid.clone().into();
    // Entra's unique token identifier: no two tokens alike, even within a second.
    access["uti"] = crate::lab::random_hex(11).into();
    if !i.permissions.is_empty() && !i.permissions.iter().any(|p| p == ".default") {
        access["scp"] = i.permissions.join(" ").into();
    }
    if !i.acrs.is_empty() {
        access["acrs"] = serde_json::json!(i.acrs);
    }
    if state.scenario.mfa_by_adfs() {
        mfa_at_adfs(&mut access);
    }
    let refresh_token = format!("lab-rt.{}", crate::lab::random_hex(32));
    {
        let mut sessions = state.refresh_tokens.lock().expect("not poisoned");
        if sessions.len() >= MAX_REFRESH_TOKENS {
            sessions.clear();
        }
        sessions.insert(
            refresh_token.clone(),
            Grant {
                user: i.user,
                client_id: i.client_id.to_owned(),
            },
        );
    }
    let mut body = serde_json::json!({
        "token_type": "Bearer",
        "access_token": key.sign(&access),
        "refresh_token": refresh_token,
    });
    match i.version {
        Version::V1 => {
            let now = now();
            body["scope"] = access["scp"].clone();
            body["expires_in"] = LIFETIME_SECONDS.to_string().into();
            body["ext_expires_in"] = LIFETIME_SECONDS.to_string().into();
            body["expires_on"] = (now + LIFETIME_SECONDS).to_string().into();
            body["not_before"] = now.to_string().into();
            body["resource"] = i.resource.into();
        }
        Version::V2 => {
            let granted: Vec<String> = i
                .permissions
                .iter()
                .map(|p| format!("{}/{p}", i.resource))
                .collect();
            body["scope"] = granted.join(" ").into();
            body["expires_in"] = LIFETIME_SECONDS.into();
            body["ext_expires_in"] = LIFETIME_SECONDS.into();
        }
    }
    if i.scope.split(' ').any(|s| s == "openid") {
        body["id_token"] = key.sign(&id_token_claims(i)).into();
    }
    if i.client_info {
        let info = serde_json::json!({"uid": oid, "utid": TENANT});
        body["client_info"] = URL_SAFE_NO_PAD.encode(info.to_string()).into();
    }
    json(StatusCode::OK, &body)
}
