//! The spec's VXLAN scenario: two ZTOS leaves joined by an underlay veth stretch one L2
//! segment (VNI 100) between a host behind each leaf, with a static flood list; then a
//! re-commit of the same configuration must not touch the kernel. It is the demo lab's
//! topology and configuration (`tests/lab/`), so this test also keeps `just demo` honest.

use ztos_tests::lab::{Lab, Node, TwoLeafTopology, LEAF1_CONFIG, LEAF2_CONFIG};

fn ping(from: &Node, to: &str) -> std::process::Output {
    from.exec(&["ping", "-c", "3", "-W", "2", to])
}

#[test]
fn hosts_behind_two_leaves_share_vni_100() {
    let Some(lab) = Lab::new_if_root("vxlan") else {
        return;
    };
    let TwoLeafTopology {
        leaf1: n1,
        leaf2: n2,
        h1,
        ..
    } = lab.two_leaf_topology();
    let config1 = LEAF1_CONFIG;
    let ztosd1 = n1.start_ztosd(config1);
    let _ztosd2 = n2.start_ztosd(LEAF2_CONFIG);

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
    std::fs::write(&path, config1).expect("writing same.toml");
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
