//! `ztos plugins [NAME]`: the plugin processes and their state.

use std::io::Write;

use hyper::Method;
use ztos_model::api::plugins::PluginInfo;

use crate::client::Client;
use crate::format::{list, opt, print_answer, print_json, table, text, url_escape};

/// `ztos plugins`, or one plugin in detail (always JSON).
pub async fn run(
    client: &Client,
    name: Option<String>,
    json_output: bool,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    match name {
        Some(name) => {
            let info = client
                .json(
                    Method::GET,
                    &format!("/api/v1/plugins/{}", url_escape(&name)),
                    None,
                )
                .await?;
            print_json(out, &info)
        }
        None => {
            let list = client.json(Method::GET, "/api/v1/plugins", None).await?;
            print_answer(out, list, json_output, |p: &Vec<PluginInfo>| {
                format_plugins(p)
            })
        }
    }
}

pub(crate) fn format_plugins(plugins: &[PluginInfo]) -> String {
    table(
        &["NAME", "STATE", "VERSION", "OWNS", "REVISION"],
        plugins
            .iter()
            .map(|p| {
                vec![
                    text(&p.name),
                    p.state.to_string(),
                    opt(p.version.as_deref()),
                    list(&p.owns),
                    opt(p.last_applied_revision),
                ]
            })
            .collect(),
    )
}
