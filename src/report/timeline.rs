//! Legacy attempts over time, the report's `timeline`: how many audit records with
//! `legacy: true` each protocol had per time bucket, split by what exgate did with them
//! (blocked, allowed, report-only). The bucket width follows the span of the attempts —
//! minutes for a log of an hour, days for a log of a month — so that the trend fits one
//! chart of at most [`MAX_BUCKETS`] points.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use crate::audit::{civil_from_days, days_from_civil};

/// Most buckets a timeline has: enough points for a trend, few enough for a chart
/// and a table a person reads.
pub const MAX_BUCKETS: u64 = 48;

/// Bucket widths tried in order, in seconds (minute, 5 and 15 minutes, hour, 6 hours,
/// day, week): the first that puts the span in [`MAX_BUCKETS`] buckets wins; past a
/// week, whole weeks.
const WIDTHS: [u64; 7] = [60, 300, 900, 3_600, 21_600, 86_400, WEEK];
const WEEK: u64 = 7 * 86_400;
/// 1970-01-05 00:00 UTC in Unix seconds, a Monday: week buckets start on Mondays.
const MONDAY: i64 = 4 * 86_400;

/// Legacy attempts per protocol per time bucket (`--format json`: `timeline`).
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Timeline {
    /// Width of every bucket in seconds: 60, 300, 900, 3600, 21600, 86400, or a whole
    /// number of weeks (604800 × n), the narrowest that puts the attempts in at most
    /// [`MAX_BUCKETS`] buckets; 0 when no legacy attempt had a readable `ts`.
    pub bucket_seconds: u64,
    /// The start of each bucket, RFC 3339 UTC (`2026-11-25T09:00:00.000Z`), ascending
    /// and contiguous from the bucket of the first dated legacy attempt to that of the
    /// last, empty buckets included. Buckets are aligned in UTC: to the minute, the
    /// hour, midnight, and weeks to Monday 00:00.
    pub buckets: Vec<String>,
    /// One per protocol with a dated legacy attempt; most attempts first, then by name.
    pub series: Vec<Series>,
    /// Legacy attempts whose `ts` is not an RFC 3339 time: in the legacy rows' counts,
    /// in no bucket.
    pub undated: u64,
    /// The earliest and latest readable `ts` of any line read (requests and events,
    /// legacy or not), as written in the log; empty when none was readable.
    pub first_ts: String,
    pub last_ts: String,
}

/// One protocol's legacy attempts; every vector is index-aligned with
/// [`Timeline::buckets`].
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Series {
    /// The audit log's `protocol` (`Mapi`, `WebServices`, …).
    pub protocol: String,
    /// All of this protocol's dated legacy attempts: the sum of `count`.
    pub total: u64,
    /// Attempts per bucket: `blocked + allowed + report_only`.
    pub count: Vec<u64>,
    /// Attempts refused (any decision other than `allow` and `report_only`).
    pub blocked: Vec<u64>,
    /// Attempts with decision `allow`.
    pub allowed: Vec<u64>,
    /// Attempts with decision `report_only`: a policy would have blocked them.
    pub report_only: Vec<u64>,
}

/// What exgate did with an attempt, as the legacy rows and the timeline count it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Action {
    // The indices of `[blocked, allowed, report_only]` in [`TimelineBuilder`].
    Blocked = 0,
    Allowed = 1,
    ReportOnly = 2,
}

impl Action {
    /// An audit line's `decision`: `allow`, `report_only`, anything else blocked.
    pub(super) fn of(decision: &str) -> Action {
        match decision {
            "allow" => Action::Allowed,
            "report_only" => Action::ReportOnly,
            _ => Action::Blocked,
        }
    }
}

/// The timeline under construction. Attempts are kept per minute until the span is
/// known; every width is a whole number of minutes aligned on minutes, so regrouping
/// them is exact.
#[derive(Default)]
pub(super) struct TimelineBuilder {
    /// Per protocol, per minute since the epoch: `[blocked, allowed, report_only]`.
    minutes: HashMap<String, HashMap<i64, [u64; 3]>>,
    undated: u64,
    /// The earliest and latest readable `ts` (milliseconds since the epoch, as written).
    first: Option<(i64, String)>,
    last: Option<(i64, String)>,
}

impl TimelineBuilder {
    /// Any line's `ts`: widens the span of the log when it is readable.
    pub(super) fn saw(&mut self, ts: &str) {
        let Some(ms) = unix_millis(ts) else { return };
        if self.first.as_ref().is_none_or(|(f, _)| ms < *f) {
            self.first = Some((ms, ts.to_owned()));
        }
        if self.last.as_ref().is_none_or(|(l, _)| ms > *l) {
            self.last = Some((ms, ts.to_owned()));
        }
    }

