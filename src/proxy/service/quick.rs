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
//! serialization of the answer is this module's. Two memories spare repeated work: the
//! encoded answers (the last few per thread, [`answer_bytes`]) and, per connection, the
//! last Basic head refused with its decision ([`Repeat`]), for a client that sends the
//! same bytes again.
//!
//! A forged or otherwise refused bearer token sent in a loop is the other (issue 16:
//! bad-signature floods): once its validation has failed on hyper's path, the failure
//! is remembered ([`crate::token::FailedCache`]) and the same token is answered here,
//! from that memory, while it holds under the current key set.
//!
//! It takes a request only when every step is one hyper's path would take without
//! waiting, and leaves it to hyper, with nothing counted, otherwise: no `Basic` or
//! `Bearer` scheme in the first `Authorization` field as clients write it (see
//! [`raw_credentials`]); a bearer token that is valid, never seen, or whose remembered
//! failure no longer holds (a new key set); a
//! head hyper or the framing check would refuse or read differently (a body, HTTP/1.0,
//! `HEAD`, a `Connection` field, more than [`MAX_FIELDS`] fields, anything the head
//! guard flagged); a read that filled hyper's buffer (more may follow it); a
//! connection that NTLM or Negotiate authenticated; a token to validate (Basic under
//! `BasicAuthToOAuthConversion`); `[cluster]` (spray counts go to Redis); a decision
//! that forwards.

use std::borrow::Cow;
use std::cell::RefCell;
use std::io::Write as _;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::{Arc, LazyLock, Weak};
use std::task::{Context as TaskContext, Poll, Waker};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use hyper::body::Body as _;
use hyper::header::{self, HeaderName, HeaderValue};
use hyper::http::uri::PathAndQuery;
use hyper::{Method, Response, Version};
use memchr::memmem;

use super::{Connection, ConnectionService, Names, Outcome, protect_key};
use crate::policy::{Action, Context, Decision, Reason, RequestFacts};
use crate::proxy::head_guard::HeadVerdict;
use crate::proxy::respond::{self, Answer, ProxyBody, Refusal};
use crate::proxy::{Snapshot, framing, headers};
use crate::token::{TokenError, TokenValidator};

/// The most header fields a head answered here may have; a head with more goes to
/// hyper (whose own limit is 100).
pub const MAX_FIELDS: usize = 32;

impl ConnectionService {
    /// Answers `head` — exactly one whole request head, read while nothing else was in
    /// flight on the connection — when the policy refuses its Basic credentials or a
    /// bearer token that failed validation before: the response's bytes, with the
    /// request counted and recorded as the request path does. None leaves the request
    /// to hyper, with nothing counted (see the module documentation for when).
    ///
    /// `now` gives the time, or None when the quick path may no longer answer (it is
    /// called only for a head that may carry Basic credentials or a bearer token).
    /// `repeat` is the connection's memory of the last Basic head answered here (see
    /// [`Repeat`]), read and replaced.
    pub fn refuse_quickly(
        &self,
        head: &[u8],
        repeat: &mut Option<Repeat>,
        now: impl FnOnce() -> Option<Instant>,
    ) -> Option<Vec<u8>> {
        self.0.refuse_quickly(head, repeat, now)
    }
}

/// The last head with Basic credentials a connection had refused without hyper, and what
/// the refusal was made of. A client that sends the same head again (a legacy client
/// retrying, a spray tool hammering one account) gets the same decision: every step
/// between the head's bytes and the decision — parsing, the framing check, the engine —
/// is a function of those bytes, the head guard's verdict on them and the snapshot,
/// so when all three are the same the steps are not taken again. Everything after the
/// decision is: the spray count, metrics, the audit line and the answer's `date`. A
/// connection that parks drops it with the rest of the quick path's state.
pub struct Repeat {
    head: Vec<u8>,
    verdict: HeadVerdict,
    /// The snapshot that decided (weak: a reload frees the old one, and the allocation
    /// a weak reference keeps cannot come back as a new snapshot's address).
    snapshot: Weak<Snapshot>,
    decision: Decision,
    /// The user the credentials named, as presented.
    user: Option<String>,
    method: Method,
    path: String,
    user_agent: Option<Vec<u8>>,
}

impl Repeat {
    /// Remembers `refused`, a Basic head's refusal, as made from `head`, `verdict` and
    /// `snapshot`.
    fn new(
        head: &[u8],
        verdict: HeadVerdict,
        snapshot: &Arc<Snapshot>,
        refused: &Refused<'_>,
    ) -> Repeat {
        Repeat {
            head: head.to_vec(),
            verdict,
            snapshot: Arc::downgrade(snapshot),
            decision: refused.decision,
            user: refused.user.as_deref().map(str::to_owned),
            method: refused.method.clone(),
            path: refused.path.to_owned(),
            user_agent: refused.user_agent.map(<[u8]>::to_vec),
        }
    }

