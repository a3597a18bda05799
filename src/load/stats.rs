//! Counting and percentiles for `exgate load`.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::time::Duration;

use serde::Serialize;

use super::Class;

#[derive(Default)]
struct PerClass {
    statuses: BTreeMap<u16, u64>,
    errors: u64,
    micros: Vec<u32>,
}

/// A worker's tallies; merged at the end.
#[derive(Default)]
pub struct Collector {
    classes: HashMap<Class, PerClass>,
}

impl Collector {
    /// Records one unit of work: its latency and final status (None: a transport error).
    pub fn record(&mut self, class: Class, latency: Duration, status: Option<u16>) {
        let c = self.classes.entry(class).or_default();
        c.micros
            .push(u32::try_from(latency.as_micros()).unwrap_or(u32::MAX));
        match status {
            Some(s) => *c.statuses.entry(s).or_default() += 1,
            None => c.errors += 1,
        }
    }

    /// Adds another worker's tallies.
    pub fn merge(&mut self, other: Collector) {
        for (class, o) in other.classes {
            let c = self.classes.entry(class).or_default();
            for (s, n) in o.statuses {
                *c.statuses.entry(s).or_default() += n;
            }
            c.errors += o.errors;
            c.micros.extend(o.micros);
        }
    }

    /// The report, with percentiles over every sample.
    pub fn report(self, elapsed: Duration) -> LoadReport {
        let mut all = Vec::new();
        let mut classes: Vec<ClassReport> = self
            .classes
            .into_iter()
            .map(|(class, mut c)| {
                c.micros.sort_unstable();
                all.extend_from_slice(&c.micros);
                ClassReport {
                    class: class.as_str().into(),
                    count: c.micros.len() as u64,
                    errors: c.errors,
                    statuses: c.statuses,
                    latency_ms: Percentiles::of(&c.micros),
                }
            })
            .collect();
        classes.sort_by(|a, b| a.class.cmp(&b.class));
        all.sort_unstable();
        let total = all.len() as u64;
        let secs = elapsed.as_secs_f64().max(1e-9);
        LoadReport {
            elapsed_seconds: secs,
            total,
            requests_per_second: total as f64 / secs,
            latency_ms: Percentiles::of(&all),
            classes,
        }
    }
}

/// Latency percentiles in milliseconds.
#[derive(Clone, Copy, Debug, Default, Serialize, serde::Deserialize, PartialEq)]
pub struct Percentiles {
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub p999: f64,
}

impl Percentiles {
    fn of(sorted_micros: &[u32]) -> Percentiles {
        let at = |q: f64| {
            if sorted_micros.is_empty() {
                return 0.0;
            }
            let i = ((sorted_micros.len() as f64 * q).ceil() as usize)
                .clamp(1, sorted_micros.len())
                - 1;
            f64::from(sorted_micros[i]) / 1000.0
        };
        Percentiles {
            p50: at(0.5),
            p90: at(0.9),
            p99: at(0.99),
            p999: at(0.999),
        }
    }
}

/// One traffic class's results.
#[derive(Clone, Debug, Serialize, serde::Deserialize, PartialEq)]
pub struct ClassReport {
    pub class: String,
    /// Units of work (an NTLM handshake is one).
    pub count: u64,
    pub errors: u64,
    pub statuses: BTreeMap<u16, u64>,
    pub latency_ms: Percentiles,
}

/// The whole run.
#[derive(Clone, Debug, Serialize, serde::Deserialize, PartialEq)]
pub struct LoadReport {
    pub elapsed_seconds: f64,
    pub total: u64,
    pub requests_per_second: f64,
    pub latency_ms: Percentiles,
    pub classes: Vec<ClassReport>,
}

impl fmt::Display for LoadReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{} units in {:.2} s: {:.0}/s; latency ms p50 {:.3}  p90 {:.3}  p99 {:.3}  p99.9 {:.3}\n",
            self.total,
            self.elapsed_seconds,
            self.requests_per_second,
            self.latency_ms.p50,
            self.latency_ms.p90,
            self.latency_ms.p99,
            self.latency_ms.p999
        )?;
        writeln!(
            f,
            "  {:<14} {:>8} {:>7}  {:>8} {:>8} {:>8} {:>8}  statuses",
            "class", "count", "errors", "p50 ms", "p90 ms", "p99 ms", "p99.9"
        )?;
        for c in &self.classes {
            let statuses: Vec<String> =
                c.statuses.iter().map(|(s, n)| format!("{s}×{n}")).collect();
            writeln!(
                f,
                "  {:<14} {:>8} {:>7}  {:>8.3} {:>8.3} {:>8.3} {:>8.3}  {}",
                c.class,
                c.count,
                c.errors,
                c.latency_ms.p50,
                c.latency_ms.p90,
                c.latency_ms.p99,
                c.latency_ms.p999,
                statuses.join(" ")
            )?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_pick_the_right_samples() {
        let micros: Vec<u32> = (1..=1000).collect();
        let p = Percentiles::of(&micros);
        assert_eq!((p.p50, p.p90, p.p99, p.p999), (0.5, 0.9, 0.99, 0.999));
        assert_eq!(Percentiles::of(&[]).p99, 0.0);
    }

    #[test]
    fn merged_counts_add_up() {
        let mut a = Collector::default();
        let mut b = Collector::default();
        a.record(Class::Basic, Duration::from_micros(100), Some(200));
        b.record(Class::Basic, Duration::from_micros(300), Some(401));
        b.record(Class::Ntlm, Duration::from_micros(300), None);
        a.merge(b);
        let r = a.report(Duration::from_secs(1));
        assert_eq!(r.total, 3);
        let basic = r.classes.iter().find(|c| c.class == "basic").unwrap();
        assert_eq!(basic.statuses.values().sum::<u64>(), 2);
        assert_eq!(
            r.classes.iter().find(|c| c.class == "ntlm").unwrap().errors,
            1
        );
    }
}
