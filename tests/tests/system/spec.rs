//! The seed document's management interfaces, driven against a real ztosd in a network
//! namespace: the three CLI commands and three API routes exactly as written there, and the
//! bad inputs an operator can throw at them. Every case checks that a rejected change leaves
//! the previous revision running.

use std::process::Output;

use serde_json::Value;
use ztos_tests::lab::{Lab, ZtosdHandle};

const BASE_CONFIG: &str = r#"
[system]
hostname = "leaf1"

[[interfaces]]
name = "lo"
kind = "loopback"

[[bridges]]
name = "br-keep"
"#;

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// Runs the CLI and insists that it succeeded.
fn ztos_ok(node: &ZtosdHandle, args: &[&str]) -> String {
    let output = node.ztos(args);
    assert!(
        output.status.success(),
        "ztos {args:?} failed: {}{}",
        stdout(&output),
        stderr(&output)
    );
    stdout(&output)
}

/// Runs the CLI and insists that it failed; returns its error output.
fn ztos_err(node: &ZtosdHandle, args: &[&str]) -> String {
    let output = node.ztos(args);
    assert!(
        !output.status.success(),
        "ztos {args:?} unexpectedly succeeded: {}",
        stdout(&output)
    );
    let err = stderr(&output);
    assert!(
        err.starts_with("error: "),
        "error output is not one clear line: {err}"
    );
    err
}

fn json(node: &ZtosdHandle, args: &[&str]) -> Value {
    let mut all = vec!["--json"];
    all.extend_from_slice(args);
    let text = ztos_ok(node, &all);
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("ztos {args:?}: not JSON ({e}): {text}"))
}

fn revision_count(node: &ZtosdHandle) -> usize {
    json(node, &["config", "revisions"])
        .as_array()
        .expect("revisions is a list")
        .len()
}

fn running_revision(node: &ZtosdHandle) -> u64 {
    json(node, &["config", "show"])["revision"]["number"]
        .as_u64()
        .expect("a running revision")
}

/// `curl` inside the node's namespace against its HTTPS API; returns (status, body).
fn curl(
    node: &ZtosdHandle,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<&str>,
) -> (u16, String) {
    let ca = node.state_dir().join("tls/ca.pem");
    let url = format!("https://127.0.0.1:8443{path}");
    let mut args: Vec<String> = vec![
        "curl".into(),
        "-sS".into(),
        "--max-time".into(),
        "30".into(),
        "--cacert".into(),
        ca.display().to_string(),
        "-X".into(),
        method.into(),
        "-w".into(),
        "\n%{http_code}".into(),
    ];
    if let Some(token) = token {
        args.push("-H".into());
        args.push(format!("Authorization: Bearer {token}"));
    }
    if let Some(body) = body {
        args.push("-H".into());
        args.push("Content-Type: application/json".into());
        args.push("--data-binary".into());
        args.push(body.into());
    }
    args.push(url);
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let output = node.exec(&refs);
    let text = stdout(&output);
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", &text));
    // 000: curl got no HTTP answer at all (reset, timeout); its stderr says which.
    let code: u16 = code.trim().parse().unwrap_or(0);
    assert_ne!(
        code,
        0,
        "curl {method} {path}: no HTTP answer ({}): {}",
        output.status,
        stderr(&output)
    );
    (code, body.to_string())
}

fn create_token(node: &ZtosdHandle, name: &str, role: &str) -> String {
    let created = json(node, &["token", "create", name, "--role", role]);
    created["secret"]
        .as_str()
        .expect("the secret is returned once")
        .to_string()
}

