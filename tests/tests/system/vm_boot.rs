//! Boots the real ZTOS image under qemu (TCG) as an operator would meet it: UEFI,
//! systemd-boot, kernel, initramfs, ztos-init, the serial console, on a disk larger than the
//! image (as after `dd` to a bigger disk): init grows the perm partition to the end of the disk.
//! At first boot the console asks for the admin password; the management interface gets its
//! address by DHCP from QEMU's user network (10.0.2.15/24 via 10.0.2.2; the factory
//! configuration's `management_dhcp = "auto"`), and the HTTPS API answers through the
//! forwarded port without typing an address. A committed change survives a reboot, and the
//! box powers off cleanly.
//!
//! A second test boots a copy of the image whose perm filesystem is corrupted: the box still
//! comes up (perm on a tmpfs), reports it in `health` and after login, and `system
//! reformat-perm` brings back a fresh, persistent perm.
//!
//! Needs the image (`just image`, target/image/ztos.qcow2, or ZTOS_VM_IMAGE); `just vm-test`
//! builds it and runs these tests, and `just test` runs `just vm-test`.

use std::path::PathBuf;
use std::time::Duration;

use ztos_tests::vm::{default_image, image_with_corrupted_perm, Vm};

/// TCG reaches the console in about a minute (mostly OVMF); room for a loaded CI machine.
const BOOT_LIMIT: Duration = Duration::from_secs(300);
const STEP: Duration = Duration::from_secs(60);
const PASSWORD: &str = "correct horse battery";

fn image() -> PathBuf {
    std::env::var_os("ZTOS_VM_IMAGE")
        .map(PathBuf::from)
        .unwrap_or_else(default_image)
}

/// The first-boot prompt: sets the admin password (asked twice).
fn set_first_password(vm: &mut Vm) {
    let at = vm.wait_for("new password for admin: ", BOOT_LIMIT).unwrap();
    eprintln!("first-boot password prompt after {at:?}");
    vm.send_line(PASSWORD).unwrap();
    vm.wait_for("repeat the new password for admin: ", STEP)
        .unwrap();
    vm.send_line(PASSWORD).unwrap();
    vm.wait_for("admin password set", STEP).unwrap();
}

fn login(vm: &mut Vm, hostname: &str) {
    let at = vm
        .wait_for(&format!("{hostname} login: "), BOOT_LIMIT)
        .unwrap();
    eprintln!("{hostname} login prompt {at:?} after qemu started");
    vm.send_line("admin").unwrap();
    vm.wait_for("assword", STEP).unwrap();
    vm.send_line(PASSWORD).unwrap();
    vm.wait_for(&format!("{hostname}> "), STEP).unwrap();
}

/// Types a shell command and waits for `expect` in its output, then for the next prompt.
fn run(vm: &mut Vm, hostname: &str, command: &str, expect: &str) {
    vm.send_line(command).unwrap();
    vm.wait_for(expect, STEP)
        .unwrap_or_else(|e| panic!("`{command}`: {e:#}"));
    vm.wait_for(&format!("{hostname}> "), STEP).unwrap();
}

