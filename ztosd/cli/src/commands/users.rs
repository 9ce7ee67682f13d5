//! `ztos user list | passwd | delete`: console users (passwords for the serial and screen
//! console).

use std::io::Write;

use hyper::Method;
use serde_json::json;
use ztos_model::api::users::UserInfo;

use crate::args::UserCommand;
use crate::client::Client;
use crate::console::login::read_new_password;
use crate::format::{print_answer, role_name, table};

/// Runs a `ztos user` command against `client`.
pub async fn run(
    client: &Client,
    command: UserCommand,
    json_output: bool,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    match command {
        UserCommand::List => {
            let list = client.json(Method::GET, "/api/v1/users", None).await?;
            print_answer(out, list, json_output, |list: &Vec<UserInfo>| {
                let rows = list
                    .iter()
                    .map(|u| {
                        vec![
                            u.name.clone(),
                            role_name(u.role).to_string(),
                            u.created.clone(),
                            u.changed.clone(),
                        ]
                    })
                    .collect();
                table(&["NAME", "ROLE", "CREATED", "CHANGED"], rows)
            })?;
        }
        UserCommand::Passwd { name, role } => {
            let password = read_new_password(&name)?;
            let mut body = json!({ "password": password });
            if let Some(role) = role {
                body["role"] = json!(role.as_str());
            }
            let info = client
                .json(
                    Method::PUT,
                    &format!("/api/v1/users/{}/password", path_segment(&name)),
                    Some(&body),
                )
                .await?;
            print_answer(out, info, json_output, |u: &UserInfo| {
                format!("password of {name} ({}) set\n", role_name(u.role))
            })?;
        }
        UserCommand::Delete { name } => {
            client
                .json(
                    Method::DELETE,
                    &format!("/api/v1/users/{}", path_segment(&name)),
                    None,
                )
                .await?;
            if !json_output {
                writeln!(out, "user {name} deleted")?;
            }
        }
    }
    Ok(())
}

/// User names are `[a-z0-9._-]`; anything else is escaped so it reaches the API's name check.
pub(crate) fn path_segment(name: &str) -> String {
    name.bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'.' | b'_' | b'-' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}
