//! The Prometheus text exposition format (version 0.0.4), written in one place for every
//! `/metrics` producer: ztosd's own counters, the API's request metrics and the plugins'
//! [`Metric`](crate::protocol::Metric)s. [`PromText`] writes `# HELP` and `# TYPE` once per
//! family and escapes with [`escape`], so no caller formats the format by hand.
//!
//! ```
//! use ztos_plugin::prom_text::{PromText, PromType};
//!
//! let mut out = String::new();
//! let mut text = PromText::new(&mut out);
//! text.family("ztos_commits_total", PromType::Counter, "Commits by result.")
//!     .sample(&[("result", "ok")], 3u64);
//! assert_eq!(
//!     out,
//!     concat!(
//!         "# HELP ztos_commits_total Commits by result.\n",
//!         "# TYPE ztos_commits_total counter\n",
//!         "ztos_commits_total{result=\"ok\"} 3\n",
//!     )
//! );
//! ```

use std::collections::BTreeSet;
use std::fmt::Write as _;

use crate::protocol::MetricKind;

/// A family's type, as `# TYPE` names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PromType {
    Counter,
    Gauge,
    /// Samples `NAME_bucket{le=...}`, `NAME_sum` and `NAME_count`, written with
    /// [`Family::sample_suffixed`].
    Histogram,
}

impl PromType {
    pub fn as_str(self) -> &'static str {
        match self {
            PromType::Counter => "counter",
            PromType::Gauge => "gauge",
            PromType::Histogram => "histogram",
        }
    }
}

impl From<MetricKind> for PromType {
    fn from(kind: MetricKind) -> PromType {
        match kind {
            MetricKind::Counter => PromType::Counter,
            MetricKind::Gauge => PromType::Gauge,
        }
    }
}

/// What [`escape`] escapes for: the format escapes `\` and newline in help text, and also `"`
/// in label values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Escape {
    Help,
    LabelValue,
}

/// Escapes `text` for the exposition format: `\` as `\\`, newline as `\n`, and in label values
/// `"` as `\"`.
pub fn escape(text: &str, context: Escape) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '"' if context == Escape::LabelValue => out.push_str("\\\""),
            c => out.push(c),
        }
    }
    out
}

/// A sample's value as the format writes it: integers as they are, floats as Rust's shortest
/// round-trip form with `NaN`, `+Inf` and `-Inf` spelled as the format wants them.
pub trait SampleValue {
    fn write_to(&self, out: &mut String);
}

impl SampleValue for u64 {
    fn write_to(&self, out: &mut String) {
        let _ = write!(out, "{self}");
    }
}

impl SampleValue for u8 {
    fn write_to(&self, out: &mut String) {
        let _ = write!(out, "{self}");
    }
}

impl SampleValue for f64 {
    fn write_to(&self, out: &mut String) {
        if self.is_nan() {
            out.push_str("NaN");
        } else if self.is_infinite() {
            out.push_str(if *self > 0.0 { "+Inf" } else { "-Inf" });
        } else {
            let _ = write!(out, "{self}");
        }
    }
}

/// Writes families of samples into a string.
#[derive(Debug)]
pub struct PromText<'a> {
    out: &'a mut String,
    /// The families whose `# HELP` and `# TYPE` are written.
    started: BTreeSet<String>,
}

impl<'a> PromText<'a> {
    /// A writer appending to `out`.
    pub fn new(out: &'a mut String) -> PromText<'a> {
        PromText {
            out,
            started: BTreeSet::new(),
        }
    }

    /// The family `name`: writes its `# HELP` and `# TYPE` lines unless this writer already
    /// did, then takes its samples. The samples of one family must follow each other (the
    /// format requires it), so call this once per family with all of them.
    pub fn family<'w>(&'w mut self, name: &'w str, kind: PromType, help: &str) -> Family<'w> {
        if self.started.insert(name.to_string()) {
            let _ = writeln!(self.out, "# HELP {name} {}", escape(help, Escape::Help));
            let _ = writeln!(self.out, "# TYPE {name} {}", kind.as_str());
        }
        Family {
            out: self.out,
            name,
        }
    }
}

/// The samples of one family; see [`PromText::family`].
#[derive(Debug)]
pub struct Family<'w> {
    out: &'w mut String,
    name: &'w str,
}

