//! `ztos token create | list | revoke`: API tokens for remote access.

use std::io::Write;

use hyper::Method;
use ztos_model::api::tokens::{CreateToken, CreatedToken, TokenInfo};

use crate::args::TokenCommand;
use crate::client::Client;
use crate::format::{opt, print_answer, role_name, table, text, url_escape};

/// `ztos token ...`.
pub async fn run(
    client: &Client,
    command: TokenCommand,
    json_output: bool,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    match command {
        TokenCommand::Create { name, role } => {
            let body = serde_json::to_value(CreateToken {
                name,
                role: role.role(),
            })?;
            let created = client
                .json(Method::POST, "/api/v1/tokens", Some(&body))
                .await?;
            print_answer(out, created, json_output, |c: &CreatedToken| {
                format!(
                    "token {} ({}) created; its secret is shown only now:\n{}\n",
                    text(&c.token.name),
                    role_name(c.token.role),
                    text(&c.secret)
                )
            })?;
        }
        TokenCommand::List => {
            let list = client.json(Method::GET, "/api/v1/tokens", None).await?;
            print_answer(out, list, json_output, |list: &Vec<TokenInfo>| {
                table(
                    &["NAME", "ROLE", "CREATED", "LAST USED"],
                    list.iter()
                        .map(|t| {
                            vec![
                                text(&t.name),
                                role_name(t.role).to_string(),
                                text(&t.created),
                                opt(t.last_used.as_deref()),
                            ]
                        })
                        .collect(),
                )
            })?;
        }
        TokenCommand::Revoke { name } => {
            client
                .json(
                    Method::DELETE,
                    &format!("/api/v1/tokens/{}", url_escape(&name)),
                    None,
                )
                .await?;
            if !json_output {
                writeln!(out, "token {name} revoked")?;
            }
        }
    }
    Ok(())
}
