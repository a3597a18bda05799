use std::sync::{Arc, Mutex};

use bytes::BytesMut;
use http_body_util::BodyExt;
use hyper::body::Body;
use hyper::header::HeaderValue;
use hyper::{Method, StatusCode, Version};
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};

use super::*;

fn get() -> Method {
    Method::GET
}

fn parsed(head: &str) -> ParsedHead {
    parse_head(head.as_bytes(), &get())
        .expect("valid")
        .expect("whole")
}

/// A head's framing and whether its connection is reusable.
type Framed = Result<(Framing, bool), Malformed>;

fn framing(head: &str) -> Framed {
    parse_head(head.as_bytes(), &get()).map(|p| {
        let p = p.expect("whole");
        (p.framing, p.reusable)
    })
}

#[test]
fn a_content_length_response_is_that_long_and_reusable() {
    let p = parsed("HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-A: b\r\n\r\nhello");
    assert_eq!(p.len, 46);
    assert_eq!(p.status, StatusCode::OK);
    assert_eq!(p.version, Version::HTTP_11);
    assert_eq!(p.framing, Framing::Length(5));
    assert!(p.reusable);
    assert_eq!(p.fields.len(), 2);
}

#[test]
fn a_partial_head_asks_for_more_until_the_bound() {
    let partial = "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n";
    assert_eq!(parse_head(partial.as_bytes(), &get()), Ok(None));
    let mut big = b"HTTP/1.1 200 OK\r\nX-Big: ".to_vec();
    big.resize(MAX_HEAD_BYTES, b'a');
    assert_eq!(parse_head(&big, &get()), Err(Malformed::HeadTooLarge));
    let mut many = String::from("HTTP/1.1 200 OK\r\n");
    for i in 0..=MAX_FIELDS {
        many.push_str(&format!("X-{i}: v\r\n"));
    }
    many.push_str("\r\n");
    assert_eq!(
        parse_head(many.as_bytes(), &get()),
        Err(Malformed::HeadTooLarge)
    );
}

