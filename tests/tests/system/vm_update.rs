//! Signed A/B updates of the real image under qemu (TCG), as an operator meets them: a box
//! booted from the factory image (slot A, version of the workspace) gets bundles through the
//! HTTPS API and the `ztos` CLI.
//!
//! - A good bundle (a second build, version 0.2.0) is written into slot B, boots, is blessed by
//!   ztos-init once ztosd has been healthy for a while, and keeps booting after a reboot.
//! - A bundle whose ztosd exits at once, and one whose kernel panics at boot, are tried until
//!   their boot tries run out; systemd-boot then boots slot A again and the box reports
//!   "rolled back from <version>".
//! - Bad bundles are rejected with a clear error, and afterwards the ESP (every file, byte for
//!   byte) is what it was: one byte flipped in the root image, a signature by an untrusted key,
//!   a truncated upload, a downgrade, a manifest that lies about the root image's size.
//! - The VM is killed at several points while an update is written; every time the box boots
//!   the old version again: while the root is received into memory (slot B not yet touched),
//!   and, with `system.update.root_in_memory_max_mib = 0` (the root streamed into slot B as it
//!   arrives), in the middle of writing slot B.
//!
//! The bundles are built here from the same kernel and binaries as the image (`ztos-image
//! build --version ...`, `ztos-image bundle`), signed with the development key `just image`
//! makes (target/keys/dev.key; the image trusts target/keys/dev.pub). `just vm-test` builds the
//! image and runs these tests; `just test` runs `just vm-test`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use serde_json::Value;
use ztos_tests::release::{
    build_release, bundle_from_build, bundle_of, dev_key, repo, run, write_size_lie, ztos_image,
};
use ztos_tests::vm::{default_image, slot, Vm};

/// TCG reaches the console in about a minute (mostly OVMF); room for a loaded CI machine with
/// two VMs running side by side.
const BOOT_LIMIT: Duration = Duration::from_secs(360);
const PASSWORD: &str = "correct horse battery";
/// The version the factory image carries (the workspace's).
const FACTORY_VERSION: &str = env!("CARGO_PKG_VERSION");

fn image() -> PathBuf {
    std::env::var_os("ZTOS_VM_IMAGE")
        .map(PathBuf::from)
        .unwrap_or_else(default_image)
}

/// The bundles the tests push, built once per test run.
#[derive(Debug)]
struct Fixtures {
    /// Version 0.2.0, built like the image.
    good: PathBuf,
    /// Version 0.3.0 whose /usr/bin/ztosd is the `ztos` CLI: it exits at once (usage error).
    ztosd_exits: PathBuf,
    /// Version 0.3.1 whose initramfs holds no init: the kernel panics at boot.
    kernel_panics: PathBuf,
    /// The good bundle signed by a key the image does not trust.
    untrusted: PathBuf,
    /// The good bundle with one byte of its root image flipped.
    flipped: PathBuf,
    /// The first 60% of the good bundle.
    truncated: PathBuf,
    /// The good build's artifacts as version 0.0.9, signed by the trusted key.
    downgrade: PathBuf,
    /// A correctly signed manifest that says the root image is 4096 bytes shorter than the
    /// bytes that follow (its digest is that of the shorter prefix).
    size_lie: PathBuf,
}

