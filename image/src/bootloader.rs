//! The systemd-boot configuration ZTOS writes into the ESP: `loader/loader.conf` and at most
//! one `loader/entries/ztos-<generation>-<slot>[+LEFT[-DONE]].conf` per slot (Boot Loader
//! Specification, type #1 entries, with boot counting), and systemd-boot's own rule for which
//! entry it boots ([`next_boot`]). Pure text in, text out; the image builder and
//! [`crate::slots`] put these files on disk. Why the names look like this: docs/update.md,
//! "Boot assessment and rollback".

use crate::layout::{Slot, SlotLayout, CMDLINE_SLOT};

/// Kernel command line of every ZTOS entry after `ztos.slot=<slot>`: consoles on the first
/// VGA console and the first serial port (the last one named is /dev/console), reboot 10 s
/// after a panic so boot counting can fall back to the other slot, and a quiet boot.
pub const KERNEL_ARGS: &str = "console=tty0 console=ttyS0,115200 panic=10 quiet";

/// `loader/loader.conf`: boot the first ZTOS entry in systemd-boot's order at once
/// (`default ztos-*`, `timeout 0`; holding a key still shows the menu), keep the firmware's
/// console mode, and never let the menu edit the command line (`editor no`: it would bypass
/// the slot's root). It is written once by the image builder and never again: which slot
/// boots is decided by the entries' names alone.
pub fn loader_conf() -> String {
    format!("default {DEFAULT_PATTERN}\ntimeout 0\nconsole-mode keep\neditor no\n")
}

/// The boot entry of `slot` running ZTOS `version`.
pub fn boot_entry(slot: Slot, version: &str) -> String {
    format!(
        "title ZTOS {version} (slot {slot})\nversion {version}\nlinux /{dir}/vmlinuz\ninitrd /{dir}/initramfs\noptions {CMDLINE_SLOT}={slot} {KERNEL_ARGS}\n",
        dir = slot.esp_dir(),
    )
}

/// The fields of a boot entry file that ZTOS writes and reads back.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BootEntry {
    pub title: String,
    pub version: Option<String>,
    pub linux: String,
    pub initrd: Vec<String>,
    pub options: String,
}

impl BootEntry {
    /// Parses `key value` lines; unknown keys are ignored, as systemd-boot does.
    pub fn parse(text: &str) -> BootEntry {
        let mut entry = BootEntry::default();
        for line in text.lines() {
            let line = line.trim();
            let (key, value) = line.split_once(char::is_whitespace).unwrap_or((line, ""));
            let value = value.trim().to_string();
            match key {
                "title" => entry.title = value,
                "version" => entry.version = Some(value),
                "linux" => entry.linux = value,
                "initrd" => entry.initrd.push(value),
                "options" => entry.options = value,
                _ => {}
            }
        }
        entry
    }

    /// The slot the entry's command line names.
    pub fn slot(&self) -> Option<Slot> {
        self.options
            .split_whitespace()
            .find_map(|arg| arg.strip_prefix(CMDLINE_SLOT)?.strip_prefix('='))
            .and_then(Slot::parse)
    }
}

/// The value of `default` in a loader.conf.
pub fn loader_default(loader_conf: &str) -> Option<String> {
    loader_conf.lines().find_map(|line| {
        let (key, value) = line.trim().split_once(char::is_whitespace)?;
        (key == "default").then(|| value.trim().to_string())
    })
}

/// The glob `loader.conf` names as its default: systemd-boot boots the first entry, in its
/// sort order, whose id matches. See [`compare_boot_order`].
pub const DEFAULT_PATTERN: &str = "ztos-*";

/// Where systemd-boot reads the entries, relative to the ESP root.
pub const ENTRIES_DIR: &str = "loader/entries";

/// The boot-counting part of an entry's file name (`+LEFT-DONE`): tries left before the entry
/// is bad, and tries already spent. systemd-boot renames `X+3.conf` to `X+2-1.conf` before
/// booting it, and so on down to `X+0-3.conf`, which is bad.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Tries {
    pub left: u32,
    pub done: u32,
}

