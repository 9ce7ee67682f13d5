//! PID 1 boot stages: the initramfs stage (find and mount the slot root, switch_root) and the
//! system stage (mounts, /perm, hostname, loopback, random seed, modules, watchdog), then the
//! supervisor. Every syscall goes through the [`Syscalls`] trait, so the stage logic is tested
//! with [`RecordingSyscalls`] without root; [`RealSyscalls`] does the real thing.
//!
//! The boot sequence, what is fatal and what is best effort, is documented in `docs/boot.md`.

mod cmdline;
mod error;
mod initramfs;
mod pid1;
mod real;
mod recording;
mod steps;
mod syscalls;
mod system;

pub use cmdline::{parse_cmdline, BootCommandLine};
pub use error::BootError;
pub use initramfs::{
    free_initramfs, initramfs_stage, initramfs_stage_with_timeout, switch_to_root, InitramfsFreed,
    RootHandoff, ROOT_WAIT_TIMEOUT,
};
pub use pid1::{run_pid1, WATCHDOG_PET_INTERVAL};
pub use real::RealSyscalls;
pub use recording::RecordingSyscalls;
pub use steps::{find_partition_by_label, parse_module_list};
pub use syscalls::{EntryInfo, GrowOutcome, MsFlags, RebootKind, Syscalls, Watchdog};
pub use system::{system_stage, system_stage_with_timeout, SystemState, PERM_WAIT_TIMEOUT};

/// The module list of the initramfs and of the root filesystem: one path per line, relative to
/// `/lib/modules/<uname -r>/`, in dependency order. The image builder writes it.
pub const MODULES_LOAD: &str = "/etc/ztos/modules.load";
/// Where the initramfs mounts the slot's root before switching to it.
pub const SYSROOT: &str = "/sysroot";
/// The init of the root filesystem, executed after switch_root.
pub const ROOT_INIT: &str = "/usr/bin/ztos-init";
/// The supervisor's manifest in the root filesystem.
pub const SERVICES_MANIFEST: &str = "/etc/ztos/services.toml";
/// Present on /perm once it has been mounted and grown: a filesystem without it is new.
pub const PERM_MARKER: &str = "/perm/.ztos";
/// The hostname ztosd keeps in perm; "ztos" when absent.
pub const HOSTNAME_FILE: &str = "/perm/ztos/hostname";
/// The hostname of a box that has none configured.
pub const DEFAULT_HOSTNAME: &str = "ztos";
/// The random seed carried across boots.
pub const RANDOM_SEED: &str = "/perm/random-seed";
/// Targets of the symlinks the image has in its read-only /etc (`/etc/hostname`,
/// `/etc/resolv.conf`).
pub const RUN_HOSTNAME: &str = "/run/hostname";
pub const RUN_RESOLV_CONF: &str = "/run/resolv.conf";
/// The hardware watchdog device.
pub const WATCHDOG_DEVICE: &str = "/dev/watchdog";
/// e2fsprogs tools in the root filesystem.
pub const E2FSCK: &str = "/sbin/e2fsck";
pub const RESIZE2FS: &str = "/sbin/resize2fs";
pub const MKFS_EXT4: &str = "/sbin/mkfs.ext4";
