//! `ztos-bench`: load generator and timer for `just bench-api`.
//!
//! - `load`: N keep-alive HTTP/1.1 connections over ztosd's unix socket (wrk cannot speak
//!   unix sockets) sending GET requests back to back for a fixed time; prints requests/s and
//!   latency percentiles as JSON. wrk measures the HTTPS side.
//! - `commit`: POSTs a configuration file to `/api/v1/config/commit` over the unix socket and
//!   prints the wall time of the request and the number of kernel changes it reported.
//! - `initramfs`: packs one static program as `/init` into a gzip newc initramfs (the trivial
//!   init of `just bench-boot`), with the image builder's own cpio writer.
//! - `update`: update write throughput next to a raw write of the same bytes, and the time
//!   from an update's start to the new version blessed (`just bench-update`).
//! - `bgp`: route throughput and peak memory of ztos-bgp, BIRD, FRR and GoBGP passing N
//!   prefixes from one eBGP peer to another (`just bench-bgp`, tests/src/bgp_bench.rs).
//! - `boot`: starts qemu (TCG) and prints the seconds until a marker appears on the serial
//!   console: either a direct kernel boot (`--kernel`/`--initrd`, SeaBIOS) or the full UEFI
//!   boot of an image (`--uefi-image`).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use bytes::Bytes;
use clap::{Parser, Subcommand};
use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};

#[derive(Debug, Parser)]
#[command(name = "ztos-bench", about = "Benchmarks for the ZTOS API")]
struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Closed-loop GET load over the unix socket.
    Load {
        #[arg(long)]
        socket: PathBuf,
        #[arg(long, default_value = "/api/v1/security/status")]
        path: String,
        #[arg(long, default_value_t = 32)]
        connections: usize,
        #[arg(long, default_value_t = 10)]
        seconds: u64,
    },
    /// Time one commit of a configuration file.
    Commit {
        #[arg(long)]
        socket: PathBuf,
        #[arg(long)]
        file: PathBuf,
    },
    /// Pack a static program as /init into a gzip newc initramfs.
    Initramfs {
        #[arg(long)]
        init: PathBuf,
        #[arg(long)]
        out: PathBuf,
    },
    /// Seconds from qemu's start until `marker` shows on the serial console.
    Boot {
        /// Direct kernel boot: the kernel image.
        #[arg(long, requires = "initrd", conflicts_with = "uefi_image")]
        kernel: Option<PathBuf>,
        #[arg(long)]
        initrd: Option<PathBuf>,
        #[arg(long, default_value = "")]
        append: String,
        /// A disk image (qcow2) attached on virtio through a throw-away overlay.
        #[arg(long)]
        disk: Option<PathBuf>,
        /// Full UEFI boot of this image (OVMF, systemd-boot) instead of a direct kernel boot.
        #[arg(long)]
        uefi_image: Option<PathBuf>,
        #[arg(long)]
        marker: String,
        #[arg(long, default_value_t = 300)]
        timeout_secs: u64,
    },
    /// Update write throughput next to a raw write of the same bytes, and update-to-blessed
    /// time (tests/src/update_bench.rs).
    Update {
        #[arg(long)]
        kernel: PathBuf,
        /// ZTOS's initramfs (its storage modules serve the raw write).
        #[arg(long)]
        initramfs: PathBuf,
        /// The image (qcow2) both sides write to, through overlays.
        #[arg(long)]
        image: PathBuf,
        /// A bundle the image accepts.
        #[arg(long)]
        bundle: PathBuf,
        /// The bundle's root image, for the raw write.
        #[arg(long)]
        root: PathBuf,
        #[arg(long, default_value_t = 3)]
        runs: usize,
    },
    /// Route throughput and peak memory of BGP daemons passing routes from peer A to peer B
    /// (tests/src/bgp_bench.rs). Prints the report as JSON.
    Bgp {
        /// Daemons to measure: ztos-bgp, bird, frr, gobgp.
        #[arg(long = "daemon", default_values = ["ztos-bgp", "bird", "frr", "gobgp"])]
        daemons: Vec<ztos_tests::bgp_bench::Dut>,
        /// Table sizes as N/LEN or N/LENxRUNS, e.g. 100000/24x3.
        #[arg(long = "size", default_values = ["100000/24x3", "1000000/32x1"])]
        sizes: Vec<ztos_tests::bgp_bench::Size>,
        /// Distinct attribute sets among the prefixes.
        #[arg(long, default_value_t = 10)]
        attribute_sets: u32,
        /// Limit for one run, seconds.
        #[arg(long, default_value_t = 300)]
        timeout_secs: u64,
        /// Also write the Markdown tables (for docs/benchmarks.md) to this file.
        #[arg(long)]
        markdown: Option<PathBuf>,
    },
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    runtime.block_on(async {
        match args.command {
            Command::Load {
                socket,
                path,
                connections,
                seconds,
            } => load(socket, path, connections, Duration::from_secs(seconds)).await,
            Command::Commit { socket, file } => commit(socket, file).await,
            Command::Update {
                kernel,
                initramfs,
                image,
                bundle,
                root,
                runs,
            } => ztos_tests::update_bench::run(&kernel, &initramfs, &image, &bundle, &root, runs),
            Command::Bgp {
                daemons,
                sizes,
                attribute_sets,
                timeout_secs,
                markdown,
            } => {
                let options = ztos_tests::bgp_bench::Options {
                    daemons,
                    sizes,
                    attribute_sets,
                    timeout: Duration::from_secs(timeout_secs),
                };
                bgp(options, markdown).await
            }
            Command::Initramfs { init, out } => initramfs(&init, &out),
            Command::Boot {
                kernel,
                initrd,
                append,
                disk,
                uefi_image,
                marker,
                timeout_secs,
            } => {
                let timeout = Duration::from_secs(timeout_secs);
                let seconds = match (uefi_image, kernel, initrd) {
                    (Some(image), _, _) => boot_uefi(&image, &marker, timeout)?,
                    (None, Some(kernel), Some(initrd)) => {
                        boot_direct(&kernel, &initrd, &append, disk.as_deref(), &marker, timeout)?
                    }
                    _ => bail!("give --uefi-image, or --kernel and --initrd"),
                };
                println!("{}", json!({ "seconds": seconds }));
                Ok(())
            }
        }
    })
}

