//! Tests of the update service in-process: a temporary "appliance" (plain files as root
//! partitions, a directory as the ESP, slot A booted, 0.1.0 running), bundles signed by a key
//! made here, and a fake ztos-init on the status socket where a test needs one.

use std::path::PathBuf;

use bytes::Bytes;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use ztos_image::layout::Slot;
use ztos_image::trust::SecretKey;
use ztos_image::version::Version;

use super::*;

pub(crate) struct TestBox {
    pub dir: tempfile::TempDir,
    pub service: UpdateService,
    pub root_b: PathBuf,
    pub esp: PathBuf,
    pub key: SecretKey,
}

pub(crate) fn appliance() -> TestBox {
    let dir = tempfile::tempdir().unwrap();
    let key = SecretKey::from_seed(&[3; 32]);
    let trust = dir.path().join("trust");
    std::fs::create_dir_all(&trust).unwrap();
    std::fs::write(trust.join("k.pub"), key.public().to_text()).unwrap();
    let esp = dir.path().join("esp");
    std::fs::create_dir_all(esp.join("loader/entries")).unwrap();
    std::fs::write(
        esp.join("loader/entries/ztos-1-a.conf"),
        ztos_image::bootloader::boot_entry(Slot::A, "0.1.0"),
    )
    .unwrap();
    let root_b = dir.path().join("root-b");
    std::fs::write(dir.path().join("root-a"), vec![0u8; 1 << 20]).unwrap();
    std::fs::write(&root_b, vec![0u8; 1 << 20]).unwrap();
    let service = UpdateService::new(options(dir.path()), init(dir.path())).unwrap();
    TestBox {
        dir,
        service,
        root_b,
        esp,
        key,
    }
}

fn options(dir: &Path) -> UpdateOptions {
    UpdateOptions {
        state_dir: dir.join("state"),
        trust_dir: dir.join("trust"),
        disk: DiskAccess::Paths {
            root_a: dir.join("root-a"),
            root_b: dir.join("root-b"),
            esp_dir: dir.join("esp"),
        },
        booted_slot: Some(Slot::A),
        current_version: Some("0.1.0".into()),
    }
}

fn init(dir: &Path) -> InitClient {
    InitClient::new(&dir.join("init.sock"))
}

pub(crate) fn bundle(key: &SecretKey, version: &str, root: &[u8]) -> Vec<u8> {
    use ztos_image::bundle::{write_bundle, Artifact, BundleHeader, FORMAT_VERSION};
    let of = |data: &[u8]| Artifact::of_reader(data).unwrap();
    let manifest = Manifest {
        format: FORMAT_VERSION,
        version: Version::parse(version).unwrap(),
        build_time: 1_700_000_000,
        min_version: Version::parse("0.1.0").unwrap(),
        kernel: of(b"k"),
        initramfs: of(b"i"),
        root: of(root),
    };
    let header = BundleHeader::signed(manifest.to_toml().into_bytes(), &[key]).unwrap();
    let mut out = Vec::new();
    write_bundle(
        &mut out,
        &header,
        &manifest,
        [&mut &b"k"[..], &mut &b"i"[..], &mut &root[..]],
    )
    .unwrap();
    out
}

/// A fake ztos-init answering every request with `answer(request)`, forwarding each request
/// line to the returned channel.
fn fake_init(
    socket: &Path,
    answer: fn(&str) -> String,
) -> tokio::sync::mpsc::UnboundedReceiver<String> {
    let listener = tokio::net::UnixListener::bind(socket).unwrap();
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let (read, mut write) = stream.into_split();
            let mut line = String::new();
            if BufReader::new(read).read_line(&mut line).await.is_err() {
                continue;
            }
            let line = line.trim().to_string();
            let reply = answer(&line);
            let _ = tx.send(line);
            let _ = write.write_all(format!("{reply}\n").as_bytes()).await;
        }
    });
    rx
}

