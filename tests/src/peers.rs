//! What the BGP system tests share (`tests/system/bgp.rs`, `tests/system/bgp_interop.rs`): processes run
//! inside a lab node and killed when dropped ([`Daemon`]), ztos-bgp as its own process next to
//! the node's ztosd (so a test can kill and restart it), queries of ztosd's BGP state through
//! the `ztos` CLI, and the real peers from Debian as plain processes in a node: FRR's zebra and
//! bgpd ([`Frr`]) and GoBGP's gobgpd ([`Gobgp`]), each with its configuration, sockets and log
//! in the node's directory so that several instances run side by side and nothing of the
//! host's (its /etc/frr, /run/frr, systemd services) is used.
//!
//! Packages are installed on first use ([`ensure_packages`]) with service starts refused for
//! the duration of the install, so installing FRR or GoBGP never starts the host's daemons.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::lab::{binary, Node, ZtosdHandle};

/// A process in a node (ztos-bgp, bird, bgpd, gobgpd, ...), killed when dropped; its log is
/// shown when the test fails. The log is appended to, so a restarted process keeps the lines
/// of the one before.
#[derive(Debug)]
pub struct Daemon {
    child: Child,
    log: PathBuf,
}

impl Daemon {
    /// Runs `args` inside `node` (`ip netns exec`), stdout and stderr to `log_name` in the
    /// node's directory.
    pub fn spawn(node: &Node, log_name: &str, args: &[&str]) -> Daemon {
        let log = node.dir().join(log_name);
        let file = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .unwrap_or_else(|e| panic!("opening {}: {e}", log.display()));
        let child = Command::new("ip")
            .args(["netns", "exec", node.namespace()])
            .args(args)
            .stdin(Stdio::null())
            .stdout(file.try_clone().expect("log handle"))
            .stderr(file)
            .spawn()
            .unwrap_or_else(|e| panic!("starting {args:?} in {}: {e}", node.name()));
        Daemon { child, log }
    }

    /// Whether the process still runs.
    pub fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// The process's log file.
    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// SIGTERM, then SIGKILL after 5 s.
    pub fn stop(&mut self) {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        self.kill();
    }

    /// SIGKILL: the process gets no chance to say goodbye (a crash).
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.kill();
        if std::thread::panicking() {
            eprintln!(
                "===== {} =====\n{}===== end =====",
                self.log.display(),
                fs::read_to_string(&self.log).unwrap_or_default()
            );
        }
    }
}

/// Starts `ztos-bgp --socket <plugin.sock> --run-dir <node dir>` in the node (its ztosd is
/// already running), logging to `ztos-bgp.log`; its runtime files stay in the node's directory.
pub fn start_ztos_bgp(node: &Node) -> Daemon {
    let plugin = binary("ztos-bgp");
    let socket = node.dir().join("plugin.sock");
    Daemon::spawn(
        node,
        "ztos-bgp.log",
        &[
            &path(&plugin),
            "--socket",
            &path(&socket),
            "--run-dir",
            &path(node.dir()),
        ],
    )
}

pub fn path(p: &Path) -> String {
    p.to_string_lossy().into_owned()
}

