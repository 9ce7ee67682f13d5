//! The initramfs stage: from the kernel's first process in the initramfs to the slot's
//! read-only root mounted at /sysroot, then switch_root and exec of the root's ztos-init.

use std::path::{Path, PathBuf};
use std::time::Duration;

use ztos_image::layout::{Slot, SlotLayout, PERM_LABEL};

use super::steps::{ensure_mounted, find_partition_by_label, load_module_list, BootLog, MountSpec};
use super::syscalls::{GrowOutcome, MsFlags, Syscalls};
use super::{parse_cmdline, BootError, MODULES_LOAD, ROOT_INIT, SYSROOT};

/// How long the initramfs waits for the slot's root partition to appear.
pub const ROOT_WAIT_TIMEOUT: Duration = Duration::from_secs(10);

/// The kernel filesystems the initramfs needs; they are moved into the root before
/// switch_root so the system stage finds them mounted.
const INITRAMFS_MOUNTS: [MountSpec; 3] = [
    MountSpec {
        source: "devtmpfs",
        target: "/dev",
        fstype: "devtmpfs",
        flags: MsFlags::MS_NOSUID,
        data: Some("mode=0755"),
    },
    MountSpec {
        source: "proc",
        target: "/proc",
        fstype: "proc",
        flags: MsFlags::MS_NOSUID
            .union(MsFlags::MS_NODEV)
            .union(MsFlags::MS_NOEXEC),
        data: None,
    },
    MountSpec {
        source: "sysfs",
        target: "/sys",
        fstype: "sysfs",
        flags: MsFlags::MS_NOSUID
            .union(MsFlags::MS_NODEV)
            .union(MsFlags::MS_NOEXEC),
        data: None,
    },
];

/// The slot root, mounted at /sysroot and ready for [`switch_to_root`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RootHandoff {
    pub slot: Slot,
    pub debug: bool,
    /// The root's block device (`/dev/vda2`).
    pub root_device: String,
    /// `squashfs` or `erofs`.
    pub root_fstype: &'static str,
    /// Best-effort steps that failed (modules, moving mounts), also printed on the console.
    pub warnings: Vec<String>,
}

/// The initramfs stage with the default root wait ([`ROOT_WAIT_TIMEOUT`]). In order:
///
/// 1. mount devtmpfs on /dev, proc on /proc, sysfs on /sys (fatal; EBUSY is fine);
/// 2. read /proc/cmdline: `ztos.slot=a|b` is required (fatal), `ztos.debug` optional;
/// 3. load the modules of the initramfs's `/etc/ztos/modules.load` (best effort);
/// 4. wait for the partition labelled `ztos-root-<slot>` (fatal after the timeout);
/// 5. mount it read-only on /sysroot as squashfs, else erofs (fatal);
/// 6. move /dev, /proc and /sys into /sysroot (best effort: the system stage mounts them
///    again if this fails).
///
/// The caller then calls [`switch_to_root`].
pub fn initramfs_stage(sys: &mut impl Syscalls) -> Result<RootHandoff, BootError> {
    initramfs_stage_with_timeout(sys, ROOT_WAIT_TIMEOUT)
}

/// [`initramfs_stage`] waiting at most `root_wait` for the root partition.
pub fn initramfs_stage_with_timeout(
    sys: &mut impl Syscalls,
    root_wait: Duration,
) -> Result<RootHandoff, BootError> {
    let mut log = BootLog::default();
    for spec in &INITRAMFS_MOUNTS {
        ensure_mounted(sys, &log, spec)?;
    }

    let cmdline_path = Path::new("/proc/cmdline");
    let cmdline = sys
        .read_file(cmdline_path)
        .map_err(|source| BootError::Read {
            path: cmdline_path.to_path_buf(),
            source,
        })?;
    let cmdline = parse_cmdline(&String::from_utf8_lossy(&cmdline))?;
    log.debug = cmdline.debug;
    log.step(sys, &format!("initramfs stage, slot {}", cmdline.slot));

    load_module_list(sys, &mut log, Path::new(MODULES_LOAD));

    let label = cmdline.slot.root_label();
    let mut root_device = find_partition_by_label(sys, label, root_wait)?;
    log.step(sys, &format!("root {label} is {root_device}"));
    if grow_perm(sys, &mut log, &root_device) {
        // The kernel re-read the table: the partitions' device nodes were made anew.
        root_device = find_partition_by_label(sys, label, root_wait)?;
    }

    let sysroot = Path::new(SYSROOT);
    sys.mkdir_p(sysroot, 0o755)
        .map_err(|source| BootError::CreateDirectory {
            path: sysroot.to_path_buf(),
            source,
        })?;
    let root_fstype = mount_root(sys, &root_device, sysroot)?;
    log.step(
        sys,
        &format!("mounted {root_device} ({root_fstype}) on {SYSROOT}"),
    );

    for spec in &INITRAMFS_MOUNTS {
        let target = sysroot.join(spec.target.trim_start_matches('/'));
        if let Err(error) = sys.mount(spec.target, &target, "", MsFlags::MS_MOVE, None) {
            log.warn(
                sys,
                format!("move {} to {}: {error}", spec.target, target.display()),
            );
        }
    }

    Ok(RootHandoff {
        slot: cmdline.slot,
        debug: cmdline.debug,
        root_device,
        root_fstype,
        warnings: log.warnings,
    })
}

