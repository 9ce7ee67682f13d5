//! Access to the ESP on a running appliance: find the partition labelled `ztos-esp` (GPT
//! partition name, as the kernel reports it in `/sys/class/block/*/uevent`, the same way
//! ztos-init finds the root and perm), and mount it on `/run/ztos/esp` only while it is
//! needed. [`EspMount`] holds an exclusive `flock` on `/run/ztos/esp.lock` for its whole life,
//! so ztos-init (blessing) and ztosd (updates, rollback) never write the ESP at the same time;
//! dropping it syncs and unmounts. The ESP is mounted `nosuid,nodev,noexec` and root-only
//! (`umask=0077`); the vfat and code-page modules are in the root's feature modules.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg};
use nix::mount::{mount, umount2, MntFlags, MsFlags};

use crate::layout::{ESP_LABEL, ESP_LOCK, ESP_MOUNT_POINT};

/// Where the kernel lists block devices.
pub const SYS_CLASS_BLOCK: &str = "/sys/class/block";
/// How long [`EspMount::mount`] waits for another holder of the lock.
pub const DEFAULT_LOCK_TIMEOUT: Duration = Duration::from_secs(120);
/// vfat options: root-only files, never follow a corrupted FAT into a crash-loop of writes.
const MOUNT_OPTIONS: &str = "umask=0077,errors=remount-ro";

/// Why the ESP could not be reached.
#[derive(Debug, thiserror::Error)]
pub enum EspMountError {
    #[error("no partition labelled {label:?} in {}", SYS_CLASS_BLOCK)]
    NotFound { label: String },
    #[error("{what} {path}: {source}")]
    Io {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("another process holds {path} (an update or a bless is writing the ESP); gave up after {} s", waited.as_secs())]
    Busy { path: PathBuf, waited: Duration },
    #[error("mounting {device} (vfat) on {target}: {errno}{}", if *errno == Errno::ENODEV { " (the kernel has no vfat: is the vfat module loaded?)" } else { "" })]
    Mount {
        device: PathBuf,
        target: PathBuf,
        errno: Errno,
    },
    #[error("unmounting {target}: {errno}")]
    Unmount { target: PathBuf, errno: Errno },
}

fn io_err(what: &'static str, path: &Path) -> impl FnOnce(io::Error) -> EspMountError {
    let path = path.to_path_buf();
    move |source| EspMountError::Io { what, path, source }
}

/// The device nodes (`/dev/vda1`) of the partitions named `label`, in the order of their
/// sysfs names; `sys_class_block` is [`SYS_CLASS_BLOCK`] except in tests.
pub fn find_partitions(sys_class_block: &Path, label: &str) -> Result<Vec<PathBuf>, EspMountError> {
    let mut names: Vec<_> = fs::read_dir(sys_class_block)
        .map_err(io_err("reading", sys_class_block))?
        .filter_map(|e| e.ok().map(|e| e.file_name()))
        .collect();
    names.sort();
    let mut devices = Vec::new();
    for name in names {
        let Ok(uevent) = fs::read_to_string(sys_class_block.join(&name).join("uevent")) else {
            continue;
        };
        let field = |key: &str| {
            uevent
                .lines()
                .find_map(|line| line.strip_prefix(key)?.strip_prefix('='))
        };
        if field("PARTNAME") == Some(label) {
            if let Some(devname) = field("DEVNAME") {
                devices.push(Path::new("/dev").join(devname));
            }
        }
    }
    Ok(devices)
}

/// The ESP's device node: the first partition labelled [`ESP_LABEL`].
pub fn find_esp() -> Result<PathBuf, EspMountError> {
    find_partitions(Path::new(SYS_CLASS_BLOCK), ESP_LABEL)?
        .into_iter()
        .next()
        .ok_or_else(|| EspMountError::NotFound {
            label: ESP_LABEL.to_string(),
        })
}

/// The ESP, locked and (when this value mounted it) mounted. Unmounted on drop.
#[derive(Debug)]
pub struct EspMount {
    root: PathBuf,
    /// Set while the ESP is mounted by us on `root`.
    mounted: bool,
    _lock: Flock<File>,
}

impl EspMount {
    /// Locks [`ESP_LOCK`] (waiting up to [`DEFAULT_LOCK_TIMEOUT`]), finds the ESP and mounts it
    /// on [`ESP_MOUNT_POINT`].
    pub fn mount() -> Result<EspMount, EspMountError> {
        let lock = lock(Path::new(ESP_LOCK), DEFAULT_LOCK_TIMEOUT)?;
        let device = find_esp()?;
        Self::mount_locked(lock, &device, Path::new(ESP_MOUNT_POINT))
    }

    /// Like [`EspMount::mount`] with everything named: the vfat `device`, the mount point
    /// `target` (created if missing) and the `lock` file.
    pub fn mount_device(
        device: &Path,
        target: &Path,
        lock_path: &Path,
        timeout: Duration,
    ) -> Result<EspMount, EspMountError> {
        let lock = lock(lock_path, timeout)?;
        Self::mount_locked(lock, device, target)
    }

