//! Runs the real `ztos-test-plugin` binary (and so the client library) against a tiny host
//! built from the protocol module: hello, apply with status/metrics/log, veto, requests,
//! reconnect after the host goes away (state kept, config given again) and shutdown.

use std::path::Path;
use std::time::Duration;

use serde_json::{json, Value};
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{UnixListener, UnixStream};
use tokio::process::{Child, Command};
use ztos_plugin::protocol::{FieldError, HostMessage, PluginMessage, Sections, PROTOCOL_VERSION};
use ztos_plugin::transport::{write_message, MessageReader};

const STEP: Duration = Duration::from_secs(10);

struct Connection {
    reader: MessageReader<OwnedReadHalf>,
    writer: OwnedWriteHalf,
}

impl Connection {
    async fn accept(listener: &UnixListener) -> Connection {
        let (stream, _) = tokio::time::timeout(STEP, listener.accept())
            .await
            .expect("the plugin connects")
            .unwrap();
        Connection::from_stream(stream)
    }

    fn from_stream(stream: UnixStream) -> Connection {
        let (read, writer) = stream.into_split();
        Connection {
            reader: MessageReader::new(read),
            writer,
        }
    }

    async fn send(&mut self, message: HostMessage) {
        write_message(&mut self.writer, &message).await.unwrap();
    }

    async fn receive(&mut self) -> PluginMessage {
        tokio::time::timeout(STEP, self.reader.next_message::<PluginMessage>())
            .await
            .expect("the plugin sends a message in time")
            .unwrap()
            .expect("the plugin keeps the connection open")
    }

    /// Reads messages until `wanted` has matched one of each; returns everything read.
    async fn receive_all(
        &mut self,
        wanted: &[&dyn Fn(&PluginMessage) -> bool],
    ) -> Vec<PluginMessage> {
        let mut seen = vec![false; wanted.len()];
        let mut messages = Vec::new();
        while seen.iter().any(|s| !s) {
            let message = self.receive().await;
            for (i, matches) in wanted.iter().enumerate() {
                if matches(&message) {
                    seen[i] = true;
                }
            }
            messages.push(message);
        }
        messages
    }

    /// Accepts the hello and sends welcome.
    async fn handshake(&mut self) -> PluginMessage {
        let hello = self.receive().await;
        self.send(HostMessage::Welcome {
            protocol_version: PROTOCOL_VERSION,
            host_version: "test-host".into(),
        })
        .await;
        hello
    }
}

fn spawn_plugin(socket: &Path, log_file: &Path) -> Child {
    Command::new(env!("CARGO_BIN_EXE_ztos-test-plugin"))
        .arg("--socket")
        .arg(socket)
        .args([
            "--name",
            "ztos-test-plugin",
            "--owns",
            "bgp",
            "--reads",
            "tenants",
        ])
        .args(["--veto", "bgp.neighbors[0].description=evil"])
        .arg("--log-file")
        .arg(log_file)
        .kill_on_drop(true)
        .spawn()
        .expect("ztos-test-plugin starts")
}

fn sections(description: &str) -> Sections {
    Sections::from([
        (
            "bgp".to_string(),
            json!({"local_as": 65001, "neighbors": [{"address": "10.0.0.2", "remote_as": 65002, "description": description}]}),
        ),
        ("tenants".to_string(), Value::Null),
    ])
}

fn is_apply_result(id: u64, revision: u64) -> impl Fn(&PluginMessage) -> bool {
    move |m| {
        *m == PluginMessage::ApplyResult {
            id,
            revision,
            error: None,
        }
    }
}

fn is_status(revision: u64) -> impl Fn(&PluginMessage) -> bool {
    move |m| {
        *m == PluginMessage::Status {
            status: json!({"applied_revision": revision}),
        }
    }
}

fn is_applies_metric(count: f64) -> impl Fn(&PluginMessage) -> bool {
    move |m| match m {
        PluginMessage::Metrics { metrics } => {
            metrics.len() == 1
                && metrics[0].name == "ztos_test_plugin_applies_total"
                && metrics[0].value == count
        }
        _ => false,
    }
}

fn is_log(text: &'static str) -> impl Fn(&PluginMessage) -> bool {
    move |m| matches!(m, PluginMessage::Log { message, .. } if message == text)
}