    /// A legacy attempt of `protocol` at `ts`.
    pub(super) fn attempt(&mut self, protocol: &str, ts: &str, action: Action) {
        let Some(ms) = unix_millis(ts) else {
            self.undated += 1;
            return;
        };
        let per_minute = match self.minutes.get_mut(protocol) {
            Some(m) => m,
            None => self.minutes.entry(protocol.to_owned()).or_default(),
        };
        let counts = per_minute.entry(ms.div_euclid(60_000)).or_default();
        counts[action as usize] += 1;
    }

    /// The timeline: the width chosen from the span, the minutes regrouped into it.
    pub(super) fn finish(self) -> Timeline {
        let mut timeline = Timeline {
            undated: self.undated,
            first_ts: self.first.map(|(_, ts)| ts).unwrap_or_default(),
            last_ts: self.last.map(|(_, ts)| ts).unwrap_or_default(),
            ..Timeline::default()
        };
        let minutes = self.minutes.values().flat_map(|m| m.keys());
        let (Some(first), Some(last)) = (minutes.clone().min(), minutes.max()) else {
            return timeline;
        };
        let (first, last) = (first * 60, last * 60);
        let width = bucket_width(first, last);
        let start = bucket_start(first, width);
        let n = bucket_index(last, start, width) + 1;
        timeline.bucket_seconds = width;
        timeline.buckets = (0..n)
            .map(|i| rfc3339(start + i64::try_from(i as u64 * width).unwrap_or(i64::MAX)))
            .collect();
        for (protocol, per_minute) in self.minutes {
            let mut series = Series {
                protocol,
                count: vec![0; n],
                blocked: vec![0; n],
                allowed: vec![0; n],
                report_only: vec![0; n],
                ..Series::default()
            };
            for (minute, [blocked, allowed, report_only]) in per_minute {
                let i = bucket_index(minute * 60, start, width);
                series.blocked[i] += blocked;
                series.allowed[i] += allowed;
                series.report_only[i] += report_only;
                series.count[i] += blocked + allowed + report_only;
                series.total += blocked + allowed + report_only;
            }
            timeline.series.push(series);
        }
        timeline.series.sort_by(|a, b| {
            b.total
                .cmp(&a.total)
                .then_with(|| a.protocol.cmp(&b.protocol))
        });
        timeline
    }
}

/// The narrowest width of [`WIDTHS`] (or whole weeks) that puts `first..=last` (Unix
/// seconds) in at most [`MAX_BUCKETS`] buckets.
fn bucket_width(first: i64, last: i64) -> u64 {
    let buckets = |width| bucket_index(last, bucket_start(first, width), width) as u64 + 1;
    if let Some(width) = WIDTHS.into_iter().find(|&w| buckets(w) <= MAX_BUCKETS) {
        return width;
    }
    let span_weeks = u64::try_from(last - first).unwrap_or(0) / WEEK;
    (span_weeks / MAX_BUCKETS + 1..)
        .map(|weeks| weeks * WEEK)
        .find(|&w| buckets(w) <= MAX_BUCKETS)
        .unwrap_or(WEEK)
}

/// The start (Unix seconds) of the bucket of `width` seconds holding `t`: aligned on
/// the epoch, or on a Monday for whole weeks.
fn bucket_start(t: i64, width: u64) -> i64 {
    let width = i64::try_from(width).unwrap_or(i64::MAX);
    let origin = if width % WEEK as i64 == 0 { MONDAY } else { 0 };
    origin + (t - origin).div_euclid(width) * width
}

/// Which bucket, counted from the one starting at `start`, holds `t`.
fn bucket_index(t: i64, start: i64, width: u64) -> usize {
    usize::try_from((bucket_start(t, width) - start) / i64::try_from(width).unwrap_or(1))
        .unwrap_or(0)
}

