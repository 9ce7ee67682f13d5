//! `ztos-wg-bench`: the measurements behind `just bench-wg` (tests/bench/bench-wg.sh writes
//! them into docs/benchmarks.md). Two network namespaces joined by one veth link, as in
//! tests/tests/system/wireguard.rs; for each WireGuard implementation a fresh lab with that
//! implementation on both ends:
//!
//! - `ztos`: ztosd + ztos-wireguard on both nodes, the server allowing ICMP and TCP 5201 from
//!   the client's key (2 rules);
//! - `wireguard-go`: Debian's wireguard-go configured with wg(8);
//! - `boringtun`: boringtun's own CLI (`--boringtun PATH`), configured with wg(8);
//! - `ztos-1000-rules`: as `ztos`, with 998 rules before those two that do not match the flow.
//!
//! Per implementation: ping latency (median rtt of `--pings` echoes, 50 ms apart, no other
//! traffic), then `--runs` iperf3 TCP transfers of `--seconds` each from the client to the
//! server; for each transfer the bytes received and the CPU seconds (user + system, from
//! /proc/PID/stat) the datapath processes of both nodes used meanwhile. Prints one JSON
//! document. Needs root; everything it starts is stopped and the namespaces are removed when
//! it ends, also on failure.

use std::fs;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::Parser;
use serde::Serialize;
use serde_json::Value;
use ztos_tests::lab::{binary, Lab, Node};

#[derive(Debug, Parser)]
#[command(
    name = "ztos-wg-bench",
    about = "WireGuard throughput, latency and CPU per Gbit/s through ZTOS, wireguard-go and boringtun"
)]
struct Args {
    /// iperf3 transfers per implementation.
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// Seconds per transfer.
    #[arg(long, default_value_t = 10)]
    seconds: u32,
    /// Ping echoes per implementation.
    #[arg(long, default_value_t = 40)]
    pings: u32,
    /// boringtun's CLI (`cargo install boringtun-cli`); without it that row is skipped.
    #[arg(long)]
    boringtun: Option<PathBuf>,
    /// Run only these implementations (ztos, wireguard-go, boringtun, ztos-1000-rules).
    #[arg(long, value_delimiter = ',')]
    only: Vec<String>,
}

const A_UNDERLAY: &str = "192.168.97.1";
const B_UNDERLAY: &str = "192.168.97.2";
const A_TUNNEL: &str = "10.97.0.1";
const B_TUNNEL: &str = "10.97.0.2";
const PORT: &str = "51820";

#[derive(Debug, Serialize)]
struct Transfer {
    /// Bytes the server received.
    bytes: f64,
    seconds: f64,
    mbit_per_s: f64,
    /// CPU seconds (user + system) of the datapath processes of both nodes.
    cpu_seconds: f64,
    cpu_seconds_per_gbit: f64,
    retransmits: u64,
}

#[derive(Debug, Serialize)]
struct Measurement {
    name: String,
    description: String,
    rtt_ms: Vec<f64>,
    transfers: Vec<Transfer>,
}

/// A process started in a node; killed and reaped when dropped.
struct Process {
    child: Child,
    log: PathBuf,
    what: String,
}

