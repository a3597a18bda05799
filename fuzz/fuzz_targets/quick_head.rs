//! The quick refusal path's head parser on arbitrary client bytes: it never panics, and
//! what it accepts is one whole head with a Basic or Bearer `Authorization` field, never
//! `HEAD`, with an origin-form target, every field name and value valid for the `http`
//! types hyper would build, and that the head guard measured as exactly those bytes.
#![no_main]

use exgate::proxy::QuickHead;
use hyper::header::{HeaderName, HeaderValue};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut storage = QuickHead::storage();
    let Some(head) = QuickHead::parse(data, &mut storage) else {
        return;
    };
    assert_ne!(head.method, hyper::Method::HEAD);
    assert!(head.target.as_str().starts_with('/'));
    assert!(head.values(&hyper::header::AUTHORIZATION).next().is_some());
    // The token is a field value's tail.
    if let Some(token) = head.bearer_token() {
        assert!(head.fields.iter().any(|f| f.value.ends_with(token)));
    }
    for field in head.fields {
        assert!(HeaderName::from_bytes(field.name.as_bytes()).is_ok(), "{field:?}");
        assert!(HeaderValue::from_bytes(field.value).is_ok(), "{field:?}");
    }
    let verdicts = exgate::proxy::verdicts_of([data]);
    assert_eq!(verdicts.len(), 1, "one head");
    // A head the guard measured otherwise, or flagged, is refused by the framing check
    // before the quick path answers it; a well-formed one is these bytes exactly.
    if !verdicts[0].bare_lf && !verdicts[0].lost {
        assert_eq!(verdicts[0].bytes, data.len());
    }
});
