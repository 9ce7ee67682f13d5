//! BGP system tests (issue 5): the `ztos-bgp` plugin under a real ztosd in network namespaces,
//! configured through ztosd like an operator would (its configuration and the `ztos` CLI),
//! against BIRD 2 (Debian `bird2`, installed here when missing; run as a plain process with its
//! own configuration and control socket in the node's directory), against a second ztos-bgp,
//! and against a raw TCP peer that sends a malformed UPDATE. Need root.
//!
//! Learned routes are checked where they matter: in the kernel (`ip route` in the namespace,
//! ztos-bgp's routes carry protocol 197) and in BIRD (`birdc show route`).

use std::fs;
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::path::PathBuf;
use std::time::Duration;

use ztos_tests::lab::{Lab, Node};
use ztos_tests::peers::{
    bgp_routes, ensure_packages, established, neighbor, no_dad, path, poll, start_ztos_bgp, stdout,
    ztos_json, Daemon,
};

// ---------------------------------------------------------------------------------------------
// BIRD 2

/// Installs Debian's bird2 when `bird` is not on the PATH, as the other system tests install
/// their tools.
fn ensure_bird() {
    ensure_packages(&["bird2"], &["bird", "birdc"]);
}

struct Bird {
    daemon: Daemon,
    socket: PathBuf,
    node: Node,
}

impl Bird {
    /// Writes `bird.conf` into the node's directory and runs `bird -f -c conf -s sock` in the
    /// node; returns once its control socket answers.
    fn start(node: &Node, config: &str) -> Bird {
        let conf = node.dir().join("bird.conf");
        fs::write(&conf, config).expect("writing bird.conf");
        let socket = node.dir().join("bird.ctl");
        let daemon = Daemon::spawn(
            node,
            "bird.log",
            &["bird", "-f", "-c", &path(&conf), "-s", &path(&socket)],
        );
        let mut bird = Bird {
            daemon,
            socket,
            node: node.clone(),
        };
        poll("bird's control socket", 10, || {
            assert!(bird.daemon.alive(), "bird exited at start");
            bird.birdc(&["show", "status"]).contains("Daemon is up")
        });
        bird
    }

    fn birdc(&self, args: &[&str]) -> String {
        let mut full = vec!["birdc", "-s"];
        let socket = path(&self.socket);
        full.push(&socket);
        full.extend_from_slice(args);
        stdout(&self.node.exec(&full))
    }

    /// Whether BGP protocol `name` is Established.
    fn established(&self, name: &str) -> bool {
        self.birdc(&["show", "protocols", name])
            .lines()
            .any(|l| l.starts_with(name) && l.contains("Established"))
    }
}

const BIRD_CONFIG: &str = r#"
router id 10.80.0.2;
log stderr all;

protocol device { scan time 1; }

# Routes learned over BGP go to the kernel (proto bird).
protocol kernel kernel4 { ipv4 { import none; export where source = RTS_BGP; }; }
protocol kernel kernel6 { ipv6 { import none; export where source = RTS_BGP; }; }

protocol static static4 { ipv4; route 198.51.100.0/24 blackhole; }
protocol static static6 { ipv6; route 2001:db8:b::/48 blackhole; }

template bgp ztos {
    local as 65002;
    hold time 9;
    keepalive time 3;
    connect delay time 1;
    connect retry time 2;
    error wait time 1, 4;
}

protocol bgp z4 from ztos {
    local 10.80.0.2;
    neighbor 10.80.0.1 as 65001;
    ipv4 { import all; export where proto = "static4"; };
}

protocol bgp z6 from ztos {
    local fd00:80::2;
    neighbor fd00:80::1 as 65001;
    ipv6 { import all; export where proto = "static6"; };
}
"#;

const ZTOS_VS_BIRD_CONFIG: &str = r#"
[[interfaces]]
name = "eth0"
addresses = ["10.80.0.1/24", "fd00:80::1/64"]

[bgp]
local_as = 65001
router_id = "10.80.0.1"
networks = ["192.0.2.0/24", "2001:db8:a::/48"]

[[bgp.neighbors]]
address = "10.80.0.2"
remote_as = 65002
description = "bird over IPv4"
hold_time = 9

[[bgp.neighbors]]
address = "fd00:80::2"
remote_as = 65002
description = "bird over IPv6"
families = ["ipv6-unicast"]
hold_time = 9
"#;

