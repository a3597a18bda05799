//! `exgate report`'s reader on arbitrary audit-log bytes: `report::build` (JSON lines,
//! grouped and counted), then the text table, the CSV, the HTML page and the JSON form of
//! the result. Never panics; every legacy row's count is the sum of its decisions; at most
//! 20 sources are kept; the HTML page holds no element the log could have written (no
//! `<script`, `<img`, `<iframe`: every `<` from the log is escaped);
//! and the JSON form reads back as the same report.
#![no_main]

use exgate::report::{self, Report};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // Non-UTF-8 input is an I/O error from `lines()`, as from a real file.
    let Ok(r) = report::build(data) else {
        return;
    };
    assert!(r.unreadable_lines <= r.lines);
    for row in &r.legacy {
        assert_eq!(row.count, row.allowed + row.blocked + row.report_only);
        assert!(row.first_seen <= row.last_seen);
    }
    assert!(r.top_blocked_sources.len() <= 20);
    let _ = report::table(&r);
    let csv = report::csv(&r);
    assert!(csv.starts_with("section,"));
    let page = report::html(&r);
    let lower = page.to_ascii_lowercase();
    for written_by_the_log in ["<script", "<img", "<iframe", "<svg onload", "<a href=\"javascript"] {
        assert!(!lower.contains(written_by_the_log), "{written_by_the_log}");
    }
    let json = serde_json::to_string(&r).unwrap();
    assert_eq!(serde_json::from_str::<Report>(&json).unwrap(), r);
});
