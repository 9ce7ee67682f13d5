//! The EVPN kernel layer against the real kernel, inside network namespaces this test creates
//! and always deletes: a bridge `br100` with a VXLAN port `vx100` (nolearning, as ztosd
//! creates it) and a veth port `loc0` whose peer sits in a second namespace and sends frames.
//! Needs root; without it the tests say why they did nothing.

use std::fs::File;
use std::net::IpAddr;
use std::os::unix::fs::MetadataExt;
use std::process::Command;
use std::time::{Duration, Instant};

use nix::sched::{setns, CloneFlags};
use tokio::sync::{mpsc, watch};
use ztos_bgp::evpn_kernel::{self, EvpnKernel, EvpnOp, L2Segment, LocalMac};

const PEER_MAC: [u8; 6] = [0x02, 0, 0, 0xaa, 0, 0x01];
const PEER_MAC_TEXT: &str = "02:00:00:aa:00:01";
const REMOTE_MAC: [u8; 6] = [0x02, 0, 0, 0xbb, 0, 0x01];
const REMOTE_MAC_TEXT: &str = "02:00:00:bb:00:01";
const OTHER_MAC: [u8; 6] = [0x02, 0, 0, 0xbb, 0, 0x02];
const OTHER_MAC_TEXT: &str = "02:00:00:bb:00:02";

/// A network namespace that is deleted when dropped, also when the test panics.
struct Namespace {
    name: String,
}

impl Namespace {
    fn create(purpose: &str) -> Namespace {
        let name = format!("ztos-evpn-{}-{purpose}", std::process::id());
        run_ok("ip", &["netns", "add", &name]);
        let namespace = Namespace { name };
        namespace.ip(&["link", "set", "lo", "up"]);
        namespace
    }

    fn run(&self, program: &str, args: &[&str]) -> String {
        let mut full = vec!["-n", self.name.as_str()];
        full.extend_from_slice(args);
        run_ok(program, &full)
    }

    fn ip(&self, args: &[&str]) -> String {
        self.run("ip", args)
    }

    fn bridge(&self, args: &[&str]) -> String {
        self.run("bridge", args)
    }

    fn exec(&self, args: &[&str]) -> String {
        let mut full = vec!["netns", "exec", self.name.as_str()];
        full.extend_from_slice(args);
        run_ok("ip", &full)
    }

    fn fdb(&self) -> String {
        self.bridge(&["fdb", "show", "dev", "vx100"])
    }

    /// Runs `body` on a current-thread tokio runtime on a thread inside this namespace.
    fn enter<T: Send + 'static>(
        &self,
        body: impl FnOnce() -> T + Send + 'static,
    ) -> std::thread::JoinHandle<T> {
        let path = format!("/run/netns/{}", self.name);
        std::thread::spawn(move || {
            let file = File::open(&path).unwrap_or_else(|e| panic!("opening {path}: {e}"));
            setns(&file, CloneFlags::CLONE_NEWNET).expect("entering the test namespace");
            body()
        })
    }
}

impl Drop for Namespace {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}

