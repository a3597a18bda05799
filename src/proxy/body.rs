//! The client's request body on its way to Exchange (SPEC §6, §7): every body, of any
//! length, has an idle timeout; a small body is read whole, and a large one's first
//! frame, before an upstream connection is used, so a small body that is malformed or
//! stalls, or a large one that does so from its first byte, never reaches Exchange; and
//! whatever goes wrong with the body later is recorded as the client's fault, so that it
//! is answered 400/408 and never counted against the upstream.

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::{Body, Frame, Incoming, SizeHint};

use super::framing::ClientFault;
use super::idle::{IdleTimedOut, IdleTimeout};
use super::respond::BoxError;

/// Why a request body failed, shared between the body (which sees the failure) and the
/// request path (which answers for it).
#[derive(Clone, Debug, Default)]
pub struct BodyFault(Arc<OnceLock<ClientFault>>);

impl BodyFault {
    /// The fault, once the body has failed.
    pub fn get(&self) -> Option<ClientFault> {
        self.0.get().copied()
    }

    fn set(&self, fault: ClientFault) {
        let _ = self.0.set(fault);
    }
}

/// A client request body with an idle timeout and fault attribution.
pub struct RequestBody {
    /// The client's body behind its idle timeout.
    inner: IdleTimeout,
    /// Frames read ahead by [`RequestBody::read_ahead`], sent first.
    ahead: VecDeque<Frame<Bytes>>,
    fault: BodyFault,
}

impl RequestBody {
    /// Wraps a request body. Returns the body and the handle its faults are read from.
    pub fn new(inner: Incoming, idle: Duration) -> (RequestBody, BodyFault) {
        let fault = BodyFault::default();
        let body = RequestBody {
            inner: IdleTimeout::always(inner.map_err(BoxError::from).boxed(), idle),
            ahead: VecDeque::new(),
            fault: fault.clone(),
        };
        (body, fault)
    }

    /// Reads ahead before anything is sent upstream: the whole body when its length is
    /// known and at most `whole_below` bytes (an EWS or Autodiscover request), else its
    /// first frame. A body malformed or stalled within that never touches Exchange.
    pub async fn read_ahead(&mut self, whole_below: u64) -> Result<(), ClientFault> {
        let whole = self
            .inner
            .size_hint()
            .exact()
            .is_some_and(|n| n <= whole_below);
        loop {
            match std::future::poll_fn(|cx| self.poll_inner(cx)).await {
                Some(Ok(frame)) => self.ahead.push_back(frame),
                Some(Err(_)) => return Err(self.fault.get().unwrap_or(ClientFault::BodyFraming)),
                None => return Ok(()),
            }
            if !whole || self.inner.is_end_stream() {
                return Ok(());
            }
        }
    }

    /// Whose fault a body error is: the idle timeout's, or what hyper says of the
    /// client's bytes (a connection closed early, or framing it could not read).
    fn classify(error: &BoxError) -> ClientFault {
        if error.is::<IdleTimedOut>() {
            ClientFault::BodyStalled
        } else if error
            .downcast_ref::<hyper::Error>()
            .is_some_and(hyper::Error::is_incomplete_message)
            || RequestBody::connection_ended(error.as_ref())
        {
            ClientFault::BodyAborted
        } else {
            ClientFault::BodyFraming
        }
    }

    /// Whether a body error comes from the client's connection ending early: hyper
    /// reports a body cut short by EOF or a reset as an I/O error of those kinds.
    fn connection_ended(error: &(dyn std::error::Error + 'static)) -> bool {
        use std::io::ErrorKind::{BrokenPipe, ConnectionAborted, ConnectionReset, UnexpectedEof};
        super::error_chain(error)
            .filter_map(|e| e.downcast_ref::<std::io::Error>())
            .any(|io| {
                matches!(
                    io.kind(),
                    UnexpectedEof | ConnectionReset | ConnectionAborted | BrokenPipe
                )
            })
    }
}

impl RequestBody {
    /// The next frame from the client, recording whose fault an error is.
    fn poll_inner(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let frame = Pin::new(&mut self.inner).poll_frame(cx);
        if let Poll::Ready(Some(Err(e))) = &frame {
            self.fault.set(RequestBody::classify(e));
        }
        frame
    }
}

impl Body for RequestBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        if let Some(frame) = self.ahead.pop_front() {
            return Poll::Ready(Some(Ok(frame)));
        }
        self.poll_inner(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.ahead.is_empty() && self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        let mut hint = self.inner.size_hint();
        let ahead: u64 = self
            .ahead
            .iter()
            .filter_map(|f| f.data_ref())
            .map(|d| d.len() as u64)
            .sum();
        if let Some(upper) = hint.upper() {
            hint.set_upper(upper + ahead);
        }
        hint.set_lower(hint.lower() + ahead);
        hint
    }
}

/// Whether a request body has gone out whole: the response-header timeout runs from
/// then (SPEC §7), so a long upload that keeps moving is never cut as Exchange's delay.
#[derive(Clone, Debug, Default)]
pub struct Sent(Arc<(std::sync::atomic::AtomicBool, tokio::sync::Notify)>);

impl Sent {
    /// Waits until the body has gone out whole (forever, if it never does).
    pub async fn wait(&self) {
        let (flag, notify) = &*self.0;
        loop {
            let notified = notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if flag.load(std::sync::atomic::Ordering::Acquire) {
                return;
            }
            notified.await;
        }
    }

    fn mark(&self) {
        let (flag, notify) = &*self.0;
        flag.store(true, std::sync::atomic::Ordering::Release);
        notify.notify_waiters();
    }
}

/// A body that gives its [`Sent`] signal once its last frame has been taken.
pub struct SignalEnd {
    inner: super::respond::ProxyBody,
    sent: Sent,
}

impl SignalEnd {
    /// Wraps `inner`; `sent` fires when it ends.
    pub fn new(inner: super::respond::ProxyBody) -> (SignalEnd, Sent) {
        let sent = Sent::default();
        if inner.is_end_stream() {
            sent.mark();
        }
        (
            SignalEnd {
                inner,
                sent: sent.clone(),
            },
            sent,
        )
    }
}

impl Body for SignalEnd {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let frame = Pin::new(&mut self.inner).poll_frame(cx);
        match &frame {
            Poll::Ready(None) => self.sent.mark(),
            Poll::Ready(Some(Ok(_))) if self.inner.is_end_stream() => self.sent.mark(),
            _ => {}
        }
        frame
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
