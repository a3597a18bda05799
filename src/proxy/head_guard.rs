//! A look at the raw bytes of each request head before hyper parses it (SPEC §6).
//!
//! hyper (through httparse) accepts a bare LF as a line ending, as RFC 9112 §2.2 allows,
//! silently drops `Content-Length` when `Transfer-Encoding` is present, and bounds the
//! head only by its read buffer. A strict server refuses all three, so exgate measures
//! them here: [`HeadGuard`] wraps the client connection's byte stream, follows the
//! message framing (heads, `Content-Length` bodies, chunked bodies) with a small state
//! machine, and queues one [`HeadVerdict`] per request head for the request path to
//! read. It never changes a byte, and it skips body bytes without looking at them.

use std::collections::VecDeque;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// What the raw bytes of one request head showed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HeadVerdict {
    /// The head's exact size: request line, fields and the empty line, with line endings.
    pub bytes: usize,
    /// A line ended in LF without CR.
    pub bare_lf: bool,
    /// How many `Content-Length` fields the head had.
    pub content_lengths: u8,
    /// The head had a `Transfer-Encoding` field.
    pub transfer_encoding: bool,
    /// How many `Host` fields the head had.
    pub hosts: u8,
    /// The head had a `Cookie` field (the ProxyShell guard reads cookies only then).
    pub cookie: bool,
    /// The head had a `Connection` field (what it names is checked only then).
    pub connection: bool,
    /// The guard could not follow this connection's framing (an unreadable
    /// `Content-Length`, a malformed chunked body): nothing after it can be vouched for.
    pub lost: bool,
}

/// The verdicts of the heads read so far and not yet taken, shared between the stream
/// wrapper and the connection's request path.
#[derive(Clone, Debug, Default)]
pub struct Verdicts(Arc<Mutex<VecDeque<HeadVerdict>>>);

impl Verdicts {
    /// The verdict of the oldest head not yet taken. hyper cannot hand over a request
    /// before its whole head went through the guard, so a request always finds its own.
    pub fn take(&self) -> Option<HeadVerdict> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).pop_front()
    }

    /// The verdict of the one head read and not yet taken; None when there is none or
    /// more than one. Not taken.
    pub fn sole(&self) -> Option<HeadVerdict> {
        let queue = self.0.lock().unwrap_or_else(|e| e.into_inner());
        match queue.len() {
            1 => queue.front().copied(),
            _ => None,
        }
    }

    /// Frees the queue's room when it is empty (a parked connection keeps no buffer).
    pub fn shrink(&self) {
        let mut queue = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if queue.is_empty() {
            *queue = VecDeque::new();
        }
    }

    fn push(&self, verdict: HeadVerdict) {
        let mut queue = self.0.lock().unwrap_or_else(|e| e.into_inner());
        // Bounded: a client pipelining heads faster than they are served is stopped by
        // hyper's buffer long before this.
        if queue.len() < 64 {
            queue.push_back(verdict);
        }
    }
}

/// How many bytes of a field line are kept to recognise `Content-Length` and
/// `Transfer-Encoding` and read the length.
const LINE_PREFIX: usize = 64;

#[derive(Debug)]
enum State {
    /// Before a request line; empty lines there are skipped (RFC 9112 §2.2).
    Start,
    Head(HeadScan),
    /// Skipping a body of known length.
    Length(u64),
    Chunked(Chunk),
    /// Framing could not be followed; every later head is reported lost.
    Lost,
}

#[derive(Debug)]
enum Chunk {
    /// In a chunk-size line: the size so far, and whether an extension started.
    Size {
        size: u64,
        digits: u8,
        ext: bool,
    },
    Data(u64),
    /// The CRLF after chunk data.
    DataEnd {
        seen_cr: bool,
    },
    /// Trailer fields, until an empty line.
    Trailer {
        line_len: usize,
    },
}

/// A head being read. Kept inline (no allocation per request): the line prefix is a
/// fixed array.
#[derive(Debug)]
struct HeadScan {
    verdict: HeadVerdict,
    /// The first bytes of the current line, as received.
    line: [u8; LINE_PREFIX],
    /// The current line's length so far, its ending excluded.
    line_len: usize,
    prev_cr: bool,
    content_length: Option<u64>,
    content_length_unreadable: bool,
}

impl HeadScan {
    fn new() -> HeadScan {
        HeadScan {
            verdict: HeadVerdict::default(),
            line: [0; LINE_PREFIX],
            line_len: 0,
            prev_cr: false,
            content_length: None,
            content_length_unreadable: false,
        }
    }