fn fixtures() -> &'static Fixtures {
    static FIXTURES: OnceLock<Fixtures> = OnceLock::new();
    FIXTURES.get_or_init(|| {
        let started = Instant::now();
        let repo = repo();
        let key = dev_key().unwrap();
        let dir = repo.join("target/update-fixtures");
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();

        let good_build = dir.join("build-0.2.0");
        build_release(&good_build, "0.2.0", None).unwrap();
        let good = dir.join("ztos-0.2.0.ztosb");
        bundle_from_build(&good_build, &key, &good).unwrap();
        let kernel = good_build.join("vmlinuz");
        let initramfs = good_build.join("initramfs.img");
        let root = good_build.join("root.squashfs");

        // ztosd replaced by the CLI, which exits with a usage error when given ztosd's options.
        let overlay = dir.join("overlay-ztosd-exits");
        std::fs::create_dir_all(overlay.join("usr/bin")).unwrap();
        std::fs::copy(
            repo.join("target/release/ztos"),
            overlay.join("usr/bin/ztosd"),
        )
        .unwrap();
        let exits_build = dir.join("build-0.3.0");
        build_release(&exits_build, "0.3.0", Some(&overlay)).unwrap();
        let ztosd_exits = dir.join("ztos-0.3.0-ztosd-exits.ztosb");
        bundle_from_build(&exits_build, &key, &ztosd_exits).unwrap();

        // An initramfs of zeros: the kernel unpacks nothing, finds no init and no root= and
        // panics; `panic=10` on the entry's command line reboots.
        let empty_initramfs = dir.join("no-init.img");
        std::fs::write(&empty_initramfs, vec![0u8; 4096]).unwrap();
        let kernel_panics = dir.join("ztos-0.3.1-kernel-panics.ztosb");
        bundle_of(
            &kernel,
            &empty_initramfs,
            &root,
            "0.3.1",
            &key,
            &kernel_panics,
        )
        .unwrap();

        let other = dir.join("untrusted");
        run(ztos_image().unwrap().arg("keygen").arg("--out").arg(&other)).unwrap();
        let untrusted = dir.join("untrusted.ztosb");
        bundle_from_build(&good_build, &other.with_extension("key"), &untrusted).unwrap();

        let mut bytes = std::fs::read(&good).unwrap();
        let flipped = dir.join("flipped.ztosb");
        let at = bytes.len() - 1000;
        bytes[at] ^= 0x01;
        std::fs::write(&flipped, &bytes).unwrap();
        bytes[at] ^= 0x01;

        let truncated = dir.join("truncated.ztosb");
        std::fs::write(&truncated, &bytes[..bytes.len() * 6 / 10]).unwrap();

        let downgrade = dir.join("downgrade.ztosb");
        bundle_of(&kernel, &initramfs, &root, "0.0.9", &key, &downgrade).unwrap();

        let size_lie = dir.join("size-lie.ztosb");
        write_size_lie(&kernel, &initramfs, &root, "0.2.1", &key, &size_lie).unwrap();

        eprintln!("update fixtures built in {:?}", started.elapsed());
        Fixtures {
            good,
            ztosd_exits,
            kernel_panics,
            untrusted,
            flipped,
            truncated,
            downgrade,
            size_lie,
        }
    })
}

/// Commits `system.update.root_in_memory_max_mib` (`None`: removes it, the default budget)
/// through the CLI.
fn set_root_memory_budget(vm: &Vm, token: &str, mib: Option<u32>) {
    let key = "system.update.root_in_memory_max_mib";
    let edit = match mib {
        Some(mib) => vm.ztos(token, &["config", "set", key, &mib.to_string()]),
        None => vm.ztos(token, &["config", "delete", key]),
    };
    let (ok, out) = edit.unwrap();
    assert!(ok, "ztos config set/delete {key}: {out}");
    let (ok, out) = vm
        .ztos(
            token,
            &["config", "commit", "-m", "update root memory budget"],
        )
        .unwrap();
    assert!(ok, "ztos config commit: {out}");
}

fn history(vm: &Vm, token: &str) -> Vec<Value> {
    let value = vm
        .api_json(token, "/api/v1/system/update/history")
        .expect("update history");
    value
        .as_array()
        .cloned()
        .or_else(|| value["events"].as_array().cloned())
        .unwrap_or_else(|| panic!("history is not a list: {value}"))
}

/// The ESP's files of a (qcow2) disk, read through its GPT.
fn esp_files(disk: &Path, scratch: &Path) -> BTreeMap<String, Vec<u8>> {
    let raw = scratch.join("esp-check.raw");
    run(Command::new("qemu-img")
        .args(["convert", "-O", "raw"])
        .arg(disk)
        .arg(&raw))
    .unwrap();
    let file = std::fs::File::open(&raw).unwrap();
    let sectors = file.metadata().unwrap().len() / ztos_image::layout::SECTOR_SIZE;
    let gpt = ztos_image::gpt::Gpt::read_from(&mut &file, sectors).unwrap();
    let esp = gpt
        .partitions
        .iter()
        .find(|p| p.name == ztos_image::layout::ESP_LABEL)
        .expect("the ESP");
    let files = ztos_image::esp::read_esp(ztos_image::disk_io::PartitionIo::new(
        &file,
        esp.offset_bytes(),
        esp.size_bytes(),
    ))
    .unwrap();
    std::fs::remove_file(&raw).unwrap();
    files
}