/// RFC 9112 §6.3, rule by rule, with the variants a server (or whatever answers in its
/// place) could send.
#[test]
fn the_framing_follows_rfc_9112_section_6_3() {
    use Framing::*;
    let table: &[(&str, Framed)] = &[
        // Rule 1: no body, whatever the fields say.
        (
            "HTTP/1.1 204 No Content\r\nContent-Length: 7\r\n\r\n",
            Ok((None, true)),
        ),
        ("HTTP/1.1 304 Not Modified\r\n\r\n", Ok((None, true))),
        (
            "HTTP/1.1 100 Continue\r\nTransfer-Encoding: chunked\r\n\r\n",
            Ok((None, true)),
        ),
        // Rule 4: Transfer-Encoding overrides Content-Length; then close (rule 3).
        (
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
            Ok((Chunked, true)),
        ),
        (
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: CHUNKED \r\n\r\n",
            Ok((Chunked, true)),
        ),
        (
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
            Ok((Chunked, true)),
        ),
        (
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n\r\n",
            Ok((Chunked, true)),
        ),
        (
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, gzip\r\n\r\n",
            Ok((UntilClose, false)),
        ),
        (
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: gzip\r\n\r\n",
            Ok((UntilClose, false)),
        ),
        (
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: \r\n\r\n",
            Ok((UntilClose, false)),
        ),
        (
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n",
            Ok((Chunked, false)),
        ),
        (
            "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n",
            Ok((Chunked, false)),
        ),
        (
            "HTTP/1.1 200 OK\r\nContent-Length: x\r\nTransfer-Encoding: chunked\r\n\r\n",
            Ok((Chunked, false)),
        ),
        // Rules 5 and 6: one valid length, else unrecoverable.
        (
            "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
            Ok((Length(0), true)),
        ),
        (
            "HTTP/1.1 200 OK\r\nContent-Length: 5, 5\r\n\r\n",
            Ok((Length(5), true)),
        ),
        (
            "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\n",
            Ok((Length(5), true)),
        ),
        (
            "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n",
            Err(Malformed::ContentLength),
        ),
        (
            "HTTP/1.1 200 OK\r\nContent-Length: 5, 6\r\n\r\n",
            Err(Malformed::ContentLength),
        ),
        (
            "HTTP/1.1 200 OK\r\nContent-Length: -5\r\n\r\n",
            Err(Malformed::ContentLength),
        ),
        (
            "HTTP/1.1 200 OK\r\nContent-Length: +5\r\n\r\n",
            Err(Malformed::ContentLength),
        ),
        (
            "HTTP/1.1 200 OK\r\nContent-Length: 0x5\r\n\r\n",
            Err(Malformed::ContentLength),
        ),
        (
            "HTTP/1.1 200 OK\r\nContent-Length: \r\n\r\n",
            Err(Malformed::ContentLength),
        ),
        (
            "HTTP/1.1 200 OK\r\nContent-Length: 5,\r\n\r\n",
            Err(Malformed::ContentLength),
        ),
        (
            "HTTP/1.1 200 OK\r\nContent-Length: 99999999999999999999\r\n\r\n",
            Err(Malformed::ContentLength),
        ),
        (
            "HTTP/1.1 200 OK\r\nContent-Length: 18446744073709551615\r\n\r\n",
            Err(Malformed::ContentLength),
        ),
        (
            "HTTP/1.1 200 OK\r\nContent-Length: 1 2\r\n\r\n",
            Err(Malformed::ContentLength),
        ),
        // Rule 7: until close.
        ("HTTP/1.1 200 OK\r\n\r\n", Ok((UntilClose, false))),
        // Keep-alive: HTTP/1.1 without `close` only.
        (
            "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0\r\n\r\n",
            Ok((Length(0), false)),
        ),
        (
            "HTTP/1.1 200 OK\r\nConnection: keep-alive, CLOSE\r\nContent-Length: 0\r\n\r\n",
            Ok((Length(0), false)),
        ),
        (
            "HTTP/1.1 200 OK\r\nConnection: keep-alive\r\nContent-Length: 0\r\n\r\n",
            Ok((Length(0), true)),
        ),
        (
            "HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n",
            Ok((Length(0), false)),
        ),
        // Not HTTP/1.x.
        ("HTTP/2.0 200 OK\r\n\r\n", Err(Malformed::Head)),
        ("HTTP/1.1 2000 OK\r\n\r\n", Err(Malformed::Head)),
        ("HTTP/1.1 099 OK\r\n\r\n", Err(Malformed::Head)),
        ("ICY 200 OK\r\n\r\n", Err(Malformed::Head)),
        (
            "HTTP/1.1 200 OK\r\nBad Name: x\r\n\r\n",
            Err(Malformed::Head),
        ),
        (
            "HTTP/1.1 200 OK\r\nX-A: b\r\n c\r\nContent-Length: 0\r\n\r\n",
            Err(Malformed::Head),
        ),
    ];
    for (head, expected) in table {
        assert_eq!(&framing(head), expected, "{head:?}");
    }
}

#[test]
fn the_client_gets_one_content_length_that_says_the_body_it_gets() {
    use LengthField::*;
    let table: &[(&Method, &str, LengthField)] = &[
        (&Method::GET, "Content-Length: 5", Keep),
        (&Method::GET, "X-A: b", Keep),
        (&Method::GET, "Content-Length: 5, 5", Normalize(5)),
        (
            &Method::GET,
            "Content-Length: 5\r\nContent-Length: 5",
            Normalize(5),
        ),
        (&Method::GET, "Content-Length:  5 ,5 ", Normalize(5)),
        (&Method::HEAD, "Content-Length: 7,7", Normalize(7)),
        // Transfer-Encoding decides (RFC 9112 §6.3 rule 3): the field goes.
        (
            &Method::GET,
            "Content-Length: 5\r\nTransfer-Encoding: chunked",
            Drop,
        ),
        (
            &Method::GET,
            "Transfer-Encoding: gzip\r\nContent-Length: 5, 5",
            Drop,
        ),
        (
            &Method::GET,
            "Transfer-Encoding: chunked\r\nContent-Length: x",
            Drop,
        ),
        // Invalid on a response without a body: it goes (with a body, a 502).
        (&Method::HEAD, "Content-Length: 5, 6", Drop),
    ];
    for (method, fields, expected) in table {
        let head = format!("HTTP/1.1 200 OK\r\n{fields}\r\n\r\n");
        let p = parse_head(head.as_bytes(), method).unwrap().unwrap();
        assert_eq!(p.length_field, *expected, "{method} {fields:?}");
    }
}

