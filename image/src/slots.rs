//! The slots' boot state as systemd-boot sees it, read from and written to a mounted ESP
//! (`esp` is the ESP's root directory; [`crate::esp_mount`] mounts it on the appliance, tests
//! use a temporary directory).
//!
//! Each slot has at most one entry `loader/entries/ztos-<gen>-<slot>[+LEFT[-DONE]].conf`
//! ([`EntryName`]); the entry systemd-boot boots is [`next_boot`]. Every write here is ordered
//! so that a power cut at any point leaves either no entry for the slot or a complete one whose
//! kernel and initramfs are complete: files are written under temporary names (which
//! systemd-boot ignores: they start with `.` and do not end in `.conf`), synced, renamed, and
//! the directory synced; the entry comes last. The reasoning is in docs/update.md, "Boot
//! assessment and rollback".

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::bootloader::{boot_entry, next_boot, BootEntry, EntryName, ENTRIES_DIR};
use crate::layout::{Slot, SlotLayout};

/// The most boot tries an update may give a slot.
pub const MAX_TRIES: u32 = 10;
/// The boot tries an update gives a slot unless told otherwise.
pub const DEFAULT_TRIES: u32 = 3;
/// Prefix of every temporary file this module writes; systemd-boot skips names starting
/// with `.`, and [`read_boot_state`] ignores them.
const TEMP_PREFIX: &str = ".ztos-tmp-";
/// Longest version string accepted in an entry.
const MAX_VERSION_LEN: usize = 64;

/// What a slot's entry says about it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(tag = "status", rename_all = "kebab-case")]
pub enum SlotStatus {
    /// An entry without a counter: the factory slot, or one that was blessed.
    Good,
    /// An entry with tries left; systemd-boot counts them down on each boot.
    Trial { left: u32, done: u32 },
    /// An entry with no tries left: systemd-boot boots it only when nothing else is there.
    Bad { done: u32 },
    /// No entry: the slot never held a release, or an update is being written to it.
    NoEntry,
}

impl SlotStatus {
    fn of(entry: Option<&EntryName>) -> SlotStatus {
        match entry.map(|e| e.tries) {
            None => SlotStatus::NoEntry,
            Some(None) => SlotStatus::Good,
            Some(Some(tries)) if tries.left == 0 => SlotStatus::Bad { done: tries.done },
            Some(Some(tries)) => SlotStatus::Trial {
                left: tries.left,
                done: tries.done,
            },
        }
    }

    /// `good`, `trial`, `bad`, `no-entry`.
    pub fn as_str(&self) -> &'static str {
        match self {
            SlotStatus::Good => "good",
            SlotStatus::Trial { .. } => "trial",
            SlotStatus::Bad { .. } => "bad",
            SlotStatus::NoEntry => "no-entry",
        }
    }
}

/// One slot as the ESP describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlotState {
    pub slot: Slot,
    /// The slot's entry; when (by hand) there are several, the one systemd-boot would prefer.
    pub entry: Option<EntryName>,
    /// The entry's `version` line.
    pub version: Option<String>,
    pub status: SlotStatus,
}

/// Both slots and the order systemd-boot will boot them in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BootState {
    /// Slot A then slot B.
    pub slots: [SlotState; 2],
    /// Every ZTOS entry, in systemd-boot's order (the first one boots next).
    pub entries: Vec<EntryName>,
    /// Files in `loader/entries` that are not ZTOS entries (and not our temporary files),
    /// with why; systemd-boot may still show them in its menu.
    pub foreign: Vec<String>,
}

impl BootState {
    pub fn slot(&self, slot: Slot) -> &SlotState {
        &self.slots[slot as usize]
    }

    /// The entry systemd-boot boots next (`default ztos-*`): see [`next_boot`].
    pub fn next_boot_entry(&self) -> Option<EntryName> {
        next_boot(&self.entries)
    }

    /// The slot systemd-boot boots next.
    pub fn next_boot(&self) -> Option<Slot> {
        self.next_boot_entry().map(|e| e.slot)
    }

    /// The highest generation of any entry (0 when there is none).
    pub fn max_generation(&self) -> u64 {
        self.entries.iter().map(|e| e.generation).max().unwrap_or(0)
    }
}

