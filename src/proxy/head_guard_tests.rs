use super::*;

/// Feeds `input` in pieces of `step` bytes and returns the verdicts.
fn verdicts(input: &[u8], step: usize) -> Vec<HeadVerdict> {
    let queue = Verdicts::default();
    let mut guard = HeadGuard::new((), queue.clone());
    for piece in input.chunks(step.max(1)) {
        guard.scan(piece);
    }
    std::iter::from_fn(|| queue.take()).collect()
}

/// The same verdicts however the bytes are split across reads.
fn all_splits(input: &[u8]) -> Vec<HeadVerdict> {
    let whole = verdicts(input, input.len());
    for step in 1..input.len().min(40) {
        assert_eq!(verdicts(input, step), whole, "split every {step} bytes");
    }
    whole
}

const GET: &[u8] = b"GET /mapi/ HTTP/1.1\r\nHost: mail.contoso.com\r\n\r\n";

#[test]
fn a_plain_head_is_measured_exactly() {
    let v = all_splits(GET);
    assert_eq!(
        v,
        [HeadVerdict {
            bytes: GET.len(),
            ..HeadVerdict::default()
        }]
    );
}

#[test]
fn bare_lf_anywhere_in_a_head_is_seen() {
    for input in [
        &b"GET / HTTP/1.1\nHost: a\r\n\r\n"[..],
        b"GET / HTTP/1.1\r\nHost: a\n\r\n",
        b"GET / HTTP/1.1\r\nHost: a\r\n\n",
        b"GET / HTTP/1.1\nHost: a\n\n",
    ] {
        let v = all_splits(input);
        assert_eq!(v.len(), 1, "{input:?}");
        assert!(v[0].bare_lf, "{input:?}");
        assert_eq!(v[0].bytes, input.len(), "{input:?}");
    }
}

#[test]
fn bodies_are_skipped_and_pipelined_heads_each_get_a_verdict() {
    let mut input =
        b"POST /ews/ HTTP/1.1\r\nHost: a\r\nContent-Length: 12\r\n\r\nline\nline\n\n".to_vec();
    input
        .extend_from_slice(b"POST /ews/ HTTP/1.1\r\nHost: a\r\ntransfer-encoding: chunked\r\n\r\n");
    input.extend_from_slice(b"5;ext=1\r\na\nb\nc\r\n3\r\n\n\n\n\r\n0\r\nX-Trailer: 1\r\n\r\n");
    input.extend_from_slice(b"\r\n");
    input.extend_from_slice(GET);
    let v = all_splits(&input);
    assert_eq!(v.len(), 3, "{v:?}");
    assert!(v.iter().all(|v| !v.bare_lf && !v.lost), "{v:?}");
    assert_eq!(v[0].content_lengths, 1);
    assert!(v[1].transfer_encoding);
    assert_eq!(v[2].bytes, GET.len());
}

#[test]
fn content_length_with_transfer_encoding_and_duplicates_are_counted() {
    let v = all_splits(
        b"POST / HTTP/1.1\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    );
    assert_eq!((v[0].content_lengths, v[0].transfer_encoding), (1, true));
    let v = all_splits(b"POST / HTTP/1.1\r\nContent-Length: 5\r\ncontent-length: 5\r\n\r\nhello");
    assert_eq!(v[0].content_lengths, 2);
}

#[test]
fn framing_it_cannot_follow_is_reported_on_the_next_head() {
    for input in [
        &b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nx\r\n0\r\n\r\nGET / HTTP/1.1\r\n\r\n"[..],
        b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nffffffffffffffff1\r\nx\r\n0\r\n\r\nGET / HTTP/1.1\r\n\r\n",
        b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nxy\r\n0\r\n\r\nGET / HTTP/1.1\r\n\r\n",
        b"POST / HTTP/1.1\r\nContent-Length: 1e3\r\n\r\nGET / HTTP/1.1\r\n\r\n",
        b"POST / HTTP/1.1\r\nContent-Length:                                                          5\r\n\r\nhelloGET / HTTP/1.1\r\n\r\n",
    ] {
        let v = verdicts(input, input.len());
        assert!(v.iter().skip(1).all(|v| v.lost) && v.len() >= 2, "{input:?}: {v:?}");
    }
}

#[test]
fn empty_lines_before_a_request_are_not_part_of_its_head() {
    let mut input = b"\r\n\r\n".to_vec();
    input.extend_from_slice(GET);
    assert_eq!(all_splits(&input)[0].bytes, GET.len());
}

#[test]
fn a_head_larger_than_any_limit_is_measured_across_reads() {
    let mut input = b"GET / HTTP/1.1\r\nX-Big: ".to_vec();
    input.extend(std::iter::repeat_n(b'a', 200_000));
    input.extend_from_slice(b"\r\n\r\n");
    assert_eq!(verdicts(&input, 4096)[0].bytes, input.len());
}