/// The name of a ZTOS boot entry file: `ztos-<generation>-<slot>[+LEFT[-DONE]].conf`.
///
/// The generation orders the entries: systemd-boot sorts ids in descending version order, so
/// of the entries that are not bad, the one with the highest generation boots (`default ztos-*`
/// in loader.conf). An update writes the other slot's entry with the next generation and a
/// counter; the factory and blessed entries have no counter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct EntryName {
    pub generation: u64,
    pub slot: Slot,
    pub tries: Option<Tries>,
}

/// Why a file name is not a ZTOS entry name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{name:?} is not a ZTOS boot entry name (ztos-<generation>-<a|b>[+LEFT[-DONE]].conf): {reason}"
)]
pub struct EntryNameError {
    pub name: String,
    pub reason: &'static str,
}

impl EntryName {
    /// An entry without a counter (good, or the factory entry).
    pub fn good(generation: u64, slot: Slot) -> EntryName {
        EntryName {
            generation,
            slot,
            tries: None,
        }
    }

    /// A freshly installed entry with `tries` boots to prove itself.
    pub fn trial(generation: u64, slot: Slot, tries: u32) -> EntryName {
        EntryName {
            generation,
            slot,
            tries: Some(Tries {
                left: tries,
                done: 0,
            }),
        }
    }

    /// Parses a file name in `loader/entries/` (lower case, as ZTOS writes them).
    pub fn parse(file_name: &str) -> Result<EntryName, EntryNameError> {
        let error = |reason| EntryNameError {
            name: file_name.to_string(),
            reason,
        };
        let stem = file_name
            .strip_suffix(".conf")
            .ok_or_else(|| error("it does not end in .conf"))?;
        let rest = stem
            .strip_prefix("ztos-")
            .ok_or_else(|| error("it does not start with ztos-"))?;
        let (generation, rest) = rest
            .split_once('-')
            .ok_or_else(|| error("no -<slot> after the generation"))?;
        let generation = parse_number::<u64>(generation)
            .ok_or_else(|| error("the generation is not a decimal number"))?;
        let (slot, counter) = match rest.split_once('+') {
            Some((slot, counter)) => (slot, Some(counter)),
            None => (rest, None),
        };
        let slot = match slot {
            "a" => Slot::A,
            "b" => Slot::B,
            _ => return Err(error("the slot is not a or b")),
        };
        let tries = match counter {
            None => None,
            Some(counter) => {
                let (left, done) = match counter.split_once('-') {
                    Some((left, done)) => (left, Some(done)),
                    None => (counter, None),
                };
                let left = parse_number::<u32>(left)
                    .ok_or_else(|| error("the tries left are not a decimal number"))?;
                let done = match done {
                    Some(done) => parse_number::<u32>(done)
                        .ok_or_else(|| error("the tries done are not a decimal number"))?,
                    None => 0,
                };
                Some(Tries { left, done })
            }
        };
        Ok(EntryName {
            generation,
            slot,
            tries,
        })
    }

    /// The file name (`ztos-2-b+3.conf`).
    pub fn file_name(&self) -> String {
        let mut name = format!("ztos-{}-{}", self.generation, self.slot);
        if let Some(tries) = self.tries {
            if tries.done == 0 {
                name.push_str(&format!("+{}", tries.left));
            } else {
                name.push_str(&format!("+{}-{}", tries.left, tries.done));
            }
        }
        name.push_str(".conf");
        name
    }

    /// No tries left: systemd-boot sorts it after every other entry.
    pub fn is_bad(&self) -> bool {
        matches!(self.tries, Some(Tries { left: 0, .. }))
    }

    /// The same entry without its counter (what blessing renames it to).
    pub fn blessed(&self) -> EntryName {
        EntryName {
            tries: None,
            ..*self
        }
    }

    /// The name systemd-boot renames the entry to before booting it (its counter spent by
    /// one); entries without a counter keep their name.
    pub fn after_boot_attempt(&self) -> EntryName {
        EntryName {
            tries: self.tries.map(|t| Tries {
                left: t.left.saturating_sub(1),
                done: t.done.saturating_add(1),
            }),
            ..*self
        }
    }
}

impl std::fmt::Display for EntryName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.file_name())
    }
}

