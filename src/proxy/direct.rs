//! exgate's own HTTP/1.1 client for requests without a body (`GET`, `HEAD`, `OPTIONS`).
//!
//! hyper's client runs every upstream connection as a task of its own: each request
//! crosses a channel to that task, wakes it, and the response crosses back, three task
//! polls per request. For the body-less requests most Exchange traffic is (Autodiscover
//! and OWA `GET`s, OAB downloads, ActiveSync `OPTIONS`), leaving it out took exgate's
//! instructions per anonymous pass-through request from 30,244 to 23,031 (callgrind,
//! `benches/instructions.sh`, issue 16). Here the request is written and its response
//! head read by the client connection's own task, and a response body is read from the
//! upstream socket as the client side asks for it. A request with a body still goes
//! through hyper's client: the first one hands the connection over to it for good.
//!
//! The pure parts, the response head ([`parse_head`]) with its framing (RFC 9112 §6.3)
//! and chunked decoding ([`ChunkedDecoder`], RFC 9112 §7.1), are functions over bytes,
//! fuzzed by `fuzz/fuzz_targets/upstream_response.rs`.

use std::future::Future;
use std::io;
use std::mem::MaybeUninit;
use std::ops::Range;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, ready};

use bytes::{Buf, Bytes, BytesMut};
use http_body_util::{BodyExt, Full};
use hyper::body::{Body, Frame, SizeHint};
use hyper::header::{HeaderMap, HeaderName, HeaderValue};
use hyper::{Method, Response, StatusCode, Version};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};

use super::respond::{BoxError, ProxyBody, empty};
use super::upstream::{Head, UpstreamError};

/// The largest response head read (each interim one too): hyper's client allows about
/// 400 KiB, Exchange's heads are a few KiB at most.
pub const MAX_HEAD_BYTES: usize = 64 * 1024;
/// The most fields a response head may have.
pub const MAX_FIELDS: usize = 128;
/// How many bytes one read asks the socket for (hyper's initial read buffer).
const READ_BYTES: usize = 8 * 1024;
/// The most interim (1xx) responses skipped before the final one.
const MAX_INTERIM: usize = 8;
/// The longest chunk-size line, extensions included.
pub const MAX_CHUNK_LINE_BYTES: usize = 4096;
/// The most bytes of trailer fields after the last chunk (they are dropped).
pub const MAX_TRAILER_BYTES: usize = 16 * 1024;
/// The fewest fields a response's map is made for. hyper keeps the map of the response
/// it wrote and parses the connection's next request head into it, to which exgate then
/// adds `X-Forwarded-For` and `-Proto`: a map sized to a short response (HAProxy's
/// `return 200` has two fields) was grown, reallocated and rehashed, on every request
/// (about 3% of an anonymous request's instructions, `benches/instructions.sh`).
const MIN_RESPONSE_FIELDS: usize = 16;

/// Whether a request of `method` without a body goes through this client: the methods
/// RFC 9110 §9.2.2 calls idempotent that carry no body in Exchange's protocols, so one
/// that meets a reused connection the server had closed can be sent again
/// (RFC 9112 §9.3.1).
pub fn speaks(method: &Method) -> bool {
    *method == Method::GET || *method == Method::HEAD || *method == Method::OPTIONS
}

/// How a response's body is delimited (RFC 9112 §6.3).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Framing {
    /// No body: a response to `HEAD`, or a 1xx, 204 or 304 (§6.3 rule 1).
    None,
    /// `Content-Length` bytes (§6.3 rule 5).
    Length(u64),
    /// `Transfer-Encoding` ending in `chunked` (§6.3 rule 4).
    Chunked,
    /// Everything until the server closes the connection: a `Transfer-Encoding` not
    /// ending in `chunked`, or neither field (§6.3 rules 4 and 7).
    UntilClose,
}

