//! Idle client connections held outside hyper (issue 16; HAProxy frees a connection's
//! buffers the same way while it waits for the next request).
//!
//! hyper keeps a server connection's read and write buffers (8 KiB each) for its whole
//! life, and a client connection kept its own upstream connection (three more buffers and
//! a task) while it waited. A connection that has been quiet for [`PARK_AFTER`] between
//! two requests is now *parked*: [`Parking`] ends hyper's connection cleanly at that
//! moment (a read that would wait returns end-of-file to hyper, which hyper takes for a
//! client that left between requests), [`serve`] takes the byte stream back with
//! `into_parts`, the upstream connection goes back to a shared pool unless NTLM or
//! Negotiate authenticated it (SPEC §3), and the task waits for the next byte with no
//! buffer at all. The byte that wakes it is handed to a new hyper connection first.
//!
//! What makes the end-of-file safe, each checked before it is returned:
//! - the head guard is between two messages: no byte of a next head has been read and
//!   the last request's body was read whole ([`Framing::between_messages`]);
//! - no request is in flight: every response hyper was handed has been dropped by it
//!   ([`Activity`], [`Tracked`]);
//! - everything written has been flushed: hyper flushes its own buffer before it flushes
//!   the stream, so a completed flush after the last write means hyper holds no byte of
//!   the response;
//! - and that state has lasted [`PARK_AFTER`].
//!
//! The idle keep-alive limit is unchanged: `server.header_read_timeout_seconds` counted
//! from the moment the connection went quiet, whether parked or not; blank lines between
//! requests (RFC 9112 §2.2) wake a parked connection but do not restart the count. A
//! connection woken from a park gets hyper's whole head timer, and its first request
//! must be read whole by the end of the limit counted from the quiet spell's start
//! ([`Parking`]'s deadline); once it is, every later wait is hyper's alone, as on a
//! connection never parked.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::Bytes;
use hyper::body::{Body, Frame, SizeHint};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

use super::respond::{BoxError, ProxyBody};
use super::service::{ConnectionService, Repeat};

/// How long a connection stays quiet between two requests before it is parked. Long
/// enough that a client sending request after request never pays for a new hyper
/// connection; short enough that memory follows the connections actually in use.
pub const PARK_AFTER: Duration = Duration::from_secs(1);

/// The requests of one client connection whose responses hyper still holds.
#[derive(Clone, Debug, Default)]
pub struct Activity(Arc<AtomicUsize>);

impl Activity {
    /// A request begins; it ends when the returned guard is dropped (with its response).
    pub fn begin(&self) -> Busy {
        self.0.fetch_add(1, Ordering::Relaxed);
        Busy(self.clone())
    }

    /// No request is in flight.
    fn is_idle(&self) -> bool {
        self.0.load(Ordering::Acquire) == 0
    }
}

/// One request in flight (see [`Activity::begin`]).
#[derive(Debug)]
pub struct Busy(Activity);

impl Drop for Busy {
    fn drop(&mut self) {
        (self.0).0.fetch_sub(1, Ordering::Release);
    }
}

/// A response body that keeps its request counted as in flight until hyper drops it:
/// after its last frame, or unpolled for a body hyper knows to be empty.
pub struct Tracked {
    inner: ProxyBody,
    _busy: Busy,
}

impl Tracked {
    pub fn new(inner: ProxyBody, busy: Busy) -> Tracked {
        Tracked { inner, _busy: busy }
    }
}

impl Body for Tracked {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// Streams that know where the client's messages begin and end.
pub trait Framing {
    /// No byte of a next request head has been read, and the last request was read
    /// whole (its framing was followed; a connection whose framing was lost never is).
    fn between_messages(&self) -> bool;