    /// Appends line bytes, keeping only the first [`LINE_PREFIX`].
    fn keep(&mut self, bytes: &[u8]) {
        if self.line_len < LINE_PREFIX {
            let n = bytes.len().min(LINE_PREFIX - self.line_len);
            self.line[self.line_len..self.line_len + n].copy_from_slice(&bytes[..n]);
        }
        self.line_len += bytes.len();
    }

    /// Notes `Host`, `Cookie`, `Connection`, `Content-Length` and `Transfer-Encoding` fields;
    /// `content` is the line's length without its ending.
    fn inspect_field(&mut self, content: usize) {
        let line = &self.line[..content.min(LINE_PREFIX)];
        // An empty value counts too (`Transfer-Encoding:` with nothing after the colon:
        // red team, issue 16, where the quick path took it for a head without one).
        let named =
            |name: &[u8]| line.len() >= name.len() && line[..name.len()].eq_ignore_ascii_case(name);
        match line.first().map(u8::to_ascii_lowercase) {
            Some(b'c') if named(b"content-length:") => {
                let v = &mut self.verdict;
                v.content_lengths = v.content_lengths.saturating_add(1);
                let value = line[b"content-length:".len()..].trim_ascii();
                let parsed = (content <= LINE_PREFIX
                    && !value.is_empty()
                    && value.iter().all(u8::is_ascii_digit))
                .then(|| std::str::from_utf8(value).ok()?.parse::<u64>().ok())
                .flatten();
                match parsed {
                    Some(n) => self.content_length = Some(n),
                    // hyper refuses such a head; the guard cannot follow it either way.
                    None => self.content_length_unreadable = true,
                }
            }
            Some(b'c') if named(b"cookie:") => self.verdict.cookie = true,
            Some(b'c') if named(b"connection:") => self.verdict.connection = true,
            Some(b't') if named(b"transfer-encoding:") => self.verdict.transfer_encoding = true,
            Some(b'h') if named(b"host:") => {
                self.verdict.hosts = self.verdict.hosts.saturating_add(1);
            }
            _ => {}
        }
    }
}

/// A client byte stream with a head guard in its read path.
pub struct HeadGuard<S> {
    inner: S,
    state: State,
    verdicts: Verdicts,
    /// Request heads begun so far (wrapping).
    heads_begun: u64,
}

impl<S> HeadGuard<S> {
    /// Wraps `inner`; verdicts go to `verdicts`.
    pub fn new(inner: S, verdicts: Verdicts) -> HeadGuard<S> {
        HeadGuard {
            inner,
            state: State::Start,
            verdicts,
            heads_begun: 0,
        }
    }

    /// Follows the framing through newly read bytes.
    fn scan(&mut self, mut bytes: &[u8]) {
        while !bytes.is_empty() {
            let used = match &mut self.state {
                State::Start => match bytes[0] {
                    b'\r' | b'\n' => 1,
                    _ => {
                        self.state = State::Head(HeadScan::new());
                        self.heads_begun = self.heads_begun.wrapping_add(1);
                        0
                    }
                },
                State::Head(scan) => match scan_head(scan, bytes) {
                    (used, false) => used,
                    (used, true) => {
                        let State::Head(scan) = std::mem::replace(&mut self.state, State::Start)
                        else {
                            unreachable!("matched above")
                        };
                        self.state = self.end_of_head(scan);
                        used
                    }
                },
                State::Length(left) => {
                    let used = usize::try_from(*left)
                        .unwrap_or(usize::MAX)
                        .min(bytes.len());
                    *left -= used as u64;
                    if *left == 0 {
                        self.state = State::Start;
                    }
                    used
                }
                State::Chunked(chunk) => {
                    let (next, used) = scan_chunk(chunk, bytes);
                    if let Some(next) = next {
                        self.state = next;
                    }
                    used
                }
                State::Lost => {
                    self.verdicts.push(HeadVerdict {
                        lost: true,
                        ..HeadVerdict::default()
                    });
                    // Reported once per read is enough: the request path closes the
                    // connection on a lost verdict.
                    bytes.len()
                }
            };
            bytes = &bytes[used..];
        }
    }

    fn end_of_head(&mut self, scan: HeadScan) -> State {
        let mut verdict = scan.verdict;
        let next = if scan.content_length_unreadable {
            verdict.lost = true;
            State::Lost
        } else if verdict.transfer_encoding {
            // With a Content-Length as well the request is refused and the connection
            // closed; alone, the body is chunked (hyper refuses any other coding).
            size_start()
        } else {
            match scan.content_length {
                Some(n) if n > 0 => State::Length(n),
                _ => State::Start,
            }
        };
        self.verdicts.push(verdict);
        next
    }
}

