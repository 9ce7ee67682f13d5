//! [`RecordingSyscalls`]: an in-memory machine for testing the boot stages without root. It
//! records every call as one line of text and answers from a small filesystem, a mount table
//! and scripted failures. Time is virtual: `sleep` advances a clock that makes files added with
//! [`RecordingSyscalls::add_file_after`] appear.

use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use nix::errno::Errno;

use super::syscalls::{EntryInfo, GrowOutcome, MsFlags, RebootKind, Syscalls, Watchdog};

/// One mounted filesystem of the recording machine.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Mounted {
    source: String,
    target: PathBuf,
    fstype: String,
}

/// A recording, in-memory implementation of [`Syscalls`].
#[derive(Debug)]
pub struct RecordingSyscalls {
    calls: Arc<Mutex<Vec<String>>>,
    files: BTreeMap<PathBuf, Vec<u8>>,
    directories: BTreeSet<PathBuf>,
    symlinks: BTreeMap<PathBuf, PathBuf>,
    mounts: Vec<Mounted>,
    pending_files: Vec<(Duration, PathBuf, Vec<u8>)>,
    clock: Duration,
    in_initramfs: bool,
    kernel_release: String,
    hostname: Option<String>,
    mount_failures: BTreeMap<(PathBuf, Option<String>), Errno>,
    umount_failures: BTreeMap<PathBuf, Errno>,
    module_failures: BTreeMap<PathBuf, Errno>,
    exit_codes: BTreeMap<PathBuf, i32>,
    loopback_failure: Option<Errno>,
    remove_failures: BTreeMap<PathBuf, Errno>,
    grow_results: BTreeMap<PathBuf, Result<GrowOutcome, Errno>>,
}

/// Call prefixes that only observe; [`RecordingSyscalls::effects`] leaves them out.
const OBSERVING_CALLS: [&str; 10] = [
    "read ",
    "entry_info ",
    "read_dir ",
    "exists ",
    "sleep ",
    "console ",
    "kernel_release",
    "reap_zombies",
    "root_is_initramfs",
    "random_bytes ",
];

impl RecordingSyscalls {
    /// A machine whose `/` is the initramfs, running kernel `6.1.0-test`.
    pub fn initramfs() -> Self {
        let mut sys = Self::root_filesystem();
        sys.in_initramfs = true;
        sys
    }

    /// A machine whose `/` is a slot's root filesystem, running kernel `6.1.0-test`.
    pub fn root_filesystem() -> Self {
        RecordingSyscalls {
            calls: Arc::new(Mutex::new(Vec::new())),
            files: BTreeMap::new(),
            directories: BTreeSet::from([PathBuf::from("/")]),
            symlinks: BTreeMap::new(),
            mounts: Vec::new(),
            pending_files: Vec::new(),
            clock: Duration::ZERO,
            in_initramfs: false,
            kernel_release: "6.1.0-test".to_string(),
            hostname: None,
            mount_failures: BTreeMap::new(),
            umount_failures: BTreeMap::new(),
            module_failures: BTreeMap::new(),
            exit_codes: BTreeMap::new(),
            loopback_failure: None,
            remove_failures: BTreeMap::new(),
            grow_results: BTreeMap::new(),
        }
    }

    /// Puts a file (and its parent directories) into the filesystem, without recording.
    pub fn add_file(&mut self, path: impl AsRef<Path>, contents: impl AsRef<[u8]>) {
        let path = path.as_ref().to_path_buf();
        self.add_parents(&path);
        self.files.insert(path, contents.as_ref().to_vec());
    }

    /// Makes a file appear once the virtual clock has advanced by `after` (a device that
    /// shows up late).
    pub fn add_file_after(
        &mut self,
        after: Duration,
        path: impl AsRef<Path>,
        contents: impl AsRef<[u8]>,
    ) {
        self.pending_files.push((
            self.clock + after,
            path.as_ref().to_path_buf(),
            contents.as_ref().to_vec(),
        ));
    }