    /// How many request heads have begun on the connection so far (wrapping): a read
    /// that changes it carried a request, even one read whole, which leaves the stream
    /// between messages again.
    fn heads_begun(&self) -> u64;
}

/// The client byte stream under hyper, able to end hyper's connection once it is quiet
/// (see the module documentation).
pub struct Parking<S> {
    inner: S,
    activity: Activity,
    /// A write went to `inner` that no completed flush has followed.
    unflushed: bool,
    /// The park timer; freed when the connection parks.
    timer: Option<Pin<Box<Sleep>>>,
    /// The timer is set for the current wait (bytes that come end the wait).
    armed: bool,
    /// When the current quiet spell began: the connection went idle between two
    /// messages and no byte of a next request head has come since (blank lines between
    /// requests do not count, RFC 9112 §2.2: a client sending them now and then is still
    /// idle, and its keep-alive limit still counts from here). None while a request is
    /// being read or served.
    quiet_since: Option<Instant>,
    /// hyper was told end-of-file: the stream now belongs to [`serve`] until a byte comes.
    parked: bool,
    /// After a park: the timer of the moment the keep-alive limit, counted from the
    /// quiet spell's start, ends. The first request must be read whole by then; None
    /// once it is.
    deadline: Option<Pin<Box<Sleep>>>,
    /// The byte that woke a parked connection, read before hyper's next read.
    replay: Option<u8>,
    /// While hyper serves the connection: what answering refusals without hyper needs
    /// (boxed: a parked connection keeps none of it).
    quick: Option<Box<Quick>>,
}

/// What a connection served by hyper needs to answer refusals without it.
struct Quick {
    /// The connection's service (see [`ConnectionService::refuse_quickly`]).
    service: ConnectionService,
    /// A refusal answered without hyper, and how much of it is written: written whole
    /// and flushed before anything more is read.
    answer: Option<(Vec<u8>, usize)>,
    /// When hyper began waiting for the next head, as near as this stream sees it:
    /// hyper's head timer runs from then, and only a head that hyper reads resets it.
    hyper_waiting_since: Option<Instant>,
    /// How long after `hyper_waiting_since` refusals are still answered without hyper:
    /// half of hyper's head timer in this stretch. After it the next head goes to hyper,
    /// whose timer would otherwise end a connection busy with refusals.
    window: Duration,
    /// The last Basic head refused here and its decision (see [`Repeat`]).
    repeat: Option<Repeat>,
    /// An answer stalled for the connection's write idle timeout: the client reads
    /// nothing. hyper, which was waiting for a head, takes the read error that follows
    /// for a quiet close; the stretch counts it as `response_unread`, as hyper's own
    /// stalled writes are.
    not_reading: bool,
}

impl<S> Parking<S> {
    /// Wraps `inner`, whose requests in flight `activity` counts.
    pub fn new(inner: S, activity: Activity) -> Parking<S> {
        Parking {
            inner,
            activity,
            unflushed: false,
            timer: None,
            armed: false,
            quiet_since: None,
            parked: false,
            deadline: None,
            replay: None,
            quick: None,
        }
    }

    /// Starts a stretch of hyper's service whose head timer is `header_read_timeout`:
    /// refusals are answered without hyper, for half that long at a time.
    fn serve_with(&mut self, service: ConnectionService, header_read_timeout: Duration) {
        self.quick = Some(Box::new(Quick {
            service,
            answer: None,
            hyper_waiting_since: None,
            window: header_read_timeout / 2,
            repeat: None,
            not_reading: false,
        }));
    }

    /// How long the connection has been quiet between two requests (zero while not).
    fn quiet_for(&self) -> Duration {
        self.quiet_since.map_or(Duration::ZERO, |t| t.elapsed())
    }
}

impl<S: AsyncRead + AsyncWrite + Framing + Unpin> Parking<S> {
    /// While parked: waits for the client's next byte, which is kept to be read first.
    /// True when one came and the connection is no longer parked; false when the client
    /// closed or the read failed. The quiet spell's start is kept: the next stretch
    /// counts the keep-alive limit from it.
    fn poll_wake(&mut self, cx: &mut Context<'_>) -> Poll<bool> {
        let mut byte = [0u8; 1];
        let mut buf = ReadBuf::new(&mut byte);
        match Pin::new(&mut *self).poll_read(cx, &mut buf) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Ok(())) if buf.filled().len() == 1 => {
                self.replay = Some(byte[0]);
                self.parked = false;
                Poll::Ready(true)
            }
            Poll::Ready(_) => Poll::Ready(false),
        }
    }
}

