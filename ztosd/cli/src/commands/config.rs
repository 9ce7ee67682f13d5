//! `ztos config show | set | delete | load | edit | discard | diff | commit | confirm |
//! rollback | revisions | schema`: the versioned configuration.

use std::io::Write;
use std::path::PathBuf;

use anyhow::{bail, Context};
use hyper::Method;
use serde_json::{json, Value};

use crate::args::ConfigCommand;
use crate::client::Client;
use ztos_model::api::config::{
    CandidateResponse, CandidateText, CommitOutcome, DiffResponse, RevisionMeta, RevisionResponse,
    RunningConfig,
};

use crate::format::{print_answer, table, text};

/// `ztos config ...`.
pub async fn run(
    client: &Client,
    command: ConfigCommand,
    json_output: bool,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    match command {
        ConfigCommand::Show {
            revision,
            candidate,
        } => {
            let value = if candidate {
                client
                    .json(Method::GET, "/api/v1/config/candidate", None)
                    .await?
            } else if let Some(n) = revision {
                client
                    .json(Method::GET, &format!("/api/v1/config/revisions/{n}"), None)
                    .await?
            } else {
                client.json(Method::GET, "/api/v1/config", None).await?
            };
            if candidate {
                print_answer(out, value, json_output, |c: &CandidateResponse| {
                    c.text.clone()
                })?;
            } else if revision.is_some() {
                print_answer(out, value, json_output, |r: &RevisionResponse| {
                    r.text.clone()
                })?;
            } else {
                print_answer(out, value, json_output, |r: &RunningConfig| r.text.clone())?;
            }
        }
        ConfigCommand::Set { path, value } => {
            let body = json!({ "path": path, "value": value });
            client
                .json(Method::PATCH, "/api/v1/config/candidate", Some(&body))
                .await?;
            if !json_output {
                writeln!(out, "candidate: {path} set; `ztos config diff` to review, `ztos config commit` to apply")?;
            }
        }
        ConfigCommand::Delete { path } => {
            let body = json!({ "path": path, "delete": true });
            client
                .json(Method::PATCH, "/api/v1/config/candidate", Some(&body))
                .await?;
            if !json_output {
                writeln!(out, "candidate: {path} deleted")?;
            }
        }
        ConfigCommand::Load { file } => {
            let text = read_file_or_stdin(&file)?;
            client
                .json(
                    Method::PUT,
                    "/api/v1/config/candidate",
                    Some(&serde_json::to_value(CandidateText { text })?),
                )
                .await?;
            if !json_output {
                writeln!(out, "candidate loaded from {}", file.display())?;
            }
        }
        ConfigCommand::Edit => {
            let current = client
                .json(Method::GET, "/api/v1/config/candidate", None)
                .await?;
            let text = serde_json::from_value::<CandidateResponse>(current)?.text;
            let edited = edit_in_editor(&text)?;
            if edited == text {
                writeln!(out, "no change")?;
                return Ok(());
            }
            client
                .json(
                    Method::PUT,
                    "/api/v1/config/candidate",
                    Some(&serde_json::to_value(CandidateText { text: edited })?),
                )
                .await?;
            writeln!(
                out,
                "candidate updated; `ztos config diff` to review, `ztos config commit` to apply"
            )?;
        }
        ConfigCommand::Discard => {
            client
                .json(Method::DELETE, "/api/v1/config/candidate", None)
                .await?;
            if !json_output {
                writeln!(out, "candidate discarded")?;
            }
        }
        ConfigCommand::Diff { from, to } => {
            let mut query = Vec::new();
            if let Some(from) = from {
                query.push(format!("from={from}"));
            }
            if let Some(to) = to {
                query.push(format!("to={to}"));
            }
            let value = client
                .json(
                    Method::GET,
                    &format!("/api/v1/config/diff?{}", query.join("&")),
                    None,
                )
                .await?;
            print_answer(out, value, json_output, |d: &DiffResponse| {
                if d.diff.is_empty() {
                    "no differences\n".to_string()
                } else {
                    d.diff.clone()
                }
            })?;
        }
        ConfigCommand::Commit {
            comment,
            confirmed,
            file,
        } => {
            let mut body = json!({});
            if let Some(file) = &file {
                body["text"] = Value::String(read_file_or_stdin(file)?);
            }
            if let Some(comment) = comment {
                body["comment"] = Value::String(comment);
            }
            if let Some(minutes) = confirmed {
                body["confirm_minutes"] = json!(minutes);
            }
            let outcome = client
                .json(Method::POST, "/api/v1/config/commit", Some(&body))
                .await?;
            print_answer(out, outcome, json_output, format_commit)?;
        }
        ConfigCommand::Confirm => {
            let meta = client
                .json(Method::POST, "/api/v1/config/confirm", Some(&json!({})))
                .await?;
            print_answer(out, meta, json_output, |r: &RevisionMeta| {
                format!("revision {} confirmed\n", r.number)
            })?;
        }
        ConfigCommand::Rollback { revision, comment } => {
            let mut body = json!({ "revision": revision });
            if let Some(comment) = comment {
                body["comment"] = Value::String(comment);
            }
            let outcome = client
                .json(Method::POST, "/api/v1/config/rollback", Some(&body))
                .await?;
            print_answer(out, outcome, json_output, format_commit)?;
        }
        ConfigCommand::Revisions => {
            let list = client
                .json(Method::GET, "/api/v1/config/revisions", None)
                .await?;
            print_answer(out, list, json_output, |list: &Vec<RevisionMeta>| {
                table(
                    &["REVISION", "TIME", "AUTHOR", "COMMENT"],
                    list.iter()
                        .map(|r| {
                            vec![
                                r.number.to_string(),
                                text(&r.time),
                                text(&r.author),
                                text(&r.comment),
                            ]
                        })
                        .collect(),
                )
            })?;
        }
        ConfigCommand::Schema => {
            let schema = client
                .json(Method::GET, "/api/v1/config/schema", None)
                .await?;
            writeln!(out, "{}", serde_json::to_string_pretty(&schema)?)?;
        }
    }
    Ok(())
}

