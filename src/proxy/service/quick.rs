//! Refusals answered without hyper (issue 16: blocked Basic at HAProxy's cost or below).
//!
//! A request with Basic credentials that the policy refuses is the one exgate answers
//! most often under a password spray or a fleet of legacy clients, and hyper's request
//! and response machinery is most of what it costs. [`crate::proxy::park::Parking`]
//! hands each whole request head that arrives alone, with nothing else in flight on the
//! connection, to [`ConnectionService::refuse_quickly`] before hyper sees it. The head
//! is parsed with httparse (hyper's parser) into the `http` types the request path
//! reads, checked by the same framing check, decided by the same engine, counted,
//! recorded and answered by the same functions as a request hyper hands over; only the
//! serialization of the answer is this module's.
//!
//! It takes a request only when every step is one hyper's path would take without
//! waiting, and leaves it to hyper, with nothing counted, otherwise: no `Basic` field; a
//! head hyper or the framing check would refuse or read differently (a body, HTTP/1.0,
//! `HEAD`, more than [`MAX_FIELDS`] fields, anything the head guard flagged); a
//! connection that NTLM or Negotiate authenticated; a token to validate (Basic under
//! `BasicAuthToOAuthConversion`); `[cluster]` (spray counts go to Redis); a decision
//! that forwards.

use std::cell::RefCell;
use std::pin::Pin;
use std::task::{Context as TaskContext, Poll, Waker};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use hyper::body::Body as _;
use hyper::header::{self, HeaderName, HeaderValue};
use hyper::{HeaderMap, Method, Response, Uri, Version};

use super::{Connection, ConnectionService, Names, Outcome, protect_key};
use crate::policy::{Context, RequestFacts, TicketRead};
use crate::proxy::framing;
use crate::proxy::respond::{self, ProxyBody, Refusal};

/// The most header fields a head answered here may have; a head with more goes to
/// hyper (whose own limit is 100).
pub const MAX_FIELDS: usize = 32;

/// The fields the request path reads of a refused request: the framing check (`Host`
/// of an absolute-form target, `Connection`), the decision (`Authorization`, `Cookie`)
/// and the audit line (`User-Agent`).
pub const READ_FIELDS: [HeaderName; 5] = [
    header::HOST,
    header::CONNECTION,
    header::AUTHORIZATION,
    header::COOKIE,
    header::USER_AGENT,
];

impl ConnectionService {
    /// Answers `head` — exactly one whole request head, read while nothing else was in
    /// flight on the connection — when the policy refuses its Basic credentials: the
    /// response's bytes, with the request counted and recorded as the request path
    /// does. None leaves the request to hyper, with nothing counted (see the module
    /// documentation for when).
    pub fn refuse_quickly(&self, head: &[u8]) -> Option<Vec<u8>> {
        self.0.refuse_quickly(head)
    }
}

impl Connection {
    fn refuse_quickly(&self, head: &[u8]) -> Option<Vec<u8>> {
        let shared = &self.client.shared;
        if shared.cluster.is_some() {
            return None;
        }
        let started = Instant::now();
        let QuickHead {
            method,
            uri,
            headers,
        } = QuickHead::parse(head)?;
        // Nothing established on the connection, and no request holds it.
        let auth = self.auth.try_lock().ok()?;
        if auth.authenticated || auth.mechanism.is_some() || auth.identity.is_some() {
            return None;
        }
        let raw = self.client.verdicts.sole()?;
        if raw.content_lengths > 0 || raw.transfer_encoding {
            return None;
        }
        framing::check_head(
            &raw,
            self.client.max_header_bytes,
            &method,
            &uri,
            Version::HTTP_11,
            &headers,
        )
        .ok()?;

        let snapshot = shared.snapshot.load_full();
        let cookies: Vec<&[u8]> = match raw.cookie {
            false => Vec::new(),
            true => headers
                .get_all(header::COOKIE)
                .iter()
                .map(HeaderValue::as_bytes)
                .collect(),
        };
        let ctx = Context {
            prior_mechanism: None,
            token_user: None,
            connection: None,
            ticket: match snapshot.kerberos {
                Some(_) => TicketRead::Unread,
                None => TicketRead::NoKeytab,
            },
            request: RequestFacts {
                method: Some(method.as_str()),
                has_body: false,
                cookies: &cookies,
            },
        };
        let target = uri.path_and_query().map_or("/", |p| p.as_str());
        let eval = snapshot.engine.evaluate(
            target,
            headers
                .get_all(header::AUTHORIZATION)
                .iter()
                .map(HeaderValue::as_bytes),
            ctx,
        );
        let credentials = &eval.credentials;
        let decision = eval.decision;
        if eval.token().is_some()
            || credentials.ap_req().is_some()
            || credentials.authenticates_connection()
            || credentials.negotiated_mechanism().is_some()
            || decision.connection
            || decision.action.forwards()
        {
            return None;
        }
        let res = respond::refusal(Refusal::Decided(decision), &snapshot.bearer);
        let status = res.status().as_u16();
        let answer = encode(res)?;

        // Taken: from here on the request is answered here, as the request path would.
        self.client.verdicts.take();
        let user = credentials.user();
        let key = protect_key(snapshot.engine.directory(), &decision, user.as_deref());
        if let (true, Some(key)) = (decision.legacy, key) {
            self.note_refused(&key, started);
        }
        shared.metrics.record(&decision);
        shared.metrics.record_quick_refusal();
        let outcome = Outcome {
            decision,
            names: match shared.audit.is_some() || shared.observer.get().is_some() {
                true => Names::new(&snapshot, &decision, user.as_deref()),
                false => Names::default(),
            },
            credentials: true,
            upstream_status: None,
        };
        let audited = self.audited(&method, uri.path(), headers.get(header::USER_AGENT));
        self.record(audited, status, outcome, started.elapsed());
        Some(answer)
    }
}

