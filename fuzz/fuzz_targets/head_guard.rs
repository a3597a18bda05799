//! The head guard on arbitrary client bytes, split into reads at arbitrary points: it
//! never panics, and no head it measures is longer than what it was given.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&step, bytes)) = data.split_first() else {
        return;
    };
    let step = usize::from(step).max(1);
    let verdicts = exgate::proxy::verdicts_of(bytes.chunks(step));
    let whole = exgate::proxy::verdicts_of([bytes]);
    // How the bytes were split across reads never changes what the guard concludes.
    assert_eq!(verdicts, whole);
    for v in &verdicts {
        assert!(v.bytes <= bytes.len());
    }
});