#[test]
fn spec_cli_commands_work_as_written() {
    let Some(lab) = Lab::new_if_root("spec-cli") else {
        return;
    };
    let node = lab.node("n1").start_ztosd(BASE_CONFIG);
    assert_eq!(revision_count(&node), 1, "the initial config is revision 1");

    // ztos network configure --bgp --peer 10.1.1.1 --as 64512
    let out = ztos_ok(
        &node,
        &[
            "network",
            "configure",
            "--bgp",
            "--peer",
            "10.1.1.1",
            "--as",
            "64512",
        ],
    );
    assert!(out.contains("committed revision 2"), "{out}");
    assert_eq!(revision_count(&node), 2);
    let running = json(&node, &["config", "show"]);
    let neighbors = &running["config"]["bgp"]["neighbors"];
    assert_eq!(neighbors[0]["address"], "10.1.1.1", "{running}");
    assert_eq!(neighbors[0]["remote_as"], 64512);
    assert!(running["text"].as_str().unwrap().contains("10.1.1.1"));
    // Configuring the same peer again changes it in place rather than adding a second one.
    ztos_ok(
        &node,
        &[
            "network",
            "configure",
            "--bgp",
            "--peer",
            "10.1.1.1",
            "--as",
            "64513",
        ],
    );
    let neighbors = json(&node, &["config", "show"])["config"]["bgp"]["neighbors"].clone();
    assert_eq!(neighbors.as_array().unwrap().len(), 1);
    assert_eq!(neighbors[0]["remote_as"], 64513);

    // ztos security status
    let out = ztos_ok(&node, &["security", "status"]);
    assert!(out.contains("wireguard") && out.contains("macsec"), "{out}");
    assert!(out.contains("not configured"), "{out}");
    assert!(out.contains("absent"), "{out}");
    let status = json(&node, &["security", "status"]);
    for datapath in ["wireguard", "macsec"] {
        assert_eq!(status[datapath]["configured"], false, "{status}");
        assert_eq!(status[datapath]["plugin_state"], "absent", "{status}");
    }

    // ztos monitoring logs
    let out = ztos_ok(&node, &["monitoring", "logs"]);
    assert!(out.contains("commit revision 2"), "{out}");
    let filtered = json(
        &node,
        &["monitoring", "logs", "--service", "ztosd", "--since", "10m"],
    );
    assert!(filtered
        .as_array()
        .unwrap()
        .iter()
        .all(|e| e["service"] == "ztosd"));
    assert!(!filtered.as_array().unwrap().is_empty());
    let err = ztos_err(&node, &["monitoring", "logs", "--since", "yesterday-ish"]);
    assert!(err.contains("since"), "{err}");

    // The rest of the CLI surface answers too.
    let interfaces = json(&node, &["interfaces"]);
    assert!(
        interfaces
            .as_array()
            .unwrap()
            .iter()
            .any(|i| i["name"] == "br-keep"),
        "{interfaces}"
    );
    ztos_ok(&node, &["plugins"]);
    let diff = ztos_ok(&node, &["config", "diff", "2"]);
    assert!(
        diff.contains("-remote_as = 64512") || diff.contains("64512"),
        "{diff}"
    );
}

