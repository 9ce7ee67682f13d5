//! The PID 1 main flow: pick the stage, run it, hand over to the supervisor, and end every
//! path (shutdown, fatal error, panic) in `reboot(2)`. PID 1 never returns: if it exited, or
//! panicked out of `main`, the kernel would panic.

use std::convert::Infallible;
use std::io;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use ztos_image::layout::INIT_SOCKET;

use crate::supervisor::{supervise, Manifest, PermState, ShutdownKind, SupervisorOptions};

use super::syscalls::{RebootKind, Syscalls, Watchdog};
use super::{
    initramfs_stage, switch_to_root, system_stage, RealSyscalls, MKFS_EXT4, SERVICES_MANIFEST,
};

/// How often the watchdog is petted while the supervisor reports healthy. Well below the
/// shortest hardware timeout in use (i6300esb: 30 s by default).
pub const WATCHDOG_PET_INTERVAL: Duration = Duration::from_secs(5);
/// How long a fatal error stays on the console before the reboot.
const FATAL_REBOOT_DELAY: Duration = Duration::from_secs(10);
/// Filesystems unmounted at shutdown, perm first: it is the only one holding data.
const SHUTDOWN_UNMOUNTS: [&str; 2] = ["/perm", "/tmp"];

/// PID 1. Called by `main` when the process is PID 1. In order:
///
/// 1. if `/` is a ramfs or tmpfs, this is the initramfs: run [`initramfs_stage`], then
///    [`switch_to_root`] executes the root's `/usr/bin/ztos-init`, which comes back here as
///    PID 1 with `/` on the slot's squashfs or erofs;
/// 2. otherwise run [`system_stage`], start petting the watchdog from a thread while the
///    supervisor's `healthy` flag is set, load `/etc/ztos/services.toml` and run the supervisor
///    on a tokio runtime, with the status socket at `/run/ztos/init.sock` and the kernel log,
///    and the boot assessment ([`crate::assessment`]) on its own thread;
/// 3. when the supervisor returns: sync, unmount /perm and /tmp (lazily if busy), sync, then
///    reboot, or power off for a poweroff request or SIGTERM/SIGINT.
///
/// Any error or panic on the way is printed on the console and in the kernel log, and the
/// machine reboots after 10 s, so that systemd-boot's tries counter sees the failed boot.
pub fn run_pid1() -> ! {
    let mut sys = RealSyscalls::new();
    let outcome = catch_unwind(AssertUnwindSafe(|| boot(&mut sys)));
    let message = match outcome {
        Ok(Ok(never)) => match never {},
        Ok(Err(error)) => format!("{error:#}"),
        Err(panic) => {
            let what = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "a panic".to_string());
            format!("panic: {what}")
        }
    };
    loop {
        let error = fatal_reboot(&mut sys, &message);
        sys.console(&format!("ztos-init: reboot failed: {error}"));
    }
}

/// Runs the stage `/` calls for; returns only with the reason it could not go on.
fn boot(sys: &mut RealSyscalls) -> anyhow::Result<Infallible> {
    sys.reap_zombies();
    let in_initramfs = sys
        .root_is_initramfs()
        .context("statfs / to tell the initramfs from the root filesystem")?;
    if in_initramfs {
        let handoff = initramfs_stage(sys)?;
        return Err(switch_to_root(sys, &handoff).into());
    }
    let state = system_stage(sys)?;
    // The supervisor reports through tracing; PID 1's stderr is the console.
    let filter = if state.debug { "debug" } else { "info" };
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
        .with_writer(std::io::stderr)
        .try_init();
    if let Some(reason) = &state.perm_degraded {
        sys.console(&format!(
            "ztos-init: /perm is a tmpfs ({reason}); log in on the console and run `system reformat-perm` to recover"
        ));
    }
    let healthy = Arc::new(AtomicBool::new(true));
    if let Some(watchdog) = state.watchdog {
        spawn_watchdog_petter(watchdog, Arc::clone(&healthy), WATCHDOG_PET_INTERVAL)
            .context("start the watchdog thread")?;
    }
    let manifest = Manifest::load(Path::new(SERVICES_MANIFEST))
        .with_context(|| format!("load {SERVICES_MANIFEST}"))?;
    let mut options = SupervisorOptions::new(INIT_SOCKET.into());
    options.kernel_log = true;
    options.perm = Some(PermState {
        device: state.perm_device.clone(),
        degraded: state.perm_degraded.clone(),
        mkfs: MKFS_EXT4.into(),
    });
    // Trial boots of an updated slot are blessed or failed from here (docs/update.md).
    options.boot = Some(crate::assessment::spawn(
        &manifest.boot,
        Arc::clone(&healthy),
    ));
    options.healthy = healthy;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("start the tokio runtime")?;
    sys.reap_zombies();
    let outcome = runtime.block_on(supervise(manifest, options));
    runtime.shutdown_timeout(Duration::from_secs(1));
    let kind = match outcome {
        Ok(ShutdownKind::Reboot) => RebootKind::Reboot,
        Ok(ShutdownKind::Poweroff | ShutdownKind::Exit) => RebootKind::PowerOff,
        Err(error) => return Err(error.context("supervisor")),
    };
    Err(shutdown(sys, kind)).context("reboot(2)")
}

