//! The `ztos system update | slots | rollback` commands: the CLI side of the update API.
//! `ztos system update FILE` streams the file (never read whole) and shows the daemon's
//! progress while it runs; `ztos system update URL` asks the daemon to download it.

use std::io::{IsTerminal, Write};
use std::path::Path;
use std::time::Duration;

use anyhow::{bail, Context};
use bytes::Bytes;
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;
use hyper::Method;
use serde_json::{json, Value};
use tokio::io::AsyncReadExt;
use ztos_model::api::update::{
    HistoryEntry, RebootWhen, RollbackOutcome, SlotsView, UpdateOutcome, UpdatePhase,
    UpdateProgress, UpdateStatus,
};
use ztos_model::init::AssessmentState;

use crate::args::{UpdateAction, UpdateArgs};
use crate::client::Client;
use crate::format::{print_answer, table};

/// Upload chunk size.
const CHUNK: usize = 1 << 20;

/// What `ztos system update` was given.
#[derive(Debug, Clone)]
pub struct UpdateCommand {
    /// A bundle file, or an `http://` / `https://` URL the box downloads itself.
    pub source: String,
    pub allow_downgrade: bool,
    /// `now`, `never` or an RFC 3339 time.
    pub reboot: String,
    pub tries: Option<u32>,
}

pub(crate) fn query(command: &UpdateCommand) -> String {
    let mut query = format!(
        "?reboot={}",
        command.reboot.replace('+', "%2B").replace(':', "%3A")
    );
    if command.allow_downgrade {
        query.push_str("&allow_downgrade=true");
    }
    if let Some(tries) = command.tries {
        query.push_str(&format!("&tries={tries}"));
    }
    query
}

/// `ztos system update FILE|URL | status | history`.
pub async fn run(
    client: &Client,
    args: UpdateArgs,
    json_output: bool,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    match (args.action, args.source) {
        (Some(UpdateAction::Status), _) => {
            let value = client
                .json(Method::GET, "/api/v1/system/update", None)
                .await?;
            print_answer(out, value, json_output, format_status)
        }
        (Some(UpdateAction::History), _) => {
            let value = client
                .json(Method::GET, "/api/v1/system/update/history", None)
                .await?;
            print_answer(out, value, json_output, |h: &Vec<HistoryEntry>| {
                format_history(h)
            })
        }
        (None, Some(source)) => {
            let command = UpdateCommand {
                source,
                allow_downgrade: args.allow_downgrade,
                reboot: args.reboot,
                tries: args.tries,
            };
            update(client, command, json_output, out).await
        }
        (None, None) => bail!("give a bundle FILE or URL, or `status` or `history`"),
    }
}

/// `ztos system update FILE|URL`.
pub async fn update(
    client: &Client,
    command: UpdateCommand,
    json_output: bool,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    RebootWhen::parse(&command.reboot)?;
    let show_progress = !json_output && std::io::stderr().is_terminal();
    let upload = async {
        if command.source.starts_with("http://") || command.source.starts_with("https://") {
            let body = json!({
                "url": command.source,
                "allow_downgrade": command.allow_downgrade,
                "reboot": command.reboot,
                "tries": command.tries,
            });
            client
                .json(Method::POST, "/api/v1/system/update/url", Some(&body))
                .await
                .map_err(anyhow::Error::from)
        } else {
            upload_file(client, Path::new(&command.source), &query(&command)).await
        }
    };
    // The daemon's progress, on the terminal, while the upload runs.
    let ticker = show_progress.then(|| {
        let client = client.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_millis(500)).await;
                let status = client
                    .json(Method::GET, "/api/v1/system/update", None)
                    .await
                    .ok()
                    .and_then(|value| serde_json::from_value::<UpdateStatus>(value).ok());
                if let Some(status) = status {
                    eprint!("\r\x1b[K{}", progress_line(&status.progress));
                }
            }
        })
    });
    let result = upload.await;
    if let Some(ticker) = ticker {
        ticker.abort();
        eprint!("\r\x1b[K");
    }
    let outcome = result?;
    if json_output {
        writeln!(out, "{}", serde_json::to_string_pretty(&outcome)?)?;
        return Ok(());
    }
    let outcome: UpdateOutcome = serde_json::from_value(outcome)?;
    let (version, slot, entry) = (&outcome.version, outcome.slot.as_str(), &outcome.entry);
    writeln!(
        out,
        "{version} written to slot {slot} and verified; boot entry {entry}"
    )?;
    match outcome.reboot.as_str() {
        "now" => writeln!(
            out,
            "rebooting into {version}; it must prove healthy within its boot tries or slot {} boots again",
            other_slot(slot)
        )?,
        "never" => writeln!(
            out,
            "{version} boots at the next reboot (ztos system reboot)"
        )?,
        time => writeln!(out, "reboot scheduled at {time}")?,
    }
    Ok(())
}

