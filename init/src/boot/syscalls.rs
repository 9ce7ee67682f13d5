//! The operations PID 1 performs on the kernel, behind a trait: [`crate::boot::RealSyscalls`]
//! performs them, [`crate::boot::RecordingSyscalls`] records them for tests.
//!
//! Implementations report the kernel's answer unchanged (EBUSY, EEXIST, ...); deciding which
//! errors are harmless is the stage logic's job, so that it is tested.

use std::io;
use std::path::Path;
use std::time::Duration;

pub use nix::mount::MsFlags;
pub use ztos_image::gpt::GrowOutcome;

/// How the machine goes down.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RebootKind {
    /// `reboot(2)` with `RB_AUTOBOOT`.
    Reboot,
    /// `reboot(2)` with `RB_POWER_OFF`.
    PowerOff,
}

/// What `lstat(2)` says about a path, as much as removing a tree needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EntryInfo {
    /// A directory (not a symlink to one).
    pub is_dir: bool,
    /// `st_dev`: the filesystem the entry is on. A mount point reports the mounted
    /// filesystem's device, so comparing it with the parent's tells a mount point apart.
    pub device: u64,
}

/// An open hardware watchdog. Writing to it ("petting") restarts its countdown; if nobody
/// pets it the hardware resets the machine.
pub trait Watchdog: Send {
    /// Restarts the countdown.
    fn pet(&mut self) -> io::Result<()>;
    /// Writes the magic close character `V` and closes the device, which stops the countdown
    /// on drivers that allow it.
    fn close(self: Box<Self>) -> io::Result<()>;
}

/// The syscalls of PID 1.
pub trait Syscalls {
    /// `mount(2)`. `data` is the filesystem-specific option string (`mode=0755`).
    fn mount(
        &mut self,
        source: &str,
        target: &Path,
        fstype: &str,
        flags: MsFlags,
        data: Option<&str>,
    ) -> io::Result<()>;
    /// `umount2(2)`; `lazy` adds `MNT_DETACH`.
    fn umount(&mut self, target: &Path, lazy: bool) -> io::Result<()>;
    /// Creates a directory and its parents; an existing directory is fine.
    fn mkdir_p(&mut self, path: &Path, mode: u32) -> io::Result<()>;
    fn write_file(&mut self, path: &Path, contents: &[u8]) -> io::Result<()>;
    fn read_file(&mut self, path: &Path) -> io::Result<Vec<u8>>;
    /// The names of a directory's entries, sorted.
    fn read_dir(&mut self, path: &Path) -> io::Result<Vec<String>>;
    /// Whether a path exists (following symlinks).
    fn exists(&mut self, path: &Path) -> bool;
    /// `lstat(2)`: whether the path is a directory, and its device. Symlinks are not followed.
    fn entry_info(&mut self, path: &Path) -> io::Result<EntryInfo>;
    /// Removes one entry: `rmdir(2)` when `is_dir`, else `unlink(2)`.
    fn remove(&mut self, path: &Path, is_dir: bool) -> io::Result<()>;
    /// Grows the partition labelled `label` on the whole-disk device `disk` to the end of the
    /// disk ([`ztos_image::gpt::grow_partition_to_end`], durable after each step) and, when
    /// the table changed, makes the kernel re-read it (`BLKRRPART`, which fails with EBUSY
    /// while a partition of the disk is in use).
    fn grow_partition(&mut self, disk: &Path, label: &str) -> io::Result<GrowOutcome>;
    /// Creates `link` pointing at `target`.
    fn symlink(&mut self, target: &Path, link: &Path) -> io::Result<()>;
    /// Makes `new_root` the root: chdir new_root; mount --move new_root /; chroot .; chdir /.
    fn switch_root(&mut self, new_root: &Path) -> io::Result<()>;
    /// Replaces the process with `path` (`args` without argv\[0\]); returns only on failure.
    fn exec(&mut self, path: &Path, args: &[&str]) -> io::Error;
    /// `finit_module(2)` of a `.ko` file with its parameters (`""` for none).
    fn load_module(&mut self, path: &Path, params: &str) -> io::Result<()>;
    /// The running kernel's release (`uname -r`).
    fn kernel_release(&mut self) -> io::Result<String>;
    fn sethostname(&mut self, name: &str) -> io::Result<()>;
    /// Sets the loopback interface up.
    fn set_loopback_up(&mut self) -> io::Result<()>;
    /// Runs a program to completion with the console as its stdio; its exit code.
    fn run(&mut self, command: &Path, args: &[&str]) -> io::Result<i32>;
    /// Fresh bytes from the kernel's random number generator (`getrandom(2)`).
    fn random_bytes(&mut self, len: usize) -> io::Result<Vec<u8>>;
    /// Whether `/` is the initramfs (a ramfs or tmpfs) rather than a slot's root filesystem.
    fn root_is_initramfs(&mut self) -> io::Result<bool>;
    /// Reaps exited children without blocking; how many were reaped.
    fn reap_zombies(&mut self) -> usize;
    /// Prints a line on the console (`/dev/console`) and into the kernel log (`/dev/kmsg`).
    fn console(&mut self, line: &str);
    fn sleep(&mut self, duration: Duration);
    /// `sync(2)`.
    fn sync(&mut self);
    /// `reboot(2)`; returns only on failure.
    fn reboot(&mut self, kind: RebootKind) -> io::Error;
    fn open_watchdog(&mut self, path: &Path) -> io::Result<Box<dyn Watchdog>>;
}
