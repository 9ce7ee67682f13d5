//! `[system.update]`: the updater's settings. With `server`, pull mode: the box checks an
//! index of bundles on a server now and then, and installs a newer signed bundle within its
//! maintenance window. `root_in_memory_max_mib` bounds the root image received whole before
//! it is written. Pure types: the updater (`crate::update`) does the work.

use std::fmt;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The updater's settings. Without `server` (or without the section) the box is updated only
/// by pushing bundles.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateConfig {
    /// Pull mode: URL of the bundle index (`https://...` or `http://...`), a JSON document
    /// described in docs/update.md.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^https?://"))]
    pub server: Option<String>,
    /// Minutes between two checks (5 to 10080). Each device checks at its own offset within
    /// the interval, derived from its device id, so a fleet does not check at once.
    #[serde(default = "default_check_interval")]
    #[schemars(range(min = 5, max = 10080))]
    pub check_interval_mins: u32,
    /// Only install within this daily window, UTC, as `HH:MM-HH:MM`; may cross midnight
    /// (`22:00-04:00`). Without it, any time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^\d{2}:\d{2}-\d{2}:\d{2}$"))]
    pub window: Option<MaintenanceWindow>,
    /// PEM file with the CA that signs the server's certificate; without it the usual web
    /// roots are not available on the box, so an https server needs it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_cert: Option<String>,
    /// Reboot into the new version as soon as it is written (default). When false, the new
    /// version boots at the next reboot.
    #[serde(default = "default_true")]
    pub auto_reboot: bool,
    /// The largest root image, in MiB, that an update receives whole (and checks) before it
    /// writes the slot, at the disk's speed; a larger one is streamed into the slot as it
    /// arrives. 0: always stream. Without it: a quarter of the memory available when the
    /// update starts, at most 1024 MiB.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(max = 4096))]
    pub root_in_memory_max_mib: Option<u32>,
}

/// The largest `root_in_memory_max_mib` accepted.
pub const MAX_ROOT_IN_MEMORY_MIB: u32 = 4096;

fn default_check_interval() -> u32 {
    60
}

fn default_true() -> bool {
    true
}

/// A daily window in minutes after midnight UTC; `start > end` crosses midnight. Start and
/// end are never equal (that window would be empty or the whole day: leave it out instead).
#[derive(Debug, Clone, Copy, PartialEq, Eq, JsonSchema)]
#[schemars(with = "String")]
pub struct MaintenanceWindow {
    pub start_minute: u32,
    pub end_minute: u32,
}

impl MaintenanceWindow {
    pub fn parse(text: &str) -> Result<MaintenanceWindow, String> {
        let bad = || format!("{text:?} is not a window: expected HH:MM-HH:MM, such as 22:00-04:00");
        let (start, end) = text.split_once('-').ok_or_else(bad)?;
        let minute = |part: &str| -> Result<u32, String> {
            let (h, m) = part.trim().split_once(':').ok_or_else(bad)?;
            let (h, m): (u32, u32) = (h.parse().map_err(|_| bad())?, m.parse().map_err(|_| bad())?);
            if h > 23 || m > 59 {
                return Err(format!("{text:?}: {part} is not a time of day"));
            }
            Ok(h * 60 + m)
        };
        let window = MaintenanceWindow {
            start_minute: minute(start)?,
            end_minute: minute(end)?,
        };
        if window.start_minute == window.end_minute {
            return Err(format!(
                "{text:?}: the window starts where it ends; leave window out to allow any time"
            ));
        }
        Ok(window)
    }

    /// Whether `minute` (after midnight) lies in the window; the end is excluded.
    pub fn contains(&self, minute: u32) -> bool {
        if self.start_minute < self.end_minute {
            (self.start_minute..self.end_minute).contains(&minute)
        } else {
            minute >= self.start_minute || minute < self.end_minute
        }
    }

    /// The window's length in minutes.
    pub fn len_minutes(&self) -> u32 {
        (self.end_minute + 24 * 60 - self.start_minute) % (24 * 60)
    }
}

impl fmt::Display for MaintenanceWindow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:02}:{:02}-{:02}:{:02}",
            self.start_minute / 60,
            self.start_minute % 60,
            self.end_minute / 60,
            self.end_minute % 60
        )
    }
}