pub(crate) fn read_file_or_stdin(file: &PathBuf) -> anyhow::Result<String> {
    if file.as_os_str() == "-" {
        let mut text = String::new();
        std::io::Read::read_to_string(&mut std::io::stdin(), &mut text)
            .context("reading standard input")?;
        Ok(text)
    } else {
        std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))
    }
}

pub(crate) fn edit_in_editor(text: &str) -> anyhow::Result<String> {
    let editor = std::env::var("VISUAL")
        .or_else(|_| std::env::var("EDITOR"))
        .unwrap_or_else(|_| "vi".into());
    let dir = std::env::temp_dir().join(format!("ztos-edit-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let path = dir.join("candidate.toml");
    std::fs::write(&path, text)?;
    let status = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!("{editor} \"$1\""))
        .arg("sh")
        .arg(&path)
        .status()
        .with_context(|| format!("starting editor {editor}"))?;
    let edited = std::fs::read_to_string(&path);
    let _ = std::fs::remove_dir_all(&dir);
    if !status.success() {
        bail!("editor {editor} exited with {status}; candidate unchanged");
    }
    Ok(edited?)
}

pub(crate) fn format_commit(c: &CommitOutcome) -> String {
    let mut out = format!("committed revision {}", c.revision.number);
    let changes = c.changes.len();
    out.push_str(&format!(
        " ({changes} kernel change{})\n",
        if changes == 1 { "" } else { "s" }
    ));
    for change in &c.changes {
        out.push_str(&format!("  {}\n", text(change)));
    }
    for warning in &c.warnings {
        out.push_str(&format!("warning: {}\n", text(warning)));
    }
    if let Some(deadline) = &c.confirm_deadline {
        out.push_str(&format!(
            "reverts at {deadline} unless confirmed with `ztos config confirm`\n"
        ));
    }
    out
}