    /// Only the lock, for an ESP that is a plain directory (tests, and ztosd's test mode):
    /// [`EspMount::path`] is `dir`, nothing is mounted or unmounted.
    pub fn lock_dir(
        dir: &Path,
        lock_path: &Path,
        timeout: Duration,
    ) -> Result<EspMount, EspMountError> {
        Ok(EspMount {
            root: dir.to_path_buf(),
            mounted: false,
            _lock: lock(lock_path, timeout)?,
        })
    }

    fn mount_locked(
        lock: Flock<File>,
        device: &Path,
        target: &Path,
    ) -> Result<EspMount, EspMountError> {
        fs::create_dir_all(target).map_err(io_err("creating", target))?;
        // A mount left by a process that died while holding the lock: nobody uses it now.
        if is_mount_point(target)? {
            umount2(target, MntFlags::MNT_DETACH).map_err(|errno| EspMountError::Unmount {
                target: target.to_path_buf(),
                errno,
            })?;
        }
        mount(
            Some(device),
            target,
            Some("vfat"),
            MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
            Some(MOUNT_OPTIONS),
        )
        .map_err(|errno| EspMountError::Mount {
            device: device.to_path_buf(),
            target: target.to_path_buf(),
            errno,
        })?;
        Ok(EspMount {
            root: target.to_path_buf(),
            mounted: true,
            _lock: lock,
        })
    }

    /// The ESP's root directory (what [`crate::slots`] takes).
    pub fn path(&self) -> &Path {
        &self.root
    }

    /// Syncs and unmounts now, reporting a failure (drop does the same, silently).
    pub fn unmount(mut self) -> Result<(), EspMountError> {
        self.release()
    }

    fn release(&mut self) -> Result<(), EspMountError> {
        if !self.mounted {
            return Ok(());
        }
        self.mounted = false;
        nix::unistd::sync();
        match umount2(&self.root, MntFlags::empty()) {
            Ok(()) => Ok(()),
            Err(Errno::EBUSY) => {
                // Someone still has a file open there: detach; the data is synced already.
                umount2(&self.root, MntFlags::MNT_DETACH).map_err(|errno| EspMountError::Unmount {
                    target: self.root.clone(),
                    errno,
                })
            }
            Err(errno) => Err(EspMountError::Unmount {
                target: self.root.clone(),
                errno,
            }),
        }
    }
}

impl Drop for EspMount {
    fn drop(&mut self) {
        if let Err(error) = self.release() {
            eprintln!("warning: {error}");
        }
    }
}

/// Takes an exclusive flock on `path` (created, mode 0600), retrying for `timeout`.
fn lock(path: &Path, timeout: Duration) -> Result<Flock<File>, EspMountError> {
    use std::os::unix::fs::OpenOptionsExt;
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir).map_err(io_err("creating", dir))?;
    }
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(path)
        .map_err(io_err("opening", path))?;
    let started = Instant::now();
    loop {
        match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            Ok(lock) => return Ok(lock),
            Err((returned, Errno::EWOULDBLOCK)) => {
                if started.elapsed() >= timeout {
                    return Err(EspMountError::Busy {
                        path: path.to_path_buf(),
                        waited: started.elapsed(),
                    });
                }
                file = returned;
                std::thread::sleep(Duration::from_millis(50));
            }
            Err((_, errno)) => {
                return Err(EspMountError::Io {
                    what: "locking",
                    path: path.to_path_buf(),
                    source: io::Error::from(errno),
                })
            }
        }
    }
}