/// Why a slot operation failed. Every message names the slot or the file.
#[derive(Debug, thiserror::Error)]
pub enum SlotError {
    #[error("{what} {path}: {source}")]
    Io {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("slot {slot} is the running slot; an update writes only the other slot")]
    Booted { slot: Slot },
    #[error("slot {slot} has no boot entry")]
    NoEntry { slot: Slot },
    #[error("slot {slot}'s entry {entry} has no boot tries left (it failed to come up); it cannot be preferred")]
    Bad { slot: Slot, entry: String },
    #[error("boot tries must be between 1 and {MAX_TRIES}, not {tries}")]
    Tries { tries: u32 },
    #[error(
        "invalid version {version:?}: use 1 to {MAX_VERSION_LEN} letters, digits and . + ~ ^ _ -"
    )]
    Version { version: String },
    #[error("{path} is empty; refusing to install an empty {what}")]
    EmptyFile { what: &'static str, path: PathBuf },
}

fn io_err(what: &'static str, path: &Path) -> impl FnOnce(io::Error) -> SlotError {
    let path = path.to_path_buf();
    move |source| SlotError::Io { what, path, source }
}

/// Reads both slots' entries from `esp/loader/entries`. Read only; temporary files left by
/// an interrupted write are ignored.
pub fn read_boot_state(esp: &Path) -> Result<BootState, SlotError> {
    let dir = esp.join(ENTRIES_DIR);
    let mut entries = Vec::new();
    let mut foreign = Vec::new();
    for item in fs::read_dir(&dir).map_err(io_err("reading", &dir))? {
        let item = item.map_err(io_err("reading", &dir))?;
        let file_name = item.file_name().to_string_lossy().into_owned();
        if file_name.starts_with(TEMP_PREFIX) {
            continue;
        }
        match EntryName::parse(&file_name) {
            Ok(name) => entries.push(name),
            Err(error) => foreign.push(error.to_string()),
        }
    }
    entries.sort_by(crate::bootloader::compare_boot_order);
    foreign.sort();
    let mut slots = Vec::with_capacity(2);
    for slot in [Slot::A, Slot::B] {
        let entry = entries.iter().find(|e| e.slot == slot).copied();
        let version = match &entry {
            Some(entry) => {
                let path = dir.join(entry.file_name());
                let text = fs::read_to_string(&path).map_err(io_err("reading", &path))?;
                BootEntry::parse(&text).version
            }
            None => None,
        };
        slots.push(SlotState {
            slot,
            entry,
            version,
            status: SlotStatus::of(entry.as_ref()),
        });
    }
    let slots: [SlotState; 2] = slots.try_into().map_err(|_| SlotError::Io {
        what: "reading",
        path: dir.clone(),
        source: io::Error::other("two slots expected"),
    })?;
    Ok(BootState {
        slots,
        entries,
        foreign,
    })
}

/// Removes every entry of `slot` (and temporary files of ours) and syncs the directory.
/// Removing nothing is not an error.
pub fn remove_entry(esp: &Path, slot: Slot) -> Result<(), SlotError> {
    let dir = esp.join(ENTRIES_DIR);
    let state = read_boot_state(esp)?;
    for entry in state.entries.iter().filter(|e| e.slot == slot) {
        let path = dir.join(entry.file_name());
        fs::remove_file(&path).map_err(io_err("removing", &path))?;
    }
    remove_temp_files(&dir)?;
    sync_dir(&dir)
}

/// Installs a release into `slot` for a trial: removes the slot's entry, copies `kernel` and
/// `initramfs` into `ztos-<slot>/` (temporary file, fsync, rename, fsync the directory), then
/// writes the entry `ztos-<gen>-<slot>+<tries>.conf` with the next generation the same way,
/// last. systemd-boot boots it next; if it uses up its tries without being blessed, the other
/// slot boots again. `booted` is the running slot, which is refused.
pub fn install_trial(
    esp: &Path,
    booted: Slot,
    slot: Slot,
    version: &str,
    kernel: &Path,
    initramfs: &Path,
    tries: u32,
) -> Result<EntryName, SlotError> {
    if slot == booted {
        return Err(SlotError::Booted { slot });
    }
    if !(1..=MAX_TRIES).contains(&tries) {
        return Err(SlotError::Tries { tries });
    }
    check_version(version)?;
    for (what, path) in [("kernel", kernel), ("initramfs", initramfs)] {
        let meta = fs::metadata(path).map_err(io_err("reading", path))?;
        if meta.len() == 0 {
            return Err(SlotError::EmptyFile {
                what,
                path: path.to_path_buf(),
            });
        }
    }
    let generation = read_boot_state(esp)?.max_generation() + 1;
    // 1. No entry for the slot from here on: its files may be replaced.
    remove_entry(esp, slot)?;
    // 2. The slot's kernel and initramfs.
    let slot_dir = esp.join(slot.esp_dir());
    if !slot_dir.is_dir() {
        fs::create_dir(&slot_dir).map_err(io_err("creating", &slot_dir))?;
        sync_dir(esp)?;
    }
    remove_temp_files(&slot_dir)?;
    for (source, name) in [(kernel, "vmlinuz"), (initramfs, "initramfs")] {
        let mut input = File::open(source).map_err(io_err("opening", source))?;
        write_durably(&slot_dir, name, |out| io::copy(&mut input, out).map(drop))?;
    }
    sync_dir(&slot_dir)?;
    // 3. The entry, last.
    let name = EntryName::trial(generation, slot, tries);
    let dir = esp.join(ENTRIES_DIR);
    let text = boot_entry(slot, version);
    write_durably(&dir, &name.file_name(), |out| {
        out.write_all(text.as_bytes())
    })?;
    sync_dir(&dir)?;
    Ok(name)
}

