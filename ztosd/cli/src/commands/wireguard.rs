//! `ztos security wireguard genkey | show | rotate-key | preshared-key`: the WireGuard
//! plugin's keys and peers; private keys never leave the box.

use std::io::Write;

use hyper::Method;
use serde_json::{json, Value};

use crate::args::WireguardCommand;
use crate::client::Client;
use crate::format::{ago, bytes_text, field, print_value, url_escape};

/// `ztos security wireguard ...`.
pub async fn run(
    client: &Client,
    command: WireguardCommand,
    json_output: bool,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    let mut body = None;
    let (method, path, human): (_, _, fn(&Value) -> String) = match &command {
        WireguardCommand::PresharedKey { interface, peer } => {
            body = Some(json!({ "peer": peer }));
            (
                Method::POST,
                format!(
                    "/api/v1/security/wireguard/{}/preshared-key",
                    url_escape(interface)
                ),
                |v: &Value| format!("{}\n", field(v, "preshared_key")),
            )
        }
        WireguardCommand::Genkey { interface } => (
            Method::POST,
            format!(
                "/api/v1/security/wireguard/{}/genkey",
                url_escape(interface)
            ),
            format_wireguard_key,
        ),
        WireguardCommand::RotateKey { interface } => (
            Method::POST,
            format!(
                "/api/v1/security/wireguard/{}/rotate-key",
                url_escape(interface)
            ),
            format_wireguard_key,
        ),
        WireguardCommand::Show { interface } => (
            Method::GET,
            match interface {
                Some(i) => format!("/api/v1/security/wireguard/{}", url_escape(i)),
                None => "/api/v1/security/wireguard".to_string(),
            },
            format_wireguard_show,
        ),
    };
    let value = client.json(method, &path, body.as_ref()).await?;
    print_value(out, &value, json_output, human)
}

/// `genkey` and `rotate-key` answers: the public key, and after a rotation the old one and
/// what the peers must be told.
pub(crate) fn format_wireguard_key(v: &Value) -> String {
    let mut text = format!(
        "interface: {}\npublic key: {}\n",
        field(v, "interface"),
        field(v, "public_key")
    );
    if v.get("old_public_key").is_some() {
        text.push_str(&format!("old public key: {}\n", field(v, "old_public_key")));
    }
    if let Some(notice) = v.get("notice").and_then(Value::as_str) {
        text.push_str(&format!("\n{notice}\n"));
    }
    text
}

/// `ztos security wireguard show`: a `wg show`-like view (no private keys).
pub(crate) fn format_wireguard_show(v: &Value) -> String {
    let mut text = String::new();
    let interfaces = v["interfaces"].as_array().cloned().unwrap_or_default();
    if interfaces.is_empty() {
        return "no WireGuard interfaces\n".into();
    }
    for (n, interface) in interfaces.iter().enumerate() {
        if n > 0 {
            text.push('\n');
        }
        text.push_str(&format!("interface: {}\n", field(interface, "name")));
        text.push_str(&format!(
            "  public key: {}\n",
            field(interface, "public_key")
        ));
        if interface.get("configured").and_then(Value::as_bool) == Some(false) {
            text.push_str("  (has a key but is not configured)\n");
            continue;
        }
        text.push_str(&format!(
            "  listening port: {}\n",
            field(interface, "listen_port")
        ));
        for peer in interface["peers"].as_array().into_iter().flatten() {
            text.push('\n');
            text.push_str(&format!("peer: {}", field(peer, "public_key")));
            if let Some(name) = peer.get("name").and_then(Value::as_str) {
                text.push_str(&format!(" ({name})"));
            }
            text.push('\n');
            if peer.get("preshared_key").and_then(Value::as_bool) == Some(true) {
                text.push_str("  preshared key: (hidden)\n");
            }
            if !peer["endpoint"].is_null() {
                text.push_str(&format!("  endpoint: {}\n", field(peer, "endpoint")));
            }
            text.push_str(&format!("  allowed ips: {}\n", field(peer, "allowed_ips")));
            if let Some(time) = peer["latest_handshake"].as_u64() {
                text.push_str(&format!("  latest handshake: {}\n", ago(time)));
            }
            let rx = peer["rx_bytes"].as_u64().unwrap_or(0);
            let tx = peer["tx_bytes"].as_u64().unwrap_or(0);
            if rx > 0 || tx > 0 {
                text.push_str(&format!(
                    "  transfer: {} received, {} sent\n",
                    bytes_text(rx),
                    bytes_text(tx)
                ));
            }
            if let Some(keepalive) = peer["persistent_keepalive"].as_u64() {
                text.push_str(&format!(
                    "  persistent keepalive: every {keepalive} seconds\n"
                ));
            }
            text.push_str(&format!(
                "  policy: {} allowed, {} denied in, {} denied out\n",
                field(peer, "policy_allowed"),
                field(peer, "policy_denied_in"),
                field(peer, "policy_denied_out")
            ));
        }
    }
    text
}