/// Why an upstream response could not be read. Counted as the server's failure (502).
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Malformed {
    #[error("upstream response head is not valid HTTP/1.x")]
    Head,
    #[error("upstream response head is larger than 64 KiB or has more than 128 fields")]
    HeadTooLarge,
    /// RFC 9112 §6.3 rule 6: an invalid `Content-Length` is unrecoverable.
    #[error("upstream response has an invalid Content-Length")]
    ContentLength,
    /// exgate never asks for a protocol switch (`Upgrade` is hop-by-hop).
    #[error("upstream switched protocols unasked")]
    Upgrade,
    #[error("upstream sent more than 8 interim responses")]
    TooManyInterim,
    #[error("upstream response body is not valid chunked coding")]
    Chunked,
    #[error("upstream closed the connection inside the response")]
    Truncated,
}

/// A response head read from the start of a buffer.
#[derive(Debug, PartialEq, Eq)]
pub struct ParsedHead {
    /// Bytes the head takes, its final empty line included.
    pub len: usize,
    pub status: StatusCode,
    pub version: Version,
    pub framing: Framing,
    /// The connection may carry another request once this response's body is read:
    /// HTTP/1.1, no `Connection: close`, a body with an end of its own, and not both
    /// `Transfer-Encoding` and `Content-Length` (§6.3 rule 3 says close after it).
    pub reusable: bool,
    /// Each field's name and value as byte ranges of the head, in order.
    pub fields: Vec<(Range<usize>, Range<usize>)>,
    /// What becomes of `Content-Length` on the way to the client.
    pub length_field: LengthField,
}

/// What becomes of a response's `Content-Length` on the way to the client: hyper's
/// server frames the body by it, so it must say the length the client will get.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LengthField {
    /// None, or one field with one value: passed on as it is.
    Keep,
    /// A list of one repeated value (`5, 5`, or two fields `5`): passed on as one value
    /// (RFC 9110 §8.6 lets a recipient take it as that value).
    Normalize(u64),
    /// Removed: `Transfer-Encoding` decides the length (RFC 9112 §6.3 rule 3 says a
    /// sender must remove `Content-Length` then), or it is invalid on a response without
    /// a body.
    Drop,
}

