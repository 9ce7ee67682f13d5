//! Two image builds from the same inputs and SOURCE_DATE_EPOCH are bit-identical (raw and
//! qcow2), and `inspect` reads back what was built. Uses a small fake kernel tree (a config
//! satisfying the fragment, a modules.dep, tiny .ko files) and /bin/true as every binary, so it
//! runs in seconds; `just image` checks the same with the real kernel and binaries.

use std::path::Path;
use std::process::Command;

use ztos_image::build::{build, BuildConfig};
use ztos_image::inspect::{inspect, Content};
use ztos_image::kernel_config::{fragment_options, ZTOS_FRAGMENT};
use ztos_image::layout::Slot;
use ztos_image::modules::{FEATURE_MODULES, INITRAMFS_MODULES};

const RELEASE: &str = "6.1.0-test-amd64";

fn fake_inputs(dir: &Path) {
    let boot = dir.join("kernel/boot");
    std::fs::create_dir_all(&boot).unwrap();
    std::fs::write(boot.join(format!("vmlinuz-{RELEASE}")), vec![0x4d; 300_000]).unwrap();
    let config: String = fragment_options(ZTOS_FRAGMENT)
        .unwrap()
        .iter()
        .map(|o| format!("{o}=m\n"))
        .collect();
    std::fs::write(boot.join(format!("config-{RELEASE}")), config).unwrap();
    let modules = dir.join("kernel/lib/modules").join(RELEASE);
    std::fs::create_dir_all(modules.join("kernel")).unwrap();
    // Every module depends on a shared library module, as the real ones do on crc32c & co.
    let mut dep = String::from("kernel/libshared.ko:\n");
    std::fs::write(modules.join("kernel/libshared.ko"), b"\x7fELF shared").unwrap();
    for name in INITRAMFS_MODULES.iter().chain(FEATURE_MODULES) {
        dep.push_str(&format!("kernel/{name}.ko: kernel/libshared.ko\n"));
        std::fs::write(
            modules.join(format!("kernel/{name}.ko")),
            format!("\x7fELF {name}"),
        )
        .unwrap();
    }
    std::fs::write(modules.join("modules.dep"), dep).unwrap();
    let bin = dir.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    for name in ["ztos-init", "ztosd", "ztos", "ztos-test-plugin"] {
        std::fs::copy("/bin/true", bin.join(name)).unwrap();
    }
    std::fs::write(dir.join("systemd-bootx64.efi"), b"MZ fake systemd-boot").unwrap();
    std::fs::create_dir_all(dir.join("rootfs/etc/ztos")).unwrap();
    std::fs::write(dir.join("rootfs/etc/ztos/ztos.toml"), b"# factory\n").unwrap();
    std::fs::write(dir.join("rootfs/README.md"), b"not shipped\n").unwrap();
}

fn config(dir: &Path, out: &str) -> BuildConfig {
    BuildConfig {
        out_dir: dir.join(out),
        kernel_dir: dir.join("kernel"),
        bin_dir: dir.join("bin"),
        rootfs_dir: dir.join("rootfs"),
        systemd_boot_efi: dir.join("systemd-bootx64.efi"),
        version: "0.1.0-test".into(),
        source_date_epoch: 1_700_000_000,
        fragment: ZTOS_FRAGMENT.into(),
        admin_password_hash: None,
        qcow2: true,
        trust_keys: Vec::new(),
        overlay_dir: None,
    }
}

fn sha256(path: &Path) -> String {
    let output = Command::new("sha256sum").arg(path).output().unwrap();
    assert!(output.status.success());
    String::from_utf8_lossy(&output.stdout)
        .split_whitespace()
        .next()
        .unwrap()
        .to_string()
}

#[test]
fn two_builds_with_the_same_inputs_are_bit_identical() {
    let dir = tempfile::tempdir().unwrap();
    fake_inputs(dir.path());
    let first = build(&config(dir.path(), "one")).unwrap();
    let second = build(&config(dir.path(), "two")).unwrap();
    assert_eq!(
        sha256(&first.image),
        sha256(&second.image),
        "ztos.img differs"
    );
    assert_eq!(
        sha256(first.qcow2.as_ref().unwrap()),
        sha256(second.qcow2.as_ref().unwrap()),
        "ztos.qcow2 differs"
    );
    // Shared dependencies are loaded once, before what needs them, by the initramfs only.
    assert_eq!(first.initramfs_modules, INITRAMFS_MODULES.len() + 1);
    assert_eq!(first.root_modules, FEATURE_MODULES.len());

    let mut other_epoch = config(dir.path(), "three");
    other_epoch.source_date_epoch += 1;
    let third = build(&other_epoch).unwrap();
    assert_ne!(sha256(&first.image), sha256(&third.image));

    let report = inspect(&first.image).unwrap();
    let labels: Vec<&str> = report.partitions.iter().map(|p| p.label.as_str()).collect();
    assert_eq!(
        labels,
        ["ztos-esp", "ztos-root-a", "ztos-root-b", "ztos-perm"]
    );
    assert_eq!(report.partitions[0].content, Content::Fat32);
    assert!(matches!(
        report.partitions[1].content,
        Content::Squashfs { .. }
    ));
    assert_eq!(report.partitions[2].content, Content::Empty);
    assert_eq!(
        report.partitions[3].content,
        Content::Ext4 {
            label: "ztos-perm".into()
        }
    );
    assert_eq!(report.loader_default.as_deref(), Some("ztos-*"));
    assert_eq!(report.slots[0].slot, Slot::A);
    assert_eq!(report.slots[0].entry_file.as_deref(), Some("ztos-1-a.conf"));
    assert_eq!(report.slots[0].version.as_deref(), Some("0.1.0-test"));
    let files: Vec<&str> = report.slots[0]
        .files
        .iter()
        .map(|(n, _)| n.as_str())
        .collect();
    assert_eq!(files, ["initramfs", "vmlinuz"]);
    assert!(report.slots[1].files.is_empty());
    assert_eq!(report.slots[1].entry_file, None);

    // The root holds what init and the consoles need, and not the test double or the README.
    let listing = Command::new("unsquashfs")
        .args(["-l", "-o", &report.partitions[1].offset.to_string()])
        .arg(&first.image)
        .output()
        .unwrap();
    let listing = String::from_utf8_lossy(&listing.stdout);
    for path in [
        "squashfs-root/usr/bin/ztos-init",
        "squashfs-root/usr/bin/ztosd",
        "squashfs-root/usr/sbin/e2fsck",
        "squashfs-root/usr/lib/os-release",
        "squashfs-root/etc/ztos/ztos.toml",
        "squashfs-root/etc/ztos/modules.load",
        "squashfs-root/etc/resolv.conf",
        "squashfs-root/perm",
    ] {
        assert!(
            listing.contains(&format!("{path}\n")),
            "{path} missing:\n{listing}"
        );
    }
    assert!(!listing.contains("ztos-test-plugin"), "{listing}");
    assert!(!listing.contains("README.md"), "{listing}");
}