impl<S: AsyncWrite + Unpin> Parking<S> {
    /// Writes and flushes the refusal answered without hyper, if one is waiting.
    fn poll_answer(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let Some(quick) = self.quick.as_mut() else {
            return Poll::Ready(Ok(()));
        };
        while let Some((bytes, written)) = &mut quick.answer {
            let step = if *written < bytes.len() {
                match ready!(Pin::new(&mut self.inner).poll_write(cx, &bytes[*written..])) {
                    Ok(0) => Err(io::ErrorKind::WriteZero.into()),
                    Ok(n) => {
                        *written += n;
                        Ok(())
                    }
                    Err(e) => Err(e),
                }
            } else {
                ready!(Pin::new(&mut self.inner).poll_flush(cx)).map(|()| quick.answer = None)
            };
            if let Err(e) = step {
                quick.not_reading = e
                    .get_ref()
                    .is_some_and(|inner| inner.is::<super::idle::ClientNotReading>());
                return Poll::Ready(Err(e));
            }
        }
        Poll::Ready(Ok(()))
    }
}

impl<S> Parking<S> {
    /// The answer to `head`, which arrived whole and alone while hyper waited, when it
    /// is a refusal answered without hyper (within the stretch's window).
    fn refuse_quickly(&mut self, head: &[u8]) -> Option<Vec<u8>> {
        let quick = self.quick.as_deref_mut()?;
        let waiting_since = quick.hyper_waiting_since?;
        let window = quick.window;
        quick.service.refuse_quickly(head, &mut quick.repeat, || {
            let now = Instant::now();
            (now.duration_since(waiting_since) < window).then(|| now.into_std())
        })
    }
}

