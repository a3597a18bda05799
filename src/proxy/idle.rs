//! Idle timeouts on streaming bodies: a body that delivers nothing for its timeout ends
//! with an error, which makes hyper close that connection. RPC over HTTP and MAPI get a
//! long timeout (their channels and long polls sit quiet for minutes); the rest a short
//! one, so a stalled client cannot hold a connection and its upstream forever.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::{Body, Frame, SizeHint};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

use super::respond::{BoxError, ProxyBody};

/// Bodies of a known length below this are not timed.
const SMALL_BODY_BYTES: u64 = 64 * 1024;

/// The body stalled longer than its idle timeout.
#[derive(Debug, thiserror::Error)]
#[error("body idle for more than {0:?}")]
pub struct IdleTimedOut(Duration);

/// A body that fails when no frame arrives within `idle`.
pub struct IdleTimeout {
    inner: ProxyBody,
    idle: Duration,
    deadline: Pin<Box<Sleep>>,
}

impl IdleTimeout {
    /// Wraps `inner`, boxed again as a [`ProxyBody`]. A body of known length under 64 KiB
    /// is left alone: it is read at once, and a timer per small response would cost more
    /// than it protects.
    pub fn wrap(inner: ProxyBody, idle: Duration) -> ProxyBody {
        if inner
            .size_hint()
            .exact()
            .is_some_and(|n| n < SMALL_BODY_BYTES)
        {
            return inner;
        }
        IdleTimeout::always(inner, idle).boxed()
    }

    /// Wraps `inner` whatever its length: every request body has an idle timeout
    /// (SPEC §7), however small.
    pub fn always(inner: ProxyBody, idle: Duration) -> IdleTimeout {
        IdleTimeout {
            inner,
            idle,
            deadline: Box::pin(tokio::time::sleep(idle)),
        }
    }
}

