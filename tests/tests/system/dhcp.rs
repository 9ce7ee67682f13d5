//! ztosd's DHCP client end to end in a netns lab: dnsmasq serves one node's veth end; ztosd
//! in the other node, configured with `dhcp = true`, gets a lease and installs it (address,
//! default route with ZTOS's protocol, resolv.conf), shows it in `ztos interfaces`, and
//! removes it when a commit turns DHCP off. Renewal and expiry are tested against dnsmasq in
//! ztosd/tests/integration/dhcp.rs. Needs root and dnsmasq (Debian dnsmasq-base, from .ci/deps).

use std::fs;
use std::process::{Child, Command, Stdio};

use ztos_tests::lab::Lab;

struct Dnsmasq(Child);

impl Drop for Dnsmasq {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn ztosd_installs_a_dhcp_lease_and_removes_it_when_dhcp_is_turned_off() {
    let Some(lab) = Lab::new_if_root("dhcp") else {
        return;
    };
    let server = lab.node("srv");
    let client = lab.node("box");
    lab.link(
        (&server, "eth0", Some("10.78.0.1/24")),
        (&client, "eth0", None),
    );
    let _dnsmasq = Dnsmasq(
        Command::new("ip")
            .args([
                "netns",
                "exec",
                server.namespace(),
                "dnsmasq",
                "--no-daemon",
            ])
            .args([
                "--conf-file=/dev/null",
                "--port=0",
                "--interface=eth0",
                "--bind-interfaces",
                "--dhcp-range=10.78.0.50,10.78.0.60,255.255.255.0,10m",
                "--dhcp-option=option:router,10.78.0.1",
                "--dhcp-option=option:dns-server,10.78.0.53",
            ])
            .arg(format!(
                "--dhcp-leasefile={}",
                server.dir().join("leases").display()
            ))
            .arg(format!("--pid-file={}", server.dir().join("pid").display()))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("dnsmasq (Debian dnsmasq-base) must be installed; .ci/deps installs it"),
    );

    let ztosd = client.start_ztosd("[[interfaces]]\nname = \"eth0\"\ndhcp = true\n");
    ztosd.wait_for_secs("a DHCP address on eth0", 30, || {
        client
            .ip(&["-4", "-o", "addr", "show", "dev", "eth0"])
            .contains("inet 10.78.0.")
    });
    let address = client.ip(&["-4", "-o", "addr", "show", "dev", "eth0"]);
    assert!(address.contains("/24"), "{address}");
    // -N: numbers, not names (FRR's rt_protos.d calls 196 "static" where it is installed).
    let routes = client.ip(&["-N", "-4", "route", "show", "default"]);
    assert!(
        routes.contains("via 10.78.0.1") && routes.contains("proto 196"),
        "{routes}"
    );
    ztosd.wait_for_secs("resolv.conf", 10, || {
        fs::read_to_string(client.dir().join("resolv.conf"))
            .is_ok_and(|text| text.contains("nameserver 10.78.0.53"))
    });

    let output = ztosd.ztos(&["--json", "interfaces"]);
    assert!(output.status.success(), "{output:?}");
    let interfaces: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let eth0 = interfaces
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["name"] == "eth0")
        .expect("eth0 is listed");
    assert_eq!(eth0["dhcp"]["server"], "10.78.0.1", "{eth0}");
    assert_eq!(eth0["dhcp"]["router"], "10.78.0.1", "{eth0}");
    assert!(
        eth0["dhcp"]["address"]
            .as_str()
            .is_some_and(|a| a.starts_with("10.78.0.") && a.ends_with("/24")),
        "{eth0}"
    );
    let table = ztosd.ztos(&["interfaces"]);
    let table = String::from_utf8_lossy(&table.stdout);
    assert!(
        table.contains("DHCP") && table.contains("via 10.78.0.1 from 10.78.0.1"),
        "{table}"
    );

    // Turning DHCP off stops the client and removes what the lease installed.
    let set = ztosd.ztos(&["config", "set", "interfaces[0].dhcp", "false"]);
    assert!(set.status.success(), "{set:?}");
    let commit = ztosd.ztos(&["config", "commit"]);
    assert!(commit.status.success(), "{commit:?}");
    ztosd.wait_for_secs("the DHCP address to go", 15, || {
        !client
            .ip(&["-4", "-o", "addr", "show", "dev", "eth0"])
            .contains("inet 10.78.0.")
    });
    assert_eq!(client.ip(&["-4", "route", "show", "default"]).trim(), "");
}
