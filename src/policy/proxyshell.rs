//! The ProxyShell guard (SPEC §2): ProxyShell (CVE-2021-34473), ProxyNotShell
//! (CVE-2022-41040) and the published bypasses of Microsoft's URL-rewrite mitigations all
//! lean on Exchange treating any path that *contains* `autodiscover.json` as Autodiscover
//! v2 and reading an `Email` value from the query, a form body or a cookie. Pure checks
//! over the decoded path, the query and the request facts.

use std::borrow::Cow;

use super::context::RequestFacts;
use super::path::{hex_value, is_control, percent_decode_lenient, query_pairs};

/// The file name Exchange treats as Autodiscover v2 wherever a path contains it.
pub(super) const AUTODISCOVER_JSON: &str = "autodiscover.json";

/// The only places `autodiscover.json` may appear in a path (SPEC §2):
/// `/autodiscover/autodiscover.json` and `/autodiscover/autodiscover.json/v1.0/<one plain
/// address>`, spelled plainly — no `.`/`..` segments, `\`, or repeated `/` that would let
/// the path Exchange's front end matches differ from the one exgate classified.
pub(super) fn is_autodiscover_v2_path(decoded: &str, normalized: &str) -> bool {
    let plain = decoded.len() == normalized.len()
        && decoded
            .bytes()
            .zip(normalized.bytes())
            .all(|(a, b)| a.to_ascii_lowercase() == b);
    let mut segments = normalized.split('/').filter(|s| !s.is_empty());
    let shape = match (
        segments.next(),
        segments.next(),
        segments.next(),
        segments.next(),
    ) {
        (Some("autodiscover"), Some(AUTODISCOVER_JSON), None, None) => true,
        (Some("autodiscover"), Some(AUTODISCOVER_JSON), Some("v1.0"), Some(address)) => {
            is_plain_address(address)
        }
        _ => false,
    };
    plain && shape && segments.next().is_none()
}

/// ProxyShell (CVE-2021-34473) and ProxyNotShell (CVE-2022-41040) routed
/// `/autodiscover/autodiscover.json?@x/<backend path>&Email=autodiscover/autodiscover.json%3F@x`
/// to the backend path. On any path, a query that mentions `autodiscover.json`, however
/// often percent-encoded, is refused, and so is one still decoding after
/// [`MAX_DECODE_ROUNDS`] rounds. On an Autodiscover v2 path a legitimate query carries
/// `Email=<one address>`, `Protocol=…` and `RedirectCount=…`: an `@` outside a
/// plain-address `Email=`, an `Email=` that is not one plain address, or a key holding a
/// path character is refused.
pub(super) fn proxyshell_query(autodiscover_v2: bool, query: &str) -> bool {
    if query.is_empty() {
        return false;
    }
    if mentions_autodiscover_json(query) {
        return true;
    }
    if !autodiscover_v2 {
        return false;
    }
    let mut emails = 0;
    query_pairs(query).any(|(key, value)| {
        if key.eq_ignore_ascii_case("email") {
            // ASP.NET joins a repeated parameter with commas: not one address.
            emails += 1;
            emails > 1 || !is_plain_address(&value)
        } else {
            key.contains(['@', '/', '\\']) || value.contains('@')
        }
    })
}

/// Decoding rounds a query may need before it stops changing. Clients encode once, and a
/// proxy or script in between perhaps once or twice more; each round reads the whole query,
/// and a `%252525…` query has a layer per two bytes (32 000 in a 64 KiB request line).
const MAX_DECODE_ROUNDS: usize = 8;

/// The query names `autodiscover.json`, however many times it was percent-encoded,
/// `%uXXXX` escapes included (ASP.NET decodes them in a query) — or it is still decoding
/// after [`MAX_DECODE_ROUNDS`] rounds, which no client sends: refused unread rather than
/// followed layer by layer at a cost quadratic in its length.
fn mentions_autodiscover_json(query: &str) -> bool {
    let mut text = Cow::Borrowed(query);
    for _ in 0..=MAX_DECODE_ROUNDS {
        if contains_ignore_ascii_case(&text, AUTODISCOVER_JSON) {
            return true;
        }
        match decode_for_match(&text) {
            Some(decoded) => text = Cow::Owned(decoded),
            None => return false,
        }
    }
    true
}

/// One lenient decode of `%XX` and `%uXXXX`; None when there is nothing to decode.
fn decode_for_match(s: &str) -> Option<String> {
    if !s.contains('%') {
        return None;
    }
    let b = s.as_bytes();
    let hex4 = |i: usize| {
        let digits = b.get(i..i + 4)?;
        let text = std::str::from_utf8(digits).ok()?;
        u32::from_str_radix(text, 16).ok().and_then(char::from_u32)
    };
    let mut out = String::with_capacity(s.len());
    let mut i = 0;
    while i < b.len() {
        match (b[i], b.get(i + 1), b.get(i + 2)) {
            (b'%', Some(b'u' | b'U'), _) if hex4(i + 2).is_some() => {
                out.extend(hex4(i + 2));
                i += 6;
            }
            (b'%', Some(&h), Some(&l)) if h.is_ascii_hexdigit() && l.is_ascii_hexdigit() => {
                out.push(char::from(hex_value(h) << 4 | hex_value(l)));
                i += 3;
            }
            _ => {
                let ch = s[i..].chars().next().unwrap_or('\u{fffd}');
                out.push(ch);
                i += ch.len_utf8();
            }
        }
    }
    (out != s).then_some(out)
}

/// What else Exchange reads an `Email` from on an Autodiscover v2 path (SPEC §2):
/// refused when the request is not a GET or HEAD (when the method is known), has a body
/// (a form `Email=`), or carries any `Email` cookie.
pub fn autodiscover_v2_request_refused(request: &RequestFacts<'_>) -> bool {
    let method_refused = request.method.is_some_and(|m| m != "GET" && m != "HEAD");
    method_refused || request.has_body || request.cookies.iter().any(|c| has_email_cookie(c))
}

/// A `Cookie` header value (RFC 6265 §4.2.1, `name=value; name=value`) holding a cookie
/// whose name, percent-decoded and stripped of blanks and quotes, is `Email` in any case.
fn has_email_cookie(header: &[u8]) -> bool {
    header.split(|b| *b == b';').any(|pair| {
        let name = pair.split(|b| *b == b'=').next().unwrap_or_default();
        let name = String::from_utf8_lossy(name.trim_ascii());
        let name = percent_decode_lenient(&name);
        name.trim_matches(|c: char| c == '"' || c.is_whitespace())
            .eq_ignore_ascii_case("email")
    })
}

/// One address: exactly one `@` with text on both sides, and no character that could
/// make it a path, a second parameter or another encoding.
fn is_plain_address(s: &str) -> bool {
    let Some((local, domain)) = s.split_once('@') else {
        return false;
    };
    !local.is_empty()
        && !domain.is_empty()
        && !domain.contains('@')
        && !s
            .bytes()
            .any(|b| b.is_ascii_whitespace() || is_control(b) || b"/\\?#%&:;".contains(&b))
}

/// Whether `needle` (ASCII) occurs in `haystack`, ignoring ASCII case.
pub(super) fn contains_ignore_ascii_case(haystack: &str, needle: &str) -> bool {
    haystack
        .as_bytes()
        .windows(needle.len())
        .any(|w| w.eq_ignore_ascii_case(needle.as_bytes()))
}