    /// Whether `head`, with `verdict`, under `snapshot`, is the head this was made from.
    fn is(&self, head: &[u8], verdict: &HeadVerdict, snapshot: &Arc<Snapshot>) -> bool {
        self.head == head
            && self.verdict == *verdict
            && std::ptr::eq(self.snapshot.as_ptr(), Arc::as_ptr(snapshot))
    }

    /// The refusal remembered.
    fn refused(&self) -> Refused<'_> {
        Refused {
            decision: self.decision,
            token_error: None,
            user: self.user.as_deref().map(Cow::Borrowed),
            method: &self.method,
            path: &self.path,
            user_agent: self.user_agent.as_deref(),
        }
    }
}

/// What a quick refusal was decided on, for the steps after the decision.
struct Refused<'a> {
    decision: Decision,
    /// The token's failed validation, for a bearer token.
    token_error: Option<TokenError>,
    user: Option<Cow<'a, str>>,
    method: &'a Method,
    path: &'a str,
    user_agent: Option<&'a [u8]>,
}

impl Connection {
    fn refuse_quickly(
        &self,
        head: &[u8],
        repeat: &mut Option<Repeat>,
        now: impl FnOnce() -> Option<Instant>,
    ) -> Option<Vec<u8>> {
        let shared = &self.client.shared;
        if shared.cluster.is_some() {
            return None;
        }
        // For a bearer token, the validator whose failed cache may remember it: a token
        // is answered here only when its validation failed before, and the cache's
        // filter tells most other tokens apart from the raw bytes, so that a valid
        // token costs the quick path next to nothing.
        let token_validator = match raw_credentials(head)? {
            RawCredentials::Basic => None,
            RawCredentials::Bearer(token) => Some(
                shared
                    .tokens
                    .as_deref()
                    .filter(|v| v.may_have_failed(token))?,
            ),
        };
        let started = now()?;
        // Nothing established on the connection, and no request holds it.
        let auth = self.auth.try_lock().ok()?;
        if auth.authenticated || auth.mechanism.is_some() || auth.identity.is_some() {
            return None;
        }
        let raw = self.client.verdicts.sole()?;
        // A body, or a `Connection` field (`close` ends the connection after the answer,
        // as hyper does it; red team, issue 16): hyper's.
        if raw.content_lengths > 0 || raw.transfer_encoding || raw.connection {
            return None;
        }
        let snapshot = shared.snapshot.load_full();

        let mut storage = QuickHead::storage();
        let parsed;
        let refused = match repeat.as_ref() {
            Some(r) if token_validator.is_none() && r.is(head, &raw, &snapshot) => r.refused(),
            _ => {
                parsed = QuickHead::parse_whole(head, &mut storage)?;
                let refused = self.decide_quickly(&parsed, &raw, &snapshot, token_validator)?;
                if refused.token_error.is_none() {
                    *repeat = Some(Repeat::new(head, raw, &snapshot, &refused));
                }
                refused
            }
        };
        let decision = refused.decision;
        let refusal = match refused.token_error {
            Some(error) => Refusal::InvalidToken(error),
            None => Refusal::Decided(decision),
        };
        let (status, answer) = answer_bytes(Answer::from(refusal), &snapshot.bearer)?;

        // Taken: from here on the request is answered here, as the request path would.
        self.client.verdicts.take();
        let user = refused.user.as_deref();
        match refused.token_error {
            // Counted as validation counts it; a refused token is no password attempt.
            Some(error) => shared.metrics.record_token_validation(error.as_str()),
            None => {
                let key = protect_key(snapshot.engine.directory(), &decision, user);
                if let (true, Some(key)) = (decision.legacy, key) {
                    self.note_refused(&key, started);
                }
            }
        }
        shared.metrics.record(&decision);
        shared.metrics.record_quick_refusal();
        let outcome = Outcome {
            decision,
            names: Names::recorded(shared, &snapshot, &decision, user),
            credentials: true,
            upstream_status: None,
        };
        let audited = self.audited(refused.method, refused.path, refused.user_agent);
        self.record(audited, status, outcome, started.elapsed());
        drop(auth);
        Some(answer)
    }

