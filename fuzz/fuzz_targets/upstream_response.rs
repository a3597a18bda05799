//! exgate's own upstream client's parsers on arbitrary server bytes: the response head
//! (`parse_head`, for GET and HEAD) and the chunked decoder never panic; a head stays
//! within its bounds and the bytes given, and `may_end_head` finds where it ends; the
//! decoder never yields more bytes than it was fed, and yields the same data whether
//! the bytes come whole or one at a time.
#![no_main]

use bytes::BytesMut;
use exgate::proxy::{ChunkedDecoder, Decoded, Framing, may_end_head, parse_head};
use hyper::Method;
use libfuzzer_sys::fuzz_target;

/// Feeds `wire` in pieces of `step` bytes: the data out and whether the body ended.
fn decode(wire: &[u8], step: usize) -> Option<(Vec<u8>, bool)> {
    let mut decoder = ChunkedDecoder::default();
    let mut buf = BytesMut::new();
    let mut out = Vec::new();
    let mut fed = 0;
    loop {
        match decoder.decode(&mut buf).ok()? {
            Decoded::Data(d) => {
                assert!(!d.is_empty(), "no empty data frames");
                out.extend_from_slice(&d);
            }
            Decoded::End => return Some((out, true)),
            Decoded::NeedMore if fed == wire.len() => return Some((out, false)),
            Decoded::NeedMore => {
                let next = (fed + step).min(wire.len());
                buf.extend_from_slice(&wire[fed..next]);
                fed = next;
            }
        }
    }
}

fuzz_target!(|data: &[u8]| {
    for method in [Method::GET, Method::HEAD] {
        let Ok(Some(head)) = parse_head(data, &method) else {
            continue;
        };
        assert!(head.len <= data.len() && head.len <= exgate::proxy::MAX_RESPONSE_HEAD_BYTES);
        for (name, value) in &head.fields {
            assert!(name.end <= head.len && value.end <= head.len);
            assert!(!name.is_empty());
        }
        // The client parses only where a head can end: never past one httparse reads,
        // wherever the bytes before were split off as already scanned.
        let whole = &data[..head.len];
        assert!(may_end_head(whole, 0));
        let split = head.len / 2;
        if !may_end_head(&whole[..split], 0) {
            assert!(may_end_head(whole, split));
        }
        if method == Method::HEAD {
            assert_eq!(head.framing, Framing::None);
        }
        if head.framing == Framing::UntilClose {
            assert!(!head.reusable);
        }
    }
    if let Some((whole, ended)) = decode(data, data.len().max(1)) {
        assert!(whole.len() <= data.len());
        if ended && let Some((stepwise, true)) = decode(data, 1) {
            assert_eq!(whole, stepwise);
        }
    }
});
