//! The systemd-boot configuration ZTOS writes into the ESP: `loader/loader.conf` and one
//! `loader/entries/ztos-<slot>.conf` per slot (Boot Loader Specification, type #1 entries).
//! Pure text in, text out; the ESP writer and the updater put these files on disk.

use crate::layout::{Slot, CMDLINE_SLOT};

/// Kernel command line of every ZTOS entry after `ztos.slot=<slot>`: consoles on the first
/// VGA console and the first serial port (the last one named is /dev/console), reboot 10 s
/// after a panic so boot counting can fall back to the other slot, and a quiet boot.
pub const KERNEL_ARGS: &str = "console=tty0 console=ttyS0,115200 panic=10 quiet";

/// `loader/loader.conf`: boot `default_slot` at once (`timeout 0`; holding a key still shows
/// the menu), keep the firmware's console mode, and never let the menu edit the command line
/// (`editor no`: it would bypass the slot's root).
pub fn loader_conf(default_slot: Slot) -> String {
    format!(
        "default {}.conf\ntimeout 0\nconsole-mode keep\neditor no\n",
        default_slot.entry_id()
    )
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
            loader_conf(Slot::A),
            "default ztos-a.conf\ntimeout 0\nconsole-mode keep\neditor no\n"
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
        assert_eq!(
            loader_default(&loader_conf(Slot::B)).as_deref(),
            Some("ztos-b.conf")
        );
        assert_eq!(BootEntry::parse("options quiet").slot(), None);
    }
}