#[test]
fn a_response_to_head_has_no_body_whatever_its_length() {
    let head = b"HTTP/1.1 200 OK\r\nContent-Length: 500\r\n\r\n";
    let p = parse_head(head, &Method::HEAD).unwrap().unwrap();
    assert_eq!((p.framing, p.reusable), (Framing::None, true));
}

#[test]
fn the_request_goes_out_in_origin_form_with_every_field() {
    let mut headers = hyper::HeaderMap::new();
    headers.append("host", HeaderValue::from_static("mail.contoso.com"));
    headers.append("x-forwarded-for", HeaderValue::from_static("a"));
    headers.append("x-forwarded-for", HeaderValue::from_static("b"));
    let head = Head {
        method: Method::GET,
        path_and_query: "/owa/?x=1".parse().unwrap(),
        headers,
    };
    let out = encode_request(&head, &HeaderValue::from_static("upstream:443"));
    assert_eq!(
        String::from_utf8(out).unwrap(),
        "GET /owa/?x=1 HTTP/1.1\r\nhost: mail.contoso.com\r\nx-forwarded-for: a\r\nx-forwarded-for: b\r\n\r\n"
    );
    let bare = Head {
        method: Method::HEAD,
        path_and_query: "/".parse().unwrap(),
        headers: hyper::HeaderMap::new(),
    };
    let out = encode_request(&bare, &HeaderValue::from_static("upstream:443"));
    assert_eq!(out, b"HEAD / HTTP/1.1\r\nhost: upstream:443\r\n\r\n");
}

/// Decodes `wire` fed in pieces of `step` bytes; the data and whether it ended.
fn decode_in_steps(wire: &[u8], step: usize) -> Result<(Vec<u8>, bool), Malformed> {
    let mut decoder = ChunkedDecoder::default();
    let mut buf = BytesMut::new();
    let mut out = Vec::new();
    let mut fed = 0;
    loop {
        match decoder.decode(&mut buf)? {
            Decoded::Data(d) => out.extend_from_slice(&d),
            Decoded::End => return Ok((out, true)),
            Decoded::NeedMore if fed == wire.len() => return Ok((out, false)),
            Decoded::NeedMore => {
                let next = (fed + step).min(wire.len());
                buf.extend_from_slice(&wire[fed..next]);
                fed = next;
            }
        }
    }
}

#[test]
fn chunked_bodies_decode_the_same_however_they_are_split() {
    let wire = b"5\r\nhello\r\n1;ext=\"a b\"\r\n \r\nA \r\n0123456789\r\n0\r\nX-T: 1\r\n\r\n";
    for step in 1..=wire.len() {
        assert_eq!(
            decode_in_steps(wire, step),
            Ok((b"hello 0123456789".to_vec(), true)),
            "step {step}"
        );
    }
}

#[test]
fn malformed_chunked_bodies_are_refused() {
    let table: &[&[u8]] = &[
        b"\r\n",                      // an empty size line is not the last chunk
        b"x\r\n",                     // not hex
        b"-1\r\n",                    // not hex
        b"5\r\nhelloXX0\r\n\r\n",     // data not followed by CRLF
        b"5\r\nhello\n0\r\n\r\n",     // bare LF after the data
        b"10000000000000000\r\n",     // 17 hex digits
        b"5 5\r\nhello\r\n0\r\n\r\n", // two sizes
    ];
    for wire in table {
        assert_eq!(
            decode_in_steps(wire, 1).map(|_| ()),
            Err(Malformed::Chunked),
            "{:?}",
            String::from_utf8_lossy(wire)
        );
    }
    // Bounded: an endless size line, an endless trailer section.
    let mut line = b"5;".to_vec();
    line.resize(MAX_CHUNK_LINE_BYTES + 10, b'a');
    assert_eq!(
        decode_in_steps(&line, 1024).map(|_| ()),
        Err(Malformed::Chunked)
    );
    let mut trailers = b"0\r\n".to_vec();
    while trailers.len() < MAX_TRAILER_BYTES + 100 {
        trailers.extend_from_slice(b"X-T: 1\r\n");
    }
    assert_eq!(
        decode_in_steps(&trailers, 1024).map(|_| ()),
        Err(Malformed::Chunked)
    );
    // A body cut short is not an end.
    assert_eq!(
        decode_in_steps(b"5\r\nhel", 1),
        Ok((b"hel".to_vec(), false))
    );
}

