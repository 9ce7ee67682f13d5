//! The release flow through the `ztos-image` tool: keygen, an image build that trusts the new
//! key and takes an overlay, `bundle --from-build`, `verify`, `sign`, `trust-key` rotation; and
//! a build that refuses an overlay holding a private key. Uses the same kind of small fake kernel
//! tree as the reproducibility test, so it runs in seconds.

use std::path::Path;
use std::process::{Command, Output};

use ztos_image::build::{build, BuildConfig, OUT_ROOT};
use ztos_image::kernel_config::{fragment_options, ZTOS_FRAGMENT};
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
    let mut dep = String::new();
    for name in INITRAMFS_MODULES.iter().chain(FEATURE_MODULES) {
        dep.push_str(&format!("kernel/{name}.ko:\n"));
        std::fs::write(modules.join(format!("kernel/{name}.ko")), name.as_bytes()).unwrap();
    }
    std::fs::write(modules.join("modules.dep"), dep).unwrap();
    std::fs::create_dir_all(dir.join("bin")).unwrap();
    for name in ["ztos-init", "ztosd", "ztos"] {
        std::fs::copy("/bin/true", dir.join("bin").join(name)).unwrap();
    }
    std::fs::write(dir.join("systemd-bootx64.efi"), b"MZ fake systemd-boot").unwrap();
    std::fs::create_dir_all(dir.join("rootfs/etc/ztos")).unwrap();
    std::fs::write(dir.join("rootfs/etc/ztos/ztos.toml"), b"# factory\n").unwrap();
}

fn config(dir: &Path, out: &str) -> BuildConfig {
    BuildConfig {
        out_dir: dir.join(out),
        kernel_dir: dir.join("kernel"),
        bin_dir: dir.join("bin"),
        rootfs_dir: dir.join("rootfs"),
        systemd_boot_efi: dir.join("systemd-bootx64.efi"),
        version: "1.2.0".into(),
        source_date_epoch: 1_700_000_000,
        fragment: ZTOS_FRAGMENT.into(),
        admin_password_hash: None,
        qcow2: false,
        trust_keys: vec![dir.join("release.pub")],
        overlay_dir: Some(dir.join("overlay")),
    }
}

fn tool(args: &[&str], dir: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ztos-image"))
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap()
}

