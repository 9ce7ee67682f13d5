//! `ztos bgp summary | neighbors | routes | decode`: the BGP plugin's sessions and Loc-RIB,
//! and decoding a captured BGP message without a running plugin.

use std::io::Write;

use hyper::Method;
use serde_json::Value;

use crate::args::BgpCommand;
use crate::client::Client;
use crate::format::{display, field, format_uptime, print_json, print_value, table, url_escape};

/// `ztos bgp ...`.
pub async fn run(
    client: &Client,
    command: BgpCommand,
    json_output: bool,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    match command {
        BgpCommand::Decode { hex } => {
            let message = ztos_bgp::decode_hex(&hex.join(" "))
                .map_err(|e| anyhow::anyhow!("cannot decode the message: {e}"))?;
            // A decoded message is printed as JSON, with or without --json.
            print_json(out, &serde_json::to_value(message)?)
        }
        BgpCommand::Summary => {
            let value = client
                .json(Method::GET, "/api/v1/bgp/summary", None)
                .await?;
            print_value(out, &value, json_output, format_bgp_summary)
        }
        BgpCommand::Neighbors { address } => {
            let path = match &address {
                Some(a) => format!("/api/v1/bgp/neighbors/{}", url_escape(a)),
                None => "/api/v1/bgp/neighbors".to_string(),
            };
            let value = client.json(Method::GET, &path, None).await?;
            if address.is_some() {
                print_value(out, &value, json_output, format_bgp_neighbor_detail)
            } else {
                print_value(out, &value, json_output, |v: &Value| {
                    format_bgp_neighbors(&v["neighbors"])
                })
            }
        }
        BgpCommand::Routes {
            family,
            prefix,
            vni,
        } => {
            let evpn = vni.is_some() || family.as_deref() == Some("evpn");
            let mut query = Vec::new();
            if let Some(vni) = vni {
                query.push(format!("vni={vni}"));
            }
            if let Some(family) = family {
                query.push(format!("family={}", url_escape(&family)));
            }
            if let Some(prefix) = prefix {
                query.push(format!("prefix={}", url_escape(&prefix)));
            }
            let path = if query.is_empty() {
                "/api/v1/bgp/routes".to_string()
            } else {
                format!("/api/v1/bgp/routes?{}", query.join("&"))
            };
            let value = client.json(Method::GET, &path, None).await?;
            if evpn {
                print_value(out, &value, json_output, format_evpn_routes)
            } else {
                print_value(out, &value, json_output, format_bgp_routes)
            }
        }
    }
}

/// `ztos bgp neighbors` (and the summary's neighbor list) as a table.
pub(crate) fn format_bgp_neighbors(list: &Value) -> String {
    let rows = list
        .as_array()
        .map(|items| {
            items
                .iter()
                .map(|n| {
                    vec![
                        field(n, "address"),
                        field(n, "remote_as"),
                        field(n, "state"),
                        format_uptime(n["uptime_seconds"].as_u64()),
                        field(n, "prefixes_received"),
                        field(n, "prefixes_accepted"),
                        field(n, "prefixes_advertised"),
                        field(n, "description"),
                    ]
                })
                .collect()
        })
        .unwrap_or_default();
    table(
        &[
            "NEIGHBOR",
            "AS",
            "STATE",
            "UP",
            "RECEIVED",
            "ACCEPTED",
            "ADVERTISED",
            "DESCRIPTION",
        ],
        rows,
    )
}

pub(crate) fn format_bgp_summary(v: &Value) -> String {
    if v["configured"] != Value::Bool(true) {
        return "BGP is not configured\n".into();
    }
    let total = v["neighbors"].as_array().map_or(0, Vec::len);
    let mut text = format!(
        "BGP AS {}, router id {}, port {}\nroutes: {} IPv4, {} IPv6; {} of {} neighbors established\n",
        field(v, "local_as"),
        field(v, "router_id"),
        field(v, "port"),
        display(&v["routes"]["ipv4-unicast"]),
        display(&v["routes"]["ipv6-unicast"]),
        field(v, "neighbors_established"),
        total,
    );
    if total > 0 {
        text.push('\n');
        text.push_str(&format_bgp_neighbors(&v["neighbors"]));
    }
    text
}