    /// The steps of the quick path from a parsed head to its decision, or None when
    /// the head is hyper's: the first `Authorization` field names what the raw look
    /// found, the framing check passes, and the engine refuses.
    fn decide_quickly<'q>(
        &self,
        head: &'q QuickHead<'_>,
        raw: &HeadVerdict,
        snapshot: &Snapshot,
        token_validator: Option<&TokenValidator>,
    ) -> Option<Refused<'q>> {
        // The first `Authorization` field, parsed, names what the raw look found. For a
        // token, only a failure remembered under the current key set: a valid token is
        // forwarded and one never seen is verified, both on hyper's path.
        let first = head.values(&header::AUTHORIZATION).next()?;
        let failed = match token_validator {
            None => {
                scheme_credentials(first, b"basic")?;
                None
            }
            Some(validator) => {
                let token = scheme_credentials(first, b"bearer")?;
                Some((token, validator.known_failure(token)?))
            }
        };
        framing::check_head(
            raw,
            self.client.max_header_bytes,
            &head.method,
            None,
            Version::HTTP_11,
            head.values(&header::HOST).next(),
            head.values(&header::CONNECTION),
        )
        .ok()?;

        let cookies: Vec<&[u8]> = match raw.cookie {
            false => Vec::new(),
            true => head.values(&header::COOKIE).collect(),
        };
        let ctx = Context {
            prior_mechanism: None,
            token_user: None,
            connection: None,
            ticket: snapshot.ticket_unread(),
            request: RequestFacts {
                method: Some(head.method.as_str()),
                has_body: false,
                cookies: &cookies,
            },
        };
        let eval = snapshot.engine.evaluate(
            head.target.as_str(),
            head.values(&header::AUTHORIZATION),
            ctx,
        );
        let credentials = &eval.credentials;
        if credentials.ap_req().is_some()
            || credentials.authenticates_connection()
            || credentials.negotiated_mechanism().is_some()
            || eval.decision.connection
        {
            return None;
        }
        // As the request path's token phase decides (`token_stage`): a token the
        // evaluation took, of a governed protocol, refused for what its validation would
        // return.
        let (decision, token_error) = match (eval.token(), failed) {
            (None, None) if !eval.decision.action.forwards() => (eval.decision, None),
            (Some(token), Some((checked, error)))
                if token == checked
                    && eval.target.is_some()
                    && eval.decision.reason != Reason::NotGoverned =>
            {
                let reason = match error {
                    TokenError::NoKeys => Reason::SigningKeysUnavailable,
                    _ => Reason::InvalidToken,
                };
                let decision = Decision {
                    action: Action::Block,
                    reason,
                    ..eval.decision
                };
                (decision, Some(error))
            }
            _ => return None,
        };
        Some(Refused {
            decision,
            token_error,
            user: credentials.user().map(|u| Cow::Owned(u.into_owned())),
            method: &head.method,
            path: head.target.path(),
            user_agent: head.values(&header::USER_AGENT).next(),
        })
    }
}

/// A request head the quick path may answer, as the request path reads it: borrowed
/// from the bytes read and httparse's field array.
pub struct QuickHead<'h> {
    pub method: Method,
    /// The origin-form target (`/path?query`), valid as hyper requires.
    pub target: PathAndQuery,
    /// Every field, each name a token and each value free of control bytes but HTAB
    /// (httparse's checks: those of `HeaderName` and `HeaderValue`).
    pub fields: &'h [httparse::Header<'h>],
}

impl<'h> QuickHead<'h> {
    /// Parses `head`, exactly one whole HTTP/1.1 request head with a Basic or Bearer
    /// `Authorization` field, as hyper would (httparse, the target as `http` reads it),
    /// into `storage`. None for anything else: no such field, a partial head or bytes
    /// after it, another version, `HEAD`, a target that is not origin-form, more than
    /// [`MAX_FIELDS`] fields, a field or target hyper would refuse.
    pub fn parse(
        head: &'h [u8],
        storage: &'h mut [httparse::Header<'h>; MAX_FIELDS],
    ) -> Option<QuickHead<'h>> {
        if !may_name_basic(head) && !may_name_bearer(head) {
            return None;
        }
        let head = QuickHead::parse_whole(head, storage)?;
        let named = head.values(&header::AUTHORIZATION).any(|v| {
            scheme_credentials(v, b"basic").is_some() || scheme_credentials(v, b"bearer").is_some()
        });
        named.then_some(head)
    }

    /// Room for the fields [`QuickHead::parse`] reads.
    pub fn storage() -> [httparse::Header<'h>; MAX_FIELDS] {
        [httparse::EMPTY_HEADER; MAX_FIELDS]
    }

    /// [`QuickHead::parse`] without the look for credentials: one whole HTTP/1.1 head
    /// as hyper reads it, whatever its fields.
    fn parse_whole(
        head: &'h [u8],
        storage: &'h mut [httparse::Header<'h>; MAX_FIELDS],
    ) -> Option<QuickHead<'h>> {
        let mut parsed = httparse::Request::new(storage);
        match parsed.parse(head) {
            Ok(httparse::Status::Complete(n)) if n == head.len() => {}
            _ => return None,
        }
        if parsed.version != Some(1) {
            return None;
        }
        let method = Method::from_bytes(parsed.method?.as_bytes()).ok()?;
        let target = parsed.path?;
        if method == Method::HEAD || !target.starts_with('/') {
            return None;
        }
        Some(QuickHead {
            method,
            target: PathAndQuery::try_from(target).ok()?,
            fields: parsed.headers,
        })
    }

    /// The credentials of the first `Authorization` field with the Bearer scheme (RFC
    /// 6750 §2.1), if any: the token as the field carries it.
    pub fn bearer_token(&self) -> Option<&'h [u8]> {
        self.values(&header::AUTHORIZATION)
            .find_map(|v| scheme_credentials(v, b"bearer"))
    }

    /// The values of the fields named `name`, in order.
    pub fn values<'s>(&'s self, name: &'s HeaderName) -> impl Iterator<Item = &'h [u8]> + 's {
        self.fields
            .iter()
            .filter(move |f| is_named(f.name, name))
            .map(|f| f.value)
    }
}