/// Scans head bytes line by line; returns the bytes used and whether the head ended.
fn scan_head(scan: &mut HeadScan, bytes: &[u8]) -> (usize, bool) {
    let mut used = 0;
    while used < bytes.len() {
        let rest = &bytes[used..];
        let Some(lf) = memchr::memchr(b'\n', rest) else {
            scan.keep(rest);
            scan.prev_cr = rest.last() == Some(&b'\r');
            scan.verdict.bytes += rest.len();
            return (bytes.len(), false);
        };
        let segment = &rest[..lf];
        let cr = match lf {
            0 => scan.prev_cr,
            _ => segment[lf - 1] == b'\r',
        };
        scan.keep(segment);
        scan.verdict.bytes += lf + 1;
        scan.verdict.bare_lf |= !cr;
        used += lf + 1;
        let content = scan.line_len - usize::from(cr);
        if content == 0 {
            return (used, true);
        }
        scan.inspect_field(content);
        scan.line_len = 0;
        scan.prev_cr = false;
    }
    (used, false)
}

/// Follows a chunked body (RFC 9112 §7.1), updating `chunk` in place or returning the
/// next state; anything malformed is lost framing (hyper fails that request too).
fn scan_chunk(chunk: &mut Chunk, bytes: &[u8]) -> (Option<State>, usize) {
    let b = bytes[0];
    match chunk {
        Chunk::Data(left) => {
            let used = usize::try_from(*left)
                .unwrap_or(usize::MAX)
                .min(bytes.len());
            *left -= used as u64;
            if *left == 0 {
                *chunk = Chunk::DataEnd { seen_cr: false };
            }
            (None, used)
        }
        Chunk::DataEnd { seen_cr } => match (b, *seen_cr) {
            (b'\r', false) => {
                *seen_cr = true;
                (None, 1)
            }
            (b'\n', _) => (Some(size_start()), 1),
            _ => (Some(State::Lost), 0),
        },
        Chunk::Size { size, digits, ext } => {
            match b {
                b'\n' if *digits == 0 => return (Some(State::Lost), 0),
                b'\n' if *size == 0 => *chunk = Chunk::Trailer { line_len: 0 },
                b'\n' => *chunk = Chunk::Data(*size),
                _ if *ext => {}
                b';' | b' ' | b'\t' | b'\r' => *ext = true,
                _ if b.is_ascii_hexdigit() && *digits < 16 => {
                    *size = *size << 4 | u64::from(hex(b));
                    *digits += 1;
                }
                _ => return (Some(State::Lost), 0),
            }
            (None, 1)
        }
        Chunk::Trailer { line_len } => match b {
            b'\n' if *line_len == 0 => (Some(State::Start), 1),
            b'\n' => {
                *line_len = 0;
                (None, 1)
            }
            b'\r' => (None, 1),
            _ => {
                *line_len += 1;
                (None, 1)
            }
        },
    }
}

fn size_start() -> State {
    State::Chunked(Chunk::Size {
        size: 0,
        digits: 0,
        ext: false,
    })
}

const fn hex(b: u8) -> u8 {
    match b {
        b'0'..=b'9' => b - b'0',
        b'a'..=b'f' => b - b'a' + 10,
        _ => b - b'A' + 10,
    }
}

/// The verdicts the guard reaches on `reads`, fed in that order as if each had come from
/// one read of the socket (for the fuzzer and tests: the same state machine as a live
/// connection's).
pub fn verdicts_of<'a>(reads: impl IntoIterator<Item = &'a [u8]>) -> Vec<HeadVerdict> {
    let queue = Verdicts::default();
    let mut guard = HeadGuard::new((), queue.clone());
    for read in reads {
        guard.scan(read);
    }
    std::iter::from_fn(|| queue.take()).collect()
}

impl<S> super::park::Framing for HeadGuard<S> {
    fn between_messages(&self) -> bool {
        matches!(self.state, State::Start)
    }

    fn heads_begun(&self) -> u64 {
        self.heads_begun
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for HeadGuard<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let poll = Pin::new(&mut this.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = poll {
            this.scan(&buf.filled()[before..]);
        }
        poll
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for HeadGuard<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

#[cfg(test)]
#[path = "head_guard_tests.rs"]
mod tests;