pub(crate) fn other_slot(slot: &str) -> &'static str {
    if slot == "a" {
        "b"
    } else {
        "a"
    }
}

/// Streams `path` to the upload route with its length, in 1 MiB chunks.
pub(crate) async fn upload_file(
    client: &Client,
    path: &Path,
    query: &str,
) -> anyhow::Result<Value> {
    let file = tokio::fs::File::open(path)
        .await
        .with_context(|| format!("opening {}", path.display()))?;
    let length = file
        .metadata()
        .await
        .with_context(|| format!("reading {}", path.display()))?
        .len();
    let display = path.display().to_string();
    let chunks = futures::stream::unfold(Some(file), move |file| {
        let display = display.clone();
        async move {
            let mut file = file?;
            let mut buffer = vec![0u8; CHUNK];
            match file.read(&mut buffer).await {
                Ok(0) => None,
                Ok(n) => {
                    buffer.truncate(n);
                    Some((Ok(Frame::data(Bytes::from(buffer))), Some(file)))
                }
                Err(err) => Some((
                    Err(std::io::Error::new(
                        err.kind(),
                        format!("reading {display}: {err}"),
                    )),
                    None,
                )),
            }
        }
    });
    let response = client
        .send_body(
            Method::POST,
            &format!("/api/v1/system/update{query}"),
            Some("application/octet-stream"),
            Some(length),
            StreamBody::new(chunks),
        )
        .await?;
    let bytes = response
        .into_body()
        .collect()
        .await
        .context("reading the answer")?
        .to_bytes();
    serde_json::from_slice(&bytes).context("the answer is not JSON")
}

/// One line of progress: `writing-root 0.2.0  45%  120.0/266.0 MiB`.
pub fn progress_line(status: &UpdateProgress) -> String {
    let state = phase_name(status.state);
    let version = status.version.as_deref().unwrap_or("");
    let (done, total) = (status.bytes_done, status.bytes_total);
    let mib = |b: u64| b as f64 / (1024.0 * 1024.0);
    match status.state {
        UpdatePhase::WritingRoot | UpdatePhase::Checking if total > 0 => format!(
            "{state} {version} {:3}% {:.1}/{:.1} MiB",
            done * 100 / total,
            mib(done),
            mib(total)
        ),
        _ => format!(
            "{state} {version} received {:.1} MiB",
            mib(status.bytes_received)
        ),
    }
}

/// A phase as the API writes it (`writing-root`).
fn phase_name(phase: UpdatePhase) -> String {
    serde_json::to_value(phase)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_else(|| "?".into())
}

/// `ztos system update status`.
pub fn format_status(status: &UpdateStatus) -> String {
    let mut text = String::new();
    let progress = &status.progress;
    if progress.state == UpdatePhase::Idle {
        text.push_str("no update since ztosd started\n");
    } else {
        text.push_str(&format!("state:    {}\n", progress_line(progress)));
        for (label, value) in [
            ("version", &progress.version),
            ("slot", &progress.slot),
            ("started", &progress.started),
            ("source", &progress.source),
        ] {
            if let Some(value) = value {
                text.push_str(&format!("{label:<9} {value}\n"));
            }
        }
        if !progress.message.is_empty() {
            text.push_str(&format!("message:  {}\n", progress.message));
        }
    }
    if let Some(pull) = &status.pull {
        let get = |v: &Option<String>| v.clone().unwrap_or_else(|| "-".into());
        text.push_str(&format!(
            "pull:     {} (last check {}: {}; next {})\n",
            pull.server,
            get(&pull.last_check),
            get(&pull.last_result),
            get(&pull.next_check)
        ));
    }
    text
}

