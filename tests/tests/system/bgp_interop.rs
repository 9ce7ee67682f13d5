//! BGP interop system tests (issue 5): ztos-bgp under a real ztosd in network namespaces
//! against the daemons Debian ships, FRR 8.4 (zebra + bgpd) and GoBGP 3.10 (gobgpd), each
//! installed when missing and run as plain processes in a node with their configuration and
//! sockets in the node's directory (`ztos_tests::peers`). Need root.
//!
//! - Unicast: IPv4 and IPv6 both ways (the peer's routes in the node's kernel with ztos-bgp's
//!   protocol 197; ztos's networks in the peer's RIB), and the sessions come back after the
//!   peer is killed and restarted and after ztos-bgp is killed and restarted.
//! - Graceful restart (RFC 4724) with FRR: routes of a restarting FRR stay in the kernel
//!   through its restart and go when it stays away past its restart time; FRR keeps ztos's
//!   routes (stale) through a ztos-bgp restart.
//! - EVPN with FRR: an FRR leaf (`advertise-all-vni`) and a ZTOS leaf stretch VNI 100; each
//!   installs the other's MACs and flood entries on its VXLAN device and the hosts behind the
//!   leaves ping each other.
//! - EVPN with GoBGP: types 2, 3 and 5 from GoBGP arrive (type 2/3 in the kernel's FDB, a route
//!   target of another VNI not imported), ztos-bgp's type 3 and type 2 arrive at GoBGP with the
//!   attributes RFC 8365 asks for.

use serde_json::Value;
use ztos_tests::lab::{Lab, Node, ZtosdHandle};
use ztos_tests::peers::{
    bgp_routes, established, fdb, neighbor, no_dad, poll, start_ztos_bgp, ztos_json, Frr, Gobgp,
};

/// ztosd's configuration for the unicast tests: `eth0` with 10.<net>.0.1/24 and
/// fd00:<net>::1/64, AS 65001 originating 192.0.2.0/24 and 2001:db8:a::/48 to 10.<net>.0.2
/// (IPv4 unicast) and fd00:<net>::2 (IPv6 unicast) in AS 65002.
fn ztos_unicast_config(net: u8) -> String {
    format!(
        r#"
[[interfaces]]
name = "eth0"
addresses = ["10.{net}.0.1/24", "fd00:{net}::1/64"]

[bgp]
local_as = 65001
router_id = "10.{net}.0.1"
networks = ["192.0.2.0/24", "2001:db8:a::/48"]

[[bgp.neighbors]]
address = "10.{net}.0.2"
remote_as = 65002
hold_time = 9

[[bgp.neighbors]]
address = "fd00:{net}::2"
remote_as = 65002
families = ["ipv6-unicast"]
hold_time = 9
"#
    )
}

/// Two nodes `z` (ztosd; addresses from its configuration) and `p` (the peer: 10.<net>.0.2/24,
/// fd00:<net>::2/64) joined by `eth0`.
fn unicast_lab(lab: &Lab, net: u8) -> (Node, Node) {
    let (z, p) = (lab.node("z"), lab.node("p"));
    no_dad(&z);
    no_dad(&p);
    let v4 = format!("10.{net}.0.2/24");
    lab.link((&z, "eth0", None), (&p, "eth0", Some(&v4)));
    p.ip(&[
        "-6",
        "address",
        "add",
        &format!("fd00:{net}::2/64"),
        "dev",
        "eth0",
    ]);
    (z, p)
}

/// The peer's 198.51.100.0/24 and 2001:db8:b::/48 in z's kernel with protocol 197, via the
/// peer's addresses.
fn assert_peer_routes_in_kernel(z: &Node, net: u8) {
    poll("the peer's IPv4 route in z's kernel", 30, || {
        bgp_routes(z, false).contains(&format!("198.51.100.0/24 via 10.{net}.0.2"))
    });
    poll("the peer's IPv6 route in z's kernel", 30, || {
        bgp_routes(z, true).contains(&format!("2001:db8:b::/48 via fd00:{net}::2"))
    });
}

/// ztos-bgp's view of both sessions: established, one prefix each way.
fn assert_ztos_sessions(daemon: &ZtosdHandle, net: u8) {
    let v4 = format!("10.{net}.0.2");
    let v6 = format!("fd00:{net}::2");
    poll("both sessions established at z", 30, || {
        established(daemon, &v4) && established(daemon, &v6)
    });
    for address in [&v4, &v6] {
        poll("one prefix each way", 20, || {
            let n = neighbor(daemon, address);
            n["prefixes_accepted"] == 1 && n["prefixes_advertised"] == 1
        });
    }
}

// ---------------------------------------------------------------------------------------------
// FRR, unicast