impl Family<'_> {
    /// One sample `NAME{labels} value` (`NAME value` without labels). Label names are written
    /// as given (callers use fixed names or check them); values are escaped.
    pub fn sample(&mut self, labels: &[(&str, &str)], value: impl SampleValue) -> &mut Self {
        self.sample_suffixed("", labels, value)
    }

    /// One sample of a histogram's series: `NAME_bucket`, `NAME_sum` or `NAME_count` for the
    /// suffixes `_bucket`, `_sum` and `_count`.
    pub fn sample_suffixed(
        &mut self,
        suffix: &str,
        labels: &[(&str, &str)],
        value: impl SampleValue,
    ) -> &mut Self {
        self.out.push_str(self.name);
        self.out.push_str(suffix);
        if !labels.is_empty() {
            self.out.push('{');
            for (i, (key, value)) in labels.iter().enumerate() {
                if i > 0 {
                    self.out.push(',');
                }
                let _ = write!(self.out, "{key}=\"{}\"", escape(value, Escape::LabelValue));
            }
            self.out.push('}');
        }
        self.out.push(' ');
        value.write_to(self.out);
        self.out.push('\n');
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping_follows_the_exposition_format() {
        let text = "a\"b\\c\nd";
        assert_eq!(escape(text, Escape::LabelValue), "a\\\"b\\\\c\\nd");
        // Help text keeps its quotes.
        assert_eq!(escape(text, Escape::Help), "a\"b\\\\c\\nd");
        assert_eq!(escape("plain", Escape::LabelValue), "plain");
    }

    #[test]
    fn families_samples_and_values() {
        let mut out = String::new();
        let mut text = PromText::new(&mut out);
        text.family("up", PromType::Gauge, "Whether it is up.\nOr not.")
            .sample(&[], 1u8);
        text.family("ztos_x_total", PromType::Counter, "X.")
            .sample(&[("plugin", "p"), ("peer", "a\"b")], 5.0)
            .sample(&[("plugin", "q")], 7.5);
        // The same family again adds samples without a second HELP and TYPE.
        text.family("ztos_x_total", PromType::Counter, "X.")
            .sample(&[("plugin", "r")], f64::NAN)
            .sample(&[("plugin", "s")], f64::INFINITY)
            .sample(&[("plugin", "t")], f64::NEG_INFINITY);
        text.family("lat_seconds", PromType::Histogram, "Latency.")
            .sample_suffixed("_bucket", &[("le", "0.5")], 2u64)
            .sample_suffixed("_bucket", &[("le", "+Inf")], 3u64)
            .sample_suffixed("_sum", &[], 0.25)
            .sample_suffixed("_count", &[], 3u64);
        assert_eq!(
            out,
            concat!(
                "# HELP up Whether it is up.\\nOr not.\n",
                "# TYPE up gauge\n",
                "up 1\n",
                "# HELP ztos_x_total X.\n",
                "# TYPE ztos_x_total counter\n",
                "ztos_x_total{plugin=\"p\",peer=\"a\\\"b\"} 5\n",
                "ztos_x_total{plugin=\"q\"} 7.5\n",
                "ztos_x_total{plugin=\"r\"} NaN\n",
                "ztos_x_total{plugin=\"s\"} +Inf\n",
                "ztos_x_total{plugin=\"t\"} -Inf\n",
                "# HELP lat_seconds Latency.\n",
                "# TYPE lat_seconds histogram\n",
                "lat_seconds_bucket{le=\"0.5\"} 2\n",
                "lat_seconds_bucket{le=\"+Inf\"} 3\n",
                "lat_seconds_sum 0.25\n",
                "lat_seconds_count 3\n",
            )
        );
    }
}
