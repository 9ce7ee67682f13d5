//! `ztos bgp summary | neighbors | routes | decode`: the BGP plugin's sessions and Loc-RIB,
//! and decoding a captured BGP message without a running plugin.

use std::io::Write;

use hyper::Method;
use ztos_model::bgp::{
    AsPathSegment, AsSegmentKind, BgpNeighbor, BgpNeighbors, BgpRoutes, BgpSummary, EvpnRouteKey,
    EvpnRoutes,
};

use crate::args::BgpCommand;
use crate::client::Client;
use crate::format::{format_uptime, list, opt, print_answer, print_json, table, text, url_escape};

/// `ztos bgp ...`.
pub async fn run(
    client: &Client,
    command: BgpCommand,
    json_output: bool,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    match command {
        BgpCommand::Decode { hex } => {
            let message = ztos_bgp_codec::decode_hex(&hex.join(" "))
                .map_err(|e| anyhow::anyhow!("cannot decode the message: {e}"))?;
            // A decoded message is printed as JSON, with or without --json.
            print_json(out, &serde_json::to_value(message)?)
        }
        BgpCommand::Summary => {
            let value = client
                .json(Method::GET, "/api/v1/bgp/summary", None)
                .await?;
            print_answer(out, value, json_output, format_bgp_summary)
        }
        BgpCommand::Neighbors { address } => {
            let path = match &address {
                Some(a) => format!("/api/v1/bgp/neighbors/{}", url_escape(a)),
                None => "/api/v1/bgp/neighbors".to_string(),
            };
            let value = client.json(Method::GET, &path, None).await?;
            if address.is_some() {
                print_answer(out, value, json_output, format_bgp_neighbor_detail)
            } else {
                print_answer(out, value, json_output, |n: &BgpNeighbors| {
                    format_bgp_neighbors(&n.neighbors)
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
                print_answer(out, value, json_output, format_evpn_routes)
            } else {
                print_answer(out, value, json_output, format_bgp_routes)
            }
        }
    }
}

/// `ztos bgp neighbors` (and the summary's neighbor list) as a table.
pub(crate) fn format_bgp_neighbors(neighbors: &[BgpNeighbor]) -> String {
    let rows = neighbors
        .iter()
        .map(|n| {
            vec![
                n.address.to_string(),
                n.remote_as.to_string(),
                n.state.to_string(),
                format_uptime(n.uptime_seconds),
                n.prefixes_received.to_string(),
                n.prefixes_accepted.to_string(),
                n.prefixes_advertised.to_string(),
                opt(n.description.as_deref()),
            ]
        })
        .collect();
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

pub(crate) fn format_bgp_summary(summary: &BgpSummary) -> String {
    if !summary.configured {
        return "BGP is not configured\n".into();
    }
    let total = summary.neighbors.len();
    let speaker = summary.speaker.as_ref();
    let mut out = format!(
        "BGP AS {}, router id {}, port {}\nroutes: {} IPv4, {} IPv6; {} of {} neighbors established\n",
        opt(speaker.map(|s| s.local_as)),
        opt(speaker.map(|s| s.router_id)),
        opt(speaker.map(|s| s.port)),
        opt(speaker.map(|s| s.routes.ipv4_unicast)),
        opt(speaker.map(|s| s.routes.ipv6_unicast)),
        opt(speaker.map(|s| s.neighbors_established)),
        total,
    );
    if total > 0 {
        out.push('\n');
        out.push_str(&format_bgp_neighbors(&summary.neighbors));
    }
    out
}

/// `ztos bgp neighbors ADDR`: one neighbor, one `key: value` per line.
pub(crate) fn format_bgp_neighbor_detail(answer: &BgpNeighbors) -> String {
    let Some(n) = answer.neighbors.first() else {
        return String::new();
    };
    let mut lines = vec![
        ("neighbor", n.address.to_string()),
        ("remote AS", n.remote_as.to_string()),
        ("description", opt(n.description.as_deref())),
        ("state", n.state.to_string()),
        ("up for", format_uptime(n.uptime_seconds)),
        ("established", format!("{} times", opt(n.established_count))),
        (
            "prefixes",
            format!(
                "{} received, {} accepted, {} advertised",
                n.prefixes_received, n.prefixes_accepted, n.prefixes_advertised
            ),
        ),
        (
            "updates",
            format!("{} received, {} sent", n.updates_received, n.updates_sent),
        ),
        ("last error", opt(n.last_error.as_deref())),
    ];
    let c = n.configured.as_ref();
    lines.push(("configured families", opt(c.map(|c| list(&c.families)))));
    lines.push(("hold time", opt(c.map(|c| c.hold_time))));
    lines.push(("passive", opt(c.map(|c| c.passive))));
    lines.push(("max prefixes", opt(c.and_then(|c| c.max_prefixes))));
    lines.push((
        "route reflector client",
        opt(c.map(|c| c.route_reflector_client)),
    ));
    lines.push(("TCP MD5", opt(c.map(|c| c.md5))));
    if let Some(session) = &n.session {
        lines.push(("local address", session.local_address.to_string()));
        lines.push(("remote router id", session.remote_router_id.to_string()));
        lines.push(("negotiated hold time", session.hold_time.to_string()));
        lines.push(("families", list(&session.families)));
        lines.push(("eBGP", session.ebgp.to_string()));
        lines.push(("four-octet AS", session.four_octet_as.to_string()));
        lines.push(("route refresh", session.route_refresh.to_string()));
        lines.push(("extended message", session.extended_message.to_string()));
        lines.push(("update group", session.update_group.to_string()));
    }
    let width = lines.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
    lines
        .into_iter()
        .map(|(k, v)| format!("{:<width$}  {v}\n", format!("{k}:"), width = width + 1))
        .collect()
}

/// An AS_PATH as the API gives it (segments of `kind` and `asns`) the way routers print
/// it: `65001 65002 {65003,65004} (65010)`.
pub(crate) fn format_as_path(path: Option<&[AsPathSegment]>) -> String {
    let Some(segments) = path else {
        return "-".into();
    };
    if segments.is_empty() {
        return "(empty)".into();
    }
    segments
        .iter()
        .map(|segment| {
            let asns: Vec<String> = segment.asns.iter().map(ToString::to_string).collect();
            match segment.kind {
                AsSegmentKind::Set => format!("{{{}}}", asns.join(",")),
                AsSegmentKind::ConfedSequence => format!("({})", asns.join(" ")),
                AsSegmentKind::ConfedSet => format!("[{}]", asns.join(",")),
                AsSegmentKind::Sequence => asns.join(" "),
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// `*` on the best path.
fn best(best: bool) -> String {
    if best { "*" } else { "" }.to_string()
}

/// `ztos bgp routes --family evpn`: one line per path, `*` on the best; the route (type, RD
/// and its key fields) on its first path.
pub(crate) fn format_evpn_routes(answer: &EvpnRoutes) -> String {
    let mut rows = Vec::new();
    for route in &answer.routes {
        let what = match &route.route {
            EvpnRouteKey::MacIp { mac, ip, .. } => format!(
                "[2] {}{}",
                text(mac),
                ip.map(|ip| format!(" {ip}")).unwrap_or_default()
            ),
            EvpnRouteKey::InclusiveMulticast { originator, .. } => format!("[3] {originator}"),
            EvpnRouteKey::IpPrefix { prefix, .. } => format!("[5] {prefix}"),
            _ => format!("[{}]", route.route_type),
        };
        for (i, path) in route.paths.iter().enumerate() {
            rows.push(vec![
                best(path.best),
                if i == 0 {
                    opt(route.rd.as_deref())
                } else {
                    String::new()
                },
                if i == 0 { what.clone() } else { String::new() },
                opt(path.vni),
                opt(path.next_hop),
                text(&path.from),
                path.extended_communities
                    .iter()
                    .map(|c| text(c))
                    .collect::<Vec<_>>()
                    .join(", "),
            ]);
        }
    }
    let mut out = table(
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
    if answer.truncated {
        out.push_str("(more routes: narrow with --vni or --prefix, or use --json)\n");
    }
    out
}

/// `ztos bgp routes`: one line per path, `*` on the best, the prefix on its first path.
pub(crate) fn format_bgp_routes(answer: &BgpRoutes) -> String {
    let mut rows = Vec::new();
    for route in &answer.routes {
        for (i, path) in route.paths.iter().enumerate() {
            rows.push(vec![
                best(path.best),
                if i == 0 {
                    route.prefix.to_string()
                } else {
                    String::new()
                },
                opt(path.next_hop),
                text(&path.from),
                opt(path.local_pref),
                opt(path.med),
                opt(path.origin),
                format_as_path(path.as_path.as_deref()),
            ]);
        }
    }
    let mut out = table(
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
    if answer.truncated {
        out.push_str("(more routes: narrow with --prefix or --family, or use --json)\n");
    }
    out
}
