//! The spec's overlay without static flood lists: two ZTOS leaves peer over BGP EVPN (iBGP,
//! one AS) across the underlay, each with VNI 100 bridged to a host. Every flood-list entry
//! and remote MAC in the kernel comes from BGP: type 3 routes become the flood list, the MACs
//! the bridges learn from the hosts go out as type 2 routes and come back as FDB entries on
//! the other leaf. Then ztos-bgp is killed on one leaf: the restarted plugin sweeps what its
//! predecessor left and rebuilds the same state, and the hosts still ping.

use serde_json::Value;
use ztos_tests::lab::{Lab, Node, TwoLeafTopology, ZtosdHandle};
use ztos_tests::peers::{established, fdb, poll, start_ztos_bgp, ztos_json};

fn leaf_config(name: &str, me: &str, peer: &str, port: &str, https: u16) -> String {
    format!(
        r#"
[system]
hostname = "{name}"
https_port = {https}

[[interfaces]]
name = "eth1"
addresses = ["{me}/24"]

[[bridges]]
name = "br100"
ports = ["{port}"]

[[vxlan]]
vni = 100
local_vtep = "{me}"
bridge = "br100"
underlay_interface = "eth1"

[bgp]
local_as = 65000
router_id = "{me}"

[[bgp.neighbors]]
address = "{peer}"
remote_as = 65000
families = ["l2vpn-evpn"]
hold_time = 9
"#
    )
}

fn ping(from: &Node, to: &str) -> bool {
    from.exec(&["ping", "-c", "2", "-W", "2", to])
        .status
        .success()
}

/// The MAC of `device` in `node`.
fn mac_of(node: &Node, device: &str) -> String {
    let out = node.exec(&["cat", &format!("/sys/class/net/{device}/address")]);
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn evpn_routes(daemon: &ZtosdHandle) -> Vec<Value> {
    ztos_json(daemon, &["bgp", "routes", "--family", "evpn"])["routes"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

/// Whether `daemon` has a best type 2 route for `mac` learned from `from`.
fn has_mac_route(daemon: &ZtosdHandle, mac: &str, from: &str) -> bool {
    evpn_routes(daemon).iter().any(|r| {
        r["route_type"] == 2
            && r["route"]["mac"] == mac
            && r["paths"][0]["from"] == from
            && r["paths"][0]["vni"] == 100
    })
}

#[test]
fn two_leaves_build_the_overlay_from_bgp_evpn_alone() {
    let Some(lab) = Lab::new_if_root("evpn") else {
        return;
    };
    let TwoLeafTopology {
        leaf1,
        leaf2,
        h1,
        h2,
    } = lab.two_leaf_topology();
    let ztosd1 = leaf1.start_ztosd(&leaf_config(
        "leaf1", "10.0.0.1", "10.0.0.2", "veth-h1", 8443,
    ));
    let ztosd2 = leaf2.start_ztosd(&leaf_config(
        "leaf2", "10.0.0.2", "10.0.0.1", "veth-h2", 8444,
    ));
    let mut bgp1 = start_ztos_bgp(&leaf1);
    let _bgp2 = start_ztos_bgp(&leaf2);
    poll("the iBGP EVPN session", 30, || {
        established(&ztosd1, "10.0.0.2") && established(&ztosd2, "10.0.0.1")
    });

    // Type 3 routes alone build the flood list: no static remote_vteps anywhere.
    for (node, remote) in [(&leaf1, "10.0.0.2"), (&leaf2, "10.0.0.1")] {
        poll("the flood entry from the peer's type 3 route", 20, || {
            fdb(node, "vx100").contains(&format!("00:00:00:00:00:00 dst {remote}"))
        });
    }
    let routes = evpn_routes(&ztosd1);
    let imet = routes
        .iter()
        .find(|r| r["route_type"] == 3 && r["paths"][0]["from"] == "10.0.0.2")
        .unwrap_or_else(|| panic!("no type 3 route from leaf2 on leaf1: {routes:#?}"));
    assert_eq!(imet["rd"], "10.0.0.2:100");
    assert_eq!(imet["paths"][0]["vni"], 100);
    assert_eq!(imet["paths"][0]["next_hop"], "10.0.0.2");

    // The hosts' first packets are flooded through that list; the bridges learn the hosts'
    // MACs and advertise them as type 2 routes.
    poll("h1 pings h2 over the EVPN overlay", 30, || {
        ping(&h1, "192.168.100.2")
    });
    let (mac1, mac2) = (mac_of(&h1, "eth0"), mac_of(&h2, "eth0"));
    poll("both hosts' MACs as type 2 routes", 20, || {
        has_mac_route(&ztosd1, &mac2, "10.0.0.2") && has_mac_route(&ztosd2, &mac1, "10.0.0.1")
    });
    poll(
        "remote MACs as FDB entries towards the other VTEP",
        20,
        || {
            fdb(&leaf1, "vx100").contains(&format!("{mac2} dst 10.0.0.2"))
                && fdb(&leaf2, "vx100").contains(&format!("{mac1} dst 10.0.0.1"))
        },
    );
    let fdb1 = fdb(&leaf1, "vx100");
    assert!(
        fdb1.lines()
            .any(|l| l.starts_with(&mac2) && l.contains("extern_learn")),
        "remote MACs are extern_learn entries: {fdb1}"
    );
    let summary = ztos_json(&ztosd1, &["bgp", "summary"]);
    assert_eq!(summary["evpn"]["segments"][0]["vni"], 100, "{summary:#}");
    assert!(
        summary["evpn"]["remote_macs"].as_u64() >= Some(1),
        "{summary:#}"
    );
    assert!(
        summary["evpn"]["flood_entries"].as_u64() >= Some(1),
        "{summary:#}"
    );
    assert!(ping(&h2, "192.168.100.1"));

    // Kill ztos-bgp on leaf1 without a goodbye: the restarted plugin sweeps its predecessor's
    // entries and builds them again from BGP.
    bgp1.kill();
    let _bgp1 = start_ztos_bgp(&leaf1);
    poll("the session after ztos-bgp's restart", 40, || {
        established(&ztosd1, "10.0.0.2")
    });
    poll("leaf1's flood and MAC entries rebuilt", 30, || {
        let table = fdb(&leaf1, "vx100");
        table.contains("00:00:00:00:00:00 dst 10.0.0.2")
            && table.contains(&format!("{mac2} dst 10.0.0.2"))
    });
    poll("the hosts ping after the restart", 20, || {
        ping(&h1, "192.168.100.2")
    });
    // The rebuilt state has one flood entry per remote VTEP, not one per restart.
    let table = fdb(&leaf1, "vx100");
    assert_eq!(
        table
            .lines()
            .filter(|l| l.starts_with("00:00:00:00:00:00 dst 10.0.0.2"))
            .count(),
        1,
        "{table}"
    );
}
