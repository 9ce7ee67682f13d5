//! `ztos security wireguard genkey | show | rotate-key | preshared-key`: the WireGuard
//! plugin's keys and peers; private keys never leave the box.

use std::io::Write;

use hyper::Method;
use ztos_model::api::security::PresharedKeyRequest;
use ztos_model::wireguard::{
    WireguardKey, WireguardPresharedKey, WireguardRotatedKey, WireguardShow,
};

use crate::args::WireguardCommand;
use crate::client::Client;
use crate::format::{ago, bytes_text, list, opt, print_answer, text, url_escape};

/// `ztos security wireguard ...`.
pub async fn run(
    client: &Client,
    command: WireguardCommand,
    json_output: bool,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    let key_path = |interface: &str, action: &str| {
        format!(
            "/api/v1/security/wireguard/{}/{action}",
            url_escape(interface)
        )
    };
    match &command {
        WireguardCommand::PresharedKey { interface, peer } => {
            let body = serde_json::to_value(PresharedKeyRequest { peer: peer.clone() })?;
            let value = client
                .json(
                    Method::POST,
                    &key_path(interface, "preshared-key"),
                    Some(&body),
                )
                .await?;
            print_answer(out, value, json_output, |k: &WireguardPresharedKey| {
                format!("{}\n", text(&k.preshared_key))
            })
        }
        WireguardCommand::Genkey { interface } => {
            let value = client
                .json(Method::POST, &key_path(interface, "genkey"), None)
                .await?;
            print_answer(out, value, json_output, format_wireguard_key)
        }
        WireguardCommand::RotateKey { interface } => {
            let value = client
                .json(Method::POST, &key_path(interface, "rotate-key"), None)
                .await?;
            print_answer(out, value, json_output, format_rotated_key)
        }
        WireguardCommand::Show { interface } => {
            let path = match interface {
                Some(i) => format!("/api/v1/security/wireguard/{}", url_escape(i)),
                None => "/api/v1/security/wireguard".to_string(),
            };
            let value = client.json(Method::GET, &path, None).await?;
            print_answer(out, value, json_output, format_wireguard_show)
        }
    }
}

/// The `genkey` answer: the interface's new public key.
pub(crate) fn format_wireguard_key(key: &WireguardKey) -> String {
    format!(
        "interface: {}\npublic key: {}\n",
        text(&key.interface),
        text(&key.public_key)
    )
}

/// The `rotate-key` answer: the new public key, the old one, and what the peers must be told.
pub(crate) fn format_rotated_key(key: &WireguardRotatedKey) -> String {
    format!(
        "interface: {}\npublic key: {}\nold public key: {}\n\n{}\n",
        text(&key.interface),
        text(&key.public_key),
        opt(key.old_public_key.as_deref()),
        key.notice
    )
}

/// `ztos security wireguard show`: a `wg show`-like view (no private keys).
pub(crate) fn format_wireguard_show(show: &WireguardShow) -> String {
    let mut out = String::new();
    if show.interfaces.is_empty() {
        return "no WireGuard interfaces\n".into();
    }
    for (n, interface) in show.interfaces.iter().enumerate() {
        if n > 0 {
            out.push('\n');
        }
        out.push_str(&format!("interface: {}\n", text(&interface.name)));
        out.push_str(&format!("  public key: {}\n", text(&interface.public_key)));
        if !interface.configured {
            out.push_str("  (has a key but is not configured)\n");
            continue;
        }
        out.push_str(&format!(
            "  listening port: {}\n",
            opt(interface.listen_port)
        ));
        for peer in &interface.peers {
            out.push('\n');
            out.push_str(&format!("peer: {}", text(&peer.public_key)));
            if let Some(name) = &peer.name {
                out.push_str(&format!(" ({name})"));
            }
            out.push('\n');
            if peer.preshared_key {
                out.push_str("  preshared key: (hidden)\n");
            }
            if let Some(endpoint) = peer.endpoint {
                out.push_str(&format!("  endpoint: {endpoint}\n"));
            }
            out.push_str(&format!("  allowed ips: {}\n", list(&peer.allowed_ips)));
            if let Some(time) = peer.latest_handshake {
                out.push_str(&format!("  latest handshake: {}\n", ago(time)));
            }
            let (rx, tx) = (peer.rx_bytes, peer.tx_bytes);
            if rx > 0 || tx > 0 {
                out.push_str(&format!(
                    "  transfer: {} received, {} sent\n",
                    bytes_text(rx),
                    bytes_text(tx)
                ));
            }
            if let Some(keepalive) = peer.persistent_keepalive {
                out.push_str(&format!(
                    "  persistent keepalive: every {keepalive} seconds\n"
                ));
            }
            out.push_str(&format!(
                "  policy: {} allowed, {} denied in, {} denied out\n",
                peer.policy_allowed, peer.policy_denied_in, peer.policy_denied_out
            ));
        }
    }
    out
}