/// A request head the quick path may answer, as the request path reads it.
pub struct QuickHead {
    pub method: Method,
    pub uri: Uri,
    /// Only the fields the request path reads ([`READ_FIELDS`]).
    pub headers: HeaderMap,
}

impl QuickHead {
    /// Parses `head`, exactly one whole HTTP/1.1 request head with a Basic
    /// `Authorization` field, as hyper would (httparse, then the `http` types, every
    /// field name and value valid). None for anything else: no Basic field, a partial
    /// head or bytes after it, another version, `HEAD`, more than [`MAX_FIELDS`] fields,
    /// a field or target hyper would refuse.
    pub fn parse(head: &[u8]) -> Option<QuickHead> {
        if !names_basic(head) {
            return None;
        }
        let mut fields = [httparse::EMPTY_HEADER; MAX_FIELDS];
        let mut parsed = httparse::Request::new(&mut fields);
        match parsed.parse(head) {
            Ok(httparse::Status::Complete(n)) if n == head.len() => {}
            _ => return None,
        }
        if parsed.version != Some(1) {
            return None;
        }
        let method = Method::from_bytes(parsed.method?.as_bytes()).ok()?;
        if method == Method::HEAD {
            return None;
        }
        let uri: Uri = parsed.path?.parse().ok()?;
        let mut headers = HeaderMap::new();
        for field in parsed.headers.iter() {
            let name = HeaderName::from_bytes(field.name.as_bytes()).ok()?;
            let value = HeaderValue::from_bytes(field.value).ok()?;
            if READ_FIELDS.contains(&name) {
                headers.append(name, value);
            }
        }
        Some(QuickHead {
            method,
            uri,
            headers,
        })
    }
}

/// Whether a request head has an `Authorization` field whose scheme is `Basic` (RFC 7617
/// §2; names and scheme in any case): a look at the raw bytes before anything is parsed,
/// so that other requests pay nearly nothing here.
pub fn names_basic(head: &[u8]) -> bool {
    const NAME: &[u8] = b"authorization:";
    memchr::memchr_iter(b'\n', head).any(|lf| {
        let line = &head[lf + 1..];
        line.get(..NAME.len())
            .is_some_and(|n| n.eq_ignore_ascii_case(NAME))
            && line[NAME.len()..]
                .trim_ascii_start()
                .get(..6)
                .is_some_and(|s| s.eq_ignore_ascii_case(b"basic "))
    })
}