#[test]
fn spec_api_routes_over_https_with_tokens() {
    let Some(lab) = Lab::new_if_root("spec-api") else {
        return;
    };
    let node = lab.node("n1").start_ztosd(BASE_CONFIG);
    let admin = create_token(&node, "automation", "admin");
    let reader = create_token(&node, "grafana", "read");

    // /health needs no token; everything else does.
    let (code, body) = curl(&node, "GET", "/health", None, None);
    assert_eq!(code, 200, "{body}");
    let (code, body) = curl(&node, "GET", "/api/v1/security/status", None, None);
    assert_eq!(code, 401, "{body}");
    let (code, _) = curl(
        &node,
        "GET",
        "/api/v1/security/status",
        Some("ztos_not-a-real-token"),
        None,
    );
    assert_eq!(code, 401);

    // GET /api/v1/security/status
    let (code, body) = curl(&node, "GET", "/api/v1/security/status", Some(&reader), None);
    assert_eq!(code, 200, "{body}");
    let status: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(status["wireguard"]["configured"], false);
    assert_eq!(status["macsec"]["plugin_state"], "absent");

    // POST /api/v1/network/configure: a read token may not, an admin token may.
    let request = r#"{"bgp": {"peer": "10.1.1.1", "remote_as": 64512}}"#;
    let (code, body) = curl(
        &node,
        "POST",
        "/api/v1/network/configure",
        Some(&reader),
        Some(request),
    );
    assert_eq!(code, 403, "{body}");
    assert_eq!(revision_count(&node), 1);
    let (code, body) = curl(
        &node,
        "POST",
        "/api/v1/network/configure",
        Some(&admin),
        Some(request),
    );
    assert_eq!(code, 200, "{body}");
    let outcome: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(outcome["revision"]["number"], 2);
    assert_eq!(outcome["revision"]["author"], "token:automation");
    assert_eq!(
        json(&node, &["config", "show"])["config"]["bgp"]["neighbors"][0]["address"],
        "10.1.1.1"
    );

    // Invalid bodies: 4xx naming the field, nothing committed.
    let (code, body) = curl(
        &node,
        "POST",
        "/api/v1/network/configure",
        Some(&admin),
        Some(r#"{"bgp": {"peer": "not-an-address", "remote_as": 64512}}"#),
    );
    assert!((400..500).contains(&code), "{code} {body}");
    assert!(body.contains("peer"), "{body}");
    let (code, body) = curl(
        &node,
        "POST",
        "/api/v1/network/configure",
        Some(&admin),
        Some("{not json"),
    );
    assert_eq!(code, 400, "{body}");
    let (code, body) = curl(
        &node,
        "POST",
        "/api/v1/network/configure",
        Some(&admin),
        Some(r#"{"bgp": {"peer": "10.1.1.2", "remote_as": 0}}"#),
    );
    assert_eq!(code, 422, "{body}");
    assert!(
        body.contains("remote_as") && body.contains("0 is not a valid AS number"),
        "{body}"
    );
    assert_eq!(revision_count(&node), 2);

    // GET /api/v1/monitoring/logs
    let (code, body) = curl(
        &node,
        "GET",
        "/api/v1/monitoring/logs?service=ztosd",
        Some(&reader),
        None,
    );
    assert_eq!(code, 200, "{body}");
    let logs: Value = serde_json::from_str(&body).unwrap();
    assert!(
        logs.as_array().unwrap().iter().any(|e| e["message"]
            .as_str()
            .unwrap_or("")
            .contains("commit revision 2")),
        "{body}"
    );

    // The OpenAPI document and the metrics are served.
    let (code, body) = curl(&node, "GET", "/api/v1/openapi.json", Some(&reader), None);
    assert_eq!(code, 200);
    assert!(
        body.contains("\"openapi\":\"3.1") || body.contains("\"openapi\": \"3.1"),
        "{}",
        &body[..body.len().min(200)]
    );
    let (code, body) = curl(&node, "GET", "/metrics", Some(&reader), None);
    assert_eq!(code, 200);
    assert!(body.contains("ztos_config_revision 2"), "{body}");

    // A revoked token stops working.
    ztos_ok(&node, &["token", "revoke", "grafana"]);
    let (code, _) = curl(&node, "GET", "/api/v1/security/status", Some(&reader), None);
    assert_eq!(code, 401);
}

#[test]
fn bad_configuration_is_rejected_and_the_previous_revision_stays() {
    let Some(lab) = Lab::new_if_root("spec-bad") else {
        return;
    };
    let node = lab.node("n1").start_ztosd(BASE_CONFIG);
    let dir = node.state_dir().parent().unwrap().to_path_buf();
    let commit_file = |name: &str, text: &str| -> String {
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        ztos_err(
            &node,
            &["config", "commit", "--file", path.to_str().unwrap()],
        )
    };

    let err = commit_file("syntax.toml", "[system\nhostname = 'x'\n");
    assert!(err.contains("line 1"), "{err}");
    let err = commit_file(
        "unknown.toml",
        "[system]\nhostname = \"x\"\nhostnme = \"y\"\n",
    );
    assert!(err.contains("hostnme"), "{err}");
    let err = commit_file(
        "range.toml",
        "[[vxlan]]\nvni = 16777216\nlocal_vtep = \"10.0.0.1\"\n",
    );
    assert!(
        err.contains("vxlan[0].vni: 16777216 is not a valid VNI"),
        "{err}"
    );
    let err = commit_file(
        "dup.toml",
        "[[bridges]]\nname = \"br0\"\n\n[[bridges]]\nname = \"br0\"\n",
    );
    assert!(
        err.contains("bridges[1].name") && err.contains("br0"),
        "{err}"
    );
    let err = ztos_err(&node, &["config", "set", "bgp.local_as", "0"]);
    assert!(
        err.contains("bgp.local_as: 0 is not a valid AS number"),
        "{err}"
    );

    // The host kernel has no VRF: the kernel rejects the tenant, the commit fails with the
    // reason, and the kernel is back at the previous revision (br-keep still there, no br10).
    let vrf = format!(
        "{BASE_CONFIG}\n[[bridges]]\nname = \"br10\"\n\n[[vxlan]]\nvni = 10\nlocal_vtep = \"10.0.0.1\"\nbridge = \"br10\"\n\n[[tenants]]\nname = \"blue\"\nvrf_table = 100\n\n[[tenants.networks]]\nvni = 10\n"
    );
    let err = commit_file("vrf.toml", &vrf);
    assert!(err.to_lowercase().contains("vrf"), "{err}");
    let links = stdout(&node.exec(&["ip", "-o", "link", "show"]));
    assert!(links.contains("br-keep"), "{links}");
    assert!(
        !links.contains("br10") && !links.contains("vx10"),
        "half-applied: {links}"
    );

    assert_eq!(
        revision_count(&node),
        1,
        "no rejected change may create a revision"
    );
    assert_eq!(running_revision(&node), 1);
}

#[test]
fn a_plugin_veto_blocks_the_commit_and_applies_reach_the_plugin() {
    let Some(lab) = Lab::new_if_root("spec-plugin") else {
        return;
    };
    let node = lab.node("n1").start_ztosd(BASE_CONFIG);
    let applied_log = node
        .state_dir()
        .parent()
        .unwrap()
        .join("plugin-applies.log");
    let _plugin = node.spawn_plugin(&[
        "--name",
        "ztos-macsec",
        "--owns",
        "macsec",
        "--veto",
        "macsec.interfaces[0].parent=eth9",
        "--log-file",
        applied_log.to_str().unwrap(),
    ]);
    // The plugin registers and is handed the running revision.
    node.wait_for("the plugin to register", || {
        json(&node, &["security", "status"])["macsec"]["plugin_state"] == "up"
    });

    let vetoed = format!(
        "{BASE_CONFIG}\n[macsec]\n[[macsec.interfaces]]\nparent = \"eth9\"\ncak = \"k1\"\n"
    );
    let path = node.state_dir().parent().unwrap().join("vetoed.toml");
    std::fs::write(&path, vetoed).unwrap();
    let err = ztos_err(
        &node,
        &["config", "commit", "--file", path.to_str().unwrap()],
    );
    assert!(
        err.contains("macsec.interfaces[0].parent") && err.contains("vetoed"),
        "{err}"
    );
    assert_eq!(revision_count(&node), 1);

    let accepted = format!(
        "{BASE_CONFIG}\n[macsec]\n[[macsec.interfaces]]\nparent = \"eth1\"\ncak = \"k1\"\n"
    );
    std::fs::write(&path, accepted).unwrap();
    ztos_ok(
        &node,
        &["config", "commit", "--file", path.to_str().unwrap()],
    );
    node.wait_for("the plugin to receive revision 2", || {
        std::fs::read_to_string(&applied_log)
            .is_ok_and(|log| log.lines().any(|l| l.contains("eth1") && l.contains('2')))
    });
    let status = json(&node, &["security", "status"]);
    assert_eq!(status["macsec"]["configured"], true, "{status}");
}

#[test]
fn commit_confirmed_reverts_by_itself_when_not_confirmed() {
    let Some(lab) = Lab::new_if_root("spec-confirm") else {
        return;
    };
    let node = lab.node("n1").start_ztosd(BASE_CONFIG);
    ztos_ok(&node, &["config", "set", "system.hostname", "leaf1-new"]);
    let out = ztos_ok(
        &node,
        &["config", "commit", "--confirmed", "1", "-m", "risky"],
    );
    assert!(out.contains("unless confirmed"), "{out}");
    assert_eq!(running_revision(&node), 2);
    // Another commit while one waits for confirmation is refused.
    ztos_ok(&node, &["config", "set", "system.hostname", "leaf1-other"]);
    let err = ztos_err(&node, &["config", "commit"]);
    assert!(err.contains("waiting for confirmation"), "{err}");
    ztos_ok(&node, &["config", "discard"]);

    // Nobody confirms: about a minute later ztosd rolls back to revision 1's content.
    node.wait_for_secs("the automatic rollback", 90, || {
        running_revision(&node) == 3
    });
    let running = json(&node, &["config", "show"]);
    assert_eq!(
        running["config"]["system"]["hostname"], "leaf1",
        "{running}"
    );
    assert_eq!(running["revision"]["author"], "ztosd");
    assert!(running["revision"]["comment"]
        .as_str()
        .unwrap()
        .contains("not confirmed"));

    // A confirmed commit stays.
    ztos_ok(&node, &["config", "set", "system.hostname", "leaf1-kept"]);
    ztos_ok(&node, &["config", "commit", "--confirmed", "1"]);
    ztos_ok(&node, &["config", "confirm"]);
    let err = ztos_err(&node, &["config", "confirm"]);
    assert!(err.contains("no commit is waiting"), "{err}");
    assert_eq!(running_revision(&node), 4);
}