#[test]
#[ignore = "boots the real image under TCG (minutes); `just vm-test` runs it, and `just test` runs that"]
fn bad_bundles_are_rejected_and_leave_the_esp_and_the_other_slot_untouched() {
    let fixtures = fixtures();
    let mut vm = Vm::start(&image()).unwrap();
    let token = vm.first_boot(PASSWORD, BOOT_LIMIT).unwrap();
    let esp_before = esp_files(&image(), vm.dir());

    let cases: [(&str, &Path, &str, &[&str]); 5] = [
        (
            "one byte flipped in the root image",
            &fixtures.flipped,
            "",
            &["root image", "sha256"],
        ),
        (
            "signed by an untrusted key",
            &fixtures.untrusted,
            "",
            &["untrusted"],
        ),
        (
            "a truncated upload",
            &fixtures.truncated,
            "",
            &["truncated"],
        ),
        (
            "a downgrade",
            &fixtures.downgrade,
            "",
            &["0.0.9", "downgrade"],
        ),
        (
            "a manifest that lies about the root image's size",
            &fixtures.size_lie,
            "",
            &["trailing"],
        ),
    ];
    for (what, bundle, query, expect) in cases {
        let (code, body) = vm.upload_update(&token, bundle, query);
        eprintln!("{what}: {code} {body}");
        assert!(
            (400..500).contains(&code),
            "{what}: expected a 4xx rejection, got {code}: {body}"
        );
        let lower = body.to_lowercase();
        for word in expect {
            assert!(
                lower.contains(word),
                "{what}: the error should say {word:?}: {body}"
            );
        }
        let slots = vm.api_json(&token, "/api/v1/system/slots").expect("slots");
        assert_eq!(slots["booted"], "a", "{what}: {slots}");
        assert_eq!(slot(&slots, "b")["status"], "no-entry", "{what}: {slots}");
        assert_eq!(slots["next_boot"], "a", "{what}: {slots}");
        let events = history(&vm, &token);
        let last = events.last().expect("a history event");
        assert!(
            last["event"] == "rejected" || last["event"] == "failed",
            "{what}: last history event {last}"
        );
    }
    let (code, body) = vm.api(&token, "POST", "/api/v1/system/poweroff", &[]);
    assert!(code < 300, "poweroff: {code} {body}");
    let status = vm.wait_exit(Duration::from_secs(180)).unwrap();
    assert!(status.success(), "qemu exit status {status}");
    let esp_after = esp_files(&vm.dir().join("disk.qcow2"), vm.dir());
    let names = |files: &BTreeMap<String, Vec<u8>>| files.keys().cloned().collect::<Vec<_>>();
    assert_eq!(names(&esp_before), names(&esp_after), "ESP files changed");
    for (name, data) in &esp_before {
        assert!(
            esp_after[name] == *data,
            "{name} on the ESP changed after rejected updates"
        );
    }
}

#[test]
#[ignore = "boots the real image under TCG (minutes); `just vm-test` runs it, and `just test` runs that"]
fn an_update_through_the_cli_boots_the_new_version_is_blessed_and_survives_a_reboot() {
    let fixtures = fixtures();
    let mut vm = Vm::start(&image()).unwrap();
    let token = vm.first_boot(PASSWORD, BOOT_LIMIT).unwrap();

    let good = fixtures.good.display().to_string();
    let (ok, out) = vm.ztos(&token, &["system", "update", &good]).unwrap();
    eprintln!("ztos system update: {out}");
    assert!(ok, "ztos system update {good}: {out}");
    assert!(out.contains("0.2.0"), "the CLI names the version: {out}");

    // The box reboots into slot B on trial; init blesses it once ztosd has been healthy.
    let slots = vm
        .wait_slots(&token, BOOT_LIMIT * 2, "slot b blessed", |s| {
            s["booted"] == "b" && slot(s, "b")["status"] == "good"
        })
        .unwrap();
    assert_eq!(slots["current_version"], "0.2.0", "{slots}");
    assert_eq!(
        slot(&slots, "a")["status"],
        "good",
        "A stays as fallback: {slots}"
    );
    let events: Vec<String> = history(&vm, &token)
        .iter()
        .map(|e| e["event"].as_str().unwrap_or_default().to_string())
        .collect();
    for wanted in ["started", "written", "rebooted", "blessed"] {
        assert!(
            events.iter().any(|e| e == wanted),
            "history lacks {wanted}: {events:?}"
        );
    }

    // Survives a further reboot: still B, still 0.2.0, still good.
    let (code, body) = vm.api(&token, "POST", "/api/v1/system/reboot", &[]);
    assert!(code < 300, "reboot: {code} {body}");
    vm.wait_for("reboot", Duration::from_secs(120)).unwrap();
    vm.wait_for("ztos login: ", BOOT_LIMIT).unwrap();
    let slots = vm
        .wait_slots(&token, BOOT_LIMIT, "back after the reboot", |s| {
            s["booted"] == "b"
        })
        .unwrap();
    assert_eq!(slots["current_version"], "0.2.0", "{slots}");
    assert_eq!(slot(&slots, "b")["status"], "good", "{slots}");
}

