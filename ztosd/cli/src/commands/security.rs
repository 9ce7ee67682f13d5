//! `ztos security status`, and `ztos security wireguard ...` (in `commands::wireguard`).

use std::io::Write;

use hyper::Method;
use ztos_model::api::security::SecurityStatus;

use crate::args::SecurityCommand;
use crate::client::Client;
use crate::format::{print_answer, table, text};

/// `ztos security ...`.
pub async fn run(
    client: &Client,
    command: SecurityCommand,
    json_output: bool,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    match command {
        SecurityCommand::Status => {
            let status = client
                .json(Method::GET, "/api/v1/security/status", None)
                .await?;
            print_answer(out, status, json_output, format_security)
        }
        SecurityCommand::Wireguard(command) => {
            crate::commands::wireguard::run(client, command, json_output, out).await
        }
    }
}

pub(crate) fn format_security(status: &SecurityStatus) -> String {
    let mut rows = Vec::new();
    for (name, s) in [("wireguard", &status.wireguard), ("macsec", &status.macsec)] {
        let configured = if s.configured {
            "configured"
        } else {
            "not configured"
        };
        rows.push(vec![
            name.to_string(),
            configured.to_string(),
            s.interfaces.to_string(),
            s.peers.to_string(),
            format!("{} ({})", text(&s.plugin), text(&s.plugin_state)),
        ]);
    }
    let mut out = table(&["SERVICE", "STATE", "INTERFACES", "PEERS", "PLUGIN"], rows);
    out.push_str(&format!("policy rules: {}\n", status.policy_rules));
    if let Some(update) = &status.update {
        out.push_str(&format!("update: {update}\n"));
    }
    out
}