/// `ztos bgp neighbors ADDR`: one neighbor, one `key: value` per line.
pub(crate) fn format_bgp_neighbor_detail(v: &Value) -> String {
    let n = &v["neighbors"][0];
    let mut lines = vec![
        ("neighbor", field(n, "address")),
        ("remote AS", field(n, "remote_as")),
        ("description", field(n, "description")),
        ("state", field(n, "state")),
        ("up for", format_uptime(n["uptime_seconds"].as_u64())),
        (
            "established",
            format!("{} times", display(&n["established_count"])),
        ),
        (
            "prefixes",
            format!(
                "{} received, {} accepted, {} advertised",
                display(&n["prefixes_received"]),
                display(&n["prefixes_accepted"]),
                display(&n["prefixes_advertised"])
            ),
        ),
        (
            "updates",
            format!(
                "{} received, {} sent",
                display(&n["updates_received"]),
                display(&n["updates_sent"])
            ),
        ),
        ("last error", field(n, "last_error")),
    ];
    let c = &n["configured"];
    lines.push(("configured families", field(c, "families")));
    lines.push(("hold time", field(c, "hold_time")));
    lines.push(("passive", field(c, "passive")));
    lines.push(("max prefixes", field(c, "max_prefixes")));
    lines.push(("route reflector client", field(c, "route_reflector_client")));
    lines.push(("TCP MD5", field(c, "md5")));
    let session = &n["session"];
    if session.is_object() {
        lines.push(("local address", field(session, "local_address")));
        lines.push(("remote router id", field(session, "remote_router_id")));
        lines.push(("negotiated hold time", field(session, "hold_time")));
        lines.push(("families", field(session, "families")));
        lines.push(("eBGP", field(session, "ebgp")));
        lines.push(("four-octet AS", field(session, "four_octet_as")));
        lines.push(("route refresh", field(session, "route_refresh")));
        lines.push(("extended message", field(session, "extended_message")));
        lines.push(("update group", field(session, "update_group")));
    }
    let width = lines.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
    lines
        .into_iter()
        .map(|(k, v)| format!("{:<width$}  {v}\n", format!("{k}:"), width = width + 1))
        .collect()
}

/// An AS_PATH as the API gives it (segments of `kind` and `asns`) the way routers print
/// it: `65001 65002 {65003,65004} (65010)`.
pub(crate) fn format_as_path(path: &Value) -> String {
    let Some(segments) = path.as_array() else {
        return "-".into();
    };
    if segments.is_empty() {
        return "(empty)".into();
    }
    segments
        .iter()
        .map(|segment| {
            let asns: Vec<String> = segment["asns"]
                .as_array()
                .map(|a| a.iter().map(display).collect())
                .unwrap_or_default();
            match segment["kind"].as_str() {
                Some("set") => format!("{{{}}}", asns.join(",")),
                Some("confed_sequence") => format!("({})", asns.join(" ")),
                Some("confed_set") => format!("[{}]", asns.join(",")),
                _ => asns.join(" "),
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// `ztos bgp routes --family evpn`: one line per path, `*` on the best; the route (type, RD
/// and its key fields) on its first path.
pub(crate) fn format_evpn_routes(v: &Value) -> String {
    let mut rows = Vec::new();
    for route in v["routes"].as_array().into_iter().flatten() {
        let r = &route["route"];
        let what = match route["route_type"].as_u64() {
            Some(2) => format!(
                "[2] {}{}",
                field(r, "mac"),
                r.get("ip")
                    .map(|ip| format!(" {}", display(ip)))
                    .unwrap_or_default()
            ),
            Some(3) => format!("[3] {}", field(r, "originator")),
            Some(5) => format!("[5] {}", field(r, "prefix")),
            Some(t) => format!("[{t}]"),
            None => String::new(),
        };
        for (i, path) in route["paths"].as_array().into_iter().flatten().enumerate() {
            rows.push(vec![
                if path["best"] == Value::Bool(true) {
                    "*"
                } else {
                    ""
                }
                .to_string(),
                if i == 0 {
                    field(route, "rd")
                } else {
                    String::new()
                },
                if i == 0 { what.clone() } else { String::new() },
                field(path, "vni"),
                field(path, "next_hop"),
                field(path, "from"),
                path["extended_communities"]
                    .as_array()
                    .map(|c| c.iter().map(display).collect::<Vec<_>>().join(", "))
                    .unwrap_or_default(),
            ]);
        }
    }
    let mut text = table(
        &[
            "",
            "RD",
            "ROUTE",
            "VNI",
            "NEXT HOP",
            "FROM",
            "EXTENDED COMMUNITIES",
        ],
        rows,
    );
    if v["truncated"] == Value::Bool(true) {
        text.push_str("(more routes: narrow with --vni or --prefix, or use --json)\n");
    }
    text
}

/// `ztos bgp routes`: one line per path, `*` on the best, the prefix on its first path.
pub(crate) fn format_bgp_routes(v: &Value) -> String {
    let mut rows = Vec::new();
    for route in v["routes"].as_array().into_iter().flatten() {
        for (i, path) in route["paths"].as_array().into_iter().flatten().enumerate() {
            rows.push(vec![
                if path["best"] == Value::Bool(true) {
                    "*"
                } else {
                    ""
                }
                .to_string(),
                if i == 0 {
                    field(route, "prefix")
                } else {
                    String::new()
                },
                field(path, "next_hop"),
                field(path, "from"),
                field(path, "local_pref"),
                field(path, "med"),
                field(path, "origin"),
                format_as_path(&path["as_path"]),
            ]);
        }
    }
    let mut text = table(
        &[
            "",
            "PREFIX",
            "NEXT HOP",
            "FROM",
            "LOCAL PREF",
            "MED",
            "ORIGIN",
            "AS PATH",
        ],
        rows,
    );
    if v["truncated"] == Value::Bool(true) {
        text.push_str("(more routes: narrow with --prefix or --family, or use --json)\n");
    }
    text
}