/// Runs the BGP bench on a blocking thread; SIGINT or SIGTERM removes the run's namespaces
/// and processes before exiting.
async fn bgp(
    options: ztos_tests::bgp_bench::Options,
    markdown: Option<PathBuf>,
) -> anyhow::Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    if !nix::unistd::Uid::effective().is_root() {
        bail!("the BGP bench needs root (network namespaces)");
    }
    let mut interrupt = signal(SignalKind::interrupt())?;
    let mut terminate = signal(SignalKind::terminate())?;
    let task = tokio::task::spawn_blocking(move || ztos_tests::bgp_bench::run(&options));
    let report = tokio::select! {
        joined = task => joined.context("the bench thread")??,
        _ = interrupt.recv() => interrupted(),
        _ = terminate.recv() => interrupted(),
    };
    if let Some(file) = markdown {
        std::fs::write(&file, ztos_tests::bgp_bench::render_markdown(&report))
            .with_context(|| format!("writing {}", file.display()))?;
    }
    println!("{}", ztos_tests::bgp_bench::to_json(&report));
    Ok(())
}

fn interrupted() -> ! {
    eprintln!("bench-bgp: interrupted; removing the lab");
    ztos_tests::bgp_bench::abort_cleanup();
    std::process::exit(130);
}

async fn connect(
    socket: &PathBuf,
) -> anyhow::Result<hyper::client::conn::http1::SendRequest<Full<Bytes>>> {
    let stream = tokio::net::UnixStream::connect(socket)
        .await
        .with_context(|| format!("connecting to {}", socket.display()))?;
    let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok(sender)
}

async fn load(
    socket: PathBuf,
    path: String,
    connections: usize,
    duration: Duration,
) -> anyhow::Result<()> {
    let socket = Arc::new(socket);
    let path = Arc::new(path);
    let deadline = Instant::now() + duration;
    let mut tasks = Vec::new();
    for _ in 0..connections {
        let socket = socket.clone();
        let path = path.clone();
        tasks.push(tokio::spawn(async move {
            let mut sender = connect(&socket).await?;
            let mut latencies = Vec::new();
            let mut errors = 0u64;
            while Instant::now() < deadline {
                let request = Request::get(path.as_str())
                    .header(hyper::header::HOST, "localhost")
                    .body(Full::new(Bytes::new()))?;
                let started = Instant::now();
                let response = sender.send_request(request).await?;
                let ok = response.status().is_success();
                response.into_body().collect().await?;
                latencies.push(started.elapsed());
                if !ok {
                    errors += 1;
                }
            }
            anyhow::Ok((latencies, errors))
        }));
    }
    let mut all = Vec::new();
    let mut errors = 0;
    for task in tasks {
        let (latencies, task_errors) = task.await??;
        all.extend(latencies);
        errors += task_errors;
    }
    if all.is_empty() {
        bail!("no request completed");
    }
    all.sort();
    let pct =
        |p: f64| all[((all.len() as f64 * p) as usize).min(all.len() - 1)].as_secs_f64() * 1000.0;
    let report = json!({
        "requests": all.len(),
        "errors": errors,
        "seconds": duration.as_secs_f64(),
        "requests_per_second": all.len() as f64 / duration.as_secs_f64(),
        "p50_ms": pct(0.50),
        "p99_ms": pct(0.99),
        "max_ms": pct(1.0),
    });
    println!("{report}");
    Ok(())
}

