//! Request-target normalization and protocol classification (SPEC §2).
//!
//! Classification works on a normalized copy of the path so that `/MAPI/`, `/mapi//`,
//! `/ews/../mapi/` and `/%6Dapi/` all land on the same protocol; the request itself is
//! forwarded with its original target. Anything that two parsers could read two ways
//! (the raw path and IIS's view of it) is rejected rather than guessed.

use std::borrow::Cow;

use super::protocol::Protocol;
use super::proxyshell::{
    AUTODISCOVER_JSON, contains_ignore_ascii_case, is_autodiscover_v2_path, proxyshell_query,
};

/// Why a request target was refused with 400 before any policy was consulted.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TargetError {
    /// The target is neither origin-form (`/…`), absolute-form (`http://…/…`) nor `*`.
    #[error("request target is not a path")]
    NotAPath,
    /// A `..` segment climbs above the root.
    #[error("path escapes the root")]
    EscapesRoot,
    /// A NUL or other control byte, raw or percent-encoded.
    #[error("path contains a control byte")]
    ControlByte,
    /// An IIS-style `%uXXXX` escape.
    #[error("path contains a %u escape")]
    PercentU,
    /// A `%` not followed by two hex digits.
    #[error("path contains a malformed percent escape")]
    BadPercent,
    /// A percent sequence that still decodes after one decode (`%2541`).
    #[error("path is double-encoded")]
    DoubleEncoded,
    /// The decoded path is not UTF-8.
    #[error("path is not valid UTF-8")]
    InvalidUtf8,
    /// A segment ending in `.` or space, which Windows silently trims.
    #[error("path segment ends in a dot or space")]
    TrailingDotOrSpace,
    /// A fragment (`#`) in the request target, which no client sends.
    #[error("request target contains a fragment")]
    Fragment,
    /// The path as sent, read literally (split on `/` only: nothing decoded, no `\`, no
    /// dot segment resolved), names another protocol than its normalized form:
    /// `/mapi/../owa/`, `/ews/%2e%2e/mapi/`, `\mapi\emsmdb`, `/%6Dapi/`. exgate forwards
    /// the path as sent, so a server that routes on it literally would serve another
    /// protocol than the one exgate decided for.
    #[error("the path as sent names another protocol than its normalized form")]
    RawPathDisagrees,
    /// A `;` or `:` in the segments classification reads (the virtual directory, and the
    /// one after it under `/ecp/`), decoded or not: `/mapi;x/` is `/mapi/` to a router
    /// that strips path parameters (RFC 3986 §3.3), and `/ews::$INDEX_ALLOCATION/` is
    /// the `ews` folder itself to IIS on NTFS, while exgate would read neither as its
    /// protocol (red team, issue 16: a no-MFA token reached the upstream on
    /// `/mapi;x/emsmdb/`). No Exchange client puts either in a virtual directory name.
    #[error("a virtual directory segment holds ';' or ':'")]
    SegmentParameter,
    /// A character outside ASCII in the segments classification reads: `/ewſ/`,
    /// `/mapı/`, `/MAPİ/`, fullwidth `/ｍａｐｉ/`. exgate folds ASCII case only, while
    /// Windows' and .NET's case-insensitive comparisons upper-case by Unicode (`ſ` → `S`,
    /// `ı` → `I`) and best-fit ANSI conversion maps fullwidth letters to ASCII, so a
    /// server could route these to a protocol exgate did not decide for (red team,
    /// issue 16). No Exchange virtual directory name holds one.
    #[error("a virtual directory segment holds a character outside ASCII")]
    SegmentNotAscii,
    /// The ProxyShell pattern: an Autodiscover request whose query names another path.
    #[error("autodiscover query names another path (ProxyShell pattern)")]
    ProxyShell,
}

/// What the engine needs to know about a request target.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Target {
    /// The protocol the normalized path belongs to.
    pub protocol: Protocol,
    /// `/powershell-liveid` with exactly one `BasicAuthToOAuthConversion` parameter, equal
    /// to `true` (SPEC §3): a Basic header there may carry an OAuth token as its password.
    pub basic_auth_to_oauth: bool,
    /// An Autodiscover v2 request (`/autodiscover/autodiscover.json…`): the request's
    /// method, body and cookies must pass [`autodiscover_v2_request_refused`] too.
    pub autodiscover_v2: bool,
}