/// Polls `condition` every 200 ms for up to `seconds`; panics naming `what` if it never holds.
pub fn poll(what: &str, seconds: u64, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(seconds);
    while !condition() {
        assert!(
            Instant::now() < deadline,
            "timed out after {seconds} s waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

pub fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// `ip [-6] route show proto 197` in the node: ztos-bgp's routes.
pub fn bgp_routes(node: &Node, v6: bool) -> String {
    let family = if v6 { "-6" } else { "-4" };
    node.ip(&[family, "route", "show", "proto", "197"])
}

/// Turns IPv6 duplicate address detection off in the node, so that addresses are usable (and
/// BGP can bind and connect) as soon as they are added.
pub fn no_dad(node: &Node) {
    for key in [
        "net.ipv6.conf.all.accept_dad=0",
        "net.ipv6.conf.default.accept_dad=0",
    ] {
        let out = node.exec(&["sysctl", "-q", "-w", key]);
        assert!(out.status.success(), "sysctl {key}: {out:?}");
    }
}

/// `ztos --json <args>` against the node's ztosd, parsed; panics if the command fails.
pub fn ztos_json(daemon: &ZtosdHandle, args: &[&str]) -> Value {
    let mut full = vec!["--json"];
    full.extend_from_slice(args);
    let out = daemon.ztos(&full);
    assert!(out.status.success(), "ztos {args:?}: {out:?}");
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("ztos {args:?} printed no JSON ({e}): {}", stdout(&out)))
}

/// The neighbor's entry in `ztos bgp neighbors ADDR`, or `Null` while the plugin is not there.
pub fn neighbor(daemon: &ZtosdHandle, address: &str) -> Value {
    let out = daemon.ztos(&["--json", "bgp", "neighbors", address]);
    if !out.status.success() {
        return Value::Null;
    }
    serde_json::from_slice::<Value>(&out.stdout).map_or(Value::Null, |v| v["neighbors"][0].clone())
}

/// Whether ztos-bgp's session with `address` is Established.
pub fn established(daemon: &ZtosdHandle, address: &str) -> bool {
    neighbor(daemon, address)["state"] == "established"
}

/// `bridge fdb show dev <device>` in the node.
pub fn fdb(node: &Node, device: &str) -> String {
    stdout(&node.exec(&["bridge", "fdb", "show", "dev", device]))
}

// ---------------------------------------------------------------------------------------------
// Packages

/// One install at a time: tests of one binary run in parallel threads and apt takes a lock.
static APT: Mutex<()> = Mutex::new(());

fn have(tool: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Installs Debian `packages` unless every one of `tools` (names on the PATH or absolute
/// paths) is already there, as the other system tests install what they need. Service starts
/// are refused during the install (a `policy-rc.d` that exits 101, removed afterwards, when the
/// host has none), so FRR's and GoBGP's packaged services do not start on the host.
pub fn ensure_packages(packages: &[&str], tools: &[&str]) {
    let _apt = APT.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    if tools.iter().all(|tool| have(tool)) {
        return;
    }
    let _no_starts = NoServiceStarts::new();
    let install = || {
        Command::new("apt-get")
            .args(["install", "-y", "-qq"])
            .args(packages)
            .env("DEBIAN_FRONTEND", "noninteractive")
            .output()
            .expect("running apt-get")
    };
    if !install().status.success() {
        let update = Command::new("apt-get")
            .args(["update", "-qq"])
            .output()
            .expect("running apt-get update");
        assert!(update.status.success(), "apt-get update: {update:?}");
        let out = install();
        assert!(out.status.success(), "installing {packages:?}: {out:?}");
    }
    for tool in tools {
        assert!(have(tool), "{packages:?} installed but {tool} is missing");
    }
}

const POLICY_RC_D: &str = "/usr/sbin/policy-rc.d";

/// While it lives, `invoke-rc.d` and `deb-systemd-invoke` refuse to start services (Debian's
/// policy-rc.d interface, exit status 101). Only created, and then removed, when the host has
/// no policy-rc.d of its own.
struct NoServiceStarts {
    created: bool,
}

impl NoServiceStarts {
    fn new() -> NoServiceStarts {
        if Path::new(POLICY_RC_D).exists() {
            return NoServiceStarts { created: false };
        }
        use std::os::unix::fs::PermissionsExt;
        let written = fs::write(
            POLICY_RC_D,
            "#!/bin/sh\n# ztos-tests: no service starts while installing test peers\nexit 101\n",
        )
        .and_then(|()| fs::set_permissions(POLICY_RC_D, fs::Permissions::from_mode(0o755)));
        if let Err(e) = written {
            panic!("writing {POLICY_RC_D}: {e}");
        }
        NoServiceStarts { created: true }
    }
}

impl Drop for NoServiceStarts {
    fn drop(&mut self) {
        if self.created {
            let _ = fs::remove_file(POLICY_RC_D);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// FRR

const ZEBRA: &str = "/usr/lib/frr/zebra";
const BGPD: &str = "/usr/lib/frr/bgpd";

/// Installs Debian's frr (8.4) unless its zebra, bgpd and vtysh are there.
pub fn ensure_frr() {
    ensure_packages(&["frr"], &[ZEBRA, BGPD, "vtysh"]);
}

/// FRR's zebra and bgpd in a node: configuration files, vty sockets, zebra's API socket and
/// pid files in `<node dir>/frr`, no TCP vty. They run as root with the frrvty group (FRR
/// insists that its user belongs to the vty group).
#[derive(Debug)]
pub struct Frr {
    zebra: Daemon,
    bgpd: Option<Daemon>,
    node: Node,
    dir: PathBuf,
}

impl Frr {
    /// Writes `zebra.conf` (logging only, plus `zebra_config`) and `bgpd.conf` (`bgpd_config`)
    /// and starts zebra, then bgpd once zebra's API socket is there; returns when bgpd answers
    /// on its vty.
    pub fn start(node: &Node, zebra_config: &str, bgpd_config: &str) -> Frr {
        ensure_frr();
        let dir = node.dir().join("frr");
        fs::create_dir_all(&dir).expect("creating the node's frr directory");
        fs::write(
            dir.join("zebra.conf"),
            format!(
                "hostname {}\nlog stdout debugging\n{zebra_config}",
                node.name()
            ),
        )
        .expect("writing zebra.conf");
        fs::write(
            dir.join("bgpd.conf"),
            format!(
                "hostname {}\nlog stdout informational\n{bgpd_config}",
                node.name()
            ),
        )
        .expect("writing bgpd.conf");
        let args = Self::args(&dir, ZEBRA, "zebra");
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let zebra = Daemon::spawn(node, "zebra.log", &args);
        let mut frr = Frr {
            zebra,
            bgpd: None,
            node: node.clone(),
            dir,
        };
        let api = frr.dir.join("zserv.api");
        poll("zebra's API socket", 10, || {
            assert!(frr.zebra.alive(), "zebra exited at start");
            api.exists()
        });
        frr.start_bgpd();
        frr
    }

    fn args(dir: &Path, program: &str, name: &str) -> Vec<String> {
        let file = |f: &str| path(&dir.join(f));
        vec![
            program.to_string(),
            "-u".into(),
            "root".into(),
            "-g".into(),
            "frrvty".into(),
            "--vty_socket".into(),
            path(dir),
            "-z".into(),
            file("zserv.api"),
            "-i".into(),
            file(&format!("{name}.pid")),
            "-f".into(),
            file(&format!("{name}.conf")),
            "-P".into(),
            "0".into(),
        ]
    }

    /// Starts bgpd (again); returns once its vty answers.
    pub fn start_bgpd(&mut self) {
        let args = Self::args(&self.dir, BGPD, "bgpd");
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        self.bgpd = Some(Daemon::spawn(&self.node, "bgpd.log", &args));
        poll("bgpd's vty", 10, || {
            let bgpd = self.bgpd.as_mut().expect("bgpd was just started");
            assert!(bgpd.alive(), "bgpd exited at start");
            self.vtysh_try("show bgp summary json").is_some()
        });
    }

    /// Kills bgpd with SIGKILL (zebra stays): a crash of the BGP daemon.
    pub fn kill_bgpd(&mut self) {
        if let Some(mut bgpd) = self.bgpd.take() {
            bgpd.kill();
        }
    }

    fn vtysh_try(&self, command: &str) -> Option<String> {
        let out = self
            .node
            .exec(&["vtysh", "--vty_socket", &path(&self.dir), "-c", command]);
        out.status.success().then(|| stdout(&out))
    }

    /// `vtysh -c <command>` against this instance; panics if vtysh fails.
    pub fn vtysh(&self, command: &str) -> String {
        self.vtysh_try(command)
            .unwrap_or_else(|| panic!("vtysh -c {command:?} failed in {}", self.node.name()))
    }

    /// `vtysh -c <command>` for a `... json` command, parsed; `Null` when vtysh fails or prints
    /// no JSON (bgpd restarting).
    pub fn json(&self, command: &str) -> Value {
        self.vtysh_try(command)
            .and_then(|text| serde_json::from_str(&text).ok())
            .unwrap_or(Value::Null)
    }

    /// Whether bgpd's session with `neighbor` is Established.
    pub fn established(&self, neighbor: &str) -> bool {
        self.json(&format!("show bgp neighbors {neighbor} json"))[neighbor]["bgpState"]
            == "Established"
    }

    /// The node FRR runs in.
    pub fn node(&self) -> &Node {
        &self.node
    }
}

// ---------------------------------------------------------------------------------------------
// GoBGP

/// Installs Debian's gobgpd (3.10) unless gobgpd and gobgp are there.
pub fn ensure_gobgp() {
    ensure_packages(&["gobgpd"], &["gobgpd", "gobgp"]);
}

/// GoBGP's gRPC port inside a node (each node has its own loopback, so instances in different
/// nodes never collide).
const GOBGP_API_PORT: &str = "50051";

/// gobgpd in a node with `gobgpd.toml` in the node's directory, its gRPC API on the node's
/// 127.0.0.1, no pprof listener; `gobgp` runs inside the node against it.
#[derive(Debug)]
pub struct Gobgp {
    daemon: Option<Daemon>,
    node: Node,
    config: PathBuf,
}

impl Gobgp {
    /// Writes the configuration (GoBGP's TOML) and starts gobgpd; returns once its API answers.
    pub fn start(node: &Node, config: &str) -> Gobgp {
        ensure_gobgp();
        let path = node.dir().join("gobgpd.toml");
        fs::write(&path, config).expect("writing gobgpd.toml");
        let mut gobgp = Gobgp {
            daemon: None,
            node: node.clone(),
            config: path,
        };
        gobgp.restart();
        gobgp
    }

    /// Starts gobgpd (again, after [`Gobgp::kill`]); returns once its API answers. Routes
    /// added with `gobgp global rib add` before are gone, as with any gobgpd restart.
    pub fn restart(&mut self) {
        let config = path(&self.config);
        let api = format!("127.0.0.1:{GOBGP_API_PORT}");
        self.daemon = Some(Daemon::spawn(
            &self.node,
            "gobgpd.log",
            &[
                "gobgpd",
                "-f",
                &config,
                "--api-hosts",
                &api,
                "--pprof-disable",
                "--log-plain",
            ],
        ));
        poll("gobgpd's API", 10, || {
            let daemon = self.daemon.as_mut().expect("gobgpd was just started");
            assert!(daemon.alive(), "gobgpd exited at start");
            self.try_cli(&["global"]).status.success()
        });
    }

    /// SIGKILL: a crash of gobgpd.
    pub fn kill(&mut self) {
        if let Some(mut daemon) = self.daemon.take() {
            daemon.kill();
        }
    }

    fn try_cli(&self, args: &[&str]) -> Output {
        let mut full = vec!["gobgp", "-p", GOBGP_API_PORT];
        full.extend_from_slice(args);
        self.node.exec(&full)
    }

    /// `gobgp <args>` inside the node; panics if it fails.
    pub fn cli(&self, args: &[&str]) -> String {
        let out = self.try_cli(args);
        assert!(out.status.success(), "gobgp {args:?}: {out:?}");
        stdout(&out)
    }

    /// `gobgp <args> -j`, parsed; `Null` when gobgp fails or prints no JSON.
    pub fn json(&self, args: &[&str]) -> Value {
        let mut full = args.to_vec();
        full.push("-j");
        let out = self.try_cli(&full);
        if !out.status.success() {
            return Value::Null;
        }
        serde_json::from_slice(&out.stdout).unwrap_or(Value::Null)
    }

    /// Whether gobgpd's session with `neighbor` is Established.
    pub fn established(&self, neighbor: &str) -> bool {
        let state = &self.json(&["neighbor", neighbor])["state"]["session_state"];
        // The JSON carries the gRPC enum: 6 (ESTABLISHED), or its name in some builds.
        *state == 6 || *state == "ESTABLISHED" || *state == "established"
    }

    /// The node gobgpd runs in.
    pub fn node(&self) -> &Node {
        &self.node
    }
}
