//! The system stage: PID 1 in the slot's read-only root prepares the machine for the
//! supervisor: kernel filesystems, /run and /tmp, the persistent partition (checked, grown on
//! first use, or replaced by a tmpfs when it cannot be repaired), hostname, loopback, random
//! seed, feature modules and the hardware watchdog.

use std::fmt;
use std::path::Path;
use std::time::Duration;

use ztos_image::layout::{Slot, PERM_DEGRADED_FILE, PERM_LABEL, PERM_MOUNT, RUN_DIR};

use super::steps::{ensure_mounted, find_partition_by_label, load_module_list, BootLog, MountSpec};
use super::syscalls::{MsFlags, Syscalls, Watchdog};
use super::{
    parse_cmdline, BootError, DEFAULT_HOSTNAME, E2FSCK, HOSTNAME_FILE, MODULES_LOAD, PERM_MARKER,
    RANDOM_SEED, RESIZE2FS, RUN_HOSTNAME, RUN_RESOLV_CONF, WATCHDOG_DEVICE,
};

/// How long the system stage waits for the perm partition; it is on the disk the root came
/// from, so it is normally there at once.
pub const PERM_WAIT_TIMEOUT: Duration = Duration::from_secs(5);

/// The size of the random seed kept in perm.
const RANDOM_SEED_BYTES: usize = 512;

const NOSUID_NODEV_NOEXEC: MsFlags = MsFlags::MS_NOSUID
    .union(MsFlags::MS_NODEV)
    .union(MsFlags::MS_NOEXEC);

/// Mounts without which the box cannot run: a failure is fatal.
const ESSENTIAL_MOUNTS: [MountSpec; 5] = [
    MountSpec {
        source: "proc",
        target: "/proc",
        fstype: "proc",
        flags: NOSUID_NODEV_NOEXEC,
        data: None,
    },
    MountSpec {
        source: "sysfs",
        target: "/sys",
        fstype: "sysfs",
        flags: NOSUID_NODEV_NOEXEC,
        data: None,
    },
    MountSpec {
        source: "devtmpfs",
        target: "/dev",
        fstype: "devtmpfs",
        flags: MsFlags::MS_NOSUID,
        data: Some("mode=0755"),
    },
    MountSpec {
        source: "tmpfs",
        target: "/run",
        fstype: "tmpfs",
        flags: MsFlags::MS_NOSUID.union(MsFlags::MS_NODEV),
        data: Some("mode=0755"),
    },
    MountSpec {
        source: "tmpfs",
        target: "/tmp",
        fstype: "tmpfs",
        flags: MsFlags::MS_NOSUID.union(MsFlags::MS_NODEV),
        data: Some("mode=1777"),
    },
];

/// Mounts the box runs without, with a warning.
const OPTIONAL_MOUNTS: [MountSpec; 3] = [
    MountSpec {
        source: "devpts",
        target: "/dev/pts",
        fstype: "devpts",
        flags: MsFlags::MS_NOSUID.union(MsFlags::MS_NOEXEC),
        data: Some("mode=0620,ptmxmode=0666"),
    },
    MountSpec {
        source: "tmpfs",
        target: "/dev/shm",
        fstype: "tmpfs",
        flags: MsFlags::MS_NOSUID.union(MsFlags::MS_NODEV),
        data: Some("mode=1777"),
    },
    MountSpec {
        source: "cgroup2",
        target: "/sys/fs/cgroup",
        fstype: "cgroup2",
        flags: NOSUID_NODEV_NOEXEC,
        data: Some("nsdelegate"),
    },
];

/// What the system stage leaves for the supervisor and the shutdown.
pub struct SystemState {
    /// The booted slot, when the command line names it.
    pub slot: Option<Slot>,
    pub debug: bool,
    /// The perm partition's device (`/dev/vda4`), when found.
    pub perm_device: Option<String>,
    /// Why /perm is a tmpfs instead of the partition; `None` when perm is the partition.
    pub perm_degraded: Option<String>,
    pub hostname: String,
    /// The open hardware watchdog, if the machine has one.
    pub watchdog: Option<Box<dyn Watchdog>>,
    /// Best-effort steps that failed, also printed on the console.
    pub warnings: Vec<String>,
}