fn ok(args: &[&str], dir: &Path) -> String {
    let output = tool(args, dir);
    assert!(
        output.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn fails(args: &[&str], dir: &Path) -> String {
    let output = tool(args, dir);
    assert!(!output.status.success(), "{args:?} succeeded");
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn keygen_build_bundle_verify_sign_rotate() {
    let temp = tempfile::tempdir().unwrap();
    let dir = temp.path();
    fake_inputs(dir);
    ok(&["keygen", "--out", "release"], dir);
    ok(&["keygen", "--out", "next"], dir);
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(dir.join("release.key"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    assert!(fails(&["keygen", "--out", "release"], dir).contains("must not exist yet"));

    // The overlay replaces the daemon (a "broken release") and adds a file.
    std::fs::create_dir_all(dir.join("overlay/usr/bin")).unwrap();
    std::fs::write(dir.join("overlay/usr/bin/ztosd"), b"#!/bin/sh\nexit 1\n").unwrap();
    std::fs::write(dir.join("overlay/etc-marker"), b"overlaid\n").unwrap();
    build(&config(dir, "image")).unwrap();
    let listing = Command::new("unsquashfs")
        .args(["-l"])
        .arg(dir.join("image").join(OUT_ROOT))
        .output()
        .unwrap();
    let listing = String::from_utf8_lossy(&listing.stdout);
    assert!(
        listing.contains("squashfs-root/etc/ztos/trust/release.pub\n"),
        "{listing}"
    );
    assert!(listing.contains("squashfs-root/etc-marker\n"), "{listing}");
    let cat = Command::new("unsquashfs")
        .args(["-cat"])
        .arg(dir.join("image").join(OUT_ROOT))
        .arg("usr/bin/ztosd")
        .output()
        .unwrap();
    assert_eq!(cat.stdout, b"#!/bin/sh\nexit 1\n");

    ok(
        &[
            "bundle",
            "--from-build",
            "image",
            "--key",
            "release.key",
            "-o",
            "b.ztosb",
        ],
        dir,
    );
    std::fs::create_dir(dir.join("trust")).unwrap();
    std::fs::copy(dir.join("release.pub"), dir.join("trust/release.pub")).unwrap();
    let report = ok(&["verify", "b.ztosb", "--trust", "trust"], dir);
    assert!(
        report.contains("version 1.2.0, updates from 0.0.0 or later, built at 1700000000"),
        "{report}"
    );
    assert!(report.contains("(trusted, verified)"), "{report}");

    // A bundle signed only by the next key: refused until a statement by the release key.
    ok(
        &[
            "bundle",
            "--kernel",
            "image/vmlinuz",
            "--initramfs",
            "image/initramfs.img",
            "--root",
            "image/root.squashfs",
            "--version",
            "1.3.0",
            "--min-version",
            "1.0.0",
            "--key",
            "next.key",
            "-o",
            "next.ztosb",
        ],
        dir,
    );
    let err = fails(&["verify", "next.ztosb", "--trust", "trust"], dir);
    assert!(err.contains("signature by untrusted key"), "{err}");
    ok(
        &[
            "trust-key",
            "--signer",
            "release.key",
            "--key",
            "next.pub",
            "-o",
            "next.trust",
        ],
        dir,
    );
    ok(
        &[
            "verify",
            "next.ztosb",
            "--trust",
            "trust",
            "--statement",
            "next.trust",
        ],
        dir,
    );
    // A statement by which the untrusted key vouches for itself is refused.
    ok(
        &[
            "trust-key",
            "--signer",
            "next.key",
            "--key",
            "next.pub",
            "-o",
            "self.trust",
        ],
        dir,
    );
    let err = fails(
        &[
            "verify",
            "next.ztosb",
            "--trust",
            "trust",
            "--statement",
            "self.trust",
        ],
        dir,
    );
    assert!(err.contains("trust statements form a cycle"), "{err}");

    // sign adds the release key's signature in place; now it verifies without a statement.
    ok(&["sign", "next.ztosb", "--key", "release.key"], dir);
    let report = ok(&["verify", "next.ztosb", "--trust", "trust"], dir);
    assert!(
        report.contains("(untrusted, ignored)") && report.contains("(trusted, verified)"),
        "{report}"
    );
    let err = fails(&["sign", "next.ztosb", "--key", "release.key"], dir);
    assert!(err.contains("already signed by key"), "{err}");

    // One flipped byte in the root image.
    let mut bytes = std::fs::read(dir.join("b.ztosb")).unwrap();
    let at = bytes.len() - 100;
    bytes[at] ^= 0xff;
    std::fs::write(dir.join("bad.ztosb"), bytes).unwrap();
    let err = fails(&["verify", "bad.ztosb", "--trust", "trust"], dir);
    assert!(err.contains("root image sha256 mismatch"), "{err}");
}

#[test]
fn build_refuses_private_keys_and_bad_trust_keys() {
    let temp = tempfile::tempdir().unwrap();
    let dir = temp.path();
    fake_inputs(dir);
    ok(&["keygen", "--out", "release"], dir);
    std::fs::create_dir_all(dir.join("overlay/etc/ztos/trust")).unwrap();
    std::fs::copy(
        dir.join("release.key"),
        dir.join("overlay/etc/ztos/trust/site.pub"),
    )
    .unwrap();
    let err = build(&config(dir, "image")).unwrap_err().to_string();
    assert_eq!(
        err,
        "/etc/ztos/trust/site.pub in the root holds a private signing key; private keys must never be in an image"
    );
    std::fs::remove_dir_all(dir.join("overlay")).unwrap();
    std::fs::create_dir(dir.join("overlay")).unwrap();
    let mut bad = config(dir, "image");
    bad.trust_keys = vec![dir.join("release.key")];
    let err = build(&bad).unwrap_err().to_string();
    assert!(err.contains("the file name must end in .pub"), "{err}");
    let mut bad = config(dir, "image");
    bad.version = "1.2".into();
    let err = build(&bad).unwrap_err().to_string();
    assert!(err.contains("invalid version \"1.2\""), "{err}");
}
