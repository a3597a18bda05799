//! Header rewriting at the proxy boundary: hop-by-hop removal (RFC 9110 §7.6.1),
//! `X-Forwarded-*`, the Bearer challenge, and stripping legacy challenges from Exchange's
//! 401s. Pure functions over `HeaderMap`.

use std::net::IpAddr;

use hyper::header::{self, HeaderMap, HeaderName, HeaderValue};

use crate::config::ChallengeConfig;

/// Headers that describe one hop and never cross the proxy.
const HOP_BY_HOP: [&str; 8] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "upgrade",
];

/// Removes hop-by-hop headers, including those the `Connection` header names.
/// `Transfer-Encoding` goes too: hyper re-frames the body on each side.
pub fn remove_hop_by_hop(headers: &mut HeaderMap) {
    // One scan of the (few) headers present instead of a lookup per hop-by-hop name.
    let present = headers
        .keys()
        .any(|k| *k == header::TRANSFER_ENCODING || HOP_BY_HOP.contains(&k.as_str()));
    if !present {
        return;
    }
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|name| HeaderName::from_bytes(name.trim().as_bytes()).ok())
        .collect();
    for name in named {
        headers.remove(name);
    }
    for name in HOP_BY_HOP {
        headers.remove(name);
    }
    headers.remove(header::TRANSFER_ENCODING);
}

/// The bytes [`write_fields`] writes for `headers`.
pub fn fields_len(headers: &HeaderMap) -> usize {
    headers
        .iter()
        .map(|(n, v)| n.as_str().len() + v.len() + 4)
        .sum()
}

/// Writes each field as `name: value` CRLF (RFC 9112 §5), in the map's order, names as
/// the map holds them (lower case).
pub fn write_fields(out: &mut Vec<u8>, headers: &HeaderMap) {
    for (name, value) in headers {
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
}

const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");

/// The client's address as a header value, built once per connection.
pub fn client_address(client: IpAddr) -> HeaderValue {
    HeaderValue::from_str(&client.to_string()).expect("an IP address is visible ASCII")
}

/// Appends the client's address (from [`client_address`]) to `X-Forwarded-For` and the
/// scheme it used to `X-Forwarded-Proto`, keeping what earlier proxies wrote.
pub fn append_forwarded(headers: &mut HeaderMap, client: &HeaderValue, https: bool) {
    let proto = HeaderValue::from_static(if https { "https" } else { "http" });
    append_list(headers, X_FORWARDED_FOR, client);
    append_list(headers, X_FORWARDED_PROTO, &proto);
}

/// One hash lookup (the entry) instead of a `get` and an `insert`, since the field is
/// absent from almost every request (−0.5% of an anonymous request's instructions).
fn append_list(headers: &mut HeaderMap, name: HeaderName, item: &HeaderValue) {
    match headers.entry(name) {
        hyper::header::Entry::Vacant(entry) => {
            entry.insert(item.clone());
        }
        hyper::header::Entry::Occupied(mut entry) => {
            let joined = match entry.get().to_str() {
                Ok(existing) if !existing.trim().is_empty() => {
                    let item = item.to_str().unwrap_or_default();
                    // Only ASCII addresses and schemes are appended to a visible-ASCII
                    // value.
                    match HeaderValue::from_str(&format!("{existing}, {item}")) {
                        Ok(v) => v,
                        Err(_) => return,
                    }
                }
                _ => item.clone(),
            };
            // Replaces every line of the field, as the insert did.
            entry.insert(joined);
        }
    }
}

/// The Bearer challenge Exchange sends, from `[exchange.challenge]`.
pub fn bearer_challenge(c: &ChallengeConfig) -> HeaderValue {
    let text = format!(
        "Bearer client_id=\"{}\", trusted_issuers=\"{}\", token_types=\"{}\", authorization_uri=\"{}\"",
        c.client_id, c.trusted_issuers, c.token_types, c.authorization_uri
    );
    HeaderValue::from_str(&text).expect("challenge parameters are validated ASCII without quotes")
}

/// Removes every challenge but `Bearer` from a 401's `WWW-Authenticate` headers (which
/// may join several challenges with commas) — `Basic`, `NTLM`, `Negotiate`, IIS 10's
/// `Nego2`, `Kerberos`, `Digest` and any scheme not yet invented: an allowlist, not a
/// denylist (SPEC §6) — and adds the Bearer challenge when none is left.
pub fn strip_legacy_challenges(headers: &mut HeaderMap, bearer: &HeaderValue) {
    let values: Vec<HeaderValue> = headers
        .get_all(header::WWW_AUTHENTICATE)
        .iter()
        .cloned()
        .collect();
    headers.remove(header::WWW_AUTHENTICATE);
    let mut has_bearer = false;
    for value in values {
        let Ok(text) = value.to_str() else {
            continue; // not text: not a challenge we can vouch for
        };
        let kept: Vec<&str> = split_challenges(text)
            .into_iter()
            .filter(|c| scheme_of(c).eq_ignore_ascii_case("bearer"))
            .collect();
        if kept.is_empty() {
            continue;
        }
        has_bearer = true;
        if let Ok(v) = HeaderValue::from_str(&kept.join(", ")) {
            headers.append(header::WWW_AUTHENTICATE, v);
        }
    }
    if !has_bearer {
        headers.append(header::WWW_AUTHENTICATE, bearer.clone());
    }
}

fn scheme_of(challenge: &str) -> &str {
    challenge.split([' ', '\t']).next().unwrap_or("")
}

/// Splits a `WWW-Authenticate` value into its challenges (RFC 9110 §11.6.1): commas
/// separate both challenges and their parameters, so a new challenge starts at an element
/// that begins with a token not followed by `=`.
pub fn split_challenges(value: &str) -> Vec<&str> {
    let mut elements = Vec::new();
    let (mut start, mut quoted, mut escaped) = (0, false, false);
    for (i, c) in value.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            ',' if !quoted => {
                elements.push((start, i));
                start = i + 1;
            }
            _ => {}
        }
    }
    elements.push((start, value.len()));

    let mut challenges: Vec<(usize, usize)> = Vec::new();
    for (s, e) in elements {
        let element = value[s..e].trim();
        if element.is_empty() {
            continue;
        }
        if starts_challenge(element) || challenges.is_empty() {
            challenges.push((s, e));
        } else if let Some(last) = challenges.last_mut() {
            last.1 = e;
        }
    }
    challenges
        .into_iter()
        .map(|(s, e)| value[s..e].trim())
        .collect()
}

/// `Scheme`, `Scheme param=…` or `Scheme token68` starts a challenge; `param=…` does not.
fn starts_challenge(element: &str) -> bool {
    let first = element.split([' ', '\t']).next().unwrap_or("");
    let rest = element[first.len()..].trim_start();
    !first.contains('=') && !rest.starts_with('=')
}

#[cfg(test)]
#[path = "headers_tests.rs"]
mod tests;
