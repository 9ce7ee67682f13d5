//! `ztos-bench update` (run by `just bench-update`): how fast an update writes its root image
//! next to a raw sequential write of the same bytes to the same virtual disk, and how long an
//! update takes from its start to the new version being blessed.
//!
//! - Raw: the image's kernel boots directly with ZTOS's own initramfs (for its storage
//!   modules) plus a busybox archive whose `/bench-init` copies the bundle's root image from a
//!   second virtio disk onto slot B's partition of the image with GNU dd (`bs=4M iflag=direct
//!   oflag=direct conv=fsync`, the host's coreutils dd and the libraries it links, put in the
//!   archive), which times itself from its first read to its data synced, in microseconds: one
//!   copy per run. Direct reads and writes let the virtual disks move the bytes; through the
//!   page cache, copying them on the emulated CPU took most of dd's time.
//! - Update: the image boots as usual (UEFI, systemd-boot), gets its first-boot setup on the
//!   console, and takes the bundle through `POST /api/v1/system/update?reboot=later` several
//!   times (each writes slot B again); ztosd reports the bytes of the root image and the seconds
//!   its writing-root phase took: with the root received whole and checked in memory first
//!   (`root_streamed` false, which the benchmark requires), from its first byte written to the
//!   partition to its data synced, timed with the monotonic clock. A last update reboots, and
//!   the time until slot B is blessed is taken.
//!
//! Both write through the same qemu drive options (virtio, qcow2 overlay of the image), in the
//! same run.

use std::io::{Read, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use serde_json::{json, Value};

use crate::vm::{slot, Vm};

/// Where Debian's busybox-static puts its binary.
pub const BUSYBOX: &str = "/bin/busybox";

const BENCH_INIT: &str = r#"#!/bin/busybox sh
B=/bin/busybox
$B mount -t devtmpfs dev /dev
$B mount -t proc proc /proc
$B mount -t sysfs sys /sys
release=$($B uname -r)
while read -r module args; do
    case "$module" in ''|'#'*) continue ;; esac
    $B insmod "/lib/modules/$release/$module" $args 2>/dev/null
done < /etc/ztos/modules.load
i=0
while [ ! -b /dev/vdb ] || [ ! -b /dev/vda3 ]; do
    i=$((i + 1))
    [ $i -gt 300 ] && { echo "RAW-ERROR: no /dev/vdb or /dev/vda3"; $B poweroff -f; }
    $B sleep 0.1
done
# GNU dd (from the host's coreutils, with its libc) times itself from its first read to its
# last write synced (conv=fsync) and prints it with microseconds: no process start, no clock
# reading in the time. It reads and writes 4 MiB direct: the virtual disks move the bytes, not
# a copy through the page cache on the emulated CPU (ztosd writes 4 MiB direct from memory).
echo "RAW-CLOCK gnu-dd"
for n in $($B seq 1 RUNS); do
    line=$(/bin/gnu-dd if=/dev/vdb of=/dev/vda3 bs=4M iflag=direct oflag=direct conv=fsync 2>&1 | $B grep copied)
    if [ -n "$line" ]; then
        echo "RAW-WRITE $line"
    else
        echo "RAW-ERROR: dd onto /dev/vda3 failed"
    fi
done
echo RAW-DONE
$B poweroff -f
"#;

/// GNU dd, copied with the libraries it links into the raw side's archive (busybox's dd does
/// not time itself).
pub const GNU_DD: &str = "/bin/dd";

/// One raw run: the bytes of its copy and its seconds as dd timed them.
#[derive(Debug, Clone, Copy)]
pub struct RawWrite {
    pub bytes: u64,
    pub seconds: f64,
}

/// Parses `N bytes ... copied, S seconds` (the bench script's line; GNU dd's form too).
pub fn parse_dd(line: &str) -> Option<RawWrite> {
    let bytes = line.split_whitespace().next()?.parse().ok()?;
    let after = line.split("copied,").nth(1)?;
    let seconds = after.split_whitespace().next()?.parse().ok()?;
    Some(RawWrite { bytes, seconds })
}