/// Grows `ztos-perm` to the end of its disk when that is the root's disk, before anything on
/// the disk is mounted (the kernel re-reads a partition table only while no partition is in
/// use). Best effort: a failure is a warning, and perm keeps its size. Whether the kernel
/// re-read the table.
fn grow_perm(sys: &mut impl Syscalls, log: &mut BootLog, root_device: &str) -> bool {
    let Ok(perm_device) = find_partition_by_label(sys, PERM_LABEL, Duration::ZERO) else {
        // The system stage waits for it and reports it missing.
        log.step(sys, &format!("no {PERM_LABEL} yet; not growing it"));
        return false;
    };
    let (Some(root_disk), Some(perm_disk)) =
        (disk_of(sys, root_device), disk_of(sys, &perm_device))
    else {
        log.warn(
            sys,
            format!("grow {PERM_LABEL}: no disk in /sys/class/block holds {root_device} and {perm_device}"),
        );
        return false;
    };
    if root_disk != perm_disk {
        // Another disk (an installer stick next to the installed disk) is not ours to change.
        log.warn(
            sys,
            format!("grow {PERM_LABEL}: {perm_device} is not on the root's disk {root_disk}; left as it is"),
        );
        return false;
    }
    match sys.grow_partition(Path::new(&root_disk), PERM_LABEL) {
        Ok(GrowOutcome::AlreadyFull { .. }) => {
            log.step(sys, &format!("{PERM_LABEL} already fills {root_disk}"));
            false
        }
        Ok(GrowOutcome::Grown {
            old_last_lba,
            new_last_lba,
            backup_moved,
        }) => {
            sys.console(&format!(
                "ztos-init: grew {PERM_LABEL} ({perm_device}) to the end of {root_disk}: last sector {old_last_lba} -> {new_last_lba}{}",
                if backup_moved { ", backup GPT moved to the end of the disk" } else { "" }
            ));
            true
        }
        Err(error) => {
            log.warn(sys, format!("grow {PERM_LABEL} on {root_disk}: {error}"));
            false
        }
    }
}

/// The whole-disk device (`/dev/vda`) holding the partition `device` (`/dev/vda4`): the
/// `/sys/class/block` entry of type disk that has the partition as a child directory.
fn disk_of(sys: &mut impl Syscalls, device: &str) -> Option<String> {
    let partition = device.strip_prefix("/dev/")?;
    let class = Path::new("/sys/class/block");
    for name in sys.read_dir(class).ok()? {
        let Ok(uevent) = sys.read_file(&class.join(&name).join("uevent")) else {
            continue;
        };
        let is_disk = String::from_utf8_lossy(&uevent)
            .lines()
            .any(|line| line == "DEVTYPE=disk");
        if is_disk && sys.exists(&class.join(&name).join(partition)) {
            return Some(format!("/dev/{name}"));
        }
    }
    None
}

/// Mounts the root read-only: squashfs first, then erofs.
fn mount_root(
    sys: &mut impl Syscalls,
    device: &str,
    sysroot: &Path,
) -> Result<&'static str, BootError> {
    let flags = MsFlags::MS_RDONLY | MsFlags::MS_NODEV;
    let squashfs = match sys.mount(device, sysroot, "squashfs", flags, None) {
        Ok(()) => return Ok("squashfs"),
        Err(error) => error,
    };
    let erofs = match sys.mount(device, sysroot, "erofs", flags, None) {
        Ok(()) => return Ok("erofs"),
        Err(error) => error,
    };
    Err(BootError::RootMount {
        device: device.to_string(),
        squashfs,
        erofs,
    })
}