async fn commit(socket: PathBuf, file: PathBuf) -> anyhow::Result<()> {
    let text =
        std::fs::read_to_string(&file).with_context(|| format!("reading {}", file.display()))?;
    let body = serde_json::to_vec(&json!({ "text": text, "comment": "bench" }))?;
    let mut sender = connect(&socket).await?;
    let request = Request::post("/api/v1/config/commit")
        .header(hyper::header::HOST, "localhost")
        .header(hyper::header::CONTENT_TYPE, "application/json")
        .body(Full::new(Bytes::from(body)))?;
    let started = Instant::now();
    let response = sender.send_request(request).await?;
    let status = response.status();
    let bytes = response.into_body().collect().await?.to_bytes();
    let elapsed = started.elapsed();
    let value: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    if !status.is_success() {
        bail!("commit failed with {status}: {value}");
    }
    let changes = value
        .get("changes")
        .and_then(Value::as_array)
        .map_or(0, Vec::len);
    println!(
        "{}",
        json!({ "milliseconds": elapsed.as_secs_f64() * 1000.0, "changes": changes })
    );
    Ok(())
}

fn initramfs(init: &std::path::Path, out: &std::path::Path) -> anyhow::Result<()> {
    use std::io::Write;
    let program = std::fs::read(init).with_context(|| format!("reading {}", init.display()))?;
    let mut tree = ztos_image::tree::FileTree::new();
    tree.file("init", 0o755, program)?;
    let mut cpio = Vec::new();
    ztos_image::cpio::write_newc(&tree, 0, &mut cpio)?;
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(&cpio)?;
    std::fs::write(out, gz.finish()?).with_context(|| format!("writing {}", out.display()))?;
    Ok(())
}

/// Reads the child's console from `reader` until `marker` appears; seconds since `started`.
fn wait_for_marker(
    reader: impl std::io::Read,
    marker: &str,
    started: Instant,
    timeout: Duration,
) -> anyhow::Result<f64> {
    let mut reader = reader;
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        if started.elapsed() > timeout {
            bail!("{marker:?} did not appear within {timeout:?}");
        }
        let n = reader.read(&mut buf)?;
        if n == 0 {
            bail!(
                "the console closed before {marker:?} appeared: {}",
                String::from_utf8_lossy(&seen)
            );
        }
        seen.extend_from_slice(&buf[..n]);
        if String::from_utf8_lossy(&seen).contains(marker) {
            return Ok(started.elapsed().as_secs_f64());
        }
    }
}

fn boot_direct(
    kernel: &std::path::Path,
    initrd: &std::path::Path,
    append: &str,
    disk: Option<&std::path::Path>,
    marker: &str,
    timeout: Duration,
) -> anyhow::Result<f64> {
    let dir = tempfile::tempdir()?;
    let mut command = std::process::Command::new("qemu-system-x86_64");
    command
        .args([
            "-accel", "tcg", "-machine", "q35", "-m", "1024", "-smp", "2",
        ])
        .args(["-nographic", "-monitor", "none", "-serial", "stdio"])
        .arg("-kernel")
        .arg(kernel)
        .arg("-initrd")
        .arg(initrd)
        .args(["-append", append]);
    if let Some(disk) = disk {
        let overlay = dir.path().join("disk.qcow2");
        let status = std::process::Command::new("qemu-img")
            .args(["create", "-q", "-f", "qcow2", "-F", "qcow2", "-b"])
            .arg(disk.canonicalize()?)
            .arg(&overlay)
            .status()?;
        if !status.success() {
            bail!("qemu-img create failed");
        }
        command
            .arg("-drive")
            .arg(format!("file={},if=virtio,format=qcow2", overlay.display()));
    }
    let started = Instant::now();
    let mut child = command
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .context("starting qemu-system-x86_64")?;
    let stdout = child.stdout.take().context("qemu's stdout")?;
    let result = wait_for_marker(stdout, marker, started, timeout);
    let _ = child.kill();
    let _ = child.wait();
    result
}

fn boot_uefi(image: &std::path::Path, marker: &str, timeout: Duration) -> anyhow::Result<f64> {
    let mut vm = ztos_tests::vm::Vm::start(image)?;
    Ok(vm.wait_for(marker, timeout)?.as_secs_f64())
}