/// The archive appended to ZTOS's initramfs: `/bench-init`, `/bin/busybox`, and GNU dd as
/// `/bin/gnu-dd` with the shared libraries `ldd` names for it.
fn busybox_initramfs(runs: usize) -> anyhow::Result<Vec<u8>> {
    let busybox = std::fs::read(BUSYBOX)
        .with_context(|| format!("reading {BUSYBOX} (apt-get install busybox-static)"))?;
    let mut tree = ztos_image::tree::FileTree::new();
    tree.file(
        "bench-init",
        0o755,
        BENCH_INIT.replace("RUNS", &runs.to_string()).into_bytes(),
    )?;
    tree.file("bin/busybox", 0o755, busybox)?;
    let dd = std::fs::read(GNU_DD).with_context(|| format!("reading {GNU_DD} (coreutils)"))?;
    tree.file("bin/gnu-dd", 0o755, dd)?;
    let ldd = Command::new("ldd")
        .arg(GNU_DD)
        .output()
        .context("running ldd on GNU dd")?;
    for library in shared_libraries(&String::from_utf8_lossy(&ldd.stdout)) {
        let bytes = std::fs::read(&library)
            .with_context(|| format!("reading {library}, which {GNU_DD} links"))?;
        // ZTOS's initramfs has a merged /usr (lib -> usr/lib, lib64 -> usr/lib64): the
        // library goes where its path leads through those links.
        tree.file(&format!("usr{library}"), 0o755, bytes)?;
    }
    let mut cpio = Vec::new();
    ztos_image::cpio::write_newc(&tree, 0, &mut cpio)?;
    Ok(cpio)
}

/// The absolute paths of the libraries in `ldd`'s output (the loader's line has no `=>`).
fn shared_libraries(ldd: &str) -> Vec<String> {
    ldd.lines()
        .filter_map(|line| {
            let path = match line.split_once("=>") {
                Some((_, right)) => right.split_whitespace().next()?,
                None => line.split_whitespace().next()?,
            };
            path.starts_with('/').then(|| path.to_string())
        })
        .collect()
}

/// Raw sequential writes of `root` onto slot B's partition of (an overlay of) `image`, and
/// the clock that timed them.
pub fn raw_writes(
    kernel: &Path,
    ztos_initramfs: &Path,
    image: &Path,
    root: &Path,
    runs: usize,
) -> anyhow::Result<(Vec<RawWrite>, String)> {
    let dir = tempfile::tempdir()?;
    let mut initrd = std::fs::read(ztos_initramfs)
        .with_context(|| format!("reading {}", ztos_initramfs.display()))?;
    // The kernel unpacks concatenated archives in order; each may be compressed or not.
    while initrd.len() % 4 != 0 {
        initrd.push(0);
    }
    initrd.extend(busybox_initramfs(runs)?);
    let initrd_path = dir.path().join("initrd.img");
    std::fs::write(&initrd_path, &initrd)?;
    let overlay = dir.path().join("disk.qcow2");
    crate::vm::create_overlay(&image.canonicalize()?, &overlay)?;
    let mut child = Command::new("qemu-system-x86_64")
        .args([
            "-accel", "tcg", "-machine", "q35", "-m", "1024", "-smp", "2",
        ])
        .args(["-nographic", "-monitor", "none", "-serial", "stdio"])
        .arg("-kernel")
        .arg(kernel)
        .arg("-initrd")
        .arg(&initrd_path)
        .args([
            "-append",
            "console=ttyS0,115200 rdinit=/bench-init panic=10",
        ])
        .arg("-drive")
        .arg(format!("file={},if=virtio,format=qcow2", overlay.display()))
        .arg("-drive")
        .arg(format!(
            "file={},if=virtio,format=raw,readonly=on",
            root.canonicalize()?.display()
        ))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .context("starting qemu-system-x86_64")?;
    let mut stdout = child.stdout.take().context("qemu's stdout")?;
    let started = Instant::now();
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    let result = loop {
        if started.elapsed() > Duration::from_secs(600) {
            break Err(anyhow::anyhow!(
                "the raw write did not finish within 10 minutes"
            ));
        }
        let n = stdout.read(&mut buf)?;
        if n == 0 {
            break Err(anyhow::anyhow!("qemu exited before RAW-DONE"));
        }
        seen.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&seen);
        if text.contains("RAW-DONE") || text.contains("RAW-ERROR") {
            break Ok(text.into_owned());
        }
    };
    let _ = child.kill();
    let _ = child.wait();
    let text = result.with_context(|| {
        format!(
            "console:\n{}",
            String::from_utf8_lossy(&seen[seen.len().saturating_sub(3000)..])
        )
    })?;
    let writes: Vec<RawWrite> = text
        .lines()
        .filter_map(|line| parse_dd(line.split("RAW-WRITE ").nth(1)?))
        .collect();
    if writes.len() != runs {
        bail!(
            "expected {runs} raw writes, found {}:\n{text}",
            writes.len()
        );
    }
    let clock = text
        .lines()
        .find_map(|line| line.split("RAW-CLOCK ").nth(1))
        .map(|clock| match clock.trim() {
            "gnu-dd" => "microseconds".to_string(),
            other => other.to_string(),
        })
        .context("the bench init named no clock")?;
    Ok((writes, clock))
}