impl fmt::Debug for SystemState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SystemState")
            .field("slot", &self.slot)
            .field("debug", &self.debug)
            .field("perm_device", &self.perm_device)
            .field("perm_degraded", &self.perm_degraded)
            .field("hostname", &self.hostname)
            .field("watchdog", &self.watchdog.is_some())
            .field("warnings", &self.warnings)
            .finish()
    }
}

/// The system stage with the default perm wait ([`PERM_WAIT_TIMEOUT`]). In order:
///
/// 1. mount proc, sysfs, devtmpfs, /run (tmpfs 0755), /tmp (tmpfs 1777) — fatal; then
///    /dev/pts, /dev/shm and cgroup2 on /sys/fs/cgroup — best effort. Mount points that are
///    already mounts (moved from the initramfs) are kept; EBUSY is fine;
/// 2. create /run/ztos and the targets of /etc's symlinks into /run (`/run/hostname`,
///    `/run/resolv.conf`);
/// 3. /perm: find `ztos-perm`, `e2fsck -p` it (exit 2 or 3: fatal, a reboot is needed; 4 and
///    up: degraded), mount it; grow it with `resize2fs` (every boot: the initramfs may have
///    grown the partition) and on first mount write the marker.
///    Degraded (partition missing, unrepairable or unmountable): tmpfs on /perm, the reason in
///    `perm_degraded`, on the console and in `/run/ztos/perm-degraded`;
/// 4. hostname from `/perm/ztos/hostname`, else "ztos" (best effort);
/// 5. loopback up (best effort);
/// 6. random seed: feed `/perm/random-seed` to /dev/urandom, write a fresh one (best effort);
/// 7. feature modules from the root's `/etc/ztos/modules.load` (best effort, one by one);
/// 8. open /dev/watchdog if present (best effort);
/// 9. reap zombies left by the tools above.
pub fn system_stage(sys: &mut impl Syscalls) -> Result<SystemState, BootError> {
    system_stage_with_timeout(sys, PERM_WAIT_TIMEOUT)
}

/// [`system_stage`] waiting at most `perm_wait` for the perm partition.
pub fn system_stage_with_timeout(
    sys: &mut impl Syscalls,
    perm_wait: Duration,
) -> Result<SystemState, BootError> {
    let mut log = BootLog::default();
    ensure_mounted(sys, &log, &ESSENTIAL_MOUNTS[0])?;
    // The command line was checked by the initramfs; here it only sets the verbosity.
    let cmdline = sys
        .read_file(Path::new("/proc/cmdline"))
        .ok()
        .and_then(|text| parse_cmdline(&String::from_utf8_lossy(&text)).ok());
    log.debug = cmdline.is_some_and(|c| c.debug);
    log.step(sys, "system stage");
    for spec in &ESSENTIAL_MOUNTS[1..] {
        ensure_mounted(sys, &log, spec)?;
    }
    for spec in &OPTIONAL_MOUNTS {
        if let Err(error) = ensure_mounted(sys, &log, spec) {
            log.warn(sys, error.to_string());
        }
    }

    for directory in [RUN_DIR, "/run/lock"] {
        if let Err(error) = sys.mkdir_p(Path::new(directory), 0o755) {
            log.warn(sys, format!("create directory {directory}: {error}"));
        }
    }
    if let Err(error) = sys.write_file(Path::new(RUN_RESOLV_CONF), b"") {
        log.warn(sys, format!("write {RUN_RESOLV_CONF}: {error}"));
    }

    let (perm_device, perm_degraded) = mount_perm(sys, &mut log, perm_wait)?;

    let hostname = set_hostname(sys, &mut log);

    log.step(sys, "loopback up");
    if let Err(error) = sys.set_loopback_up() {
        log.warn(sys, format!("set lo up: {error}"));
    }

    refresh_random_seed(sys, &mut log);

    load_module_list(sys, &mut log, Path::new(MODULES_LOAD));

    let watchdog = if sys.exists(Path::new(WATCHDOG_DEVICE)) {
        match sys.open_watchdog(Path::new(WATCHDOG_DEVICE)) {
            Ok(watchdog) => Some(watchdog),
            Err(error) => {
                log.warn(sys, format!("open {WATCHDOG_DEVICE}: {error}"));
                None
            }
        }
    } else {
        log.step(sys, &format!("no {WATCHDOG_DEVICE}"));
        None
    };

    sys.reap_zombies();
    Ok(SystemState {
        slot: cmdline.map(|c| c.slot),
        debug: log.debug,
        perm_device,
        perm_degraded,
        hostname,
        watchdog,
        warnings: log.warnings,
    })
}

