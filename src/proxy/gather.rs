//! Small vectored writes go out as one `send`.
//!
//! hyper queues a message's head and its body chunks and hands them to the transport in
//! one vectored write (`writev(2)`), to spare copying the body. For the small answers and
//! requests most Exchange traffic is (a 200 with a short body, a 401, a body-less GET),
//! Linux's `writev` path costs more kernel time than a `send` of the same bytes: in a
//! `perf` profile of anonymous pass-through, `writev`'s own functions (`vfs_writev`,
//! `fdget_pos`, `rw_verify_area`, `import_iovec`, …) came to about 0.7 µs per proxied
//! request against `sendto`'s 0.08 µs for HAProxy. Copying a few hundred bytes costs far
//! less, so writes of at most [`GATHER_UP_TO`] bytes in several slices are copied into one
//! buffer and written as one (tokio's `TcpStream` sends it with `send(2)`); larger ones
//! (downloads, uploads) stay vectored and uncopied. Paired runs, the two builds
//! alternating: 0.978× the CPU per anonymous request.

use std::io::{self, IoSlice};
use std::pin::Pin;
use std::task::{Context, Poll};

/// The most bytes a vectored write is copied into one buffer for: a page, more than the
/// head and body of a typical refusal, redirect or small SOAP answer.
pub const GATHER_UP_TO: usize = 4096;

/// What one vectored write becomes.
#[derive(Debug, PartialEq, Eq)]
pub enum Gathered<'a> {
    /// The only non-empty slice (empty when there is none): written as it is.
    One(&'a [u8]),
    /// Several slices of at most [`GATHER_UP_TO`] bytes in all, copied in order (into
    /// a buffer of their size: nothing is zeroed).
    Copied(Vec<u8>),
    /// More than [`GATHER_UP_TO`] bytes: left to the transport's vectored write.
    Vectored,
}