/// One update through the API: the root image's bytes, ztosd's writing-root seconds and the
/// request's wall time.
#[derive(Debug, Clone, Copy)]
pub struct UpdateWrite {
    pub bytes: u64,
    pub write_seconds: f64,
    pub wall_seconds: f64,
}

/// Boots `image`, pushes `bundle` `runs` times without rebooting, then once more with a
/// reboot; returns the writes and the seconds from that last update's start to slot B blessed.
pub fn updates(
    image: &Path,
    bundle: &Path,
    runs: usize,
) -> anyhow::Result<(Vec<UpdateWrite>, f64)> {
    let mut vm = Vm::start(image)?;
    let token = vm.first_boot("benchmark password", Duration::from_secs(600))?;
    let mut writes = Vec::new();
    for _ in 0..runs {
        let started = Instant::now();
        let (code, body) = vm.upload_update(&token, bundle, "reboot=later");
        let wall_seconds = started.elapsed().as_secs_f64();
        if code != 200 {
            bail!("update answered {code}: {body}");
        }
        let outcome: Value = serde_json::from_str(&body).context("the update's answer")?;
        let bytes = outcome["root_bytes"]
            .as_u64()
            .with_context(|| format!("no root_bytes in {outcome}"))?;
        let write_seconds = outcome["root_write_seconds"]
            .as_f64()
            .with_context(|| format!("no root_write_seconds in {outcome}"))?;
        // A streamed root's seconds include receiving it: not a disk write to compare.
        if outcome["root_streamed"] != Value::Bool(false) {
            bail!("the root was streamed into the slot, not written from memory: {outcome}");
        }
        writes.push(UpdateWrite {
            bytes,
            write_seconds,
            wall_seconds,
        });
    }
    let started = Instant::now();
    let (code, body) = vm.upload_update(&token, bundle, "reboot=now");
    if code != 200 {
        bail!("update answered {code}: {body}");
    }
    vm.wait_slots(&token, Duration::from_secs(900), "slot b blessed", |s| {
        s["booted"] == "b" && slot(s, "b")["status"] == "good"
    })?;
    Ok((writes, started.elapsed().as_secs_f64()))
}

/// Runs both sides and prints one JSON object.
pub fn run(
    kernel: &Path,
    ztos_initramfs: &Path,
    image: &Path,
    bundle: &Path,
    root: &Path,
    runs: usize,
) -> anyhow::Result<()> {
    let (raw, clock) = raw_writes(kernel, ztos_initramfs, image, root, runs)?;
    let (updates, to_blessed) = updates(image, bundle, runs)?;
    let report = json!({
        "raw": raw.iter().map(|w| json!({"bytes": w.bytes, "seconds": w.seconds})).collect::<Vec<_>>(),
        "raw_clock": clock,
        "update": updates.iter().map(|w| json!({
            "bytes": w.bytes, "write_seconds": w.write_seconds, "wall_seconds": w.wall_seconds,
        })).collect::<Vec<_>>(),
        "update_to_blessed_seconds": to_blessed,
    });
    let mut out = std::io::stdout().lock();
    writeln!(out, "{report}")?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ldd_output_gives_the_library_paths() {
        let ldd = "\tlinux-vdso.so.1 (0x00007f4cf2bde000)\n\tlibc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x00007f4cf29d1000)\n\t/lib64/ld-linux-x86-64.so.2 (0x00007f4cf2be0000)\n";
        assert_eq!(
            shared_libraries(ldd),
            [
                "/lib/x86_64-linux-gnu/libc.so.6",
                "/lib64/ld-linux-x86-64.so.2"
            ]
        );
    }

    #[test]
    fn dd_timing_parses() {
        let w = parse_dd("10485760 bytes (10.0MB) copied, 0.052811 seconds, 189.3MB/s").unwrap();
        assert_eq!(w.bytes, 10_485_760);
        assert!((w.seconds - 0.052811).abs() < 1e-9);
        assert!(parse_dd("dd: can't open '/dev/vdb'").is_none());
        let w = parse_dd("15556608 bytes (16 MB, 15 MiB) copied, 0.0812 s, 192 MB/s").unwrap();
        assert_eq!(w.bytes, 15_556_608);
        assert!((w.seconds - 0.0812).abs() < 1e-9);
        let w = parse_dd("14811136 bytes copied, 0.95 seconds").unwrap();
        assert_eq!((w.bytes, w.seconds), (14_811_136, 0.95));
    }
}
