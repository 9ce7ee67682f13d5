//! Supervisor tests with real processes (`sh`, `sleep`) and tiny timings, driven through the
//! status socket exactly as ztosd drives it.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;
use tokio::task::JoinHandle;

use super::*;

fn fast_backoff() -> BackoffPolicy {
    BackoffPolicy {
        initial: Duration::from_millis(10),
        max: Duration::from_millis(50),
        reset_after: Duration::from_secs(30),
        crash_loop_exits: 4,
        crash_loop_window: Duration::from_secs(30),
    }
}

struct Running {
    socket: PathBuf,
    healthy: Arc<AtomicBool>,
    task: JoinHandle<anyhow::Result<ShutdownKind>>,
    _dir: tempfile::TempDir,
}

fn start(manifest: &str) -> Running {
    start_with(manifest, tempfile::tempdir().unwrap(), None)
}

/// [`start`] in `dir`, with PID 1's view of perm.
fn start_with(manifest: &str, dir: tempfile::TempDir, perm: Option<PermState>) -> Running {
    let manifest = Manifest::parse(manifest, Path::new("test.toml")).unwrap();
    let socket = dir.path().join("run/init.sock");
    let mut options = SupervisorOptions::new(socket.clone());
    options.backoff = fast_backoff();
    options.perm = perm;
    let healthy = options.healthy.clone();
    let task = tokio::spawn(supervise(manifest, options));
    Running {
        socket,
        healthy,
        task,
        _dir: dir,
    }
}

