//! Steps both stages share: idempotent mounts, finding a partition by its GPT label, loading a
//! module list, and the console log with its warnings.

use std::path::{Path, PathBuf};
use std::time::Duration;

use nix::errno::Errno;

use super::syscalls::{MsFlags, Syscalls};
use super::BootError;

/// How often the partition scan looks again while waiting for a device.
pub(crate) const PARTITION_POLL_INTERVAL: Duration = Duration::from_millis(100);

/// The console log of a stage: steps are printed only with `ztos.debug`, warnings always, and
/// the warnings are kept for the stage's result.
#[derive(Debug, Default)]
pub(crate) struct BootLog {
    pub debug: bool,
    pub warnings: Vec<String>,
}

impl BootLog {
    pub fn step(&self, sys: &mut impl Syscalls, message: &str) {
        if self.debug {
            sys.console(&format!("ztos-init: {message}"));
        }
    }

    pub fn warn(&mut self, sys: &mut impl Syscalls, message: String) {
        sys.console(&format!("ztos-init: warning: {message}"));
        self.warnings.push(message);
    }
}

/// One filesystem to mount.
#[derive(Debug, Clone, Copy)]
pub(crate) struct MountSpec {
    pub source: &'static str,
    pub target: &'static str,
    pub fstype: &'static str,
    pub flags: MsFlags,
    pub data: Option<&'static str>,
}

/// Mounts unless the target is already a mount point (per `/proc/self/mountinfo`) or the
/// kernel answers EBUSY, so the sequence can run again. Creates the mount point first.
pub(crate) fn ensure_mounted(
    sys: &mut impl Syscalls,
    log: &BootLog,
    spec: &MountSpec,
) -> Result<(), BootError> {
    let target = Path::new(spec.target);
    if is_mount_point(sys, target) {
        log.step(sys, &format!("{} is already mounted", spec.target));
        return Ok(());
    }
    sys.mkdir_p(target, 0o755)
        .map_err(|source| BootError::CreateDirectory {
            path: target.to_path_buf(),
            source,
        })?;
    log.step(sys, &format!("mount {} on {}", spec.fstype, spec.target));
    match sys.mount(spec.source, target, spec.fstype, spec.flags, spec.data) {
        Ok(()) => Ok(()),
        Err(error) if error.raw_os_error() == Some(Errno::EBUSY as i32) => {
            log.step(sys, &format!("{} busy: already mounted", spec.target));
            Ok(())
        }
        Err(source) => Err(BootError::Mount {
            source_name: spec.source.to_string(),
            target: target.to_path_buf(),
            fstype: spec.fstype.to_string(),
            source,
        }),
    }
}

/// Whether `target` is a mount point. Without a readable `/proc/self/mountinfo` (proc not yet
/// mounted) nothing is.
pub(crate) fn is_mount_point(sys: &mut impl Syscalls, target: &Path) -> bool {
    let Ok(mountinfo) = sys.read_file(Path::new("/proc/self/mountinfo")) else {
        return false;
    };
    String::from_utf8_lossy(&mountinfo)
        .lines()
        .filter_map(|line| line.split(' ').nth(4))
        .any(|mount_point| Path::new(&unescape_mountinfo(mount_point)) == target)
}