#[test]
#[ignore = "boots the real image under TCG (minutes); `just vm-test` runs it, and `just test` runs that"]
fn first_boot_console_api_reboot_persistence_and_poweroff() {
    // A 3 GiB disk holding the image (a qcow2 overlay with a larger virtual size): the image
    // is 1410 MiB, so the backup GPT is in the middle of the disk and perm can grow.
    let dir = tempfile::tempdir().unwrap();
    let disk = dir.path().join("big.qcow2");
    let status = std::process::Command::new("qemu-img")
        .args(["create", "-q", "-f", "qcow2", "-F", "qcow2", "-b"])
        .arg(image().canonicalize().unwrap())
        .arg(&disk)
        .arg("3G")
        .status()
        .unwrap();
    assert!(status.success(), "qemu-img create of a 3 GiB disk");
    let mut vm = Vm::start(&disk).unwrap();

    // First boot: no admin password yet; the console asks for one (twice).
    let at = vm.wait_for("new password for admin: ", BOOT_LIMIT).unwrap();
    eprintln!("first-boot password prompt after {at:?}");
    vm.send_line(PASSWORD).unwrap();
    vm.wait_for("repeat the new password for admin: ", STEP)
        .unwrap();
    vm.send_line(PASSWORD).unwrap();
    vm.wait_for("admin password set", STEP).unwrap();

    // The initramfs grew perm to the end of the 3 GiB disk (6291456 sectors: perm now ends
    // 1 MiB before it, at sector 6289407) and moved the backup GPT there.
    let console = vm.console_text();
    assert!(
        console.contains("grew ztos-perm")
            && console.contains("-> 6289407, backup GPT moved to the end of the disk"),
        "no perm growth on the console:\n{console}"
    );

    login(&mut vm, "ztos");
    run(&mut vm, "ztos", "security status", "not configured");

    // The management address comes by DHCP (no typing): the lease is in `interfaces`.
    run(
        &mut vm,
        "ztos",
        "interfaces",
        "10.0.2.15/24 via 10.0.2.2 from 10.0.2.2",
    );
    run(
        &mut vm,
        "ztos",
        "config set system.hostname vmtest",
        "candidate",
    );
    run(
        &mut vm,
        "ztos",
        "config commit -m 'management address'",
        "committed revision 2",
    );
    let at = vm.wait_for_https("/health", STEP).unwrap();
    eprintln!("HTTPS API healthy through the forwarded port after {at:?}");
    let (code, _) = vm.https_get("/api/v1/security/status").unwrap();
    assert_eq!(code, 401, "the API demands a token over HTTPS");

    // The spec's `ztos security status`, from this machine through the forwarded port, with a
    // token made on the console. (--insecure: the box's CA is not on this machine.)
    run(
        &mut vm,
        "ztos",
        "token create vmtest --role read",
        "shown only now",
    );
    let console = vm.console_text();
    let secret = console
        .split_whitespace()
        .rev()
        .find(|word| word.starts_with("ztos_"))
        .expect("the token secret on the console")
        .to_string();
    let ztos = ztos_tests::lab::binary("ztos");
    let output = std::process::Command::new(&ztos)
        .args(["--host", &format!("https://127.0.0.1:{}", vm.https_port())])
        .args(["--token", &secret, "--insecure", "security", "status"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success() && text.contains("wireguard") && text.contains("not configured"),
        "remote ztos security status: {text}{}",
        String::from_utf8_lossy(&output.stderr)
    );

    // Reboot: the committed revision is applied again at boot, hostname and address included.
    // The console keeps the host name it started with until the reboot.
    vm.send_line("system reboot --yes").unwrap();
    vm.wait_for("reboot", STEP).unwrap();
    login(&mut vm, "vmtest");
    run(&mut vm, "vmtest", "config revisions", "management address");
    run(&mut vm, "vmtest", "interfaces", "10.0.2.15/24 via 10.0.2.2");
    vm.wait_for_https("/health", STEP).unwrap();
    // Grown once: the second boot finds nothing to do.
    let text = vm.console_text();
    assert_eq!(text.matches("grew ztos-perm").count(), 1, "{text}");

    vm.send_line("system poweroff --yes").unwrap();
    vm.wait_for("poweroff", STEP).unwrap();
    let status = vm.wait_exit(Duration::from_secs(120)).unwrap();
    assert!(
        status.success(),
        "qemu exit status {status} after a clean poweroff"
    );
}

#[test]
#[ignore = "boots the real image under TCG (minutes); `just vm-test` runs it, and `just test` runs that"]
fn a_corrupted_perm_still_boots_is_reported_and_reformat_recovers_it() {
    let dir = tempfile::tempdir().unwrap();
    let corrupted = image_with_corrupted_perm(&image(), dir.path()).unwrap();
    let mut vm = Vm::start(&corrupted).unwrap();

    // e2fsck -p cannot repair a filesystem without its superblock (exit 8): init mounts a
    // tmpfs on /perm, and ztosd starts on the factory configuration, without an admin.
    set_first_password(&mut vm);
    vm.wait_for("ztos login: ", STEP).unwrap();
    vm.send_line("admin").unwrap();
    vm.wait_for("assword", STEP).unwrap();
    vm.send_line(PASSWORD).unwrap();
    vm.wait_for("Logged in as admin", STEP).unwrap();
    vm.wait_for("WARNING: persistent storage is degraded", STEP)
        .unwrap();
    vm.wait_for("reason: e2fsck -p /dev/", STEP).unwrap();
    vm.wait_for("exited with code 8", STEP).unwrap();
    vm.wait_for("`system reformat-perm`", STEP).unwrap();
    vm.wait_for("ztos> ", STEP).unwrap();

    vm.send_line("health").unwrap();
    vm.wait_for("UNHEALTHY", STEP).unwrap();
    vm.wait_for("persistent storage unusable, running on tmpfs", STEP)
        .unwrap();
    vm.wait_for("exited with code 8", STEP).unwrap();
    vm.wait_for("ztos> ", STEP).unwrap();

    // The reformat: init stops the services, runs mkfs.ext4 on the partition and reboots.
    vm.send_line("system reformat-perm --yes").unwrap();
    vm.wait_for("reformat of ztos-perm", STEP).unwrap();

    // A fresh perm: first boot again, and this time nothing is degraded.
    set_first_password(&mut vm);
    login(&mut vm, "ztos");
    let text = vm.console_text();
    let since_login = text.rsplit("Logged in as admin").next().unwrap_or_default();
    assert!(
        !since_login.contains("persistent storage is degraded"),
        "no perm warning after the reformat:\n{since_login}"
    );
    run(&mut vm, "ztos", "health", "healthy\nCOMPONENT");
}
