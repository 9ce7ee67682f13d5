//! The netns lab: nodes are network namespaces joined by veth pairs, each can run a real
//! ztosd; everything is torn down when the `Lab` is dropped, also when a test panics.
//!
//! ```text
//!   Lab "vxlan" (prefix ztos-t-<pid>-vxlan, temp dir /tmp/.tmpXXXX)
//!     ├─ Node n1  = netns ztos-t-<pid>-vxlan-n1, dir <tmp>/n1 (initial.toml, state/, api.sock, ztosd.log)
//!     ├─ Node n2  ...
//!     └─ veth pairs between nodes (lab.link)
//! ```
//!
//! Namespaces are named `ztos-t-<pid>-<lab>-<node>`; creating a lab first deletes namespaces
//! left behind by test processes that are no longer alive (a test killed by a signal cannot
//! run its teardown).

use std::fs;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Every lab namespace starts with this.
pub const NAMESPACE_PREFIX: &str = "ztos-t-";

/// How long `start_ztosd` waits for the API socket.
const API_WAIT: Duration = Duration::from_secs(20);

/// A set of nodes torn down together.
pub struct Lab {
    prefix: String,
    dir: tempfile::TempDir,
    shared: Arc<Mutex<Shared>>,
}

/// What teardown needs: namespaces to delete, daemons to stop, logs to show on failure.
#[derive(Debug, Default)]
struct Shared {
    namespaces: Vec<String>,
    daemons: Vec<(u32, PathBuf)>,
}

impl std::fmt::Debug for Lab {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lab")
            .field("prefix", &self.prefix)
            .field("dir", &self.dir.path())
            .finish()
    }
}

/// One network namespace of a lab, with its own directory.
#[derive(Debug, Clone)]
pub struct Node {
    name: String,
    namespace: String,
    dir: PathBuf,
    shared: Arc<Mutex<Shared>>,
}

/// A ztosd running inside a node. Dropping it stops the daemon.
#[derive(Debug)]
pub struct ZtosdHandle {
    child: Option<Child>,
    dir: PathBuf,
    node: Node,
}

/// A process started inside a node (`spawn_plugin`); killed when dropped.
#[derive(Debug)]
pub struct ProcessHandle {
    child: Child,
}

impl Drop for ProcessHandle {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Lab {
    /// A new, empty lab. Panics (with the reason) if the host cannot make namespaces.
    pub fn new(name: &str) -> Lab {
        sweep_stale_namespaces();
        let prefix = format!("{NAMESPACE_PREFIX}{}-{name}", std::process::id());
        let dir = tempfile::Builder::new()
            .prefix(&format!("ztos-lab-{name}-"))
            .tempdir()
            .expect("creating the lab's temporary directory");
        Lab {
            prefix,
            dir,
            shared: Arc::default(),
        }
    }

    /// A new lab. Without root, lab tests fail with the reason, unless the developer set
    /// `ZTOS_SKIP_ROOT_TESTS=1` on purpose: then this prints why and returns `None`, and the
    /// test skips itself. CI runs as root and never sets it, so the labs cannot pass vacuously.
    pub fn new_if_root(name: &str) -> Option<Lab> {
        if can_run_labs() {
            Some(Lab::new(name))
        } else if skip_root_tests() {
            eprintln!("skipping lab {name}: network namespaces need root (ZTOS_SKIP_ROOT_TESTS)");
            None
        } else {
            panic!("lab {name} needs root for network namespaces; run as root, or set ZTOS_SKIP_ROOT_TESTS=1 to skip");
        }
    }

    /// The lab's temporary directory; each node has a subdirectory named after it.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Creates a node: a network namespace with `lo` up and a directory.
    pub fn node(&self, name: &str) -> Node {
        let namespace = format!("{}-{name}", self.prefix);
        run_checked(Command::new("ip").args(["netns", "add", &namespace]));
        lock(&self.shared).namespaces.push(namespace.clone());
        let dir = self.dir.path().join(name);
        fs::create_dir_all(&dir).expect("creating the node's directory");
        let node = Node {
            name: name.to_string(),
            namespace,
            dir,
            shared: self.shared.clone(),
        };
        node.ip(&["link", "set", "lo", "up"]);
        node
    }

