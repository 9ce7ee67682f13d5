//! The spec's VXLAN scenario: two ZTOS leaves joined by an underlay veth stretch one L2
//! segment (VNI 100) between a host behind each leaf, with a static flood list; then a
//! re-commit of the same configuration must not touch the kernel.

use ztos_tests::lab::{Lab, Node};

/// The configuration of one leaf: underlay address, bridge br100 with the host-facing veth
/// as a port, VXLAN 100 on that bridge flooding to the other leaf.
fn leaf_config(hostname: &str, underlay: &str, remote: &str, host_port: &str) -> String {
    format!(
        r#"[system]
hostname = "{hostname}"

[[interfaces]]
name = "eth1"
addresses = ["{underlay}/24"]

[[bridges]]
name = "br100"
ports = ["{host_port}"]

[[vxlan]]
vni = 100
local_vtep = "{underlay}"
bridge = "br100"
underlay_interface = "eth1"
remote_vteps = ["{remote}"]
"#
    )
}

fn ping(from: &Node, to: &str) -> std::process::Output {
    from.exec(&["ping", "-c", "3", "-W", "2", to])
}

#[test]
fn hosts_behind_two_leaves_share_vni_100() {
    let Some(lab) = Lab::new_if_root("vxlan") else {
        return;
    };
    let n1 = lab.node("n1");
    let n2 = lab.node("n2");
    let h1 = lab.node("h1");
    let h2 = lab.node("h2");
    // Underlay: ztosd puts the addresses on eth1 itself.
    lab.link((&n1, "eth1", None), (&n2, "eth1", None));
    lab.link(
        (&h1, "eth0", Some("192.168.100.1/24")),
        (&n1, "veth-h1", None),
    );
    lab.link(
        (&h2, "eth0", Some("192.168.100.2/24")),
        (&n2, "veth-h2", None),
    );

    let config1 = leaf_config("n1", "10.0.0.1", "10.0.0.2", "veth-h1");
    let config2 = leaf_config("n2", "10.0.0.2", "10.0.0.1", "veth-h2");
    let ztosd1 = n1.start_ztosd(&config1);
    let _ztosd2 = n2.start_ztosd(&config2);

    // ztosd applies the initial configuration as it starts; wait until the flood list is
    // programmed on both leaves.
    for (daemon_node, remote) in [(&n1, "10.0.0.2"), (&n2, "10.0.0.1")] {
        ztosd1.wait_for("the vxlan flood list", || {
            let fdb = daemon_node.exec(&["bridge", "fdb", "show", "dev", "vx100"]);
            String::from_utf8_lossy(&fdb.stdout)
                .contains(&format!("00:00:00:00:00:00 dst {remote}"))
        });
    }
    let link = n1.ip(&["-d", "link", "show", "vx100"]);
    assert!(
        link.contains("vxlan id 100")
            && link.contains("master br100")
            && link.contains("nolearning"),
        "{link}"
    );

    let output = ping(&h1, "192.168.100.2");
    assert!(
        output.status.success(),
        "h1 cannot ping h2 over VNI 100:\n{}{}\nn1 fdb:\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr),
        n1.exec(&["bridge", "fdb", "show"]).stdout.escape_ascii()
    );

    // Re-committing the running configuration changes nothing in the kernel.
    let path = n1.dir().join("same.toml");
    std::fs::write(&path, &config1).expect("writing same.toml");
    let output = ztosd1.ztos(&[
        "--json",
        "config",
        "commit",
        "--file",
        path.to_str().unwrap(),
    ]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "re-commit failed: {stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let outcome: serde_json::Value = serde_json::from_str(&stdout).expect("commit prints JSON");
    assert_eq!(
        outcome["changes"],
        serde_json::json!([]),
        "an unchanged re-commit touched the kernel: {outcome}"
    );
    assert!(
        ping(&h1, "192.168.100.2").status.success(),
        "h1 lost h2 after the re-commit"
    );
}
