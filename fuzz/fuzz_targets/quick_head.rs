//! The quick refusal path's head parser on arbitrary client bytes: it never panics, and
//! what it accepts is one whole head with a Basic `Authorization` field that the head
//! guard measured as exactly those bytes, never `HEAD`, holding only the fields the
//! request path reads.
#![no_main]

use exgate::proxy::QuickHead;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some(head) = QuickHead::parse(data) else {
        return;
    };
    assert_ne!(head.method, hyper::Method::HEAD);
    assert!(head.headers.contains_key(hyper::header::AUTHORIZATION));
    assert!(head.headers.keys().all(|k| exgate::proxy::QUICK_READ_FIELDS.contains(k)));
    let verdicts = exgate::proxy::verdicts_of([data]);
    assert_eq!(verdicts.len(), 1, "one head");
    // A head the guard measured otherwise, or flagged, is refused by the framing check
    // before the quick path answers it; a well-formed one is these bytes exactly.
    if !verdicts[0].bare_lf && !verdicts[0].lost {
        assert_eq!(verdicts[0].bytes, data.len());
    }
});
