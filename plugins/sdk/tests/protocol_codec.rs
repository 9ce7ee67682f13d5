//! Byte-level tests of the plugin protocol codec: every message is checked in both directions
//! against the exact line that goes over the wire (these are the examples in
//! docs/plugin-protocol.md).

use std::collections::BTreeMap;

use serde_json::json;
use ztos_plugin::protocol::{
    decode, encode, DecodeError, FieldError, HostMessage, LogLevel, Metric, MetricKind,
    PluginMessage, RequestResult, Sections, MAX_LINE_BYTES,
};

/// Asserts that `message` encodes to exactly `line` plus a newline and that `line` decodes
/// back to `message`.
fn both_ways<M>(message: M, line: &str)
where
    M: serde::Serialize + serde::de::DeserializeOwned + PartialEq + std::fmt::Debug,
{
    let encoded = encode(&message);
    assert_eq!(
        String::from_utf8(encoded.clone()).unwrap(),
        format!("{line}\n")
    );
    assert_eq!(decode::<M>(line.as_bytes()).unwrap(), message);
    assert_eq!(decode::<M>(&encoded).unwrap(), message);
}

#[test]
fn hello() {
    both_ways(
        PluginMessage::Hello {
            protocol_version: 1,
            name: "ztos-bgp".into(),
            version: "0.1.0".into(),
            owns: vec!["bgp".into()],
            reads: vec!["tenants".into()],
        },
        r#"{"type":"hello","protocol_version":1,"name":"ztos-bgp","version":"0.1.0","owns":["bgp"],"reads":["tenants"]}"#,
    );
}

#[test]
fn hello_without_reads_decodes() {
    let message: PluginMessage = decode(
        br#"{"type":"hello","protocol_version":1,"name":"ztos-macsec","version":"0.1.0","owns":["macsec"]}"#,
    )
    .unwrap();
    assert_eq!(
        message,
        PluginMessage::Hello {
            protocol_version: 1,
            name: "ztos-macsec".into(),
            version: "0.1.0".into(),
            owns: vec!["macsec".into()],
            reads: vec![],
        }
    );
}

#[test]
fn validate_result() {
    both_ways(
        PluginMessage::ValidateResult {
            id: 7,
            errors: vec![FieldError {
                path: "bgp.neighbors[0].remote_as".into(),
                message: "65001 is the local AS; use an iBGP neighbor without remote_as".into(),
            }],
        },
        r#"{"type":"validate_result","id":7,"errors":[{"path":"bgp.neighbors[0].remote_as","message":"65001 is the local AS; use an iBGP neighbor without remote_as"}]}"#,
    );
    both_ways(
        PluginMessage::ValidateResult {
            id: 8,
            errors: vec![],
        },
        r#"{"type":"validate_result","id":8,"errors":[]}"#,
    );
}

#[test]
fn apply_result() {
    both_ways(
        PluginMessage::ApplyResult {
            id: 9,
            revision: 12,
            error: None,
        },
        r#"{"type":"apply_result","id":9,"revision":12}"#,
    );
    both_ways(
        PluginMessage::ApplyResult {
            id: 10,
            revision: 13,
            error: Some("cannot bind 10.0.0.1:179: address in use".into()),
        },
        r#"{"type":"apply_result","id":10,"revision":13,"error":"cannot bind 10.0.0.1:179: address in use"}"#,
    );
}

#[test]
fn status() {
    both_ways(
        PluginMessage::Status {
            status: json!({"neighbors_established": 2}),
        },
        r#"{"type":"status","status":{"neighbors_established":2}}"#,
    );
}

#[test]
fn event() {
    both_ways(
        PluginMessage::Event {
            kind: "neighbor_down".into(),
            message: "neighbor 10.0.0.2 went down: hold timer expired".into(),
        },
        r#"{"type":"event","kind":"neighbor_down","message":"neighbor 10.0.0.2 went down: hold timer expired"}"#,
    );
}

