//! The command line's unit tests: parsing, and every human-readable view, from answers
//! written as the API sends them.

use clap::Parser;
use serde_json::json;

use crate::args::*;
use crate::commands::bgp::*;
use crate::commands::network::network_configure_body;
use crate::commands::security::format_security;
use crate::commands::system::{format_services, reformat_warning};
use crate::commands::wireguard::*;
use crate::format::*;

/// An answer written as JSON, read as its model type (as the commands read the API's).
fn typed<T: serde::de::DeserializeOwned>(value: serde_json::Value) -> T {
    serde_json::from_value(value).unwrap()
}

/// `extra`'s keys over `base`'s.
fn merge(mut base: serde_json::Value, extra: serde_json::Value) -> serde_json::Value {
    if let (Some(base), Some(extra)) = (base.as_object_mut(), extra.as_object()) {
        for (key, value) in extra {
            base.insert(key.clone(), value.clone());
        }
    }
    base
}

/// A BGP path with every field the speaker sends; `extra` sets some.
fn bgp_path(extra: serde_json::Value) -> serde_json::Value {
    merge(
        json!({"best": false, "from": "local", "next_hop": null, "as_path": null,
            "origin": null, "local_pref": null, "med": null, "communities": [],
            "extended_communities": [], "originator_id": null, "cluster_list": []}),
        extra,
    )
}

#[test]
fn spec_commands_parse_exactly_as_written() {
    let cli = Cli::try_parse_from([
        "ztos",
        "network",
        "configure",
        "--bgp",
        "--peer",
        "10.1.1.1",
        "--as",
        "64512",
    ])
    .unwrap();
    let Command::Network(NetworkCommand::Configure(args)) = cli.command else {
        panic!("wrong command")
    };
    let body = network_configure_body(&args).unwrap();
    assert_eq!(body["bgp"]["peer"], "10.1.1.1");
    assert_eq!(body["bgp"]["remote_as"], 64512);
    assert!(matches!(
        Cli::try_parse_from(["ztos", "security", "status"])
            .unwrap()
            .command,
        Command::Security(SecurityCommand::Status)
    ));
    assert!(matches!(
        Cli::try_parse_from(["ztos", "monitoring", "logs"])
            .unwrap()
            .command,
        Command::Monitoring(MonitoringCommand::Logs { follow: false, .. })
    ));
}

#[test]
fn bgp_without_peer_is_refused_by_the_parser() {
    let err = Cli::try_parse_from(["ztos", "network", "configure", "--bgp", "--as", "64512"])
        .unwrap_err();
    assert!(err.to_string().contains("--peer"), "{err}");
}

#[test]
fn system_commands_parse_and_services_render_as_a_table() {
    let cli = Cli::try_parse_from(["ztos", "system", "poweroff", "--yes"]).unwrap();
    assert!(matches!(
        cli.command,
        Command::System(SystemCommand::Poweroff { yes: true })
    ));
    let cli = Cli::try_parse_from(["ztos", "system", "reboot"]).unwrap();
    assert!(matches!(
        cli.command,
        Command::System(SystemCommand::Reboot { yes: false })
    ));
    let cli = Cli::try_parse_from(["ztos", "system", "reformat-perm", "--yes"]).unwrap();
    assert!(matches!(
        cli.command,
        Command::System(SystemCommand::ReformatPerm { yes: true })
    ));
    let warning = reformat_warning("the box");
    assert!(
        warning.contains("ztos-perm")
            && warning.contains("configuration")
            && warning.contains("users")
            && warning.contains("reboots"),
        "{warning}"
    );
    let text = format_services(&serde_json::from_value(json!({
        "healthy": false,
        "services": [
            {"name": "ztosd", "state": "running", "pid": 42, "restarts": 1,
             "since": "2025-01-01T00:00:00Z", "critical": true, "last_exit": "killed by SIGKILL"},
            {"name": "flaky", "state": "crash-loop", "pid": null, "restarts": 7,
             "since": "2025-01-01T00:00:01Z", "critical": false, "last_exit": "exited with status 1"}
        ]
    })).unwrap());
    let lines: Vec<&str> = text.lines().collect();
    assert!(
        lines[0].starts_with("NAME   STATE       PID  RESTARTS"),
        "{text}"
    );
    assert!(lines[1].starts_with("ztosd  running     42   1"), "{text}");
    assert!(lines[2].starts_with("flaky  crash-loop  -    7"), "{text}");
    assert_eq!(lines[3], "UNHEALTHY: a critical service is crash-looping");
}

#[test]
fn wireguard_commands_parse() {
    let cli = Cli::try_parse_from(["ztos", "security", "wireguard", "rotate-key", "wg0"]).unwrap();
    assert!(matches!(
        cli.command,
        Command::Security(SecurityCommand::Wireguard(WireguardCommand::RotateKey { ref interface }))
            if interface == "wg0"
    ));
    let cli = Cli::try_parse_from(["ztos", "security", "wireguard", "show"]).unwrap();
    assert!(matches!(
        cli.command,
        Command::Security(SecurityCommand::Wireguard(WireguardCommand::Show {
            interface: None
        }))
    ));
    assert!(Cli::try_parse_from(["ztos", "security", "wireguard", "genkey"]).is_err());
}