/// Decimal digits only (no sign, no spaces), within range.
fn parse_number<T: std::str::FromStr>(text: &str) -> Option<T> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

/// systemd-boot's order of type #1 entries without `sort-key` (systemd 252,
/// `src/boot/efi/boot.c`, `config_entry_compare`): entries with no tries left last; then by id
/// (the file name, lower case, counter and `.conf` included) in descending
/// [`strverscmp_improved`] order; for equal ids, more tries left first, then fewer done.
pub fn compare_boot_order(a: &EntryName, b: &EntryName) -> std::cmp::Ordering {
    a.is_bad()
        .cmp(&b.is_bad())
        .then_with(|| strverscmp_improved(&b.file_name(), &a.file_name()))
        .then_with(|| match (a.tries, b.tries) {
            (Some(a), Some(b)) => b.left.cmp(&a.left).then(a.done.cmp(&b.done)),
            _ => std::cmp::Ordering::Equal,
        })
}

/// The entry systemd-boot boots next with `default ztos-*`: the first in
/// [`compare_boot_order`] that matches the pattern (every ZTOS entry does). A bad entry is
/// booted only when nothing else is left. `None` when there are no entries.
pub fn next_boot(entries: &[EntryName]) -> Option<EntryName> {
    entries.iter().copied().min_by(compare_boot_order)
}