/// Whether `path` is a mount point, from /proc/self/mountinfo (field 5).
fn is_mount_point(path: &Path) -> Result<bool, EspMountError> {
    let mountinfo = Path::new("/proc/self/mountinfo");
    let text = fs::read_to_string(mountinfo).map_err(io_err("reading", mountinfo))?;
    let canonical = fs::canonicalize(path).map_err(io_err("resolving", path))?;
    let wanted = canonical.to_string_lossy();
    Ok(text
        .lines()
        .filter_map(|line| line.split(' ').nth(4))
        .any(|mount_point| mount_point == wanted))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;
    use std::process::Command;

    fn fake_sysfs(entries: &[(&str, &str)]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        for (name, uevent) in entries {
            fs::create_dir_all(dir.path().join(name)).unwrap();
            fs::write(dir.path().join(name).join("uevent"), uevent).unwrap();
        }
        dir
    }

    #[test]
    fn partitions_are_found_by_gpt_name() {
        let sys = fake_sysfs(&[
            ("vda", "MAJOR=254\nMINOR=0\nDEVNAME=vda\nDEVTYPE=disk\n"),
            (
                "vda2",
                "MAJOR=254\nDEVNAME=vda2\nDEVTYPE=partition\nPARTN=2\nPARTNAME=ztos-root-a\n",
            ),
            (
                "vda1",
                "MAJOR=254\nDEVNAME=vda1\nDEVTYPE=partition\nPARTN=1\nPARTNAME=ztos-esp\n",
            ),
            ("loop0", "MAJOR=7\nDEVNAME=loop0\n"),
        ]);
        assert_eq!(
            find_partitions(sys.path(), "ztos-esp").unwrap(),
            [PathBuf::from("/dev/vda1")]
        );
        assert!(find_partitions(sys.path(), "ztos-esp-x")
            .unwrap()
            .is_empty());
        let err = find_partitions(&sys.path().join("nope"), "ztos-esp").unwrap_err();
        assert!(err.to_string().contains("nope"), "{err}");
    }

    #[test]
    fn the_lock_is_exclusive_and_released_on_drop() {
        let dir = tempfile::tempdir().unwrap();
        let lock_path = dir.path().join("run/esp.lock");
        let first = EspMount::lock_dir(dir.path(), &lock_path, Duration::ZERO).unwrap();
        assert_eq!(first.path(), dir.path());
        let err =
            EspMount::lock_dir(dir.path(), &lock_path, Duration::from_millis(120)).unwrap_err();
        assert!(matches!(err, EspMountError::Busy { .. }), "{err}");
        assert!(err.to_string().contains("esp.lock"), "{err}");
        drop(first);
        EspMount::lock_dir(dir.path(), &lock_path, Duration::ZERO).unwrap();
    }

    /// Root only (the test suite runs as root): a real vfat ESP written by the image
    /// builder's writer, attached to a loop device, mounted, read and written through
    /// `slots`, and unmounted on drop.
    #[test]
    fn a_real_vfat_esp_is_mounted_used_and_unmounted() {
        if !nix::unistd::geteuid().is_root() {
            eprintln!("skipped: needs root for losetup and mount");
            return;
        }
        let filesystems = fs::read_to_string("/proc/filesystems").unwrap_or_default();
        if !filesystems
            .lines()
            .any(|l| l.trim_end().ends_with("\tvfat"))
        {
            eprintln!("skipped: this kernel has no vfat (not in /proc/filesystems)");
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let image = dir.path().join("esp.img");
        let file = File::options()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&image)
            .unwrap();
        let size = 64 * 1024 * 1024;
        file.set_len(size).unwrap();
        let mut files = BTreeMap::new();
        files.insert(
            "loader/loader.conf".to_string(),
            crate::bootloader::loader_conf().into_bytes(),
        );
        files.insert(
            "loader/entries/ztos-1-a.conf".to_string(),
            crate::bootloader::boot_entry(crate::layout::Slot::A, "0.1.0").into_bytes(),
        );
        files.insert("ztos-a/vmlinuz".to_string(), b"kernel".to_vec());
        crate::esp::write_esp(
            crate::disk_io::PartitionIo::new(&file, 0, size),
            1,
            0,
            &files,
        )
        .unwrap();
        drop(file);
        let output = Command::new("losetup")
            .args(["--find", "--show"])
            .arg(&image)
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "losetup: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        let device = PathBuf::from(String::from_utf8(output.stdout).unwrap().trim());
        let detach = scopeguard(device.clone());
        let target = dir.path().join("mnt");
        let lock_path = dir.path().join("esp.lock");
        let esp = EspMount::mount_device(&device, &target, &lock_path, Duration::ZERO).unwrap();
        assert!(is_mount_point(&target).unwrap());
        let state = crate::slots::read_boot_state(esp.path()).unwrap();
        assert_eq!(state.next_boot(), Some(crate::layout::Slot::A));
        fs::write(dir.path().join("k"), b"kernel b").unwrap();
        crate::slots::install_trial(
            esp.path(),
            crate::layout::Slot::A,
            crate::layout::Slot::B,
            "0.2.0",
            &dir.path().join("k"),
            &dir.path().join("k"),
            3,
        )
        .unwrap();
        // Held: a second writer waits and gives up.
        let busy = EspMount::mount_device(&device, &target, &lock_path, Duration::from_millis(100));
        assert!(matches!(busy, Err(EspMountError::Busy { .. })));
        drop(esp);
        assert!(!is_mount_point(&target).unwrap());
        // Mounted again, the update is there (synced through the unmount).
        let esp = EspMount::mount_device(&device, &target, &lock_path, Duration::ZERO).unwrap();
        let state = crate::slots::read_boot_state(esp.path()).unwrap();
        assert_eq!(state.next_boot(), Some(crate::layout::Slot::B));
        assert_eq!(
            state
                .entries
                .iter()
                .map(|e| e.file_name())
                .collect::<Vec<_>>(),
            ["ztos-2-b+3.conf", "ztos-1-a.conf"]
        );
        esp.unmount().unwrap();
        assert!(!is_mount_point(&target).unwrap());
        drop(detach);
    }

    /// Detaches the loop device when the test ends, even when it fails.
    struct LoopGuard(PathBuf);
    fn scopeguard(device: PathBuf) -> LoopGuard {
        LoopGuard(device)
    }
    impl Drop for LoopGuard {
        fn drop(&mut self) {
            let _ = Command::new("losetup").arg("-d").arg(&self.0).status();
        }
    }
}