#[test]
fn wireguard_show_reads_like_wg_show() {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let v = json!({"interfaces": [
        {"name": "wg0", "public_key": "PUB0", "listen_port": 51820, "configured": true,
         "peers": [{"public_key": "PEER", "name": "laptop", "endpoint": "192.0.2.1:51820",
                    "allowed_ips": ["10.9.0.2/32", "10.9.1.0/24"], "latest_handshake": now - 75,
                    "rx_bytes": 1536, "tx_bytes": 3 * 1024 * 1024, "persistent_keepalive": 25,
                    "preshared_key": true,
                    "policy_allowed": 4, "policy_denied_in": 1, "policy_denied_out": 0,
                    "rx_packets": 2, "tx_packets": 3, "invalid_source": 0}]},
        {"name": "wg1", "public_key": "PUB1", "configured": false, "peers": []}]});
    assert_eq!(
        format_wireguard_show(&typed(v)),
        "interface: wg0\n  public key: PUB0\n  listening port: 51820\n\n\
         peer: PEER (laptop)\n  preshared key: (hidden)\n  endpoint: 192.0.2.1:51820\n\
         \x20 allowed ips: 10.9.0.2/32,10.9.1.0/24\n  latest handshake: 1m 15s ago\n\
         \x20 transfer: 1.50 KiB received, 3.00 MiB sent\n\
         \x20 persistent keepalive: every 25 seconds\n\
         \x20 policy: 4 allowed, 1 denied in, 0 denied out\n\n\
         interface: wg1\n  public key: PUB1\n  (has a key but is not configured)\n"
    );
    assert_eq!(
        format_wireguard_show(&typed(json!({"interfaces": []}))),
        "no WireGuard interfaces\n"
    );
    assert_eq!(bytes_text(512), "512 B");
}

#[test]
fn rotate_key_prints_the_notice() {
    let text = format_rotated_key(&typed(json!({"interface": "wg0", "public_key": "NEW",
        "old_public_key": "OLD", "notice": "Tell the peers."})));
    assert_eq!(
        text,
        "interface: wg0\npublic key: NEW\nold public key: OLD\n\nTell the peers.\n"
    );
    let text = format_wireguard_key(&typed(json!({"interface": "wg0", "public_key": "NEW"})));
    assert_eq!(text, "interface: wg0\npublic key: NEW\n");
}

#[test]
fn security_status_shows_a_rollback() {
    let datapath = json!({"configured": false, "interfaces": 0, "peers": 0,
        "plugin": "ztos-wireguard", "plugin_state": "absent", "status": null});
    let status = serde_json::from_value(json!({"wireguard": datapath, "macsec": datapath,
        "policy_rules": 0, "update": "rolled back from 0.2.0"}))
    .unwrap();
    assert!(format_security(&status).ends_with("update: rolled back from 0.2.0\n"));
    let status = serde_json::from_value(
        json!({"wireguard": datapath, "macsec": datapath, "policy_rules": 0}),
    )
    .unwrap();
    assert!(!format_security(&status).contains("update:"));
}

#[test]
fn evpn_routes_print_type_rd_key_and_communities() {
    let routes = json!({"truncated": false, "routes": [{
        "family": "l2vpn-evpn", "route_type": 2, "rd": "10.0.0.2:100",
        "route": {"route_type": "mac_ip", "rd": {"type": 1, "value": "10.0.0.2:100"},
                  "esi": "00:00:00:00:00:00:00:00:00:00", "ethernet_tag": 0,
                  "mac": "02:00:00:00:00:aa", "label1": 100},
        "paths": [bgp_path(json!({"best": true, "vni": 100, "next_hop": "10.0.0.2",
                   "from": "10.0.0.2", "extended_communities": ["rt 65002:100", "encap 8"]}))]
    }, {
        "family": "l2vpn-evpn", "route_type": 3, "rd": "10.0.0.1:100",
        "route": {"route_type": "inclusive_multicast",
                  "rd": {"type": 1, "value": "10.0.0.1:100"}, "ethernet_tag": 0,
                  "originator": "10.0.0.1"},
        "paths": [bgp_path(json!({"best": true, "vni": 100, "next_hop": "10.0.0.1",
                   "from": "local", "extended_communities": ["rt 65001:100"]}))]
    }]});
    let text = format_evpn_routes(&typed(routes));
    let lines: Vec<&str> = text.lines().collect();
    assert!(
        lines[0].contains("RD") && lines[0].contains("EXTENDED COMMUNITIES"),
        "{text}"
    );
    assert!(
        lines[1].starts_with('*')
            && lines[1].contains("10.0.0.2:100")
            && lines[1].contains("[2] 02:00:00:00:00:aa")
            && lines[1].contains("rt 65002:100, encap 8"),
        "{text}"
    );
    assert!(
        lines[2].contains("[3] 10.0.0.1") && lines[2].contains("local"),
        "{text}"
    );
}