fn frr_unicast_bgpd_config(net: u8) -> String {
    format!(
        r#"
router bgp 65002
 bgp router-id 10.{net}.0.2
 no bgp ebgp-requires-policy
 no bgp network import-check
 no bgp default ipv4-unicast
 timers bgp 3 9
 neighbor 10.{net}.0.1 remote-as 65001
 neighbor 10.{net}.0.1 timers connect 1
 neighbor fd00:{net}::1 remote-as 65001
 neighbor fd00:{net}::1 timers connect 1
 address-family ipv4 unicast
  network 198.51.100.0/24
  neighbor 10.{net}.0.1 activate
 exit-address-family
 address-family ipv6 unicast
  network 2001:db8:b::/48
  neighbor fd00:{net}::1 activate
 exit-address-family
"#
    )
}

/// ztos's networks in FRR's RIB (`show bgp ... json`) and, through zebra, in p's kernel.
fn assert_ztos_routes_in_frr(frr: &Frr, net: u8) {
    poll("z's IPv4 network in FRR's RIB", 30, || {
        frr.json("show bgp ipv4 unicast json")["routes"]["192.0.2.0/24"].is_array()
    });
    poll("z's IPv6 network in FRR's RIB", 30, || {
        frr.json("show bgp ipv6 unicast json")["routes"]["2001:db8:a::/48"].is_array()
    });
    let path = &frr.json("show bgp ipv4 unicast json")["routes"]["192.0.2.0/24"][0];
    assert_eq!(path["valid"], true, "{path}");
    assert_eq!(path["path"], "65001", "{path}");
    assert_eq!(path["nexthops"][0]["ip"], format!("10.{net}.0.1"), "{path}");
    poll("z's networks in p's kernel (FRR's zebra)", 20, || {
        frr.node()
            .ip(&["-4", "route", "show", "192.0.2.0/24"])
            .contains(&format!("via 10.{net}.0.1"))
            && frr
                .node()
                .ip(&["-6", "route", "show", "2001:db8:a::/48"])
                .contains("via ")
    });
}

#[test]
fn frr_exchanges_ipv4_and_ipv6_unicast_and_sessions_survive_restarts_of_both_sides() {
    let Some(lab) = Lab::new_if_root("bgpfrr") else {
        return;
    };
    const NET: u8 = 90;
    let (z, p) = unicast_lab(&lab, NET);
    let daemon = z.start_ztosd(&ztos_unicast_config(NET));
    let mut ztos_bgp = start_ztos_bgp(&z);
    let mut frr = Frr::start(&p, "", &frr_unicast_bgpd_config(NET));
    let (v4, v6) = (format!("10.{NET}.0.1"), format!("fd00:{NET}::1"));

    assert_ztos_sessions(&daemon, NET);
    assert!(frr.established(&v4) && frr.established(&v6));
    assert_peer_routes_in_kernel(&z, NET);
    assert_ztos_routes_in_frr(&frr, NET);
    let routes = ztos_json(&daemon, &["bgp", "routes", "--family", "ipv4"]).to_string();
    assert!(
        routes.contains("198.51.100.0/24") && routes.contains("65002"),
        "{routes}"
    );

    // FRR's bgpd crashes: the sessions drop and its routes leave z's kernel. FRR runs in its
    // default graceful restart mode here, helper only ("Helper*"): its capability lists no
    // address family, so RFC 4724 §4.2 keeps nothing as stale.
    frr.kill_bgpd();
    poll("FRR's routes withdrawn from z's kernel", 20, || {
        !bgp_routes(&z, false).contains("198.51.100.0/24")
            && !bgp_routes(&z, true).contains("2001:db8:b::/48")
    });
    assert!(!established(&daemon, &format!("10.{NET}.0.2")));
    // ... and comes back: everything is exchanged again.
    frr.start_bgpd();
    assert_ztos_sessions(&daemon, NET);
    assert_peer_routes_in_kernel(&z, NET);
    assert_ztos_routes_in_frr(&frr, NET);

    // ztos-bgp crashes: FRR sees the sessions go; a new ztos-bgp brings them back.
    ztos_bgp.kill();
    poll("FRR notices ztos-bgp is gone", 20, || {
        !frr.established(&v4) && !frr.established(&v6)
    });
    ztos_bgp = start_ztos_bgp(&z);
    assert_ztos_sessions(&daemon, NET);
    poll("FRR's sessions back", 30, || {
        frr.established(&v4) && frr.established(&v6)
    });
    assert_peer_routes_in_kernel(&z, NET);
    assert_ztos_routes_in_frr(&frr, NET);
    let counts =
        frr.json(&format!("show bgp neighbors {v4} json"))[&v4]["connectionsEstablished"].clone();
    assert_eq!(counts, 2, "FRR's second bgpd saw ztos-bgp's restart");
    drop(ztos_bgp);
}

