//! `ztos monitoring logs [--follow]` and `ztos monitoring metrics`.

use std::io::Write;

use anyhow::Context;
use http_body_util::BodyExt;
use hyper::Method;
use ztos_model::api::monitoring::LogEntry;

use crate::args::MonitoringCommand;
use crate::client::Client;
use crate::format::{print_answer, text, url_escape};

/// `ztos monitoring ...`.
pub async fn run(
    client: &Client,
    command: MonitoringCommand,
    json_output: bool,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    match command {
        MonitoringCommand::Logs {
            follow,
            since,
            service,
            limit,
        } => {
            let mut query = Vec::new();
            if let Some(since) = &since {
                query.push(format!("since={}", url_escape(since)));
            }
            if let Some(service) = &service {
                query.push(format!("service={}", url_escape(service)));
            }
            if let Some(limit) = limit {
                query.push(format!("limit={limit}"));
            }
            if follow {
                query.push("follow=true".into());
            }
            let path = format!("/api/v1/monitoring/logs?{}", query.join("&"));
            if follow {
                follow_logs(client, &path, json_output, out).await?;
            } else {
                let entries = client.json(Method::GET, &path, None).await?;
                print_answer(out, entries, json_output, |entries: &Vec<LogEntry>| {
                    entries.iter().map(format_log_line).collect()
                })?;
            }
        }
        MonitoringCommand::Metrics => {
            write!(out, "{}", client.text(Method::GET, "/metrics").await?)?;
        }
    }
    Ok(())
}

pub(crate) async fn follow_logs(
    client: &Client,
    path: &str,
    json_output: bool,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    let response = client.send(Method::GET, path, None).await?;
    let mut body = response.into_body();
    let mut pending = Vec::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.context("reading the log stream")?;
        let Some(data) = frame.data_ref() else {
            continue;
        };
        pending.extend_from_slice(data);
        while let Some(newline) = pending.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = pending.drain(..=newline).collect();
            let line = String::from_utf8_lossy(&line);
            let line = line.trim();
            if line.is_empty() {
                continue;
            }
            if json_output {
                writeln!(out, "{line}")?;
            } else if let Ok(entry) = serde_json::from_str::<LogEntry>(line) {
                write!(out, "{}", format_log_line(&entry))?;
            }
            out.flush()?;
        }
    }
    Ok(())
}

pub(crate) fn format_log_line(entry: &LogEntry) -> String {
    format!(
        "{} {:<5} {:<16} {}\n",
        text(&entry.time),
        entry.level.to_string(),
        text(&entry.service),
        text(&entry.message)
    )
}