/// Sends one request line and returns the parsed response line.
async fn ask_raw(socket: &Path, line: &str) -> Response {
    let deadline = Instant::now() + Duration::from_secs(5);
    let stream = loop {
        match UnixStream::connect(socket).await {
            Ok(stream) => break stream,
            Err(err) if Instant::now() > deadline => panic!("{}: {err}", socket.display()),
            Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    };
    let (read, mut write) = stream.into_split();
    write.write_all(line.as_bytes()).await.unwrap();
    write.write_all(b"\n").await.unwrap();
    let mut answer = String::new();
    BufReader::new(read).read_line(&mut answer).await.unwrap();
    Response::decode(&answer).unwrap_or_else(|e| panic!("{answer:?}: {e}"))
}

async fn ask(socket: &Path, request: Request) -> Response {
    ask_raw(socket, request.encode().trim_end()).await
}

async fn services(socket: &Path) -> (Vec<ServiceStatus>, bool) {
    match ask(socket, Request::Services {}).await {
        Response::Services { services, healthy } => (services, healthy),
        other => panic!("unexpected {other:?}"),
    }
}

async fn service(socket: &Path, name: &str) -> ServiceStatus {
    services(socket)
        .await
        .0
        .into_iter()
        .find(|s| s.name == name)
        .unwrap_or_else(|| panic!("no service {name}"))
}

async fn logs(socket: &Path, name: Option<&str>) -> Vec<LogEntry> {
    let request = Request::Logs {
        service: name.map(str::to_string),
        limit: None,
    };
    match ask(socket, request).await {
        Response::Logs { entries } => entries,
        other => panic!("unexpected {other:?}"),
    }
}

/// Polls `check` every 20 ms for up to `seconds`.
async fn wait_until<F, Fut>(what: &str, seconds: u64, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(seconds);
    while !check().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn shutdown(running: Running, kind: ShutdownKind) -> Duration {
    let begun = Instant::now();
    assert_eq!(
        ask(&running.socket, Request::Shutdown { kind }).await,
        Response::Ok { ok: true }
    );
    let result = tokio::time::timeout(Duration::from_secs(20), running.task)
        .await
        .expect("supervise returns after a shutdown request")
        .unwrap()
        .unwrap();
    assert_eq!(result, kind);
    assert!(!running.socket.exists(), "the status socket is removed");
    begun.elapsed()
}

fn process_gone(pid: u32) -> bool {
    // A zombie still has /proc/<pid>; reaped processes do not.
    !Path::new(&format!("/proc/{pid}")).exists()
}

#[tokio::test]
async fn a_service_that_exits_at_once_is_reported_crash_looping_and_makes_critical_unhealthy() {
    let running = start(
        r#"
[[service]]
name = "broken"
command = ["sh", "-c", "echo about to fail; exit 1"]
critical = true

[[service]]
name = "steady"
command = ["sleep", "30"]
"#,
    );
    let socket = running.socket.clone();
    wait_until("crash-loop", 10, || async {
        service(&socket, "broken").await.state == ServiceState::CrashLoop
    })
    .await;
    let (all, healthy) = services(&socket).await;
    assert!(!healthy);
    assert!(!running.healthy.load(Ordering::SeqCst));
    let broken = &all[0];
    assert!(broken.restarts >= 3, "{broken:?}");
    assert_eq!(broken.last_exit.as_deref(), Some("exited with status 1"));
    assert!(broken.critical);
    assert_eq!(all[1].state, ServiceState::Running, "{all:?}");
    let messages: Vec<String> = logs(&socket, Some("broken"))
        .await
        .into_iter()
        .map(|e| format!("{} {}", e.stream, e.message))
        .collect();
    assert!(
        messages.contains(&"stdout about to fail".to_string()),
        "{messages:?}"
    );
    for expected in [
        "supervisor exited with status 1, restarting in 10 ms",
        "supervisor exited with status 1, restarting in 20 ms",
        "supervisor exited with status 1, restarting in 40 ms",
    ] {
        assert!(
            messages.iter().any(|m| m == expected),
            "{expected}: {messages:?}"
        );
    }
    assert!(
        messages.iter().any(|m| m.contains("restarting in 50 ms (crash loop: 4 exits within 30 s; critical service: supervisor unhealthy)")),
        "{messages:?}"
    );
    shutdown(running, ShutdownKind::Poweroff).await;
}

#[tokio::test]
async fn a_non_critical_crash_loop_leaves_the_supervisor_healthy() {
    let running = start("[[service]]\nname = \"flaky\"\ncommand = [\"false\"]\n");
    let socket = running.socket.clone();
    wait_until("crash-loop", 10, || async {
        service(&socket, "flaky").await.state == ServiceState::CrashLoop
    })
    .await;
    assert!(services(&socket).await.1);
    assert!(running.healthy.load(Ordering::SeqCst));
    shutdown(running, ShutdownKind::Reboot).await;
}

#[tokio::test]
async fn stdout_and_stderr_lines_are_captured_per_service_and_merged_by_time() {
    let running = start(
        r#"
[[service]]
name = "talker"
command = ["sh", "-c", "echo hello out; echo hello err >&2; exec sleep 30"]

[[service]]
name = "other"
command = ["sh", "-c", "echo from other; exec sleep 30"]
"#,
    );
    let socket = running.socket.clone();
    wait_until("both lines of talker", 5, || async {
        logs(&socket, Some("talker")).await.len() >= 3
    })
    .await;
    let entries = logs(&socket, Some("talker")).await;
    assert!(entries
        .iter()
        .any(|e| e.stream == "stdout" && e.message == "hello out"));
    assert!(entries
        .iter()
        .any(|e| e.stream == "stderr" && e.message == "hello err"));
    assert!(entries.iter().all(|e| e.service == "talker"));
    wait_until("other's line", 5, || async {
        logs(&socket, None)
            .await
            .iter()
            .any(|e| e.message == "from other")
    })
    .await;
    let merged = logs(&socket, None).await;
    let times: Vec<&str> = merged.iter().map(|e| e.time.as_str()).collect();
    let mut sorted = times.clone();
    sorted.sort();
    assert_eq!(times, sorted, "merged entries are in time order");
    let limited = ask(
        &socket,
        Request::Logs {
            service: None,
            limit: Some(1),
        },
    )
    .await;
    assert!(matches!(limited, Response::Logs { ref entries } if entries.len() == 1));
    shutdown(running, ShutdownKind::Poweroff).await;
}

#[tokio::test]
async fn orphans_of_services_are_reaped() {
    // As a subreaper (as `ztos-init supervise` makes itself), the orphaned sleep becomes our
    // child; without reaping it would stay a zombie with /proc/<pid> present.
    nix::sys::prctl::set_child_subreaper(true).unwrap();
    let running = start(
        r#"
[[service]]
name = "forker"
command = ["sh", "-c", "sleep 0.2 & echo $!; exit 0"]
restart = "never"
"#,
    );
    let socket = running.socket.clone();
    wait_until("forker exited", 5, || async {
        service(&socket, "forker").await.state == ServiceState::Exited
    })
    .await;
    let orphan: u32 = logs(&socket, Some("forker"))
        .await
        .iter()
        .find(|e| e.stream == "stdout")
        .expect("the orphan's pid")
        .message
        .parse()
        .unwrap();
    wait_until("the orphan reaped", 5, || async { process_gone(orphan) }).await;
    assert!(process::orphans_reaped() >= 1);
    let forker = service(&socket, "forker").await;
    assert_eq!(forker.last_exit.as_deref(), Some("exited with status 0"));
    assert_eq!(forker.restarts, 0);
    shutdown(running, ShutdownKind::Poweroff).await;
}

#[tokio::test]
async fn a_killed_service_is_restarted_and_counted() {
    let running = start("[[service]]\nname = \"victim\"\ncommand = [\"sleep\", \"30\"]\n");
    let socket = running.socket.clone();
    wait_until("victim running", 5, || async {
        service(&socket, "victim").await.pid.is_some()
    })
    .await;
    let first = service(&socket, "victim").await.pid.unwrap();
    nix::sys::signal::kill(Pid::from_raw(first as i32), Signal::SIGKILL).unwrap();
    wait_until("victim restarted", 5, || async {
        let s = service(&socket, "victim").await;
        s.pid.is_some_and(|pid| pid != first)
    })
    .await;
    let victim = service(&socket, "victim").await;
    assert_eq!(victim.restarts, 1);
    assert_eq!(victim.state, ServiceState::Running);
    assert_eq!(victim.last_exit.as_deref(), Some("killed by SIGKILL"));
    assert!(process_gone(first));
    shutdown(running, ShutdownKind::Poweroff).await;
}

#[tokio::test]
async fn restart_requests_restart_at_once_and_unknown_services_are_named() {
    let running = start("[[service]]\nname = \"worker\"\ncommand = [\"sleep\", \"30\"]\n");
    let socket = running.socket.clone();
    wait_until("worker running", 5, || async {
        service(&socket, "worker").await.pid.is_some()
    })
    .await;
    let first = service(&socket, "worker").await.pid.unwrap();
    let answer = ask(
        &socket,
        Request::Restart {
            service: "worker".into(),
        },
    )
    .await;
    assert_eq!(answer, Response::Ok { ok: true });
    wait_until("worker restarted", 5, || async {
        service(&socket, "worker")
            .await
            .pid
            .is_some_and(|p| p != first)
    })
    .await;
    assert_eq!(service(&socket, "worker").await.restarts, 1);
    assert_eq!(
        ask(
            &socket,
            Request::Restart {
                service: "nope".into()
            }
        )
        .await,
        Response::Error {
            error: "unknown service \"nope\"".into()
        }
    );
    assert_eq!(
        ask(
            &socket,
            Request::Logs {
                service: Some("nope".into()),
                limit: None
            }
        )
        .await,
        Response::Error {
            error: "unknown service \"nope\"".into()
        }
    );
    match ask_raw(&socket, r#"{"request":"dance"}"#).await {
        Response::Error { error } => assert!(error.contains("dance"), "{error}"),
        other => panic!("unexpected {other:?}"),
    }
    shutdown(running, ShutdownKind::Poweroff).await;
}

#[tokio::test]
async fn stop_escalates_to_sigkill_for_a_service_that_ignores_sigterm() {
    let running = start(
        r#"
[[service]]
name = "stubborn"
command = ["sh", "-c", "trap '' TERM; echo ready; while true; do sleep 0.1; done"]
stop_timeout_secs = 1

[[service]]
name = "polite"
command = ["sleep", "30"]
"#,
    );
    let socket = running.socket.clone();
    wait_until("stubborn ready", 5, || async {
        logs(&socket, Some("stubborn"))
            .await
            .iter()
            .any(|e| e.message == "ready")
    })
    .await;
    let (all, _) = services(&socket).await;
    let pids: Vec<u32> = all.iter().map(|s| s.pid.unwrap()).collect();
    let took = shutdown(running, ShutdownKind::Poweroff).await;
    // Grace (0.5 s) + the stubborn service's 1 s stop timeout, but not much more.
    assert!(took >= SHUTDOWN_GRACE + Duration::from_secs(1), "{took:?}");
    assert!(took < Duration::from_secs(5), "{took:?}");
    for pid in pids {
        assert!(process_gone(pid), "pid {pid} still there after the stop");
    }
}

#[tokio::test]
async fn a_missing_program_is_retried_with_backoff_and_named() {
    let running = start("[[service]]\nname = \"ghost\"\ncommand = [\"/nonexistent/ghostd\"]\n");
    let socket = running.socket.clone();
    wait_until("ghost crash-loop", 10, || async {
        service(&socket, "ghost").await.state == ServiceState::CrashLoop
    })
    .await;
    let ghost = service(&socket, "ghost").await;
    let last = ghost.last_exit.unwrap();
    assert!(last.contains("/nonexistent/ghostd"), "{last}");
    shutdown(running, ShutdownKind::Poweroff).await;
}

const SLEEPER: &str = r#"
[[service]]
name = "sleeper"
command = ["sleep", "60"]
"#;

fn degraded_perm(mkfs: &Path) -> PermState {
    PermState {
        device: Some("/dev/vdz4".into()),
        degraded: Some("e2fsck -p /dev/vdz4 exited with code 8".into()),
        mkfs: mkfs.to_path_buf(),
    }
}

async fn refused(socket: &Path, request: Request) -> String {
    match ask(socket, request).await {
        Response::Error { error } => error,
        other => panic!("unexpected {other:?}"),
    }
}

#[tokio::test]
async fn reformat_perm_is_refused_outside_pid1_and_while_perm_is_healthy() {
    let running = start(SLEEPER);
    let error = refused(&running.socket, Request::ReformatPerm {}).await;
    assert_eq!(
        error,
        format!(
            "reformatting perm is only done by ztos-init as PID 1 (this supervisor is process {}); nothing was done",
            std::process::id()
        )
    );
    assert_eq!(
        service(&running.socket, "sleeper").await.state,
        ServiceState::Running
    );
    shutdown(running, ShutdownKind::Exit).await;

    let dir = tempfile::tempdir().unwrap();
    let mkfs = dir.path().join("mkfs");
    std::fs::write(&mkfs, "").unwrap();
    let healthy = PermState {
        degraded: None,
        ..degraded_perm(&mkfs)
    };
    let running = start_with(SLEEPER, dir, Some(healthy));
    let error = refused(&running.socket, Request::ReformatPerm {}).await;
    assert_eq!(
        error,
        "perm is healthy (/dev/vdz4 is mounted on /perm); nothing was done"
    );
    assert_eq!(
        service(&running.socket, "sleeper").await.state,
        ServiceState::Running
    );
    shutdown(running, ShutdownKind::Exit).await;
}

#[tokio::test]
async fn reformat_perm_without_a_partition_or_mkfs_is_refused_naming_why() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("no-mkfs");
    let no_partition = PermState {
        device: None,
        degraded: Some("no partition labelled ztos-perm appeared".into()),
        mkfs: missing.clone(),
    };
    let running = start_with(SLEEPER, dir, Some(no_partition));
    assert_eq!(
        refused(&running.socket, Request::ReformatPerm {}).await,
        "there is no partition to reformat (no partition labelled ztos-perm appeared); nothing was done"
    );
    shutdown(running, ShutdownKind::Exit).await;

    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("no-mkfs");
    let running = start_with(SLEEPER, dir, Some(degraded_perm(&missing)));
    assert_eq!(
        refused(&running.socket, Request::ReformatPerm {}).await,
        format!(
            "{} is missing, /dev/vdz4 cannot be reformatted; nothing was done",
            missing.display()
        )
    );
    assert_eq!(
        service(&running.socket, "sleeper").await.state,
        ServiceState::Running
    );
    shutdown(running, ShutdownKind::Exit).await;
}

/// A fake mkfs that records its arguments and whether the service was still alive when it ran.
fn fake_mkfs(dir: &Path, exit_code: i32) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let mkfs = dir.join("mkfs");
    let script = format!(
        "#!/bin/sh\n\
         if kill -0 \"$(cat '{dir}/sleeper.pid')\" 2>/dev/null; then echo running; else echo stopped; fi > '{dir}/service'\n\
         echo \"$@\" > '{dir}/args'\n\
         exit {exit_code}\n",
        dir = dir.display()
    );
    std::fs::write(&mkfs, script).unwrap();
    std::fs::set_permissions(&mkfs, std::fs::Permissions::from_mode(0o755)).unwrap();
    mkfs
}

