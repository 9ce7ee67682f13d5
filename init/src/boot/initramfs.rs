//! The initramfs stage: from the kernel's first process in the initramfs to the slot's
//! read-only root mounted at /sysroot, then switch_root and exec of the root's ztos-init.

use std::path::{Path, PathBuf};
use std::time::Duration;

use ztos_image::layout::Slot;

use super::steps::{ensure_mounted, find_partition_by_label, load_module_list, BootLog, MountSpec};
use super::syscalls::{MsFlags, Syscalls};
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
    let root_device = find_partition_by_label(sys, label, root_wait)?;
    log.step(sys, &format!("root {label} is {root_device}"));

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

/// Switches to /sysroot and executes the root's `/usr/bin/ztos-init` without arguments; it
/// runs as PID 1 again and finds itself in the system stage because `/` is no longer a
/// ramfs/tmpfs. Returns only on failure.
pub fn switch_to_root(sys: &mut impl Syscalls, handoff: &RootHandoff) -> BootError {
    if handoff.debug {
        sys.console(&format!(
            "ztos-init: switch_root to {SYSROOT}, exec {ROOT_INIT}"
        ));
    }
    let new_root = PathBuf::from(SYSROOT);
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
        assert_eq!(
            sys.effects(),
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