    /// Joins two nodes with a veth pair: `(node, interface name, address with prefix)` for
    /// each end. Both ends are brought up.
    pub fn link(&self, a: (&Node, &str, Option<&str>), b: (&Node, &str, Option<&str>)) {
        let (node_a, if_a, addr_a) = a;
        let (node_b, if_b, addr_b) = b;
        node_a.ip(&[
            "link",
            "add",
            if_a,
            "type",
            "veth",
            "peer",
            "name",
            if_b,
            "netns",
            &node_b.namespace,
        ]);
        for (node, interface, address) in [(node_a, if_a, addr_a), (node_b, if_b, addr_b)] {
            if let Some(address) = address {
                node.ip(&["address", "add", address, "dev", interface]);
            }
            node.ip(&["link", "set", interface, "up"]);
        }
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        let shared = lock(&self.shared);
        if std::thread::panicking() {
            for (_, log) in &shared.daemons {
                let text = fs::read_to_string(log).unwrap_or_else(|e| format!("(unreadable: {e})"));
                eprintln!("===== {} =====\n{text}===== end =====", log.display());
            }
        }
        for (pid, _) in &shared.daemons {
            kill(*pid);
        }
        for namespace in &shared.namespaces {
            delete_namespace(namespace);
        }
    }
}

impl Node {
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The network namespace's name (`ip netns` / `/run/netns/<name>`).
    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    /// The node's directory in the lab's temporary directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Runs a command inside the node (`ip netns exec`) and returns its output, whatever
    /// its exit status.
    pub fn exec(&self, args: &[&str]) -> Output {
        Command::new("ip")
            .args(["netns", "exec", &self.namespace])
            .args(args)
            .output()
            .unwrap_or_else(|error| panic!("running {args:?} in {}: {error}", self.name))
    }

    /// Runs `ip <args>` in the node and returns its standard output; panics if it fails.
    pub fn ip(&self, args: &[&str]) -> String {
        run_checked(Command::new("ip").args(["-n", &self.namespace]).args(args))
    }