/// A client-side connection in a slot and the server's end of it.
fn pair() -> (Arc<Slot<DuplexStream>>, DuplexStream) {
    let (client, server) = tokio::io::duplex(256 * 1024);
    (
        Arc::new(Mutex::new(Some(Box::new(Direct::new(client))))),
        server,
    )
}

const REQUEST: &[u8] = b"GET / HTTP/1.1\r\nhost: a\r\n\r\n";

/// Reads one request head from the server's end.
async fn read_request(server: &mut DuplexStream) -> Vec<u8> {
    let mut got = Vec::new();
    while !got.ends_with(b"\r\n\r\n") {
        let mut byte = [0u8; 1];
        if server.read(&mut byte).await.unwrap() == 0 {
            break;
        }
        got.push(byte[0]);
    }
    got
}

fn in_slot(slot: &Slot<DuplexStream>) -> bool {
    slot.lock().unwrap().is_some()
}

async fn body_of(res: Response<ProxyBody>) -> Result<Vec<u8>, BoxError> {
    Ok(res.into_body().collect().await?.to_bytes().to_vec())
}

#[tokio::test]
async fn a_small_response_comes_back_whole_and_the_connection_with_it() {
    let (slot, mut server) = pair();
    for round in 0..3 {
        let answer = tokio::spawn(async move {
            assert_eq!(read_request(&mut server).await, REQUEST);
            server
                .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-Round: r\r\n\r\nhello")
                .await
                .unwrap();
            server
        });
        let res = exchange(&slot, REQUEST, &Method::GET).await.unwrap();
        server = answer.await.unwrap();
        assert_eq!(res.status(), StatusCode::OK);
        assert_eq!(res.headers()["x-round"], "r");
        assert_eq!(res.body().size_hint().exact(), Some(5));
        assert!(
            in_slot(&slot),
            "round {round}: back before the body is read"
        );
        assert_eq!(body_of(res).await.unwrap(), b"hello");
    }
}

#[tokio::test]
async fn bodies_read_later_come_back_in_order_and_then_the_connection() {
    for wire in [
        &b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n"[..],
        &b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"[..],
    ] {
        let (slot, mut server) = pair();
        let chunked = wire.windows(7).any(|w| w == b"chunked");
        let answer = tokio::spawn(async move {
            read_request(&mut server).await;
            server.write_all(wire).await.unwrap();
            server.flush().await.unwrap();
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            let parts: &[&[u8]] = match chunked {
                true => &[b"3\r\nabc", b"\r\n7\r\ndefghij\r", b"\n0\r\n\r\n"],
                false => &[b"abc", b"defghij"],
            };
            for part in parts {
                server.write_all(part).await.unwrap();
                tokio::time::sleep(std::time::Duration::from_millis(5)).await;
            }
            server
        });
        let res = exchange(&slot, REQUEST, &Method::GET).await.unwrap();
        assert!(!in_slot(&slot), "out with the body");
        // Not "exactly": the idle timeout must wrap a body still to be read.
        assert_eq!(res.body().size_hint().exact(), None);
        assert_eq!(body_of(res).await.unwrap(), b"abcdefghij");
        answer.await.unwrap();
        assert!(in_slot(&slot), "{:?}", String::from_utf8_lossy(wire));
    }
}