/// What [`free_initramfs`] removed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InitramfsFreed {
    /// Entries (files, symlinks, directories) removed.
    pub removed: usize,
    /// Entries that could not be removed, with the reason; the boot goes on.
    pub failures: Vec<String>,
}

/// Deletes the initramfs's files so the kernel returns their memory: a ramfs or tmpfs root
/// keeps every file in RAM until it is unlinked, and after switch_root nothing can reach them
/// any more. Like busybox's switch_root and util-linux's, this walks `/` depth first and never
/// crosses into another filesystem: an entry whose device differs from `/`'s (the slot root on
/// /sysroot, anything still mounted) is left alone, and so is `keep`. `/` itself stays.
///
/// Refuses (and removes nothing) unless `/` is a ramfs or tmpfs, so it can never empty a real
/// root. Best effort: an entry that cannot be removed is counted in
/// [`InitramfsFreed::failures`] and the walk goes on.
pub fn free_initramfs(sys: &mut impl Syscalls, keep: &Path) -> Result<InitramfsFreed, String> {
    match sys.root_is_initramfs() {
        Ok(true) => {}
        Ok(false) => return Err("/ is not a ramfs or tmpfs; nothing removed".to_string()),
        Err(error) => return Err(format!("statfs /: {error}; nothing removed")),
    }
    let root = Path::new("/");
    let device = sys
        .entry_info(root)
        .map_err(|error| format!("lstat /: {error}; nothing removed"))?
        .device;
    let mut freed = InitramfsFreed::default();
    remove_children(sys, root, device, keep, &mut freed);
    Ok(freed)
}

/// Removes what `dir` holds on `device`, depth first; `dir` itself stays.
fn remove_children(
    sys: &mut impl Syscalls,
    dir: &Path,
    device: u64,
    keep: &Path,
    freed: &mut InitramfsFreed,
) {
    let names = match sys.read_dir(dir) {
        Ok(names) => names,
        Err(error) => {
            freed
                .failures
                .push(format!("read directory {}: {error}", dir.display()));
            return;
        }
    };
    for name in names {
        let path = dir.join(name);
        if path == keep {
            continue;
        }
        let info = match sys.entry_info(&path) {
            Ok(info) => info,
            Err(error) => {
                freed
                    .failures
                    .push(format!("lstat {}: {error}", path.display()));
                continue;
            }
        };
        if info.device != device {
            // A mount point: another filesystem, not ours to empty.
            continue;
        }
        if info.is_dir {
            remove_children(sys, &path, device, keep, freed);
        }
        match sys.remove(&path, info.is_dir) {
            Ok(()) => freed.removed += 1,
            Err(error) => freed
                .failures
                .push(format!("remove {}: {error}", path.display())),
        }
    }
}