/// Checks and mounts the perm partition; falls back to a tmpfs. Returns the device and, when
/// degraded, the reason.
fn mount_perm(
    sys: &mut impl Syscalls,
    log: &mut BootLog,
    perm_wait: Duration,
) -> Result<(Option<String>, Option<String>), BootError> {
    let perm = Path::new(PERM_MOUNT);
    let device = match find_partition_by_label(sys, PERM_LABEL, perm_wait) {
        Ok(device) => device,
        Err(error) => {
            let reason = error.to_string();
            mount_perm_tmpfs(sys, log, &reason)?;
            return Ok((None, Some(reason)));
        }
    };

    log.step(sys, &format!("e2fsck -p {device}"));
    match sys.run(Path::new(E2FSCK), &["-p", &device]) {
        // 0: clean; 1: errors corrected.
        Ok(0 | 1) => {}
        // 2 (or 3 = 1|2): corrected, and the system should be rebooted.
        Ok(code @ (2 | 3)) => {
            sys.sync();
            return Err(BootError::PermRepairedRebootNeeded { device, code });
        }
        Ok(code) => {
            let reason = format!("e2fsck -p {device} exited with code {code}: the filesystem needs manual repair or a reformat");
            mount_perm_tmpfs(sys, log, &reason)?;
            return Ok((Some(device), Some(reason)));
        }
        // Without e2fsck the filesystem is mounted unchecked: ext4's journal still replays.
        Err(error) => log.warn(
            sys,
            format!("run {E2FSCK}: {error}; mounting {device} unchecked"),
        ),
    }

    if let Err(error) = sys.mkdir_p(perm, 0o755) {
        log.warn(sys, format!("create directory {PERM_MOUNT}: {error}"));
    }
    log.step(sys, &format!("mount {device} on {PERM_MOUNT}"));
    if let Err(error) = sys.mount(&device, perm, "ext4", NOSUID_NODEV_NOEXEC, None) {
        let reason = format!("mount ext4 {device} on {PERM_MOUNT}: {error}");
        mount_perm_tmpfs(sys, log, &reason)?;
        return Ok((Some(device), Some(reason)));
    }

    // The builder makes the filesystem small, and the initramfs may have grown the partition
    // (on any boot: the disk may have been enlarged since). resize2fs grows it online to fill
    // the partition; when it already does, it reads the superblock and says "Nothing to do".
    let first_mount = !sys.exists(Path::new(PERM_MARKER));
    log.step(sys, &format!("resize2fs {device}"));
    {
        match sys.run(Path::new(RESIZE2FS), &[&device]) {
            Ok(0) => {
                if first_mount {
                    if let Err(error) = sys.write_file(Path::new(PERM_MARKER), b"ztos perm\n") {
                        log.warn(sys, format!("write {PERM_MARKER}: {error}"));
                    }
                }
            }
            Ok(code) => log.warn(sys, format!("resize2fs {device} exited with code {code}")),
            Err(error) => log.warn(sys, format!("run {RESIZE2FS}: {error}")),
        }
    }
    Ok((Some(device), None))
}

/// Mounts a tmpfs on /perm and says why, on the console and in `/run/ztos/perm-degraded`.
fn mount_perm_tmpfs(
    sys: &mut impl Syscalls,
    log: &mut BootLog,
    reason: &str,
) -> Result<(), BootError> {
    log.warn(
        sys,
        format!("perm is degraded, using a tmpfs: {reason}; nothing will persist across a reboot"),
    );
    if let Err(error) = sys.write_file(
        Path::new(PERM_DEGRADED_FILE),
        format!("{reason}\n").as_bytes(),
    ) {
        log.warn(sys, format!("write {PERM_DEGRADED_FILE}: {error}"));
    }
    ensure_mounted(
        sys,
        log,
        &MountSpec {
            source: "tmpfs",
            target: PERM_MOUNT,
            fstype: "tmpfs",
            flags: NOSUID_NODEV_NOEXEC,
            data: Some("mode=0755"),
        },
    )
}

/// A hostname the kernel and DNS accept: 1 to 64 letters, digits, `-` and `.`.
fn valid_hostname(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.')
        && !name.starts_with(['-', '.'])
}