#[test]
fn metrics() {
    both_ways(
        PluginMessage::Metrics {
            metrics: vec![Metric {
                name: "ztos_bgp_updates_received_total".into(),
                help: "BGP UPDATE messages received.".into(),
                kind: MetricKind::Counter,
                labels: BTreeMap::from([("neighbor".to_string(), "10.0.0.2".to_string())]),
                value: 42.0,
            }],
        },
        r#"{"type":"metrics","metrics":[{"name":"ztos_bgp_updates_received_total","help":"BGP UPDATE messages received.","kind":"counter","labels":{"neighbor":"10.0.0.2"},"value":42.0}]}"#,
    );
}

#[test]
fn log() {
    both_ways(
        PluginMessage::Log {
            level: LogLevel::Warn,
            message: "neighbor 10.0.0.2 sent a malformed UPDATE".into(),
        },
        r#"{"type":"log","level":"warn","message":"neighbor 10.0.0.2 sent a malformed UPDATE"}"#,
    );
}

#[test]
fn response() {
    both_ways(
        PluginMessage::Response {
            id: 11,
            result: RequestResult {
                ok: Some(json!({"neighbors": []})),
                error: None,
            },
        },
        r#"{"type":"response","id":11,"result":{"ok":{"neighbors":[]}}}"#,
    );
    both_ways(
        PluginMessage::Response {
            id: 12,
            result: RequestResult {
                ok: None,
                error: Some("unknown method bgp frobnicate".into()),
            },
        },
        r#"{"type":"response","id":12,"result":{"error":"unknown method bgp frobnicate"}}"#,
    );
}

#[test]
fn welcome() {
    both_ways(
        HostMessage::Welcome {
            protocol_version: 1,
            host_version: "0.1.0".into(),
        },
        r#"{"type":"welcome","protocol_version":1,"host_version":"0.1.0"}"#,
    );
}

#[test]
fn reject() {
    both_ways(
        HostMessage::Reject {
            reason: "section bgp is already owned by connected plugin ztos-bgp".into(),
        },
        r#"{"type":"reject","reason":"section bgp is already owned by connected plugin ztos-bgp"}"#,
    );
}

#[test]
fn validate() {
    let sections = Sections::from([
        ("bgp".to_string(), json!({"local_as": 65001})),
        ("tenants".to_string(), serde_json::Value::Null),
    ]);
    both_ways(
        HostMessage::Validate { id: 3, sections },
        r#"{"type":"validate","id":3,"sections":{"bgp":{"local_as":65001},"tenants":null}}"#,
    );
}

#[test]
fn apply() {
    let sections = Sections::from([("wireguard".to_string(), json!({"interfaces": []}))]);
    both_ways(
        HostMessage::Apply {
            id: 4,
            revision: 12,
            sections,
        },
        r#"{"type":"apply","id":4,"revision":12,"sections":{"wireguard":{"interfaces":[]}}}"#,
    );
}

#[test]
fn request() {
    both_ways(
        HostMessage::Request {
            id: 5,
            method: "bgp summary".into(),
            params: json!({"vrf": "default"}),
        },
        r#"{"type":"request","id":5,"method":"bgp summary","params":{"vrf":"default"}}"#,
    );
}

#[test]
fn shutdown() {
    both_ways(
        HostMessage::Shutdown {
            reason: "system is powering off".into(),
        },
        r#"{"type":"shutdown","reason":"system is powering off"}"#,
    );
}

#[test]
fn garbage_and_wrong_direction_are_refused() {
    assert!(matches!(
        decode::<PluginMessage>(b"not json"),
        Err(DecodeError::InvalidMessage { .. })
    ));
    // A host message is not a plugin message.
    assert!(decode::<PluginMessage>(
        br#"{"type":"welcome","protocol_version":1,"host_version":"0.1.0"}"#
    )
    .is_err());
    // A missing required field names the field.
    let error = decode::<HostMessage>(br#"{"type":"apply","id":1,"sections":{}}"#).unwrap_err();
    assert!(
        error.to_string().contains("missing field `revision`"),
        "{error}"
    );
}

#[test]
fn overlong_line_is_refused() {
    let line = vec![b' '; MAX_LINE_BYTES + 1];
    let error = decode::<PluginMessage>(&line).unwrap_err();
    assert_eq!(
        error.to_string(),
        format!(
            "line of {} bytes exceeds the limit of {MAX_LINE_BYTES} bytes",
            MAX_LINE_BYTES + 1
        )
    );
}