/// Whether a field name httparse accepted (a token, RFC 9110 §5.1) is `name` in any
/// ASCII case. `name` is a standard field name, lower case letters and `-`: setting the
/// 0x20 bit folds a letter's case and leaves `-` as it is; of the other bytes a token may
/// hold, none becomes a lower case letter or `-` by it. Branch-free over the bytes (the
/// quick path looks for five names, each through every field: `eq_ignore_ascii_case`
/// was 7% of a blocked Basic request's instructions).
fn is_named(field: &str, name: &HeaderName) -> bool {
    let name = name.as_str().as_bytes();
    debug_assert!(name.iter().all(|b| b.is_ascii_lowercase() || *b == b'-'));
    field.len() == name.len()
        && (field.as_bytes().iter().zip(name)).fold(0, |acc, (f, n)| acc | ((f | 0x20) ^ n)) == 0
}

/// The credentials after `scheme` (lower case) in an `Authorization` value: the scheme
/// in any case (RFC 9110 §11.1), then one space and the credentials, or nothing
/// (httparse has trimmed the value's surrounding whitespace). None for another scheme.
fn scheme_credentials<'v>(value: &'v [u8], scheme: &[u8]) -> Option<&'v [u8]> {
    let named = value.get(..scheme.len())?.eq_ignore_ascii_case(scheme);
    match value.get(scheme.len()) {
        _ if !named => None,
        None => Some(&[]),
        Some(b' ') => Some(&value[scheme.len() + 1..]),
        Some(_) => None,
    }
}

/// What the first `Authorization` field of a raw head names, as one look at the bytes
/// tells it (see [`raw_credentials`]).
#[derive(Debug, PartialEq, Eq)]
enum RawCredentials<'h> {
    Basic,
    /// The rest of the field's line.
    Bearer(&'h [u8]),
}

/// The scheme of the first `uthorization:` in a raw head (of `Authorization:` or
/// `authorization:`, as clients write the field name), when its value, after spaces and
/// tabs, begins `Basic `, `basic `, `Bearer ` or `bearer ` (as clients write the
/// scheme). One scan of the bytes before anything is parsed, so that a request without
/// such credentials pays nearly nothing here. Only a filter: what the quick path answers
/// is decided on the parsed head; a head spelled otherwise goes to hyper.
fn raw_credentials(head: &[u8]) -> Option<RawCredentials<'_>> {
    static NAME: LazyLock<memmem::Finder<'static>> =
        LazyLock::new(|| memmem::Finder::new(b"uthorization:"));
    let value = &head[NAME.find(head)? + b"uthorization:".len()..];
    let start = value.iter().position(|&b| b != b' ' && b != b'\t')?;
    let value = &value[start..];
    if value.starts_with(b"Basic ") || value.starts_with(b"basic ") {
        return Some(RawCredentials::Basic);
    }
    let token = value
        .strip_prefix(b"Bearer ")
        .or_else(|| value.strip_prefix(b"bearer "))?;
    let end = memchr::memchr2(b'\r', b'\n', token).unwrap_or(token.len());
    Some(RawCredentials::Bearer(&token[..end]))
}

/// Whether a request head may carry Basic credentials: it holds `asic ` (of `Basic ` or
/// `basic `, as clients write the scheme). [`QuickHead::parse`]'s look at the raw bytes
/// before anything is parsed; a head that passes is parsed and its `Authorization`
/// fields checked. (The quick path itself looks with [`raw_credentials`].)
pub fn may_name_basic(head: &[u8]) -> bool {
    static SCHEME: LazyLock<memmem::Finder<'static>> =
        LazyLock::new(|| memmem::Finder::new(b"asic "));
    SCHEME.find(head).is_some()
}