/// Whether a 2xx from Exchange to this request says that its password was right, so
/// that smart lockout may clear the count and make the address familiar: a resource of
/// a protocol that always authenticates (MAPI, EWS, ActiveSync, RPC over HTTP, OAB,
/// remote PowerShell, Autodiscover v1), and not
/// - a health-check page, `/<vdir>/healthcheck.htm`, which Managed Availability answers
///   200 without looking at credentials,
/// - Autodiscover v2 (`/autodiscover/autodiscover.json`), anonymous JSON,
/// - OWA, ECP or a path of no protocol (forms sign-in, static and anonymous resources),
/// - an `OPTIONS` or `HEAD` request.
///
/// A wrong password sent to such a resource comes back 200 as well: counted as a success
/// it would clear an attacker's count at will.
pub fn password_checked(target: &str, method: &str) -> bool {
    classify(target).is_ok_and(|t| answer_checks_password(&t, target, method))
}

/// [`password_checked`] for a target already classified as `t` (the request path's
/// evaluation did it once): `target` is the same request target, as sent.
pub fn answer_checks_password(t: &Target, target: &str, method: &str) -> bool {
    if method.eq_ignore_ascii_case("OPTIONS") || method.eq_ignore_ascii_case("HEAD") {
        return false;
    }
    let path = target.split(['?', '#']).next().unwrap_or("");
    let health_check = path
        .trim_end_matches('/')
        .rsplit('/')
        .next()
        .is_some_and(|last| last.eq_ignore_ascii_case("healthcheck.htm"));
    let authenticating = matches!(
        t.protocol,
        Protocol::Mapi
            | Protocol::WebServices
            | Protocol::ActiveSync
            | Protocol::Rpc
            | Protocol::OfflineAddressBook
            | Protocol::PowerShell
            | Protocol::Autodiscover
    );
    authenticating && !health_check && !t.autodiscover_v2
}

/// Normalizes and classifies a request target (`/path?query`, absolute-form, or `*`).
pub fn classify(target: &str) -> Result<Target, TargetError> {
    if target == "*" {
        return Ok(Target {
            protocol: Protocol::Other,
            basic_auth_to_oauth: false,
            autodiscover_v2: false,
        });
    }
    let origin = strip_scheme_and_authority(target)?;
    // One pass for the first `?` or `#`; a `#` anywhere is a fragment.
    let (path, query) = match origin.bytes().position(|b| b == b'?' || b == b'#') {
        None => (origin, ""),
        Some(i) if origin.as_bytes()[i] == b'#' => return Err(TargetError::Fragment),
        Some(i) if origin[i..].contains('#') => return Err(TargetError::Fragment),
        Some(i) => (&origin[..i], &origin[i + 1..]),
    };
    match plain_path_protocol(path) {
        Some(_) if proxyshell_query(false, query) => Err(TargetError::ProxyShell),
        Some((protocol, first)) => Ok(finish(protocol, first, query, false)),
        None => classify_path(path, query),
    }
}

/// [`classify`] without its shortcut for plain paths: every target goes through decoding
/// and normalization. Tests and the `target` fuzz target check that both agree.
#[doc(hidden)]
pub fn classify_general(target: &str) -> Result<Target, TargetError> {
    if target == "*" {
        return classify(target);
    }
    let origin = strip_scheme_and_authority(target)?;
    if origin.contains('#') {
        return Err(TargetError::Fragment);
    }
    let (path, query) = origin.split_once('?').unwrap_or((origin, ""));
    classify_path(path, query)
}

/// The protocol and first segment of a path that decoding and normalization would leave
/// as it is, up to ASCII case, and that is not Autodiscover v2; None for any other path. Such a path is
/// `/`-separated segments of ASCII letters, digits, `-`, `_`, `.` and `~`, with no empty
/// segment but a trailing one (no `//`), and no segment ending in `.` (which covers `.`
/// and `..`): nearly every path a client sends (`/EWS/Exchange.asmx`, `/mapi/emsmdb/`).
fn plain_path_protocol(path: &str) -> Option<(Protocol, &str)> {
    let bytes = path.as_bytes();
    if bytes.first() != Some(&b'/') || bytes.last() == Some(&b'.') {
        return None;
    }
    // Where the first two segments end: at the next `/`, or at the end.
    let mut ends = [bytes.len(); 2];
    let mut slashes = 0;
    let mut previous = b'/';
    for (i, &b) in bytes.iter().enumerate().skip(1) {
        let allowed = b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~');
        if b == b'/' && previous != b'/' && previous != b'.' {
            if let Some(end) = ends.get_mut(slashes) {
                *end = i;
            }
            slashes += 1;
        } else if !allowed {
            return None;
        }
        previous = b;
    }
    if contains_ignore_ascii_case(path, AUTODISCOVER_JSON) {
        return None;
    }
    // No empty segment but a trailing one: the segments are what lies between slashes.
    let first = &path[1..ends[0]];
    let second = path.get(ends[0] + 1..ends[1]).unwrap_or("");
    Some((protocol_of(first, second), first))
}