impl Process {
    fn spawn(node: &Node, what: &str, args: &[&str], env: &[(&str, &str)]) -> Result<Process> {
        let log = node.dir().join(format!("{what}.log"));
        let file = fs::File::create(&log)?;
        // `ip netns exec` execs the command: the child's pid is the process's own.
        let child = Command::new("ip")
            .args(["netns", "exec", node.namespace()])
            .args(args)
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(file.try_clone()?)
            .stderr(file)
            .spawn()
            .with_context(|| format!("starting {what} ({})", args[0]))?;
        Ok(Process {
            child,
            log,
            what: what.to_string(),
        })
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn check_alive(&mut self) -> Result<()> {
        if let Some(status) = self.child.try_wait()? {
            bail!(
                "{} exited ({status}):\n{}",
                self.what,
                fs::read_to_string(&self.log).unwrap_or_default()
            );
        }
        Ok(())
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// CPU seconds (user + system, threads included) a process has used so far.
fn cpu_seconds(pid: u32) -> Result<f64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat"))
        .with_context(|| format!("reading /proc/{pid}/stat"))?;
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    let ticks = |i: usize| -> Result<f64> {
        fields
            .get(i)
            .and_then(|f| f.parse::<f64>().ok())
            .with_context(|| format!("/proc/{pid}/stat has no field {}", i + 3))
    };
    // utime and stime are fields 14 and 15 (1-based), after pid and comm.
    let hz = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
        .ok()
        .flatten()
        .unwrap_or(100) as f64;
    Ok((ticks(11)? + ticks(12)?) / hz)
}

fn run(node: &Node, args: &[&str]) -> Result<String> {
    let out = node.exec(args);
    if !out.status.success() {
        bail!(
            "{args:?} in {} failed: {}{}",
            node.name(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn wait_until(what: &str, seconds: u64, mut condition: impl FnMut() -> Result<bool>) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(seconds);
    while !condition()? {
        if Instant::now() > deadline {
            bail!("timed out after {seconds} s waiting for {what}");
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    Ok(())
}

fn two_nodes(lab: &Lab) -> (Node, Node) {
    let (a, b) = (lab.node("a"), lab.node("b"));
    lab.link(
        (&a, "eth0", Some(&format!("{A_UNDERLAY}/24"))),
        (&b, "eth0", Some(&format!("{B_UNDERLAY}/24"))),
    );
    (a, b)
}

/// The rtts of `count` echoes from `a` to `b`'s tunnel address, in ms.
fn ping(a: &Node, count: u32) -> Result<Vec<f64>> {
    let out = run(
        a,
        &[
            "ping",
            "-n",
            "-c",
            &count.to_string(),
            "-i",
            "0.05",
            "-W",
            "2",
            B_TUNNEL,
        ],
    )?;
    let rtts: Vec<f64> = out
        .lines()
        .filter_map(|l| l.split("time=").nth(1))
        .filter_map(|t| t.split_whitespace().next())
        .filter_map(|t| t.parse().ok())
        .collect();
    if rtts.is_empty() {
        bail!("ping printed no rtts: {out}");
    }
    Ok(rtts)
}

/// `runs` iperf3 transfers from a to b; CPU of `datapath` measured around each.
fn transfers(
    a: &Node,
    b: &Node,
    datapath: &mut [&mut Process],
    runs: usize,
    seconds: u32,
) -> Result<Vec<Transfer>> {
    let mut results = Vec::new();
    for _ in 0..runs {
        run(b, &["iperf3", "-s", "-D", "-1", "-B", B_TUNNEL])?;
        std::thread::sleep(Duration::from_millis(300));
        for p in datapath.iter_mut() {
            p.check_alive()?;
        }
        let before: f64 = datapath
            .iter()
            .map(|p| cpu_seconds(p.pid()))
            .sum::<Result<f64>>()?;
        let out = run(
            a,
            &["iperf3", "-c", B_TUNNEL, "-t", &seconds.to_string(), "-J"],
        )?;
        let after: f64 = datapath
            .iter()
            .map(|p| cpu_seconds(p.pid()))
            .sum::<Result<f64>>()?;
        let report: Value = serde_json::from_str(&out).context("iperf3's JSON report")?;
        let received = &report["end"]["sum_received"];
        let bytes = received["bytes"].as_f64().unwrap_or(0.0);
        let secs = received["seconds"].as_f64().unwrap_or(0.0);
        if bytes <= 0.0 || secs <= 0.0 {
            bail!("iperf3 moved nothing: {out}");
        }
        let gbit = bytes * 8.0 / 1e9;
        let cpu = after - before;
        results.push(Transfer {
            bytes,
            seconds: secs,
            mbit_per_s: bytes * 8.0 / secs / 1e6,
            cpu_seconds: cpu,
            cpu_seconds_per_gbit: cpu / gbit,
            retransmits: report["end"]["sum_sent"]["retransmits"]
                .as_u64()
                .unwrap_or(0),
        });
        // Let the server's -1 exit and the sockets settle before the next run.
        std::thread::sleep(Duration::from_millis(500));
    }
    Ok(results)
}

fn public_key(node: &Node) -> Result<String> {
    let out = Command::new(binary("ztos-wireguard"))
        .arg("--state-dir")
        .arg(node.dir().join("wg"))
        .args(["--print-public-key", "wg0"])
        .output()
        .context("running ztos-wireguard --print-public-key")?;
    if !out.status.success() {
        bail!("ztos-wireguard --print-public-key: {out:?}");
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

fn ztos_interface(address: &str, peer: &str, endpoint: &str, allowed: &str) -> String {
    format!(
        "[[wireguard.interfaces]]\nname = \"wg0\"\nlisten_port = {PORT}\naddresses = [\"{address}/24\"]\n\n\
         [[wireguard.interfaces.peers]]\npublic_key = \"{peer}\"\nendpoint = \"{endpoint}:{PORT}\"\nallowed_ips = [\"{allowed}/32\"]\n"
    )
}

fn rule(name: &str, from: &str, protocol: &str, ports: &str, destination: &str) -> String {
    let mut r = format!("\n[[policy.rules]]\nname = \"{name}\"\naction = \"allow\"\nfrom = [\"{from}\"]\nprotocol = \"{protocol}\"\n");
    if !ports.is_empty() {
        r.push_str(&format!("ports = [\"{ports}\"]\n"));
    }
    if !destination.is_empty() {
        r.push_str(&format!("destination = [\"{destination}\"]\n"));
    }
    r
}

/// `extra` rules that do not match the bench's flows, then ICMP and TCP 5201 from `ka`.
/// A quarter of them share the flow's protocol and port bucket (TCP 5000-5999) and differ
/// only in the destination, so the classifier has to compare the packet with each of those;
/// the rest differ in port, protocol or peer.
fn server_policy(ka: &str, other: &str, extra: usize) -> String {
    let mut policy = String::new();
    for i in 0..extra {
        let name = format!("bench-{i}");
        let (x, y) = (i / 250, i % 250);
        policy.push_str(&match i % 4 {
            0 => rule(&name, ka, "tcp", &(20000 + i).to_string(), ""),
            1 => rule(&name, ka, "udp", "5201", ""),
            2 => rule(&name, ka, "tcp", "5000-5999", &format!("10.98.{x}.{y}/32")),
            _ => rule(&name, other, "tcp", "5201", ""),
        });
    }
    policy.push_str(&rule("ping-from-a", ka, "icmp", "", ""));
    policy.push_str(&rule("iperf-from-a", ka, "tcp", "5201", ""));
    policy
}

fn bench_ztos(args: &Args, extra_rules: usize) -> Result<Measurement> {
    let lab = Lab::new("wgb");
    let (a, b) = two_nodes(&lab);
    let (ka, kb) = (public_key(&a)?, public_key(&b)?);
    // A key no peer has: rules for another identity.
    let other = {
        let c = lab.node("c");
        public_key(&c)?
    };
    let a_config = ztos_interface(A_TUNNEL, &kb, B_UNDERLAY, B_TUNNEL);
    let b_config = format!(
        "{}{}",
        ztos_interface(B_TUNNEL, &ka, A_UNDERLAY, A_TUNNEL),
        server_policy(&ka, &other, extra_rules)
    );
    let _da = a.start_ztosd(&a_config);
    let _db = b.start_ztosd(&b_config);
    let plugin = |node: &Node| {
        let socket = node.dir().join("plugin.sock");
        let state = node.dir().join("wg");
        Process::spawn(
            node,
            "ztos-wireguard",
            &[
                binary("ztos-wireguard").to_str().unwrap_or_default(),
                "--socket",
                socket.to_str().unwrap_or_default(),
                "--state-dir",
                state.to_str().unwrap_or_default(),
            ],
            &[],
        )
    };
    let mut pa = plugin(&a)?;
    let mut pb = plugin(&b)?;
    wait_until("the tunnel", 30, || {
        pa.check_alive()?;
        pb.check_alive()?;
        Ok(a.exec(&["ping", "-c", "1", "-W", "1", B_TUNNEL])
            .status
            .success())
    })?;
    let rtt_ms = ping(&a, args.pings)?;
    let transfers = transfers(&a, &b, &mut [&mut pa, &mut pb], args.runs, args.seconds)?;
    let rules = extra_rules + 2;
    Ok(Measurement {
        name: if extra_rules == 0 {
            "ztos".into()
        } else {
            format!("ztos-{rules}-rules")
        },
        description: if extra_rules == 0 {
            "ztos-wireguard (ztosd, 2 policy rules on the server)".into()
        } else {
            format!("ztos-wireguard with {rules} policy rules on the server (the flow's are the last two)")
        },
        rtt_ms,
        transfers,
    })
}

/// A UAPI-speaking implementation (wireguard-go or boringtun-cli) on both nodes, set up with
/// wg(8). Their UAPI sockets (/var/run/wireguard/NAME.sock) are not per namespace, so the
/// device names are unique to this process.
fn bench_uapi(
    args: &Args,
    name: &str,
    command: &[&str],
    env: &[(&str, &str)],
) -> Result<Measurement> {
    let lab = Lab::new("wgb");
    let (a, b) = two_nodes(&lab);
    let mut keys = Vec::new();
    let mut processes = Vec::new();
    for (i, (node, tunnel)) in [(&a, A_TUNNEL), (&b, B_TUNNEL)].into_iter().enumerate() {
        let device = format!("wgb{}n{i}", std::process::id() % 1_000_000);
        let mut full: Vec<&str> = command.to_vec();
        full.push(&device);
        let mut process = Process::spawn(node, name, &full, env)?;
        wait_until(&format!("{name}'s UAPI socket"), 15, || {
            process.check_alive()?;
            Ok(node.exec(&["wg", "show", &device]).status.success())
        })?;
        let private = node.dir().join("wg.key");
        let key = Command::new("wg")
            .arg("genkey")
            .output()
            .context("wg genkey")?;
        fs::write(&private, &key.stdout)?;
        let public = Command::new("wg")
            .arg("pubkey")
            .stdin(fs::File::open(&private)?)
            .output()
            .context("wg pubkey")?;
        keys.push(String::from_utf8_lossy(&public.stdout).trim().to_string());
        run(
            node,
            &[
                "wg",
                "set",
                &device,
                "private-key",
                private.to_str().unwrap_or_default(),
                "listen-port",
                PORT,
            ],
        )?;
        node.ip(&["address", "add", &format!("{tunnel}/24"), "dev", &device]);
        node.ip(&["link", "set", &device, "mtu", "1420", "up"]);
        processes.push((process, device));
    }
    for (i, (node, endpoint, allowed)) in [(&a, B_UNDERLAY, B_TUNNEL), (&b, A_UNDERLAY, A_TUNNEL)]
        .into_iter()
        .enumerate()
    {
        let peer = &keys[1 - i];
        run(
            node,
            &[
                "wg",
                "set",
                &processes[i].1,
                "peer",
                peer,
                "endpoint",
                &format!("{endpoint}:{PORT}"),
                "allowed-ips",
                &format!("{allowed}/32"),
            ],
        )?;
    }
    wait_until("the tunnel", 30, || {
        Ok(a.exec(&["ping", "-c", "1", "-W", "1", B_TUNNEL])
            .status
            .success())
    })?;
    let rtt_ms = ping(&a, args.pings)?;
    let (first, rest) = processes.split_at_mut(1);
    let transfers = transfers(
        &a,
        &b,
        &mut [&mut first[0].0, &mut rest[0].0],
        args.runs,
        args.seconds,
    )?;
    Ok(Measurement {
        name: name.to_string(),
        description: String::new(),
        rtt_ms,
        transfers,
    })
}

fn version(command: &str) -> String {
    Command::new(command)
        .arg("--version")
        .output()
        .ok()
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .next()
                .unwrap_or_default()
                .trim()
                .to_string()
        })
        .unwrap_or_default()
}

fn main() -> Result<()> {
    let args = Args::parse();
    if !nix::unistd::Uid::effective().is_root() {
        bail!("ztos-wg-bench needs root (network namespaces)");
    }
    let wanted = |name: &str| args.only.is_empty() || args.only.iter().any(|o| o == name);
    let mut results = Vec::new();
    let mut skipped = Vec::new();
    if wanted("ztos") {
        eprintln!("ztos-wg-bench: ztos-wireguard");
        results.push(bench_ztos(&args, 0)?);
    }
    if wanted("wireguard-go") {
        eprintln!("ztos-wg-bench: wireguard-go");
        let mut m = bench_uapi(
            &args,
            "wireguard-go",
            &["wireguard-go", "-f"],
            &[("WG_I_PREFER_BUGGY_USERSPACE_TO_POLISHED_KMOD", "1")],
        )?;
        m.description = format!("Debian's {}", version("wireguard-go"));
        results.push(m);
    }
    if wanted("boringtun") {
        match &args.boringtun {
            Some(path) => {
                eprintln!("ztos-wg-bench: boringtun-cli");
                let path = path.to_string_lossy().into_owned();
                let mut m = bench_uapi(
                    &args,
                    "boringtun",
                    &[&path, "--foreground", "--disable-drop-privileges"],
                    &[],
                )?;
                m.description = format!("boringtun's CLI ({})", version(&path));
                results.push(m);
            }
            None => skipped.push("boringtun: no --boringtun given".to_string()),
        }
    }
    if wanted("ztos-1000-rules") {
        eprintln!("ztos-wg-bench: ztos-wireguard with 1000 rules");
        results.push(bench_ztos(&args, 998)?);
    }
    let report = serde_json::json!({
        "runs": args.runs,
        "seconds": args.seconds,
        "pings": args.pings,
        "results": results,
        "skipped": skipped,
    });
    println!("{}", serde_json::to_string_pretty(&report)?);
    Ok(())
}