impl<S: AsyncRead + AsyncWrite + Framing + Unpin> AsyncRead for Parking<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if this.quick.as_ref().is_some_and(|q| q.answer.is_some()) {
            ready!(this.poll_answer(cx))?;
        }
        if let Some(byte) = this.replay.take() {
            if buf.remaining() == 0 {
                this.replay = Some(byte);
            } else {
                buf.put_slice(&[byte]);
            }
            return Poll::Ready(Ok(()));
        }
        // hyper waits for a head, with nothing in flight: what comes may be answered here.
        let waiting = this.quick.is_some()
            && !this.parked
            && !this.unflushed
            && this.activity.is_idle()
            && this.inner.between_messages();
        if let Some(quick) = this.quick.as_mut().filter(|_| waiting)
            && quick.hyper_waiting_since.is_none()
        {
            quick.hyper_waiting_since = Some(Instant::now());
        }
        loop {
            let start = buf.filled().len();
            let heads = this.inner.heads_begun();
            let was_between = this.inner.between_messages();
            let Poll::Ready(result) = Pin::new(&mut this.inner).poll_read(cx, buf) else {
                break;
            };
            this.armed = false;
            // Bytes that began a request head or ended a message (a whole request, or one
            // whose head began while parked), anything but blank lines between two
            // messages, end-of-file or an error: the quiet spell is over. A message read
            // whole also meets a woken connection's deadline.
            let began = this.inner.heads_begun() != heads;
            let between = this.inner.between_messages();
            if !this.parked && (!between || began || !was_between) {
                this.quiet_since = None;
            }
            if !this.parked && between && (began || !was_between) {
                this.deadline = None;
            }
            if !(waiting && began && result.is_ok()) {
                return Poll::Ready(result);
            }
            // One head, whole and alone (between messages again, and the read left room in
            // the buffer: nothing more was waiting), maybe refused here.
            let alone = this.inner.between_messages()
                && this.inner.heads_begun() == heads.wrapping_add(1)
                && buf.remaining() > 0;
            if let Some(answer) = alone
                .then(|| this.refuse_quickly(&buf.filled()[start..]))
                .flatten()
            {
                buf.set_filled(start);
                if let Some(quick) = this.quick.as_mut() {
                    quick.answer = Some((answer, 0));
                }
                ready!(this.poll_answer(cx))?;
                continue;
            }
            // hyper reads this head, which resets its timer.
            if let Some(quick) = this.quick.as_mut() {
                quick.hyper_waiting_since = None;
            }
            return Poll::Ready(result);
        }
        if let Some(deadline) = this.deadline.as_mut().filter(|_| !this.parked)
            && deadline.as_mut().poll(cx).is_ready()
        {
            this.deadline = None;
            // Between messages, hyper ends the connection as an idle client's; inside a
            // head it is the client's delay.
            return match this.inner.between_messages() {
                true => Poll::Ready(Ok(())),
                false => Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "the keep-alive limit ended while a head was read",
                ))),
            };
        }
        if this.parked
            || this.unflushed
            || !this.activity.is_idle()
            || !this.inner.between_messages()
        {
            return Poll::Pending;
        }
        if !this.armed {
            let now = Instant::now();
            this.quiet_since.get_or_insert(now);
            this.armed = true;
            match &mut this.timer {
                Some(timer) => timer.as_mut().reset(now + PARK_AFTER),
                None => this.timer = Some(Box::pin(tokio::time::sleep_until(now + PARK_AFTER))),
            }
        }
        let timer = this.timer.as_mut().expect("set above");
        match timer.as_mut().poll(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(()) => {
                this.parked = true;
                this.armed = false;
                this.timer = None;
                // Nothing filled: hyper reads end-of-file between two requests.
                Poll::Ready(Ok(()))
            }
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Parking<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.unflushed = true;
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.unflushed = true;
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let poll = Pin::new(&mut self.inner).poll_flush(cx);
        if let Poll::Ready(Ok(())) = poll {
            self.unflushed = false;
        }
        poll
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// How one stretch of hyper's service of a connection ended.
enum Stretch<S> {
    /// Quiet for [`PARK_AFTER`]: the stream and the service are back, hyper's state freed.
    Parked(Box<Parking<S>>, ConnectionService),
    /// The connection is over: the client closed, asked to close, or failed.
    Ended(hyper::Result<()>, ConnectionService),
}

/// What [`serve`] needs besides the stream: shared by every connection of a listener.
pub struct Serving {
    /// hyper's settings, `header_read_timeout` among them.
    builder: hyper::server::conn::http1::Builder,
    /// `server.header_read_timeout_seconds`: also the idle keep-alive limit.
    header_read_timeout: Duration,
    /// `server.quick_refusals`: refusals may be answered without hyper.
    quick_refusals: bool,
    /// Set once the listener stops (graceful shutdown).
    draining: std::sync::atomic::AtomicBool,
    /// Wakes every connection when `draining` is set.
    drain: tokio::sync::Notify,
}

impl Serving {
    /// Serving with hyper's `builder`, whose head timer is `header_read_timeout`;
    /// refusals are answered without hyper when `quick_refusals`.
    pub fn new(
        builder: hyper::server::conn::http1::Builder,
        header_read_timeout: Duration,
        quick_refusals: bool,
    ) -> Serving {
        Serving {
            builder,
            header_read_timeout,
            quick_refusals,
            draining: std::sync::atomic::AtomicBool::new(false),
            drain: tokio::sync::Notify::new(),
        }
    }

    /// Starts the graceful shutdown of every connection: a request in flight finishes, a
    /// parked connection is closed at once.
    pub fn drain(&self) {
        self.draining.store(true, Ordering::SeqCst);
        self.drain.notify_waiters();
    }

    /// The wait for [`Serving::drain`], registered before the flag is read, so that a
    /// drain between the two is not missed: None when draining already.
    fn drained(&self) -> Option<Pin<Box<tokio::sync::futures::Notified<'_>>>> {
        let mut notified = Box::pin(self.drain.notified());
        notified.as_mut().enable();
        (!self.draining.load(Ordering::SeqCst)).then_some(notified)
    }
}

/// Serves one client connection: hyper while requests come, parked while they do not
/// (see the module documentation), until the client leaves, the keep-alive limit ends
/// it or the listener drains ([`Serving::drain`]). `guard` is dropped when the
/// connection ends (its place under `server.max_connections`). How it ended is counted
/// by [`super::connection_ended`].
pub async fn serve<S, G>(
    serving: Arc<Serving>,
    mut io: Box<Parking<S>>,
    service: ConnectionService,
    guard: G,
) where
    S: AsyncRead + AsyncWrite + Framing + Unpin + Send + 'static,
    G: Send + 'static,
{
    let _guard = guard;
    let mut service = Some(service);
    loop {
        // Boxed, and in a statement of its own so that the unboxed future is not kept
        // across the await: hyper's connection state is allocated only while it serves,
        // and the task of a parked connection stays small.
        let held = service.take().expect("held between stretches");
        let stretch = Box::pin(serve_stretch(&serving, io, held));
        let parked = match stretch.await {
            Stretch::Parked(parked_io, parked) => {
                io = parked_io;
                parked.park()
            }
            Stretch::Ended(result, ended) => {
                super::connection_ended(result, ended.metrics(), ended.peer());
                return;
            }
        };
        let Some(drained) = serving.drained() else {
            return;
        };
        let remaining = serving.header_read_timeout.saturating_sub(io.quiet_for());
        let woke = tokio::select! {
            woke = std::future::poll_fn(|cx| io.poll_wake(cx)) => woke,
            () = tokio::time::sleep(remaining) => false,
            () = drained => false,
        };
        if !woke {
            return; // closed without a word, as hyper closes an idle connection
        }
        service = Some(parked.resume());
    }
}