/// Parses the response head at the start of `buf` to a request of `method`. `Ok(None)`:
/// the head is not whole yet (and `buf` is under [`MAX_HEAD_BYTES`]). Interim responses
/// come back like final ones (`status` 1xx); the caller skips them.
pub fn parse_head(buf: &[u8], method: &Method) -> Result<Option<ParsedHead>, Malformed> {
    let mut storage = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_FIELDS];
    let mut res = httparse::Response::new(&mut []);
    let len = match httparse::ParserConfig::default().parse_response_with_uninit_headers(
        &mut res,
        buf,
        &mut storage,
    ) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) if buf.len() >= MAX_HEAD_BYTES => {
            return Err(Malformed::HeadTooLarge);
        }
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => return Err(Malformed::HeadTooLarge),
        Err(_) => return Err(Malformed::Head),
    };
    if len > MAX_HEAD_BYTES {
        return Err(Malformed::HeadTooLarge);
    }
    let code = res.code.ok_or(Malformed::Head)?;
    let status = StatusCode::from_u16(code).map_err(|_| Malformed::Head)?;
    let version = match res.version {
        Some(1) => Version::HTTP_11,
        Some(0) => Version::HTTP_10,
        _ => return Err(Malformed::Head),
    };
    let base = buf.as_ptr() as usize;
    let range = |s: &[u8]| {
        let start = s.as_ptr() as usize - base;
        start..start + s.len()
    };
    let mut fields = Vec::with_capacity(res.headers.len());
    let mut length: Option<u64> = None;
    let mut length_invalid = false;
    let mut length_listed = false;
    let mut transfer_coding: Option<&[u8]> = None;
    let mut close = false;
    for field in res.headers.iter() {
        let name = field.name.as_bytes();
        fields.push((range(name), range(field.value)));
        if name.eq_ignore_ascii_case(b"content-length") {
            // RFC 9110 §8.6: a list of one repeated value is that value.
            length_listed |= length.is_some() || field.value.contains(&b',');
            for item in field.value.split(|&b| b == b',') {
                match (content_length(trim(item)), length) {
                    (Some(n), None) => length = Some(n),
                    (Some(n), Some(m)) if n == m => {}
                    _ => length_invalid = true,
                }
            }
        } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
            // The last coding of the last field decides (RFC 9112 §6.1).
            if let Some(last) = field
                .value
                .split(|&b| b == b',')
                .map(trim)
                .rfind(|c| !c.is_empty())
            {
                transfer_coding = Some(last);
            } else if transfer_coding.is_none() {
                transfer_coding = Some(b"");
            }
        } else if name.eq_ignore_ascii_case(b"connection") {
            close |= field
                .value
                .split(|&b| b == b',')
                .any(|t| trim(t).eq_ignore_ascii_case(b"close"));
        }
    }
    let bodiless = *method == Method::HEAD
        || status.is_informational()
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED;
    let framing = match (bodiless, transfer_coding, length) {
        (true, _, _) => Framing::None,
        (false, Some(coding), _) if coding.eq_ignore_ascii_case(b"chunked") => Framing::Chunked,
        (false, Some(_), _) => Framing::UntilClose,
        (false, None, _) if length_invalid => return Err(Malformed::ContentLength),
        (false, None, Some(n)) => Framing::Length(n),
        (false, None, None) => Framing::UntilClose,
    };
    let both = transfer_coding.is_some() && (length.is_some() || length_invalid);
    let reusable = version == Version::HTTP_11 && !close && framing != Framing::UntilClose && !both;
    let length_field = match length {
        _ if both || length_invalid => LengthField::Drop,
        Some(n) if length_listed => LengthField::Normalize(n),
        _ => LengthField::Keep,
    };
    Ok(Some(ParsedHead {
        len,
        status,
        version,
        framing,
        reusable,
        fields,
        length_field,
    }))
}

/// Whether `buf` may hold a whole head, given that its first `scanned` bytes hold no
/// blank line: one (`\n\n` or `\n\r\n`, the end of every head httparse accepts) begins
/// at most 2 bytes before `scanned`.
pub fn may_end_head(buf: &[u8], scanned: usize) -> bool {
    let tail = &buf[scanned.saturating_sub(2).min(buf.len())..];
    memchr::memchr_iter(b'\n', tail)
        .any(|i| matches!(&tail[i + 1..], [b'\n', ..] | [b'\r', b'\n', ..]))
}

/// `1*DIGIT` (RFC 9110 §8.6) as a number; None for anything else or an overflow.
fn content_length(digits: &[u8]) -> Option<u64> {
    if digits.is_empty() || digits.len() > 19 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(digits).ok()?.parse().ok()
}

/// Without optional whitespace (SP, HTAB) on either side (RFC 9110 §5.6.3).
fn trim(s: &[u8]) -> &[u8] {
    let start = s.iter().position(|b| !matches!(b, b' ' | b'\t'));
    let end = s.iter().rposition(|b| !matches!(b, b' ' | b'\t'));
    match (start, end) {
        (Some(a), Some(b)) => &s[a..=b],
        _ => &[],
    }
}

