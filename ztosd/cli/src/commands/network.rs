//! `ztos network configure` (BGP neighbor, VXLAN segment, WireGuard peer in one commit) and
//! `ztos interfaces`.

use std::io::Write;

use anyhow::bail;
use hyper::Method;
use serde_json::{json, Value};

use crate::args::{NetworkCommand, NetworkConfigureArgs};
use crate::client::Client;
use crate::commands::config::format_commit;
use ztos_model::api::network::InterfaceStatus;

use crate::format::{list, opt, print_answer, table, text};

/// `ztos network configure ...`.
pub async fn run(
    client: &Client,
    command: NetworkCommand,
    json_output: bool,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    let NetworkCommand::Configure(args) = command;
    let body = network_configure_body(&args)?;
    let outcome = client
        .json(Method::POST, "/api/v1/network/configure", Some(&body))
        .await?;
    print_answer(out, outcome, json_output, format_commit)
}

/// `ztos interfaces`.
pub async fn interfaces(
    client: &Client,
    json_output: bool,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    let list = client.json(Method::GET, "/api/v1/interfaces", None).await?;
    print_answer(out, list, json_output, |i: &Vec<InterfaceStatus>| {
        format_interfaces(i)
    })
}

pub(crate) fn network_configure_body(args: &NetworkConfigureArgs) -> anyhow::Result<Value> {
    if !(args.bgp || args.vxlan || args.wireguard) {
        bail!("say what to configure: --bgp, --vxlan or --wireguard");
    }
    let mut body = json!({});
    if args.bgp {
        let (Some(peer), Some(remote_as)) = (args.peer, args.remote_as) else {
            bail!("--bgp needs --peer and --as");
        };
        body["bgp"] = json!({
            "peer": peer.to_string(),
            "remote_as": remote_as,
            "local_as": args.local_as,
            "description": args.description,
        });
    }
    if args.vxlan {
        let (Some(vni), Some(local_vtep)) = (args.vni, args.local_vtep) else {
            bail!("--vxlan needs --vni and --local-vtep");
        };
        body["vxlan"] = json!({
            "vni": vni,
            "local_vtep": local_vtep.to_string(),
            "remote_vteps": args.remote_vteps.iter().map(ToString::to_string).collect::<Vec<_>>(),
            "bridge": args.bridge,
            "port": args.port,
        });
    }
    if args.wireguard {
        let (Some(interface), Some(public_key)) = (&args.interface, &args.public_key) else {
            bail!("--wireguard needs --interface and --public-key");
        };
        body["wireguard"] = json!({
            "interface": interface,
            "public_key": public_key,
            "endpoint": args.endpoint,
            "allowed_ips": args.allowed_ips.iter().map(ToString::to_string).collect::<Vec<_>>(),
        });
    }
    if let Some(comment) = &args.comment {
        body["comment"] = Value::String(comment.clone());
    }
    Ok(body)
}

/// An interface's DHCP lease for the table: `10.0.2.15/24 via 10.0.2.2 from 10.0.2.2 until
/// <time>`, or `-`.
pub(crate) fn dhcp_cell(interface: &InterfaceStatus) -> String {
    let Some(lease) = &interface.dhcp else {
        return "-".into();
    };
    let mut cell = lease.address.clone();
    if let Some(router) = &lease.router {
        cell.push_str(&format!(" via {router}"));
    }
    cell.push_str(&format!(" from {} until {}", lease.server, lease.expires));
    cell
}

pub(crate) fn format_interfaces(interfaces: &[InterfaceStatus]) -> String {
    let rows = interfaces
        .iter()
        .map(|i| {
            vec![
                text(&i.name),
                text(&i.kind),
                if i.admin_up { "up" } else { "down" }.to_string(),
                text(&i.oper_state),
                i.mtu.to_string(),
                opt(i.master.as_deref()),
                list(&i.addresses),
                dhcp_cell(i),
            ]
        })
        .collect();
    table(
        &[
            "NAME",
            "KIND",
            "ADMIN",
            "OPER",
            "MTU",
            "MASTER",
            "ADDRESSES",
            "DHCP",
        ],
        rows,
    )
}
