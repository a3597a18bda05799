//! Request-target handling on arbitrary input: `policy::classify` (origin-form,
//! absolute-form, `*`), `path::normalize_path`, `path::query_pairs`, and the ProxyShell
//! guard (the path and query checks inside `classify`, and the method, body and `Cookie`
//! checks of `autodiscover_v2_request_refused`). Parts split at 0xff: target, method,
//! then `Cookie` values. Never panics; normalization is idempotent once nothing is left to
//! decode (a `%` it leaves is a literal `%25`); forwarding the normalized path with the
//! same query classifies exactly as the original target did; and `classify`'s shortcut
//! for plain paths agrees with decoding and normalizing them.
#![no_main]

use exgate::policy::path::{classify_general, normalize_path, query_pairs};
use exgate::policy::{RequestFacts, autodiscover_v2_request_refused, classify};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut parts = data.split(|b| *b == 0xff);
    let target = String::from_utf8_lossy(parts.next().unwrap_or_default());
    let method = parts.next().map(String::from_utf8_lossy);
    let cookies: Vec<&[u8]> = parts.collect();

    let classified = classify(&target);
    assert_eq!(classified, classify_general(&target), "{target}");
    let (path, query) = target.split_once('?').unwrap_or((&target, ""));
    for (k, v) in query_pairs(query) {
        let _ = (k.len(), v.len());
    }
    if let Ok(normalized) = normalize_path(path) {
        assert!(normalized.starts_with('/'));
        assert!(!normalized.contains('\\') && !normalized.contains("//"));
        assert_eq!(normalized.to_ascii_lowercase(), normalized);
        // The decode happens once: re-encoding the `%` it produced gives the same path.
        assert_eq!(
            normalize_path(&normalized.replace('%', "%25")).as_ref(),
            Ok(&normalized)
        );
        if !normalized.contains('%') {
            assert_eq!(normalize_path(&normalized).as_ref(), Ok(&normalized));
        }
        if let Ok(t) = classified
            && target.starts_with(['/', '\\'])
            && !normalized.contains(['%', '?', '#'])
        {
            let again = if target.contains('?') {
                format!("{normalized}?{query}")
            } else {
                normalized.clone()
            };
            assert_eq!(classify(&again), Ok(t), "{again}");
        }
    }
    let request = RequestFacts {
        method: method.as_deref(),
        has_body: data.len() % 2 == 1,
        cookies: &cookies,
    };
    let refused = autodiscover_v2_request_refused(&request);
    if request.has_body {
        assert!(refused);
    }
});
