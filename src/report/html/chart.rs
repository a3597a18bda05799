//! The timeline as an inline SVG line chart for `exgate report --format html`: one line
//! per protocol over the buckets, each with its own colour, dash pattern and marker
//! shape and a legend naming it, so that it reads without colour too. Pure: a string
//! from a [`Timeline`]; no script, no external asset.

use std::fmt::Write as _;

use super::Esc;
use crate::report::{Series, Timeline};

/// The series' colours, each at least 4.5:1 against the white background (WCAG AA
/// for text, more than the 3:1 graphics need); after seven they repeat with another
/// dash and marker.
pub(super) const COLOURS: [&str; 7] = [
    "#0b5cad", "#b34000", "#1a7a3a", "#7b2d8e", "#a1123f", "#00707a", "#6b5200",
];
/// SVG `stroke-dasharray` per series (`none`: solid).
const DASHES: [&str; 4] = ["none", "8 4", "2 3", "10 3 2 3"];
/// Marker shapes per series.
#[derive(Clone, Copy)]
enum Shape {
    Circle,
    Square,
    Triangle,
    Diamond,
}
const SHAPES: [Shape; 4] = [
    Shape::Circle,
    Shape::Square,
    Shape::Triangle,
    Shape::Diamond,
];

/// The chart's width in SVG user units (it scales to the page's width).
const WIDTH: f64 = 960.0;
/// The plot area: left and top margins, its width and height (user units).
const LEFT: f64 = 64.0;
const TOP: f64 = 16.0;
const PLOT_WIDTH: f64 = WIDTH - LEFT - 24.0;
const PLOT_HEIGHT: f64 = 240.0;
/// Legend entries per row, and a row's height (user units).
const LEGEND_COLUMNS: usize = 3;
const LEGEND_ROW: f64 = 22.0;
/// Protocol names longer than this are cut in the legend (the full name is its
/// tooltip and is in the table).
const LEGEND_CHARS: usize = 26;
/// At most this many labels on the time axis.
const X_LABELS: usize = 8;

/// The style of series `i`: colour, dash and marker.
fn style(i: usize) -> (&'static str, &'static str, Shape) {
    (
        COLOURS[i % COLOURS.len()],
        // Dash and marker together tell 16 series apart without colour.
        DASHES[i % DASHES.len()],
        SHAPES[(i + i / DASHES.len()) % SHAPES.len()],
    )
}

/// A bucket width in words: `1 minute`, `15 minutes`, `6 hours`, `1 day`, `2 weeks`.
pub(super) fn width_words(seconds: u64) -> String {
    let (n, unit) = match seconds {
        s if s > 0 && s % 604_800 == 0 => (s / 604_800, "week"),
        s if s > 0 && s % 86_400 == 0 => (s / 86_400, "day"),
        s if s > 0 && s % 3_600 == 0 => (s / 3_600, "hour"),
        s if s > 0 && s % 60 == 0 => (s / 60, "minute"),
        s => (s, "second"),
    };
    format!("{n} {unit}{}", if n == 1 { "" } else { "s" })
}

/// A bucket width after "per": `minute`, `15 minutes`, `day`; `time bucket` when
/// there are no buckets (0).
pub(super) fn per_width(seconds: u64) -> String {
    if seconds == 0 {
        return "time bucket".to_owned();
    }
    let words = width_words(seconds);
    match words.strip_prefix("1 ") {
        Some(unit) => unit.to_owned(),
        None => words,
    }
}

/// Attempts of series `s` in bucket `i` (0 past the end of a short vector: a report
/// read back from JSON is not trusted to be well formed).
fn at(v: &[u64], i: usize) -> u64 {
    v.get(i).copied().unwrap_or(0)
}

/// A tick step of 1, 2 or 5 × 10ⁿ giving at most five steps up to `max`.
fn tick_step(max: u64) -> u64 {
    let target = max.div_ceil(5).max(1);
    let mut magnitude = 1u64;
    while magnitude <= target / 10 {
        magnitude *= 10;
    }
    [1, 2, 5, 10]
        .into_iter()
        .map(|m| m * magnitude)
        .find(|&step| step >= target)
        .unwrap_or(target)
}

/// A bucket's start as an axis label: `11-25 09:00` for buckets under a day,
/// `2026-11-25` for days and weeks (the full times are in the table).
fn x_label(bucket: &str, seconds: u64) -> String {
    let label = match seconds < 86_400 {
        true => bucket
            .get(5..10)
            .zip(bucket.get(11..16))
            .map(|(day, time)| format!("{day} {time}")),
        false => bucket.get(..10).map(str::to_owned),
    };
    label.unwrap_or_else(|| bucket.to_owned())
}

