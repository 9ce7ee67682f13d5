//! WireGuard system tests (issue 6): ztos-wireguard under real ztosd daemons in network
//! namespaces. Run by `tests/wireguard-test.sh`; need root (they return early without it).
//!
//! Topology: the server `s` has one underlay link to each client (`a`: 192.168.71.0/24, `c`:
//! 192.168.72.0/24); the tunnel is 10.9.0.0/24 (s .1, a .2, c .3).

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use ztos_tests::lab::{binary, Lab, Node, ZtosdHandle};

/// A ztos-wireguard process in a node; killed when dropped.
struct Plugin {
    child: Child,
    log: PathBuf,
}

impl Drop for Plugin {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!(
                "===== {} =====\n{}",
                self.log.display(),
                fs::read_to_string(&self.log).unwrap_or_default()
            );
        }
    }
}

fn wg_state(node: &Node) -> PathBuf {
    node.dir().join("wg")
}

fn public_key(node: &Node) -> String {
    let out = Command::new(binary("ztos-wireguard"))
        .arg("--state-dir")
        .arg(wg_state(node))
        .args(["--print-public-key", "wg0"])
        .output()
        .expect("running ztos-wireguard --print-public-key");
    assert!(out.status.success(), "{out:?}");
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

fn start_plugin(node: &Node) -> Plugin {
    let log = node.dir().join("ztos-wireguard.log");
    let file = fs::File::create(&log).unwrap();
    let child = Command::new("ip")
        .args(["netns", "exec", node.namespace()])
        .arg(binary("ztos-wireguard"))
        .arg("--socket")
        .arg(node.dir().join("plugin.sock"))
        .arg("--state-dir")
        .arg(wg_state(node))
        .args(["--report-interval", "1"])
        .stdin(Stdio::null())
        .stdout(file.try_clone().unwrap())
        .stderr(file)
        .spawn()
        .expect("starting ztos-wireguard");
    Plugin { child, log }
}

fn poll(what: &str, seconds: u64, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(seconds);
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn ok(out: &Output) -> bool {
    out.status.success()
}

fn security_status(daemon: &ZtosdHandle) -> Value {
    let out = daemon.ztos(&["--json", "security", "status"]);
    assert!(ok(&out), "{out:?}");
    serde_json::from_slice(&out.stdout).unwrap()
}

fn rule_packets(status: &Value, rule: &str) -> u64 {
    status["wireguard"]["status"]["policy"]["rules"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|r| r["name"] == rule)
        .and_then(|r| r["packets"].as_u64())
        .unwrap_or(0)
}

fn peer_config(key: &str, endpoint: Option<&str>, allowed: &str) -> String {
    let endpoint = endpoint.map_or(String::new(), |e| format!("endpoint = \"{e}\"\n"));
    format!(
        "[[wireguard.interfaces.peers]]\npublic_key = \"{key}\"\n{endpoint}allowed_ips = [\"{allowed}\"]\n"
    )
}

fn interface_config(address: &str) -> String {
    format!("[[wireguard.interfaces]]\nname = \"wg0\"\nlisten_port = 51820\naddresses = [\"{address}\"]\n")
}

/// Connects with TCP from `node` to `addr:port` within 3 s (bash's /dev/tcp).
fn tcp_connect(node: &Node, addr: &str, port: u16) -> bool {
    ok(&node.exec(&[
        "timeout",
        "3",
        "bash",
        "-c",
        &format!("exec 3<>/dev/tcp/{addr}/{port}"),
    ]))
}

#[test]
fn three_nodes_roaming_policy_counters_and_garbage() {
    let Some(lab) = Lab::new_if_root("wg") else {
        return;
    };
    let (s, a, c) = (lab.node("s"), lab.node("a"), lab.node("c"));
    lab.link(
        (&s, "eth-a", Some("192.168.71.1/24")),
        (&a, "eth0", Some("192.168.71.2/24")),
    );
    lab.link(
        (&s, "eth-c", Some("192.168.72.1/24")),
        (&c, "eth0", Some("192.168.72.2/24")),
    );
    let (ks, ka, kc) = (public_key(&s), public_key(&a), public_key(&c));

    // s: allow TCP 443 from a only, and ICMP from a (for the ping); default deny for the rest.
    let s_config = format!(
        "{}{}{}\n[[policy.rules]]\nname = \"https-from-a\"\naction = \"allow\"\nfrom = [\"{ka}\"]\nprotocol = \"tcp\"\nports = [\"443\"]\n\n[[policy.rules]]\nname = \"ping-from-a\"\naction = \"allow\"\nfrom = [\"{ka}\"]\nprotocol = \"icmp\"\n\n[[policy.rules]]\nname = \"iperf-from-a\"\naction = \"allow\"\nfrom = [\"{ka}\"]\nprotocol = \"tcp\"\nports = [\"5201\"]\n",
        interface_config("10.9.0.1/24"),
        peer_config(&ka, None, "10.9.0.2/32"),
        peer_config(&kc, None, "10.9.0.3/32"),
    );
    // The clients allow nothing inbound: replies to their own flows come back through the
    // flow table.
    let a_config = format!(
        "{}{}",
        interface_config("10.9.0.2/24"),
        peer_config(&ks, Some("192.168.71.1:51820"), "10.9.0.0/24")
    );
    let c_config = format!(
        "{}{}",
        interface_config("10.9.0.3/24"),
        peer_config(&ks, Some("192.168.72.1:51820"), "10.9.0.0/24")
    );
    let ds = s.start_ztosd(&s_config);
    let _da = a.start_ztosd(&a_config);
    let _dc = c.start_ztosd(&c_config);
    let _ps = start_plugin(&s);
    let _pa = start_plugin(&a);
    let _pc = start_plugin(&c);

    poll("a's tunnel to s", 20, || {
        ok(&a.exec(&["ping", "-c", "1", "-W", "1", "10.9.0.1"]))
    });
    let out = a.exec(&["ping", "-c", "5", "-i", "0.2", "-W", "2", "10.9.0.1"]);
    assert!(ok(&out), "{out:?}");

    // A TCP transfer through the tunnel, during which a roams: its underlay address changes
    // from .2 to .3; s follows the authenticated datagrams to the new address and the
    // transfer goes on.
    let server = s.exec(&["iperf3", "-s", "-D", "-1", "-B", "10.9.0.1"]);
    assert!(ok(&server), "{server:?}");
    std::thread::sleep(Duration::from_millis(300));
    let client = Command::new("ip")
        .args(["netns", "exec", a.namespace()])
        .args(["iperf3", "-c", "10.9.0.1", "-t", "6", "-J"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_secs(2));
    a.ip(&["address", "flush", "dev", "eth0"]);
    a.ip(&["address", "add", "192.168.71.3/24", "dev", "eth0"]);
    let out = client.wait_with_output().unwrap();
    assert!(ok(&out), "{out:?}");
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    let bytes = report["end"]["sum_received"]["bytes"]
        .as_f64()
        .unwrap_or(0.0);
    assert!(bytes > 100_000.0, "iperf3 moved only {bytes} bytes");
    // The last two seconds of the transfer came after the move.
    let intervals = report["intervals"].as_array().unwrap();
    let late: f64 = intervals
        .iter()
        .rev()
        .take(2)
        .map(|i| i["sum"]["bytes"].as_f64().unwrap_or(0.0))
        .sum();
    assert!(
        late > 100_000.0,
        "nothing moved after the roam: {intervals:?}"
    );
    let status = security_status(&ds);
    let endpoint = status["wireguard"]["status"]["interfaces"][0]["peers"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|p| p["public_key"] == ka.as_str())
        .map(|p| p["endpoint"].clone());
    assert_eq!(
        endpoint,
        Some(Value::from("192.168.71.3:51820")),
        "{status}"
    );

    // Policy: a listener on 443 and on 22 at s.
    for port in ["443", "22"] {
        let out = s.exec(&[
            "bash",
            "-c",
            &format!("(timeout 20 python3 -c 'import socket,time\ns=socket.socket()\ns.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1)\ns.bind((\"10.9.0.1\",{port}))\ns.listen(16)\nwhile True:\n  c,_=s.accept(); c.close()' >/dev/null 2>&1 &)"),
        ]);
        assert!(ok(&out), "{out:?}");
    }
    std::thread::sleep(Duration::from_millis(500));
    let before = security_status(&ds);
    let https_before = rule_packets(&before, "https-from-a");
    assert!(tcp_connect(&a, "10.9.0.1", 443), "443 from a must pass");
    assert!(
        !tcp_connect(&a, "10.9.0.1", 22),
        "22 from a must be dropped"
    );
    poll("c's handshake with s", 10, || {
        c.exec(&["ping", "-c", "1", "-W", "1", "10.9.0.1"]);
        let status = security_status(&ds);
        status["wireguard"]["status"]["interfaces"][0]["peers"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|p| p["public_key"] == kc.as_str() && !p["latest_handshake"].is_null())
    });
    assert!(
        !tcp_connect(&c, "10.9.0.1", 443),
        "443 from c must be dropped"
    );

    // Counters: a's connection is a handful of packets on 443 (SYN, ACK, FIN...), all counted
    // by the rule; c's SYNs and a's SYNs to 22 are default denials.
    poll("the counters to be reported", 5, || {
        rule_packets(&security_status(&ds), "https-from-a") > https_before
    });
    let after = security_status(&ds);
    let https = rule_packets(&after, "https-from-a") - https_before;
    assert!((2..=10).contains(&https), "https-from-a counted {https}");
    let peers = after["wireguard"]["status"]["interfaces"][0]["peers"]
        .as_array()
        .unwrap()
        .clone();
    let peer = |key: &str| {
        peers
            .iter()
            .find(|p| p["public_key"] == key)
            .unwrap()
            .clone()
    };
    assert!(
        peer(&ka)["policy_denied_in"].as_u64().unwrap() >= 1,
        "{peers:?}"
    );
    assert!(
        peer(&kc)["policy_denied_in"].as_u64().unwrap() >= 2,
        "{peers:?}"
    );
    assert_eq!(peer(&kc)["policy_allowed"].as_u64(), Some(0), "{peers:?}");

    // Garbage on s's listen port does not disturb the session: random bytes, data messages
    // with unknown receiver indexes, handshake initiations with bad MACs. (Some may be lost
    // to the socket buffer, hence the low bound on what is counted.)
    let garbage = a.exec(&[
        "python3",
        "-c",
        "import socket,os\ns=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\n\
         for i in range(2000):\n  s.sendto(os.urandom(1+i%300),('192.168.71.1',51820))\n\
         for i in range(500):\n  s.sendto(bytes([4,0,0,0])+os.urandom(12+i%200),('192.168.71.1',51820))\n\
         for i in range(200):\n  s.sendto(bytes([1,0,0,0])+os.urandom(144),('192.168.71.1',51820))",
    ]);
    assert!(ok(&garbage), "{garbage:?}");
    let out = a.exec(&["ping", "-c", "3", "-i", "0.2", "-W", "2", "10.9.0.1"]);
    assert!(ok(&out), "after garbage: {out:?}");
    poll("invalid datagrams to be counted", 5, || {
        security_status(&ds)["wireguard"]["status"]["interfaces"][0]["invalid_datagrams"]
            .as_u64()
            .unwrap_or(0)
            >= 100
    });
}

// ---------------------------------------------------------------------------------------------
// Interop with wireguard-go and wg(8), roaming, replay, handshake floods, restarts.
//
// Topology: ZTOS node `z` (192.168.81.1, tunnel 10.8.0.1) and wireguard-go node `g`
// (192.168.81.2, tunnel 10.8.0.2), one veth link. z's peer g uses a preshared key that z
// generates and exports with `ztos security wireguard preshared-key`.

const Z_UNDERLAY: &str = "192.168.81.1";
const G_UNDERLAY: &str = "192.168.81.2";
const G_PORT: &str = "51821";

/// A wireguard-go process in a node, configured with wg(8); killed when dropped.
struct WireguardGo {
    child: Child,
    node: Node,
    /// The device name: unique per test process and per instance (tests run in parallel
    /// threads), because wireguard-go's UAPI sockets (`/var/run/wireguard/<name>.sock`) are
    /// not per namespace.
    name: String,
    log: PathBuf,
    public_key: String,
}

impl WireguardGo {
    /// Starts wireguard-go in `node` with a fresh key, `address` on the device, and
    /// `listen_port`; returns once wg(8) can talk to it.
    fn start(node: &Node, address: &str) -> WireguardGo {
        static INSTANCES: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let instance = INSTANCES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        // At most 15 characters: "wgo" + 6 digits + "i" + the instance.
        let name = format!("wgo{}i{instance}", std::process::id() % 1_000_000);
        let log = node.dir().join("wireguard-go.log");
        let file = fs::File::create(&log).unwrap();
        let child = Command::new("ip")
            .args(["netns", "exec", node.namespace()])
            .args(["wireguard-go", "-f", &name])
            .env("WG_I_PREFER_BUGGY_USERSPACE_TO_POLISHED_KMOD", "1")
            .stdin(Stdio::null())
            .stdout(file.try_clone().unwrap())
            .stderr(file)
            .spawn()
            .expect("starting wireguard-go (install wireguard-go)");
        let private = node.dir().join("wg-go.key");
        let key = Command::new("wg")
            .arg("genkey")
            .output()
            .expect("wg genkey");
        assert!(ok(&key), "{key:?}");
        fs::write(&private, &key.stdout).unwrap();
        let public = Command::new("wg")
            .arg("pubkey")
            .stdin(fs::File::open(&private).unwrap())
            .output()
            .expect("wg pubkey");
        assert!(ok(&public), "{public:?}");
        let mut wg = WireguardGo {
            child,
            node: node.clone(),
            name,
            log,
            public_key: String::from_utf8(public.stdout).unwrap().trim().to_string(),
        };
        poll("wireguard-go's UAPI socket", 10, || {
            assert!(
                wg.child.try_wait().unwrap().is_none(),
                "wireguard-go exited: {}",
                fs::read_to_string(&wg.log).unwrap_or_default()
            );
            ok(&node.exec(&["wg", "show", &wg.name]))
        });
        wg.wg(&[
            "set",
            &wg.name.clone(),
            "private-key",
            private.to_str().unwrap(),
            "listen-port",
            G_PORT,
        ]);
        node.ip(&["address", "add", address, "dev", &wg.name]);
        node.ip(&["link", "set", &wg.name, "up"]);
        wg
    }

    /// Runs `wg <args>` in the node; panics with its output if it fails.
    fn wg(&mut self, args: &[&str]) -> String {
        let mut full = vec!["wg"];
        full.extend_from_slice(args);
        let out = self.node.exec(&full);
        assert!(ok(&out), "wg {args:?}: {out:?}");
        String::from_utf8(out.stdout).unwrap()
    }

    /// Configures the ZTOS node as this device's peer.
    fn set_peer(&mut self, public_key: &str, psk: Option<&Path>, endpoint: Option<&str>) {
        let name = self.name.clone();
        let mut args = vec![
            "set",
            &name,
            "peer",
            public_key,
            "allowed-ips",
            "10.8.0.0/24",
        ];
        if let Some(psk) = psk {
            args.extend(["preshared-key", psk.to_str().unwrap()]);
        }
        if let Some(endpoint) = endpoint {
            args.extend(["endpoint", endpoint]);
        }
        self.wg(&args);
    }

    /// Unix time of the latest handshake with `peer` (0: none).
    fn latest_handshake(&mut self, peer: &str) -> u64 {
        let name = self.name.clone();
        self.wg(&["show", &name, "latest-handshakes"])
            .lines()
            .find_map(|line| {
                let (key, time) = line.split_once('\t')?;
                (key == peer).then(|| time.trim().parse().ok())?
            })
            .unwrap_or(0)
    }
}

impl Drop for WireguardGo {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = fs::remove_file(format!("/var/run/wireguard/{}.sock", self.name));
        if std::thread::panicking() {
            eprintln!(
                "===== {} =====\n{}",
                self.log.display(),
                fs::read_to_string(&self.log).unwrap_or_default()
            );
        }
    }
}

/// z's configuration: wg0 at 10.8.0.1/24, peer g (with a preshared key, and g's underlay
/// endpoint if `endpoint`), and a rule allowing everything from g.
fn z_config(kg: &str, endpoint: bool) -> String {
    let endpoint = if endpoint {
        format!("endpoint = \"{G_UNDERLAY}:{G_PORT}\"\n")
    } else {
        String::new()
    };
    format!(
        "[[wireguard.interfaces]]\nname = \"wg0\"\nlisten_port = 51820\naddresses = [\"10.8.0.1/24\"]\n\n\
         [[wireguard.interfaces.peers]]\nname = \"g\"\npublic_key = \"{kg}\"\n{endpoint}\
         allowed_ips = [\"10.8.0.2/32\"]\npreshared_key = true\n\n\
         [[policy.rules]]\nname = \"from-g\"\naction = \"allow\"\nfrom = [\"{kg}\"]\n"
    )
}

/// Runs `ztos <args>` against `daemon`; panics with the output unless it succeeds.
fn ztos_ok(daemon: &ZtosdHandle, args: &[&str]) -> String {
    let out = daemon.ztos(args);
    assert!(ok(&out), "ztos {args:?}: {out:?}");
    String::from_utf8(out.stdout).unwrap()
}

/// Exports g's preshared key from z (once the plugin has applied the configuration) into a
/// file for wg(8).
fn export_psk(daemon: &ZtosdHandle, dir: &Path, kg: &str) -> PathBuf {
    let mut psk = String::new();
    poll("the preshared key to be exportable", 20, || {
        let out = daemon.ztos(&["security", "wireguard", "preshared-key", "wg0", kg]);
        psk = String::from_utf8_lossy(&out.stdout).trim().to_string();
        ok(&out)
    });
    assert_eq!(psk.len(), 44, "{psk}");
    let path = dir.join("g.psk");
    fs::write(&path, format!("{psk}\n")).unwrap();
    path
}

/// z's view of peer g from `ztos --json security wireguard show wg0`.
fn z_peer(daemon: &ZtosdHandle, kg: &str) -> Value {
    let show: Value = serde_json::from_str(&ztos_ok(
        daemon,
        &["--json", "security", "wireguard", "show", "wg0"],
    ))
    .unwrap();
    show["interfaces"][0]["peers"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|p| p["public_key"] == kg)
        .cloned()
        .unwrap_or_else(|| panic!("no peer {kg} in {show}"))
}

fn z_interface(daemon: &ZtosdHandle) -> Value {
    let show: Value = serde_json::from_str(&ztos_ok(
        daemon,
        &["--json", "security", "wireguard", "show", "wg0"],
    ))
    .unwrap();
    show["interfaces"][0].clone()
}

fn pings(node: &Node, address: &str) -> bool {
    ok(&node.exec(&["ping", "-c", "1", "-W", "1", address]))
}

/// A short iperf3 TCP transfer from `client` to `server_address` on `server`; returns the
/// bytes received.
fn iperf(server: &Node, server_address: &str, client: &Node, seconds: u32) -> f64 {
    let out = server.exec(&["iperf3", "-s", "-D", "-1", "-B", server_address]);
    assert!(ok(&out), "{out:?}");
    std::thread::sleep(Duration::from_millis(300));
    let out = client.exec(&[
        "iperf3",
        "-c",
        server_address,
        "-t",
        &seconds.to_string(),
        "-J",
    ]);
    assert!(ok(&out), "{out:?}");
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    report["end"]["sum_received"]["bytes"]
        .as_f64()
        .unwrap_or(0.0)
}

/// z (ztosd + ztos-wireguard) and g (wireguard-go) on one link.
fn interop_nodes(lab: &Lab) -> (Node, Node) {
    let (z, g) = (lab.node("z"), lab.node("g"));
    lab.link(
        (&z, "eth0", Some(&format!("{Z_UNDERLAY}/24"))),
        (&g, "eth0", Some(&format!("{G_UNDERLAY}/24"))),
    );
    (z, g)
}

#[test]
fn interop_ztos_responds_to_wireguard_go_with_psk() {
    let Some(lab) = Lab::new_if_root("wgr") else {
        return;
    };
    let (z, g) = interop_nodes(&lab);
    let kz = public_key(&z);
    let mut wg = WireguardGo::start(&g, "10.8.0.2/24");
    let kg = wg.public_key.clone();
    let daemon = z.start_ztosd(&z_config(&kg, false));
    let _plugin = start_plugin(&z);
    let psk = export_psk(&daemon, lab.dir(), &kg);

    // Without the preshared key g's handshakes fail: z has the PSK mixed in.
    wg.set_peer(&kz, None, Some(&format!("{Z_UNDERLAY}:51820")));
    for _ in 0..3 {
        assert!(!pings(&g, "10.8.0.1"), "a handshake without the PSK passed");
    }
    assert_eq!(wg.latest_handshake(&kz), 0);

    // With it, g (initiator) reaches z (responder).
    wg.set_peer(&kz, Some(&psk), None);
    poll("g's handshake with z", 20, || pings(&g, "10.8.0.1"));
    assert!(wg.latest_handshake(&kz) > 0);
    let peer = z_peer(&daemon, &kg);
    assert!(peer["latest_handshake"].as_u64().is_some(), "{peer}");
    assert_eq!(peer["preshared_key"], true, "{peer}");
    assert_eq!(peer["endpoint"], format!("{G_UNDERLAY}:{G_PORT}"), "{peer}");
    let out = g.exec(&["ping", "-c", "5", "-i", "0.2", "-W", "2", "10.8.0.1"]);
    assert!(ok(&out), "{out:?}");
    let bytes = iperf(&z, "10.8.0.1", &g, 2);
    assert!(bytes > 100_000.0, "iperf3 moved only {bytes} bytes");

    // The CLI: show (wg show-like, no private key), genkey refuses an interface with a key,
    // creates one for a new name; show of an unconfigured interface.
    let text = ztos_ok(&daemon, &["security", "wireguard", "show"]);
    assert!(text.contains(&format!("public key: {kz}")), "{text}");
    assert!(text.contains(&format!("peer: {kg} (g)")), "{text}");
    assert!(text.contains("latest handshake:"), "{text}");
    assert!(!text.contains(&fs::read_to_string(&psk).unwrap().trim().to_string()));
    let out = daemon.ztos(&["security", "wireguard", "genkey", "wg0"]);
    assert!(!ok(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("already has a key"),
        "{out:?}"
    );
    let generated: Value = serde_json::from_str(&ztos_ok(
        &daemon,
        &["--json", "security", "wireguard", "genkey", "wg7"],
    ))
    .unwrap();
    let shown: Value = serde_json::from_str(&ztos_ok(
        &daemon,
        &["--json", "security", "wireguard", "show", "wg7"],
    ))
    .unwrap();
    assert_eq!(
        shown["interfaces"][0]["public_key"],
        generated["public_key"]
    );
    assert_eq!(shown["interfaces"][0]["configured"], false);
    let stored = fs::read_dir(wg_state(&z).join("keys")).unwrap().count();
    assert_eq!(stored, 3, "wg0.key, wg7.key and g's PSK");
}

#[test]
fn interop_ztos_initiates_to_wireguard_go_and_rotates_its_key() {
    let Some(lab) = Lab::new_if_root("wgi") else {
        return;
    };
    let (z, g) = interop_nodes(&lab);
    let kz = public_key(&z);
    let mut wg = WireguardGo::start(&g, "10.8.0.2/24");
    let kg = wg.public_key.clone();
    let daemon = z.start_ztosd(&z_config(&kg, true));
    let _plugin = start_plugin(&z);
    let psk = export_psk(&daemon, lab.dir(), &kg);
    // g knows no endpoint for z: only z can start the handshake.
    wg.set_peer(&kz, Some(&psk), None);
    poll("z's handshake with g", 20, || pings(&z, "10.8.0.2"));
    assert!(wg.latest_handshake(&kz) > 0);
    let out = z.exec(&["ping", "-c", "5", "-i", "0.2", "-W", "2", "10.8.0.2"]);
    assert!(ok(&out), "{out:?}");
    // z's outgoing flows are allowed and their replies come back through the flow table.
    let bytes = iperf(&g, "10.8.0.2", &z, 2);
    assert!(bytes > 100_000.0, "iperf3 moved only {bytes} bytes");

    // Rotation: the answer names the new key and what peers must do; the old session is
    // gone, and g refuses the new key until it is told.
    let rotated: Value = serde_json::from_str(&ztos_ok(
        &daemon,
        &["--json", "security", "wireguard", "rotate-key", "wg0"],
    ))
    .unwrap();
    assert_eq!(rotated["old_public_key"], kz.as_str());
    let kz2 = rotated["public_key"].as_str().unwrap().to_string();
    assert_ne!(kz2, kz);
    assert!(
        rotated["notice"]
            .as_str()
            .unwrap()
            .contains("must replace the old public key"),
        "{rotated}"
    );
    assert_eq!(z_interface(&daemon)["public_key"], kz2.as_str());
    assert_eq!(public_key(&z), kz2, "the stored key is the new one");
    for _ in 0..3 {
        assert!(!pings(&z, "10.8.0.2"), "g still talks to z's old key");
    }
    let name = wg.name.clone();
    wg.wg(&["set", &name, "peer", &kz, "remove"]);
    wg.set_peer(&kz2, Some(&psk), None);
    poll("the handshake with z's new key", 20, || {
        pings(&z, "10.8.0.2")
    });
}

/// Python that captures `count` WireGuard data messages (type 4, longer than a keepalive)
/// leaving this namespace for `dst`:51820 and prints their UDP payloads in hex, one a line.
const CAPTURE: &str = r#"
import socket, struct, sys, time
dst, count = socket.inet_aton(sys.argv[1]), int(sys.argv[2])
# ETH_P_ALL: only those taps see outgoing frames.
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(3))
s.settimeout(1)
got, deadline = [], time.time() + 10
while len(got) < count and time.time() < deadline:
    try:
        frame = s.recv(65535)
    except socket.timeout:
        continue
    if frame[12:14] != b'\x08\x00':
        continue
    ip = frame[14:]
    if len(ip) < 28 or ip[9] != 17 or ip[16:20] != dst:
        continue
    ihl = (ip[0] & 15) * 4
    port = struct.unpack('!H', ip[ihl + 2:ihl + 4])[0]
    payload = ip[ihl + 8:]
    if port == 51820 and payload[0] == 4 and len(payload) > 32:
        got.append(payload.hex())
print('\n'.join(got))
"#;

/// Python that sends `count` handshake initiations with a valid MAC1 for the responder key
/// (base64 argv[2]) to argv[1]:51820, a few thousand a second (paced so that the receiver's
/// socket buffer does not simply drop most of them), then counts the cookie replies (type 3,
/// 64 bytes) that come back; prints `sent replies`.
const FLOOD: &str = r#"
import base64, hashlib, os, socket, sys, time
target, key, count = sys.argv[1], base64.b64decode(sys.argv[2]), int(sys.argv[3])
mac1_key = hashlib.blake2s(b'mac1----' + key).digest()
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
replies = 0
for i in range(count):
    body = bytes([1, 0, 0, 0]) + os.urandom(112)
    s.sendto(body + hashlib.blake2s(body, key=mac1_key, digest_size=16).digest() + bytes(16),
             (target, 51820))
    if i % 8 == 7:
        time.sleep(0.001)
s.settimeout(1)
while True:
    try:
        reply = s.recv(2048)
    except socket.timeout:
        break
    if len(reply) == 64 and reply[0] == 3:
        replies += 1
print(count, replies)
"#;

/// CPU seconds (user + system) the process has used, from /proc/<pid>/stat.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .unwrap()
        .1
        .split_whitespace()
        .collect();
    let ticks: f64 = fields[11].parse::<f64>().unwrap() + fields[12].parse::<f64>().unwrap();
    ticks / 100.0
}

#[test]
fn replayed_packets_are_dropped_and_handshake_floods_get_cookies() {
    let Some(lab) = Lab::new_if_root("wgf") else {
        return;
    };
    let (z, g) = interop_nodes(&lab);
    let kz = public_key(&z);
    let mut wg = WireguardGo::start(&g, "10.8.0.2/24");
    let kg = wg.public_key.clone();
    let daemon = z.start_ztosd(&z_config(&kg, false));
    let plugin = start_plugin(&z);
    let psk = export_psk(&daemon, lab.dir(), &kg);
    wg.set_peer(&kz, Some(&psk), Some(&format!("{Z_UNDERLAY}:51820")));
    poll("g's handshake with z", 20, || pings(&g, "10.8.0.1"));

    // Capture five authenticated data packets on g's side of the wire while g pings z.
    let capture = Command::new("ip")
        .args(["netns", "exec", g.namespace()])
        .args(["python3", "-c", CAPTURE, Z_UNDERLAY, "5"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(500));
    let out = g.exec(&["ping", "-c", "8", "-i", "0.2", "-W", "2", "10.8.0.1"]);
    assert!(ok(&out), "{out:?}");
    let captured = capture.wait_with_output().unwrap();
    assert!(ok(&captured), "{captured:?}");
    let packets: Vec<String> = String::from_utf8(captured.stdout)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect();
    assert_eq!(packets.len(), 5, "captured {packets:?}");

    // Replay each three times from another source port, after the originals were taken.
    std::thread::sleep(Duration::from_millis(1500));
    let before_peer = z_peer(&daemon, &kg);
    let before_invalid = z_interface(&daemon)["invalid_datagrams"].as_u64().unwrap();
    let replay = g.exec(&[
        "python3",
        "-c",
        "import socket,sys\ns=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\n\
         for p in sys.argv[2:]:\n  for _ in range(3): s.sendto(bytes.fromhex(p),(sys.argv[1],51820))",
        Z_UNDERLAY,
        &packets[0],
        &packets[1],
        &packets[2],
        &packets[3],
        &packets[4],
    ]);
    assert!(ok(&replay), "{replay:?}");
    poll("the replays to be counted as invalid", 5, || {
        z_interface(&daemon)["invalid_datagrams"].as_u64().unwrap() >= before_invalid + 15
    });
    let after_peer = z_peer(&daemon, &kg);
    assert_eq!(
        after_peer["rx_packets"], before_peer["rx_packets"],
        "a replayed packet was delivered"
    );
    assert_eq!(
        after_peer["endpoint"], before_peer["endpoint"],
        "a replay moved the endpoint"
    );
    assert_eq!(
        after_peer["latest_handshake"],
        before_peer["latest_handshake"]
    );
    let out = g.exec(&["ping", "-c", "3", "-i", "0.2", "-W", "2", "10.8.0.1"]);
    assert!(ok(&out), "after the replay: {out:?}");

    // A flood of handshake initiations with valid MAC1s: past the limiter's rate z answers
    // with cookie replies instead of doing the Diffie-Hellman work, so the initiations that
    // reach DH (and fail there: they are random) stay near the rate.
    let before = z_interface(&daemon);
    let pid = plugin.child.id();
    let cpu_before = cpu_seconds(pid);
    let started = Instant::now();
    let flood = g.exec(&["python3", "-c", FLOOD, Z_UNDERLAY, &kz, "5000"]);
    let elapsed = started.elapsed().as_secs_f64();
    assert!(ok(&flood), "{flood:?}");
    let cpu = cpu_seconds(pid) - cpu_before;
    let text = String::from_utf8(flood.stdout).unwrap();
    let (sent, replies) = text.trim().split_once(' ').unwrap();
    let (sent, replies): (u64, u64) = (sent.parse().unwrap(), replies.parse().unwrap());
    std::thread::sleep(Duration::from_millis(1500));
    let after = z_interface(&daemon);
    let counter = |v: &Value, k: &str| v[k].as_u64().unwrap();
    let cookies = counter(&after, "cookies_sent") - counter(&before, "cookies_sent");
    let dh = counter(&after, "invalid_datagrams") - counter(&before, "invalid_datagrams");
    eprintln!(
        "flood: {sent} initiations in {elapsed:.2} s; {cookies} cookies sent, {replies} received; \
         {dh} reached DH; ztos-wireguard used {cpu:.2} s CPU"
    );
    // The limiter takes 2 x HANDSHAKES_PER_SECOND (50, plugins/wireguard/src/datapath.rs)
    // handshake messages a second.
    let limit = (2.0 * 50.0 * (elapsed + 2.0)) as u64;
    assert!(dh <= limit, "{dh} initiations reached DH (limit {limit})");
    assert!(
        cookies >= 1000 && cookies >= 3 * dh,
        "{cookies} cookies and {dh} DH for {sent} initiations"
    );
    assert!(
        replies * 10 >= cookies * 9,
        "{replies} of {cookies} cookies arrived"
    );
    // The established session is not disturbed.
    let out = g.exec(&["ping", "-c", "3", "-i", "0.2", "-W", "2", "10.8.0.1"]);
    assert!(ok(&out), "after the flood: {out:?}");
}

#[test]
fn killing_ztos_wireguard_under_the_supervisor_brings_the_tunnel_back() {
    let Some(lab) = Lab::new_if_root("wgk") else {
        return;
    };
    let (z, g) = interop_nodes(&lab);
    let kz = public_key(&z);
    let mut wg = WireguardGo::start(&g, "10.8.0.2/24");
    let kg = wg.public_key.clone();
    let quote = |args: &[String]| -> String {
        args.iter()
            .map(|a| format!("{a:?}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let ztosd = quote(&z.ztosd_command(&z_config(&kg, true)));
    let plugin = quote(&[
        binary("ztos-wireguard").display().to_string(),
        "--socket".into(),
        z.dir().join("plugin.sock").display().to_string(),
        "--state-dir".into(),
        wg_state(&z).display().to_string(),
        "--report-interval".into(),
        "1".into(),
    ]);
    let supervisor = z.start_supervisor(&format!(
        "[[service]]\nname = \"ztosd\"\ncommand = [{ztosd}]\ncritical = true\n\n\
         [[service]]\nname = \"ztos-wireguard\"\ncommand = [{plugin}]\nstop_timeout_secs = 5\n"
    ));
    let services = || -> Value {
        let out = supervisor.ztos(&["--json", "system", "services"]);
        serde_json::from_slice(&out.stdout).unwrap_or(Value::Null)
    };
    let plugin_pid = || -> Option<u64> {
        services()["services"]
            .as_array()?
            .iter()
            .find(|s| s["name"] == "ztos-wireguard" && s["state"] == "running")?["pid"]
            .as_u64()
    };
    let mut psk = String::new();
    supervisor.wait_for_secs("the preshared key", 30, || {
        let out = supervisor.ztos(&["security", "wireguard", "preshared-key", "wg0", &kg]);
        psk = String::from_utf8_lossy(&out.stdout).trim().to_string();
        ok(&out)
    });
    let psk_file = lab.dir().join("g.psk");
    fs::write(&psk_file, format!("{psk}\n")).unwrap();
    wg.set_peer(&kz, Some(&psk_file), Some(&format!("{Z_UNDERLAY}:51820")));
    supervisor.wait_for_secs("the tunnel", 20, || pings(&g, "10.8.0.1"));

    let pid = plugin_pid().expect("ztos-wireguard runs");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    supervisor.wait_for_secs("ztos-wireguard to be restarted", 20, || {
        plugin_pid().is_some_and(|p| p != pid)
    });
    // No operator action: the restarted plugin gets its configuration from ztosd, recreates
    // wg0 with the same key and PSK, and traffic from either side brings a new session.
    supervisor.wait_for_secs("the tunnel after the restart", 30, || pings(&z, "10.8.0.2"));
    let out = g.exec(&["ping", "-c", "3", "-i", "0.2", "-W", "2", "10.8.0.1"]);
    assert!(ok(&out), "{out:?}");
    let all = services();
    let entry = all["services"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "ztos-wireguard")
        .unwrap();
    assert!(entry["restarts"].as_u64().unwrap() >= 1, "{entry}");
    assert!(
        entry["last_exit"]
            .as_str()
            .unwrap_or("")
            .contains("SIGKILL"),
        "{entry}"
    );
}