#[test]
fn bgp_summary_neighbors_and_routes_print_as_tables() {
    let neighbor = json!({
        "address": "10.0.0.2", "remote_as": 65002, "description": "bird",
        "state": "established", "uptime_seconds": 3725, "prefixes_received": 3,
        "prefixes_accepted": 2, "prefixes_advertised": 1, "updates_received": 4,
        "updates_sent": 1, "last_error": null, "stale_routes": 0,
    });
    let summary = json!({
        "configured": true, "local_as": 65001, "router_id": "10.0.0.1", "port": 179,
        "neighbors_established": 1,
        "routes": {"ipv4-unicast": 3, "ipv6-unicast": 0, "l2vpn-evpn": 0},
        "evpn": {"segments": [], "local_macs": 0, "remote_macs": 0, "flood_entries": 0,
                 "tenant_prefixes": 0, "tenants": [], "kernel": false},
        "update_groups": 1, "attribute_sets": 1,
        "neighbors": [neighbor.clone()],
    });
    assert_eq!(
        format_bgp_summary(&typed(summary)),
        "BGP AS 65001, router id 10.0.0.1, port 179\n\
         routes: 3 IPv4, 0 IPv6; 1 of 1 neighbors established\n\n\
         NEIGHBOR  AS     STATE        UP        RECEIVED  ACCEPTED  ADVERTISED  DESCRIPTION\n\
         10.0.0.2  65002  established  1h02m05s  3         2         1           bird\n"
    );
    assert_eq!(
        format_bgp_summary(&typed(json!({"configured": false, "neighbors": []}))),
        "BGP is not configured\n"
    );
    let mut detail = neighbor;
    detail["established_count"] = json!(2);
    detail["configured"] = json!({"families": ["ipv4-unicast"], "hold_time": 90,
        "passive": false, "max_prefixes": null, "route_reflector_client": false, "md5": true});
    let text = format_bgp_neighbor_detail(&typed(json!({"neighbors": [detail]})));
    assert!(
        text.starts_with("neighbor:                10.0.0.2\n"),
        "{text}"
    );
    assert!(
        text.contains("established:             2 times\n"),
        "{text}"
    );
    assert!(
        text.contains("prefixes:                3 received, 2 accepted, 1 advertised\n"),
        "{text}"
    );
    assert!(text.contains("max prefixes:            -\n"), "{text}");
    assert!(
        !text.contains("local address"),
        "no session, no session lines: {text}"
    );

    let routes = json!({"truncated": true, "routes": [{
    "prefix": "198.51.100.0/24", "family": "ipv4-unicast", "paths": [
        bgp_path(json!({"best": true, "from": "10.0.0.2", "next_hop": "10.0.0.2",
         "origin": "igp", "local_pref": null, "med": 5, "as_path": [
            {"kind": "sequence", "asns": [65002, 65003]},
            {"kind": "set", "asns": [65004, 65005]}]})),
        bgp_path(json!({"best": false, "from": "local", "next_hop": null,
         "origin": "incomplete", "local_pref": 100, "med": null, "as_path": []})),
    ]}]});
    assert_eq!(
        format_bgp_routes(&typed(routes)),
        "   PREFIX           NEXT HOP  FROM      LOCAL PREF  MED  ORIGIN      AS PATH\n\
         *  198.51.100.0/24  10.0.0.2  10.0.0.2  -           5    igp         65002 65003 {65004,65005}\n\
         \x20                   -         local     100         -    incomplete  (empty)\n\
         (more routes: narrow with --prefix or --family, or use --json)\n"
    );
    assert_eq!(
        format_as_path(Some(&typed::<Vec<_>>(json!([
            {"kind": "confed_sequence", "asns": [1, 2]},
            {"kind": "confed_set", "asns": [3]}])))),
        "(1 2) [3]"
    );
    assert_eq!(format_uptime(None), "-");
    assert_eq!(format_uptime(Some(59)), "59s");
    assert_eq!(format_uptime(Some(90061)), "1d01h01m");
}

#[test]
fn tables_are_aligned() {
    let text = table(&["A", "LONGER"], vec![vec!["value".into(), "x".into()]]);
    assert_eq!(text, "A      LONGER\nvalue  x\n");
}

#[test]
fn url_escape_escapes_reserved_characters() {
    assert_eq!(
        url_escape("2026-11-20T10:00:00+01:00"),
        "2026-11-20T10%3A00%3A00%2B01%3A00"
    );
}

#[test]
fn an_answer_that_is_not_the_model_type_is_an_error_naming_it() {
    let mut out = Vec::new();
    let error = print_answer::<ztos_model::bgp::BgpSummary>(
        &mut out,
        json!({"configured": true}),
        false,
        |_| String::new(),
    )
    .unwrap_err()
    .to_string();
    assert!(error.contains("ztos_model::bgp::BgpSummary"), "{error}");
    assert!(error.contains("neighbors"), "{error}");
    assert!(out.is_empty());
    // --json prints what came, whatever its shape.
    print_answer::<ztos_model::bgp::BgpSummary>(&mut out, json!({"x": 1}), true, |_| String::new())
        .unwrap();
    assert_eq!(String::from_utf8(out).unwrap(), "{\n  \"x\": 1\n}\n");
}
