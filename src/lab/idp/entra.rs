//! What the lab's identity provider shares with Entra ID's token endpoint: error bodies
//! (Microsoft identity platform, "Error response"), ids in Entra's form, and how a v2.0
//! `scope` and a claims request (OpenID Connect Core §5.5) are read.

use hyper::Request;

/// The `client-request-id` MSAL sends, which Entra returns as the correlation id; a
/// fresh id without one.
pub(super) fn correlation_id(req: &Request<hyper::body::Incoming>) -> String {
    req.headers()
        .get("client-request-id")
        .and_then(|v| v.to_str().ok())
        .filter(|v| v.len() <= 64 && v.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'))
        .map_or_else(uuid, str::to_owned)
}

/// A random id in the 8-4-4-4-12 form Entra's ids have.
fn uuid() -> String {
    format_uuid(crate::lab::random_hex(16).as_bytes())
}

fn format_uuid(hex: &[u8]) -> String {
    let h = String::from_utf8_lossy(&hex[..32]).into_owned();
    format!(
        "{}-{}-{}-{}-{}",
        &h[..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

/// A user's object id: stable across restarts, distinct per user.
pub(super) fn object_id(upn: &str) -> String {
    let digest = aws_lc_rs::digest::digest(
        &aws_lc_rs::digest::SHA256,
        format!("exgate-lab/{}", upn.to_ascii_lowercase()).as_bytes(),
    );
    let hex: String = digest.as_ref().iter().map(|b| format!("{b:02x}")).collect();
    format_uuid(hex.as_bytes())
}

/// An Entra token-endpoint error (Microsoft identity platform, "Error response": `error`,
/// `error_description` beginning `AADSTS<code>:`, `error_codes`, `timestamp`, `trace_id`,
/// `correlation_id`, `error_uri`).
pub(super) fn aad_error(
    error: &str,
    code: u32,
    description: &str,
    correlation: &str,
) -> serde_json::Value {
    let ts = crate::audit::timestamp();
    let timestamp = format!("{}Z", ts[..19].replace('T', " "));
    let trace = uuid();
    serde_json::json!({
        "error": error,
        "error_description": format!("AADSTS{code}: {description} Trace ID: {trace} Correlation ID: {correlation} Timestamp: {timestamp}"),
        "error_codes": [code],
        "timestamp": timestamp,
        "trace_id": trace,
        "correlation_id": correlation,
        "error_uri": format!("https://login.microsoftonline.com/error?code={code}"),
    })
}

/// The scopes OpenID Connect and Entra add to every request, which name no resource.
const OIDC_SCOPES: [&str; 4] = ["openid", "profile", "offline_access", "email"];

/// Why a v2.0 `scope` names no usable resource.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum ScopeError {
    /// Only OpenID scopes (Entra would issue a Microsoft Graph token).
    NoResource,
    /// Scopes of two resources in one request (AADSTS28000).
    SeveralResources,
}

/// The resource a v2.0 `scope` names (`<resource>/<permission>`, `<resource>/.default`)
/// and its permissions (Microsoft identity platform, "Scopes and permissions").
pub(super) fn resource_of(scope: &str) -> Result<(String, Vec<String>), ScopeError> {
    let mut resource: Option<&str> = None;
    let mut permissions = Vec::new();
    for s in scope.split(' ').filter(|s| !s.is_empty()) {
        if OIDC_SCOPES.contains(&s) {
            continue;
        }
        let (r, p) = s.rsplit_once('/').unwrap_or(("", s));
        match resource {
            Some(known) if known != r => return Err(ScopeError::SeveralResources),
            _ => resource = Some(r),
        }
        permissions.push(p.to_owned());
    }
    match resource {
        Some(r) if !r.is_empty() => Ok((r.to_owned(), permissions)),
        _ => Err(ScopeError::NoResource),
    }
}

/// The authentication-context ids a claims request asks of the access token (`acrs`,
/// `value` or `values`); Err when it is not a JSON object (AADSTS50117).
pub(super) fn requested_acrs(claims: &str) -> Result<Vec<String>, ()> {
    let value: serde_json::Value = serde_json::from_str(claims).map_err(|_| ())?;
    if !value.is_object() {
        return Err(());
    }
    let acrs = &value["access_token"]["acrs"];
    let mut ids: Vec<String> = acrs["values"]
        .as_array()
        .into_iter()
        .flatten()
        .chain(std::iter::once(&acrs["value"]))
        .filter_map(|v| v.as_str().map(str::to_owned))
        .collect();
    ids.dedup();
    Ok(ids)
}