/// Undoes mountinfo's octal escapes (`\040` is a space).
fn unescape_mountinfo(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\' && i + 4 <= bytes.len() {
            let octal = std::str::from_utf8(&bytes[i + 1..i + 4]).unwrap_or("");
            if let Ok(value) = u8::from_str_radix(octal, 8) {
                out.push(value);
                i += 4;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Finds the block device whose GPT partition label is `label` by scanning
/// `/sys/class/block/*/uevent` for `PARTNAME=<label>`, looking again every 100 ms until
/// `timeout` has passed (disks can appear late, e.g. USB or slow controllers). Returns the
/// device path (`/dev/vda2`).
pub fn find_partition_by_label(
    sys: &mut impl Syscalls,
    label: &str,
    timeout: Duration,
) -> Result<String, BootError> {
    let mut waited = Duration::ZERO;
    loop {
        let found = scan_partitions(sys, label);
        if let Some(device) = found.into_iter().next() {
            return Ok(device);
        }
        if waited >= timeout {
            return Err(BootError::PartitionNotFound {
                label: label.to_string(),
                waited,
            });
        }
        sys.sleep(PARTITION_POLL_INTERVAL);
        waited += PARTITION_POLL_INTERVAL;
    }
}

/// The device nodes of all partitions labelled `label` whose node exists, in the order of
/// their sysfs names.
fn scan_partitions(sys: &mut impl Syscalls, label: &str) -> Vec<String> {
    let class = Path::new("/sys/class/block");
    let Ok(names) = sys.read_dir(class) else {
        return Vec::new();
    };
    let mut devices = Vec::new();
    for name in names {
        let Ok(uevent) = sys.read_file(&class.join(&name).join("uevent")) else {
            continue;
        };
        let uevent = String::from_utf8_lossy(&uevent);
        let mut partname = None;
        let mut devname = None;
        for line in uevent.lines() {
            if let Some(value) = line.strip_prefix("PARTNAME=") {
                partname = Some(value);
            } else if let Some(value) = line.strip_prefix("DEVNAME=") {
                devname = Some(value);
            }
        }
        if let (Some(partname), Some(devname)) = (partname, devname) {
            let device = format!("/dev/{devname}");
            // The sysfs entry appears a moment before devtmpfs creates the node.
            if partname == label && sys.exists(Path::new(&device)) {
                devices.push(device);
            }
        }
    }
    devices
}

/// Parses a module list: one module per line, a path relative to `/lib/modules/<release>/`,
/// optionally followed by its parameters (`foo.ko opt=1`); blank lines and `#` comments are
/// ignored.
pub fn parse_module_list(text: &str) -> Vec<(String, String)> {
    text.lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .map(|line| match line.split_once(char::is_whitespace) {
            Some((path, params)) => (path.to_string(), params.trim().to_string()),
            None => (line.to_string(), String::new()),
        })
        .collect()
}

/// Loads the modules listed in `list` (see [`parse_module_list`]), in order. A module the
/// kernel already has (EEXIST) counts as loaded; any other failure is a warning and the next
/// module is tried. A missing list means there is nothing to load. Returns how many loaded.
pub(crate) fn load_module_list(sys: &mut impl Syscalls, log: &mut BootLog, list: &Path) -> usize {
    let text = match sys.read_file(list) {
        Ok(text) => String::from_utf8_lossy(&text).into_owned(),
        Err(error) => {
            log.step(sys, &format!("no module list {}: {error}", list.display()));
            return 0;
        }
    };
    let modules = parse_module_list(&text);
    if modules.is_empty() {
        return 0;
    }
    let release = match sys.kernel_release() {
        Ok(release) => release,
        Err(error) => {
            log.warn(
                sys,
                format!("cannot load modules: kernel release unknown: {error}"),
            );
            return 0;
        }
    };
    let directory = PathBuf::from("/lib/modules").join(release);
    let mut loaded = 0;
    for (module, params) in modules {
        let path = directory.join(&module);
        log.step(sys, &format!("load module {}", path.display()));
        match sys.load_module(&path, &params) {
            Ok(()) => loaded += 1,
            Err(error) if error.raw_os_error() == Some(Errno::EEXIST as i32) => loaded += 1,
            Err(error) => log.warn(sys, format!("load module {}: {error}", path.display())),
        }
    }
    loaded
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn boot_module_list_skips_comments_and_keeps_parameters() {
        let text = "# storage\nkernel/drivers/block/virtio_blk.ko\n\n  kernel/fs/x.ko  a=1 b=2 \n";
        assert_eq!(
            parse_module_list(text),
            vec![
                (
                    "kernel/drivers/block/virtio_blk.ko".to_string(),
                    String::new()
                ),
                ("kernel/fs/x.ko".to_string(), "a=1 b=2".to_string()),
            ]
        );
    }

    #[test]
    fn boot_real_mount_is_seen_in_mountinfo_and_not_mounted_twice() {
        if !nix::unistd::Uid::effective().is_root() {
            // CI runs as root; skipping is only for a developer who asked for it.
            assert!(
                std::env::var_os("ZTOS_SKIP_ROOT_TESTS").is_some_and(|v| v == "1"),
                "this test needs root to mount; set ZTOS_SKIP_ROOT_TESTS=1 to skip"
            );
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        // A space in the path exercises mountinfo's escapes.
        let target = dir.path().join("mount point");
        let target_text: &'static str = Box::leak(target.display().to_string().into_boxed_str());
        let spec = MountSpec {
            source: "ztos-test",
            target: target_text,
            fstype: "tmpfs",
            flags: MsFlags::MS_NOSUID,
            data: Some("size=1m"),
        };
        let mut sys = crate::boot::RealSyscalls::new();
        let log = BootLog::default();
        assert!(!is_mount_point(&mut sys, &target));
        ensure_mounted(&mut sys, &log, &spec).unwrap();
        assert!(is_mount_point(&mut sys, &target));
        // A second run leaves the mount alone instead of stacking another.
        ensure_mounted(&mut sys, &log, &spec).unwrap();
        sys.umount(&target, false).unwrap();
        assert!(!is_mount_point(&mut sys, &target));
    }

    #[test]
    fn boot_mountinfo_escapes_are_undone() {
        assert_eq!(unescape_mountinfo("/mnt/a\\040b"), "/mnt/a b");
        assert_eq!(unescape_mountinfo("/plain"), "/plain");
        assert_eq!(unescape_mountinfo("/end\\04"), "/end\\04");
    }
}