#[tokio::test]
async fn test_plugin_registers_applies_vetoes_and_survives_host_restart() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("plugin.sock");
    let log_file = dir.path().join("applied.jsonl");
    let listener = UnixListener::bind(&socket).unwrap();
    let mut plugin = spawn_plugin(&socket, &log_file);

    let mut host = Connection::accept(&listener).await;
    assert_eq!(
        host.handshake().await,
        PluginMessage::Hello {
            protocol_version: PROTOCOL_VERSION,
            name: "ztos-test-plugin".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            owns: vec!["bgp".into()],
            reads: vec!["tenants".into()],
        }
    );

    host.send(HostMessage::Apply {
        id: 1,
        revision: 5,
        sections: sections("spine 1"),
    })
    .await;
    host.receive_all(&[
        &is_apply_result(1, 5),
        &is_status(5),
        &is_applies_metric(1.0),
        &is_log("applied revision 5"),
    ])
    .await;

    host.send(HostMessage::Validate {
        id: 2,
        sections: sections("evil twin"),
    })
    .await;
    assert_eq!(
        host.receive().await,
        PluginMessage::ValidateResult {
            id: 2,
            errors: vec![FieldError {
                path: "bgp.neighbors[0].description".into(),
                message: "vetoed by test plugin: bgp.neighbors[0].description contains evil".into(),
            }],
        }
    );
    host.send(HostMessage::Validate {
        id: 3,
        sections: sections("spine 2"),
    })
    .await;
    assert_eq!(
        host.receive().await,
        PluginMessage::ValidateResult {
            id: 3,
            errors: vec![]
        }
    );

    host.send(HostMessage::Request {
        id: 4,
        method: "echo".into(),
        params: json!({"x": [1, 2]}),
    })
    .await;
    assert_eq!(
        host.receive().await,
        PluginMessage::Response {
            id: 4,
            result: Ok(json!({"x": [1, 2]})).into()
        }
    );
    host.send(HostMessage::Request {
        id: 5,
        method: "frobnicate".into(),
        params: Value::Null,
    })
    .await;
    assert_eq!(
        host.receive().await,
        PluginMessage::Response {
            id: 5,
            result: Err("unknown method frobnicate".to_string()).into()
        }
    );

    // The host goes away (ztosd restarts): the plugin keeps running and comes back.
    drop(host);
    drop(listener);
    std::fs::remove_file(&socket).unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        plugin.try_wait().unwrap().is_none(),
        "the plugin must not exit when the host goes away"
    );
    let listener = UnixListener::bind(&socket).unwrap();
    let mut host = Connection::accept(&listener).await;
    assert!(matches!(
        host.handshake().await,
        PluginMessage::Hello { .. }
    ));
    // The latest status and metrics come again right away, before anything else happens.
    // (Waiting for them before the next Apply matters: the outbox keeps only the latest
    // status, so an Apply racing the resend could legitimately replace status 5 by 6.)
    host.receive_all(&[&is_status(5), &is_applies_metric(1.0)])
        .await;
    // The applies counter kept counting across the reconnect.
    host.send(HostMessage::Apply {
        id: 1,
        revision: 6,
        sections: sections("spine 3"),
    })
    .await;
    host.receive_all(&[&is_apply_result(1, 6), &is_applies_metric(2.0)])
        .await;

    host.send(HostMessage::Shutdown {
        reason: "test over".into(),
    })
    .await;
    let status = tokio::time::timeout(STEP, plugin.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(status.success());

    let applied: Vec<Value> = std::fs::read_to_string(&log_file)
        .unwrap()
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    assert_eq!(
        applied,
        vec![
            json!({"revision": 5, "sections": sections("spine 1")}),
            json!({"revision": 6, "sections": sections("spine 3")}),
        ]
    );
}

#[tokio::test]
async fn test_plugin_retries_after_reject() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("plugin.sock");
    let log_file = dir.path().join("applied.jsonl");
    let listener = UnixListener::bind(&socket).unwrap();
    let _plugin = spawn_plugin(&socket, &log_file);

    let mut first = Connection::accept(&listener).await;
    assert!(matches!(first.receive().await, PluginMessage::Hello { .. }));
    first
        .send(HostMessage::Reject {
            reason: "section bgp is already owned by connected plugin ztos-bgp".into(),
        })
        .await;
    drop(first);

    let mut second = Connection::accept(&listener).await;
    assert!(matches!(
        second.handshake().await,
        PluginMessage::Hello { .. }
    ));
    second
        .send(HostMessage::Apply {
            id: 1,
            revision: 1,
            sections: sections("leaf"),
        })
        .await;
    second.receive_all(&[&is_apply_result(1, 1)]).await;
}