    pub fn remove_file(&mut self, path: impl AsRef<Path>) {
        self.files.remove(path.as_ref());
    }

    /// A file's contents, if it exists.
    pub fn file(&self, path: impl AsRef<Path>) -> Option<&[u8]> {
        self.files.get(path.as_ref()).map(Vec::as_slice)
    }

    /// Adds an entry to the mount table, without recording.
    pub fn add_mount(&mut self, source: &str, target: &str, fstype: &str) {
        self.mounts.push(Mounted {
            source: source.to_string(),
            target: PathBuf::from(target),
            fstype: fstype.to_string(),
        });
    }

    /// The mount table as `(source, target, fstype)`, oldest first.
    pub fn mounts(&self) -> Vec<(String, String, String)> {
        self.mounts
            .iter()
            .map(|m| {
                (
                    m.source.clone(),
                    m.target.display().to_string(),
                    m.fstype.clone(),
                )
            })
            .collect()
    }

    /// Every mount on `target` fails with `errno`.
    pub fn fail_mount(&mut self, target: &str, errno: Errno) {
        self.mount_failures
            .insert((PathBuf::from(target), None), errno);
    }

    /// Mounts of `fstype` on `target` fail with `errno`.
    pub fn fail_mount_fstype(&mut self, target: &str, fstype: &str, errno: Errno) {
        self.mount_failures
            .insert((PathBuf::from(target), Some(fstype.to_string())), errno);
    }

    pub fn fail_umount(&mut self, target: &str, errno: Errno) {
        self.umount_failures.insert(PathBuf::from(target), errno);
    }

    pub fn fail_module(&mut self, path: &str, errno: Errno) {
        self.module_failures.insert(PathBuf::from(path), errno);
    }

    /// What `grow_partition` answers for `disk` (unset: `AlreadyFull { last_lba: 0 }`).
    pub fn set_grow_result(&mut self, disk: &str, result: Result<GrowOutcome, Errno>) {
        self.grow_results.insert(PathBuf::from(disk), result);
    }

    /// Removing `path` fails with `errno`.
    pub fn fail_remove(&mut self, path: &str, errno: Errno) {
        self.remove_failures.insert(PathBuf::from(path), errno);
    }

    /// Puts an empty directory (and its parents) into the filesystem, without recording.
    pub fn add_directory(&mut self, path: impl AsRef<Path>) {
        let path = path.as_ref().to_path_buf();
        self.add_parents(&path);
        self.directories.insert(path);
    }

    /// Whether a file, directory or symlink exists at `path`, without recording.
    pub fn has_entry(&self, path: impl AsRef<Path>) -> bool {
        let path = path.as_ref();
        self.files.contains_key(path)
            || self.directories.contains(path)
            || self.symlinks.contains_key(path)
    }

    pub fn fail_loopback(&mut self, errno: Errno) {
        self.loopback_failure = Some(errno);
    }

    /// The exit code `run` answers for `command` (0 unless set). The command must exist in
    /// the filesystem to run at all.
    pub fn set_exit_code(&mut self, command: &str, code: i32) {
        self.exit_codes.insert(PathBuf::from(command), code);
    }

    pub fn hostname(&self) -> Option<&str> {
        self.hostname.as_deref()
    }

    /// Every call, in order, one line each.
    pub fn calls(&self) -> Vec<String> {
        self.calls.lock().expect("recording lock").clone()
    }

    /// The calls that change something (no reads, sleeps or console lines).
    pub fn effects(&self) -> Vec<String> {
        self.calls()
            .into_iter()
            .filter(|call| {
                !OBSERVING_CALLS
                    .iter()
                    .any(|prefix| call.starts_with(prefix))
            })
            .collect()
    }

    /// The lines printed on the console.
    pub fn console_lines(&self) -> Vec<String> {
        self.calls()
            .into_iter()
            .filter_map(|call| call.strip_prefix("console ").map(str::to_string))
            .collect()
    }

    /// The virtual time slept so far.
    pub fn slept(&self) -> Duration {
        self.clock
    }