/// Pushes `bundle`, waits for the trial boots to fail and slot A to come back, and checks the
/// box reports the rollback.
fn rolls_back_by_itself(bundle: &Path, version: &str) {
    let mut vm = Vm::start(&image()).unwrap();
    let token = vm.first_boot(PASSWORD, BOOT_LIMIT).unwrap();

    let (code, body) = vm.upload_update(&token, bundle, "reboot=now");
    assert!(code < 300, "upload of {version}: {code} {body}");
    // Three tries (each a boot that never becomes healthy), then A again.
    let slots = vm
        .wait_slots(&token, BOOT_LIMIT * 4, "rolled back to A", |s| {
            s["booted"] == "a" && slot(s, "b")["status"] == "bad"
        })
        .unwrap();
    assert_eq!(slots["current_version"], FACTORY_VERSION, "{slots}");
    let text = slots.to_string();
    assert!(
        text.contains(&format!("rolled back from {version}"))
            || slots["boot"]["rolled_back_from"] == version,
        "slots report the rollback from {version}: {slots}"
    );
    let events = history(&vm, &token);
    assert!(
        events
            .iter()
            .any(|e| e["event"] == "rolled-back" && e["version"] == version),
        "history records the rollback from {version}: {events:?}"
    );
    assert!(
        vm.console_text()
            .contains(&format!("rolled back from {version}")),
        "the console says so"
    );
    // A manual rollback to the bad slot is refused.
    let (code, body) = vm.api(&token, "POST", "/api/v1/system/rollback", &[]);
    assert!(
        (400..500).contains(&code),
        "rollback to a bad slot must be refused: {code} {body}"
    );
}

#[test]
#[ignore = "boots the real image under TCG (minutes); `just vm-test` runs it, and `just test` runs that"]
fn a_bundle_whose_ztosd_exits_at_once_rolls_back_by_itself() {
    rolls_back_by_itself(&fixtures().ztosd_exits, "0.3.0");
}

#[test]
#[ignore = "boots the real image under TCG (minutes); `just vm-test` runs it, and `just test` runs that"]
fn a_bundle_whose_kernel_panics_rolls_back_by_itself() {
    rolls_back_by_itself(&fixtures().kernel_panics, "0.3.1");
}

