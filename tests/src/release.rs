//! Releases and update bundles for the VM tests and `ztos-bench update`: `ztos-image build`
//! of another version from the same kernel and binaries as the image, `ztos-image bundle`,
//! and deliberately broken bundles. Everything is signed with the development key
//! `just dev-key` makes (target/keys/dev.key), which images built by `just image` trust.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context};
use ztos_image::bundle::{Artifact, BundleHeader, Manifest};
use ztos_image::trust::SecretKey;
use ztos_image::version::Version;

/// The repository root.
pub fn repo() -> PathBuf {
    let here = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    here.canonicalize().unwrap_or(here)
}

/// The development signing key (private half).
pub fn dev_key() -> anyhow::Result<PathBuf> {
    let key = repo().join("target/keys/dev.key");
    if !key.is_file() {
        bail!(
            "{} is missing: `just dev-key` (part of `just image`) makes it",
            key.display()
        );
    }
    Ok(key)
}

/// Runs `command`; an error carries its output.
pub fn run(command: &mut Command) -> anyhow::Result<()> {
    let output = command
        .output()
        .with_context(|| format!("running {command:?}"))?;
    if !output.status.success() {
        bail!(
            "{command:?} failed ({}):\n{}{}",
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(())
}

/// The release `ztos-image` tool `just image` builds.
pub fn ztos_image() -> anyhow::Result<Command> {
    let bin = repo().join("target/release/ztos-image");
    if !bin.is_file() {
        bail!("{} is missing: `just image` builds it", bin.display());
    }
    Ok(Command::new(bin))
}

/// `ztos-image build` of `version` into `out` with the image's kernel, binaries and rootfs,
/// trusting the development key; `overlay` replaces files of the root. Leaves the artifacts
/// (vmlinuz, initramfs.img, root.squashfs, release.toml) and removes the raw disk image.
pub fn build_release(out: &Path, version: &str, overlay: Option<&Path>) -> anyhow::Result<()> {
    let repo = repo();
    let mut command = ztos_image()?;
    command
        .arg("build")
        .arg("--out")
        .arg(out)
        .arg("--kernel-dir")
        .arg(repo.join(".cache/kernel/linux-image"))
        .arg("--bin-dir")
        .arg(repo.join("target/release"))
        .arg("--rootfs")
        .arg(repo.join("rootfs"))
        .args(["--version", version, "--no-qcow2"])
        .arg("--trust-key")
        .arg(repo.join("target/keys/dev.pub"))
        .env("SOURCE_DATE_EPOCH", "1700000000");
    if let Some(overlay) = overlay {
        command.arg("--overlay").arg(overlay);
    }
    run(&mut command)?;
    let _ = std::fs::remove_file(out.join("ztos.img"));
    Ok(())
}

/// `ztos-image bundle --from-build build`, signed with `key`.
pub fn bundle_from_build(build: &Path, key: &Path, out: &Path) -> anyhow::Result<()> {
    run(ztos_image()?
        .arg("bundle")
        .arg("--from-build")
        .arg(build)
        .arg("--key")
        .arg(key)
        .arg("--out")
        .arg(out))
}

/// `ztos-image bundle` of these artifacts as `version`, signed with `key`.
pub fn bundle_of(
    kernel: &Path,
    initramfs: &Path,
    root: &Path,
    version: &str,
    key: &Path,
    out: &Path,
) -> anyhow::Result<()> {
    run(ztos_image()?
        .arg("bundle")
        .arg("--kernel")
        .arg(kernel)
        .arg("--initramfs")
        .arg(initramfs)
        .arg("--root")
        .arg(root)
        .args(["--version", version])
        .arg("--key")
        .arg(key)
        .arg("--out")
        .arg(out))
}

/// A bundle whose correctly signed manifest says the root image is 4096 bytes shorter than
/// the bytes that follow, with the digest of that shorter prefix: every artifact checks out,
/// and only the bytes left over at the end give it away.
pub fn write_size_lie(
    kernel: &Path,
    initramfs: &Path,
    root: &Path,
    version: &str,
    key: &Path,
    out: &Path,
) -> anyhow::Result<()> {
    let read =
        |path: &Path| std::fs::read(path).with_context(|| format!("reading {}", path.display()));
    let kernel = read(kernel)?;
    let initramfs = read(initramfs)?;
    let root = read(root)?;
    let shorter = &root[..root.len().saturating_sub(4096)];
    let manifest = Manifest {
        format: 1,
        version: Version::parse(version)?,
        build_time: 1_700_000_000,
        min_version: Version::parse("0.0.0")?,
        kernel: Artifact::of_reader(&kernel[..])?,
        initramfs: Artifact::of_reader(&initramfs[..])?,
        root: Artifact::of_reader(shorter)?,
    };
    let secret = SecretKey::parse_text(&std::fs::read_to_string(key)?)?;
    let header = BundleHeader::signed(manifest.to_toml().into_bytes(), &[&secret])?;
    let mut file = header.encode()?;
    file.extend_from_slice(&kernel);
    file.extend_from_slice(&initramfs);
    file.extend_from_slice(&root);
    std::fs::write(out, file).with_context(|| format!("writing {}", out.display()))
}