/// One stretch of hyper's service, from a first byte to a park or the end.
async fn serve_stretch<S>(
    serving: &Serving,
    io: Box<Parking<S>>,
    service: ConnectionService,
) -> Stretch<S>
where
    S: AsyncRead + AsyncWrite + Framing + Unpin + Send + 'static,
{
    use crate::proxy::gather::Gather;
    use hyper_util::rt::TokioIo;
    use tokio::io::AsyncWriteExt as _;
    // After a park, the first request must be read whole within what is left of the
    // keep-alive limit, counted from the start of the quiet spell; hyper's head timer
    // is whole, for this request's wait and every later one.
    let mut io = io;
    io.deadline = io.quiet_since.map(|since| {
        Box::pin(tokio::time::sleep_until(
            since + serving.header_read_timeout,
        ))
    });
    if serving.quick_refusals {
        io.serve_with(service.clone(), serving.header_read_timeout);
    }
    let mut conn = serving
        .builder
        .serve_connection(Gather(TokioIo::new(io)), service);
    let mut drained = serving.drained();
    if drained.is_none() {
        Pin::new(&mut conn).graceful_shutdown();
    }
    let result = loop {
        tokio::select! {
            result = std::future::poll_fn(|cx| conn.poll_without_shutdown(cx)) => break result,
            () = async { drained.as_mut().expect("guarded").await }, if drained.is_some() => {
                drained = None;
                Pin::new(&mut conn).graceful_shutdown();
            }
        }
    };
    let draining = drained.is_none();
    let parts = conn.into_parts();
    let mut io = parts.io.0.into_inner();
    // The service is whole again (a parked one is reduced), and hyper's timer is gone.
    if io.quick.take().is_some_and(|quick| quick.not_reading) {
        // Ended as hyper ends a connection whose response stalled: counted, no close in
        // stages (nothing more would be read).
        let fault = super::framing::ClientFault::ResponseUnread;
        parts.service.metrics().record_client_error(fault.as_str());
        return Stretch::Ended(Ok(()), parts.service);
    }
    match result {
        // hyper read the end-of-file of a park with nothing left unparsed.
        Ok(()) if io.parked && parts.read_buf.is_empty() && !draining => {
            Stretch::Parked(io, parts.service)
        }
        Ok(()) => {
            // hyper skipped the shutdown for `poll_without_shutdown`: done here (a TLS
            // close_notify may wait on the client, so bounded).
            let _ = tokio::time::timeout(SHUTDOWN_WAIT, io.shutdown()).await;
            if !draining {
                // RFC 9112 §9.6: close in stages. What the client sent after the request
                // that ended the connection (pipelined requests after a
                // `Connection: close` or an HTTP/1.0 request) is read and dropped until
                // it closes too, for at most `LINGER`: closed with those bytes unread,
                // the socket would send a reset, which throws away what is still queued
                // to send (red team, issue 16).
                let _ = tokio::time::timeout(
                    LINGER,
                    super::discard_until_closed(&mut io, LINGER_BYTES),
                )
                .await;
            }
            Stretch::Ended(Ok(()), parts.service)
        }
        Err(e) => Stretch::Ended(Err(e), parts.service),
    }
}

/// How long the close of a finished connection may wait on the client.
const SHUTDOWN_WAIT: Duration = Duration::from_secs(5);

/// How long a connection whose client asked to close still reads (and drops) what the
/// client sends, waiting for its close (Apache's lingering close waits 2 s for each
/// read, nginx's `lingering_timeout` 5 s). Not while exgate shuts down.
const LINGER: Duration = Duration::from_secs(2);