async fn reformat_and_reboot(exit_code: i32) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_path_buf();
    let mkfs = fake_mkfs(&path, exit_code);
    let running = start_with(SLEEPER, dir, Some(degraded_perm(&mkfs)));
    let pid = service(&running.socket, "sleeper").await.pid.unwrap();
    std::fs::write(path.join("sleeper.pid"), pid.to_string()).unwrap();
    assert_eq!(
        ask(&running.socket, Request::ReformatPerm {}).await,
        Response::Ok { ok: true }
    );
    let kind = tokio::time::timeout(Duration::from_secs(20), running.task)
        .await
        .expect("supervise returns after a reformat")
        .unwrap()
        .unwrap();
    assert_eq!(kind, ShutdownKind::Reboot);
    assert!(process_gone(pid), "the service was stopped and reaped");
    assert_eq!(
        std::fs::read_to_string(path.join("args")).unwrap(),
        "-F -L ztos-perm /dev/vdz4\n"
    );
    assert_eq!(
        std::fs::read_to_string(path.join("service")).unwrap(),
        "stopped\n",
        "mkfs runs after every service has stopped"
    );
}

#[tokio::test]
async fn reformat_perm_stops_the_services_runs_mkfs_then_reboots() {
    reformat_and_reboot(0).await;
}