/// The rest of [`classify`] for a path its shortcut did not take: decode, normalize,
/// refuse what two parsers could read two ways.
fn classify_path(path: &str, query: &str) -> Result<Target, TargetError> {
    let decoded = decode_path(path)?;
    let normalized = normalize_decoded(&decoded)?;
    let mut segments = normalized.split('/').filter(|s| !s.is_empty());
    let first = segments.next().unwrap_or("");
    let second = segments.next().unwrap_or("");
    // The segments the protocol is read from: the virtual directory, and under `/ecp/`
    // the one after it (`ReportingWebService`). Deeper ones change no decision.
    let read = [first, if first == "ecp" { second } else { "" }];
    if read.iter().any(|s| s.contains([';', ':'])) {
        return Err(TargetError::SegmentParameter);
    }
    if !read.iter().all(|s| s.is_ascii()) {
        return Err(TargetError::SegmentNotAscii);
    }

    // Exchange treats any path that *contains* `autodiscover.json` as Autodiscover v2.
    let autodiscover_v2 = contains_ignore_ascii_case(&decoded, AUTODISCOVER_JSON);
    if autodiscover_v2 && !is_autodiscover_v2_path(&decoded, &normalized) {
        return Err(TargetError::ProxyShell);
    }
    if proxyshell_query(autodiscover_v2, query) {
        return Err(TargetError::ProxyShell);
    }
    let protocol = protocol_of(first, second);
    // Only a path that normalization changed beyond case can disagree.
    if !path.eq_ignore_ascii_case(&normalized) && literal_protocol(path) != protocol {
        return Err(TargetError::RawPathDisagrees);
    }
    Ok(finish(protocol, first, query, autodiscover_v2))
}

/// The classified target of a path whose protocol is `protocol` and whose first segment
/// (any case) is `first`, its query `query`.
fn finish(protocol: Protocol, first: &str, query: &str, autodiscover_v2: bool) -> Target {
    let basic_auth_to_oauth = first.eq_ignore_ascii_case("powershell-liveid") && {
        let mut conversion = query_pairs(query)
            .filter(|(k, _)| k.eq_ignore_ascii_case("BasicAuthToOAuthConversion"));
        matches!(
            (conversion.next(), conversion.next()),
            (Some((_, v)), None) if v.eq_ignore_ascii_case("true")
        )
    };
    Target {
        protocol,
        basic_auth_to_oauth,
        autodiscover_v2,
    }
}

/// The protocol a server reading the raw path literally would route to: its first
/// non-empty `/`-separated segments, lower-cased, nothing else done.
fn literal_protocol(raw: &str) -> Protocol {
    let mut segments = raw.split('/').filter(|s| !s.is_empty());
    let first = segments.next().unwrap_or("");
    let second = segments.next().unwrap_or("");
    protocol_of(first, second)
}

/// The protocol of a path whose first two segments are `first` and `second`, compared
/// without regard to ASCII case.
fn protocol_of(first: &str, second: &str) -> Protocol {
    const VIRTUAL_DIRECTORIES: [(&str, Protocol); 11] = [
        ("autodiscover", Protocol::Autodiscover),
        ("mapi", Protocol::Mapi),
        ("oab", Protocol::OfflineAddressBook),
        ("ews", Protocol::WebServices),
        ("rpc", Protocol::Rpc),
        ("rpcwithcert", Protocol::Rpc),
        ("microsoft-server-activesync", Protocol::ActiveSync),
        ("powershell", Protocol::PowerShell),
        ("powershell-liveid", Protocol::PowerShell),
        ("api", Protocol::OutlookService),
        ("owa", Protocol::Owa),
    ];
    if first.eq_ignore_ascii_case("ecp") {
        return match second.eq_ignore_ascii_case("reportingwebservice") {
            true => Protocol::ReportingWebServices,
            false => Protocol::Ecp,
        };
    }
    VIRTUAL_DIRECTORIES
        .iter()
        .find(|(name, _)| first.eq_ignore_ascii_case(name))
        .map_or(Protocol::Other, |&(_, protocol)| protocol)
}

fn strip_scheme_and_authority(target: &str) -> Result<&str, TargetError> {
    if target.starts_with(['/', '\\']) {
        return Ok(target);
    }
    let rest = ["http://", "https://"]
        .iter()
        .find_map(|scheme| {
            target
                .get(..scheme.len())
                .filter(|p| p.eq_ignore_ascii_case(scheme))
                .map(|_| &target[scheme.len()..])
        })
        .ok_or(TargetError::NotAPath)?;
    match rest.find(['/', '?']) {
        Some(i) if rest.as_bytes()[i] == b'/' => Ok(&rest[i..]),
        // `http://host?x` or `http://host`: the path is the root.
        Some(_) | None => Ok("/"),
    }
}