/// Blesses `slot`: renames its counted entry to the same name without the counter, so
/// systemd-boot no longer counts its boots. Also blesses an entry whose last try is the
/// running boot (`+0-N`). Idempotent: an entry without a counter is left as it is.
pub fn bless(esp: &Path, slot: Slot) -> Result<EntryName, SlotError> {
    let state = read_boot_state(esp)?;
    let entry = state.slot(slot).entry.ok_or(SlotError::NoEntry { slot })?;
    if entry.tries.is_none() {
        return Ok(entry);
    }
    rename_entry(esp, &entry, &entry.blessed())
}

/// Manual rollback: makes `slot` the one systemd-boot boots next by giving its entry the
/// highest generation, without a counter (`tries` `None`: the slot is known good) or with
/// `tries` boots to prove itself again. Refused when the slot has no entry or no tries left.
/// Nothing is renamed when the slot already boots next with that counter.
pub fn prefer(esp: &Path, slot: Slot, tries: Option<u32>) -> Result<EntryName, SlotError> {
    if let Some(tries) = tries {
        if !(1..=MAX_TRIES).contains(&tries) {
            return Err(SlotError::Tries { tries });
        }
    }
    let state = read_boot_state(esp)?;
    let entry = state.slot(slot).entry.ok_or(SlotError::NoEntry { slot })?;
    if entry.is_bad() {
        return Err(SlotError::Bad {
            slot,
            entry: entry.file_name(),
        });
    }
    let tries = tries.map(|left| crate::bootloader::Tries { left, done: 0 });
    if state.next_boot_entry() == Some(entry) && entry.tries == tries {
        return Ok(entry);
    }
    let wanted = EntryName {
        generation: state.max_generation() + 1,
        slot,
        tries,
    };
    rename_entry(esp, &entry, &wanted)
}

fn rename_entry(esp: &Path, from: &EntryName, to: &EntryName) -> Result<EntryName, SlotError> {
    let dir = esp.join(ENTRIES_DIR);
    let source = dir.join(from.file_name());
    let target = dir.join(to.file_name());
    fs::rename(&source, &target).map_err(io_err("renaming", &source))?;
    sync_dir(&dir)?;
    Ok(*to)
}

/// Versions go into the entry's `title` and `version` lines: one word of safe characters.
fn check_version(version: &str) -> Result<(), SlotError> {
    let ok = !version.is_empty()
        && version.len() <= MAX_VERSION_LEN
        && version
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '+' | '~' | '^' | '_' | '-'));
    if ok {
        Ok(())
    } else {
        Err(SlotError::Version {
            version: version.chars().take(MAX_VERSION_LEN * 2).collect(),
        })
    }
}

/// Writes `dir/name` through `dir/.ztos-tmp-name`: fill, fsync, rename. The caller syncs
/// `dir` when all its files are in place.
fn write_durably(
    dir: &Path,
    name: &str,
    fill: impl FnOnce(&mut File) -> io::Result<()>,
) -> Result<(), SlotError> {
    let temp = dir.join(format!("{TEMP_PREFIX}{name}"));
    let target = dir.join(name);
    let mut file = File::create(&temp).map_err(io_err("creating", &temp))?;
    fill(&mut file).map_err(io_err("writing", &temp))?;
    file.sync_all().map_err(io_err("syncing", &temp))?;
    drop(file);
    fs::rename(&temp, &target).map_err(io_err("renaming", &temp))?;
    Ok(())
}