impl Body for IdleTimeout {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match Pin::new(&mut self.inner).poll_frame(cx) {
            Poll::Ready(frame) => {
                let next = Instant::now() + self.idle;
                self.deadline.as_mut().reset(next);
                Poll::Ready(frame)
            }
            Poll::Pending => match self.deadline.as_mut().poll(cx) {
                Poll::Ready(()) => Poll::Ready(Some(Err(Box::new(IdleTimedOut(self.idle))))),
                Poll::Pending => Poll::Pending,
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// A client that stopped reading: a write to it made no progress for the idle timeout.
#[derive(Debug, thiserror::Error)]
#[error("the client read nothing for {0:?}")]
pub struct ClientNotReading(pub Duration);

/// The write idle timeout of one client connection, in milliseconds: set by the request
/// path to the timeout of the protocol being answered (RPC and MAPI wait longer).
#[derive(Clone, Debug)]
pub struct WriteIdle(Arc<AtomicU64>);

impl WriteIdle {
    /// A handle starting at `idle`.
    pub fn new(idle: Duration) -> WriteIdle {
        WriteIdle(Arc::new(AtomicU64::new(millis(idle))))
    }

    /// Sets the timeout for what is written from now on.
    pub fn set(&self, idle: Duration) {
        self.0.store(millis(idle), Ordering::Relaxed);
    }

    fn get(&self) -> Duration {
        Duration::from_millis(self.0.load(Ordering::Relaxed))
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// The client side of a connection with a write idle timeout: a write that stays
/// pending (the client's receive window is full: it stopped reading) for the connection's
/// [`WriteIdle`] fails with [`ClientNotReading`], which makes hyper close the connection
/// and so drop the upstream response and its connection. Without it a client that
/// requests a large response and never reads it holds its place and an Exchange
/// connection for as long as it likes: a response body's own idle timeout only runs
/// while the body is polled, and nothing polls it while the client's window is full.
pub struct WriteStall<S> {
    inner: S,
    idle: WriteIdle,
    /// Armed while a write or a flush is pending, with which.
    deadline: Option<(Pin<Box<Sleep>>, Pending)>,
}

/// What a [`WriteStall`]'s timer waits on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Pending {
    Write,
    Flush,
}

impl<S> WriteStall<S> {
    /// Wraps `inner`.
    pub fn new(inner: S, idle: WriteIdle) -> WriteStall<S> {
        WriteStall {
            inner,
            idle,
            deadline: None,
        }
    }

    /// After an attempt to write or flush: progress disarms the timer, a pending attempt
    /// arms it (once) and fails when it fires. A flush that completes is progress only
    /// for a stalled flush: a socket's flush is always done at once and says nothing of
    /// a write still pending (the quick path's answer stalled while hyper, with nothing
    /// of its own to write, flushed: red team, issue 16).
    fn watch<T>(
        &mut self,
        cx: &mut Context<'_>,
        poll: Poll<io::Result<T>>,
        attempt: Pending,
    ) -> Poll<io::Result<T>> {
        if poll.is_ready() {
            if attempt == Pending::Write || matches!(self.deadline, Some((_, Pending::Flush))) {
                self.deadline = None;
            }
            return poll;
        }
        let idle = self.idle.get();
        let (deadline, _) = self
            .deadline
            .get_or_insert_with(|| (Box::pin(tokio::time::sleep(idle)), attempt));
        match deadline.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                ClientNotReading(idle),
            ))),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl<S: super::park::Framing> super::park::Framing for WriteStall<S> {
    fn between_messages(&self) -> bool {
        self.inner.between_messages()
    }

    fn heads_begun(&self) -> u64 {
        self.inner.heads_begun()
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for WriteStall<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for WriteStall<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let poll = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.watch(cx, poll, Pending::Write)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let poll = Pin::new(&mut self.inner).poll_flush(cx);
        self.watch(cx, poll, Pending::Flush)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let poll = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.watch(cx, poll, Pending::Write)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::convert::Infallible;

    /// A body that yields one frame and then never another.
    struct OneThenSilence(bool);

    impl Body for OneThenSilence {
        type Data = Bytes;
        type Error = Infallible;
        fn poll_frame(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
            if self.0 {
                Poll::Pending
            } else {
                self.0 = true;
                Poll::Ready(Some(Ok(Frame::data(Bytes::from_static(b"x")))))
            }
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_stalled_body_fails_after_its_idle_timeout() {
        let body = OneThenSilence(false).map_err(|e| match e {}).boxed();
        let mut body = IdleTimeout::wrap(body, Duration::from_secs(900));
        assert!(body.frame().await.unwrap().is_ok());
        let started = Instant::now();
        let err = body.frame().await.unwrap().unwrap_err();
        assert!(err.to_string().contains("idle"), "{err}");
        assert_eq!(started.elapsed(), Duration::from_secs(900));
    }

    /// Ten frames, each after a 50-second pause.
    struct Slow {
        left: u32,
        pause: Pin<Box<Sleep>>,
    }

    impl Body for Slow {
        type Data = Bytes;
        type Error = Infallible;
        fn poll_frame(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
            if self.left == 0 {
                return Poll::Ready(None);
            }
            if self.pause.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
            self.left -= 1;
            let next = Instant::now() + Duration::from_secs(50);
            self.pause.as_mut().reset(next);
            Poll::Ready(Some(Ok(Frame::data(Bytes::from_static(b"y")))))
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_body_that_keeps_sending_is_never_cut() {
        let slow = Slow {
            left: 10,
            pause: Box::pin(tokio::time::sleep(Duration::from_secs(50))),
        };
        let mut body = IdleTimeout::wrap(
            slow.map_err(|e| match e {}).boxed(),
            Duration::from_secs(60),
        );
        let mut n = 0;
        while let Some(frame) = body.frame().await {
            assert!(frame.is_ok());
            n += 1;
        }
        assert_eq!(n, 10);
    }

    /// A client that reads nothing: every write waits; a flush, which has nothing of its
    /// own to send, is done at once (a socket's).
    struct Full;

    impl AsyncWrite for Full {
        fn poll_write(
            self: Pin<&mut Self>,
            _: &mut Context<'_>,
            _: &[u8],
        ) -> Poll<io::Result<usize>> {
            Poll::Pending
        }
        fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
        fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }

    /// Red team, issue 16: the quick path's answer waited on a full socket while hyper,
    /// with nothing of its own to write, flushed between the attempts; each flush
    /// disarmed the timer and the connection outlived its idle timeout.
    #[tokio::test(start_paused = true)]
    async fn a_pending_write_is_cut_though_flushes_complete_between_attempts() {
        let mut stall = WriteStall::new(Full, WriteIdle::new(Duration::from_secs(2)));
        let waker = std::task::Waker::noop();
        let mut cx = Context::from_waker(waker);
        for _ in 0..3 {
            assert!(Pin::new(&mut stall).poll_write(&mut cx, b"x").is_pending());
            assert!(matches!(
                Pin::new(&mut stall).poll_flush(&mut cx),
                Poll::Ready(Ok(()))
            ));
            tokio::time::advance(Duration::from_millis(900)).await;
        }
        match Pin::new(&mut stall).poll_write(&mut cx, b"x") {
            Poll::Ready(Err(e)) => assert!(
                e.get_ref()
                    .is_some_and(|inner| inner.is::<ClientNotReading>()),
                "{e}"
            ),
            other => panic!("not cut after 2.7 s: {other:?}"),
        }
    }
}