/// Frees the initramfs ([`free_initramfs`], best effort: a failure is a warning), switches to
/// /sysroot and executes the root's `/usr/bin/ztos-init` without arguments; it runs as PID 1
/// again and finds itself in the system stage because `/` is no longer a ramfs/tmpfs. Returns
/// only on failure.
pub fn switch_to_root(sys: &mut impl Syscalls, handoff: &RootHandoff) -> BootError {
    let new_root = PathBuf::from(SYSROOT);
    match free_initramfs(sys, &new_root) {
        Ok(freed) => {
            if handoff.debug {
                sys.console(&format!(
                    "ztos-init: freed the initramfs ({} entries removed)",
                    freed.removed
                ));
            }
            if !freed.failures.is_empty() {
                sys.console(&format!(
                    "ztos-init: warning: {} initramfs entries could not be removed (first: {})",
                    freed.failures.len(),
                    freed.failures[0]
                ));
            }
        }
        Err(reason) => sys.console(&format!(
            "ztos-init: warning: initramfs not freed: {reason}"
        )),
    }
    if handoff.debug {
        sys.console(&format!(
            "ztos-init: switch_root to {SYSROOT}, exec {ROOT_INIT}"
        ));
    }
    if let Err(source) = sys.switch_root(&new_root) {
        return BootError::SwitchRoot { new_root, source };
    }
    let path = PathBuf::from(ROOT_INIT);
    let source = sys.exec(&path, &[]);
    BootError::Exec { path, source }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::boot::RecordingSyscalls;
    use nix::errno::Errno;

    const ROOT_UEVENT: &str =
        "MAJOR=254\nMINOR=2\nDEVNAME=vda2\nDEVTYPE=partition\nPARTN=2\nPARTNAME=ztos-root-a\n";

    fn initramfs(cmdline: &str) -> RecordingSyscalls {
        let mut sys = RecordingSyscalls::initramfs();
        sys.add_file("/proc/cmdline", cmdline);
        sys.add_file(
            MODULES_LOAD,
            "kernel/drivers/block/virtio_blk.ko\nkernel/fs/squashfs/squashfs.ko\n",
        );
        sys.add_file(
            "/sys/class/block/vda/uevent",
            "MAJOR=254\nMINOR=0\nDEVNAME=vda\nDEVTYPE=disk\n",
        );
        sys.add_file("/sys/class/block/vda2/uevent", ROOT_UEVENT);
        sys.add_file(
            "/sys/class/block/vda3/uevent",
            "DEVNAME=vda3\nDEVTYPE=partition\nPARTNAME=ztos-root-b\n",
        );
        sys.add_file("/dev/vda2", "");
        sys.add_file("/dev/vda3", "");
        sys
    }

    #[test]
    fn boot_initramfs_good_boot_makes_exactly_these_calls() {
        let mut sys = initramfs("console=ttyS0 ztos.slot=a quiet\n");
        let handoff = initramfs_stage(&mut sys).unwrap();
        assert_eq!(
            handoff,
            RootHandoff {
                slot: Slot::A,
                debug: false,
                root_device: "/dev/vda2".into(),
                root_fstype: "squashfs",
                warnings: vec![],
            }
        );
        let error = switch_to_root(&mut sys, &handoff);
        assert!(matches!(error, BootError::Exec { .. }), "{error}");
        // Between the moves and switch_root the initramfs is emptied (its exact walk is
        // checked by the free_initramfs tests); nothing under /sysroot is touched.
        let effects: Vec<String> = sys
            .effects()
            .into_iter()
            .filter(|call| {
                let removal = call.starts_with("unlink ") || call.starts_with("rmdir ");
                assert!(!(removal && call.contains("/sysroot")), "{call}");
                !removal
            })
            .collect();
        assert!(!sys.has_entry("/proc/cmdline"));
        assert!(!sys.has_entry(MODULES_LOAD));
        assert_eq!(
            effects,
            vec![
                "mkdir_p /dev",
                "mount devtmpfs /dev devtmpfs MS_NOSUID mode=0755",
                "mkdir_p /proc",
                "mount proc /proc proc MS_NOSUID|MS_NODEV|MS_NOEXEC",
                "mkdir_p /sys",
                "mount sysfs /sys sysfs MS_NOSUID|MS_NODEV|MS_NOEXEC",
                "load_module /lib/modules/6.1.0-test/kernel/drivers/block/virtio_blk.ko",
                "load_module /lib/modules/6.1.0-test/kernel/fs/squashfs/squashfs.ko",
                "mkdir_p /sysroot",
                "mount /dev/vda2 /sysroot squashfs MS_RDONLY|MS_NODEV",
                "mount /dev /sysroot/dev  MS_MOVE",
                "mount /proc /sysroot/proc  MS_MOVE",
                "mount /sys /sysroot/sys  MS_MOVE",
                "switch_root /sysroot",
                "exec /usr/bin/ztos-init",
            ]
        );
    }

    /// The initramfs as the kernel unpacked it, at the moment of switch_root: the slot root
    /// on /sysroot, /dev /proc /sys already moved into it.
    fn initramfs_at_switch_root() -> RecordingSyscalls {
        let mut sys = RecordingSyscalls::initramfs();
        sys.add_file("/init", "ztos-init");
        sys.add_file("/dev/console", "");
        sys.add_directory("/proc");
        sys.add_directory("/sys");
        sys.add_file(MODULES_LOAD, "kernel/fs/squashfs/squashfs.ko\n");
        sys.add_file(
            "/lib/modules/6.1.0-test/kernel/fs/squashfs/squashfs.ko",
            "ko",
        );
        sys.add_file("/lib/x86_64-linux-gnu/libc.so.6", "libc");
        sys.symlink(Path::new("lib"), Path::new("/lib64")).unwrap();
        sys.add_mount("/dev/vda2", "/sysroot", "squashfs");
        sys.add_file("/sysroot/usr/bin/ztos-init", "ztos-init");
        sys.add_mount("devtmpfs", "/sysroot/dev", "devtmpfs");
        sys.add_file("/sysroot/dev/vda2", "");
        sys
    }

    #[test]
    fn boot_initramfs_free_removes_every_file_depth_first_and_keeps_sysroot() {
        let mut sys = initramfs_at_switch_root();
        let freed = free_initramfs(&mut sys, Path::new(SYSROOT)).unwrap();
        assert_eq!(freed.failures, Vec::<String>::new());
        let removals: Vec<String> = sys
            .effects()
            .into_iter()
            .filter(|call| call.starts_with("unlink ") || call.starts_with("rmdir "))
            .collect();
        assert_eq!(
            removals,
            vec![
                "unlink /dev/console",
                "rmdir /dev",
                "unlink /etc/ztos/modules.load",
                "rmdir /etc/ztos",
                "rmdir /etc",
                "unlink /init",
                "unlink /lib/modules/6.1.0-test/kernel/fs/squashfs/squashfs.ko",
                "rmdir /lib/modules/6.1.0-test/kernel/fs/squashfs",
                "rmdir /lib/modules/6.1.0-test/kernel/fs",
                "rmdir /lib/modules/6.1.0-test/kernel",
                "rmdir /lib/modules/6.1.0-test",
                "rmdir /lib/modules",
                "unlink /lib/x86_64-linux-gnu/libc.so.6",
                "rmdir /lib/x86_64-linux-gnu",
                "rmdir /lib",
                "unlink /lib64",
                "rmdir /proc",
                "rmdir /sys",
            ]
        );
        assert_eq!(freed.removed, removals.len());
        // The slot root and what is mounted in it are untouched.
        assert!(sys.has_entry("/sysroot/usr/bin/ztos-init"));
        assert!(sys.has_entry("/sysroot/dev/vda2"));
        assert!(sys.has_entry("/sysroot"));
    }

    #[test]
    fn boot_initramfs_free_does_not_cross_into_other_mounts() {
        let mut sys = initramfs_at_switch_root();
        // Something still mounted inside the initramfs (not moved): left alone, and its
        // mount point with it.
        sys.add_mount("tmpfs", "/run", "tmpfs");
        sys.add_file("/run/keep", "x");
        let freed = free_initramfs(&mut sys, Path::new(SYSROOT)).unwrap();
        assert!(freed.failures.is_empty(), "{:?}", freed.failures);
        assert!(sys.has_entry("/run/keep"));
        assert!(!sys.has_entry("/init"));
        assert!(!sys
            .effects()
            .iter()
            .any(|call| call.contains("/run") || call.contains("/sysroot")));
    }

    #[test]
    fn boot_initramfs_free_failures_are_counted_and_the_walk_goes_on() {
        let mut sys = initramfs_at_switch_root();
        sys.fail_remove("/init", Errno::EPERM);
        let freed = free_initramfs(&mut sys, Path::new(SYSROOT)).unwrap();
        assert_eq!(freed.failures.len(), 1, "{:?}", freed.failures);
        assert!(
            freed.failures[0].starts_with("remove /init:"),
            "{:?}",
            freed
        );
        assert!(!sys.has_entry(MODULES_LOAD));
        assert!(!sys.has_entry("/lib64"));

        // switch_to_root warns about it on the console and still switches.
        let mut sys = initramfs_at_switch_root();
        sys.fail_remove("/init", Errno::EPERM);
        let handoff = RootHandoff {
            slot: Slot::A,
            debug: false,
            root_device: "/dev/vda2".into(),
            root_fstype: "squashfs",
            warnings: vec![],
        };
        let error = switch_to_root(&mut sys, &handoff);
        assert!(matches!(error, BootError::Exec { .. }), "{error}");
        assert!(sys
            .console_lines()
            .iter()
            .any(|line| line.contains("1 initramfs entries could not be removed")));
        assert!(sys
            .calls()
            .iter()
            .any(|call| call == "switch_root /sysroot"));
    }

    #[test]
    fn boot_initramfs_free_refuses_a_real_root() {
        let mut sys = RecordingSyscalls::root_filesystem();
        sys.add_file("/usr/bin/ztos-init", "x");
        let error = free_initramfs(&mut sys, Path::new(SYSROOT)).unwrap_err();
        assert_eq!(error, "/ is not a ramfs or tmpfs; nothing removed");
        assert!(sys.has_entry("/usr/bin/ztos-init"));
        assert!(!sys
            .effects()
            .iter()
            .any(|call| call.starts_with("unlink") || call.starts_with("rmdir")));
    }

    /// `initramfs` with perm on vda4 of the same disk as the root.
    fn initramfs_with_perm(cmdline: &str) -> RecordingSyscalls {
        let mut sys = initramfs(cmdline);
        sys.add_file(
            "/sys/class/block/vda4/uevent",
            "DEVNAME=vda4\nDEVTYPE=partition\nPARTNAME=ztos-perm\n",
        );
        sys.add_file("/dev/vda4", "");
        sys.add_file("/dev/vda", "");
        for partition in ["vda2", "vda3", "vda4"] {
            sys.add_directory(format!("/sys/class/block/vda/{partition}"));
        }
        sys
    }

    #[test]
    fn boot_initramfs_grows_perm_on_the_root_disk_before_mounting_the_root() {
        let mut sys = initramfs_with_perm("ztos.slot=a");
        sys.set_grow_result(
            "/dev/vda",
            Ok(GrowOutcome::Grown {
                old_last_lba: 2887679,
                new_last_lba: 4192255,
                backup_moved: true,
            }),
        );
        let handoff = initramfs_stage(&mut sys).unwrap();
        assert!(handoff.warnings.is_empty(), "{:?}", handoff.warnings);
        let effects = sys.effects();
        let grow = effects
            .iter()
            .position(|c| c == "grow_partition /dev/vda ztos-perm")
            .unwrap();
        let mount_root = effects
            .iter()
            .position(|c| c.starts_with("mount /dev/vda2 /sysroot"))
            .unwrap();
        assert!(grow < mount_root, "{effects:?}");
        assert!(sys.console_lines().contains(
            &"ztos-init: grew ztos-perm (/dev/vda4) to the end of /dev/vda: last sector 2887679 -> 4192255, backup GPT moved to the end of the disk".to_string()
        ), "{:?}", sys.console_lines());

        // Already full: nothing on the console, the boot goes on.
        let mut sys = initramfs_with_perm("ztos.slot=a");
        initramfs_stage(&mut sys).unwrap();
        assert!(sys
            .effects()
            .contains(&"grow_partition /dev/vda ztos-perm".to_string()));
        assert!(sys.console_lines().is_empty(), "{:?}", sys.console_lines());
    }

    #[test]
    fn boot_initramfs_a_failed_grow_is_a_warning() {
        let mut sys = initramfs_with_perm("ztos.slot=a");
        sys.set_grow_result("/dev/vda", Err(Errno::EBUSY));
        let handoff = initramfs_stage(&mut sys).unwrap();
        assert_eq!(handoff.root_device, "/dev/vda2");
        assert_eq!(handoff.warnings.len(), 1, "{:?}", handoff.warnings);
        assert!(
            handoff.warnings[0].starts_with("grow ztos-perm on /dev/vda: ")
                && handoff.warnings[0].contains("busy"),
            "{:?}",
            handoff.warnings
        );
    }

    #[test]
    fn boot_initramfs_perm_on_another_disk_is_left_alone() {
        let mut sys = initramfs("ztos.slot=a");
        sys.add_file("/sys/class/block/vdb/uevent", "DEVNAME=vdb\nDEVTYPE=disk\n");
        sys.add_file(
            "/sys/class/block/vdb1/uevent",
            "DEVNAME=vdb1\nDEVTYPE=partition\nPARTNAME=ztos-perm\n",
        );
        sys.add_file("/dev/vdb1", "");
        sys.add_directory("/sys/class/block/vda/vda2");
        sys.add_directory("/sys/class/block/vdb/vdb1");
        let handoff = initramfs_stage(&mut sys).unwrap();
        assert!(!sys
            .effects()
            .iter()
            .any(|c| c.starts_with("grow_partition")));
        assert_eq!(
            handoff.warnings,
            vec!["grow ztos-perm: /dev/vdb1 is not on the root's disk /dev/vda; left as it is"]
        );
    }

    #[test]
    fn boot_initramfs_already_mounted_or_busy_is_fine() {
        let mut sys = initramfs("ztos.slot=b");
        // devtmpfs was mounted by the kernel (CONFIG_DEVTMPFS_MOUNT does not apply to an
        // initramfs, but a rerun finds it); sysfs answers EBUSY.
        sys.add_mount("devtmpfs", "/dev", "devtmpfs");
        sys.add_mount("proc", "/proc", "proc");
        sys.fail_mount("/sys", Errno::EBUSY);
        let handoff = initramfs_stage(&mut sys).unwrap();
        assert_eq!(handoff.root_device, "/dev/vda3");
        let effects = sys.effects();
        assert!(
            !effects.iter().any(|c| c.starts_with("mount devtmpfs")),
            "{effects:?}"
        );
        assert!(
            !effects.iter().any(|c| c.starts_with("mount proc")),
            "{effects:?}"
        );
        assert!(
            effects.iter().any(|c| c.starts_with("mount sysfs /sys")),
            "{effects:?}"
        );
    }

    #[test]
    fn boot_initramfs_other_mount_errors_are_fatal() {
        let mut sys = initramfs("ztos.slot=a");
        sys.fail_mount("/proc", Errno::ENODEV);
        let message = initramfs_stage(&mut sys).unwrap_err().to_string();
        assert!(
            message.starts_with("mount proc proc on /proc:"),
            "{message}"
        );
    }

    #[test]
    fn boot_initramfs_without_slot_fails_naming_the_key() {
        let mut sys = initramfs("console=ttyS0\n");
        let error = initramfs_stage(&mut sys).unwrap_err();
        assert!(error.to_string().contains("ztos.slot"), "{error}");
        assert!(!sys.effects().iter().any(|c| c.starts_with("load_module")));
    }

    #[test]
    fn boot_initramfs_root_not_found_names_the_label_after_the_timeout() {
        let mut sys = initramfs("ztos.slot=a");
        sys.remove_file("/sys/class/block/vda2/uevent");
        let error = initramfs_stage_with_timeout(&mut sys, Duration::from_secs(2)).unwrap_err();
        assert_eq!(
            error.to_string(),
            "no partition labelled ztos-root-a appeared in /sys/class/block within 2 s"
        );
        assert_eq!(sys.slept(), Duration::from_secs(2));
        assert!(!sys.effects().iter().any(|c| c.starts_with("switch_root")));
    }

    #[test]
    fn boot_initramfs_waits_for_a_late_root_partition() {
        let mut sys = initramfs("ztos.slot=a");
        sys.remove_file("/sys/class/block/vda2/uevent");
        sys.add_file_after(
            Duration::from_millis(1500),
            "/sys/class/block/vda2/uevent",
            ROOT_UEVENT,
        );
        let handoff = initramfs_stage(&mut sys).unwrap();
        assert_eq!(handoff.root_device, "/dev/vda2");
        assert_eq!(sys.slept(), Duration::from_millis(1500));
    }

    #[test]
    fn boot_initramfs_falls_back_to_erofs_and_reports_both_errors() {
        let mut sys = initramfs("ztos.slot=a");
        sys.fail_mount_fstype("/sysroot", "squashfs", Errno::EINVAL);
        let handoff = initramfs_stage(&mut sys).unwrap();
        assert_eq!(handoff.root_fstype, "erofs");

        let mut sys = initramfs("ztos.slot=a");
        sys.fail_mount_fstype("/sysroot", "squashfs", Errno::EINVAL);
        sys.fail_mount_fstype("/sysroot", "erofs", Errno::ENODEV);
        let message = initramfs_stage(&mut sys).unwrap_err().to_string();
        assert!(
            message.starts_with("mount root /dev/vda2 read-only"),
            "{message}"
        );
        assert!(
            message.contains("Invalid argument") && message.contains("No such device"),
            "{message}"
        );
    }

    #[test]
    fn boot_initramfs_module_failures_warn_and_the_boot_goes_on() {
        let mut sys = initramfs("ztos.slot=a");
        sys.fail_module(
            "/lib/modules/6.1.0-test/kernel/drivers/block/virtio_blk.ko",
            Errno::EEXIST,
        );
        sys.fail_module(
            "/lib/modules/6.1.0-test/kernel/fs/squashfs/squashfs.ko",
            Errno::ENOEXEC,
        );
        let handoff = initramfs_stage(&mut sys).unwrap();
        assert_eq!(handoff.warnings.len(), 1, "{:?}", handoff.warnings);
        assert!(handoff.warnings[0].contains("squashfs.ko"));
        assert!(sys
            .console_lines()
            .iter()
            .any(|line| line.contains("warning: load module") && line.contains("squashfs.ko")));
    }
}
