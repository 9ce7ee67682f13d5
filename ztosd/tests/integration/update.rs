//! The update service end to end, outside the VM: the real `ztosd` binary in its test mode
//! (plain files as the root partitions, a directory as the ESP, slot A booted), bundles built
//! with the image library and signed by a key made here, uploaded over the unix API socket.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::Value;
use sha2::{Digest, Sha256};
use ztos_image::bootloader::boot_entry;
use ztos_image::bundle::{write_bundle, Artifact, BundleHeader, Manifest, FORMAT_VERSION};
use ztos_image::layout::Slot;
use ztos_image::trust::SecretKey;
use ztos_image::version::Version;

const KERNEL: &[u8] = b"a kernel, in a test";
const INITRAMFS: &[u8] = b"an initramfs, in a test";
const PARTITION_BYTES: usize = 3 << 20;

/// The `ztos` binary (crate ztos-cli, so not one of this package's binaries): next to this
/// test executable's `deps` directory, built by `cargo build --workspace --bins` or
/// `cargo build -p ztos-cli`.
fn ztos_cli() -> PathBuf {
    let exe = std::env::current_exe().expect("the test executable's path");
    let mut dir = exe
        .parent()
        .expect("the test executable's directory")
        .to_path_buf();
    if dir.ends_with("deps") {
        dir.pop();
    }
    let path = dir.join("ztos");
    assert!(
        path.exists(),
        "{} does not exist: run `cargo build -p ztos-cli` (or `cargo build --workspace --bins`) first",
        path.display()
    );
    path
}

fn root_image() -> Vec<u8> {
    (0..(1 << 20) + 777u32).map(|i| (i % 253) as u8).collect()
}

