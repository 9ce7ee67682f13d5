//! When pull mode checks its server: pure functions of the time, the device id, the check
//! interval and the maintenance window, so they are tested with any clock.
//!
//! Every device checks once per interval at its own offset, `sha256(device id) mod interval`
//! seconds after each multiple of the interval since the epoch: a fleet with the same
//! interval spreads its checks evenly over it, and a device keeps its slot across restarts.
//! With a maintenance window, a check that would fall outside it moves to the window's next
//! opening plus the device's offset within the window's length.

use sha2::{Digest, Sha256};

use crate::config::MaintenanceWindow;

const DAY_SECS: u64 = 24 * 60 * 60;

/// The device's offset in `0..modulus` seconds, from its id.
pub fn spread_offset(device_id: &str, modulus: u64) -> u64 {
    if modulus == 0 {
        return 0;
    }
    let digest = Sha256::digest(device_id.as_bytes());
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    u64::from_be_bytes(first) % modulus
}

/// Whether `unix_secs` (UTC) lies in `window`; no window means always.
pub fn in_window(window: Option<&MaintenanceWindow>, unix_secs: u64) -> bool {
    match window {
        None => true,
        Some(window) => window.contains(((unix_secs % DAY_SECS) / 60) as u32),
    }
}

/// The first time at or after `now` (unix seconds, UTC) at which this device checks.
pub fn next_check(
    now: u64,
    device_id: &str,
    interval_secs: u64,
    window: Option<&MaintenanceWindow>,
) -> u64 {
    let interval = interval_secs.max(1);
    let offset = spread_offset(device_id, interval);
    let base = now - now % interval + offset;
    let candidate = if base >= now { base } else { base + interval };
    match window {
        Some(window) if !in_window(Some(window), candidate) => {
            let start = u64::from(window.start_minute) * 60;
            let day = candidate - candidate % DAY_SECS;
            let opening = if day + start > candidate {
                day + start
            } else {
                day + DAY_SECS + start
            };
            let len = u64::from(window.len_minutes()) * 60;
            opening + spread_offset(device_id, len)
        }
        _ => candidate,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOUR: u64 = 3600;
    /// 2026-01-01T00:00:00Z.
    const JAN_1: u64 = 1_767_225_600;

    fn window(text: &str) -> MaintenanceWindow {
        MaintenanceWindow::parse(text).unwrap()
    }

    #[test]
    fn the_spread_is_deterministic_and_covers_the_interval() {
        assert_eq!(
            spread_offset("device-1", HOUR),
            spread_offset("device-1", HOUR)
        );
        let offsets: Vec<u64> = (0..200)
            .map(|n| spread_offset(&format!("device-{n}"), HOUR))
            .collect();
        assert!(offsets.iter().all(|o| *o < HOUR));
        // 200 devices over an hour: every quarter of it gets some of them.
        for quarter in 0..4 {
            let count = offsets
                .iter()
                .filter(|o| **o / (HOUR / 4) == quarter)
                .count();
            assert!(count > 20, "quarter {quarter}: {count} devices");
        }
    }

    #[test]
    fn checks_happen_once_per_interval_at_the_device_offset() {
        let offset = spread_offset("dev", HOUR);
        let first = next_check(JAN_1, "dev", HOUR, None);
        assert_eq!(first, JAN_1 + offset);
        assert_eq!(next_check(first, "dev", HOUR, None), first);
        assert_eq!(next_check(first + 1, "dev", HOUR, None), first + HOUR);
    }

    #[test]
    fn window_crossing_midnight() {
        let night = window("22:00-04:00");
        assert!(in_window(Some(&night), JAN_1 + 23 * HOUR));
        assert!(in_window(Some(&night), JAN_1 + 2 * HOUR));
        assert!(!in_window(Some(&night), JAN_1 + 4 * HOUR));
        assert!(!in_window(Some(&night), JAN_1 + 12 * HOUR));
        assert!(in_window(None, JAN_1 + 12 * HOUR));

        // At noon the next check moves into tonight's window, at the device's offset in it.
        let noon = JAN_1 + 12 * HOUR;
        let next = next_check(noon, "dev", HOUR, Some(&night));
        assert_eq!(next, JAN_1 + 22 * HOUR + spread_offset("dev", 6 * HOUR));
        assert!(in_window(Some(&night), next));
        // Inside the window, after midnight, checks keep their hourly rhythm.
        let late = JAN_1 + 24 * HOUR + HOUR;
        let next = next_check(late, "dev", HOUR, Some(&night));
        assert_eq!(next, late + spread_offset("dev", HOUR));
    }

    #[test]
    fn a_check_that_misses_a_daytime_window_waits_for_the_next_day() {
        let morning = window("09:00-10:00");
        let evening = JAN_1 + 20 * HOUR;
        let next = next_check(evening, "dev", HOUR, Some(&morning));
        assert_eq!(next, JAN_1 + 33 * HOUR + spread_offset("dev", HOUR));
        assert!(in_window(Some(&morning), next));
    }
}
