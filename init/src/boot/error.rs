//! Why a boot stage failed. Every variant is fatal to the stage that returns it: PID 1 prints
//! it on the console, waits and reboots, so the bootloader's tries counter counts the failure.

use std::io;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum BootError {
    #[error("mount {fstype} {source_name} on {}: {source}", target.display())]
    Mount {
        source_name: String,
        target: PathBuf,
        fstype: String,
        #[source]
        source: io::Error,
    },
    #[error("create directory {}: {source}", path.display())]
    CreateDirectory {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("read {}: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("the kernel command line has no ztos.slot=a|b (command line: {cmdline:?})")]
    MissingSlot { cmdline: String },
    #[error("the kernel command line has ztos.slot={value:?}; expected a or b")]
    InvalidSlot { value: String },
    #[error("no partition labelled {label} appeared in /sys/class/block within {} s", waited.as_secs_f32())]
    PartitionNotFound { label: String, waited: Duration },
    #[error("mount root {device} read-only: not squashfs ({squashfs}) and not erofs ({erofs})")]
    RootMount {
        device: String,
        squashfs: io::Error,
        erofs: io::Error,
    },
    #[error("switch_root to {}: {source}", new_root.display())]
    SwitchRoot {
        new_root: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("exec {}: {source}", path.display())]
    Exec {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("e2fsck repaired {device} (exit code {code}) and asks for a reboot")]
    PermRepairedRebootNeeded { device: String, code: i32 },
    #[error("run {command}: {source}")]
    Spawn {
        command: String,
        #[source]
        source: io::Error,
    },
    #[error("{command} exited with code {code}")]
    CommandFailed { command: String, code: i32 },
}