impl Serialize for MaintenanceWindow {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for MaintenanceWindow {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        MaintenanceWindow::parse(&text).map_err(serde::de::Error::custom)
    }
}

/// Checks what the types cannot: the server URL's scheme and the ranges. Returns
/// `(key, message)` pairs relative to `system.update`.
pub fn check_update_config(update: &UpdateConfig) -> Vec<(&'static str, String)> {
    let mut problems = Vec::new();
    if let Some(server) = &update.server {
        let rest = server
            .strip_prefix("https://")
            .or_else(|| server.strip_prefix("http://"));
        match rest {
            Some(rest) if !rest.is_empty() && !rest.starts_with('/') => {}
            _ => problems.push((
                "server",
                format!("{server:?} is not an http:// or https:// URL with a host"),
            )),
        }
    }
    if let Some(mib) = update.root_in_memory_max_mib {
        if mib > MAX_ROOT_IN_MEMORY_MIB {
            problems.push((
                "root_in_memory_max_mib",
                format!(
                    "{mib} MiB is more than {MAX_ROOT_IN_MEMORY_MIB} MiB (0 streams every root into the slot)"
                ),
            ));
        }
    }
    if !(5..=10080).contains(&update.check_interval_mins) {
        problems.push((
            "check_interval_mins",
            format!(
                "{} is not a valid check interval (5 to 10080 minutes)",
                update.check_interval_mins
            ),
        ));
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_parse_print_and_contain() {
        let night = MaintenanceWindow::parse("22:00-04:00").unwrap();
        assert_eq!(night.to_string(), "22:00-04:00");
        assert_eq!(night.len_minutes(), 6 * 60);
        assert!(night.contains(22 * 60));
        assert!(night.contains(23 * 60 + 59));
        assert!(night.contains(0));
        assert!(night.contains(3 * 60 + 59));
        assert!(!night.contains(4 * 60));
        assert!(!night.contains(12 * 60));
        let day = MaintenanceWindow::parse("09:30-17:00").unwrap();
        assert_eq!(day.len_minutes(), 450);
        assert!(day.contains(9 * 60 + 30));
        assert!(!day.contains(9 * 60 + 29));
        assert!(!day.contains(17 * 60));
    }

    #[test]
    fn bad_windows_say_what_is_wrong() {
        assert_eq!(
            MaintenanceWindow::parse("22-04").unwrap_err(),
            "\"22-04\" is not a window: expected HH:MM-HH:MM, such as 22:00-04:00"
        );
        assert_eq!(
            MaintenanceWindow::parse("25:00-04:00").unwrap_err(),
            "\"25:00-04:00\": 25:00 is not a time of day"
        );
        assert!(MaintenanceWindow::parse("04:00-04:00")
            .unwrap_err()
            .contains("starts where it ends"));
    }

    #[test]
    fn the_section_deserializes_with_defaults_and_checks_the_server() {
        let update: UpdateConfig = toml::from_str(
            "server = \"https://updates.example/index.json\"\nwindow = \"22:00-04:00\"",
        )
        .unwrap();
        assert_eq!(update.check_interval_mins, 60);
        assert!(update.auto_reboot);
        assert_eq!(update.root_in_memory_max_mib, None);
        assert_eq!(update.window.unwrap().start_minute, 22 * 60);
        assert!(check_update_config(&update).is_empty());
        let bad = UpdateConfig {
            server: Some("ftp://x".into()),
            check_interval_mins: 1,
            root_in_memory_max_mib: Some(4097),
            ..update
        };
        let problems = check_update_config(&bad);
        assert_eq!(problems.len(), 3, "{problems:?}");
        assert_eq!(problems[0].0, "server");
        assert_eq!(problems[1].0, "root_in_memory_max_mib");
        assert_eq!(
            problems[1].1,
            "4097 MiB is more than 4096 MiB (0 streams every root into the slot)"
        );
        assert_eq!(problems[2].0, "check_interval_mins");
    }

    #[test]
    fn the_section_may_hold_only_the_memory_budget() {
        let update: UpdateConfig = toml::from_str("root_in_memory_max_mib = 0").unwrap();
        assert_eq!(update.server, None);
        assert_eq!(update.root_in_memory_max_mib, Some(0));
        assert!(check_update_config(&update).is_empty());
    }
}