/// Normalizes a raw path (no query): decode once, `\` → `/`, ASCII lower-case,
/// collapse `//`, resolve `.` and `..`. Returns the path that classification reads.
pub fn normalize_path(raw: &str) -> Result<String, TargetError> {
    normalize_decoded(&decode_path(raw)?)
}

/// Decodes a raw path once, strictly, into UTF-8 (borrowed when there is nothing to
/// decode, as for nearly every real path).
fn decode_path(raw: &str) -> Result<Cow<'_, str>, TargetError> {
    if !raw.bytes().any(|b| b == b'%' || is_control(b)) {
        return Ok(Cow::Borrowed(raw));
    }
    let decoded = percent_decode_strict(raw.as_bytes())?;
    String::from_utf8(decoded)
        .map(Cow::Owned)
        .map_err(|_| TargetError::InvalidUtf8)
}

fn normalize_decoded(text: &str) -> Result<String, TargetError> {
    let trailing_slash = text.ends_with(['/', '\\']);

    let mut out = String::with_capacity(text.len() + 1);
    for segment in text.split(['/', '\\']) {
        match segment {
            "" | "." => {}
            ".." => {
                // Every kept segment starts with the only '/' it holds.
                let start = out.rfind('/').ok_or(TargetError::EscapesRoot)?;
                out.truncate(start);
            }
            s if s.ends_with(['.', ' ']) => return Err(TargetError::TrailingDotOrSpace),
            s => {
                out.push('/');
                let at = out.len();
                out.push_str(s);
                // ASCII only, like `char::to_ascii_lowercase`: one pass over the bytes
                // instead of a push per char.
                out[at..].make_ascii_lowercase();
            }
        }
    }
    if out.is_empty() || trailing_slash {
        out.push('/');
    }
    Ok(out)
}

/// Decodes `%XX` once, refusing everything that makes a path ambiguous.
fn percent_decode_strict(raw: &[u8]) -> Result<Vec<u8>, TargetError> {
    let mut out = Vec::with_capacity(raw.len());
    let mut i = 0;
    while i < raw.len() {
        let b = raw[i];
        if b == b'%' {
            match (raw.get(i + 1), raw.get(i + 2)) {
                (Some(b'u' | b'U'), _) => return Err(TargetError::PercentU),
                (Some(&h), Some(&l)) if h.is_ascii_hexdigit() && l.is_ascii_hexdigit() => {
                    let v = hex_value(h) << 4 | hex_value(l);
                    if is_control(v) {
                        return Err(TargetError::ControlByte);
                    }
                    out.push(v);
                    i += 3;
                }
                _ => return Err(TargetError::BadPercent),
            }
        } else if is_control(b) {
            return Err(TargetError::ControlByte);
        } else {
            out.push(b);
            i += 1;
        }
    }
    // Any '%' left came from `%25`; if it starts another escape the path was encoded twice.
    let double = out.windows(2).enumerate().any(|(j, w)| {
        w[0] == b'%'
            && (matches!(w[1], b'u' | b'U')
                || (w[1].is_ascii_hexdigit() && out.get(j + 2).is_some_and(u8::is_ascii_hexdigit)))
    });
    if double {
        return Err(TargetError::DoubleEncoded);
    }
    Ok(out)
}

pub(super) const fn is_control(b: u8) -> bool {
    b < 0x20 || b == 0x7f
}

pub(super) const fn hex_value(b: u8) -> u8 {
    match b {
        b'0'..=b'9' => b - b'0',
        b'a'..=b'f' => b - b'a' + 10,
        _ => b - b'A' + 10,
    }
}

/// Splits a query into `key=value` pairs, percent-decoding each once and leniently
/// (an invalid escape is kept as it is).
pub fn query_pairs(query: &str) -> impl Iterator<Item = (Cow<'_, str>, Cow<'_, str>)> {
    query.split('&').filter(|c| !c.is_empty()).map(|c| {
        let (k, v) = c.split_once('=').unwrap_or((c, ""));
        (percent_decode_lenient(k), percent_decode_lenient(v))
    })
}

pub(super) fn percent_decode_lenient(s: &str) -> Cow<'_, str> {
    if !s.contains('%') {
        return Cow::Borrowed(s);
    }
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match (b[i], b.get(i + 1), b.get(i + 2)) {
            (b'%', Some(&h), Some(&l)) if h.is_ascii_hexdigit() && l.is_ascii_hexdigit() => {
                out.push(hex_value(h) << 4 | hex_value(l));
                i += 3;
            }
            (c, _, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    Cow::Owned(String::from_utf8_lossy(&out).into_owned())
}

#[cfg(test)]
#[path = "path_tests.rs"]
mod tests;