/// Whether a request head may carry a bearer token: it holds `earer ` (of `Bearer `
/// or `bearer `), as [`may_name_basic`] looks for Basic credentials.
pub fn may_name_bearer(head: &[u8]) -> bool {
    static SCHEME: LazyLock<memmem::Finder<'static>> =
        LazyLock::new(|| memmem::Finder::new(b"earer "));
    SCHEME.find(head).is_some()
}

/// The bytes of the response to `answer` (see [`Encoded`]) and its status. Encoding is
/// most of what answering costs once the engine has decided, and a flood is the same
/// few answers over and over: each thread keeps the last [`KEPT_ANSWERS`] encoded, by
/// answer and challenge (a reload that changes the challenge finds none), and only the
/// `date` is written anew.
fn answer_bytes(answer: Answer, bearer: &HeaderValue) -> Option<(u16, Vec<u8>)> {
    thread_local! {
        static KEPT: RefCell<Vec<(Answer, HeaderValue, Rc<Encoded>)>> =
            const { RefCell::new(Vec::new()) };
    }
    let kept = KEPT.with_borrow(|kept| {
        kept.iter()
            .find(|(a, b, _)| *a == answer && b == bearer)
            .map(|(_, _, encoded)| Rc::clone(encoded))
    });
    let encoded = match kept {
        Some(encoded) => encoded,
        None => {
            let encoded = Rc::new(Encoded::of(respond::answer(answer, bearer))?);
            KEPT.with_borrow_mut(|kept| {
                if kept.len() == KEPT_ANSWERS {
                    kept.remove(0);
                }
                kept.push((answer, bearer.clone(), Rc::clone(&encoded)));
            });
            encoded
        }
    };
    Some((encoded.status, encoded.bytes()))
}

/// How many encoded answers [`answer_bytes`] keeps per thread.
const KEPT_ANSWERS: usize = 8;

/// A response as HTTP/1.1 bytes, as hyper writes it (RFC 9112 §4, §6): the status line,
/// the fields in order, `content-length` and `date` (RFC 9110 §6.6.1) when the fields
/// have none, then the body. As hyper does, a response without a body has its
/// `content-length: 0` after the other fields, wherever its field map holds it (the
/// bearer agreement table, issue 16: the token refusal's `x-ms-diagnostics` came after
/// it). Kept without its `date`, written by [`Encoded::bytes`].
#[derive(Debug)]
struct Encoded {
    status: u16,
    /// The status line and every field but `date`, each line with its CRLF.
    head: Vec<u8>,
    /// Whether `date` is written after `head` (the fields had none).
    date: bool,
    content: Vec<u8>,
}

impl Encoded {
    /// Encodes `res`. None when its body is not at hand at once (every refusal's is).
    fn of(res: Response<ProxyBody>) -> Option<Encoded> {
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
        // Status line, fields and content-length, each with its separators.
        let fields = headers::fields_len(&parts.headers);
        let mut head = Vec::with_capacity(40 + fields + 32);
        head.extend_from_slice(b"HTTP/1.1 ");
        head.extend_from_slice(parts.status.as_str().as_bytes());
        head.push(b' ');
        head.extend_from_slice(parts.status.canonical_reason().unwrap_or("").as_bytes());
        head.extend_from_slice(b"\r\n");
        let length_written =
            !content.is_empty() && parts.headers.contains_key(header::CONTENT_LENGTH);
        for (name, value) in &parts.headers {
            if name == header::CONTENT_LENGTH && !length_written {
                continue;
            }
            head.extend_from_slice(name.as_str().as_bytes());
            head.extend_from_slice(b": ");
            head.extend_from_slice(value.as_bytes());
            head.extend_from_slice(b"\r\n");
        }
        if !length_written {
            // Writing to a Vec cannot fail.
            let _ = write!(head, "content-length: {}\r\n", content.len());
        }
        Some(Encoded {
            status: parts.status.as_u16(),
            head,
            date: !parts.headers.contains_key(header::DATE),
            content,
        })
    }

