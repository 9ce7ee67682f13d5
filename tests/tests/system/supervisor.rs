//! `ztos-init supervise` in a netns lab node running the real ztosd: what an operator sees
//! through `ztos system ...` when ztosd is killed, when a service crash-loops, and on poweroff.

use std::process::Output;

use serde_json::Value;
use ztos_tests::lab::{Lab, SupervisorHandle};

const CONFIG: &str = r#"
[system]
hostname = "sup1"
"#;

fn text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

fn ztos_ok(supervisor: &SupervisorHandle, args: &[&str]) -> String {
    let output = supervisor.ztos(args);
    assert!(
        output.status.success(),
        "ztos {args:?} failed: {}",
        text(&output)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// `ztos --json system services`, or `None` while the API does not answer.
fn services(supervisor: &SupervisorHandle) -> Option<Value> {
    let output = supervisor.ztos(&["--json", "system", "services"]);
    if !output.status.success() {
        return None;
    }
    serde_json::from_slice(&output.stdout).ok()
}

fn service(all: &Value, name: &str) -> Value {
    all["services"]
        .as_array()
        .and_then(|list| list.iter().find(|s| s["name"] == name))
        .cloned()
        .unwrap_or_else(|| panic!("no service {name} in {all}"))
}

fn manifest(ztosd: &[String]) -> String {
    let command: Vec<String> = ztosd.iter().map(|arg| format!("{arg:?}")).collect();
    format!(
        r#"
[[service]]
name = "ztosd"
command = [{}]
critical = true

[[service]]
name = "flaky"
command = ["sh", "-c", "echo flaky starting; exit 1"]
"#,
        command.join(", ")
    )
}

#[test]
fn supervisor_restarts_ztosd_reports_crash_loops_and_powers_off() {
    let Some(lab) = Lab::new_if_root("sup") else {
        return;
    };
    let node = lab.node("n1");
    let mut supervisor = node.start_supervisor(&manifest(&node.ztosd_command(CONFIG)));

    // ztosd comes up under the supervisor and the CLI shows it running.
    supervisor.wait_for_secs("ztosd's API", 30, || services(&supervisor).is_some());
    let table = ztos_ok(&supervisor, &["system", "services"]);
    let ztosd_row = table
        .lines()
        .find(|line| line.starts_with("ztosd "))
        .unwrap_or_else(|| panic!("no ztosd row:\n{table}"));
    assert!(ztosd_row.contains(" running "), "{table}");
    assert!(table.starts_with("NAME "), "{table}");
    let first_pid = service(&services(&supervisor).unwrap(), "ztosd")["pid"]
        .as_u64()
        .expect("ztosd has a pid");

    // A service that exits at once is reported crash-looping; ztosd stays up, init healthy.
    supervisor.wait_for_secs("flaky to crash-loop", 30, || {
        services(&supervisor).is_some_and(|all| service(&all, "flaky")["state"] == "crash-loop")
    });
    let all = services(&supervisor).unwrap();
    assert_eq!(all["healthy"], true, "{all}");
    assert_eq!(service(&all, "ztosd")["state"], "running");
    assert_eq!(service(&all, "ztosd")["restarts"], 0);
    assert_eq!(
        service(&all, "flaky")["last_exit"],
        "exited with status 1",
        "{all}"
    );
    // The crash-looping service's output is in init's ring, reachable through ztosd's logs.
    let logs = ztos_ok(
        &supervisor,
        &["monitoring", "logs", "--service", "flaky", "-n", "50"],
    );
    assert!(logs.contains("flaky starting"), "{logs}");
    assert!(logs.contains("crash loop"), "{logs}");

    // kill -9 of ztosd: the supervisor restarts it and the API answers again.
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(first_pid as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    supervisor.wait_for_secs("ztosd restarted", 30, || {
        services(&supervisor).is_some_and(|all| {
            let ztosd = service(&all, "ztosd");
            ztosd["state"] == "running" && ztosd["pid"].as_u64() != Some(first_pid)
        })
    });
    let ztosd = service(&services(&supervisor).unwrap(), "ztosd");
    assert_eq!(ztosd["restarts"], 1, "{ztosd}");
    assert_eq!(ztosd["last_exit"], "killed by SIGKILL", "{ztosd}");
    ztos_ok(&supervisor, &["health"]);

    // Without a terminal, poweroff insists on --yes and changes nothing.
    let refused = supervisor.ztos(&["system", "poweroff"]);
    assert!(!refused.status.success());
    assert!(text(&refused).contains("--yes"), "{}", text(&refused));
    assert!(services(&supervisor).is_some());

    // Poweroff stops everything and the supervisor exits 0.
    let said = ztos_ok(&supervisor, &["system", "poweroff", "--yes"]);
    assert!(said.contains("poweroff"), "{said}");
    let status = supervisor
        .wait_exit()
        .expect("the supervisor exits after poweroff");
    assert!(status.success(), "{status}");
    let ztosd_pid = ztosd["pid"].as_u64().unwrap();
    assert!(
        !std::path::Path::new(&format!("/proc/{ztosd_pid}")).exists(),
        "ztosd still runs after poweroff"
    );
    assert!(!supervisor.status_socket().exists());
    let log = std::fs::read_to_string(supervisor.log_path()).unwrap();
    assert!(log.contains("stopping: SIGTERM"), "{log}");
}