/// A response as HTTP/1.1 bytes, as hyper writes it (RFC 9112 §4, §6): the status line,
/// the fields, `content-length` when the response has none and `date` (RFC 9110
/// §6.6.1), then the body. None when the body is not at hand at once (every refusal's
/// is).
fn encode(res: Response<ProxyBody>) -> Option<Vec<u8>> {
    let (parts, mut body) = res.into_parts();
    let mut content = Vec::new();
    let mut cx = TaskContext::from_waker(Waker::noop());
    loop {
        match Pin::new(&mut body).poll_frame(&mut cx) {
            Poll::Ready(None) => break,
            Poll::Ready(Some(Ok(frame))) => content.extend_from_slice(frame.data_ref()?),
            Poll::Ready(Some(Err(_))) | Poll::Pending => return None,
        }
    }
    // Status line, fields, content-length and date, each with its separators.
    let fields: usize = (parts.headers.iter())
        .map(|(n, v)| n.as_str().len() + v.len() + 4)
        .sum();
    let mut out = Vec::with_capacity(40 + fields + 64 + content.len());
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(parts.status.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(parts.status.canonical_reason().unwrap_or("").as_bytes());
    out.extend_from_slice(b"\r\n");
    for (name, value) in &parts.headers {
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    if !parts.headers.contains_key(header::CONTENT_LENGTH) {
        out.extend_from_slice(format!("content-length: {}\r\n", content.len()).as_bytes());
    }
    if !parts.headers.contains_key(header::DATE) {
        out.extend_from_slice(b"date: ");
        http_date(|date| out.extend_from_slice(date));
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(&content);
    Some(out)
}

/// Calls `f` with the current time as an IMF-fixdate (`Tue, 01 Dec 2026 16:00:00 GMT`,
/// RFC 9110 §5.6.7), formatted once a second per thread.
fn http_date(f: impl FnOnce(&[u8])) {
    thread_local! {
        static CACHED: RefCell<(u64, String)> = const { RefCell::new((u64::MAX, String::new())) };
    }
    let now = SystemTime::now();
    let second = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    CACHED.with_borrow_mut(|(at, date)| {
        if *at != second {
            *at = second;
            *date = httpdate::fmt_http_date(now);
        }
        f(date.as_bytes());
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_basic_finds_a_basic_authorization_field_in_any_case() {
        let yes: [&[u8]; 5] = [
            b"GET / HTTP/1.1\r\nAuthorization: Basic dTpw\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: x\r\nauthorization:basic dTpw\r\n\r\n",
            b"GET / HTTP/1.1\r\nAUTHORIZATION: \t BASIC dTpw\r\n\r\n",
            b"GET / HTTP/1.1\nAuthorization: Basic dTpw\n\n",
            b"POST / HTTP/1.1\r\nX: 1\r\nAuthorization: Basic \r\n\r\n",
        ];
        for head in yes {
            assert!(names_basic(head), "{}", String::from_utf8_lossy(head));
        }
        let no: [&[u8]; 7] = [
            b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
            b"GET / HTTP/1.1\r\nAuthorization: Bearer eyJ\r\n\r\n",
            b"GET / HTTP/1.1\r\nAuthorization: NTLM TlRMTVNTUAAB\r\n\r\n",
            b"GET / HTTP/1.1\r\nAuthorization: Basicx\r\n\r\n",
            b"GET / HTTP/1.1\r\nX-Authorization: Basic dTpw\r\n\r\n",
            b"GET /?Authorization:%20Basic HTTP/1.1\r\n\r\n",
            b"GET / HTTP/1.1\r\nAuthorization : Basic dTpw\r\n\r\n",
        ];
        for head in no {
            assert!(!names_basic(head), "{}", String::from_utf8_lossy(head));
        }
    }

    #[test]
    fn quick_heads_are_whole_http_1_1_heads_with_basic_credentials() {
        let head = b"POST /EWS/Exchange.asmx?x=1 HTTP/1.1\r\nHost: mail\r\nX-Other: 1\r\nUser-Agent: ua\r\nAuthorization: Basic dTpw\r\nCookie: a=b\r\nCookie: c=d\r\n\r\n";
        let parsed = QuickHead::parse(head).expect("a quick head");
        assert_eq!(parsed.method, Method::POST);
        assert_eq!(parsed.uri, "/EWS/Exchange.asmx?x=1");
        // Only what the request path reads, every value kept.
        assert_eq!(parsed.headers.len(), 5);
        assert!(!parsed.headers.contains_key("x-other"));
        assert_eq!(parsed.headers.get_all(header::COOKIE).iter().count(), 2);
        let refused: [&[u8]; 10] = [
            b"GET / HTTP/1.1\r\nHost: a\r\n\r\n",
            b"GET / HTTP/1.1\r\nAuthorization: Basic dTpw\r\n",
            b"GET / HTTP/1.1\r\nAuthorization: Basic dTpw\r\n\r\nG",
            b"GET / HTTP/1.0\r\nAuthorization: Basic dTpw\r\n\r\n",
            b"HEAD / HTTP/1.1\r\nAuthorization: Basic dTpw\r\n\r\n",
            b"GET / HTTP/1.1\r\nAuthorization: Basic dTpw\r\nX: a\r\n b\r\n\r\n",
            b"GET / HTTP/1.1\r\nAuthorization: Basic dTpw\r\nX: \x01\r\n\r\n",
            b"G\x01T / HTTP/1.1\r\nAuthorization: Basic dTpw\r\n\r\n",
            b"GET /a b HTTP/1.1\r\nAuthorization: Basic dTpw\r\n\r\n",
            b"GET / HTTP/1.1\r\nAuthorization : Basic dTpw\r\n\r\n",
        ];
        for head in refused {
            assert!(
                QuickHead::parse(head).is_none(),
                "{}",
                String::from_utf8_lossy(head)
            );
        }
        let many: String = (0..MAX_FIELDS).map(|i| format!("X-{i}: {i}\r\n")).collect();
        let head = format!("GET / HTTP/1.1\r\n{many}Authorization: Basic dTpw\r\n\r\n");
        assert!(QuickHead::parse(head.as_bytes()).is_none());
    }

    #[test]
    fn a_refusal_is_encoded_as_hyper_writes_it() {
        let bearer = HeaderValue::from_static("Bearer realm=\"x\"");
        let res = respond::refusal(Refusal::Client(framing::ClientFault::MissingHost), &bearer);
        let bytes = encode(res).expect("a text body is at hand");
        let text = String::from_utf8(bytes).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        let mut lines = head.split("\r\n");
        assert_eq!(lines.next(), Some("HTTP/1.1 400 Bad Request"));
        let fields: Vec<&str> = lines.collect();
        assert!(fields.contains(&"content-type: text/plain; charset=utf-8"));
        assert!(fields.contains(&"content-length: 12"));
        let date = fields
            .iter()
            .find_map(|f| f.strip_prefix("date: "))
            .unwrap();
        assert!(httpdate::parse_http_date(date).is_ok(), "{date}");
        assert_eq!(body, "Bad Request\n");
    }
}
