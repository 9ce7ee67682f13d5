//! ztos-test-plugin: a protocol test double, not a real plugin. It registers with ztosd
//! through the client library like any plugin, vetoes candidates that contain a configured
//! substring at a configured path, accepts everything else, and records every applied revision
//! in a file so tests can assert what it received. It has no datapath.
//!
//! ```text
//! ztos-test-plugin --socket PATH --name NAME --owns SECTION [--reads S]
//!                  [--veto PATH=SUBSTRING] [--log-file FILE]
//! ```
//!
//! Per apply it appends `{"revision":N,"sections":{...}}` as one line to `--log-file`, sets its
//! status to `{"applied_revision":N}`, exports the counter `ztos_test_plugin_applies_total`
//! and sends a log line. It answers the requests `echo` (returns the params) and
//! `applied_revision`.

use std::path::PathBuf;

use clap::Parser;
use serde_json::{json, Value};
use tokio::io::AsyncWriteExt;
use ztos_plugin::client::UnknownMethod;
use ztos_plugin::config_path;
use ztos_plugin::protocol::{DEFAULT_SOCKET_PATH, PROTOCOL_VERSION};
use ztos_plugin::{
    FieldError, Handler, LogLevel, Metric, MetricKind, PluginClient, PluginSender, Sections,
};

#[derive(Debug, Parser)]
#[command(
    version,
    about = "ZTOS plugin protocol test double (not a real plugin)"
)]
struct Args {
    /// The plugin host's unix socket.
    #[arg(long, default_value = DEFAULT_SOCKET_PATH)]
    socket: PathBuf,
    /// The name to register under.
    #[arg(long)]
    name: String,
    /// A config section to own (repeatable).
    #[arg(long, required = true)]
    owns: Vec<String>,
    /// A config section to read (repeatable).
    #[arg(long)]
    reads: Vec<String>,
    /// Veto candidates whose value at PATH contains SUBSTRING, as PATH=SUBSTRING (repeatable).
    #[arg(long, value_parser = parse_veto)]
    veto: Vec<Veto>,
    /// Append each applied revision and its sections as a JSON line to this file.
    #[arg(long)]
    log_file: Option<PathBuf>,
}

#[derive(Debug, Clone)]
struct Veto {
    path: String,
    substring: String,
}

fn parse_veto(text: &str) -> Result<Veto, String> {
    let (path, substring) = text
        .split_once('=')
        .ok_or_else(|| format!("veto {text:?} is not of the form PATH=SUBSTRING"))?;
    config_path::parse(path).map_err(|e| e.to_string())?;
    Ok(Veto {
        path: path.to_string(),
        substring: substring.to_string(),
    })
}

/// Why the test plugin failed an apply or a request.
#[derive(Debug, thiserror::Error)]
enum TestPluginError {
    #[error("cannot encode revision {revision}: {source}")]
    Encode {
        revision: u64,
        source: serde_json::Error,
    },
    #[error("cannot write {path}: {source}")]
    Record {
        path: String,
        source: std::io::Error,
    },
    #[error(transparent)]
    UnknownMethod(#[from] UnknownMethod),
}

struct TestPlugin {
    vetoes: Vec<Veto>,
    log_file: Option<PathBuf>,
    sender: PluginSender,
    applies: u64,
    applied_revision: Option<u64>,
}

impl TestPlugin {
    async fn record(&self, revision: u64, sections: &Sections) -> Result<(), TestPluginError> {
        let Some(path) = &self.log_file else {
            return Ok(());
        };
        let mut line = serde_json::to_vec(&json!({"revision": revision, "sections": sections}))
            .map_err(|source| TestPluginError::Encode { revision, source })?;
        line.push(b'\n');
        let record = |source| TestPluginError::Record {
            path: path.display().to_string(),
            source,
        };
        let mut file = tokio::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .await
            .map_err(record)?;
        file.write_all(&line).await.map_err(record)?;
        file.flush().await.map_err(record)
    }
}

impl Handler for TestPlugin {
    type Error = TestPluginError;

    async fn validate(&mut self, sections: Sections) -> Vec<FieldError> {
        let mut errors = Vec::new();
        for veto in &self.vetoes {
            // Paths were checked when parsing the arguments.
            let Ok(Some(value)) = config_path::lookup(&sections, &veto.path) else {
                continue;
            };
            let text = match value {
                Value::String(text) => text.clone(),
                other => other.to_string(),
            };
            if text.contains(&veto.substring) {
                errors.push(FieldError {
                    path: veto.path.clone(),
                    message: format!(
                        "vetoed by test plugin: {} contains {}",
                        veto.path, veto.substring
                    ),
                });
            }
        }
        errors
    }

    async fn apply(&mut self, revision: u64, sections: Sections) -> Result<(), TestPluginError> {
        self.record(revision, &sections).await?;
        self.applies += 1;
        self.applied_revision = Some(revision);
        self.sender.status(json!({ "applied_revision": revision }));
        self.sender.metrics(vec![Metric {
            name: "ztos_test_plugin_applies_total".to_string(),
            help: "Configuration revisions applied by the test plugin.".to_string(),
            kind: MetricKind::Counter,
            labels: Default::default(),
            value: self.applies as f64,
        }]);
        self.sender
            .log(LogLevel::Info, format!("applied revision {revision}"));
        Ok(())
    }

    async fn request(&mut self, method: String, params: Value) -> Result<Value, TestPluginError> {
        match method.as_str() {
            "echo" => Ok(params),
            "applied_revision" => Ok(json!(self.applied_revision)),
            _ => Err(UnknownMethod(method).into()),
        }
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let args = Args::parse();
    let mut client =
        PluginClient::new(args.name, env!("CARGO_PKG_VERSION")).socket_path(&args.socket);
    for section in args.owns {
        client = client.owns(section);
    }
    for section in args.reads {
        client = client.reads(section);
    }
    let plugin = TestPlugin {
        vetoes: args.veto,
        log_file: args.log_file,
        sender: client.sender(),
        applies: 0,
        applied_revision: None,
    };
    let shutdown = client.run(plugin).await;
    eprintln!(
        "ztos-test-plugin (protocol {PROTOCOL_VERSION}): shutting down: {}",
        shutdown.reason
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn veto_argument_needs_path_and_substring() {
        let veto = parse_veto("bgp.neighbors[0].description=evil").unwrap();
        assert_eq!(veto.path, "bgp.neighbors[0].description");
        assert_eq!(veto.substring, "evil");
        assert!(parse_veto("bgp").is_err());
        assert!(parse_veto("bgp..x=y").is_err());
    }
}