/// systemd's version comparison (`strverscmp_improved`, src/fundamental/string-util-fundamental.c),
/// which systemd-boot sorts entry ids with: strings split into numeric and alphabetic segments,
/// numbers compared by value (`10` after `9`), `~` before anything, `-` before `^` before `.`,
/// characters other than letters, digits and `~-^.` are separators.
pub fn strverscmp_improved(a: &str, b: &str) -> std::cmp::Ordering {
    use std::cmp::Ordering;
    let valid = |c: u8| c.is_ascii_alphanumeric() || matches!(c, b'~' | b'-' | b'^' | b'.');
    let (a, b) = (a.as_bytes(), b.as_bytes());
    if a.is_empty() || b.is_empty() {
        return a.cmp(b);
    }
    let (mut i, mut j) = (0usize, 0usize);
    let at = |s: &[u8], k: usize| s.get(k).copied().unwrap_or(0);
    loop {
        while i < a.len() && !valid(a[i]) {
            i += 1;
        }
        while j < b.len() && !valid(b[j]) {
            j += 1;
        }
        for prefix in [b'~'] {
            if at(a, i) == prefix || at(b, j) == prefix {
                // The string with the '~' is older.
                let r = (at(a, i) != prefix).cmp(&(at(b, j) != prefix));
                if r != Ordering::Equal {
                    return r;
                }
                i += 1;
                j += 1;
            }
        }
        if i >= a.len() || j >= b.len() {
            return a[i.min(a.len())..].cmp(&b[j.min(b.len())..]);
        }
        for prefix in [b'-', b'^', b'.'] {
            if at(a, i) == prefix || at(b, j) == prefix {
                let r = (at(a, i) != prefix).cmp(&(at(b, j) != prefix));
                if r != Ordering::Equal {
                    return r;
                }
                i += 1;
                j += 1;
            }
        }
        let (ei, ej);
        if at(a, i).is_ascii_digit() || at(b, j).is_ascii_digit() {
            while at(a, i) == b'0' {
                i += 1;
            }
            while at(b, j) == b'0' {
                j += 1;
            }
            let mut x = i;
            while at(a, x).is_ascii_digit() {
                x += 1;
            }
            let mut y = j;
            while at(b, y).is_ascii_digit() {
                y += 1;
            }
            let r = (x - i).cmp(&(y - j)).then_with(|| a[i..x].cmp(&b[j..y]));
            if r != Ordering::Equal {
                return r;
            }
            (ei, ej) = (x, y);
        } else {
            let mut x = i;
            while at(a, x).is_ascii_alphabetic() {
                x += 1;
            }
            let mut y = j;
            while at(b, y).is_ascii_alphabetic() {
                y += 1;
            }
            let common = (x - i).min(y - j);
            let r = a[i..i + common]
                .cmp(&b[j..j + common])
                .then((x - i).cmp(&(y - j)));
            if r != Ordering::Equal {
                return r;
            }
            (ei, ej) = (x, y);
        }
        i = ei;
        j = ej;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slot_a_entry_is_exactly_what_systemd_boot_reads() {
        assert_eq!(
            boot_entry(Slot::A, "0.1.0"),
            "title ZTOS 0.1.0 (slot a)\nversion 0.1.0\nlinux /ztos-a/vmlinuz\ninitrd /ztos-a/initramfs\n\
             options ztos.slot=a console=tty0 console=ttyS0,115200 panic=10 quiet\n"
        );
        assert_eq!(
            loader_conf(),
            "default ztos-*\ntimeout 0\nconsole-mode keep\neditor no\n"
        );
    }

    #[test]
    fn entries_and_loader_conf_parse_back() {
        let entry = BootEntry::parse(&boot_entry(Slot::B, "1.2.3"));
        assert_eq!(entry.title, "ZTOS 1.2.3 (slot b)");
        assert_eq!(entry.version.as_deref(), Some("1.2.3"));
        assert_eq!(entry.linux, "/ztos-b/vmlinuz");
        assert_eq!(entry.initrd, ["/ztos-b/initramfs"]);
        assert_eq!(entry.slot(), Some(Slot::B));
        assert_eq!(loader_default(&loader_conf()).as_deref(), Some("ztos-*"));
        assert_eq!(BootEntry::parse("options quiet").slot(), None);
    }

    fn name(text: &str) -> EntryName {
        EntryName::parse(text).unwrap()
    }

    #[test]
    fn entry_names_parse_and_format_back() {
        for (text, expected) in [
            ("ztos-1-a.conf", EntryName::good(1, Slot::A)),
            ("ztos-2-b+3.conf", EntryName::trial(2, Slot::B, 3)),
            (
                "ztos-2-b+2-1.conf",
                EntryName {
                    generation: 2,
                    slot: Slot::B,
                    tries: Some(Tries { left: 2, done: 1 }),
                },
            ),
            (
                "ztos-18446744073709551615-a+0-3.conf",
                EntryName {
                    generation: u64::MAX,
                    slot: Slot::A,
                    tries: Some(Tries { left: 0, done: 3 }),
                },
            ),
        ] {
            assert_eq!(name(text), expected, "{text}");
            assert_eq!(expected.file_name(), text);
        }
        // "-0" is what systemd-boot means by no "-DONE"; ZTOS writes the short form.
        assert_eq!(name("ztos-3-a+4-0.conf").file_name(), "ztos-3-a+4.conf");
        assert!(name("ztos-2-b+0-3.conf").is_bad());
        assert!(!name("ztos-2-b+1-2.conf").is_bad());
        assert!(!name("ztos-2-b.conf").is_bad());
        assert_eq!(name("ztos-2-b+1-2.conf").blessed(), name("ztos-2-b.conf"));
    }

    #[test]
    fn bad_entry_names_say_what_is_wrong() {
        for (text, reason) in [
            ("ztos-1-a", "does not end in .conf"),
            ("other-1-a.conf", "does not start with ztos-"),
            ("ztos-a.conf", "no -<slot>"),
            ("ztos-x-a.conf", "generation is not a decimal"),
            ("ztos--1-a.conf", "generation is not a decimal"),
            ("ztos-1-c.conf", "slot is not a or b"),
            ("ztos-1-A.conf", "slot is not a or b"),
            ("ztos-1-a+.conf", "tries left are not"),
            ("ztos-1-a+3-.conf", "tries done are not"),
            ("ztos-1-a+3-1-1.conf", "tries done are not"),
            ("ztos-1-a+99999999999.conf", "tries left are not"),
            ("ztos-99999999999999999999-a.conf", "generation is not"),
        ] {
            let err = EntryName::parse(text).unwrap_err().to_string();
            assert!(err.contains(reason), "{text}: {err}");
            assert!(err.contains(&format!("{text:?}")), "{err}");
        }
    }

    #[test]
    fn boot_attempts_count_down_like_systemd_boot() {
        // boot.c: foobar+3 -> foobar+2-1 -> foobar+1-2 -> foobar+0-3 -> STOP.
        let mut entry = name("ztos-2-b+3.conf");
        let mut seen = Vec::new();
        for _ in 0..4 {
            entry = entry.after_boot_attempt();
            seen.push(entry.file_name());
        }
        assert_eq!(
            seen,
            [
                "ztos-2-b+2-1.conf",
                "ztos-2-b+1-2.conf",
                "ztos-2-b+0-3.conf",
                "ztos-2-b+0-4.conf"
            ]
        );
        assert_eq!(
            name("ztos-1-a.conf").after_boot_attempt(),
            name("ztos-1-a.conf")
        );
    }

    #[test]
    fn strverscmp_improved_matches_systemds_documented_order() {
        // The order listed in systemd's string-util-fundamental.c, oldest first.
        let order = [
            "122.1",
            "123~rc1-1",
            "123",
            "123-a",
            "123-a.1",
            "123-1",
            "123-1.1",
            "123^post1",
            "123.a-1",
            "123.1-1",
            "123a-1",
            "124-1",
        ];
        for (i, a) in order.iter().enumerate() {
            for (j, b) in order.iter().enumerate() {
                assert_eq!(strverscmp_improved(a, b), i.cmp(&j), "{a} vs {b}");
            }
        }
        use std::cmp::Ordering::*;
        assert_eq!(
            strverscmp_improved("ztos-10-a.conf", "ztos-9-b.conf"),
            Greater
        );
        assert_eq!(
            strverscmp_improved("ztos-010-a.conf", "ztos-10-a.conf"),
            Equal
        );
        assert_eq!(strverscmp_improved("", "a"), Less);
        // The counter is a separator and a number, and a number beats the "." of ".conf".
        assert_eq!(
            strverscmp_improved("ztos-2-b+3.conf", "ztos-2-b.conf"),
            Greater
        );
    }

    fn order(names: &[&str]) -> Vec<String> {
        let mut entries: Vec<EntryName> = names.iter().map(|n| name(n)).collect();
        entries.sort_by(compare_boot_order);
        entries.iter().map(EntryName::file_name).collect()
    }

    #[test]
    fn boot_order_is_systemd_boots() {
        // A trial entry of a newer generation beats the good one.
        assert_eq!(
            order(&["ztos-1-a.conf", "ztos-2-b+3.conf"]),
            ["ztos-2-b+3.conf", "ztos-1-a.conf"]
        );
        // ... while it has tries left,
        assert_eq!(
            order(&["ztos-1-a.conf", "ztos-2-b+1-2.conf"]),
            ["ztos-2-b+1-2.conf", "ztos-1-a.conf"]
        );
        // and sorts last once it has none.
        assert_eq!(
            order(&["ztos-2-b+0-3.conf", "ztos-1-a.conf"]),
            ["ztos-1-a.conf", "ztos-2-b+0-3.conf"]
        );
        // Generations compare as numbers, not text.
        assert_eq!(
            order(&["ztos-9-b.conf", "ztos-10-a.conf"]),
            ["ztos-10-a.conf", "ztos-9-b.conf"]
        );
        assert_eq!(
            order(&["ztos-99-a.conf", "ztos-100-b+3.conf"]),
            ["ztos-100-b+3.conf", "ztos-99-a.conf"]
        );
        // Two bad entries: still by generation among themselves.
        assert_eq!(
            order(&["ztos-3-a+0-3.conf", "ztos-4-b+0-2.conf"]),
            ["ztos-4-b+0-2.conf", "ztos-3-a+0-3.conf"]
        );
    }

    #[test]
    fn next_boot_is_the_first_in_order() {
        let entries = [name("ztos-1-a.conf"), name("ztos-2-b+2-1.conf")];
        assert_eq!(next_boot(&entries), Some(name("ztos-2-b+2-1.conf")));
        let entries = [name("ztos-1-a.conf"), name("ztos-2-b+0-3.conf")];
        assert_eq!(next_boot(&entries), Some(name("ztos-1-a.conf")));
        // Only a bad entry left: systemd-boot boots it anyway.
        let entries = [name("ztos-2-b+0-3.conf")];
        assert_eq!(next_boot(&entries), Some(name("ztos-2-b+0-3.conf")));
        assert_eq!(next_boot(&[]), None);
    }
}