/// Sorts one vectored write (pure): how many non-empty slices and bytes it has decides.
pub fn gather<'a>(bufs: &'a [IoSlice<'a>]) -> Gathered<'a> {
    let mut non_empty = bufs.iter().filter(|b| !b.is_empty());
    let Some(first) = non_empty.next() else {
        return Gathered::One(&[]);
    };
    if non_empty.next().is_none() {
        return Gathered::One(first);
    }
    let total: usize = bufs.iter().map(|b| b.len()).sum();
    if total > GATHER_UP_TO {
        return Gathered::Vectored;
    }
    let mut out = Vec::with_capacity(total);
    for b in bufs {
        out.extend_from_slice(b);
    }
    Gathered::Copied(out)
}

/// A hyper transport whose small vectored writes are [gathered](gather) into one.
/// Partial writes keep their meaning: the count written is of the same bytes in the same
/// order as the slices.
pub struct Gather<T>(pub T);

impl<T: hyper::rt::Read + Unpin> hyper::rt::Read for Gather<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: hyper::rt::ReadBufCursor<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl<T: hyper::rt::Write + Unpin> hyper::rt::Write for Gather<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match gather(bufs) {
            Gathered::One(buf) => Pin::new(&mut self.0).poll_write(cx, buf),
            Gathered::Copied(buf) => Pin::new(&mut self.0).poll_write(cx, &buf),
            Gathered::Vectored => Pin::new(&mut self.0).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        self.0.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What `gather` makes of `parts`, owned.
    fn sorted(parts: &[&[u8]]) -> Option<Vec<u8>> {
        let bufs: Vec<IoSlice<'_>> = parts.iter().map(|p| IoSlice::new(p)).collect();
        match gather(&bufs) {
            Gathered::One(b) => Some(b.to_vec()),
            Gathered::Copied(b) => Some(b),
            Gathered::Vectored => None,
        }
    }

    #[test]
    fn one_slice_is_written_as_it_is_and_empty_ones_do_not_count() {
        let head: &[u8] = b"HTTP/1.1 200 OK\r\n\r\n";
        let bufs = [IoSlice::new(head)];
        let Gathered::One(one) = gather(&bufs) else {
            panic!("one slice is not vectored");
        };
        assert_eq!(one.as_ptr(), head.as_ptr(), "not copied");
        assert_eq!(sorted(&[b"", b"head", b""]).unwrap(), b"head");
        assert_eq!(sorted(&[]).unwrap(), b"");
        assert_eq!(sorted(&[b"", b""]).unwrap(), b"");
    }

    #[test]
    fn several_small_slices_are_copied_in_order() {
        assert_eq!(
            sorted(&[b"head\r\n\r\n", b"", b"ok", b"!"]).unwrap(),
            b"head\r\n\r\nok!"
        );
    }

    #[test]
    fn the_bound_is_inclusive_and_anything_larger_stays_vectored() {
        let half = vec![b'x'; GATHER_UP_TO / 2];
        assert_eq!(sorted(&[&half, &half]).unwrap(), vec![b'x'; GATHER_UP_TO]);
        assert_eq!(sorted(&[&half, &half, b"y"]), None);
        let body = vec![b'b'; 64 * 1024];
        assert_eq!(sorted(&[b"head", &body]), None);
    }

    /// A transport that takes at most `take` bytes per write and records each call.
    struct Recording {
        written: Vec<u8>,
        calls: Vec<&'static str>,
        take: usize,
    }

    impl hyper::rt::Write for Recording {
        fn poll_write(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
            buf: &[u8],
        ) -> Poll<io::Result<usize>> {
            let n = buf.len().min(self.take);
            self.written.extend_from_slice(&buf[..n]);
            self.calls.push("write");
            Poll::Ready(Ok(n))
        }

        fn poll_write_vectored(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
            bufs: &[IoSlice<'_>],
        ) -> Poll<io::Result<usize>> {
            let mut n = 0;
            for b in bufs {
                let k = b.len().min(self.take - n);
                self.written.extend_from_slice(&b[..k]);
                n += k;
            }
            self.calls.push("writev");
            Poll::Ready(Ok(n))
        }

        fn is_write_vectored(&self) -> bool {
            true
        }

        fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }

        fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }

    /// Writes `parts` as hyper does: vectored, advancing past what each call took.
    fn write_all(parts: &[&[u8]], take: usize) -> Recording {
        let mut t = Gather(Recording {
            written: Vec::new(),
            calls: Vec::new(),
            take,
        });
        let whole: Vec<u8> = parts.concat();
        let mut done = 0;
        let waker = std::task::Waker::noop();
        let mut cx = Context::from_waker(waker);
        while done < whole.len() {
            // The slices hyper still holds: the rest of the one it is in, then the others.
            let mut rest = Vec::new();
            let mut at = 0;
            for p in parts {
                let (start, end) = (at, at + p.len());
                at = end;
                if end > done {
                    rest.push(IoSlice::new(&p[done.max(start) - start..]));
                }
            }
            let Poll::Ready(Ok(n)) =
                hyper::rt::Write::poll_write_vectored(Pin::new(&mut t), &mut cx, &rest)
            else {
                panic!("the recording transport is always ready");
            };
            assert!(n > 0);
            done += n;
        }
        assert_eq!(t.0.written, whole);
        t.0
    }

    #[test]
    fn partial_writes_keep_the_bytes_in_order() {
        let body = vec![b'b'; 10_000];
        for take in [1, 3, 7, 100, 4096, 1 << 20] {
            let r = write_all(
                &[b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n", b"ok"],
                take,
            );
            assert!(
                r.calls.iter().all(|c| *c == "write"),
                "{take}: {:?}",
                r.calls
            );
            let r = write_all(&[b"HTTP/1.1 200 OK\r\n\r\n", &body], take);
            assert_eq!(r.calls[0], "writev", "{take}: a large write stays vectored");
        }
    }
}
