//! Byte-bounded rings of captured lines, one per service (plus `kernel`): the newest lines
//! are kept, the oldest dropped once a ring holds more than its byte budget.

use std::collections::{BTreeMap, VecDeque};

use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use super::protocol::LogEntry;

/// Longest line kept; longer lines are cut (a runaway service cannot fill memory with one).
pub const MAX_LINE_BYTES: usize = 4096;

#[derive(Debug)]
struct Stored {
    unix_nanos: i128,
    entry: LogEntry,
}

impl Stored {
    fn cost(&self) -> usize {
        self.entry.message.len()
            + self.entry.service.len()
            + self.entry.stream.len()
            + self.entry.time.len()
            + 48
    }
}

#[derive(Debug, Default)]
struct Ring {
    entries: VecDeque<Stored>,
    bytes: usize,
}

/// All rings. Not synchronized: the supervisor wraps it in a mutex.
#[derive(Debug)]
pub struct LogRings {
    ring_bytes: usize,
    rings: BTreeMap<String, Ring>,
}

impl LogRings {
    /// Rings of at most `ring_bytes` each.
    pub fn new(ring_bytes: usize) -> LogRings {
        LogRings {
            ring_bytes,
            rings: BTreeMap::new(),
        }
    }

    /// Makes sure `service` has a (possibly empty) ring, so a query for it is not an error.
    pub fn ensure(&mut self, service: &str) {
        self.rings.entry(service.to_string()).or_default();
    }

    /// Appends a line, stamped now.
    pub fn push(&mut self, service: &str, stream: &str, message: &str) {
        self.push_at(OffsetDateTime::now_utc(), service, stream, message);
    }

    /// Appends a line stamped `at` (tests use a fixed clock).
    pub fn push_at(&mut self, at: OffsetDateTime, service: &str, stream: &str, message: &str) {
        let mut message = message.trim_end_matches(['\n', '\r']).to_string();
        if message.len() > MAX_LINE_BYTES {
            let mut cut = MAX_LINE_BYTES;
            while !message.is_char_boundary(cut) {
                cut -= 1;
            }
            message.truncate(cut);
            message.push_str(" [cut]");
        }
        let stored = Stored {
            unix_nanos: at.unix_timestamp_nanos(),
            entry: LogEntry {
                time: at.format(&Rfc3339).unwrap_or_default(),
                service: service.to_string(),
                stream: stream.to_string(),
                message,
            },
        };
        let ring = self.rings.entry(service.to_string()).or_default();
        ring.bytes += stored.cost();
        ring.entries.push_back(stored);
        while ring.bytes > self.ring_bytes && ring.entries.len() > 1 {
            if let Some(old) = ring.entries.pop_front() {
                ring.bytes -= old.cost();
            }
        }
    }

    /// The newest `limit` entries of `service` (or of all rings merged by time), oldest first.
    /// `None` when `service` has no ring.
    pub fn query(&self, service: Option<&str>, limit: Option<usize>) -> Option<Vec<LogEntry>> {
        let mut selected: Vec<&Stored> = match service {
            Some(name) => self.rings.get(name)?.entries.iter().collect(),
            None => {
                let mut all: Vec<&Stored> =
                    self.rings.values().flat_map(|r| r.entries.iter()).collect();
                all.sort_by_key(|s| s.unix_nanos);
                all
            }
        };
        if let Some(limit) = limit {
            let skip = selected.len().saturating_sub(limit);
            selected.drain(..skip);
        }
        Some(selected.into_iter().map(|s| s.entry.clone()).collect())
    }

    /// Bytes held by `service`'s ring.
    pub fn bytes(&self, service: &str) -> usize {
        self.rings.get(service).map_or(0, |r| r.bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(seconds: i64) -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp(1_700_000_000 + seconds).unwrap()
    }

    #[test]
    fn rings_are_bounded_in_bytes_and_keep_the_newest() {
        let mut rings = LogRings::new(1000);
        for i in 0..100 {
            rings.push_at(
                at(i),
                "svc",
                "stdout",
                &format!("line {i:03} {}", "x".repeat(40)),
            );
        }
        assert!(rings.bytes("svc") <= 1000, "{}", rings.bytes("svc"));
        let entries = rings.query(Some("svc"), None).unwrap();
        assert!(
            entries.len() < 100 && entries.len() > 5,
            "{}",
            entries.len()
        );
        assert!(entries.last().unwrap().message.starts_with("line 099"));
        assert_eq!(
            entries[0].time,
            at(100 - entries.len() as i64).format(&Rfc3339).unwrap()
        );
    }

    #[test]
    fn all_services_merge_by_time_and_limit_takes_the_newest() {
        let mut rings = LogRings::new(1 << 20);
        rings.push_at(at(1), "a", "stdout", "a1");
        rings.push_at(at(2), "b", "stderr", "b2");
        rings.push_at(at(3), "a", "supervisor", "a3");
        rings.push_at(at(4), "b", "stdout", "b4");
        let messages = |entries: Vec<LogEntry>| -> Vec<String> {
            entries.into_iter().map(|e| e.message).collect()
        };
        assert_eq!(
            messages(rings.query(None, None).unwrap()),
            ["a1", "b2", "a3", "b4"]
        );
        assert_eq!(messages(rings.query(None, Some(2)).unwrap()), ["a3", "b4"]);
        assert_eq!(messages(rings.query(Some("a"), Some(1)).unwrap()), ["a3"]);
        assert!(rings.query(Some("nope"), None).is_none());
        rings.ensure("empty");
        assert_eq!(rings.query(Some("empty"), None).unwrap(), []);
    }

    #[test]
    fn long_lines_are_cut_and_newlines_trimmed() {
        let mut rings = LogRings::new(1 << 20);
        rings.push("svc", "stdout", &"é".repeat(MAX_LINE_BYTES));
        rings.push("svc", "stdout", "short\r\n");
        let entries = rings.query(Some("svc"), None).unwrap();
        assert!(entries[0].message.ends_with(" [cut]"));
        assert!(entries[0].message.len() <= MAX_LINE_BYTES + 6);
        assert_eq!(entries[1].message, "short");
    }
}