/// The request head as it goes upstream: the request line (RFC 9112 §3) with the
/// origin-form target, `Host` first when the client sent none (Exchange checks token
/// audiences against the client's), then every field in the client's order.
pub fn encode_request(head: &Head, host: &HeaderValue) -> Vec<u8> {
    let method = head.method.as_str().as_bytes();
    let target = head.path_and_query.as_str().as_bytes();
    let add_host = !head.headers.contains_key(hyper::header::HOST);
    let mut size = method.len() + target.len() + 14 + super::headers::fields_len(&head.headers);
    if add_host {
        size += 8 + host.len();
    }
    let mut out = Vec::with_capacity(size);
    out.extend_from_slice(method);
    out.push(b' ');
    out.extend_from_slice(target);
    out.extend_from_slice(b" HTTP/1.1\r\n");
    if add_host {
        out.extend_from_slice(b"host: ");
        out.extend_from_slice(host.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    super::headers::write_fields(&mut out, &head.headers);
    out.extend_from_slice(b"\r\n");
    out
}

/// What [`ChunkedDecoder::decode`] got out of the bytes so far.
#[derive(Debug, PartialEq, Eq)]
pub enum Decoded {
    /// Chunk data, in order.
    Data(Bytes),
    /// More bytes are needed.
    NeedMore,
    /// The last chunk and the trailer section are read; the body ends.
    End,
}

/// A chunked body's decoder (RFC 9112 §7.1): chunk data comes out, sizes, extensions
/// and trailer fields are dropped. Lines are bounded ([`MAX_CHUNK_LINE_BYTES`],
/// [`MAX_TRAILER_BYTES`]); a chunk's data must end in CRLF.
#[derive(Debug, Default)]
pub struct ChunkedDecoder {
    state: ChunkState,
    trailer_bytes: usize,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum ChunkState {
    #[default]
    Size,
    Data(u64),
    DataEnd,
    Trailers,
    Done,
}

impl ChunkedDecoder {
    /// Decodes from the front of `buf`, consuming what it used.
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Decoded, Malformed> {
        loop {
            match self.state {
                ChunkState::Size => {
                    if buf.is_empty() {
                        return Ok(Decoded::NeedMore);
                    }
                    // httparse reads an empty size line as 0: a size has a digit.
                    if !buf[0].is_ascii_hexdigit() {
                        return Err(Malformed::Chunked);
                    }
                    match httparse::parse_chunk_size(buf) {
                        Ok(httparse::Status::Complete((used, size))) => {
                            buf.advance(used);
                            self.state = match size {
                                0 => ChunkState::Trailers,
                                n => ChunkState::Data(n),
                            };
                        }
                        Ok(httparse::Status::Partial) if buf.len() > MAX_CHUNK_LINE_BYTES => {
                            return Err(Malformed::Chunked);
                        }
                        Ok(httparse::Status::Partial) => return Ok(Decoded::NeedMore),
                        Err(_) => return Err(Malformed::Chunked),
                    }
                }
                ChunkState::Data(left) => {
                    if buf.is_empty() {
                        return Ok(Decoded::NeedMore);
                    }
                    let take = usize::try_from(left).unwrap_or(usize::MAX).min(buf.len());
                    let data = buf.split_to(take).freeze();
                    self.state = match left - take as u64 {
                        0 => ChunkState::DataEnd,
                        n => ChunkState::Data(n),
                    };
                    return Ok(Decoded::Data(data));
                }
                ChunkState::DataEnd => {
                    if buf.len() < 2 {
                        return Ok(Decoded::NeedMore);
                    }
                    if &buf[..2] != b"\r\n" {
                        return Err(Malformed::Chunked);
                    }
                    buf.advance(2);
                    self.state = ChunkState::Size;
                }
                ChunkState::Trailers => {
                    let Some(eol) = buf.windows(2).position(|w| w == b"\r\n") else {
                        if self.trailer_bytes + buf.len() > MAX_TRAILER_BYTES {
                            return Err(Malformed::Chunked);
                        }
                        return Ok(Decoded::NeedMore);
                    };
                    self.trailer_bytes += eol + 2;
                    if self.trailer_bytes > MAX_TRAILER_BYTES {
                        return Err(Malformed::Chunked);
                    }
                    buf.advance(eol + 2);
                    if eol == 0 {
                        self.state = ChunkState::Done;
                    }
                }
                ChunkState::Done => return Ok(Decoded::End),
            }
        }
    }
}

/// The transports this client speaks on.
pub trait Stream: AsyncRead + AsyncWrite + Unpin + Send + Sync + 'static {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send + Sync + 'static> Stream for T {}

/// An upstream connection this client speaks on, with what was read and not yet used.
pub struct Direct<T> {
    io: T,
    buf: BytesMut,
    /// A response was read on it: a failure before the next one's first byte may be the
    /// server having closed it meanwhile.
    served: bool,
}

/// Where a client connection's upstream connection waits between its requests: empty
/// while a response body is being read from it, and for good once it is closed.
pub type Slot<T> = Mutex<Option<Box<Direct<T>>>>;

/// Why an exchange failed.
#[derive(Debug)]
pub struct Failed {
    pub error: UpstreamError,
    /// Nothing came back on a connection that had served before: the server may have
    /// closed it while it sat idle, so the request may be sent again on a new one.
    pub retriable: bool,
}

impl<T: Stream> Direct<T> {
    /// A fresh connection.
    pub fn new(io: T) -> Direct<T> {
        Direct {
            io,
            buf: BytesMut::new(),
            served: false,
        }
    }

    /// The transport, for hyper's client to take over; None when bytes the server sent
    /// unasked wait in the buffer (the connection is not at a message boundary).
    pub fn into_io(self) -> Option<T> {
        self.buf.is_empty().then_some(self.io)
    }

    /// Whether the server has closed the connection, or sent bytes nobody asked for,
    /// while it sat idle: one read that must not block.
    pub fn is_stale(&mut self) -> bool {
        let mut byte = [0u8; 1];
        let mut read = tokio::io::ReadBuf::new(&mut byte);
        let mut cx = Context::from_waker(std::task::Waker::noop());
        // Ready: an end of file, an error, or a byte; any of them ends the connection.
        Pin::new(&mut self.io)
            .poll_read(&mut cx, &mut read)
            .is_ready()
    }
}

/// Puts a connection whose response was read whole back in its slot, its buffer's
/// allocation let go (an idle connection holds no buffer).
fn give_back<T>(slot: &Slot<T>, mut conn: Box<Direct<T>>) {
    conn.buf = BytesMut::new();
    conn.served = true;
    *slot.lock().unwrap_or_else(|e| e.into_inner()) = Some(conn);
}

/// Sends `request` (from [`encode_request`]) for `method` on the connection in `slot` and
/// reads the response head. The body comes back with the response: read ahead when it
/// was already in the buffer, else read from the connection as the client side asks.
/// The connection goes back to `slot` once the body is read whole if it may carry
/// another request; otherwise it is closed and `slot` stays empty.
pub async fn exchange<T: Stream>(
    slot: &Arc<Slot<T>>,
    request: &[u8],
    method: &Method,
) -> Result<Response<ProxyBody>, Failed> {
    let taken = slot.lock().unwrap_or_else(|e| e.into_inner()).take();
    let Some(mut conn) = taken else {
        return Err(Failed {
            error: UpstreamError::Unreachable,
            retriable: false,
        });
    };
    let reused = conn.served;
    // Nobody reads the connection while it sits between two requests (or before its
    // first): what arrived meanwhile (the server's close, or bytes nobody asked for,
    // which would otherwise be read as this response's start) is found now, before
    // anything is sent. The read does not block, and costs no `recv` unless the socket
    // became readable (tokio knows from epoll), as hyper's client would have seen it on
    // its own task.
    if conn.is_stale() {
        tracing::debug!("upstream connection closed or unclean while idle");
        return Err(Failed {
            error: UpstreamError::Unreachable,
            retriable: reused,
        });
    }
    if let Err(e) = write_all(&mut conn.io, request).await {
        tracing::debug!(error = %e, "upstream connection failed on write");
        return Err(Failed {
            error: UpstreamError::Unreachable,
            retriable: reused,
        });
    }
    let mut interim = 0;
    let mut received = false;
    // Bytes of the buffer known to hold no blank line: a head trickled in byte by byte
    // is parsed once it can be whole, not again from its start after every read.
    let mut scanned = 0;
    let parsed = loop {
        // The first read is parsed at once (a head usually arrives whole in it).
        let whole = !conn.buf.is_empty() && (scanned == 0 || may_end_head(&conn.buf, scanned));
        if whole {
            match parse_head(&conn.buf, method) {
                Ok(Some(head)) if head.status.is_informational() => {
                    if head.status == StatusCode::SWITCHING_PROTOCOLS {
                        return Err(malformed(Malformed::Upgrade));
                    }
                    interim += 1;
                    if interim > MAX_INTERIM {
                        return Err(malformed(Malformed::TooManyInterim));
                    }
                    conn.buf.advance(head.len);
                    scanned = 0;
                    continue;
                }
                Ok(Some(head)) => break head,
                Ok(None) => {}
                Err(e) => return Err(malformed(e)),
            }
        } else if conn.buf.len() >= MAX_HEAD_BYTES {
            return Err(malformed(Malformed::HeadTooLarge));
        }
        scanned = conn.buf.len();
        conn.buf.reserve(READ_BYTES);
        match read(&mut conn).await {
            Ok(0) if received => return Err(malformed(Malformed::Truncated)),
            Ok(0) => {
                tracing::debug!("upstream connection closed before a response");
                return Err(Failed {
                    error: UpstreamError::Unreachable,
                    retriable: reused,
                });
            }
            Ok(_) => received = true,
            Err(e) => {
                tracing::debug!(error = %e, "upstream connection failed on read");
                return Err(Failed {
                    error: UpstreamError::Unreachable,
                    retriable: reused && !received,
                });
            }
        }
    };
    let head = conn.buf.split_to(parsed.len).freeze();
    let mut headers = HeaderMap::with_capacity(parsed.fields.len().max(MIN_RESPONSE_FIELDS));
    for (name, value) in &parsed.fields {
        let name = HeaderName::from_bytes(&head[name.clone()]);
        let value = HeaderValue::from_maybe_shared(head.slice(value.clone()));
        match (name, value) {
            (Ok(name), Ok(value)) => {
                headers.append(name, value);
            }
            _ => return Err(malformed(Malformed::Head)),
        }
    }
    match parsed.length_field {
        LengthField::Keep => {}
        LengthField::Normalize(n) => {
            headers.insert(hyper::header::CONTENT_LENGTH, HeaderValue::from(n));
        }
        LengthField::Drop => {
            headers.remove(hyper::header::CONTENT_LENGTH);
        }
    }
    let body = match parsed.framing {
        Framing::None => {
            settle(slot, conn, parsed.reusable);
            empty()
        }
        Framing::Length(n) if conn.buf.len() as u64 >= n => {
            let data = conn.buf.split_to(n as usize).freeze();
            settle(slot, conn, parsed.reusable);
            Full::new(data).map_err(|never| match never {}).boxed()
        }
        framing => DirectBody {
            conn: Some(conn),
            slot: slot.clone(),
            state: match framing {
                Framing::Length(n) => BodyState::Length(n),
                Framing::Chunked => BodyState::Chunked(ChunkedDecoder::default()),
                _ => BodyState::UntilClose,
            },
            reusable: parsed.reusable,
        }
        .boxed(),
    };
    let mut res = Response::new(body);
    *res.status_mut() = parsed.status;
    *res.version_mut() = parsed.version;
    *res.headers_mut() = headers;
    Ok(res)
}

/// After a response read whole: back to the slot if it may serve again and nothing
/// unasked follows it, else closed.
fn settle<T>(slot: &Slot<T>, conn: Box<Direct<T>>, reusable: bool) {
    if reusable && conn.buf.is_empty() {
        give_back(slot, conn);
    }
}

fn malformed(e: Malformed) -> Failed {
    tracing::warn!(error = %e, "upstream response unreadable");
    Failed {
        error: UpstreamError::Unreachable,
        retriable: false,
    }
}

async fn write_all<T: Stream>(io: &mut T, bytes: &[u8]) -> io::Result<()> {
    io.write_all(bytes).await?;
    io.flush().await
}

/// One read into the connection's buffer.
fn read<T: Stream>(conn: &mut Direct<T>) -> impl Future<Output = io::Result<usize>> + '_ {
    std::future::poll_fn(move |cx| {
        tokio_util::io::poll_read_buf(Pin::new(&mut conn.io), cx, &mut conn.buf)
    })
}

enum BodyState {
    Length(u64),
    Chunked(ChunkedDecoder),
    UntilClose,
}

/// A response body read from the upstream connection as the client side polls it. Read
/// whole, it puts the connection back in its slot (or closes it); dropped before that,
/// it closes it.
struct DirectBody<T> {
    conn: Option<Box<Direct<T>>>,
    slot: Arc<Slot<T>>,
    state: BodyState,
    reusable: bool,
}

impl<T: Stream> DirectBody<T> {
    fn finish(&mut self) {
        if let Some(conn) = self.conn.take() {
            settle(&self.slot, conn, self.reusable);
        }
    }

    fn fail(&mut self, e: Malformed) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        self.conn = None;
        tracing::warn!(error = %e, "upstream response body unreadable");
        Poll::Ready(Some(Err(Box::new(e))))
    }
}

impl<T: Stream> Body for DirectBody<T> {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        loop {
            let Some(conn) = this.conn.as_mut() else {
                return Poll::Ready(None);
            };
            match &mut this.state {
                BodyState::Length(0) => {
                    this.finish();
                    return Poll::Ready(None);
                }
                BodyState::Length(left) if !conn.buf.is_empty() => {
                    let take = usize::try_from(*left)
                        .unwrap_or(usize::MAX)
                        .min(conn.buf.len());
                    let data = conn.buf.split_to(take).freeze();
                    *left -= take as u64;
                    if *left == 0 {
                        this.finish();
                    }
                    return Poll::Ready(Some(Ok(Frame::data(data))));
                }
                BodyState::UntilClose if !conn.buf.is_empty() => {
                    let data = conn.buf.split().freeze();
                    return Poll::Ready(Some(Ok(Frame::data(data))));
                }
                BodyState::Chunked(decoder) => match decoder.decode(&mut conn.buf) {
                    Ok(Decoded::Data(data)) => return Poll::Ready(Some(Ok(Frame::data(data)))),
                    Ok(Decoded::End) => {
                        this.finish();
                        return Poll::Ready(None);
                    }
                    Ok(Decoded::NeedMore) => {}
                    Err(e) => return this.fail(e),
                },
                BodyState::Length(_) | BodyState::UntilClose => {}
            }
            conn.buf.reserve(READ_BYTES);
            let read = ready!(tokio_util::io::poll_read_buf(
                Pin::new(&mut conn.io),
                cx,
                &mut conn.buf
            ));
            let until_close = matches!(this.state, BodyState::UntilClose);
            match read {
                Ok(0) if until_close => {
                    this.conn = None;
                    return Poll::Ready(None);
                }
                Ok(0) => return this.fail(Malformed::Truncated),
                Ok(_) => {}
                Err(e) => {
                    this.conn = None;
                    tracing::debug!(error = %e, "upstream connection failed inside a body");
                    return Poll::Ready(Some(Err(Box::new(e))));
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.conn.is_none() || matches!(self.state, BodyState::Length(0))
    }

    /// At least the bytes left, never "exactly": a body still to be read is one the
    /// server could stall, so the idle timeout must wrap it whatever its length
    /// ([`super::idle::IdleTimeout::wrap`] leaves exact lengths under 64 KiB alone).
    /// The client's framing comes from the `Content-Length` field.
    fn size_hint(&self) -> SizeHint {
        let mut hint = SizeHint::new();
        if let BodyState::Length(n) = self.state {
            hint.set_lower(n);
        }
        hint
    }
}

#[cfg(test)]
#[path = "direct_tests.rs"]
mod tests;