/// FRR as a restarting speaker (RFC 4724): graceful restart with forwarding state preserved
/// for both families, a 10 s restart time.
fn frr_graceful_restart_bgpd_config(net: u8) -> String {
    frr_unicast_bgpd_config(net).replacen(
        " timers bgp 3 9\n",
        " timers bgp 3 9\n bgp graceful-restart\n bgp graceful-restart preserve-fw-state\n bgp graceful-restart restart-time 10\n",
        1,
    )
}

#[test]
fn ztos_bgp_keeps_frrs_routes_through_a_graceful_restart_and_drops_them_when_frr_stays_away() {
    let Some(lab) = Lab::new_if_root("bgpfrrgr") else {
        return;
    };
    const NET: u8 = 93;
    let (z, p) = unicast_lab(&lab, NET);
    let daemon = z.start_ztosd(&ztos_unicast_config(NET));
    let mut ztos_bgp = start_ztos_bgp(&z);
    let mut frr = Frr::start(&p, "", &frr_graceful_restart_bgpd_config(NET));
    assert_ztos_sessions(&daemon, NET);
    assert_peer_routes_in_kernel(&z, NET);
    let peer = format!("10.{NET}.0.2");
    let both_routes = || {
        bgp_routes(&z, false).contains("198.51.100.0/24")
            && bgp_routes(&z, true).contains("2001:db8:b::/48")
    };

    // bgpd crashes (no NOTIFICATION) and restarts within its restart time: its routes stay in
    // z's kernel the whole time, also after the new session's End-of-RIB.
    frr.kill_bgpd();
    poll("z notices the session is gone", 20, || {
        !established(&daemon, &peer)
    });
    for _ in 0..10 {
        assert!(
            both_routes(),
            "FRR's routes left z's kernel during the restart"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    frr.start_bgpd();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while !(established(&daemon, &peer) && frr.established(&format!("10.{NET}.0.1"))) {
        assert!(
            both_routes(),
            "FRR's routes left z's kernel during the restart"
        );
        assert!(
            std::time::Instant::now() < deadline,
            "the session did not come back"
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    assert_ztos_sessions(&daemon, NET);
    // Past FRR's End-of-RIB and ztos-bgp's stale-path sweep: still there.
    std::thread::sleep(std::time::Duration::from_secs(3));
    assert_peer_routes_in_kernel(&z, NET);
    assert_ztos_routes_in_frr(&frr, NET);

    // ztos-bgp crashes: it advertised graceful restart with forwarding preserved, so FRR keeps
    // z's routes (stale) and z's kernel keeps FRR's until the new ztos-bgp has them again.
    let v4 = format!("10.{NET}.0.1");
    let frr_path =
        |frr: &Frr| frr.json("show bgp ipv4 unicast json")["routes"]["192.0.2.0/24"][0].clone();
    ztos_bgp.kill();
    poll("FRR notices ztos-bgp is gone", 20, || !frr.established(&v4));
    let path = frr_path(&frr);
    assert_eq!(path["stale"], true, "FRR keeps z's route as stale: {path}");
    assert!(
        p.ip(&["-4", "route", "show", "192.0.2.0/24"])
            .contains("via"),
        "z's route left p's kernel while ztos-bgp restarts"
    );
    assert!(
        both_routes(),
        "z's kernel lost FRR's routes when ztos-bgp died"
    );
    ztos_bgp = start_ztos_bgp(&z);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while !(established(&daemon, &peer) && frr.established(&v4)) {
        assert!(
            both_routes(),
            "FRR's routes left z's kernel while ztos-bgp restarted"
        );
        assert!(
            frr_path(&frr).is_object(),
            "FRR dropped z's route while ztos-bgp restarted"
        );
        assert!(
            std::time::Instant::now() < deadline,
            "the session did not come back after ztos-bgp's restart"
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    poll("z's route fresh again at FRR (End-of-RIB)", 20, || {
        let path = frr_path(&frr);
        path.is_object() && path["stale"] != true
    });
    assert_ztos_sessions(&daemon, NET);
    assert_peer_routes_in_kernel(&z, NET);

    // bgpd crashes and stays away: the stale routes go once the restart time (10 s) is over.
    frr.kill_bgpd();
    poll("z notices the session is gone", 20, || {
        !established(&daemon, &peer)
    });
    assert!(both_routes(), "kept while FRR may still come back");
    poll(
        "FRR's stale routes removed after its restart time",
        25,
        || {
            !bgp_routes(&z, false).contains("198.51.100.0/24")
                && !bgp_routes(&z, true).contains("2001:db8:b::/48")
        },
    );
    drop(ztos_bgp);
}

// ---------------------------------------------------------------------------------------------
// GoBGP, unicast

fn gobgp_neighbor(address: &str, families: &[&str]) -> String {
    let mut text = format!(
        r#"
[[neighbors]]
  [neighbors.config]
    neighbor-address = "{address}"
    peer-as = 65001
  [neighbors.timers.config]
    connect-retry = 1
    hold-time = 9
    keepalive-interval = 3
    idle-hold-time-after-reset = 1
"#
    );
    for family in families {
        text.push_str(&format!(
            "  [[neighbors.afi-safis]]\n    [neighbors.afi-safis.config]\n      afi-safi-name = \"{family}\"\n"
        ));
    }
    text
}

fn gobgp_global(router_id: &str) -> String {
    format!("[global.config]\n  as = 65002\n  router-id = \"{router_id}\"\n")
}

/// GoBGP originates 198.51.100.0/24 and 2001:db8:b::/48 (its next hop: itself, eBGP).
fn gobgp_originate(gobgp: &Gobgp) {
    gobgp.cli(&["global", "rib", "-a", "ipv4", "add", "198.51.100.0/24"]);
    gobgp.cli(&["global", "rib", "-a", "ipv6", "add", "2001:db8:b::/48"]);
}

/// ztos's networks in GoBGP's RIB, learned from z.
fn assert_ztos_routes_in_gobgp(gobgp: &Gobgp, net: u8) {
    poll("z's IPv4 network in GoBGP's RIB", 30, || {
        gobgp.json(&["global", "rib", "-a", "ipv4"])["192.0.2.0/24"].is_array()
    });
    poll("z's IPv6 network in GoBGP's RIB", 30, || {
        gobgp.json(&["global", "rib", "-a", "ipv6"])["2001:db8:a::/48"].is_array()
    });
    let paths = gobgp.json(&["global", "rib", "-a", "ipv4"])["192.0.2.0/24"].clone();
    let text = paths.to_string();
    assert!(
        text.contains(&format!("\"nexthop\":\"10.{net}.0.1\"")) && text.contains("65001"),
        "{paths}"
    );
}

#[test]
fn gobgp_exchanges_ipv4_and_ipv6_unicast_and_sessions_survive_restarts_of_both_sides() {
    let Some(lab) = Lab::new_if_root("bgpgo") else {
        return;
    };
    const NET: u8 = 91;
    let (z, p) = unicast_lab(&lab, NET);
    let daemon = z.start_ztosd(&ztos_unicast_config(NET));
    let mut ztos_bgp = start_ztos_bgp(&z);
    let (v4, v6) = (format!("10.{NET}.0.1"), format!("fd00:{NET}::1"));
    let config = format!(
        "{}{}{}",
        gobgp_global(&format!("10.{NET}.0.2")),
        gobgp_neighbor(&v4, &["ipv4-unicast"]),
        gobgp_neighbor(&v6, &["ipv6-unicast"])
    );
    let mut gobgp = Gobgp::start(&p, &config);
    gobgp_originate(&gobgp);

    assert_ztos_sessions(&daemon, NET);
    assert!(gobgp.established(&v4) && gobgp.established(&v6));
    assert_peer_routes_in_kernel(&z, NET);
    assert_ztos_routes_in_gobgp(&gobgp, NET);

    // gobgpd crashes and comes back (its CLI-added routes with it, as an operator re-adds them).
    gobgp.kill();
    poll("GoBGP's routes withdrawn from z's kernel", 20, || {
        !bgp_routes(&z, false).contains("198.51.100.0/24")
            && !bgp_routes(&z, true).contains("2001:db8:b::/48")
    });
    gobgp.restart();
    gobgp_originate(&gobgp);
    assert_ztos_sessions(&daemon, NET);
    assert_peer_routes_in_kernel(&z, NET);
    assert_ztos_routes_in_gobgp(&gobgp, NET);

    // ztos-bgp crashes and comes back.
    ztos_bgp.kill();
    poll("GoBGP notices ztos-bgp is gone", 20, || {
        !gobgp.established(&v4) && !gobgp.established(&v6)
    });
    ztos_bgp = start_ztos_bgp(&z);
    assert_ztos_sessions(&daemon, NET);
    poll("GoBGP's sessions back", 30, || {
        gobgp.established(&v4) && gobgp.established(&v6)
    });
    assert_peer_routes_in_kernel(&z, NET);
    assert_ztos_routes_in_gobgp(&gobgp, NET);
    drop(ztos_bgp);
}

// ---------------------------------------------------------------------------------------------
// EVPN

/// The MAC address of `device` in the node (`link/ether ...`).
fn mac_of(node: &Node, device: &str) -> String {
    let text = node.ip(&["link", "show", device]);
    text.split_whitespace()
        .skip_while(|w| *w != "link/ether")
        .nth(1)
        .unwrap_or_else(|| panic!("no MAC on {device} in {}: {text}", node.name()))
        .to_string()
}

/// One ping from `from` to `to`, waiting at most a second.
fn pings(from: &Node, to: &str) -> bool {
    from.exec(&["ping", "-c", "1", "-W", "1", to])
        .status
        .success()
}

/// The route of `route_type` in ztos-bgp's EVPN routes (`ztos bgp routes --family evpn`)
/// whose `route` object has `key` == `value`, if there is one.
fn ztos_evpn_route(daemon: &ZtosdHandle, route_type: u64, key: &str, value: &str) -> Option<Value> {
    ztos_json(daemon, &["bgp", "routes", "--family", "evpn"])["routes"]
        .as_array()?
        .iter()
        .find(|r| r["route_type"] == route_type && r["route"][key] == value)
        .cloned()
}

/// The best path of a route in ztos-bgp's JSON.
fn best_path(route: &Value) -> Value {
    route["paths"]
        .as_array()
        .and_then(|paths| paths.iter().find(|p| p["best"] == true))
        .cloned()
        .unwrap_or(Value::Null)
}

/// Whether a path's extended communities (as ztos prints them, `rt 65002:100`) hold `text`.
fn has_community(path: &Value, text: &str) -> bool {
    path["extended_communities"]
        .as_array()
        .is_some_and(|c| c.iter().any(|c| c == text))
}

/// ZTOS leaf configuration: underlay `underlay` with `vtep`/24, bridge br100 with host port
/// `host_port`, VNI 100 on it without a static flood list, one EVPN neighbor.
fn ztos_evpn_config(
    underlay: &str,
    vtep: &str,
    host_port: &str,
    peer: &str,
    families: &str,
) -> String {
    format!(
        r#"
[[interfaces]]
name = "{underlay}"
addresses = ["{vtep}/24"]

[[bridges]]
name = "br100"
ports = ["{host_port}"]

[[vxlan]]
vni = 100
local_vtep = "{vtep}"
bridge = "br100"
underlay_interface = "{underlay}"

[bgp]
local_as = 65001
router_id = "{vtep}"

[[bgp.neighbors]]
address = "{peer}"
remote_as = 65002
families = {families}
hold_time = 9
"#
    )
}

/// FRR's leaf: AS 65002, every local VNI advertised, VNI 100 importing ZTOS's route target
/// (ZTOS exports AS:VNI with its own AS, FRR's automatic import uses FRR's AS).
const FRR_EVPN_BGPD_CONFIG: &str = r#"
router bgp 65002
 bgp router-id 10.0.0.1
 no bgp ebgp-requires-policy
 no bgp default ipv4-unicast
 timers bgp 3 9
 neighbor 10.0.0.2 remote-as 65001
 neighbor 10.0.0.2 timers connect 1
 address-family l2vpn evpn
  neighbor 10.0.0.2 activate
  advertise-all-vni
  vni 100
   route-target import 65001:100
  exit-vni
 exit-address-family
"#;

#[test]
fn frr_and_ztos_leaves_stretch_vni_100_over_evpn_and_their_hosts_ping() {
    let Some(lab) = Lab::new_if_root("evpnfrr") else {
        return;
    };
    let topology = lab.two_leaf_topology();
    let (leaf1, leaf2, h1, h2) = (&topology.leaf1, &topology.leaf2, &topology.h1, &topology.h2);
    // leaf1 is FRR's: the operator builds the bridge and VXLAN device zebra finds.
    for args in [
        &["address", "add", "10.0.0.1/24", "dev", "eth1"][..],
        &["link", "add", "br100", "type", "bridge"],
        &[
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
        ],
        &["link", "set", "vx100", "master", "br100"],
        &["link", "set", "veth-h1", "master", "br100"],
        &["link", "set", "vx100", "up"],
        &["link", "set", "br100", "up"],
    ] {
        leaf1.ip(args);
    }
    let daemon = leaf2.start_ztosd(&ztos_evpn_config(
        "eth1",
        "10.0.0.2",
        "veth-h2",
        "10.0.0.1",
        r#"["l2vpn-evpn"]"#,
    ));
    let mut ztos_bgp = start_ztos_bgp(leaf2);
    let frr = Frr::start(leaf1, "", FRR_EVPN_BGPD_CONFIG);

    poll("the EVPN session at leaf2", 30, || {
        established(&daemon, "10.0.0.1")
    });
    poll("the EVPN session at FRR", 10, || {
        frr.established("10.0.0.2")
    });
    let families = neighbor(&daemon, "10.0.0.1")["session"]["families"].clone();
    assert!(
        families.to_string().contains("l2vpn-evpn"),
        "EVPN not negotiated: {families}"
    );

    // Type 3 both ways: each side floods BUM traffic to the other's VTEP.
    poll("FRR's flood entry at leaf2 (from FRR's type 3)", 30, || {
        fdb(leaf2, "vx100").contains("00:00:00:00:00:00 dst 10.0.0.1")
    });
    poll("leaf2's flood entry at FRR (from our type 3)", 30, || {
        fdb(leaf1, "vx100").contains("00:00:00:00:00:00 dst 10.0.0.2")
    });
    let vni = frr.json("show evpn vni 100 json");
    assert!(
        vni.to_string().contains("10.0.0.2"),
        "FRR's VNI 100 has no remote VTEP 10.0.0.2: {vni}"
    );

    // The hosts talk; their MACs are learned locally and travel as type 2 routes.
    poll("h2 pings h1 over VNI 100", 30, || {
        pings(h2, "192.168.100.1")
    });
    let (mac1, mac2) = (mac_of(h1, "eth0"), mac_of(h2, "eth0"));
    poll("h1's MAC at leaf2 (from FRR's type 2)", 30, || {
        fdb(leaf2, "vx100").contains(&format!("{mac1} dst 10.0.0.1"))
    });
    poll("h2's MAC at FRR (from our type 2)", 30, || {
        fdb(leaf1, "vx100").contains(&format!("{mac2} dst 10.0.0.2"))
    });
    let macs = frr.json("show evpn mac vni 100 json");
    let remote = &macs["macs"][&mac2];
    assert_eq!(remote["type"], "remote", "{macs}");
    assert_eq!(remote["remoteVtep"], "10.0.0.2", "{macs}");
    let type2 = ztos_evpn_route(&daemon, 2, "mac", &mac1).expect("FRR's type 2 for h1");
    let path = best_path(&type2);
    assert_eq!(path["next_hop"], "10.0.0.1", "{type2}");
    assert_eq!(path["vni"], 100, "{type2}");
    assert!(has_community(&path, "rt 65002:100"), "{type2}");
    let ours = ztos_evpn_route(&daemon, 2, "mac", &mac2).expect("our type 2 for h2");
    assert_eq!(best_path(&ours)["from"], "local", "{ours}");
    let type3 = ztos_evpn_route(&daemon, 3, "originator", "10.0.0.1").expect("FRR's type 3");
    let pmsi = &best_path(&type3)["pmsi_tunnel"];
    assert_eq!(pmsi["tunnel"]["endpoint"], "10.0.0.1", "{type3}");
    assert_eq!(
        pmsi["tunnel"]["tunnel_type"], "ingress_replication",
        "{type3}"
    );
    assert!(pings(h1, "192.168.100.2"), "h1 cannot ping h2");

    // ztos-bgp crashes and a new one starts: the MAC and flood entries are there again (kept
    // or rebuilt from the new session) and the hosts still reach each other.
    ztos_bgp.kill();
    poll("FRR notices ztos-bgp is gone", 20, || {
        !frr.established("10.0.0.2")
    });
    let established_before =
        frr.json("show bgp neighbors 10.0.0.2 json")["10.0.0.2"]["connectionsEstablished"].clone();
    ztos_bgp = start_ztos_bgp(leaf2);
    poll("the EVPN session back at leaf2", 30, || {
        established(&daemon, "10.0.0.1")
    });
    poll("the EVPN session back at FRR", 10, || {
        frr.established("10.0.0.2")
    });
    assert_eq!(
        frr.json("show bgp neighbors 10.0.0.2 json")["10.0.0.2"]["connectionsEstablished"],
        established_before.as_u64().map_or(0, |n| n + 1),
        "a new session after the restart"
    );
    poll("FRR's MAC and flood entries back at leaf2", 30, || {
        let entries = fdb(leaf2, "vx100");
        entries.contains(&format!("{mac1} dst 10.0.0.1"))
            && entries.contains("00:00:00:00:00:00 dst 10.0.0.1")
    });
    poll("our type 2 and type 3 back at FRR", 30, || {
        let entries = fdb(leaf1, "vx100");
        entries.contains(&format!("{mac2} dst 10.0.0.2"))
            && entries.contains("00:00:00:00:00:00 dst 10.0.0.2")
    });
    poll("h1 pings h2 after the restart", 20, || {
        pings(h1, "192.168.100.2")
    });
    drop(ztos_bgp);
}

/// GoBGP's side of the EVPN test: AS 65002, VTEP 10.92.0.2.
const GOBGP_VTEP: &str = "10.92.0.2";
const ZTOS_VTEP: &str = "10.92.0.1";
const GOBGP_MAC: &str = "02:00:5e:00:00:aa";
const FOREIGN_MAC: &str = "02:00:5e:00:00:cc";

/// Types 2, 3 and 5 from GoBGP for VNI 100 (route target 65002:100), and a type 2 for VNI 100
/// whose route target names VNI 200: not ours to import.
fn gobgp_evpn_routes(gobgp: &Gobgp, verb: &str) {
    let rd = format!("{GOBGP_VTEP}:100");
    let common = ["etag", "0", "rd", &rd];
    let add = |route: &[&str], rt: &str, extra: &[&str]| {
        let mut args = vec!["global", "rib", "-a", "evpn", verb];
        args.extend_from_slice(route);
        args.extend_from_slice(&common);
        args.extend_from_slice(&["rt", rt, "encap", "vxlan"]);
        args.extend_from_slice(extra);
        args.extend_from_slice(&["nexthop", GOBGP_VTEP]);
        gobgp.cli(&args);
    };
    add(
        &["macadv", GOBGP_MAC, "0.0.0.0", "label", "100"],
        "65002:100",
        &[],
    );
    add(
        &["macadv", FOREIGN_MAC, "0.0.0.0", "label", "100"],
        "65002:200",
        &[],
    );
    add(
        &["multicast", GOBGP_VTEP],
        "65002:100",
        &["pmsi", "ingress-repl", "100", GOBGP_VTEP],
    );
    let rd5 = format!("{GOBGP_VTEP}:5000");
    let mut args = vec![
        "global",
        "rib",
        "-a",
        "evpn",
        verb,
        "prefix",
        "203.0.113.0/24",
        "gw",
        "0.0.0.0",
        "etag",
        "0",
        "label",
        "5000",
        "rd",
        &rd5,
        "rt",
        "65002:5000",
        "encap",
        "vxlan",
        "router-mac",
        "02:00:5e:00:00:bb",
    ];
    args.extend_from_slice(&["nexthop", GOBGP_VTEP]);
    gobgp.cli(&args);
}

/// The routes of GoBGP's EVPN RIB (`gobgp global rib -a evpn -j`: NLRI text -> paths) whose
/// NLRI is of `route_type` and whose originating router / MAC matches `key`/`value`.
fn gobgp_evpn_path(gobgp: &Gobgp, route_type: u64, key: &str, value: &str) -> Option<Value> {
    let rib = gobgp.json(&["global", "rib", "-a", "evpn"]);
    let rib = rib.as_object()?;
    rib.values()
        .filter_map(|paths| paths.as_array())
        .flatten()
        .find(|path| path["nlri"]["type"] == route_type && path["nlri"]["value"][key] == value)
        .cloned()
}

/// The attribute of `type_code` of a GoBGP path.
fn attribute(path: &Value, type_code: u64) -> Value {
    path["attrs"]
        .as_array()
        .and_then(|attrs| attrs.iter().find(|a| a["type"] == type_code))
        .cloned()
        .unwrap_or(Value::Null)
}

#[test]
fn gobgp_exchanges_evpn_types_2_3_and_5_and_ztos_installs_gobgps_macs_and_flood_entry() {
    let Some(lab) = Lab::new_if_root("evpngo") else {
        return;
    };
    let (z, g, h) = (lab.node("z"), lab.node("g"), lab.node("h"));
    lab.link(
        (&z, "eth0", None),
        (&g, "eth0", Some(&format!("{GOBGP_VTEP}/24"))),
    );
    lab.link((&h, "eth0", Some("192.168.100.1/24")), (&z, "veth-h", None));
    let daemon = z.start_ztosd(&ztos_evpn_config(
        "eth0",
        ZTOS_VTEP,
        "veth-h",
        GOBGP_VTEP,
        r#"["ipv4-unicast", "l2vpn-evpn"]"#,
    ));
    let _ztos_bgp = start_ztos_bgp(&z);
    let config = format!(
        "{}{}",
        gobgp_global(GOBGP_VTEP),
        gobgp_neighbor(ZTOS_VTEP, &["ipv4-unicast", "l2vpn-evpn"])
    );
    let gobgp = Gobgp::start(&g, &config);
    gobgp_evpn_routes(&gobgp, "add");

    poll("the session at z", 30, || established(&daemon, GOBGP_VTEP));
    assert!(gobgp.established(ZTOS_VTEP));

    // GoBGP's routes at z: in the RIB (all three types) and in the kernel (types 2 and 3).
    poll("GoBGP's types 2, 3 and 5 in ztos-bgp's RIB", 30, || {
        let routes = ztos_json(&daemon, &["bgp", "routes", "--family", "evpn"]).to_string();
        routes.contains(GOBGP_MAC) && routes.contains("203.0.113.0/24")
    });
    poll("GoBGP's MAC and flood entries on vx100", 30, || {
        let entries = fdb(&z, "vx100");
        entries.contains(&format!("{GOBGP_MAC} dst {GOBGP_VTEP}"))
            && entries.contains(&format!("00:00:00:00:00:00 dst {GOBGP_VTEP}"))
    });
    assert!(
        !fdb(&z, "vx100").contains(FOREIGN_MAC),
        "a type 2 with VNI 200's route target was installed in VNI 100:\n{}",
        fdb(&z, "vx100")
    );
    let type2 = ztos_evpn_route(&daemon, 2, "mac", GOBGP_MAC).expect("GoBGP's type 2");
    let path = best_path(&type2);
    assert_eq!(type2["route"]["label1"], 100, "{type2}");
    assert_eq!(path["next_hop"], GOBGP_VTEP, "{type2}");
    assert_eq!(path["vni"], 100, "{type2}");
    assert!(has_community(&path, "rt 65002:100"), "{type2}");
    let type3 = ztos_evpn_route(&daemon, 3, "originator", GOBGP_VTEP).expect("GoBGP's type 3");
    let pmsi = &best_path(&type3)["pmsi_tunnel"];
    assert_eq!(pmsi["label"], 100, "{type3}");
    assert_eq!(pmsi["tunnel"]["endpoint"], GOBGP_VTEP, "{type3}");
    assert_eq!(
        pmsi["tunnel"]["tunnel_type"], "ingress_replication",
        "{type3}"
    );
    let type5 = ztos_evpn_route(&daemon, 5, "prefix", "203.0.113.0/24").expect("GoBGP's type 5");
    let path = best_path(&type5);
    assert_eq!(type5["route"]["label"], 5000, "{type5}");
    assert_eq!(type5["route"]["gateway"], "0.0.0.0", "{type5}");
    assert_eq!(path["next_hop"], GOBGP_VTEP, "{type5}");
    assert!(
        has_community(&path, "router-mac 02:00:5e:00:00:bb")
            && has_community(&path, "rt 65002:5000"),
        "{type5}"
    );

    // ztos-bgp's type 3 for VNI 100 at GoBGP: PMSI ingress replication to our VTEP, VNI 100
    // as the label, route target 65001:100, RD router-id:100, VXLAN encapsulation.
    poll("ztos-bgp's type 3 at GoBGP", 30, || {
        gobgp_evpn_path(&gobgp, 3, "ip", ZTOS_VTEP).is_some()
    });
    let type3 = gobgp_evpn_path(&gobgp, 3, "ip", ZTOS_VTEP).expect("type 3");
    assert_eq!(
        type3["nlri"]["value"]["rd"],
        serde_json::json!({"type": 1, "admin": ZTOS_VTEP, "assigned": 100}),
        "{type3}"
    );
    let pmsi = attribute(&type3, 22);
    assert_eq!(pmsi["tunnel-type"], 6, "{type3}");
    assert_eq!(pmsi["label"], 100, "{type3}");
    assert_eq!(pmsi["tunnel-id"], ZTOS_VTEP, "{type3}");
    let communities = attribute(&type3, 16).to_string();
    assert!(
        communities.contains("\"65001:100\""),
        "route target: {type3}"
    );
    assert!(
        communities.contains("\"tunnel_type\":8"),
        "VXLAN encapsulation: {type3}"
    );
    assert_eq!(attribute(&type3, 14)["nexthop"], ZTOS_VTEP, "{type3}");

    // A MAC the bridge learns from h becomes a type 2 at GoBGP.
    let host_mac = mac_of(&h, "eth0");
    poll("h's MAC as a type 2 at GoBGP", 30, || {
        // ARP requests from h teach z's bridge its MAC.
        let _ = pings(&h, "192.168.100.9");
        gobgp_evpn_path(&gobgp, 2, "mac", &host_mac).is_some()
    });
    let type2 = gobgp_evpn_path(&gobgp, 2, "mac", &host_mac).expect("type 2");
    assert_eq!(
        type2["nlri"]["value"]["labels"],
        serde_json::json!([100]),
        "{type2}"
    );
    assert_eq!(type2["nlri"]["value"]["rd"]["admin"], ZTOS_VTEP, "{type2}");
    assert!(
        attribute(&type2, 16).to_string().contains("\"65001:100\""),
        "{type2}"
    );
    assert_eq!(attribute(&type2, 14)["nexthop"], ZTOS_VTEP, "{type2}");

    // GoBGP withdraws its routes: the FDB entries go.
    gobgp_evpn_routes(&gobgp, "del");
    poll(
        "GoBGP's MAC and flood entries removed from vx100",
        30,
        || {
            let entries = fdb(&z, "vx100");
            !entries.contains(GOBGP_MAC)
                && !entries.contains(&format!("00:00:00:00:00:00 dst {GOBGP_VTEP}"))
        },
    );
    let routes = ztos_json(&daemon, &["bgp", "routes", "--family", "evpn"]).to_string();
    assert!(
        !routes.contains(GOBGP_MAC) && !routes.contains("203.0.113.0/24"),
        "withdrawn routes still shown: {routes}"
    );
}
