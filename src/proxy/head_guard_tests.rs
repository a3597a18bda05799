use super::*;

/// Feeds `input` in pieces of `step` bytes and returns the verdicts.
fn verdicts(input: &[u8], step: usize) -> Vec<HeadVerdict> {
    verdicts_of(input.chunks(step.max(1)))
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
            hosts: 1,
            ..HeadVerdict::default()
        }]
    );
}

/// Red team (issue 16): a framing field with nothing after its colon was not noted, so
/// the quick path answered a head that hyper's path refuses (`Transfer-Encoding:`,
/// `Content-Length:`) and a second, empty `Host` went unnoticed on both paths.
#[test]
fn framing_fields_with_empty_values_are_noted() {
    let with = |field: &str| format!("GET / HTTP/1.1\r\nHost: a\r\n{field}\r\n\r\n");
    for name in [
        "Transfer-Encoding",
        "transfer-encoding",
        "TRANSFER-ENCODING",
    ] {
        for sep in [":", ": ", ":\t"] {
            let v = all_splits(with(&format!("{name}{sep}")).as_bytes());
            assert!(v[0].transfer_encoding, "{name}{sep}");
        }
    }
    for field in ["Content-Length:", "content-length: ", "CONTENT-LENGTH:"] {
        let v = all_splits(with(field).as_bytes());
        assert_eq!(v[0].content_lengths, 1, "{field}");
        // Unreadable: nothing after it can be vouched for.
        assert!(v[0].lost, "{field}");
    }
    for field in ["Host:", "host: ", "HOST:"] {
        assert_eq!(all_splits(with(field).as_bytes())[0].hosts, 2, "{field}");
    }
    assert!(all_splits(with("Connection:").as_bytes())[0].connection);
    assert!(all_splits(with("Cookie:").as_bytes())[0].cookie);
    // A longer name that starts like one is not that field.
    let v = all_splits(with("Hostname: x").as_bytes());
    assert_eq!(v[0].hosts, 1);
    let v = all_splits(with("Content-Lengthy: 3").as_bytes());
    assert_eq!((v[0].content_lengths, v[0].lost), (0, false));
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
fn host_and_cookie_fields_are_counted_in_any_case() {
    let v =
        all_splits(b"GET / HTTP/1.1\r\nhOsT: a\r\nHOST: b\r\nCOOKIE: Email=x\r\nX-Host: c\r\n\r\n");
    assert_eq!((v[0].hosts, v[0].cookie), (2, true));
    let v = all_splits(b"GET / HTTP/1.1\r\nX-Cookie: a\r\nHostile: b\r\n\r\n");
    assert_eq!((v[0].hosts, v[0].cookie), (0, false));
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

mod properties {
    use super::*;
    use proptest::prelude::*;

    /// One well-formed request: a GET, a POST with a `Content-Length` body, or a POST
    /// with a chunked body (extensions, a trailer), bodies of arbitrary bytes.
    fn request(kind: usize, path: &str, body: &[u8]) -> Vec<u8> {
        let mut out = format!("POST /{path} HTTP/1.1\r\nHost: a\r\n").into_bytes();
        match kind {
            0 => out = format!("GET /{path} HTTP/1.1\r\nHost: a\r\n\r\n").into_bytes(),
            1 => {
                out.extend(format!("Content-Length: {}\r\n\r\n", body.len()).bytes());
                out.extend_from_slice(body);
            }
            _ => {
                out.extend_from_slice(b"Transfer-Encoding: chunked\r\n\r\n");
                for chunk in body.chunks(7) {
                    out.extend(format!("{:x};e=1\r\n", chunk.len()).bytes());
                    out.extend_from_slice(chunk);
                    out.extend_from_slice(b"\r\n");
                }
                out.extend_from_slice(b"0\r\nX-T: 1\r\n\r\n");
            }
        }
        out
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

        #[test]
        fn arbitrary_bytes_never_panic(
            bytes in proptest::collection::vec(any::<u8>(), 0..2000),
            step in 1usize..64,
        ) {
            let _ = verdicts(&bytes, step);
        }

        #[test]
        fn a_well_formed_pipeline_gets_one_clean_verdict_per_head_however_split(
            requests in proptest::collection::vec(
                (0usize..3, "[a-z]{0,20}", proptest::collection::vec(any::<u8>(), 0..100)),
                1..5,
            ),
            step in 1usize..50,
        ) {
            let mut input = Vec::new();
            for (kind, path, body) in &requests {
                input.extend(request(*kind, path, body));
            }
            let v = verdicts(&input, step);
            prop_assert_eq!(v.len(), requests.len());
            for verdict in v {
                prop_assert!(!verdict.bare_lf && !verdict.lost);
            }
        }
    }
}