#[tokio::test]
async fn a_response_that_ends_with_the_connection_does_not_come_back() {
    let cases: &[(&'static [u8], &[u8])] = &[
        (b"HTTP/1.1 200 OK\r\n\r\nuntil close", b"until close"),
        (
            b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok",
            b"ok",
        ),
        (b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok", b"ok"),
        (
            b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n",
            b"ok",
        ),
        // Bytes nobody asked for after the response.
        (
            b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokHTTP/1.1 200 OK\r\n\r\n",
            b"ok",
        ),
    ];
    for (wire, body) in cases {
        let (slot, server) = pair();
        answer_and_close(server, wire);
        let res = exchange(&slot, REQUEST, &Method::GET).await.unwrap();
        assert_eq!(body_of(res).await.unwrap(), *body);
        assert!(!in_slot(&slot), "{:?}", String::from_utf8_lossy(wire));
    }
}

/// One exchange, the server reading the request and then sending `wire`.
async fn answered(
    slot: &Arc<Slot<DuplexStream>>,
    server: &mut DuplexStream,
    wire: &[u8],
    method: &Method,
) -> Result<Response<ProxyBody>, Failed> {
    let (result, ()) = tokio::join!(exchange(slot, REQUEST, method), async {
        read_request(server).await;
        server.write_all(wire).await.unwrap();
    });
    result
}

/// The server reads the request, sends `wire` and closes the connection.
fn answer_and_close(mut server: DuplexStream, wire: &'static [u8]) {
    tokio::spawn(async move {
        read_request(&mut server).await;
        server.write_all(wire).await.unwrap();
    });
}

#[tokio::test]
async fn interim_responses_are_skipped_and_a_protocol_switch_refused() {
    let (slot, mut server) = pair();
    let res = answered(&slot, &mut server, b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: x\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n", &Method::GET).await.unwrap();
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    assert!(in_slot(&slot));

    let (slot, mut server) = pair();
    let failed = answered(
        &slot,
        &mut server,
        b"HTTP/1.1 101 Switching Protocols\r\n\r\n",
        &Method::GET,
    )
    .await
    .unwrap_err();
    assert_eq!(failed.error, UpstreamError::Unreachable);
    assert!(!failed.retriable);
    assert!(!in_slot(&slot));

    let (slot, mut server) = pair();
    let failed = answered(
        &slot,
        &mut server,
        &b"HTTP/1.1 100 Continue\r\n\r\n".repeat(9),
        &Method::GET,
    )
    .await
    .unwrap_err();
    assert!(!failed.retriable);
}

#[tokio::test]
async fn only_a_reused_connection_closed_before_any_answer_may_be_retried() {
    // Fresh: the server's failure, not retried.
    let (slot, server) = pair();
    drop(server);
    let failed = exchange(&slot, REQUEST, &Method::GET).await.unwrap_err();
    assert_eq!(
        (failed.error, failed.retriable),
        (UpstreamError::Unreachable, false)
    );

    // Reused, closed with nothing sent back: retriable.
    let (slot, mut server) = pair();
    answered(
        &slot,
        &mut server,
        b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
        &Method::GET,
    )
    .await
    .unwrap();
    assert!(in_slot(&slot));
    drop(server);
    let failed = exchange(&slot, REQUEST, &Method::GET).await.unwrap_err();
    assert!(failed.retriable);

    // Reused, closed halfway through a head: not retried.
    let (slot, mut server) = pair();
    answered(
        &slot,
        &mut server,
        b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
        &Method::GET,
    )
    .await
    .unwrap();
    answer_and_close(server, b"HTTP/1.1 200 OK\r\n");
    let failed = exchange(&slot, REQUEST, &Method::GET).await.unwrap_err();
    assert!(!failed.retriable);

    // An empty slot (closed after an earlier response): nothing to send on.
    let failed = exchange(&slot, REQUEST, &Method::GET).await.unwrap_err();
    assert!(!failed.retriable);
}

#[tokio::test]
async fn a_body_cut_short_or_dropped_closes_the_connection() {
    let (slot, server) = pair();
    answer_and_close(server, b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc");
    let res = exchange(&slot, REQUEST, &Method::GET).await.unwrap();
    let error = body_of(res).await.unwrap_err();
    assert_eq!(
        error.to_string(),
        "upstream closed the connection inside the response"
    );
    assert!(!in_slot(&slot));

    let (slot, mut server) = pair();
    let res = answered(
        &slot,
        &mut server,
        b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc",
        &Method::GET,
    )
    .await
    .unwrap();
    drop(res);
    assert!(!in_slot(&slot));
    drop(server);
}

#[tokio::test]
async fn an_invalid_length_fails_the_exchange_and_closes() {
    let (slot, mut server) = pair();
    let failed = answered(
        &slot,
        &mut server,
        b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab",
        &Method::GET,
    )
    .await
    .unwrap_err();
    assert_eq!(
        (failed.error, failed.retriable),
        (UpstreamError::Unreachable, false)
    );
    assert!(!in_slot(&slot));
}

#[tokio::test]
async fn a_stale_connection_is_seen_without_waiting() {
    let (slot, server) = pair();
    let mut conn = slot.lock().unwrap().take().unwrap();
    assert!(!conn.is_stale(), "open and quiet");
    drop(server);
    assert!(conn.is_stale(), "closed by the server");
    let (slot, mut server) = pair();
    server.write_all(b"x").await.unwrap();
    let mut conn = slot.lock().unwrap().take().unwrap();
    assert!(conn.is_stale(), "bytes nobody asked for");
}

#[tokio::test]
async fn bytes_that_arrive_while_idle_send_the_next_request_elsewhere() {
    let (slot, mut server) = pair();
    answered(
        &slot,
        &mut server,
        b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
        &Method::HEAD,
    )
    .await
    .unwrap();
    assert!(in_slot(&slot));
    // A body after the response to HEAD, late: it must not answer the next request.
    server
        .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 8\r\n\r\nsmuggled")
        .await
        .unwrap();
    let failed = exchange(&slot, REQUEST, &Method::GET).await.unwrap_err();
    assert_eq!(
        (failed.error, failed.retriable),
        (UpstreamError::Unreachable, true)
    );
    assert!(!in_slot(&slot));
    // The second request was never written.
    let mut got = Vec::new();
    server.read_to_end(&mut got).await.unwrap();
    assert!(got.is_empty());
}

#[tokio::test]
async fn bytes_before_the_first_request_fail_it_unsent_and_not_retried() {
    let (slot, mut server) = pair();
    server
        .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nearly")
        .await
        .unwrap();
    let failed = exchange(&slot, REQUEST, &Method::GET).await.unwrap_err();
    assert_eq!(
        (failed.error, failed.retriable),
        (UpstreamError::Unreachable, false)
    );
    assert!(!in_slot(&slot));
    let mut got = Vec::new();
    server.read_to_end(&mut got).await.unwrap();
    assert!(got.is_empty(), "nothing was sent");
}

#[tokio::test]
async fn a_listed_length_reaches_the_client_as_one_and_a_chunked_one_not_at_all() {
    let (slot, mut server) = pair();
    let res = answered(
        &slot,
        &mut server,
        b"HTTP/1.1 200 OK\r\nContent-Length: 2, 2\r\n\r\nok",
        &Method::GET,
    )
    .await
    .unwrap();
    assert_eq!(res.headers().get_all("content-length").iter().count(), 1);
    assert_eq!(res.headers()["content-length"], "2");
    let (slot, mut server) = pair();
    let res = answered(&slot, &mut server, b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n", &Method::GET).await.unwrap();
    assert!(res.headers().get("content-length").is_none());
    assert_eq!(body_of(res).await.unwrap(), b"hello");
}

#[test]
fn a_head_can_end_only_where_a_blank_line_begins() {
    let head = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n";
    for end in 0..head.len() {
        assert!(!may_end_head(&head[..end], 0), "{end}");
    }
    assert!(may_end_head(head, 0));
    // However much was scanned before (bytes with no blank line), it is still found.
    for scanned in 0..head.len() {
        assert!(!may_end_head(&head[..scanned], 0));
        assert!(may_end_head(head, scanned), "{scanned}");
    }
    assert!(may_end_head(b"HTTP/1.1 200 OK\n\n", 15));
    assert!(may_end_head(b"HTTP/1.1 200 OK\r\n\n", 16));
    assert!(!may_end_head(b"", 0));
}

#[tokio::test]
async fn a_head_trickled_byte_by_byte_is_read_whole() {
    let (slot, mut server) = pair();
    let wire =
        b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\nX-A: b\r\n\r\nok";
    let (res, ()) = tokio::join!(exchange(&slot, REQUEST, &Method::GET), async {
        read_request(&mut server).await;
        for byte in wire {
            server.write_all(&[*byte]).await.unwrap();
            tokio::task::yield_now().await;
        }
    });
    let res = res.unwrap();
    assert_eq!(res.headers()["x-a"], "b");
    assert_eq!(body_of(res).await.unwrap(), b"ok");
    assert!(in_slot(&slot));
}