    fn record(&self, call: String) {
        self.calls.lock().expect("recording lock").push(call);
    }

    fn add_parents(&mut self, path: &Path) {
        for ancestor in path.ancestors().skip(1) {
            self.directories.insert(ancestor.to_path_buf());
        }
    }

    /// The device of the filesystem `path` is on: 0 for `/` (the machine's first
    /// filesystem), else one per mount, the innermost mount containing the path winning.
    fn device_of(&self, path: &Path) -> u64 {
        self.mounts
            .iter()
            .enumerate()
            .filter(|(_, m)| m.target != Path::new("/") && path.starts_with(&m.target))
            .max_by_key(|(_, m)| m.target.components().count())
            .map_or(0, |(index, _)| index as u64 + 1)
    }

    fn is_mounted(&self, target: &Path) -> bool {
        self.mounts.iter().any(|m| m.target == target)
    }

    fn mountinfo(&self) -> String {
        self.mounts
            .iter()
            .enumerate()
            .map(|(i, m)| {
                format!(
                    "{} 1 0:{} / {} rw - {} {} rw\n",
                    i + 20,
                    i + 20,
                    m.target.display().to_string().replace(' ', "\\040"),
                    m.fstype,
                    m.source
                )
            })
            .collect()
    }
}

fn flag_names(flags: MsFlags) -> String {
    let names: Vec<&str> = flags.iter_names().map(|(name, _)| name).collect();
    names.join("|")
}

impl Syscalls for RecordingSyscalls {
    fn mount(
        &mut self,
        source: &str,
        target: &Path,
        fstype: &str,
        flags: MsFlags,
        data: Option<&str>,
    ) -> io::Result<()> {
        let mut call = format!(
            "mount {source} {} {fstype} {}",
            target.display(),
            flag_names(flags)
        );
        if let Some(data) = data {
            call.push(' ');
            call.push_str(data);
        }
        self.record(call);
        let failure = self
            .mount_failures
            .get(&(target.to_path_buf(), Some(fstype.to_string())))
            .or_else(|| self.mount_failures.get(&(target.to_path_buf(), None)));
        if let Some(errno) = failure {
            return Err(io::Error::from(*errno));
        }
        if flags.contains(MsFlags::MS_MOVE) {
            let moved = self
                .mounts
                .iter_mut()
                .rev()
                .find(|m| m.target == Path::new(source))
                .ok_or(io::Error::from(Errno::EINVAL))?;
            moved.target = target.to_path_buf();
            return Ok(());
        }
        self.mounts.push(Mounted {
            source: source.to_string(),
            target: target.to_path_buf(),
            fstype: fstype.to_string(),
        });
        Ok(())
    }

    fn umount(&mut self, target: &Path, lazy: bool) -> io::Result<()> {
        self.record(format!(
            "umount {}{}",
            target.display(),
            if lazy { " lazy" } else { "" }
        ));
        if let Some(errno) = self.umount_failures.get(target) {
            if !lazy {
                return Err(io::Error::from(*errno));
            }
        }
        let index = self
            .mounts
            .iter()
            .rposition(|m| m.target == target)
            .ok_or(io::Error::from(Errno::EINVAL))?;
        self.mounts.remove(index);
        Ok(())
    }

    fn mkdir_p(&mut self, path: &Path, _mode: u32) -> io::Result<()> {
        self.record(format!("mkdir_p {}", path.display()));
        if self.files.contains_key(path) {
            return Err(io::Error::from(Errno::EEXIST));
        }
        self.add_parents(path);
        self.directories.insert(path.to_path_buf());
        Ok(())
    }

    fn write_file(&mut self, path: &Path, contents: &[u8]) -> io::Result<()> {
        self.record(format!(
            "write {} ({} bytes)",
            path.display(),
            contents.len()
        ));
        if self.directories.contains(path) {
            return Err(io::Error::from(Errno::EISDIR));
        }
        self.add_parents(path);
        self.files.insert(path.to_path_buf(), contents.to_vec());
        Ok(())
    }