/// Pets `watchdog` every `interval` ([`WATCHDOG_PET_INTERVAL`]) while `healthy` is set, forever: through
/// the shutdown too, so a hang while unmounting still resets the machine.
fn spawn_watchdog_petter(
    mut watchdog: Box<dyn Watchdog>,
    healthy: Arc<AtomicBool>,
    interval: Duration,
) -> io::Result<()> {
    std::thread::Builder::new()
        .name("watchdog".to_string())
        .spawn(move || {
            let mut reported = false;
            loop {
                if healthy.load(Ordering::Relaxed) {
                    if let Err(error) = watchdog.pet() {
                        if !reported {
                            eprintln!("ztos-init: warning: pet the watchdog: {error}");
                            reported = true;
                        }
                    }
                }
                std::thread::sleep(interval);
            }
        })
        .map(drop)
}

/// The end of a clean run: sync, unmount (lazily if busy), sync, reboot(2). Returns only the
/// error of reboot(2).
pub(crate) fn shutdown(sys: &mut impl Syscalls, kind: RebootKind) -> io::Error {
    let what = match kind {
        RebootKind::Reboot => "rebooting",
        RebootKind::PowerOff => "powering off",
    };
    sys.console(&format!("ztos-init: {what}"));
    sys.sync();
    for target in SHUTDOWN_UNMOUNTS {
        let target = Path::new(target);
        if sys.umount(target, false).is_err() {
            // Busy (a straggler holds a file): detach it; the sync below still flushes it.
            if let Err(error) = sys.umount(target, true) {
                sys.console(&format!(
                    "ztos-init: warning: unmount {}: {error}",
                    target.display()
                ));
            }
        }
    }
    sys.sync();
    sys.reboot(kind)
}

/// One attempt at the fatal path: print the reason, wait, sync, reboot. Returns only the
/// error of reboot(2).
pub(crate) fn fatal_reboot(sys: &mut impl Syscalls, message: &str) -> io::Error {
    sys.console(&format!(
        "ztos-init: fatal: {message}; rebooting in {} s",
        FATAL_REBOOT_DELAY.as_secs()
    ));
    sys.reap_zombies();
    sys.sleep(FATAL_REBOOT_DELAY);
    sys.sync();
    sys.reboot(RebootKind::Reboot)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::boot::RecordingSyscalls;
    use nix::errno::Errno;

    #[test]
    fn boot_shutdown_syncs_unmounts_lazily_when_busy_and_powers_off() {
        let mut sys = RecordingSyscalls::root_filesystem();
        sys.add_mount("/dev/vda4", "/perm", "ext4");
        sys.add_mount("tmpfs", "/tmp", "tmpfs");
        sys.fail_umount("/perm", Errno::EBUSY);
        shutdown(&mut sys, RebootKind::PowerOff);
        assert_eq!(
            sys.effects(),
            vec![
                "sync",
                "umount /perm",
                "umount /perm lazy",
                "umount /tmp",
                "sync",
                "reboot PowerOff",
            ]
        );
        assert!(sys.mounts().is_empty());
        assert_eq!(sys.console_lines(), vec!["ztos-init: powering off"]);
    }

    #[test]
    fn boot_fatal_error_is_shown_then_reboots_after_ten_seconds() {
        let mut sys = RecordingSyscalls::initramfs();
        fatal_reboot(&mut sys, "no partition labelled ztos-root-a");
        assert_eq!(
            sys.console_lines(),
            vec!["ztos-init: fatal: no partition labelled ztos-root-a; rebooting in 10 s"]
        );
        assert_eq!(sys.slept(), Duration::from_secs(10));
        assert_eq!(sys.effects(), vec!["sync", "reboot Reboot"]);
    }

    #[test]
    fn boot_watchdog_is_petted_only_while_healthy() {
        let mut sys = RecordingSyscalls::root_filesystem();
        sys.add_file("/dev/watchdog", "");
        let watchdog = sys.open_watchdog(Path::new("/dev/watchdog")).unwrap();
        let healthy = Arc::new(AtomicBool::new(false));
        spawn_watchdog_petter(watchdog, Arc::clone(&healthy), Duration::from_millis(10)).unwrap();
        std::thread::sleep(Duration::from_millis(100));
        assert!(!sys.calls().contains(&"watchdog pet".to_string()));
        healthy.store(true, Ordering::Relaxed);
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while !sys.calls().contains(&"watchdog pet".to_string()) {
            assert!(std::time::Instant::now() < deadline, "never petted");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}