/// `ztos system update history`.
pub fn format_history(history: &[HistoryEntry]) -> String {
    let rows = history
        .iter()
        .map(|e| {
            vec![
                e.time.clone(),
                serde_json::to_value(e.event)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_string))
                    .unwrap_or_default(),
                e.version.clone().unwrap_or_default(),
                e.slot.clone().unwrap_or_default(),
                e.message.clone(),
            ]
        })
        .collect();
    table(&["TIME", "EVENT", "VERSION", "SLOT", "MESSAGE"], rows)
}

/// `ztos system slots`.
pub fn format_slots(view: &SlotsView) -> String {
    let rows = view
        .slots
        .iter()
        .map(|s| {
            let flag = |on: bool| if on { "yes" } else { "" };
            let status = match s.tries_left {
                Some(left) => format!("trial ({left} tries left)"),
                None => s.status.clone(),
            };
            let mut note = s.root.clone().unwrap_or_default();
            if let Some(why) = &s.unavailable {
                if !note.is_empty() {
                    note.push_str("; ");
                }
                note.push_str(why);
            }
            vec![
                s.slot.clone(),
                s.version.clone().unwrap_or_else(|| "-".into()),
                status,
                flag(s.active).to_string(),
                flag(s.next_boot).to_string(),
                s.entry.clone().unwrap_or_else(|| "-".into()),
                note,
            ]
        })
        .collect();
    let mut text = table(
        &[
            "SLOT",
            "VERSION",
            "STATUS",
            "ACTIVE",
            "NEXT BOOT",
            "ENTRY",
            "NOTE",
        ],
        rows,
    );
    if let Some(boot) = view
        .boot
        .as_ref()
        .filter(|b| b.state == AssessmentState::RolledBack)
    {
        text.push_str(&format!(
            "this boot is a rollback: rolled back from {}\n",
            boot.rolled_back_from.as_deref().unwrap_or("?")
        ));
    }
    text
}

/// `ztos system rollback`.
pub async fn rollback(
    client: &Client,
    reboot: bool,
    json_output: bool,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    let path = format!("/api/v1/system/rollback?reboot={reboot}");
    let outcome = client.json(Method::POST, &path, Some(&json!({}))).await?;
    if json_output {
        writeln!(out, "{}", serde_json::to_string_pretty(&outcome)?)?;
        return Ok(());
    }
    let outcome: RollbackOutcome = serde_json::from_value(outcome)?;
    let slot = &outcome.slot;
    let version = outcome.version.as_deref().unwrap_or("?");
    if reboot {
        writeln!(out, "slot {slot} ({version}) boots next; rebooting")?;
    } else {
        writeln!(
            out,
            "slot {slot} ({version}) boots at the next reboot (ztos system reboot)"
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_options_are_encoded() {
        let command = UpdateCommand {
            source: "x.ztosb".into(),
            allow_downgrade: true,
            reboot: "2026-01-01T22:00:00+01:00".into(),
            tries: Some(5),
        };
        assert_eq!(
            query(&command),
            "?reboot=2026-01-01T22%3A00%3A00%2B01%3A00&allow_downgrade=true&tries=5"
        );
    }

    #[test]
    fn progress_and_slots_render_for_people() {
        let status: UpdateProgress = serde_json::from_value(json!({"state": "writing-root",
            "version": "0.2.0", "bytes_done": 1048576, "bytes_total": 4194304,
            "bytes_received": 5000000, "message": ""}))
        .unwrap();
        assert_eq!(
            progress_line(&status),
            "writing-root 0.2.0  25% 1.0/4.0 MiB"
        );
        let view: SlotsView = serde_json::from_value(json!({"current_version": "0.1.0", "slots": [
            {"slot": "a", "version": "0.1.0", "status": "good", "active": true, "next_boot": false,
             "entry": "ztos-1-a.conf"},
            {"slot": "b", "version": "0.2.0", "status": "trial", "tries_left": 3, "active": false,
             "next_boot": true, "entry": "ztos-2-b+3.conf", "root": "written"}],
            "boot": {"state": "rolled-back", "rolled_back_from": "0.3.0"}}))
        .unwrap();
        let text = format_slots(&view);
        assert!(text.contains("trial (3 tries left)"), "{text}");
        assert!(text.contains("rolled back from 0.3.0"), "{text}");
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[1].starts_with("a "), "{text}");
        assert!(lines[2].contains("ztos-2-b+3.conf"), "{text}");
    }
}