struct Node {
    _dir: tempfile::TempDir,
    child: Child,
    socket: PathBuf,
    root_b: PathBuf,
    esp: PathBuf,
    state: PathBuf,
    key: SecretKey,
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Node {
    fn start() -> Node {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state");
        let trust = dir.path().join("trust");
        let esp = dir.path().join("esp");
        std::fs::create_dir_all(&trust).unwrap();
        let key = SecretKey::from_seed(&[7; 32]);
        std::fs::write(trust.join("test.pub"), key.public().to_text()).unwrap();
        // The factory ESP: bootloader, loader.conf, slot A's kernel and its good entry.
        for (path, bytes) in [
            ("EFI/BOOT/BOOTX64.EFI", b"systemd-boot".to_vec()),
            (
                "loader/loader.conf",
                b"default ztos-*\ntimeout 0\n".to_vec(),
            ),
            ("ztos-a/vmlinuz", b"factory kernel".to_vec()),
            ("ztos-a/initramfs", b"factory initramfs".to_vec()),
            (
                "loader/entries/ztos-1-a.conf",
                boot_entry(Slot::A, "0.1.0").into_bytes(),
            ),
        ] {
            let path = esp.join(path);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, bytes).unwrap();
        }
        let root_a = dir.path().join("root-a");
        let root_b = dir.path().join("root-b");
        std::fs::write(&root_a, vec![0xaau8; PARTITION_BYTES]).unwrap();
        std::fs::write(&root_b, vec![0xbbu8; PARTITION_BYTES]).unwrap();
        let socket = dir.path().join("api.sock");
        let child = Command::new(env!("CARGO_BIN_EXE_ztosd"))
            .arg("--state-dir")
            .arg(&state)
            .arg("--api-socket")
            .arg(&socket)
            .arg("--plugin-socket")
            .arg(dir.path().join("plugin.sock"))
            .arg("--init-socket")
            .arg(dir.path().join("init.sock"))
            .args(["--https-listen", "none", "--log", "warn"])
            .arg("--trust-dir")
            .arg(&trust)
            .arg("--update-root-a")
            .arg(&root_a)
            .arg("--update-root-b")
            .arg(&root_b)
            .arg("--update-esp-dir")
            .arg(&esp)
            .args(["--booted-slot", "a", "--current-version", "0.1.0"])
            .spawn()
            .unwrap();
        let node = Node {
            _dir: dir,
            child,
            socket,
            root_b,
            esp,
            state,
            key,
        };
        for _ in 0..200 {
            if std::os::unix::net::UnixStream::connect(&node.socket).is_ok() {
                return node;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("ztosd did not open its API socket");
    }

    /// A request whose body is sent from `chunks` as they arrive.
    async fn send(
        &self,
        method: Method,
        path: &str,
        chunks: tokio::sync::mpsc::Receiver<Bytes>,
    ) -> (StatusCode, Value) {
        let stream = tokio::net::UnixStream::connect(&self.socket).await.unwrap();
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .unwrap();
        tokio::spawn(connection);
        let body = StreamBody::new(futures::stream::unfold(chunks, |mut rx| async move {
            rx.recv()
                .await
                .map(|b| (Ok::<_, std::convert::Infallible>(Frame::data(b)), rx))
        }));
        let request = Request::builder()
            .method(method)
            .uri(path)
            .header("host", "localhost")
            .header("content-type", "application/octet-stream")
            .body(body)
            .unwrap();
        let response = sender.send_request(request).await.unwrap();
        let status = response.status();
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        (
            status,
            serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        )
    }

    async fn upload(&self, query: &str, bundle: Vec<u8>) -> (StatusCode, Value) {
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        tx.send(Bytes::from(bundle)).await.unwrap();
        drop(tx);
        self.send(Method::POST, &format!("/api/v1/system/update{query}"), rx)
            .await
    }

    async fn get(&self, path: &str) -> Value {
        let (_tx, rx) = tokio::sync::mpsc::channel(1);
        drop(_tx);
        let (status, body) = self.send(Method::GET, path, rx).await;
        assert_eq!(status, StatusCode::OK, "{path}: {body}");
        body
    }

    fn bundle(&self, version: &str, root: &[u8]) -> Vec<u8> {
        bundle_signed(&self.key, version, root)
    }

    fn last_event(&self) -> Value {
        let history: Value =
            serde_json::from_slice(&std::fs::read(self.state.join("update/history.json")).unwrap())
                .unwrap();
        history.as_array().unwrap().last().unwrap().clone()
    }
}

fn manifest(version: &str, root: &[u8]) -> Manifest {
    let of = |data: &[u8]| Artifact::of_reader(data).unwrap();
    Manifest {
        format: FORMAT_VERSION,
        version: Version::parse(version).unwrap(),
        build_time: 1_700_000_000,
        min_version: Version::parse("0.1.0").unwrap(),
        kernel: of(KERNEL),
        initramfs: of(INITRAMFS),
        root: of(root),
    }
}

fn bundle_signed(key: &SecretKey, version: &str, root: &[u8]) -> Vec<u8> {
    let manifest = manifest(version, root);
    let header = BundleHeader::signed(manifest.to_toml().into_bytes(), &[key]).unwrap();
    let mut out = Vec::new();
    write_bundle(
        &mut out,
        &header,
        &manifest,
        [&mut &KERNEL[..], &mut &INITRAMFS[..], &mut &root[..]],
    )
    .unwrap();
    out
}

/// Every file under `dir` with its sha256.
fn tree(dir: &Path) -> BTreeMap<String, String> {
    let mut files = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(next) = stack.pop() {
        for item in std::fs::read_dir(&next).unwrap() {
            let path = item.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                let name = path.strip_prefix(dir).unwrap().display().to_string();
                files.insert(
                    name,
                    hex::encode(Sha256::digest(std::fs::read(&path).unwrap())),
                );
            }
        }
    }
    files
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rejected_bundles_leave_the_esp_untouched_and_say_why() {
    let node = Node::start();
    let esp_before = tree(&node.esp);
    let root_b_before = std::fs::read(&node.root_b).unwrap();
    let root = root_image();
    let good = node.bundle("0.2.0", &root);

    let mut flipped = good.clone();
    let last = flipped.len() - 1000;
    flipped[last] ^= 0x01;
    let flipped_again = flipped.clone();
    let untrusted = bundle_signed(&SecretKey::from_seed(&[9; 32]), "0.2.0", &root);
    let truncated = good[..good.len() - 5000].to_vec();
    let downgrade = node.bundle("0.0.9", &root);
    // A manifest that says the kernel is one byte shorter than the bytes that follow.
    let lying = {
        let mut manifest = manifest("0.2.0", &root);
        manifest.kernel.size -= 1;
        let header = BundleHeader::signed(manifest.to_toml().into_bytes(), &[&node.key]).unwrap();
        let mut out = header.encode().unwrap();
        for part in [KERNEL, INITRAMFS, &root[..]] {
            out.extend_from_slice(part);
        }
        out
    };
    let cases: [(&str, Vec<u8>, StatusCode, &str); 5] = [
        (
            "one byte flipped in the root image",
            flipped,
            StatusCode::UNPROCESSABLE_ENTITY,
            "root image sha256 mismatch",
        ),
        (
            "untrusted key",
            untrusted,
            StatusCode::UNPROCESSABLE_ENTITY,
            "untrusted key",
        ),
        (
            "truncated upload",
            truncated,
            StatusCode::BAD_REQUEST,
            "bundle truncated in root image",
        ),
        (
            "downgrade",
            downgrade,
            StatusCode::UNPROCESSABLE_ENTITY,
            "refusing to downgrade from 0.1.0 to 0.0.9",
        ),
        (
            "manifest lying about a size",
            lying,
            StatusCode::UNPROCESSABLE_ENTITY,
            "kernel sha256 mismatch",
        ),
    ];
    for (name, bundle, status, reason) in cases {
        let (got, body) = node.upload("?reboot=never", bundle).await;
        assert_eq!(got, status, "{name}: {body}");
        let message = body["error"].as_str().unwrap_or_default();
        assert!(message.contains(reason), "{name}: {message}");
        assert_eq!(tree(&node.esp), esp_before, "{name}: the ESP changed");
        // The root is received whole and checked before slot B is touched (it fits the
        // default memory budget), so not even a bad root image reaches the partition.
        assert!(
            std::fs::read(&node.root_b).unwrap() == root_b_before,
            "{name}: slot B's root partition changed"
        );
        let event = node.last_event();
        assert_eq!(event["event"], "rejected", "{name}: {event}");
        assert!(
            event["message"].as_str().unwrap().contains(reason),
            "{name}: {event}"
        );
        assert!(
            !node.state.join("update/staging").exists(),
            "{name}: staging left behind"
        );
    }
    let status = node.get("/api/v1/system/update").await;
    assert_eq!(status["state"], "failed");

    // Nothing marked slot B as overwritten: a manual rollback to it is refused only
    // because it has no boot entry.
    let slots = node.get("/api/v1/system/slots").await;
    assert_eq!(slots["slots"][1]["root"], Value::Null, "{slots}");
    let (_tx, rx) = tokio::sync::mpsc::channel(1);
    drop(_tx);
    let (got, body) = node
        .send(Method::POST, "/api/v1/system/rollback?reboot=false", rx)
        .await;
    assert_eq!(got, StatusCode::CONFLICT, "{body}");
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("slot b has no boot entry"),
        "{body}"
    );
    assert_eq!(tree(&node.esp), esp_before);

    // With `system.update.root_in_memory_max_mib = 0` the root is streamed into slot B as it
    // arrives: the slot is marked as being written before the root's first byte, so the
    // same flipped byte, caught at the root's end, leaves it marked overwritten, and a manual
    // rollback to it is refused with that.
    for args in [
        &["config", "set", "system.update.root_in_memory_max_mib", "0"][..],
        &["config", "commit", "-m", "stream update roots"][..],
    ] {
        let output = tokio::task::block_in_place(|| {
            Command::new(ztos_cli())
                .arg("--socket")
                .arg(&node.socket)
                .args(args)
                .output()
                .unwrap()
        });
        assert!(
            output.status.success(),
            "ztos {args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let (got, body) = node.upload("?reboot=never", flipped_again).await;
    assert_eq!(got, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("root image sha256 mismatch"),
        "{body}"
    );
    let slots = node.get("/api/v1/system/slots").await;
    assert_eq!(slots["slots"][1]["root"], "overwritten", "{slots}");
    assert_eq!(tree(&node.esp), esp_before, "streamed: the ESP changed");
    let (_tx, rx) = tokio::sync::mpsc::channel(1);
    drop(_tx);
    let (got, body) = node
        .send(Method::POST, "/api/v1/system/rollback?reboot=false", rx)
        .await;
    assert_eq!(got, StatusCode::CONFLICT, "{body}");
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("slot b was overwritten by an update to 0.2.0 that did not finish"),
        "{body}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_good_update_writes_slot_b_with_progress_and_one_at_a_time() {
    let node = Node::start();
    let root = root_image();
    let bundle = node.bundle("0.2.0", &root);
    let esp_before = tree(&node.esp);

    // Send the first part, then look at the progress and try a second upload.
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    let split = bundle.len() / 2;
    tx.send(Bytes::copy_from_slice(&bundle[..split]))
        .await
        .unwrap();
    let first = node.send(Method::POST, "/api/v1/system/update?reboot=never", rx);
    let watch = async {
        let mut progress = Value::Null;
        for _ in 0..200 {
            progress = node.get("/api/v1/system/update").await;
            // The body is counted as it arrives; the writing thread reads the manifest a
            // moment later.
            if progress["bytes_received"].as_u64().unwrap_or(0) >= split as u64
                && progress["version"] == "0.2.0"
            {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(progress["bytes_received"], split as u64, "{progress}");
        assert!(
            ["receiving", "verifying", "receiving-root"]
                .contains(&progress["state"].as_str().unwrap()),
            "{progress}"
        );
        assert_eq!(progress["version"], "0.2.0", "{progress}");
        let (status, body) = node.upload("?reboot=never", bundle.clone()).await;
        assert_eq!(status, StatusCode::CONFLICT, "{body}");
        assert!(
            body["error"]
                .as_str()
                .unwrap()
                .contains("an update is already running"),
            "{body}"
        );
        tx.send(Bytes::copy_from_slice(&bundle[split..]))
            .await
            .unwrap();
        drop(tx);
    };
    let ((status, outcome), ()) = tokio::join!(first, watch);
    assert_eq!(status, StatusCode::OK, "{outcome}");
    assert_eq!(outcome["entry"], "ztos-2-b+3.conf");
    assert_eq!(outcome["slot"], "b");
    assert_eq!(outcome["reboot"], "never");

    // The root bytes exactly, the rest of the partition as it was.
    let disk = std::fs::read(&node.root_b).unwrap();
    assert_eq!(&disk[..root.len()], &root[..]);
    assert!(disk[root.len()..].iter().all(|b| *b == 0xbb));
    // The ESP: slot A's entry and files and the bootloader untouched; B's entry and files new.
    let esp_after = tree(&node.esp);
    for (name, hash) in &esp_before {
        assert_eq!(esp_after.get(name), Some(hash), "{name} changed");
    }
    let new: Vec<_> = esp_after
        .keys()
        .filter(|k| !esp_before.contains_key(*k))
        .cloned()
        .collect();
    assert_eq!(
        new,
        [
            "loader/entries/ztos-2-b+3.conf",
            "ztos-b/initramfs",
            "ztos-b/vmlinuz"
        ]
    );
    assert_eq!(
        std::fs::read(node.esp.join("ztos-b/vmlinuz")).unwrap(),
        KERNEL
    );
    let entry = std::fs::read_to_string(node.esp.join("loader/entries/ztos-2-b+3.conf")).unwrap();
    assert!(entry.contains("0.2.0"), "{entry}");

    let history = node.get("/api/v1/system/update/history").await;
    let events: Vec<&str> = history
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["event"].as_str().unwrap())
        .collect();
    assert_eq!(events, ["started", "written"]);
    let progress = node.get("/api/v1/system/update").await;
    assert_eq!(progress["state"], "written", "{progress}");

    let slots = node.get("/api/v1/system/slots").await;
    assert_eq!(slots["booted"], "a", "{slots}");
    assert_eq!(slots["next_boot"], "b", "{slots}");
    let b = &slots["slots"][1];
    assert_eq!(b["status"], "trial", "{slots}");
    assert_eq!(b["tries_left"], 3, "{slots}");
    assert_eq!(b["version"], "0.2.0", "{slots}");
    assert_eq!(b["root"], "written", "{slots}");
    assert_eq!(slots["slots"][0]["active"], true, "{slots}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_streams_a_file_and_shows_history_and_slots() {
    let node = Node::start();
    let root = root_image();
    let file = node.state.join("bundle.ztosb");
    std::fs::write(&file, node.bundle("0.3.0", &root)).unwrap();
    let ztos = |args: &[&str]| {
        let output = Command::new(ztos_cli())
            .arg("--socket")
            .arg(&node.socket)
            .args(args)
            .output()
            .unwrap();
        (
            output.status.success(),
            String::from_utf8_lossy(&output.stdout).into_owned(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    };
    let file_arg = file.display().to_string();
    let (ok, stdout, stderr) =
        tokio::task::block_in_place(|| ztos(&["system", "update", &file_arg, "--reboot", "never"]));
    assert!(ok, "{stdout}{stderr}");
    assert_eq!(
        stdout,
        "0.3.0 written to slot b and verified; boot entry ztos-2-b+3.conf\n\
         0.3.0 boots at the next reboot (ztos system reboot)\n"
    );
    let (ok, stdout, _) = tokio::task::block_in_place(|| ztos(&["system", "update", "history"]));
    assert!(ok);
    assert!(stdout.contains("written  0.3.0"), "{stdout}");
    let (ok, stdout, _) = tokio::task::block_in_place(|| ztos(&["system", "slots"]));
    assert!(ok);
    assert!(stdout.contains("trial (3 tries left)"), "{stdout}");
    // An older version: the version policy refuses it, and the CLI says why.
    let old = node.state.join("old.ztosb");
    std::fs::write(&old, node.bundle("0.0.5", &root)).unwrap();
    let old_arg = old.display().to_string();
    let (ok, _, stderr) =
        tokio::task::block_in_place(|| ztos(&["system", "update", &old_arg, "--reboot", "never"]));
    assert!(!ok);
    assert!(
        stderr.contains("refusing to downgrade from 0.1.0 to 0.0.5"),
        "{stderr}"
    );
}