#[test]
#[ignore = "boots the real image under TCG (minutes); `just vm-test` runs it, and `just test` runs that"]
fn power_cuts_while_an_update_is_written_leave_the_old_version_booting() {
    let fixtures = fixtures();
    let mut vm = Vm::start(&image()).unwrap();
    let token = vm.first_boot(PASSWORD, BOOT_LIMIT).unwrap();
    let total = std::fs::metadata(&fixtures.good).unwrap().len();

    // Where to pull the plug: the update's state, how much of the bundle has arrived (the
    // root image starts after the kernel and initramfs, at about 45 %), and whether the root
    // is streamed into slot B (memory budget 0) or received whole into memory first (the
    // default: slot B is written only after the whole bundle is in and checked, in about
    // 0.1 s, too short to aim at; a cut while receiving must leave slot B untouched).
    let points: [(&str, f64, bool); 4] = [
        ("verifying", 0.0, false),
        ("receiving-root", 0.6, false),
        ("writing-root", 0.6, true),
        ("writing-root", 0.92, true),
    ];
    let mut streaming = false;
    for (state, fraction, streamed) in points {
        if streamed != streaming {
            set_root_memory_budget(&vm, &token, streamed.then_some(0));
            streaming = streamed;
        }
        // A slow upload, paced here at 1 MiB/s (curl's --limit-rate averages and bursts to
        // catch up after a slow start), so the cut lands where wanted: curl streams stdin
        // (chunked) and a thread feeds it 64 KiB every 62 ms.
        let mut curl = Command::new("curl")
            .args(["-sk", "-o", "/dev/null", "-X", "POST", "-T", "-"])
            .arg("-H")
            .arg(format!("Authorization: Bearer {token}"))
            .args(["-H", "Content-Type: application/octet-stream"])
            .arg(format!(
                "https://127.0.0.1:{}/api/v1/system/update?reboot=now",
                vm.https_port()
            ))
            .stdin(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut stdin = curl.stdin.take().unwrap();
        let bundle = fixtures.good.clone();
        let feeder = std::thread::spawn(move || {
            use std::io::{Read, Write};
            let mut file = std::fs::File::open(bundle).unwrap();
            let mut chunk = vec![0u8; 64 * 1024];
            loop {
                let n = file.read(&mut chunk).unwrap();
                // A write error is the cut: curl lost its connection.
                if n == 0 || stdin.write_all(&chunk[..n]).is_err() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(62));
            }
        });
        let deadline = Instant::now() + Duration::from_secs(300);
        loop {
            let progress = vm.api_json(&token, "/api/v1/system/update");
            if let Some(p) = &progress {
                // bytes_received counts the bundle as it arrives (bytes_done moves in 4 MiB
                // steps of the writer, too coarse to aim with).
                let received = p["bytes_received"].as_u64().unwrap_or(0) as f64;
                if p["state"] == state && received / total as f64 >= fraction {
                    eprintln!("power cut at {p}");
                    break;
                }
                assert!(
                    !matches!(
                        p["state"].as_str(),
                        Some("writing-boot" | "written" | "rebooting" | "failed")
                    ),
                    "missed the cut point {state} {fraction}: {p}"
                );
            }
            assert!(Instant::now() < deadline, "no progress: {progress:?}");
            std::thread::sleep(Duration::from_millis(200));
        }
        vm.power_cut().unwrap();
        let _ = curl.kill();
        let _ = curl.wait();
        feeder.join().unwrap();

        vm.restart().unwrap();
        vm.wait_for("ztos login: ", BOOT_LIMIT).unwrap();
        let slots = vm
            .wait_slots(&token, BOOT_LIMIT, "the old version back", |s| {
                s["booted"] == "a"
            })
            .unwrap();
        assert_eq!(
            slots["current_version"], FACTORY_VERSION,
            "cut at {state} {fraction}: {slots}"
        );
        assert_ne!(
            slot(&slots, "b")["status"],
            "trial",
            "cut at {state} {fraction}: no half-written slot may boot: {slots}"
        );
        if streamed {
            // The committed setting survived the cut (the next cuts rely on it).
            let (ok, shown) = vm.ztos(&token, &["config", "show"]).unwrap();
            assert!(
                ok && shown.contains("root_in_memory_max_mib = 0"),
                "cut at {state} {fraction}: the running configuration lost the budget: {shown}"
            );
        } else {
            // Received into memory or less: slot B's root was never marked as being written.
            assert_eq!(
                slot(&slots, "b")["root"],
                Value::Null,
                "cut at {state} {fraction}: slot B was touched: {slots}"
            );
        }
    }
    // And the box still takes the update afterwards, received into memory as by default.
    set_root_memory_budget(&vm, &token, None);
    let (code, body) = vm.upload_update(&token, &fixtures.good, "reboot=later");
    assert!(code < 300, "update after the power cuts: {code} {body}");
    let outcome: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(outcome["root_streamed"], false, "{outcome}");
    let slots = vm.api_json(&token, "/api/v1/system/slots").unwrap();
    assert_eq!(slots["next_boot"], "b", "{slots}");
    assert_eq!(slot(&slots, "b")["status"], "trial", "{slots}");
}