/// Unix seconds as RFC 3339 UTC with milliseconds, as the audit log writes times.
fn rfc3339(secs: i64) -> String {
    let (year, month, day) = civil_from_days(secs.div_euclid(86_400));
    let rem = secs.rem_euclid(86_400);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.000Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// An RFC 3339 time (`2026-11-25T09:43:10.123Z`, `2026-11-25T10:43:10+01:00`; years
/// 1970 to 9999) as milliseconds since the Unix epoch; None for anything else.
pub(super) fn unix_millis(ts: &str) -> Option<i64> {
    let b = ts.as_bytes();
    let num = |from: usize, len: usize| -> Option<i64> {
        let digits = b.get(from..from + len)?;
        digits
            .iter()
            .all(u8::is_ascii_digit)
            .then(|| digits.iter().fold(0, |n, d| n * 10 + i64::from(d - b'0')))
    };
    let at = |i: usize, c: &[u8]| b.get(i).is_some_and(|x| c.contains(x));
    if !(at(4, b"-") && at(7, b"-") && at(10, b"Tt ") && at(13, b":") && at(16, b":")) {
        return None;
    }
    let (year, month, day) = (num(0, 4)?, num(5, 2)?, num(8, 2)?);
    let (hour, minute, second) = (num(11, 2)?, num(14, 2)?, num(17, 2)?);
    let leap = year % 4 == 0 && (year % 100 != 0 || year % 400 == 0);
    let days_in_month = match month {
        2 if leap => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    };
    if year < 1970
        || !(1..=12).contains(&month)
        || !(1..=days_in_month).contains(&day)
        || hour > 23
        || minute > 59
        || second > 60
    {
        return None;
    }
    let mut i = 19;
    let mut millis = 0;
    if at(i, b".") {
        let digits = b[i + 1..].iter().take_while(|d| d.is_ascii_digit()).count();
        if digits == 0 {
            return None;
        }
        // Milliseconds: the first three digits, padded.
        for k in 0..3 {
            millis = millis * 10 + if k < digits { num(i + 1 + k, 1)? } else { 0 };
        }
        i += 1 + digits;
    }
    let offset_minutes = match b.get(i..)? {
        b"Z" | b"z" => 0,
        [sign @ (b'+' | b'-'), _, _, b':', _, _] => {
            let (h, m) = (num(i + 1, 2)?, num(i + 4, 2)?);
            if h > 23 || m > 59 {
                return None;
            }
            if *sign == b'+' {
                h * 60 + m
            } else {
                -(h * 60 + m)
            }
        }
        _ => return None,
    };
    let days = days_from_civil(year, month, day);
    let secs = days * 86_400 + hour * 3_600 + minute * 60 + second - offset_minutes * 60;
    Some(secs * 1_000 + millis)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The timeline of `(protocol, ts, decision)` attempts.
    fn timeline(attempts: &[(&str, &str, &str)]) -> Timeline {
        let mut b = TimelineBuilder::default();
        for (protocol, ts, decision) in attempts {
            b.saw(ts);
            b.attempt(protocol, ts, Action::of(decision));
        }
        b.finish()
    }

    #[test]
    fn rfc3339_times_are_read_with_fractions_and_offsets() {
        assert_eq!(unix_millis("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(unix_millis("1970-01-01T00:00:01.5Z"), Some(1_500));
        assert_eq!(
            unix_millis("2026-11-25T09:43:10.123Z"),
            Some(1_795_599_790_123)
        );
        assert_eq!(
            unix_millis("2026-11-25T10:43:10.123456+01:00"),
            unix_millis("2026-11-25T09:43:10.123Z")
        );
        assert_eq!(unix_millis("2024-02-29T00:00:00z"), Some(1_709_164_800_000));
        for bad in [
            "",
            "t1",
            "2026-11-25",
            "2026-11-25T09:43:10",
            "2026-13-01T00:00:00Z",
            "2025-02-29T00:00:00Z",
            "2026-11-25T24:00:00Z",
            "2026-11-25T09:43:10.Z",
            "2026-11-25T09:43:10Zjunk",
            "1969-12-31T23:59:59Z",
            "２０26-11-25T09:43:10Z",
        ] {
            assert_eq!(unix_millis(bad), None, "{bad}");
        }
        // The inverse of the formatting used for bucket starts.
        assert_eq!(
            unix_millis(&rfc3339(1_795_599_790)),
            Some(1_795_599_790_000)
        );
    }

    #[test]
    fn a_log_spanning_minutes_gets_minute_buckets() {
        let t = timeline(&[
            ("Mapi", "2026-11-25T09:00:10.000Z", "block"),
            ("Mapi", "2026-11-25T09:00:50.000Z", "allow"),
            ("Mapi", "2026-11-25T09:03:00.000Z", "report_only"),
            ("WebServices", "2026-11-25T09:02:59.999Z", "block"),
            ("WebServices", "2026-11-25T09:02:00.000Z", "block"),
            ("WebServices", "2026-11-25T09:01:30.000Z", "block"),
        ]);
        assert_eq!(t.bucket_seconds, 60);
        assert_eq!(
            t.buckets,
            [
                "2026-11-25T09:00:00.000Z",
                "2026-11-25T09:01:00.000Z",
                "2026-11-25T09:02:00.000Z",
                "2026-11-25T09:03:00.000Z",
            ]
        );
        let names: Vec<&str> = t.series.iter().map(|s| s.protocol.as_str()).collect();
        assert_eq!(names, ["Mapi", "WebServices"], "ties by name");
        let mapi = &t.series[0];
        assert_eq!(mapi.count, [2, 0, 0, 1]);
        assert_eq!(mapi.blocked, [1, 0, 0, 0]);
        assert_eq!(mapi.allowed, [1, 0, 0, 0]);
        assert_eq!(mapi.report_only, [0, 0, 0, 1]);
        assert_eq!(t.series[1].count, [0, 1, 2, 0]);
        assert_eq!((mapi.total, t.series[1].total), (3, 3));
        assert_eq!(t.first_ts, "2026-11-25T09:00:10.000Z");
        assert_eq!(t.last_ts, "2026-11-25T09:03:00.000Z");
    }

    #[test]
    fn a_log_spanning_days_gets_day_or_six_hour_buckets_aligned_on_utc() {
        // 20 days: 80 six-hour buckets are too many, 20 days are not.
        let t = timeline(&[
            ("Mapi", "2026-11-01T23:59:00.000Z", "block"),
            ("Mapi", "2026-11-02T00:00:00.000Z", "block"),
            ("ActiveSync", "2026-11-20T12:00:00.000+02:00", "allow"),
        ]);
        assert_eq!(t.bucket_seconds, 86_400);
        assert_eq!(t.buckets.len(), 20);
        assert_eq!(t.buckets[0], "2026-11-01T00:00:00.000Z");
        assert_eq!(t.buckets[19], "2026-11-20T00:00:00.000Z");
        assert_eq!(t.series[0].protocol, "Mapi");
        assert_eq!(&t.series[0].count[..3], [1, 1, 0]);
        assert_eq!(t.series[1].count[18..], [0, 1], "10:00 UTC on the 20th");
        // Three days: 72 hours are too many, twelve 6-hour buckets are not.
        let t = timeline(&[
            ("Mapi", "2026-11-01T05:00:00.000Z", "block"),
            ("Mapi", "2026-11-03T19:00:00.000Z", "block"),
        ]);
        assert_eq!(t.bucket_seconds, 21_600);
        assert_eq!(t.buckets.first().unwrap(), "2026-11-01T00:00:00.000Z");
        assert_eq!(t.buckets.last().unwrap(), "2026-11-03T18:00:00.000Z");
        assert_eq!(t.buckets.len(), 12);
    }

    #[test]
    fn widths_grow_through_the_ladder_and_weeks_start_on_monday() {
        let at = |ts: &str| unix_millis(ts).unwrap() / 1000;
        let width = |a: &str, b: &str| bucket_width(at(a), at(b));
        assert_eq!(width("2026-11-25T09:00:00Z", "2026-11-25T09:00:00Z"), 60);
        assert_eq!(width("2026-11-25T09:00:00Z", "2026-11-25T09:47:59Z"), 60);
        assert_eq!(width("2026-11-25T09:00:00Z", "2026-11-25T09:48:00Z"), 300);
        assert_eq!(width("2026-11-25T09:00:00Z", "2026-11-25T20:00:00Z"), 900);
        assert_eq!(width("2026-11-25T00:00:00Z", "2026-11-26T23:59:59Z"), 3_600);
        assert_eq!(width("2026-01-01T00:00:00Z", "2026-06-30T00:00:00Z"), WEEK);
        let years = width("2020-01-01T00:00:00Z", "2026-01-01T00:00:00Z");
        assert_eq!(years % WEEK, 0);
        assert!(years > WEEK);
        // 2026-11-25 is a Wednesday; its week began on Monday the 23rd.
        assert_eq!(
            rfc3339(bucket_start(at("2026-11-25T09:00:00Z"), WEEK)),
            "2026-11-23T00:00:00.000Z"
        );
        // Any span fits: the first and the last representable years.
        let t = timeline(&[
            ("Mapi", "1970-01-01T00:00:00Z", "block"),
            ("Mapi", "9999-12-31T23:59:59Z", "block"),
        ]);
        assert!(t.buckets.len() as u64 <= MAX_BUCKETS);
        assert_eq!(t.series[0].total, 2);
        assert!(t.buckets[0].as_str() < "1970-01-01", "{}", t.buckets[0]);
        let monday = bucket_start(0, t.bucket_seconds).div_euclid(86_400);
        assert_eq!((monday + 3).rem_euclid(7), 0, "1970-01-01 was a Thursday");
    }

    #[test]
    fn undated_attempts_are_counted_apart_and_an_empty_log_has_no_buckets() {
        let t = timeline(&[("Mapi", "t1", "block"), ("Mapi", "", "allow")]);
        assert_eq!(t.undated, 2);
        assert_eq!(t.bucket_seconds, 0);
        assert!(t.buckets.is_empty() && t.series.is_empty());
        assert_eq!(t.first_ts, "");
        assert_eq!(TimelineBuilder::default().finish(), Timeline::default());
    }
}