    /// The response's bytes, with the current `date`.
    fn bytes(&self) -> Vec<u8> {
        const DATE_LINE: usize = "date: Tue, 01 Dec 2026 16:00:00 GMT\r\n".len();
        let mut out = Vec::with_capacity(self.head.len() + DATE_LINE + 2 + self.content.len());
        out.extend_from_slice(&self.head);
        if self.date {
            out.extend_from_slice(b"date: ");
            http_date(|date| out.extend_from_slice(date));
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(&self.content);
        out
    }
}

/// `res` as hyper writes it (see [`Encoded`]).
#[cfg(test)]
fn encode(res: Response<ProxyBody>) -> Option<Vec<u8>> {
    Encoded::of(res).map(|e| e.bytes())
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
    fn basic_and_bearer_credentials_are_found_in_any_case_of_field_and_scheme() {
        let yes: [&[u8]; 8] = [
            b"GET / HTTP/1.1\r\nAuthorization: Basic dTpw\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: x\r\nauthorization:basic dTpw\r\n\r\n",
            b"GET / HTTP/1.1\r\nAUTHORIZATION: \t basic dTpw\r\n\r\n",
            b"POST / HTTP/1.1\r\nX: 1\r\nAuthorization: Basic \r\n\r\n",
            b"GET / HTTP/1.1\r\nAuthorization: Bearer x\r\nAuthorization: Basic dTpw\r\n\r\n",
            b"GET / HTTP/1.1\r\nAuthorization: Bearer eyJ\r\n\r\n",
            b"GET / HTTP/1.1\r\nauthorization:bearer eyJ\r\n\r\n",
            b"GET / HTTP/1.1\r\nAuthorization: Bearer \r\n\r\n",
        ];
        for head in yes {
            assert!(parse(head).is_some(), "{}", String::from_utf8_lossy(head));
        }
        let no: [&[u8]; 11] = [
            b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
            b"GET / HTTP/1.1\r\nAuthorization: NTLM TlRMTVNTUAAB\r\n\r\n",
            b"GET / HTTP/1.1\r\nAuthorization: Basicx dTpw\r\n\r\n",
            b"GET / HTTP/1.1\r\nAuthorization: Bearerx eyJ\r\n\r\n",
            b"GET / HTTP/1.1\r\nX-Authorization: Bearer eyJ\r\n\r\n",
            b"GET / HTTP/1.1\r\nAuthorization: BEARER eyJ\r\n\r\n",
            b"GET / HTTP/1.1\r\nX-Authorization: Basic dTpw\r\n\r\n",
            b"GET /?x=Basic%20 HTTP/1.1\r\nX-Basic : asic \r\n\r\n",
            b"GET / HTTP/1.1\r\nX: Basic dTpw\r\n\r\n",
            // Spelled otherwise than clients do: hyper's.
            b"GET / HTTP/1.1\r\nAuthorization: BASIC dTpw\r\n\r\n",
            b"GET / HTTP/1.1\r\nAuthorization: baSic dTpw\r\n\r\n",
        ];
        for head in no {
            assert!(parse(head).is_none(), "{}", String::from_utf8_lossy(head));
        }
        assert!(!may_name_basic(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"));
        assert!(!may_name_bearer(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"));
    }

    #[test]
    fn the_bearer_token_is_the_first_bearer_field_s_credentials() {
        let token = |head: &[u8]| {
            let mut storage = QuickHead::storage();
            let parsed = QuickHead::parse(head, &mut storage)?;
            parsed.bearer_token().map(<[u8]>::to_vec)
        };
        use RawCredentials::{Basic, Bearer};
        let raw: [(&[u8], Option<RawCredentials>); 11] = [
            (
                b"GET / HTTP/1.1\r\nAuthorization: Bearer eyJ.a.b\r\n\r\n",
                Some(Bearer(b"eyJ.a.b")),
            ),
            (
                b"GET / HTTP/1.1\nauthorization:\t bearer t\n\n",
                Some(Bearer(b"t")),
            ),
            (
                b"GET / HTTP/1.1\r\nAuthorization: Bearer ",
                Some(Bearer(b"")),
            ),
            (
                b"GET / HTTP/1.1\r\nAuthorization: Basic dTpw\r\n\r\n",
                Some(Basic),
            ),
            (
                b"GET / HTTP/1.1\r\nauthorization:basic dTpw\r\n\r\n",
                Some(Basic),
            ),
            // The first field decides.
            (
                b"GET / HTTP/1.1\r\nAuthorization: Basic dTpw\r\nAuthorization: Bearer t\r\n\r\n",
                Some(Basic),
            ),
            (
                b"GET / HTTP/1.1\r\nAuthorization: NTLM TlRM\r\nAuthorization: Basic dTpw\r\n\r\n",
                None,
            ),
            (b"GET / HTTP/1.1\r\nAUTHORIZATION: Basic dTpw\r\n\r\n", None),
            (b"GET / HTTP/1.1\r\nAuthorization: BASIC dTpw\r\n\r\n", None),
            (b"GET / HTTP/1.1\r\nAuthorization: Basic\r\n\r\n", None),
            (b"GET / HTTP/1.1\r\nAuthorization:", None),
        ];
        for (head, expected) in raw {
            assert_eq!(
                raw_credentials(head),
                expected,
                "{}",
                String::from_utf8_lossy(head)
            );
        }
        let cases: [(&[u8], Option<&[u8]>); 6] = [
            (
                b"GET / HTTP/1.1\r\nAuthorization: Bearer eyJ.a.b\r\n\r\n",
                Some(b"eyJ.a.b"),
            ),
            (
                b"GET / HTTP/1.1\r\nauthorization: bearer  eyJ\r\n\r\n",
                Some(b" eyJ"),
            ),
            (
                b"GET / HTTP/1.1\r\nAuthorization: Bearer\r\nAuthorization: Bearer t\r\n\r\n",
                Some(b""),
            ),
            (
                b"GET / HTTP/1.1\r\nAuthorization: Basic dTpw\r\nAuthorization: Bearer t\r\n\r\n",
                Some(b"t"),
            ),
            (
                b"GET / HTTP/1.1\r\nAuthorization: Basic dTpw\r\nX: Bearer t\r\n\r\n",
                None,
            ),
            (b"GET / HTTP/1.1\r\nAuthorization: Bearer\tt\r\n\r\n", None),
        ];
        for (head, expected) in cases {
            assert_eq!(
                token(head).as_deref(),
                expected,
                "{}",
                String::from_utf8_lossy(head)
            );
        }
    }

    /// A parsed head's method, target and fields, owned.
    type Parsed = (Method, String, Vec<(String, Vec<u8>)>);

    fn parse(head: &[u8]) -> Option<Parsed> {
        let mut storage = QuickHead::storage();
        let parsed = QuickHead::parse(head, &mut storage)?;
        let fields = (parsed.fields.iter())
            .map(|f| (f.name.to_owned(), f.value.to_owned()))
            .collect();
        Some((parsed.method, parsed.target.to_string(), fields))
    }

    #[test]
    fn quick_heads_are_whole_http_1_1_heads_with_basic_credentials() {
        let head = b"POST /EWS/Exchange.asmx?x=1 HTTP/1.1\r\nHost: mail\r\nUser-Agent: ua\r\nAuthorization: Basic dTpw\r\nCookie: a=b\r\nCookie: c=d\r\n\r\n";
        let (method, target, fields) = parse(head).expect("a quick head");
        assert_eq!(method, Method::POST);
        assert_eq!(target, "/EWS/Exchange.asmx?x=1");
        assert_eq!(fields.len(), 5);
        let mut storage = QuickHead::storage();
        let parsed = QuickHead::parse(head, &mut storage).unwrap();
        let cookies: Vec<&[u8]> = parsed.values(&header::COOKIE).collect();
        assert_eq!(cookies, [&b"a=b"[..], b"c=d"]);
        assert_eq!(parsed.values(&header::HOST).next(), Some(&b"mail"[..]));
        let refused: [&[u8]; 13] = [
            b"GET / HTTP/1.1\r\nHost: a\r\n\r\n",
            b"GET / HTTP/1.1\r\nAuthorization: Basic dTpw\r\n",
            b"GET / HTTP/1.1\r\nAuthorization: Basic dTpw\r\n\r\nG",
            b"GET / HTTP/1.0\r\nAuthorization: Basic dTpw\r\n\r\n",
            b"HEAD / HTTP/1.1\r\nAuthorization: Basic dTpw\r\n\r\n",
            b"GET http://a/ HTTP/1.1\r\nAuthorization: Basic dTpw\r\n\r\n",
            b"OPTIONS * HTTP/1.1\r\nAuthorization: Basic dTpw\r\n\r\n",
            b"GET / HTTP/1.1\r\nAuthorization: Basic dTpw\r\nX: a\r\n b\r\n\r\n",
            b"GET / HTTP/1.1\r\nAuthorization: Basic dTpw\r\nX: \x01\r\n\r\n",
            b"G\x01T / HTTP/1.1\r\nAuthorization: Basic dTpw\r\n\r\n",
            b"GET /a b HTTP/1.1\r\nAuthorization: Basic dTpw\r\n\r\n",
            b"GET / HTTP/1.1\r\nAuthorization : Basic dTpw\r\n\r\n",
            b"GET / HTTP/1.1\r\nX@: 1\r\nAuthorization: Basic dTpw\r\n\r\n",
        ];
        for head in refused {
            assert!(parse(head).is_none(), "{}", String::from_utf8_lossy(head));
        }
        let many: String = (0..MAX_FIELDS).map(|i| format!("X-{i}: {i}\r\n")).collect();
        let head = format!("GET / HTTP/1.1\r\n{many}Authorization: Basic dTpw\r\n\r\n");
        assert!(parse(head.as_bytes()).is_none());
    }

    #[test]
    fn a_refusal_is_encoded_as_hyper_writes_it() {
        let bearer = hyper::header::HeaderValue::from_static("Bearer realm=\"x\"");
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

        // Without a body, `content-length: 0` follows every other field, as hyper writes
        // it, though the field map holds it before `x-ms-diagnostics`.
        let res = respond::refusal(Refusal::InvalidToken(TokenError::BadSignature), &bearer);
        let names: Vec<&str> = res.headers().keys().map(|n| n.as_str()).collect();
        assert_eq!(
            names,
            ["www-authenticate", "content-length", "x-ms-diagnostics"]
        );
        let text = String::from_utf8(encode(res).unwrap()).unwrap();
        let names: Vec<&str> = (text.split("\r\n").skip(1))
            .take_while(|l| !l.is_empty())
            .map(|l| l.split_once(':').unwrap().0)
            .collect();
        assert_eq!(
            names,
            [
                "www-authenticate",
                "x-ms-diagnostics",
                "content-length",
                "date"
            ]
        );
        assert!(text.contains("\r\ncontent-length: 0\r\n"), "{text}");
    }

    #[test]
    fn field_names_match_in_any_ascii_case_and_nothing_else() {
        let names = [
            header::AUTHORIZATION,
            header::HOST,
            header::CONNECTION,
            header::COOKIE,
            header::USER_AGENT,
        ];
        for name in &names {
            let lower = name.as_str();
            assert!(is_named(lower, name));
            assert!(is_named(&lower.to_ascii_uppercase(), name));
            let mut title = lower.to_owned();
            title[..1].make_ascii_uppercase();
            assert!(is_named(&title, name), "{title}");
            // Every other byte a token may hold, in every place, is another name.
            for i in 0..lower.len() {
                for b in (0x21u8..0x7f).filter(|b| httparse_token(*b)) {
                    let mut other = lower.as_bytes().to_vec();
                    if other[i].eq_ignore_ascii_case(&b) {
                        continue;
                    }
                    other[i] = b;
                    let other = String::from_utf8(other).unwrap();
                    assert!(!is_named(&other, name), "{other} taken for {lower}");
                }
            }
            assert!(!is_named(&lower[1..], name));
            assert!(!is_named(&format!("{lower}s"), name));
        }
    }

    /// A token character (RFC 9110 §5.6.2), as httparse checks field names.
    fn httparse_token(b: u8) -> bool {
        b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
    }

    #[test]
    fn kept_answers_are_the_bytes_encoding_gives_for_the_challenge_of_the_moment() {
        use crate::auth::Scheme;
        use crate::policy::{Protocol, UserId};
        // The date is the one part written anew: compare without it.
        let undated = |bytes: Vec<u8>| -> String {
            let text = String::from_utf8(bytes).unwrap();
            text.split("\r\n")
                .filter(|l| !l.starts_with("date: "))
                .collect::<Vec<_>>()
                .join("\r\n")
        };
        let blocked = |protocol, user| {
            Refusal::Decided(Decision {
                action: Action::Block,
                reason: Reason::LegacyBlocked,
                protocol,
                scheme: Scheme::Basic,
                policy: None,
                legacy: true,
                user,
                connection: false,
            })
        };
        let refusals = [
            blocked(Protocol::WebServices, None),
            blocked(Protocol::Mapi, Some(UserId(3))),
            Refusal::InvalidToken(TokenError::BadSignature),
            Refusal::InvalidToken(TokenError::Expired),
            Refusal::InvalidToken(TokenError::NoKeys),
            Refusal::Client(framing::ClientFault::MissingHost),
        ];
        for bearer in ["Bearer realm=\"a\"", "Bearer realm=\"b\""] {
            let bearer = HeaderValue::from_static(bearer);
            // Twice over: the first time encodes and keeps, the second reads what was kept.
            for _ in 0..2 {
                for r in refusals {
                    let (status, bytes) = answer_bytes(Answer::from(r), &bearer).unwrap();
                    let res = respond::refusal(r, &bearer);
                    assert_eq!(status, res.status().as_u16(), "{r:?}");
                    assert_eq!(undated(bytes), undated(encode(res).unwrap()), "{r:?}");
                }
            }
        }
        // More answers than are kept: the oldest is encoded again, alike.
        for fault in [
            framing::ClientFault::MissingHost,
            framing::ClientFault::BodyStalled,
            framing::ClientFault::HeadTooLarge,
            framing::ClientFault::MethodNotAllowed,
        ] {
            for error in [
                TokenError::Audience,
                TokenError::UntrustedIssuer,
                TokenError::Malformed,
            ] {
                let bearer = HeaderValue::from_static("Bearer realm=\"c\"");
                for r in [Refusal::Client(fault), Refusal::InvalidToken(error)] {
                    let (_, bytes) = answer_bytes(Answer::from(r), &bearer).unwrap();
                    let res = respond::refusal(r, &bearer);
                    assert_eq!(undated(bytes), undated(encode(res).unwrap()), "{r:?}");
                }
            }
        }
    }
}