    fn read_file(&mut self, path: &Path) -> io::Result<Vec<u8>> {
        self.record(format!("read {}", path.display()));
        if path == Path::new("/proc/self/mountinfo") && self.is_mounted(Path::new("/proc")) {
            return Ok(self.mountinfo().into_bytes());
        }
        self.files
            .get(path)
            .cloned()
            .ok_or(io::Error::from(Errno::ENOENT))
    }

    fn read_dir(&mut self, path: &Path) -> io::Result<Vec<String>> {
        self.record(format!("read_dir {}", path.display()));
        if !self.directories.contains(path) {
            return Err(io::Error::from(Errno::ENOENT));
        }
        let names: BTreeSet<String> = self
            .files
            .keys()
            .chain(self.directories.iter())
            .chain(self.symlinks.keys())
            .filter(|entry| entry.parent() == Some(path))
            .filter_map(|entry| entry.file_name())
            .map(|name| name.to_string_lossy().into_owned())
            .collect();
        Ok(names.into_iter().collect())
    }

    fn exists(&mut self, path: &Path) -> bool {
        self.record(format!("exists {}", path.display()));
        self.files.contains_key(path)
            || self.directories.contains(path)
            || self.symlinks.contains_key(path)
    }

    fn entry_info(&mut self, path: &Path) -> io::Result<EntryInfo> {
        self.record(format!("entry_info {}", path.display()));
        let is_dir = self.directories.contains(path);
        if !is_dir && !self.files.contains_key(path) && !self.symlinks.contains_key(path) {
            return Err(io::Error::from(Errno::ENOENT));
        }
        Ok(EntryInfo {
            is_dir,
            device: self.device_of(path),
        })
    }

    fn remove(&mut self, path: &Path, is_dir: bool) -> io::Result<()> {
        self.record(format!(
            "{} {}",
            if is_dir { "rmdir" } else { "unlink" },
            path.display()
        ));
        if let Some(errno) = self.remove_failures.get(path) {
            return Err(io::Error::from(*errno));
        }
        if is_dir {
            if !self.directories.contains(path) {
                return Err(io::Error::from(Errno::ENOTDIR));
            }
            let busy = self.is_mounted(path);
            let not_empty = self
                .files
                .keys()
                .chain(self.directories.iter())
                .chain(self.symlinks.keys())
                .any(|entry| entry.parent() == Some(path));
            if busy {
                return Err(io::Error::from(Errno::EBUSY));
            }
            if not_empty {
                return Err(io::Error::from(Errno::ENOTEMPTY));
            }
            self.directories.remove(path);
            return Ok(());
        }
        if self.files.remove(path).is_none() && self.symlinks.remove(path).is_none() {
            return Err(io::Error::from(if self.directories.contains(path) {
                Errno::EISDIR
            } else {
                Errno::ENOENT
            }));
        }
        Ok(())
    }

    fn grow_partition(&mut self, disk: &Path, label: &str) -> io::Result<GrowOutcome> {
        self.record(format!("grow_partition {} {label}", disk.display()));
        if !self.files.contains_key(disk) {
            return Err(io::Error::from(Errno::ENOENT));
        }
        match self.grow_results.get(disk) {
            Some(Ok(outcome)) => Ok(*outcome),
            Some(Err(errno)) => Err(io::Error::from(*errno)),
            None => Ok(GrowOutcome::AlreadyFull { last_lba: 0 }),
        }
    }

    fn symlink(&mut self, target: &Path, link: &Path) -> io::Result<()> {
        self.record(format!("symlink {} {}", target.display(), link.display()));
        if self.files.contains_key(link) || self.symlinks.contains_key(link) {
            return Err(io::Error::from(Errno::EEXIST));
        }
        self.symlinks
            .insert(link.to_path_buf(), target.to_path_buf());
        Ok(())
    }

    fn switch_root(&mut self, new_root: &Path) -> io::Result<()> {
        self.record(format!("switch_root {}", new_root.display()));
        if !self.is_mounted(new_root) {
            return Err(io::Error::from(Errno::EINVAL));
        }
        self.in_initramfs = false;
        Ok(())
    }

