//! WireGuard system tests (issue 6): ztos-wireguard under real ztosd daemons in network
//! namespaces. Run by `tests/wireguard-test.sh`; need root (they return early without it).
//!
//! Topology: the server `s` has one underlay link to each client (`a`: 192.168.71.0/24, `c`:
//! 192.168.72.0/24); the tunnel is 10.9.0.0/24 (s .1, a .2, c .3).

use std::fs;
use std::path::PathBuf;
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
fn two_nodes_policy_counters_garbage_and_replay() {
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

    // A short TCP transfer through the tunnel.
    if Command::new("iperf3").arg("--version").output().is_ok() {
        let server = s.exec(&["iperf3", "-s", "-D", "-1", "-B", "10.9.0.1"]);
        assert!(ok(&server), "{server:?}");
        std::thread::sleep(Duration::from_millis(300));
        let out = a.exec(&["iperf3", "-c", "10.9.0.1", "-t", "2", "-J"]);
        assert!(ok(&out), "{out:?}");
        let report: Value = serde_json::from_slice(&out.stdout).unwrap();
        let bytes = report["end"]["sum_received"]["bytes"]
            .as_f64()
            .unwrap_or(0.0);
        assert!(bytes > 100_000.0, "iperf3 moved only {bytes} bytes");
    }

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