fn run_ok(program: &str, args: &[&str]) -> String {
    let output = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|error| panic!("running {program}: {error}"));
    assert!(
        output.status.success(),
        "{program} {} failed: {}",
        args.join(" "),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn is_root(test: &str) -> bool {
    if nix::unistd::Uid::effective().is_root() {
        return true;
    }
    // CI runs as root; skipping is only for a developer who asked for it.
    assert!(
        std::env::var_os("ZTOS_SKIP_ROOT_TESTS").is_some_and(|v| v == "1"),
        "{test} needs root for network namespaces; set ZTOS_SKIP_ROOT_TESTS=1 to skip"
    );
    eprintln!("skipping {test}: needs root");
    false
}

fn create_vxlan(ns: &Namespace) {
    ns.ip(&[
        "link",
        "add",
        "vx100",
        "type",
        "vxlan",
        "id",
        "100",
        "local",
        "10.0.0.1",
        "dstport",
        "4789",
        "nolearning",
    ]);
    ns.ip(&["link", "set", "vx100", "master", "br100"]);
    ns.ip(&["link", "set", "vx100", "up"]);
}

/// br100 with vx100 and loc0 as ports; loc0's peer in `peer` (192.168.100.2, PEER_MAC) with
/// a permanent neighbour for 192.168.100.1, so that one ping sends exactly one frame.
fn segment_lab(ns: &Namespace, peer: &Namespace) {
    ns.ip(&["link", "add", "br100", "type", "bridge"]);
    ns.ip(&["link", "set", "br100", "up"]);
    create_vxlan(ns);
    ns.ip(&[
        "link", "add", "loc0", "type", "veth", "peer", "name", "loc0p",
    ]);
    ns.ip(&["link", "set", "loc0p", "netns", &peer.name]);
    ns.ip(&["link", "set", "loc0", "master", "br100"]);
    ns.ip(&["link", "set", "loc0", "up"]);
    peer.exec(&["sysctl", "-q", "-w", "net.ipv6.conf.all.disable_ipv6=1"]);
    peer.exec(&["sysctl", "-q", "-w", "net.ipv6.conf.default.disable_ipv6=1"]);
    peer.ip(&["link", "set", "loc0p", "address", PEER_MAC_TEXT]);
    peer.ip(&["address", "add", "192.168.100.2/24", "dev", "loc0p"]);
    peer.ip(&[
        "neigh",
        "add",
        "192.168.100.1",
        "lladdr",
        "02:00:00:aa:00:ff",
        "dev",
        "loc0p",
        "nud",
        "permanent",
    ]);
    peer.ip(&["link", "set", "loc0p", "up"]);
}

/// One frame from PEER_MAC into loc0 (nobody answers; the bridge learns the source).
fn send_frame(peer: &Namespace) {
    let _ = Command::new("ip")
        .args([
            "netns",
            "exec",
            &peer.name,
            "ping",
            "-c",
            "1",
            "-W",
            "1",
            "192.168.100.1",
        ])
        .output();
}

fn wait_until(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn has_line(text: &str, mac: &str, needles: &[&str]) -> bool {
    text.lines()
        .any(|line| line.starts_with(mac) && needles.iter().all(|n| line.contains(n)))
}

fn ip(text: &str) -> IpAddr {
    text.parse().unwrap()
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

/// Starts the op task on a runtime inside the namespace; the ops sender and the errors come
/// back over std channels, and the runtime runs until `stop` is dropped.
struct OpTask {
    ops: mpsc::UnboundedSender<EvpnOp>,
    errors: std::sync::mpsc::Receiver<String>,
    thread: Option<std::thread::JoinHandle<()>>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl OpTask {
    fn start(ns: &Namespace) -> OpTask {
        let (ops_tx, ops_rx) = std::sync::mpsc::channel();
        let (errors_tx, errors) = std::sync::mpsc::channel();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let thread = ns.enter(move || {
            runtime().block_on(async move {
                let kernel = EvpnKernel::open().expect("rtnetlink");
                let (error_tx, mut error_rx) = mpsc::unbounded_channel();
                ops_tx.send(evpn_kernel::spawn(kernel, error_tx)).unwrap();
                let forward = async {
                    while let Some(error) = error_rx.recv().await {
                        let _ = errors_tx.send(error);
                    }
                };
                tokio::select! {
                    _ = stopped => {}
                    _ = forward => {}
                }
            })
        });
        OpTask {
            ops: ops_rx.recv().expect("op task started"),
            errors,
            thread: Some(thread),
            stop: Some(stop),
        }
    }

    fn send(&self, op: EvpnOp) {
        self.ops.send(op).expect("op task running");
    }

    /// The errors reported up to the one `marker` (an op on a missing device) causes:
    /// ops are applied in order, so all earlier errors have arrived by then.
    fn errors_until_marker(&self, marker: &str) -> Vec<String> {
        self.send(EvpnOp::InstallMac {
            vxlan: marker.into(),
            mac: OTHER_MAC,
            vtep: ip("192.0.2.99"),
        });
        let mut errors = Vec::new();
        loop {
            let error = self
                .errors
                .recv_timeout(Duration::from_secs(10))
                .expect("the marker error");
            if error.contains(marker) {
                assert!(error.contains("does not exist"), "{error}");
                return errors;
            }
            errors.push(error);
        }
    }
}

impl Drop for OpTask {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn sweep(ns: &Namespace) -> usize {
    ns.enter(|| {
        runtime().block_on(async {
            EvpnKernel::open()
                .expect("rtnetlink")
                .sweep()
                .await
                .expect("sweep")
        })
    })
    .join()
    .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
}

#[test]
fn evpn_ops_program_the_fdb_reinstall_and_sweep() {
    if !is_root("evpn_ops_program_the_fdb_reinstall_and_sweep") {
        return;
    }
    let ns = Namespace::create("ops");
    let peer = Namespace::create("ops-peer");
    segment_lab(&ns, &peer);
    // ztosd's static flood list.
    ns.bridge(&[
        "fdb",
        "append",
        "00:00:00:00:00:00",
        "dev",
        "vx100",
        "dst",
        "10.0.0.2",
        "self",
        "permanent",
    ]);

    let task = OpTask::start(&ns);
    task.send(EvpnOp::InstallMac {
        vxlan: "vx100".into(),
        mac: REMOTE_MAC,
        vtep: ip("10.0.0.3"),
    });
    task.send(EvpnOp::AddFlood {
        vxlan: "vx100".into(),
        vtep: ip("10.0.0.4"),
    });
    // A VTEP that ztosd's list has already: not ztos-bgp's to remove later.
    task.send(EvpnOp::AddFlood {
        vxlan: "vx100".into(),
        vtep: ip("10.0.0.2"),
    });
    wait_until("the remote MAC and flood entry", || {
        let fdb = ns.fdb();
        has_line(
            &fdb,
            REMOTE_MAC_TEXT,
            &["dst 10.0.0.3", "self", "extern_learn"],
        ) && has_line(&fdb, REMOTE_MAC_TEXT, &["master br100", "extern_learn"])
            && has_line(&fdb, "00:00:00:00:00:00", &["dst 10.0.0.4", "self"])
    });
    // Replacing: the MAC moved to another VTEP.
    task.send(EvpnOp::InstallMac {
        vxlan: "vx100".into(),
        mac: REMOTE_MAC,
        vtep: ip("10.0.0.5"),
    });
    task.send(EvpnOp::RemoveFlood {
        vxlan: "vx100".into(),
        vtep: ip("10.0.0.2"),
    });
    task.send(EvpnOp::RemoveFlood {
        vxlan: "vx100".into(),
        vtep: ip("10.0.0.4"),
    });
    wait_until("the flood entry removed", || {
        !has_line(&ns.fdb(), "00:00:00:00:00:00", &["dst 10.0.0.4"])
    });
    let fdb = ns.fdb();
    assert!(
        has_line(
            &fdb,
            "00:00:00:00:00:00",
            &["dst 10.0.0.2", "self permanent"]
        ),
        "ztosd's flood entry was removed:\n{fdb}"
    );
    assert!(
        has_line(&fdb, REMOTE_MAC_TEXT, &["dst 10.0.0.5", "self"])
            && !has_line(&fdb, REMOTE_MAC_TEXT, &["dst 10.0.0.3"]),
        "the MAC was not replaced:\n{fdb}"
    );
    assert_eq!(task.errors_until_marker("nosuch0"), Vec::<String>::new());

    task.send(EvpnOp::RemoveMac {
        vxlan: "vx100".into(),
        mac: REMOTE_MAC,
    });
    wait_until("the remote MAC removed", || {
        !ns.fdb().contains(REMOTE_MAC_TEXT)
    });

    // Re-install after ztosd re-creates the VXLAN device.
    task.send(EvpnOp::InstallMac {
        vxlan: "vx100".into(),
        mac: OTHER_MAC,
        vtep: ip("10.0.0.6"),
    });
    task.send(EvpnOp::AddFlood {
        vxlan: "vx100".into(),
        vtep: ip("10.0.0.7"),
    });
    wait_until("the second MAC", || {
        let fdb = ns.fdb();
        has_line(&fdb, OTHER_MAC_TEXT, &["master br100"])
            && has_line(&fdb, "00:00:00:00:00:00", &["dst 10.0.0.7"])
    });
    ns.ip(&["link", "del", "vx100"]);
    create_vxlan(&ns);
    ns.bridge(&[
        "fdb",
        "append",
        "00:00:00:00:00:00",
        "dev",
        "vx100",
        "dst",
        "10.0.0.2",
        "self",
        "permanent",
    ]);
    wait_until("the entries re-installed on the new vx100", || {
        let fdb = ns.fdb();
        has_line(
            &fdb,
            OTHER_MAC_TEXT,
            &["dst 10.0.0.6", "self", "extern_learn"],
        ) && has_line(&fdb, OTHER_MAC_TEXT, &["master br100", "extern_learn"])
            && has_line(&fdb, "00:00:00:00:00:00", &["dst 10.0.0.7"])
    });
    assert_eq!(task.errors_until_marker("nosuch1"), Vec::<String>::new());
    // As if ztos-bgp crashed: the task ends, its entries stay.
    drop(task);

    // Things that are not ztos-bgp's, and things an earlier ztos-bgp left.
    send_frame(&peer);
    wait_until("the peer's MAC learned", || {
        has_line(
            &ns.bridge(&["fdb", "show", "br", "br100"]),
            PEER_MAC_TEXT,
            &["dev loc0"],
        )
    });
    // An extern_learn entry on a port that is not VXLAN (switchdev's kind): not ours.
    ns.bridge(&[
        "fdb",
        "add",
        "02:00:00:cc:00:01",
        "dev",
        "loc0",
        "master",
        "extern_learn",
    ]);
    ns.ip(&["address", "add", "192.168.100.1/24", "dev", "br100"]);
    ns.ip(&[
        "neigh",
        "add",
        "192.168.100.7",
        "lladdr",
        "02:00:00:dd:00:07",
        "dev",
        "br100",
        "nud",
        "permanent",
        "protocol",
        "197",
    ]);
    ns.ip(&[
        "neigh",
        "add",
        "192.168.100.8",
        "lladdr",
        "02:00:00:dd:00:08",
        "dev",
        "br100",
        "nud",
        "permanent",
    ]);
    ns.ip(&[
        "route",
        "add",
        "203.0.113.0/24",
        "via",
        "192.168.100.7",
        "dev",
        "br100",
        "table",
        "1010",
        "proto",
        "197",
    ]);
    ns.ip(&[
        "route",
        "add",
        "203.0.114.0/24",
        "via",
        "192.168.100.7",
        "dev",
        "br100",
        "proto",
        "197",
    ]);
    let before = ns.bridge(&["fdb", "show"]);

    // The MAC's vxlan and bridge entries, the flood remote, the neighbour, the VRF route.
    assert_eq!(sweep(&ns), 5);
    let after = ns.bridge(&["fdb", "show"]);
    assert!(!after.contains(OTHER_MAC_TEXT), "{after}");
    assert!(
        !has_line(&after, "00:00:00:00:00:00", &["dst 10.0.0.7"]),
        "{after}"
    );
    let kept: Vec<&str> = before
        .lines()
        .filter(|line| !line.contains(OTHER_MAC_TEXT) && !line.contains("dst 10.0.0.7"))
        .collect();
    let after_lines: Vec<&str> = after.lines().collect();
    assert_eq!(after_lines, kept, "the sweep removed something not ours");
    assert!(has_line(
        &after,
        "00:00:00:00:00:00",
        &["dst 10.0.0.2", "self permanent"]
    ));
    assert!(has_line(&after, PEER_MAC_TEXT, &["dev loc0"]));
    assert!(has_line(&after, "02:00:00:cc:00:01", &["extern_learn"]));
    let neighbours = ns.ip(&["neigh", "show", "dev", "br100"]);
    assert!(!neighbours.contains("192.168.100.7 "), "{neighbours}");
    assert!(neighbours.contains("192.168.100.8 "), "{neighbours}");
    assert!(ns.ip(&["route", "show", "table", "1010"]).trim().is_empty());
    assert!(ns
        .ip(&["route", "show", "proto", "197"])
        .contains("203.0.114.0/24"));
    // Nothing left to sweep.
    assert_eq!(sweep(&ns), 0);

    // A journal from a deleted namespace whose inode number the kernel gave to this one: its
    // device had another (random) MAC address, so ztosd's entry for the same VTEP stays.
    let inode = std::fs::metadata(format!("/run/netns/{}", ns.name))
        .expect("namespace")
        .ino();
    let journal = format!("/run/ztos/bgp-evpn-flood-{inode}");
    assert!(
        !std::path::Path::new(&journal).exists(),
        "the sweep left {journal}"
    );
    std::fs::write(&journal, "vx100 02:00:00:00:00:99 10.0.0.2\n").expect("journal");
    assert_eq!(sweep(&ns), 0);
    assert!(has_line(
        &ns.fdb(),
        "00:00:00:00:00:00",
        &["dst 10.0.0.2", "self permanent"]
    ));
    assert!(!std::path::Path::new(&journal).exists());
}

#[test]
fn type5_prefixes_without_vrf_support_report_once_per_vrf() {
    if !is_root("type5_prefixes_without_vrf_support_report_once_per_vrf") {
        return;
    }
    let ns = Namespace::create("type5");
    let vrf_supported = Command::new("ip")
        .args([
            "-n", &ns.name, "link", "add", "probe0", "type", "vrf", "table", "5",
        ])
        .output()
        .is_ok_and(|output| output.status.success());
    if vrf_supported {
        ns.ip(&["link", "del", "probe0"]);
    }
    ns.ip(&["link", "add", "br4000", "type", "bridge"]);
    ns.ip(&["link", "set", "br4000", "up"]);
    ns.ip(&[
        "link",
        "add",
        "vx4000",
        "type",
        "vxlan",
        "id",
        "4000",
        "local",
        "10.0.0.1",
        "dstport",
        "4789",
        "nolearning",
    ]);
    ns.ip(&["link", "set", "vx4000", "master", "br4000"]);
    ns.ip(&["link", "set", "vx4000", "up"]);
    let task = OpTask::start(&ns);
    let prefix = |vrf: &str, prefix: &str| EvpnOp::InstallPrefix {
        vrf: vrf.into(),
        table: 1010,
        prefix: prefix.parse().unwrap(),
        vtep: ip("10.0.0.9"),
        router_mac: [0x02, 0, 0, 0xee, 0, 0x09],
        l3_bridge: "br4000".into(),
        l3_vxlan: "vx4000".into(),
    };
    task.send(prefix("vrf-blue", "198.51.100.0/24"));
    task.send(prefix("vrf-blue", "2001:db8:1::/48"));
    task.send(prefix("vrf-red", "203.0.113.0/24"));
    task.send(prefix("vrf-blue", "198.51.101.0/24"));
    let errors = task.errors_until_marker("nosuch2");
    if vrf_supported {
        eprintln!("this kernel has VRF support: the missing-VRF message is still tested");
    }
    assert_eq!(errors.len(), 2, "{errors:?}");
    assert!(
        errors[0].contains("VRF device vrf-blue does not exist"),
        "{}",
        errors[0]
    );
    assert!(errors[0].contains("no VRF support"), "{}", errors[0]);
    assert!(errors[0].contains("198.51.100.0/24"), "{}", errors[0]);
    assert!(
        errors[1].contains("VRF device vrf-red does not exist"),
        "{}",
        errors[1]
    );
    // Nothing was installed (table 1010 does not even exist).
    for family in ["-4", "-6"] {
        let routes = ns.ip(&[family, "route", "show", "table", "all"]);
        assert!(!routes.contains("table 1010"), "{routes}");
    }
    assert!(ns.ip(&["neigh", "show", "dev", "br4000"]).trim().is_empty());
    assert!(!ns
        .bridge(&["fdb", "show", "dev", "vx4000"])
        .contains("02:00:00:ee:00:09"));
    task.send(EvpnOp::RemovePrefix {
        vrf: "vrf-blue".into(),
        table: 1010,
        prefix: "198.51.100.0/24".parse().unwrap(),
    });
    assert_eq!(task.errors_until_marker("nosuch3"), Vec::<String>::new());
}

#[test]
fn local_macs_are_reported_as_learned_moved_and_forgotten() {
    if !is_root("local_macs_are_reported_as_learned_moved_and_forgotten") {
        return;
    }
    let ns = Namespace::create("macs");
    let peer = Namespace::create("macs-peer");
    segment_lab(&ns, &peer);
    let segment = L2Segment {
        vni: 100,
        vxlan: "vx100".into(),
        bridge: "br100".into(),
        local_vtep: ip("10.0.0.1"),
    };
    let (segments_tx, segments_rx) = watch::channel(vec![segment.clone()]);
    let (events_tx, events_rx) = std::sync::mpsc::channel();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let watched = segment.clone();
    let worker = ns.enter(move || {
        runtime().block_on(async move {
            let (tx, mut rx) = mpsc::unbounded_channel();
            let watcher = evpn_kernel::watch_local_macs(segments_rx, tx);
            let kernel = EvpnKernel::open().expect("rtnetlink");
            let forward = async {
                while let Some(event) = rx.recv().await {
                    let _ = events_tx.send(event);
                }
            };
            tokio::select! {
                _ = stopped => {}
                _ = forward => {}
            }
            // Dropping the receiver ends the watcher.
            drop(rx);
            tokio::time::timeout(Duration::from_secs(5), watcher)
                .await
                .expect("the watcher ends when its events channel closes")
                .expect("the watcher did not panic");
            kernel.local_macs(&watched).await.expect("local MACs")
        })
    });
    let next = || {
        events_rx
            .recv_timeout(Duration::from_secs(10))
            .expect("an event")
    };
    let learned = LocalMac::Learned {
        vni: 100,
        mac: PEER_MAC,
    };
    let gone = LocalMac::Gone {
        vni: 100,
        mac: PEER_MAC,
    };
    // Give the watcher its subscription before the frame (a missed event would show up in
    // its initial dump anyway).
    std::thread::sleep(Duration::from_millis(300));

    send_frame(&peer);
    assert_eq!(next(), learned);
    ns.bridge(&["fdb", "del", PEER_MAC_TEXT, "dev", "loc0", "master"]);
    assert_eq!(next(), gone);

    send_frame(&peer);
    assert_eq!(next(), learned);
    // Moved to the VXLAN port (as when EVPN learns it behind a remote VTEP).
    ns.bridge(&[
        "fdb",
        "replace",
        PEER_MAC_TEXT,
        "dev",
        "vx100",
        "master",
        "dynamic",
    ]);
    assert_eq!(next(), gone);
    ns.bridge(&["fdb", "del", PEER_MAC_TEXT, "dev", "vx100", "master"]);

    // `bridge fdb add ... master dynamic` on the local port, then config changes.
    ns.bridge(&[
        "fdb",
        "add",
        PEER_MAC_TEXT,
        "dev",
        "loc0",
        "master",
        "dynamic",
    ]);
    assert_eq!(next(), learned);
    segments_tx.send(Vec::new()).unwrap();
    assert_eq!(next(), gone);
    segments_tx.send(vec![segment]).unwrap();
    assert_eq!(next(), learned);
    // An EVPN (extern_learn) entry and the ports' own addresses are never local MACs.
    ns.bridge(&[
        "fdb",
        "add",
        REMOTE_MAC_TEXT,
        "dev",
        "vx100",
        "master",
        "extern_learn",
    ]);
    drop(stop);
    let macs = worker
        .join()
        .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
    assert_eq!(macs, vec![PEER_MAC]);
    assert!(
        events_rx.try_recv().is_err(),
        "no events beyond those expected"
    );
}