#[tokio::test]
async fn a_failed_reformat_still_reboots() {
    reformat_and_reboot(1).await;
}

#[test]
fn durations_read_naturally() {
    assert_eq!(format_duration(Duration::from_millis(400)), "400 ms");
    assert_eq!(format_duration(Duration::from_secs(30)), "30 s");
    assert_eq!(format_duration(Duration::from_millis(1600)), "1.6 s");
}

#[tokio::test(flavor = "multi_thread")]
async fn boot_is_unknown_outside_pid1_and_the_assessment_can_ask_for_a_reboot() {
    // `ztos-init supervise`: no ESP, no assessment.
    let running = start("[[service]]\nname = \"s\"\ncommand = [\"sleep\", \"60\"]\n");
    match ask(&running.socket, Request::Boot {}).await {
        Response::Boot(status) => {
            assert_eq!(status.state, AssessmentState::Unknown);
            assert!(status.message.unwrap().contains("PID 1"));
        }
        other => panic!("unexpected {other:?}"),
    }
    shutdown(running, ShutdownKind::Poweroff).await;

    // With hooks (PID 1): the assessment's status is answered, and its reboot request stops
    // the services and ends the supervisor with a reboot.
    let dir = tempfile::tempdir().unwrap();
    let manifest = Manifest::parse(
        "[[service]]\nname = \"s\"\ncommand = [\"sleep\", \"60\"]\n",
        Path::new("test.toml"),
    )
    .unwrap();
    let socket = dir.path().join("run/init.sock");
    let mut options = SupervisorOptions::new(socket.clone());
    options.backoff = fast_backoff();
    let mut status = crate::assessment::unknown_status("x".into());
    status.state = AssessmentState::Assessing;
    status.booted_slot = Some(ztos_image::layout::Slot::B);
    let hooks = BootHooks {
        status: Arc::new(Mutex::new(status.clone())),
        reboot: Arc::new(tokio::sync::Notify::new()),
    };
    options.boot = Some(hooks.clone());
    let task = tokio::spawn(supervise(manifest, options));
    assert_eq!(ask(&socket, Request::Boot {}).await, Response::Boot(status));
    hooks.status.lock().unwrap().state = AssessmentState::Failed;
    match ask(&socket, Request::Boot {}).await {
        Response::Boot(status) => assert_eq!(status.state, AssessmentState::Failed),
        other => panic!("unexpected {other:?}"),
    }
    hooks.reboot.notify_one();
    let kind = tokio::time::timeout(Duration::from_secs(20), task)
        .await
        .expect("the supervisor stops")
        .unwrap()
        .unwrap();
    assert_eq!(kind, ShutdownKind::Reboot);
}