/// Both directions for both families: BIRD's static routes reach ztos-bgp's kernel table and
/// ztos-bgp's networks reach BIRD's (and BIRD's kernel table).
fn assert_exchanged(z: &Node, b: &Node, bird: &Bird) {
    poll("BIRD's IPv4 route in z's kernel", 30, || {
        bgp_routes(z, false).contains("198.51.100.0/24 via 10.80.0.2")
    });
    poll("BIRD's IPv6 route in z's kernel", 30, || {
        bgp_routes(z, true).contains("2001:db8:b::/48 via fd00:80::2")
    });
    poll("z's IPv4 network in BIRD", 30, || {
        bird.birdc(&["show", "route", "for", "192.0.2.0/24", "protocol", "z4"])
            .contains("192.0.2.0/24")
    });
    poll("z's IPv6 network in BIRD", 30, || {
        bird.birdc(&["show", "route", "for", "2001:db8:a::/48", "protocol", "z6"])
            .contains("2001:db8:a::/48")
    });
    poll("z's networks in b's kernel", 10, || {
        b.ip(&["-4", "route", "show", "192.0.2.0/24"])
            .contains("via 10.80.0.1")
            && b.ip(&["-6", "route", "show", "2001:db8:a::/48"])
                .contains("via fd00:80::1")
    });
}

#[test]
fn ztos_bgp_and_bird_exchange_ipv4_and_ipv6_routes_and_recover_from_restarts_of_both() {
    let Some(lab) = Lab::new_if_root("bgpbird") else {
        return;
    };
    ensure_bird();
    let (z, b) = (lab.node("z"), lab.node("b"));
    no_dad(&z);
    no_dad(&b);
    // z's end gets its addresses from ztosd's configuration.
    lab.link((&z, "eth0", None), (&b, "eth0", Some("10.80.0.2/24")));
    b.ip(&["-6", "address", "add", "fd00:80::2/64", "dev", "eth0"]);

    let daemon = z.start_ztosd(ZTOS_VS_BIRD_CONFIG);
    let mut ztos_bgp = start_ztos_bgp(&z);
    let mut bird = Bird::start(&b, BIRD_CONFIG);

    poll("both sessions established at z", 30, || {
        established(&daemon, "10.80.0.2") && established(&daemon, "fd00:80::2")
    });
    assert!(bird.established("z4") && bird.established("z6"));
    assert_exchanged(&z, &b, &bird);

    let v4 = neighbor(&daemon, "10.80.0.2");
    assert_eq!(v4["session"]["ebgp"], true, "{v4}");
    assert_eq!(v4["session"]["hold_time"], 9, "{v4}");
    assert_eq!(v4["prefixes_accepted"], 1, "{v4}");
    assert_eq!(v4["prefixes_advertised"], 1, "{v4}");
    let v6 = neighbor(&daemon, "fd00:80::2");
    assert_eq!(
        v6["session"]["families"],
        serde_json::json!(["ipv6-unicast"])
    );
    let routes = ztos_json(&daemon, &["bgp", "routes", "--family", "ipv6"]);
    let text = routes.to_string();
    assert!(
        text.contains("2001:db8:b::/48") && text.contains("2001:db8:a::/48"),
        "{routes}"
    );

    // BIRD goes away (SIGTERM: it closes its sessions): its routes leave z's kernel.
    bird.daemon.stop();
    poll("BIRD's routes withdrawn from z's kernel", 20, || {
        !bgp_routes(&z, false).contains("198.51.100.0/24")
            && !bgp_routes(&z, true).contains("2001:db8:b::/48")
    });
    assert!(!established(&daemon, "10.80.0.2"));

    // BIRD comes back: the sessions are re-established and everything is exchanged again.
    bird = Bird::start(&b, BIRD_CONFIG);
    poll("both sessions re-established at z", 30, || {
        established(&daemon, "10.80.0.2") && established(&daemon, "fd00:80::2")
    });
    assert_exchanged(&z, &b, &bird);
    assert_eq!(
        neighbor(&daemon, "10.80.0.2")["established_count"],
        2,
        "one session before the restart, one after"
    );

    // ztos-bgp crashes (no NOTIFICATION): it announced graceful restart with forwarding state
    // kept, so BIRD (a graceful restart helper by default) keeps z's routes, stale, and z's
    // kernel keeps BIRD's while the new ztos-bgp comes up; then both sides are fresh again.
    ztos_bgp.kill();
    poll("BIRD notices ztos-bgp is gone", 20, || {
        !bird.established("z4") && !bird.established("z6")
    });
    let stale = bird.birdc(&[
        "show",
        "route",
        "for",
        "192.0.2.0/24",
        "all",
        "protocol",
        "z4",
    ]);
    assert!(
        stale.contains("192.0.2.0/24"),
        "BIRD dropped z's route while ztos-bgp restarts: {stale}"
    );
    assert!(
        bgp_routes(&z, false).contains("198.51.100.0/24 via 10.80.0.2"),
        "BIRD's route left z's kernel while ztos-bgp restarts"
    );
    ztos_bgp = start_ztos_bgp(&z);
    poll(
        "both sessions back at z after ztos-bgp's restart",
        30,
        || established(&daemon, "10.80.0.2") && established(&daemon, "fd00:80::2"),
    );
    poll("BIRD's sessions back", 30, || {
        bird.established("z4") && bird.established("z6")
    });
    assert_exchanged(&z, &b, &bird);
    drop(ztos_bgp);
}