/// The chart of `t`, or None when it has no dated attempt. `t` must have buckets.
pub(super) fn svg(t: &Timeline) -> Option<String> {
    let n = t.buckets.len();
    if n == 0 || t.series.is_empty() {
        return None;
    }
    let max = t
        .series
        .iter()
        .flat_map(|s| (0..n).map(|i| at(&s.count, i)))
        .max()
        .unwrap_or(0);
    let step = tick_step(max);
    let top = step * max.div_ceil(step).max(1);
    let x = |i: usize| LEFT + PLOT_WIDTH * (i as f64 + 0.5) / n as f64;
    let y = |v: u64| TOP + PLOT_HEIGHT - PLOT_HEIGHT * v as f64 / top as f64;
    let legend_rows = t.series.len().div_ceil(LEGEND_COLUMNS);
    let legend_top = TOP + PLOT_HEIGHT + 56.0;
    let height = legend_top + legend_rows as f64 * LEGEND_ROW + 8.0;
    let width = width_words(t.bucket_seconds);
    let per = per_width(t.bucket_seconds);
    let first = t.buckets.first().map_or("", String::as_str);
    let last = t.buckets.last().map_or("", String::as_str);

    let mut out = String::new();
    let _ = writeln!(
        out,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" role=\"img\" aria-labelledby=\"chart-title chart-desc\" viewBox=\"0 0 {WIDTH} {height}\" width=\"100%\">"
    );
    let _ = writeln!(
        out,
        "<title id=\"chart-title\">Legacy authentication attempts per protocol, per {per}</title>"
    );
    let _ = writeln!(
        out,
        "<desc id=\"chart-desc\">One line per protocol ({}) over {n} buckets of {width} from {} to {} (UTC); the most attempts in one bucket: {max}. The same numbers are in the table below the chart.</desc>",
        Esc(&protocol_list(&t.series)),
        Esc(first),
        Esc(last),
    );
    // Horizontal grid lines with the counts.
    for k in 0..=top / step {
        let v = k * step;
        let _ = writeln!(
            out,
            "<line class=\"grid\" x1=\"{LEFT}\" x2=\"{:.1}\" y1=\"{y:.1}\" y2=\"{y:.1}\"/><text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">{v}</text>",
            LEFT + PLOT_WIDTH,
            LEFT - 8.0,
            y(v) + 4.0,
            y = y(v),
        );
    }
    let _ = writeln!(
        out,
        "<text x=\"16\" y=\"{:.1}\" text-anchor=\"middle\" transform=\"rotate(-90 16 {:.1})\">attempts per {per}</text>",
        TOP + PLOT_HEIGHT / 2.0,
        TOP + PLOT_HEIGHT / 2.0
    );
    // The time axis: a tick per bucket, a label on every `every`-th.
    let bottom = TOP + PLOT_HEIGHT;
    let _ = writeln!(
        out,
        "<line class=\"axis\" x1=\"{LEFT}\" x2=\"{:.1}\" y1=\"{bottom}\" y2=\"{bottom}\"/>",
        LEFT + PLOT_WIDTH
    );
    let every = n.div_ceil(X_LABELS);
    for (i, bucket) in t.buckets.iter().enumerate() {
        let _ = write!(
            out,
            "<line class=\"axis\" x1=\"{x:.1}\" x2=\"{x:.1}\" y1=\"{bottom}\" y2=\"{:.1}\"/>",
            bottom + 4.0,
            x = x(i)
        );
        if i % every == 0 {
            let _ = write!(
                out,
                "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{}</text>",
                x(i),
                bottom + 18.0,
                Esc(&x_label(bucket, t.bucket_seconds))
            );
        }
        out.push('\n');
    }
    let _ = writeln!(
        out,
        "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">bucket start (UTC), each bucket {width}</text>",
        LEFT + PLOT_WIDTH / 2.0,
        bottom + 40.0
    );
    // The lines, then their markers, each marker with a tooltip of its numbers.
    for (s_i, s) in t.series.iter().enumerate() {
        let (colour, dash, shape) = style(s_i);
        let points: Vec<String> = (0..n)
            .map(|i| format!("{:.1},{:.1}", x(i), y(at(&s.count, i))))
            .collect();
        let _ = writeln!(
            out,
            "<polyline fill=\"none\" stroke=\"{colour}\" stroke-width=\"2\" stroke-dasharray=\"{dash}\" points=\"{}\"/>",
            points.join(" ")
        );
        for i in 0..n {
            let title = format!(
                "{}, {}: {} attempts ({} blocked, {} allowed, {} report-only)",
                s.protocol,
                t.buckets[i],
                at(&s.count, i),
                at(&s.blocked, i),
                at(&s.allowed, i),
                at(&s.report_only, i)
            );
            marker(&mut out, shape, colour, x(i), y(at(&s.count, i)), &title);
        }
    }
    // The legend: a sample of each line with its marker, the protocol and its total.
    for (s_i, s) in t.series.iter().enumerate() {
        let (colour, dash, shape) = style(s_i);
        let lx = LEFT + (s_i % LEGEND_COLUMNS) as f64 * (PLOT_WIDTH / LEGEND_COLUMNS as f64);
        let ly = legend_top + (s_i / LEGEND_COLUMNS) as f64 * LEGEND_ROW;
        let mut name: String = s.protocol.chars().take(LEGEND_CHARS).collect();
        if name.len() < s.protocol.len() {
            name.push('…');
        }
        let _ = write!(
            out,
            "<g><title>{}: {} attempts</title><line x1=\"{lx:.1}\" x2=\"{:.1}\" y1=\"{ly:.1}\" y2=\"{ly:.1}\" stroke=\"{colour}\" stroke-width=\"2\" stroke-dasharray=\"{dash}\"/>",
            Esc(&s.protocol),
            s.total,
            lx + 28.0
        );
        marker(&mut out, shape, colour, lx + 14.0, ly, "");
        let _ = writeln!(
            out,
            "<text x=\"{:.1}\" y=\"{:.1}\">{} ({})</text></g>",
            lx + 36.0,
            ly + 4.0,
            Esc(&name),
            s.total
        );
    }
    out.push_str("</svg>");
    Some(out)
}