    fn exec(&mut self, path: &Path, args: &[&str]) -> io::Error {
        let mut call = format!("exec {}", path.display());
        for arg in args {
            call.push(' ');
            call.push_str(arg);
        }
        self.record(call);
        io::Error::other("recorded exec: the process stays")
    }

    fn load_module(&mut self, path: &Path, params: &str) -> io::Result<()> {
        let mut call = format!("load_module {}", path.display());
        if !params.is_empty() {
            call.push(' ');
            call.push_str(params);
        }
        self.record(call);
        match self.module_failures.get(path) {
            Some(errno) => Err(io::Error::from(*errno)),
            None => Ok(()),
        }
    }

    fn kernel_release(&mut self) -> io::Result<String> {
        self.record("kernel_release".to_string());
        Ok(self.kernel_release.clone())
    }

    fn sethostname(&mut self, name: &str) -> io::Result<()> {
        self.record(format!("sethostname {name}"));
        self.hostname = Some(name.to_string());
        Ok(())
    }

    fn set_loopback_up(&mut self) -> io::Result<()> {
        self.record("set_loopback_up".to_string());
        match self.loopback_failure {
            Some(errno) => Err(io::Error::from(errno)),
            None => Ok(()),
        }
    }

    fn run(&mut self, command: &Path, args: &[&str]) -> io::Result<i32> {
        let mut call = format!("run {}", command.display());
        for arg in args {
            call.push(' ');
            call.push_str(arg);
        }
        self.record(call);
        if !self.files.contains_key(command) {
            return Err(io::Error::from(Errno::ENOENT));
        }
        Ok(self.exit_codes.get(command).copied().unwrap_or(0))
    }

    fn random_bytes(&mut self, len: usize) -> io::Result<Vec<u8>> {
        self.record(format!("random_bytes {len}"));
        Ok(vec![0x5a; len])
    }

    fn root_is_initramfs(&mut self) -> io::Result<bool> {
        self.record("root_is_initramfs".to_string());
        Ok(self.in_initramfs)
    }

    fn reap_zombies(&mut self) -> usize {
        self.record("reap_zombies".to_string());
        0
    }

    fn console(&mut self, line: &str) {
        self.record(format!("console {line}"));
    }

    fn sleep(&mut self, duration: Duration) {
        self.record(format!("sleep {}ms", duration.as_millis()));
        self.clock += duration;
        let clock = self.clock;
        let (due, pending): (Vec<_>, Vec<_>) = std::mem::take(&mut self.pending_files)
            .into_iter()
            .partition(|(at, _, _)| *at <= clock);
        self.pending_files = pending;
        for (_, path, contents) in due {
            self.add_file(path, contents);
        }
    }

    fn sync(&mut self) {
        self.record("sync".to_string());
    }

    fn reboot(&mut self, kind: RebootKind) -> io::Error {
        self.record(format!("reboot {kind:?}"));
        io::Error::other("recorded reboot: the machine stays up")
    }

    fn open_watchdog(&mut self, path: &Path) -> io::Result<Box<dyn Watchdog>> {
        self.record(format!("open_watchdog {}", path.display()));
        if !self.files.contains_key(path) {
            return Err(io::Error::from(Errno::ENOENT));
        }
        Ok(Box::new(RecordingWatchdog {
            calls: Arc::clone(&self.calls),
        }))
    }
}

/// The watchdog of [`RecordingSyscalls`]: records into the same call list, from any thread.
struct RecordingWatchdog {
    calls: Arc<Mutex<Vec<String>>>,
}

impl Watchdog for RecordingWatchdog {
    fn pet(&mut self) -> io::Result<()> {
        self.calls
            .lock()
            .expect("recording lock")
            .push("watchdog pet".to_string());
        Ok(())
    }

    fn close(self: Box<Self>) -> io::Result<()> {
        self.calls
            .lock()
            .expect("recording lock")
            .push("watchdog close".to_string());
        Ok(())
    }
}