fn set_hostname(sys: &mut impl Syscalls, log: &mut BootLog) -> String {
    let hostname = match sys.read_file(Path::new(HOSTNAME_FILE)) {
        Ok(text) => {
            let text = String::from_utf8_lossy(&text);
            let text = text.lines().next().unwrap_or("").trim().to_string();
            if valid_hostname(&text) {
                text
            } else {
                log.warn(
                    sys,
                    format!("{HOSTNAME_FILE} holds {text:?}, not a valid hostname; using {DEFAULT_HOSTNAME}"),
                );
                DEFAULT_HOSTNAME.to_string()
            }
        }
        Err(_) => DEFAULT_HOSTNAME.to_string(),
    };
    log.step(sys, &format!("hostname {hostname}"));
    if let Err(error) = sys.sethostname(&hostname) {
        log.warn(sys, format!("set hostname {hostname}: {error}"));
    }
    if let Err(error) = sys.write_file(Path::new(RUN_HOSTNAME), format!("{hostname}\n").as_bytes())
    {
        log.warn(sys, format!("write {RUN_HOSTNAME}: {error}"));
    }
    hostname
}

/// Feeds the saved seed to the kernel's pool (it mixes, it does not credit), then replaces it
/// so the same seed is never used twice.
fn refresh_random_seed(sys: &mut impl Syscalls, log: &mut BootLog) {
    let seed_path = Path::new(RANDOM_SEED);
    if let Ok(seed) = sys.read_file(seed_path) {
        if let Err(error) = sys.write_file(Path::new("/dev/urandom"), &seed) {
            log.warn(sys, format!("write {RANDOM_SEED} to /dev/urandom: {error}"));
        }
    }
    match sys.random_bytes(RANDOM_SEED_BYTES) {
        Ok(fresh) => {
            if let Err(error) = sys.write_file(seed_path, &fresh) {
                log.warn(sys, format!("write {RANDOM_SEED}: {error}"));
            }
        }
        Err(error) => log.warn(sys, format!("new random seed: {error}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::boot::{RecordingSyscalls, MKFS_EXT4};
    use nix::errno::Errno;

    fn root_filesystem() -> RecordingSyscalls {
        let mut sys = RecordingSyscalls::root_filesystem();
        // Moved over from the initramfs.
        sys.add_mount("devtmpfs", "/dev", "devtmpfs");
        sys.add_mount("proc", "/proc", "proc");
        sys.add_mount("sysfs", "/sys", "sysfs");
        sys.add_file("/proc/cmdline", "console=ttyS0 ztos.slot=b\n");
        sys.add_file(
            "/sys/class/block/vda4/uevent",
            "DEVNAME=vda4\nDEVTYPE=partition\nPARTNAME=ztos-perm\n",
        );
        sys.add_file("/dev/vda4", "");
        sys.add_file("/dev/watchdog", "");
        for tool in [E2FSCK, RESIZE2FS, MKFS_EXT4] {
            sys.add_file(tool, "");
        }
        sys.add_file(
            MODULES_LOAD,
            "kernel/drivers/net/vxlan/vxlan.ko\nkernel/drivers/watchdog/i6300esb.ko\n",
        );
        sys.add_file(PERM_MARKER, "");
        sys.add_file(HOSTNAME_FILE, "leaf1\n");
        sys.add_file(RANDOM_SEED, [7u8; 512]);
        sys
    }

    #[test]
    fn boot_system_good_boot_makes_exactly_these_calls() {
        let mut sys = root_filesystem();
        let state = system_stage(&mut sys).unwrap();
        assert_eq!(state.slot, Some(Slot::B));
        assert_eq!(state.perm_device.as_deref(), Some("/dev/vda4"));
        assert_eq!(state.perm_degraded, None);
        assert_eq!(state.hostname, "leaf1");
        assert!(state.watchdog.is_some());
        assert!(state.warnings.is_empty(), "{:?}", state.warnings);
        assert_eq!(
            sys.effects(),
            vec![
                "mkdir_p /run",
                "mount tmpfs /run tmpfs MS_NOSUID|MS_NODEV mode=0755",
                "mkdir_p /tmp",
                "mount tmpfs /tmp tmpfs MS_NOSUID|MS_NODEV mode=1777",
                "mkdir_p /dev/pts",
                "mount devpts /dev/pts devpts MS_NOSUID|MS_NOEXEC mode=0620,ptmxmode=0666",
                "mkdir_p /dev/shm",
                "mount tmpfs /dev/shm tmpfs MS_NOSUID|MS_NODEV mode=1777",
                "mkdir_p /sys/fs/cgroup",
                "mount cgroup2 /sys/fs/cgroup cgroup2 MS_NOSUID|MS_NODEV|MS_NOEXEC nsdelegate",
                "mkdir_p /run/ztos",
                "mkdir_p /run/lock",
                "write /run/resolv.conf (0 bytes)",
                "run /sbin/e2fsck -p /dev/vda4",
                "mkdir_p /perm",
                "mount /dev/vda4 /perm ext4 MS_NOSUID|MS_NODEV|MS_NOEXEC",
                // Every boot: the partition may have been grown since (nothing to do otherwise).
                "run /sbin/resize2fs /dev/vda4",
                "sethostname leaf1",
                "write /run/hostname (6 bytes)",
                "set_loopback_up",
                "write /dev/urandom (512 bytes)",
                "write /perm/random-seed (512 bytes)",
                "load_module /lib/modules/6.1.0-test/kernel/drivers/net/vxlan/vxlan.ko",
                "load_module /lib/modules/6.1.0-test/kernel/drivers/watchdog/i6300esb.ko",
                "open_watchdog /dev/watchdog",
            ]
        );
        assert_eq!(sys.hostname(), Some("leaf1"));
        assert_eq!(sys.file(RANDOM_SEED), Some(&[0x5a; 512][..]));
    }

    #[test]
    fn boot_system_from_scratch_mounts_everything_and_busy_is_fine() {
        let mut sys = RecordingSyscalls::root_filesystem();
        sys.add_file("/proc/cmdline", "ztos.slot=a");
        sys.fail_mount("/sys", Errno::EBUSY);
        // No perm partition, no watchdog, no tools: still a running box.
        let state = system_stage_with_timeout(&mut sys, Duration::from_millis(300)).unwrap();
        let effects = sys.effects();
        assert_eq!(effects[0], "mkdir_p /proc");
        assert_eq!(
            effects[1],
            "mount proc /proc proc MS_NOSUID|MS_NODEV|MS_NOEXEC"
        );
        assert!(
            effects.contains(&"mount sysfs /sys sysfs MS_NOSUID|MS_NODEV|MS_NOEXEC".to_string())
        );
        assert!(effects.contains(&"mount devtmpfs /dev devtmpfs MS_NOSUID mode=0755".to_string()));
        assert_eq!(state.hostname, "ztos");
        assert!(state.watchdog.is_none());
        assert_eq!(
            state.perm_degraded.as_deref(),
            Some("no partition labelled ztos-perm appeared in /sys/class/block within 0.3 s")
        );
        assert!(sys
            .mounts()
            .contains(&("tmpfs".into(), "/perm".into(), "tmpfs".into())));
    }

    #[test]
    fn boot_system_essential_mount_failure_is_fatal() {
        let mut sys = root_filesystem();
        sys.fail_mount("/run", Errno::ENOMEM);
        let message = system_stage(&mut sys).unwrap_err().to_string();
        assert_eq!(
            message,
            "mount tmpfs tmpfs on /run: Cannot allocate memory (os error 12)"
        );
    }

    #[test]
    fn boot_system_optional_mount_failure_warns() {
        let mut sys = root_filesystem();
        sys.fail_mount("/sys/fs/cgroup", Errno::ENODEV);
        let state = system_stage(&mut sys).unwrap();
        assert_eq!(state.warnings.len(), 1);
        assert!(state.warnings[0].contains("/sys/fs/cgroup"));
    }

    #[test]
    fn boot_system_unrepairable_perm_falls_back_to_tmpfs_with_the_reason() {
        let mut sys = root_filesystem();
        sys.set_exit_code(E2FSCK, 4);
        let state = system_stage(&mut sys).unwrap();
        let reason = state.perm_degraded.expect("degraded");
        assert!(
            reason.contains("e2fsck -p /dev/vda4 exited with code 4"),
            "{reason}"
        );
        assert_eq!(state.perm_device.as_deref(), Some("/dev/vda4"));
        assert!(!sys
            .effects()
            .iter()
            .any(|c| c.starts_with("mount /dev/vda4")));
        assert!(sys.effects().contains(
            &"mount tmpfs /perm tmpfs MS_NOSUID|MS_NODEV|MS_NOEXEC mode=0755".to_string()
        ));
        assert_eq!(
            sys.file(PERM_DEGRADED_FILE),
            Some(format!("{reason}\n").as_bytes())
        );
        assert!(sys
            .console_lines()
            .iter()
            .any(|line| line.contains("perm is degraded") && line.contains("code 4")));
    }

    #[test]
    fn boot_system_perm_repaired_needing_reboot_is_fatal() {
        let mut sys = root_filesystem();
        sys.set_exit_code(E2FSCK, 2);
        let error = system_stage(&mut sys).unwrap_err();
        assert_eq!(
            error.to_string(),
            "e2fsck repaired /dev/vda4 (exit code 2) and asks for a reboot"
        );
        assert_eq!(sys.effects().last().map(String::as_str), Some("sync"));

        let mut sys = root_filesystem();
        sys.set_exit_code(E2FSCK, 1);
        assert!(system_stage(&mut sys).unwrap().perm_degraded.is_none());
    }

    #[test]
    fn boot_system_unmountable_perm_falls_back_to_tmpfs() {
        let mut sys = root_filesystem();
        sys.fail_mount_fstype("/perm", "ext4", Errno::EUCLEAN);
        let state = system_stage(&mut sys).unwrap();
        let reason = state.perm_degraded.unwrap();
        assert!(
            reason.starts_with("mount ext4 /dev/vda4 on /perm:"),
            "{reason}"
        );
    }

    #[test]
    fn boot_system_first_mount_grows_perm_and_writes_the_marker() {
        let mut sys = root_filesystem();
        sys.remove_file(PERM_MARKER);
        system_stage(&mut sys).unwrap();
        let effects = sys.effects();
        let mount = effects
            .iter()
            .position(|c| c.starts_with("mount /dev/vda4 /perm"))
            .unwrap();
        assert_eq!(effects[mount + 1], "run /sbin/resize2fs /dev/vda4");
        assert_eq!(effects[mount + 2], "write /perm/.ztos (10 bytes)");

        // A failed resize leaves the marker absent, so the next boot tries again.
        let mut sys = root_filesystem();
        sys.remove_file(PERM_MARKER);
        sys.set_exit_code(RESIZE2FS, 1);
        let state = system_stage(&mut sys).unwrap();
        assert!(sys.file(PERM_MARKER).is_none());
        assert_eq!(
            state.warnings,
            vec!["resize2fs /dev/vda4 exited with code 1"]
        );
    }

    #[test]
    fn boot_system_module_failure_warns_and_continues() {
        let mut sys = root_filesystem();
        sys.fail_module(
            "/lib/modules/6.1.0-test/kernel/drivers/net/vxlan/vxlan.ko",
            Errno::ENOENT,
        );
        let state = system_stage(&mut sys).unwrap();
        assert_eq!(state.warnings.len(), 1);
        assert!(state.warnings[0]
            .starts_with("load module /lib/modules/6.1.0-test/kernel/drivers/net/vxlan/vxlan.ko:"));
        let effects = sys.effects();
        assert!(effects.contains(
            &"load_module /lib/modules/6.1.0-test/kernel/drivers/watchdog/i6300esb.ko".to_string()
        ));
        assert_eq!(effects.last().unwrap(), "open_watchdog /dev/watchdog");
    }

    #[test]
    fn boot_system_bad_hostname_and_loopback_failure_warn() {
        let mut sys = root_filesystem();
        sys.add_file(HOSTNAME_FILE, "bad name!\n");
        sys.fail_loopback(Errno::ENODEV);
        let state = system_stage(&mut sys).unwrap();
        assert_eq!(state.hostname, "ztos");
        assert_eq!(state.warnings.len(), 2, "{:?}", state.warnings);
        assert!(state.warnings[0].contains("\"bad name!\""));
        assert!(state.warnings[1].starts_with("set lo up:"));
        assert!(valid_hostname("leaf-1.example"));

        let mut sys = root_filesystem();
        sys.add_file(HOSTNAME_FILE, "spine2\n# written by ztosd\n");
        assert_eq!(system_stage(&mut sys).unwrap().hostname, "spine2");
        assert!(!valid_hostname("-x"));
        assert!(!valid_hostname(&"a".repeat(65)));
    }
}