/// The protocols in chart order, comma-separated.
fn protocol_list(series: &[Series]) -> String {
    let names: Vec<&str> = series.iter().map(|s| s.protocol.as_str()).collect();
    names.join(", ")
}

/// A marker of `shape` centred on (`x`, `y`), with `title` as its tooltip when not empty.
fn marker(out: &mut String, shape: Shape, colour: &str, x: f64, y: f64, title: &str) {
    let title = match title.is_empty() {
        true => String::new(),
        false => format!("<title>{}</title>", Esc(title)),
    };
    let paint = format!("fill=\"{colour}\" stroke=\"#ffffff\" stroke-width=\"1\"");
    let _ = match shape {
        Shape::Circle => write!(
            out,
            "<circle cx=\"{x:.1}\" cy=\"{y:.1}\" r=\"4\" {paint}>{title}</circle>"
        ),
        Shape::Square => write!(
            out,
            "<rect x=\"{:.1}\" y=\"{:.1}\" width=\"7\" height=\"7\" {paint}>{title}</rect>",
            x - 3.5,
            y - 3.5
        ),
        Shape::Triangle => write!(
            out,
            "<polygon points=\"{x:.1},{:.1} {:.1},{:.1} {:.1},{:.1}\" {paint}>{title}</polygon>",
            y - 5.0,
            x - 4.5,
            y + 3.5,
            x + 4.5,
            y + 3.5
        ),
        Shape::Diamond => write!(
            out,
            "<polygon points=\"{x:.1},{:.1} {:.1},{y:.1} {x:.1},{:.1} {:.1},{y:.1}\" {paint}>{title}</polygon>",
            y - 5.0,
            x + 5.0,
            y + 5.0,
            x - 5.0
        ),
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_are_round_and_widths_are_words() {
        let steps: Vec<u64> = [0, 1, 4, 5, 9, 17, 40, 41, 99, 1_234]
            .into_iter()
            .map(tick_step)
            .collect();
        assert_eq!(steps, [1, 1, 1, 1, 2, 5, 10, 10, 20, 500]);
        let words: Vec<String> = [60, 300, 3_600, 21_600, 86_400, 604_800, 1_209_600, 0]
            .into_iter()
            .map(width_words)
            .collect();
        assert_eq!(
            words,
            [
                "1 minute",
                "5 minutes",
                "1 hour",
                "6 hours",
                "1 day",
                "1 week",
                "2 weeks",
                "0 seconds"
            ]
        );
        assert_eq!(per_width(86_400), "day");
        assert_eq!(per_width(900), "15 minutes");
        assert_eq!(per_width(0), "time bucket");
        assert_eq!(x_label("2026-11-25T09:00:00.000Z", 60), "11-25 09:00");
        assert_eq!(x_label("2026-11-25T00:00:00.000Z", 86_400), "2026-11-25");
        assert_eq!(x_label("ü", 60), "ü", "no panic on a short or odd bucket");
    }

    #[test]
    fn sixteen_series_differ_without_colour() {
        let styles: Vec<(&str, usize)> = (0..16)
            .map(|i| {
                let (_, dash, shape) = style(i);
                (dash, shape as usize)
            })
            .collect();
        for (i, a) in styles.iter().enumerate() {
            for b in &styles[i + 1..] {
                assert_ne!(a, b, "series {i}");
            }
        }
    }
}
