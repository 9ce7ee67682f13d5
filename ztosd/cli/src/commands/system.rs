//! `ztos system services | reboot | poweroff | reformat-perm` (ztos-init's side of the box),
//! `ztos health`; `system update | slots | rollback` are in `commands::update`.

use std::io::Write;

use anyhow::bail;
use hyper::Method;
use serde_json::json;
use ztos_image::layout::PERM_LABEL;

use crate::args::SystemCommand;
use crate::client::{Client, ClientError};
use ztos_model::api::system::{Health, InitServices, PermReformatAccepted, ShutdownAccepted};

use crate::format::{opt, print_answer, table, text};

/// `ztos system ...`.
pub async fn run(
    client: &Client,
    command: SystemCommand,
    target: &str,
    json_output: bool,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    let (action, path, yes) = match command {
        SystemCommand::Update(args) => {
            return crate::commands::update::run(client, args, json_output, out).await
        }
        SystemCommand::Slots => {
            let value = client
                .json(Method::GET, "/api/v1/system/slots", None)
                .await?;
            return print_answer(
                out,
                value,
                json_output,
                crate::commands::update::format_slots,
            );
        }
        SystemCommand::Rollback { no_reboot, yes } => {
            if !yes && !no_reboot {
                use std::io::IsTerminal;
                if !std::io::stdin().is_terminal() {
                    bail!("rollback needs confirmation: pass --yes (no terminal to ask on)");
                }
                eprint!("switch {target} to its other slot and reboot? [y/N] ");
                std::io::stderr().flush()?;
                let mut answer = String::new();
                std::io::stdin().read_line(&mut answer)?;
                if !matches!(answer.trim(), "y" | "Y" | "yes") {
                    bail!("rollback cancelled");
                }
            }
            return crate::commands::update::rollback(client, !no_reboot, json_output, out).await;
        }
        SystemCommand::Services => {
            let value = client
                .json(Method::GET, "/api/v1/system/services", None)
                .await?;
            return print_answer(out, value, json_output, format_services);
        }
        SystemCommand::Reboot { yes } => ("reboot", "/api/v1/system/reboot", yes),
        SystemCommand::Poweroff { yes } => ("poweroff", "/api/v1/system/poweroff", yes),
        SystemCommand::ReformatPerm { yes } => {
            ("reformat-perm", "/api/v1/system/perm/reformat", yes)
        }
    };
    let reformat = action == "reformat-perm";
    if !yes {
        use std::io::IsTerminal;
        if !std::io::stdin().is_terminal() {
            bail!("{action} needs confirmation: pass --yes (no terminal to ask on)");
        }
        if reformat {
            eprint!("{}", reformat_warning(target));
        } else {
            eprint!("{action} {target}? every service stops [y/N] ");
        }
        std::io::stderr().flush()?;
        let mut answer = String::new();
        std::io::stdin().read_line(&mut answer)?;
        if !matches!(answer.trim(), "y" | "Y" | "yes") {
            bail!("{action} cancelled");
        }
    }
    let value = client.json(Method::POST, path, Some(&json!({}))).await?;
    if reformat {
        print_answer(out, value, json_output, |_: &PermReformatAccepted| {
            format!(
                "reformat of {PERM_LABEL} on {target} under way: ztos-init stops every service, makes a new filesystem and reboots; at the next boot the console asks for a new admin password\n"
            )
        })
    } else {
        print_answer(out, value, json_output, |_: &ShutdownAccepted| {
            format!("{action} of {target} under way: ztos-init is stopping every service\n")
        })
    }
}

/// The question `system reformat-perm` asks on a terminal.
pub(crate) fn reformat_warning(target: &str) -> String {
    format!(
        "reformat-perm erases the persistent partition ({PERM_LABEL}) of {target}: the configuration and its revisions, \
         the console users, the API tokens, the TLS keys and the logs are lost, and the box reboots \
         with its factory configuration. Reformat? [y/N] "
    )
}

pub(crate) fn format_services(services: &InitServices) -> String {
    let mut out = table(
        &[
            "NAME",
            "STATE",
            "PID",
            "RESTARTS",
            "SINCE",
            "CRITICAL",
            "LAST EXIT",
        ],
        services
            .services
            .iter()
            .map(|s| {
                vec![
                    text(&s.name),
                    s.state.as_str().to_string(),
                    opt(s.pid),
                    s.restarts.to_string(),
                    text(&s.since),
                    s.critical.to_string(),
                    opt(s.last_exit.as_deref()),
                ]
            })
            .collect(),
    );
    if !services.healthy {
        out.push_str("UNHEALTHY: a critical service is crash-looping\n");
    }
    out
}

/// `ztos health`: ztosd and the plugins that own configured sections; fails when unhealthy.
pub async fn health(client: &Client, json_output: bool, out: &mut dyn Write) -> anyhow::Result<()> {
    // /health answers 503 with the same JSON when unhealthy; show it either way.
    let value = match client.json(Method::GET, "/health", None).await {
        Ok(value) => value,
        Err(ClientError::Api { body, .. })
            if serde_json::from_value::<Health>(body.clone()).is_ok() =>
        {
            body
        }
        Err(err) => return Err(err.into()),
    };
    let health: Health = serde_json::from_value(value.clone())?;
    print_answer(out, value, json_output, |h: &Health| {
        let mut out = format!("{}\n", if h.healthy { "healthy" } else { "UNHEALTHY" });
        out.push_str(&table(
            &["COMPONENT", "HEALTHY", "DETAIL"],
            h.components
                .iter()
                .map(|c| vec![text(&c.name), c.healthy.to_string(), text(&c.detail)])
                .collect(),
        ));
        out
    })?;
    if !health.healthy {
        bail!("not healthy");
    }
    Ok(())
}