    /// Writes `config_toml` as the node's initial configuration and starts ztosd inside the
    /// node; returns once its API socket accepts connections (at most 20 s).
    pub fn start_ztosd(&self, config_toml: &str) -> ZtosdHandle {
        let ztosd = binary("ztosd");
        let initial = self.dir.join("initial.toml");
        fs::write(&initial, config_toml).expect("writing initial.toml");
        let api_socket = self.dir.join("api.sock");
        let log_path = self.dir.join("ztosd.log");
        let log = fs::File::create(&log_path).expect("creating ztosd.log");
        let path = |p: &Path| p.to_string_lossy().into_owned();
        let child = Command::new("ip")
            .args(["netns", "exec", &self.namespace])
            .arg(&ztosd)
            .args(["--state-dir", &path(&self.dir.join("state"))])
            .args(["--api-socket", &path(&api_socket)])
            .args(["--plugin-socket", &path(&self.dir.join("plugin.sock"))])
            .args(["--https-listen", "0.0.0.0:8443"])
            .args(["--initial-config", &path(&initial)])
            // DHCP's DNS servers go to the node, never to the host's /run/resolv.conf.
            .args(["--resolv-conf", &path(&self.dir.join("resolv.conf"))])
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log handle"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|error| panic!("starting {}: {error}", ztosd.display()));
        lock(&self.shared)
            .daemons
            .push((child.id(), log_path.clone()));
        let mut handle = ZtosdHandle {
            child: Some(child),
            dir: self.dir.clone(),
            node: self.clone(),
        };
        handle.wait_for_api(&api_socket, &log_path);
        handle
    }
}

impl ZtosdHandle {
    fn wait_for_api(&mut self, socket: &Path, log: &Path) {
        let deadline = Instant::now() + API_WAIT;
        loop {
            if UnixStream::connect(socket).is_ok() {
                return;
            }
            if let Some(child) = self.child.as_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    panic!(
                        "ztosd in {} exited ({status}) before its API came up:\n{}",
                        self.node.name,
                        fs::read_to_string(log).unwrap_or_default()
                    );
                }
            }
            assert!(
                Instant::now() < deadline,
                "ztosd in {} did not open {} within {API_WAIT:?}:\n{}",
                self.node.name,
                socket.display(),
                fs::read_to_string(log).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The daemon's API socket; the CLI reaches it from the host, since a unix socket is a
    /// file-system object and not bound to a network namespace.
    pub fn api_socket(&self) -> PathBuf {
        self.dir.join("api.sock")
    }

    /// The daemon's state directory (`tls/ca.pem`, `tokens.json`, revisions).
    pub fn state_dir(&self) -> PathBuf {
        self.dir.join("state")
    }

    /// The daemon's log file.
    pub fn log_path(&self) -> PathBuf {
        self.dir.join("ztosd.log")
    }

    /// The node the daemon runs in.
    pub fn node(&self) -> &Node {
        &self.node
    }

    /// Runs a command inside the daemon's node, like `Node::exec`.
    pub fn exec(&self, args: &[&str]) -> Output {
        self.node.exec(args)
    }

    /// Starts `ztos-test-plugin --socket <plugin.sock> <args>` inside the node, logging to
    /// `plugin.log` in the node's directory.
    pub fn spawn_plugin(&self, args: &[&str]) -> ProcessHandle {
        let plugin = binary("ztos-test-plugin");
        let log = fs::File::create(self.dir.join("plugin.log")).expect("creating plugin.log");
        let child = Command::new("ip")
            .args(["netns", "exec", &self.node.namespace])
            .arg(&plugin)
            .arg("--socket")
            .arg(self.dir.join("plugin.sock"))
            .args(args)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log handle"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|error| panic!("starting {}: {error}", plugin.display()));
        lock(&self.node.shared)
            .daemons
            .push((child.id(), self.dir.join("plugin.log")));
        ProcessHandle { child }
    }

    /// Polls `condition` every 100 ms for up to 20 s; panics naming `what` if it never holds.
    pub fn wait_for(&self, what: &str, condition: impl FnMut() -> bool) {
        self.wait_for_secs(what, API_WAIT.as_secs(), condition)
    }

    /// Like `wait_for`, with a limit of `seconds`.
    pub fn wait_for_secs(&self, what: &str, seconds: u64, condition: impl FnMut() -> bool) {
        poll_until(what, &self.node.name, seconds, condition);
    }

    /// Runs `ztos --socket <api.sock> <args>` from the host.
    pub fn ztos(&self, args: &[&str]) -> Output {
        Command::new(binary("ztos"))
            .arg("--socket")
            .arg(self.api_socket())
            .args(args)
            .output()
            .expect("running the ztos CLI")
    }

    /// Stops the daemon (SIGTERM, then SIGKILL after 5 s) and waits for it.
    pub fn kill(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let pid = nix::unistd::Pid::from_raw(child.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = child.kill();
        let _ = child.wait();
    }
}

impl Drop for ZtosdHandle {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Where the workspace's binaries are: next to the running executable, or one level up
/// when it is a test executable in `target/<profile>/deps`.
pub fn binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("the current executable's path");
    let mut dir = exe
        .parent()
        .expect("the executable's directory")
        .to_path_buf();
    if dir.ends_with("deps") {
        dir.pop();
    }
    let path = dir.join(name);
    assert!(
        path.exists(),
        "{} does not exist: run `cargo build --workspace --bins` first",
        path.display()
    );
    path
}

/// Whether the process can create namespaces (root); tests print a message and return
/// early when it cannot.
/// Whether the developer asked to skip tests that need root (`ZTOS_SKIP_ROOT_TESTS=1`).
pub fn skip_root_tests() -> bool {
    std::env::var_os("ZTOS_SKIP_ROOT_TESTS").is_some_and(|v| v == "1")
}

pub fn can_run_labs() -> bool {
    nix::unistd::Uid::effective().is_root()
}

fn lock(shared: &Mutex<Shared>) -> std::sync::MutexGuard<'_, Shared> {
    shared
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn run_checked(command: &mut Command) -> String {
    let output = command
        .output()
        .unwrap_or_else(|error| panic!("running {command:?}: {error}"));
    assert!(
        output.status.success(),
        "{command:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn kill(pid: u32) {
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGKILL,
    );
}

/// Kills what still runs in a lab namespace (processes the lab started: daemons and the
/// plugins they spawned) and deletes it.
fn delete_namespace(namespace: &str) {
    if let Ok(output) = Command::new("ip")
        .args(["netns", "pids", namespace])
        .output()
    {
        for pid in String::from_utf8_lossy(&output.stdout).split_whitespace() {
            if let Ok(pid) = pid.parse() {
                kill(pid);
            }
        }
    }
    let _ = Command::new("ip")
        .args(["netns", "del", namespace])
        .status();
}

/// Deletes `ztos-t-<pid>-*` namespaces whose test process is gone.
fn sweep_stale_namespaces() {
    let Ok(output) = Command::new("ip").args(["netns", "list"]).output() else {
        return;
    };
    for line in String::from_utf8_lossy(&output.stdout).lines() {
        let Some(name) = line.split_whitespace().next() else {
            continue;
        };
        let Some(rest) = name.strip_prefix(NAMESPACE_PREFIX) else {
            continue;
        };
        let Some(pid) = rest
            .split('-')
            .next()
            .and_then(|pid| pid.parse::<u32>().ok())
        else {
            continue;
        };
        if !Path::new(&format!("/proc/{pid}")).exists() {
            delete_namespace(name);
        }
    }
}

/// Leaf 1's configuration in the two-leaf VXLAN lab (`tests/lab/leaf1.toml`).
pub const LEAF1_CONFIG: &str = include_str!("../lab/leaf1.toml");
/// Leaf 2's configuration in the two-leaf VXLAN lab (`tests/lab/leaf2.toml`).
pub const LEAF2_CONFIG: &str = include_str!("../lab/leaf2.toml");

/// The spec's VXLAN topology, shared by `vxlan-test.sh` and the demo lab: two leaves joined
/// by an underlay veth (`eth1` on each; ztosd puts the addresses on), and a host behind each
/// leaf (`h1` 192.168.100.1/24 on leaf1's `veth-h1`, `h2` 192.168.100.2/24 on leaf2's
/// `veth-h2`). ztosd is not started: the caller starts it with [`LEAF1_CONFIG`] and
/// [`LEAF2_CONFIG`] or its own configuration.
#[derive(Debug)]
pub struct TwoLeafTopology {
    pub leaf1: Node,
    pub leaf2: Node,
    pub h1: Node,
    pub h2: Node,
}

impl Lab {
    /// Builds the [`TwoLeafTopology`] in this lab.
    pub fn two_leaf_topology(&self) -> TwoLeafTopology {
        let leaf1 = self.node("leaf1");
        let leaf2 = self.node("leaf2");
        let h1 = self.node("h1");
        let h2 = self.node("h2");
        self.link((&leaf1, "eth1", None), (&leaf2, "eth1", None));
        self.link(
            (&h1, "eth0", Some("192.168.100.1/24")),
            (&leaf1, "veth-h1", None),
        );
        self.link(
            (&h2, "eth0", Some("192.168.100.2/24")),
            (&leaf2, "veth-h2", None),
        );
        TwoLeafTopology {
            leaf1,
            leaf2,
            h1,
            h2,
        }
    }
}

/// How long `start_supervisor` waits for the status socket, and `SupervisorHandle::wait_exit`
/// for the supervisor to end.
const SUPERVISOR_WAIT: Duration = Duration::from_secs(30);

/// `ztos-init supervise` running inside a node. Dropping it stops the supervisor (SIGTERM:
/// it stops its services; SIGKILL after 30 s); the lab's teardown kills whatever is left.
#[derive(Debug)]
pub struct SupervisorHandle {
    child: Option<Child>,
    node: Node,
}

impl Node {
    /// Writes `config_toml` as the node's initial configuration and returns the command line
    /// that runs ztosd in this node with the node's sockets (`api.sock`, `plugin.sock`,
    /// `init.sock`) and state directory: the `command` of a manifest's ztosd service.
    pub fn ztosd_command(&self, config_toml: &str) -> Vec<String> {
        let initial = self.dir.join("initial.toml");
        fs::write(&initial, config_toml).expect("writing initial.toml");
        let path = |p: PathBuf| p.to_string_lossy().into_owned();
        vec![
            path(binary("ztosd")),
            "--state-dir".into(),
            path(self.dir.join("state")),
            "--api-socket".into(),
            path(self.dir.join("api.sock")),
            "--plugin-socket".into(),
            path(self.dir.join("plugin.sock")),
            "--init-socket".into(),
            path(self.dir.join("init.sock")),
            "--https-listen".into(),
            "none".into(),
            "--initial-config".into(),
            path(initial),
        ]
    }

    /// Writes `manifest_toml` to `services.toml` in the node's directory and starts
    /// `ztos-init supervise` with it inside the node, its status socket at `init.sock` and
    /// its output in `supervisor.log`; returns once the status socket accepts connections.
    pub fn start_supervisor(&self, manifest_toml: &str) -> SupervisorHandle {
        let init = binary("ztos-init");
        let manifest = self.dir.join("services.toml");
        fs::write(&manifest, manifest_toml).expect("writing services.toml");
        let log_path = self.dir.join("supervisor.log");
        let log = fs::File::create(&log_path).expect("creating supervisor.log");
        let child = Command::new("ip")
            .args(["netns", "exec", &self.namespace])
            .arg(&init)
            .arg("supervise")
            .arg("--manifest")
            .arg(&manifest)
            .arg("--status-socket")
            .arg(self.dir.join("init.sock"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log handle"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|error| panic!("starting {}: {error}", init.display()));
        lock(&self.shared).daemons.push((child.id(), log_path));
        let mut handle = SupervisorHandle {
            child: Some(child),
            node: self.clone(),
        };
        let socket = handle.status_socket();
        let deadline = Instant::now() + SUPERVISOR_WAIT;
        while UnixStream::connect(&socket).is_err() {
            if let Some(Ok(Some(status))) = handle.child.as_mut().map(Child::try_wait) {
                panic!(
                    "ztos-init supervise in {} exited ({status}) at start:\n{}",
                    self.name,
                    fs::read_to_string(handle.log_path()).unwrap_or_default()
                );
            }
            assert!(
                Instant::now() < deadline,
                "ztos-init in {} did not open {}",
                self.name,
                socket.display()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        handle
    }
}

impl SupervisorHandle {
    /// The supervisor's status socket (`init.sock` in the node's directory).
    pub fn status_socket(&self) -> PathBuf {
        self.node.dir.join("init.sock")
    }

    /// The API socket of a ztosd started with [`Node::ztosd_command`].
    pub fn api_socket(&self) -> PathBuf {
        self.node.dir.join("api.sock")
    }

    /// The supervisor's output (its events and every service's lines).
    pub fn log_path(&self) -> PathBuf {
        self.node.dir.join("supervisor.log")
    }

    pub fn node(&self) -> &Node {
        &self.node
    }

    /// The supervisor's process id (of `ip netns exec`, which execs ztos-init).
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Runs `ztos --socket <api.sock> <args>` from the host.
    pub fn ztos(&self, args: &[&str]) -> Output {
        Command::new(binary("ztos"))
            .arg("--socket")
            .arg(self.api_socket())
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("running the ztos CLI")
    }

    /// Polls `condition` every 100 ms for up to `seconds`; panics naming `what` (with the
    /// supervisor's log) if it never holds.
    pub fn wait_for_secs(&self, what: &str, seconds: u64, condition: impl FnMut() -> bool) {
        poll_until(what, &self.node.name, seconds, condition);
    }

    /// Waits up to 30 s for the supervisor to exit by itself and returns its status.
    pub fn wait_exit(&mut self) -> Option<std::process::ExitStatus> {
        let child = self.child.as_mut()?;
        let deadline = Instant::now() + SUPERVISOR_WAIT;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = child.try_wait() {
                self.child = None;
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }
}

impl Drop for SupervisorHandle {
    fn drop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let pid = nix::unistd::Pid::from_raw(child.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let deadline = Instant::now() + SUPERVISOR_WAIT;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = child.kill();
        let _ = child.wait();
    }
}

/// Polls `condition` every 100 ms for up to `seconds`; panics naming `what` and the node.
fn poll_until(what: &str, node: &str, seconds: u64, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(seconds);
    while !condition() {
        assert!(
            Instant::now() < deadline,
            "timed out after {seconds} s waiting for {what} in {node}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}
