//! Boots the real ZTOS image under qemu (TCG) as a user would: UEFI, systemd-boot, kernel,
//! initramfs, ztos-init, the console's login prompt and the HTTPS API through a forwarded
//! port; logs in, asks for the security status and powers off.
//!
//! Needs `just image` first (target/image/ztos.qcow2, or ZTOS_VM_IMAGE) and the admin password
//! the image was built with in ZTOS_VM_ADMIN_PASSWORD (`just vm-test` sets both).

use std::path::PathBuf;
use std::time::Duration;

use ztos_tests::vm::{default_image, Vm};

/// TCG boots the kernel in about 5 s and reaches ztos-init within about 30 s of qemu's start
/// (mostly OVMF); the limits leave room for a loaded 2-core CI machine.
const BOOT_LIMIT: Duration = Duration::from_secs(240);

fn image() -> PathBuf {
    std::env::var_os("ZTOS_VM_IMAGE")
        .map(PathBuf::from)
        .unwrap_or_else(default_image)
}

// Ignored until the PID-1 boot stages and the console login are integrated (issue 3): the
// image boots through systemd-boot and the kernel into ztos-init, but no login prompt exists
// yet. The lead enables it at integration (`just vm-test` runs it explicitly).
#[test]
#[ignore = "needs the integrated ztos-init boot stages and console login; run with `just vm-test`"]
fn boots_to_login_prompt_and_api_then_powers_off() {
    let password = std::env::var("ZTOS_VM_ADMIN_PASSWORD")
        .expect("ZTOS_VM_ADMIN_PASSWORD: the admin password the image was built with");
    let mut vm = Vm::start(&image()).unwrap();

    let at = vm.wait_for("login:", BOOT_LIMIT).unwrap();
    eprintln!("login prompt after {at:?}");
    let at = vm.wait_for_https("/health", BOOT_LIMIT).unwrap();
    eprintln!("API healthy after {at:?}");

    vm.send_line("admin").unwrap();
    vm.wait_for("assword", Duration::from_secs(30)).unwrap();
    vm.send_line(&password).unwrap();
    vm.send_line("security status").unwrap();
    vm.wait_for("security status", Duration::from_secs(30))
        .unwrap();
    vm.wait_for("tls", Duration::from_secs(30)).unwrap();

    vm.send_line("system poweroff").unwrap();
    let status = vm.wait_exit(Duration::from_secs(120)).unwrap();
    assert!(
        status.success(),
        "qemu exit status {status} after a clean poweroff"
    );
}