// ---------------------------------------------------------------------------------------------
// Two ZTOS nodes

const Z1_CONFIG: &str = r#"
[[interfaces]]
name = "eth0"
addresses = ["10.81.0.1/24"]

# A static route with the metric BGP routes use: still ztosd's, not ztos-bgp's.
[[routes]]
destination = "198.51.100.0/24"
gateway = "10.81.0.2"
metric = 20

[bgp]
local_as = 65011
router_id = "10.81.0.1"
networks = ["192.0.2.0/24"]

[[bgp.neighbors]]
address = "10.81.0.2"
remote_as = 65012
hold_time = 9
"#;

const Z2_CONFIG: &str = r#"
[[interfaces]]
name = "eth0"
addresses = ["10.81.0.2/24"]
"#;

#[test]
fn two_ztos_nodes_peer_over_ebgp_configured_with_network_configure() {
    let Some(lab) = Lab::new_if_root("bgpz2") else {
        return;
    };
    let (z1, z2) = (lab.node("z1"), lab.node("z2"));
    lab.link((&z1, "eth0", None), (&z2, "eth0", None));
    let d1 = z1.start_ztosd(Z1_CONFIG);
    let d2 = z2.start_ztosd(Z2_CONFIG);

    // A route left by an earlier ztos-bgp run (protocol 197): kept while the peers resend
    // their routes (graceful restart), swept once every neighbor has sent End-of-RIB.
    d1.wait_for("the static route", || {
        z1.ip(&["-4", "route", "show", "proto", "196"])
            .contains("198.51.100.0/24 via 10.81.0.2")
    });
    z1.ip(&[
        "route",
        "add",
        "203.0.113.0/24",
        "dev",
        "eth0",
        "proto",
        "197",
    ]);
    let _p1 = start_ztos_bgp(&z1);
    let _p2 = start_ztos_bgp(&z2);
    std::thread::sleep(std::time::Duration::from_secs(2));
    assert!(
        bgp_routes(&z1, false).contains("203.0.113.0/24"),
        "the previous run's route is kept until the neighbors have sent their routes"
    );

    // z2 is configured with the spec's command, as an operator would: [bgp] does not exist
    // yet, so it is created with --local-as.
    let out = d2.ztos(&[
        "network",
        "configure",
        "--bgp",
        "--peer",
        "10.81.0.1",
        "--as",
        "65011",
        "--local-as",
        "65012",
    ]);
    assert!(out.status.success(), "network configure: {out:?}");
    let out = d2.ztos(&["config", "set", "bgp.networks", r#"["192.0.2.128/25"]"#]);
    assert!(out.status.success(), "config set: {out:?}");
    let out = d2.ztos(&["config", "commit", "-m", "originate 192.0.2.128/25"]);
    assert!(out.status.success(), "config commit: {out:?}");

    poll("the eBGP session", 30, || {
        established(&d1, "10.81.0.2") && established(&d2, "10.81.0.1")
    });
    poll(
        "the stale protocol-197 route swept after End-of-RIB",
        20,
        || !bgp_routes(&z1, false).contains("203.0.113.0/24"),
    );
    poll("z1's network in z2's kernel", 20, || {
        bgp_routes(&z2, false).contains("192.0.2.0/24 via 10.81.0.1")
    });
    poll("z2's network in z1's kernel", 20, || {
        bgp_routes(&z1, false).contains("192.0.2.128/25 via 10.81.0.2")
    });
    let at_z2 = neighbor(&d2, "10.81.0.1");
    assert_eq!(at_z2["remote_as"], 65011, "{at_z2}");
    assert_eq!(at_z2["session"]["remote_router_id"], "10.81.0.1", "{at_z2}");
    // z2's router id came from its only address.
    let summary = ztos_json(&d2, &["bgp", "summary"]);
    assert_eq!(summary["local_as"], 65012, "{summary}");
    assert_eq!(summary["router_id"], "10.81.0.2", "{summary}");

    // Without --json the CLI prints tables.
    let out = d2.ztos(&["bgp", "summary"]);
    let text = stdout(&out);
    assert!(out.status.success(), "{out:?}");
    assert!(
        text.contains("BGP AS 65012, router id 10.81.0.2")
            && text
                .lines()
                .any(|l| l.starts_with("10.81.0.1") && l.contains("established")),
        "{text}"
    );
    let out = d2.ztos(&["bgp", "routes"]);
    assert!(
        stdout(&out)
            .lines()
            .any(|l| l.starts_with("*  192.0.2.0/24") && l.ends_with("65011")),
        "{out:?}"
    );

    // The route at z2 carries z1's AS in its path.
    let routes = ztos_json(&d2, &["bgp", "routes", "--prefix", "192.0.2.0/24"]);
    assert!(routes.to_string().contains("65011"), "{routes}");

    // ztos-bgp never removed ztosd's metric-20 static route.
    assert!(z1
        .ip(&["-4", "route", "show", "proto", "196"])
        .contains("198.51.100.0/24 via 10.81.0.2"));
    assert!(!bgp_routes(&z1, false).contains("198.51.100.0/24"));
}

// ---------------------------------------------------------------------------------------------
// A raw peer sending a malformed UPDATE

/// Runs `f` on a thread that has entered the node's network namespace; sockets it creates
/// live in that namespace (also after the thread ends).
fn in_namespace<T: Send + 'static>(node: &Node, f: impl FnOnce() -> T + Send + 'static) -> T {
    let netns = format!("/run/netns/{}", node.namespace());
    std::thread::spawn(move || {
        let file = fs::File::open(&netns).unwrap_or_else(|e| panic!("opening {netns}: {e}"));
        nix::sched::setns(&file, nix::sched::CloneFlags::CLONE_NEWNET)
            .unwrap_or_else(|e| panic!("entering {netns}: {e}"));
        f()
    })
    .join()
    .expect("the namespace thread panicked")
}

const MARKER: [u8; 16] = [0xff; 16];
const OPEN: u8 = 1;
const UPDATE: u8 = 2;
const NOTIFICATION: u8 = 3;
const KEEPALIVE: u8 = 4;

fn message(kind: u8, body: &[u8]) -> Vec<u8> {
    let mut bytes = MARKER.to_vec();
    bytes.extend_from_slice(&(19 + body.len() as u16).to_be_bytes());
    bytes.push(kind);
    bytes.extend_from_slice(body);
    bytes
}

/// OPEN: version 4, AS 65020, hold time 30, identifier 10.82.0.2, capabilities multiprotocol
/// IPv4 unicast and four-octet AS 65020.
fn raw_open() -> Vec<u8> {
    message(
        OPEN,
        &[
            4, 0xfd, 0xfc, 0, 30, 10, 82, 0, 2, 16, // version, AS, hold, id, params length
            2, 6, 1, 4, 0, 1, 0, 1, // capability: multiprotocol AFI 1 SAFI 1
            2, 6, 65, 4, 0, 0, 0xfd, 0xfc, // capability: four-octet AS 65020
        ],
    )
}

/// UPDATE for `prefix`/24 with ORIGIN `origin`, AS_PATH [65020] (four-octet) and NEXT_HOP
/// 10.82.0.2.
fn raw_update(origin: u8, prefix: [u8; 3]) -> Vec<u8> {
    let attributes = [
        0x40, 1, 1, origin, // ORIGIN
        0x40, 2, 6, 2, 1, 0, 0, 0xfd, 0xfc, // AS_PATH: AS_SEQUENCE [65020]
        0x40, 3, 4, 10, 82, 0, 2, // NEXT_HOP
    ];
    let mut body = vec![0, 0, 0, attributes.len() as u8];
    body.extend_from_slice(&attributes);
    body.push(24);
    body.extend_from_slice(&prefix);
    message(UPDATE, &body)
}

/// Reads one message: (type, body). `None` on timeout or a closed connection.
fn read_message(stream: &mut TcpStream) -> Option<(u8, Vec<u8>)> {
    let mut header = [0u8; 19];
    stream.read_exact(&mut header).ok()?;
    assert_eq!(header[..16], MARKER, "bad marker from ztos-bgp");
    let length = u16::from_be_bytes([header[16], header[17]]) as usize;
    assert!((19..=65535).contains(&length), "bad length {length}");
    let mut body = vec![0u8; length - 19];
    stream.read_exact(&mut body).ok()?;
    Some((header[18], body))
}

#[test]
fn malformed_update_is_treated_as_withdraw_and_the_session_stays_up() {
    let Some(lab) = Lab::new_if_root("bgpraw") else {
        return;
    };
    let (z, p) = (lab.node("z"), lab.node("p"));
    lab.link(
        (&z, "eth0", Some("10.82.0.1/24")),
        (&p, "eth0", Some("10.82.0.2/24")),
    );
    let daemon = z.start_ztosd(
        r#"
[bgp]
local_as = 65001
router_id = "10.82.0.1"

[[bgp.neighbors]]
address = "10.82.0.2"
remote_as = 65020
passive = true
"#,
    );
    let _ztos_bgp = start_ztos_bgp(&z);

    // Connect from p once ztos-bgp listens.
    let target: SocketAddr = "10.82.0.1:179".parse().unwrap();
    let mut stream = None;
    poll("ztos-bgp listening on 179", 20, || {
        stream = in_namespace(&p, move || {
            TcpStream::connect_timeout(&target, Duration::from_secs(1)).ok()
        });
        stream.is_some()
    });
    let mut stream = stream.expect("connected");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    stream.write_all(&raw_open()).unwrap();
    let (kind, body) = read_message(&mut stream).expect("ztos-bgp's OPEN");
    assert_eq!(kind, OPEN, "expected OPEN, got type {kind}: {body:?}");
    stream.write_all(&message(KEEPALIVE, &[])).unwrap();
    let (kind, body) = read_message(&mut stream).expect("ztos-bgp's KEEPALIVE");
    assert_eq!(
        kind, KEEPALIVE,
        "expected KEEPALIVE, got type {kind}: {body:?}"
    );
    poll("the session established at z", 10, || {
        established(&daemon, "10.82.0.2")
    });

    // ORIGIN 5 is not a valid value: RFC 7606 §7.1, treat-as-withdraw. Then a good UPDATE.
    stream.write_all(&raw_update(5, [198, 18, 1])).unwrap();
    stream.write_all(&raw_update(0, [198, 18, 2])).unwrap();
    poll("the good route in z's kernel", 10, || {
        bgp_routes(&z, false).contains("198.18.2.0/24 via 10.82.0.2")
    });
    assert!(
        !bgp_routes(&z, false).contains("198.18.1.0/24"),
        "the malformed UPDATE's route must not be installed"
    );
    let n = neighbor(&daemon, "10.82.0.2");
    assert_eq!(n["state"], "established", "{n}");
    assert_eq!(
        n["established_count"], 1,
        "the session was never reset: {n}"
    );
    assert_eq!(n["prefixes_accepted"], 1, "{n}");

    // Nothing but UPDATEs (End-of-RIB) and KEEPALIVEs came back: no NOTIFICATION.
    stream.write_all(&message(KEEPALIVE, &[])).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    while let Some((kind, body)) = read_message(&mut stream) {
        assert_ne!(kind, NOTIFICATION, "ztos-bgp sent a NOTIFICATION: {body:?}");
        assert!(
            kind == UPDATE || kind == KEEPALIVE,
            "unexpected type {kind}"
        );
    }
    let _ = stream.shutdown(Shutdown::Both);
}