async fn install(node: &TestBox, version: &str, reboot: RebootWhen) -> UpdateOutcome {
    let ticket = node.service.try_begin().unwrap();
    let file = bundle(&node.key, version, &[5u8; 3000]);
    let body = futures::stream::iter(vec![Ok(Bytes::from(file))]);
    let mut request = UpdateRequest::new("test");
    request.reboot = reboot;
    node.service
        .update_from_stream(ticket, body, request)
        .await
        .unwrap()
}

fn events(node: &TestBox) -> Vec<UpdateEvent> {
    node.service.history().iter().map(|e| e.event).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reboot_now_asks_init_and_is_in_the_history() {
    let node = appliance();
    let mut requests = fake_init(&node.dir.path().join("init.sock"), |_| {
        "{\"ok\":true}".into()
    });
    let outcome = install(&node, "0.2.0", RebootWhen::Now).await;
    assert_eq!(outcome.reboot, "now");
    let request = tokio::time::timeout(Duration::from_secs(5), requests.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(request, r#"{"request":"shutdown","kind":"reboot"}"#);
    // The history is written before init is asked.
    assert_eq!(
        events(&node),
        [
            UpdateEvent::Started,
            UpdateEvent::Written,
            UpdateEvent::Rebooted
        ]
    );
    assert_eq!(node.service.progress().state, UpdatePhase::Rebooting);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reboot_in_the_past_is_refused_before_anything_happens() {
    let node = appliance();
    let ticket = node.service.try_begin().unwrap();
    let body = futures::stream::iter(Vec::<io::Result<Bytes>>::new());
    let mut request = UpdateRequest::new("test");
    request.reboot = RebootWhen::parse("2000-01-01T00:00:00Z").unwrap();
    let err = node
        .service
        .update_from_stream(ticket, body, request)
        .await
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "reboot time 2000-01-01T00:00:00Z is in the past"
    );
    assert!(node.service.history().is_empty());
    assert!(RebootWhen::parse("tomorrow")
        .unwrap_err()
        .to_string()
        .contains("expected now, never or an RFC 3339 time"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blessed_and_rolled_back_are_recorded_once_per_boot() {
    let node = appliance();
    let _requests = fake_init(&node.dir.path().join("init.sock"), |_| {
        concat!(
            r#"{"booted_slot":"a","entry":"ztos-1-a.conf","version":"0.1.0","state":"rolled-back","#,
            r#""rolled_back_from":"0.2.0","healthy_since":null,"bless_after_secs":60,"#,
            r#""health_deadline_secs":300,"slots":[],"slots_read_at":null,"message":null}"#
        )
        .into()
    });
    node.service.refresh_boot().await;
    node.service.refresh_boot().await;
    let history = node.service.history();
    assert_eq!(history.len(), 1, "{history:?}");
    assert_eq!(history[0].event, UpdateEvent::RolledBack);
    assert_eq!(history[0].version.as_deref(), Some("0.2.0"));
    assert_eq!(history[0].slot.as_deref(), Some("b"));
    assert_eq!(
        node.service.rollback_notice().as_deref(),
        Some("rolled back from 0.2.0")
    );
    // A restarted ztosd (same boot) does not record it again.
    let again = UpdateService::new(options(node.dir.path()), init(node.dir.path())).unwrap();
    again.refresh_boot().await;
    assert_eq!(again.history().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn manual_rollback_prefers_the_other_slot_or_says_why_not() {
    let node = appliance();
    // Slot B has no entry yet.
    let err = node
        .service
        .rollback(node.service.try_begin().unwrap(), "root", false)
        .await
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "cannot switch to slot b: slot b has no boot entry"
    );
    install(&node, "0.2.0", RebootWhen::Never).await;
    let outcome = node
        .service
        .rollback(node.service.try_begin().unwrap(), "root", false)
        .await
        .unwrap();
    assert_eq!(outcome.slot, "b");
    assert_eq!(outcome.version.as_deref(), Some("0.2.0"));
    // Still on trial: the slot keeps its tries; it already boots next, so nothing is renamed.
    assert_eq!(outcome.entry, "ztos-2-b+3.conf");
    assert!(!outcome.rebooting);
    assert_eq!(events(&node).last(), Some(&UpdateEvent::ManualRollback));
    // A bad slot is refused.
    std::fs::rename(
        node.esp.join("loader/entries/ztos-2-b+3.conf"),
        node.esp.join("loader/entries/ztos-2-b+0-3.conf"),
    )
    .unwrap();
    let err = node
        .service
        .rollback(node.service.try_begin().unwrap(), "root", false)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("has no boot tries left"), "{err}");
    let view = node.service.slots().await.unwrap();
    assert_eq!(view.slots[1].status, "bad");
    assert!(view.slots[1].unavailable.is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_cut_off_by_a_power_cut_is_recorded_at_the_next_start() {
    let node = appliance();
    let state_path = node.dir.path().join("state/update/state.json");
    let mut state = UpdateState::load(&state_path).unwrap();
    state.slots.insert(
        Slot::B,
        SlotRecord::BeingWritten {
            version: "0.2.0".into(),
            since: "t".into(),
        },
    );
    state.save(&state_path).unwrap();
    std::fs::create_dir_all(node.dir.path().join("state/update/staging")).unwrap();
    let restarted = UpdateService::new(options(node.dir.path()), init(node.dir.path())).unwrap();
    let history = restarted.history();
    assert_eq!(history.last().unwrap().event, UpdateEvent::Failed);
    assert!(history.last().unwrap().message.contains("interrupted"));
    assert!(!node.dir.path().join("state/update/staging").exists());
    let err = restarted
        .rollback(restarted.try_begin().unwrap(), "root", false)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("was overwritten"), "{err}");
    assert_eq!(
        UpdateState::load(&state_path).unwrap().slots[&Slot::B],
        SlotRecord::Overwritten {
            version: "0.2.0".into(),
            reason: "the update writing it was interrupted".into()
        }
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn manual_rollback_to_a_good_older_slot_gives_it_the_highest_generation() {
    let node = appliance();
    let entries = node.esp.join("loader/entries");
    std::fs::rename(entries.join("ztos-1-a.conf"), entries.join("ztos-2-a.conf")).unwrap();
    std::fs::write(
        entries.join("ztos-1-b.conf"),
        ztos_image::bootloader::boot_entry(Slot::B, "0.0.9"),
    )
    .unwrap();
    let before = node.service.slots().await.unwrap();
    assert_eq!(before.next_boot.as_deref(), Some("a"));
    assert!(before.slots[1].unavailable.is_none());
    let outcome = node
        .service
        .rollback(node.service.try_begin().unwrap(), "root", false)
        .await
        .unwrap();
    assert_eq!(outcome.entry, "ztos-3-b.conf");
    assert_eq!(outcome.version.as_deref(), Some("0.0.9"));
    let after = node.service.slots().await.unwrap();
    assert_eq!(after.next_boot.as_deref(), Some("b"));
    assert_eq!(after.slots[0].entry.as_deref(), Some("ztos-2-a.conf"));
}

/// Uploads `file` in one piece with the given memory budget (MiB; `None`: the default).
async fn upload(
    node: &TestBox,
    file: Vec<u8>,
    root_in_memory_max_mib: Option<u32>,
) -> Result<UpdateOutcome, UpdateError> {
    let ticket = node.service.try_begin().unwrap();
    let body = futures::stream::iter(vec![Ok(Bytes::from(file))]);
    let mut request = UpdateRequest::new("test");
    request.reboot = RebootWhen::Never;
    request.root_in_memory_max_mib = root_in_memory_max_mib;
    node.service.update_from_stream(ticket, body, request).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_root_within_the_budget_is_received_whole_then_written() {
    let node = appliance();
    // Not a multiple of 4096: the aligned bulk and the tail take their two ways.
    let root: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    let outcome = upload(&node, bundle(&node.key, "0.2.0", &root), None)
        .await
        .unwrap();
    assert!(!outcome.root_streamed);
    assert_eq!(outcome.root_bytes, root.len() as u64);
    assert!(outcome.root_write_seconds > 0.0);
    let disk = std::fs::read(&node.root_b).unwrap();
    assert_eq!(&disk[..root.len()], &root[..]);
    assert!(disk[root.len()..].iter().all(|b| *b == 0));
    let history = node.service.history();
    assert!(
        history
            .last()
            .unwrap()
            .message
            .contains("received, then written"),
        "{history:?}"
    );
    assert!(matches!(
        &lock(&node.service.inner.state).slots[&Slot::B],
        SlotRecord::Written { version, .. } if version == "0.2.0"
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_root_received_into_memory_never_touches_the_slot() {
    let node = appliance();
    let before = std::fs::read(&node.root_b).unwrap();
    let root = vec![9u8; 200_000];
    let good = bundle(&node.key, "0.2.0", &root);
    let mut flipped = good.clone();
    let at = flipped.len() - 10;
    flipped[at] ^= 1;
    let err = upload(&node, flipped, Some(1)).await.unwrap_err();
    assert!(
        err.to_string().contains("root image sha256 mismatch"),
        "{err}"
    );
    let truncated = good[..good.len() - 100].to_vec();
    let err = upload(&node, truncated, None).await.unwrap_err();
    assert!(
        err.to_string().contains("bundle truncated in root image"),
        "{err}"
    );
    // Bytes after the root: refused too, before the slot is touched.
    let mut longer = good.clone();
    longer.extend_from_slice(b"trailing");
    let err = upload(&node, longer, None).await.unwrap_err();
    assert!(matches!(err, UpdateError::Rejected(_)), "{err}");
    assert_eq!(std::fs::read(&node.root_b).unwrap(), before);
    assert!(!lock(&node.service.inner.state).slots.contains_key(&Slot::B));
    assert!(node.service.slots().await.unwrap().slots[1].root.is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_root_over_the_budget_is_streamed_into_the_slot() {
    let node = appliance();
    let root: Vec<u8> = (0..(1u32 << 20) - 5).map(|i| (i % 249) as u8).collect();
    // Budget 0: always stream.
    let outcome = upload(&node, bundle(&node.key, "0.2.0", &root), Some(0))
        .await
        .unwrap();
    assert!(outcome.root_streamed);
    let disk = std::fs::read(&node.root_b).unwrap();
    assert_eq!(&disk[..root.len()], &root[..]);
    assert!(node
        .service
        .history()
        .last()
        .unwrap()
        .message
        .contains("streamed into the slot"));
    // A flipped byte on the streamed path is found at the root's end, after the slot was
    // marked as being written: it stays marked overwritten.
    let mut flipped = bundle(&node.key, "0.2.1", &root);
    let at = flipped.len() - 10;
    flipped[at] ^= 1;
    let err = upload(&node, flipped, Some(0)).await.unwrap_err();
    assert!(
        err.to_string().contains("root image sha256 mismatch"),
        "{err}"
    );
    assert!(matches!(
        lock(&node.service.inner.state).slots[&Slot::B],
        SlotRecord::Overwritten { .. }
    ));
}

#[test]
fn the_default_budget_is_a_quarter_of_available_memory_capped() {
    let meminfo =
        "MemTotal:        1004000 kB\nMemFree:          500000 kB\nMemAvailable:     800000 kB\n";
    assert_eq!(budget_from_meminfo(meminfo), Some(800_000 * 1024 / 4));
    let big = "MemAvailable:   64000000 kB\n";
    assert_eq!(budget_from_meminfo(big), Some(ROOT_IN_MEMORY_DEFAULT_CAP));
    assert_eq!(budget_from_meminfo("MemTotal: 1 kB\n"), None);
    assert_eq!(root_memory_budget(Some(0)), 0);
    assert_eq!(root_memory_budget(Some(16)), 16 << 20);
    // This machine's /proc/meminfo has MemAvailable.
    let default = root_memory_budget(None);
    assert!(
        default > 0 && default <= ROOT_IN_MEMORY_DEFAULT_CAP,
        "{default}"
    );
}