/// The most bytes read and dropped while lingering.
const LINGER_BYTES: usize = 1 << 20;

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, AtomicU64};
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _, DuplexStream};

    /// One end of an in-memory pipe, with the head guard's verdict set by the test.
    struct Stream {
        pipe: DuplexStream,
        between: Arc<AtomicBool>,
        heads: Arc<AtomicU64>,
    }

    impl Framing for Stream {
        fn between_messages(&self) -> bool {
            self.between.load(Ordering::Relaxed)
        }

        fn heads_begun(&self) -> u64 {
            self.heads.load(Ordering::Relaxed)
        }
    }

    impl AsyncRead for Stream {
        fn poll_read(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            buf: &mut ReadBuf<'_>,
        ) -> Poll<io::Result<()>> {
            let before = buf.filled().len();
            let poll = Pin::new(&mut self.pipe).poll_read(cx, buf);
            // As the head guard counts: a read whose first byte is no blank line begins
            // a head.
            if !matches!(buf.filled()[before..].first(), None | Some(b'\r' | b'\n')) {
                self.heads.fetch_add(1, Ordering::Relaxed);
            }
            poll
        }
    }

    impl AsyncWrite for Stream {
        fn poll_write(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            buf: &[u8],
        ) -> Poll<io::Result<usize>> {
            Pin::new(&mut self.pipe).poll_write(cx, buf)
        }
        fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
            Pin::new(&mut self.pipe).poll_flush(cx)
        }
        fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
            Pin::new(&mut self.pipe).poll_shutdown(cx)
        }
    }

    struct Rig {
        io: Parking<Stream>,
        client: DuplexStream,
        between: Arc<AtomicBool>,
        activity: Activity,
    }

    fn rig() -> Rig {
        let (client, server) = tokio::io::duplex(1024);
        let between = Arc::new(AtomicBool::new(true));
        let activity = Activity::default();
        let stream = Stream {
            pipe: server,
            between: between.clone(),
            heads: Arc::new(AtomicU64::new(0)),
        };
        Rig {
            io: Parking::new(stream, activity.clone()),
            client,
            between,
            activity,
        }
    }

    /// What one read gives within `wait`: Some(bytes) (empty for end-of-file) or None
    /// when it is still waiting.
    async fn read_within(io: &mut Parking<Stream>, wait: Duration) -> Option<Vec<u8>> {
        let mut buf = [0u8; 64];
        match tokio::time::timeout(wait, io.read(&mut buf)).await {
            Ok(Ok(n)) => Some(buf[..n].to_vec()),
            Ok(Err(e)) => panic!("read failed: {e}"),
            Err(_) => None,
        }
    }

    const JUST_BEFORE: Duration = Duration::from_millis(999);

    #[tokio::test(start_paused = true)]
    async fn a_quiet_connection_between_messages_reads_end_of_file_after_park_after() {
        let mut r = rig();
        assert_eq!(read_within(&mut r.io, JUST_BEFORE).await, None);
        // The spell started at the first read that would wait: 1 ms more ends it.
        assert_eq!(
            read_within(&mut r.io, Duration::from_millis(2)).await,
            Some(vec![])
        );
        assert!(r.io.parked);
        assert!(r.io.timer.is_none(), "the timer is freed when parked");
        // Parked: reads wait for the client, with no end-of-file of their own.
        assert_eq!(read_within(&mut r.io, PARK_AFTER * 3).await, None);
    }

    #[tokio::test(start_paused = true)]
    async fn a_request_head_before_the_mark_ends_the_quiet_spell() {
        let mut r = rig();
        assert_eq!(read_within(&mut r.io, JUST_BEFORE).await, None);
        // The head guard leaves "between messages" with the head's first byte.
        r.between.store(false, Ordering::Relaxed);
        r.client.write_all(b"G").await.unwrap();
        assert_eq!(
            read_within(&mut r.io, JUST_BEFORE).await,
            Some(b"G".to_vec())
        );
        assert_eq!(r.io.quiet_since, None);
        // Request read and answered: a new spell, a whole new second.
        r.between.store(true, Ordering::Relaxed);
        assert_eq!(read_within(&mut r.io, JUST_BEFORE).await, None);
        assert!(!r.io.parked);
        assert_eq!(
            read_within(&mut r.io, Duration::from_millis(2)).await,
            Some(vec![])
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_request_read_whole_in_one_read_ends_the_quiet_spell() {
        let mut r = rig();
        assert_eq!(
            read_within(&mut r.io, Duration::from_millis(500)).await,
            None
        );
        assert!(r.io.quiet_since.is_some());
        // The head begins and ends within the read: between messages again.
        r.client.write_all(b"GET / HTTP/1.1\r\n\r\n").await.unwrap();
        assert!(read_within(&mut r.io, JUST_BEFORE).await.is_some());
        assert_eq!(r.io.quiet_since, None);
    }

    #[tokio::test(start_paused = true)]
    async fn blank_lines_between_requests_do_not_restart_the_quiet_spell() {
        let mut r = rig();
        assert_eq!(
            read_within(&mut r.io, Duration::from_millis(500)).await,
            None
        );
        let began = r.io.quiet_since.expect("quiet");
        // CRLF and LF between messages (RFC 9112 §2.2): still between messages.
        r.client.write_all(b"\r\n").await.unwrap();
        assert_eq!(
            read_within(&mut r.io, JUST_BEFORE).await,
            Some(b"\r\n".to_vec())
        );
        assert_eq!(r.io.quiet_since, Some(began));
        // The park waits a second from the last byte, the spell keeps its start.
        assert_eq!(read_within(&mut r.io, PARK_AFTER * 2).await, Some(vec![]));
        assert_eq!(r.io.quiet_since, Some(began));
        r.client.write_all(b"\n").await.unwrap();
        assert!(std::future::poll_fn(|cx| r.io.poll_wake(cx)).await);
        assert_eq!(r.io.quiet_since, Some(began));
    }

    #[tokio::test(start_paused = true)]
    async fn never_parked_inside_a_message_with_a_request_in_flight_or_unflushed() {
        // Inside a message (a head or body partly read): no end-of-file, however long.
        let mut r = rig();
        r.between.store(false, Ordering::Relaxed);
        assert_eq!(read_within(&mut r.io, PARK_AFTER * 5).await, None);
        assert!(!r.io.parked);

        // A response still held by hyper.
        let mut r = rig();
        let busy = r.activity.begin();
        assert_eq!(read_within(&mut r.io, PARK_AFTER * 5).await, None);
        drop(busy);
        assert_eq!(read_within(&mut r.io, PARK_AFTER * 2).await, Some(vec![]));

        // Written and not flushed since.
        let mut r = rig();
        r.io.write_all(b"HTTP/1.1 200 OK\r\n").await.unwrap();
        assert_eq!(read_within(&mut r.io, PARK_AFTER * 5).await, None);
        r.io.flush().await.unwrap();
        assert_eq!(read_within(&mut r.io, PARK_AFTER * 2).await, Some(vec![]));
        let mut answer = [0u8; 17];
        r.client.read_exact(&mut answer).await.unwrap();
        assert_eq!(&answer, b"HTTP/1.1 200 OK\r\n");
    }

    #[tokio::test(start_paused = true)]
    async fn the_byte_that_wakes_a_parked_connection_is_read_first_and_once() {
        let mut r = rig();
        assert_eq!(read_within(&mut r.io, PARK_AFTER * 2).await, Some(vec![]));
        r.client.write_all(b"GET / HTTP/1.1\r\n").await.unwrap();
        assert!(std::future::poll_fn(|cx| r.io.poll_wake(cx)).await);
        assert!(!r.io.parked);
        // The quiet spell's start survives the byte: the keep-alive limit counts from it.
        assert!(r.io.quiet_for() >= PARK_AFTER);
        let mut head = vec![0u8; 16];
        r.io.read_exact(&mut head).await.unwrap();
        assert_eq!(head, b"GET / HTTP/1.1\r\n");
        // A client that leaves while parked: no byte, the connection ends.
        let mut r = rig();
        assert_eq!(read_within(&mut r.io, PARK_AFTER * 2).await, Some(vec![]));
        drop(r.client);
        assert!(!std::future::poll_fn(|cx| r.io.poll_wake(cx)).await);
    }

    #[test]
    fn a_request_is_in_flight_until_its_response_body_is_dropped() {
        let activity = Activity::default();
        let first = Tracked::new(super::super::respond::empty(), activity.begin());
        let second = activity.begin();
        assert!(!activity.is_idle());
        drop(first);
        assert!(!activity.is_idle());
        drop(second);
        assert!(activity.is_idle());
    }
}