fn remove_temp_files(dir: &Path) -> Result<(), SlotError> {
    for item in fs::read_dir(dir).map_err(io_err("reading", dir))? {
        let item = item.map_err(io_err("reading", dir))?;
        if item.file_name().to_string_lossy().starts_with(TEMP_PREFIX) {
            let path = item.path();
            fs::remove_file(&path).map_err(io_err("removing", &path))?;
        }
    }
    Ok(())
}

fn sync_dir(dir: &Path) -> Result<(), SlotError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err("syncing", dir))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An ESP as the image builder leaves it: slot A's files and `ztos-1-a.conf`.
    fn factory_esp() -> tempfile::TempDir {
        let esp = tempfile::tempdir().unwrap();
        fs::create_dir_all(esp.path().join(ENTRIES_DIR)).unwrap();
        fs::create_dir_all(esp.path().join("ztos-a")).unwrap();
        fs::write(esp.path().join("ztos-a/vmlinuz"), b"kernel a").unwrap();
        fs::write(esp.path().join("ztos-a/initramfs"), b"initramfs a").unwrap();
        fs::write(
            esp.path().join(ENTRIES_DIR).join("ztos-1-a.conf"),
            boot_entry(Slot::A, "0.1.0"),
        )
        .unwrap();
        esp
    }

    fn artifacts(dir: &Path) -> (PathBuf, PathBuf) {
        let kernel = dir.join("new-vmlinuz");
        let initramfs = dir.join("new-initramfs");
        fs::write(&kernel, b"kernel b").unwrap();
        fs::write(&initramfs, b"initramfs b").unwrap();
        (kernel, initramfs)
    }

    fn entry_files(esp: &Path) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(esp.join(ENTRIES_DIR))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    fn rename(esp: &Path, from: &str, to: &str) {
        let dir = esp.join(ENTRIES_DIR);
        fs::rename(dir.join(from), dir.join(to)).unwrap();
    }

    #[test]
    fn factory_state_boots_slot_a_and_slot_b_is_empty() {
        let esp = factory_esp();
        let state = read_boot_state(esp.path()).unwrap();
        assert_eq!(state.slot(Slot::A).status, SlotStatus::Good);
        assert_eq!(state.slot(Slot::A).version.as_deref(), Some("0.1.0"));
        assert_eq!(state.slot(Slot::B).status, SlotStatus::NoEntry);
        assert_eq!(state.slot(Slot::B).version, None);
        assert_eq!(state.next_boot(), Some(Slot::A));
        assert_eq!(state.max_generation(), 1);
    }

    #[test]
    fn trial_install_boots_next_then_bless_keeps_it() {
        let esp = factory_esp();
        let work = tempfile::tempdir().unwrap();
        let (kernel, initramfs) = artifacts(work.path());
        let name = install_trial(
            esp.path(),
            Slot::A,
            Slot::B,
            "0.2.0",
            &kernel,
            &initramfs,
            3,
        )
        .unwrap();
        assert_eq!(name.file_name(), "ztos-2-b+3.conf");
        assert_eq!(
            entry_files(esp.path()),
            ["ztos-1-a.conf", "ztos-2-b+3.conf"]
        );
        assert_eq!(
            fs::read(esp.path().join("ztos-b/vmlinuz")).unwrap(),
            b"kernel b"
        );
        assert_eq!(
            fs::read(esp.path().join("ztos-b/initramfs")).unwrap(),
            b"initramfs b"
        );
        let text =
            fs::read_to_string(esp.path().join(ENTRIES_DIR).join("ztos-2-b+3.conf")).unwrap();
        assert_eq!(text, boot_entry(Slot::B, "0.2.0"));
        let state = read_boot_state(esp.path()).unwrap();
        assert_eq!(state.next_boot(), Some(Slot::B));
        assert_eq!(
            state.slot(Slot::B).status,
            SlotStatus::Trial { left: 3, done: 0 }
        );
        assert_eq!(state.slot(Slot::B).version.as_deref(), Some("0.2.0"));
        // The active slot's entry and files are untouched.
        assert_eq!(
            fs::read(esp.path().join("ztos-a/vmlinuz")).unwrap(),
            b"kernel a"
        );

        // systemd-boot spends one try and boots it; init blesses it.
        rename(esp.path(), "ztos-2-b+3.conf", "ztos-2-b+2-1.conf");
        assert_eq!(
            bless(esp.path(), Slot::B).unwrap().file_name(),
            "ztos-2-b.conf"
        );
        assert_eq!(entry_files(esp.path()), ["ztos-1-a.conf", "ztos-2-b.conf"]);
        assert_eq!(
            bless(esp.path(), Slot::B).unwrap().file_name(),
            "ztos-2-b.conf"
        );
        let state = read_boot_state(esp.path()).unwrap();
        assert_eq!(state.next_boot(), Some(Slot::B));
        assert_eq!(state.slot(Slot::B).status, SlotStatus::Good);
    }

    #[test]
    fn a_trial_that_runs_out_of_tries_falls_back_to_the_old_slot() {
        let esp = factory_esp();
        let work = tempfile::tempdir().unwrap();
        let (kernel, initramfs) = artifacts(work.path());
        install_trial(
            esp.path(),
            Slot::A,
            Slot::B,
            "0.2.0",
            &kernel,
            &initramfs,
            2,
        )
        .unwrap();
        rename(esp.path(), "ztos-2-b+2.conf", "ztos-2-b+1-1.conf");
        assert_eq!(
            read_boot_state(esp.path()).unwrap().next_boot(),
            Some(Slot::B)
        );
        rename(esp.path(), "ztos-2-b+1-1.conf", "ztos-2-b+0-2.conf");
        let state = read_boot_state(esp.path()).unwrap();
        assert_eq!(state.next_boot(), Some(Slot::A));
        assert_eq!(state.slot(Slot::B).status, SlotStatus::Bad { done: 2 });
        // A bad slot cannot be preferred by hand.
        let err = prefer(esp.path(), Slot::B, None).unwrap_err().to_string();
        assert!(
            err.contains("slot b's entry ztos-2-b+0-2.conf has no boot tries left"),
            "{err}"
        );
        // The next update into B replaces the bad entry with a newer generation.
        let name = install_trial(
            esp.path(),
            Slot::A,
            Slot::B,
            "0.2.1",
            &kernel,
            &initramfs,
            3,
        )
        .unwrap();
        assert_eq!(name.file_name(), "ztos-3-b+3.conf");
        assert_eq!(
            entry_files(esp.path()),
            ["ztos-1-a.conf", "ztos-3-b+3.conf"]
        );
    }

    #[test]
    fn the_last_try_can_still_be_blessed() {
        // systemd-boot renames +1-2 to +0-3 before booting it: the running boot is "bad" by
        // name, and blessing it keeps it.
        let esp = factory_esp();
        fs::write(
            esp.path().join(ENTRIES_DIR).join("ztos-2-b+0-3.conf"),
            boot_entry(Slot::B, "0.2.0"),
        )
        .unwrap();
        assert_eq!(
            bless(esp.path(), Slot::B).unwrap().file_name(),
            "ztos-2-b.conf"
        );
        assert_eq!(
            read_boot_state(esp.path()).unwrap().next_boot(),
            Some(Slot::B)
        );
    }

    #[test]
    fn install_refuses_the_running_slot_bad_tries_and_versions() {
        let esp = factory_esp();
        let work = tempfile::tempdir().unwrap();
        let (kernel, initramfs) = artifacts(work.path());
        let before = entry_files(esp.path());
        let err = install_trial(
            esp.path(),
            Slot::A,
            Slot::A,
            "0.2.0",
            &kernel,
            &initramfs,
            3,
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("slot a is the running slot"), "{err}");
        for tries in [0, MAX_TRIES + 1] {
            let err = install_trial(
                esp.path(),
                Slot::A,
                Slot::B,
                "0.2.0",
                &kernel,
                &initramfs,
                tries,
            )
            .unwrap_err()
            .to_string();
            assert!(err.contains(&format!("not {tries}")), "{err}");
        }
        for version in ["", "1.0\noptions init=/bin/sh", "1 0", &"9".repeat(65)] {
            let err = install_trial(
                esp.path(),
                Slot::A,
                Slot::B,
                version,
                &kernel,
                &initramfs,
                3,
            )
            .unwrap_err()
            .to_string();
            assert!(err.contains("invalid version"), "{err}");
        }
        fs::write(&initramfs, b"").unwrap();
        let err = install_trial(
            esp.path(),
            Slot::A,
            Slot::B,
            "0.2.0",
            &kernel,
            &initramfs,
            3,
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("empty initramfs"), "{err}");
        let err = install_trial(
            esp.path(),
            Slot::A,
            Slot::B,
            "0.2.0",
            &work.path().join("nope"),
            &initramfs,
            3,
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("nope"), "{err}");
        assert_eq!(entry_files(esp.path()), before);
        assert!(!esp.path().join("ztos-b").exists());
    }

    #[test]
    fn interrupted_writes_leave_no_entry_and_are_cleaned_up() {
        let esp = factory_esp();
        let dir = esp.path().join(ENTRIES_DIR);
        // A cut after the kernel was copied but before the entry was renamed into place: a
        // temporary entry and a temporary kernel.
        fs::create_dir_all(esp.path().join("ztos-b")).unwrap();
        fs::write(esp.path().join("ztos-b/.ztos-tmp-vmlinuz"), b"half a ker").unwrap();
        fs::write(dir.join(".ztos-tmp-ztos-2-b+3.conf"), b"title ZT").unwrap();
        let state = read_boot_state(esp.path()).unwrap();
        assert_eq!(state.slot(Slot::B).status, SlotStatus::NoEntry);
        assert_eq!(state.next_boot(), Some(Slot::A));
        assert!(state.foreign.is_empty(), "{:?}", state.foreign);
        // The next install cleans them and writes a complete slot.
        let work = tempfile::tempdir().unwrap();
        let (kernel, initramfs) = artifacts(work.path());
        install_trial(
            esp.path(),
            Slot::A,
            Slot::B,
            "0.2.0",
            &kernel,
            &initramfs,
            3,
        )
        .unwrap();
        assert_eq!(
            entry_files(esp.path()),
            ["ztos-1-a.conf", "ztos-2-b+3.conf"]
        );
        let mut files: Vec<String> = fs::read_dir(esp.path().join("ztos-b"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        files.sort();
        assert_eq!(files, ["initramfs", "vmlinuz"]);
        // remove_entry takes the entry away first: no entry, old files unreferenced.
        remove_entry(esp.path(), Slot::B).unwrap();
        assert_eq!(entry_files(esp.path()), ["ztos-1-a.conf"]);
        remove_entry(esp.path(), Slot::B).unwrap();
    }

    #[test]
    fn prefer_switches_to_a_good_slot_by_generation() {
        let esp = factory_esp();
        let dir = esp.path().join(ENTRIES_DIR);
        fs::write(dir.join("ztos-2-b.conf"), boot_entry(Slot::B, "0.2.0")).unwrap();
        assert_eq!(
            read_boot_state(esp.path()).unwrap().next_boot(),
            Some(Slot::B)
        );
        let name = prefer(esp.path(), Slot::A, None).unwrap();
        assert_eq!(name.file_name(), "ztos-3-a.conf");
        assert_eq!(entry_files(esp.path()), ["ztos-2-b.conf", "ztos-3-a.conf"]);
        assert_eq!(
            read_boot_state(esp.path()).unwrap().next_boot(),
            Some(Slot::A)
        );
        // Already next: nothing changes.
        assert_eq!(prefer(esp.path(), Slot::A, None).unwrap(), name);
        assert_eq!(entry_files(esp.path()), ["ztos-2-b.conf", "ztos-3-a.conf"]);
        // With tries: back to B, which must prove itself again.
        let name = prefer(esp.path(), Slot::B, Some(2)).unwrap();
        assert_eq!(name.file_name(), "ztos-4-b+2.conf");
        assert_eq!(
            read_boot_state(esp.path()).unwrap().next_boot(),
            Some(Slot::B)
        );
        assert!(prefer(esp.path(), Slot::B, Some(0)).is_err());
        remove_entry(esp.path(), Slot::B).unwrap();
        let err = prefer(esp.path(), Slot::B, None).unwrap_err().to_string();
        assert_eq!(err, "slot b has no boot entry");
        let err = bless(esp.path(), Slot::B).unwrap_err().to_string();
        assert_eq!(err, "slot b has no boot entry");
    }

    #[test]
    fn foreign_files_are_reported_not_used_and_a_missing_directory_is_an_error() {
        let esp = factory_esp();
        fs::write(
            esp.path().join(ENTRIES_DIR).join("debian.conf"),
            b"title x\n",
        )
        .unwrap();
        let state = read_boot_state(esp.path()).unwrap();
        assert_eq!(state.entries.len(), 1);
        assert_eq!(state.foreign.len(), 1);
        assert!(
            state.foreign[0].contains("debian.conf"),
            "{:?}",
            state.foreign
        );
        let empty = tempfile::tempdir().unwrap();
        let err = read_boot_state(empty.path()).unwrap_err().to_string();
        assert!(err.contains("loader/entries"), "{err}");
    }
}
