//! The service supervisor: starts the services of a manifest, restarts them with backoff,
//! detects crash loops, keeps a log ring per service, reaps every child (orphans included),
//! and answers status requests on a unix socket. PID 1 runs it in the appliance;
//! `ztos-init supervise --manifest FILE` runs it as an ordinary process anywhere.
//!
//! ```text
//!   SIGCHLD ──▶ process::reap ──ChildExit──┐
//!   pipe readers (stdout/stderr) ──lines──▶ LogRings ◀── kernel_log (/dev/kmsg)
//!   status_socket ──Incoming──────────────▶│
//!   timers (restart due, stable, kill due) ▶ supervisor loop ──▶ healthy flag
//!   SIGTERM / SIGINT ─────────────────────▶│
//! ```
//!
//! All service state lives in the one loop of [`supervise`]; everything else only sends it
//! events, so no state is shared but the log rings.

pub mod backoff;
pub mod kernel_log;
pub mod log_ring;
pub mod manifest;
pub mod process;
pub mod protocol;
pub mod status_socket;

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;
use tokio::io::AsyncBufReadExt;
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::mpsc;

pub use backoff::{BackoffPolicy, RestartDecision, RestartTracker};
pub use log_ring::LogRings;
pub use manifest::BootSettings;
pub use manifest::{Manifest, ManifestError, RestartPolicy, ServiceSpec};
pub use protocol::{
    AssessmentState, BootStatus, LogEntry, Request, Response, ServiceState, ServiceStatus,
    ShutdownKind, SlotReport,
};

use process::ChildExit;
use status_socket::Incoming;

/// Default byte budget of each log ring.
pub const DEFAULT_RING_BYTES: usize = 256 * 1024;
/// The stream name of the supervisor's own events in a service's ring.
pub const SUPERVISOR_STREAM: &str = "supervisor";
/// After a shutdown request is answered, the supervisor waits this long before stopping
/// services, so that the answer can travel back through ztosd to the operator.
pub const SHUTDOWN_GRACE: Duration = Duration::from_millis(500);
/// How long a service may take to be reaped after SIGKILL before it is given up on.
const AFTER_KILL_WAIT: Duration = Duration::from_secs(5);

/// How [`supervise`] runs.
#[derive(Debug, Clone)]
pub struct SupervisorOptions {
    /// The status socket ([`ztos_image::layout::INIT_SOCKET`] in the appliance).
    pub status_socket: PathBuf,
    /// Byte budget of each service's log ring.
    pub ring_bytes: usize,
    /// Capture `/dev/kmsg` into the ring `kernel` (on in PID-1 mode).
    pub kernel_log: bool,
    pub backoff: BackoffPolicy,
    /// Set false while a critical service crash-loops; PID 1 stops petting the watchdog.
    pub healthy: Arc<AtomicBool>,
    /// Also copy every service line to the supervisor's stderr as `name: line` (useful when
    /// supervising from a terminal; off on the appliance's console).
    pub echo_output: bool,
    /// What PID 1 found of /perm, for `reformat-perm`; `None` when the supervisor is not PID 1
    /// (`ztos-init supervise`), which never reformats anything.
    pub perm: Option<PermState>,
    /// PID 1's boot assessment (`crate::assessment`): what `{"request":"boot"}` answers and
    /// how the assessment asks for a reboot. `None` outside PID 1: `boot` answers `unknown`.
    pub boot: Option<BootHooks>,
}

/// What the supervisor shares with PID 1's boot assessment.
#[derive(Debug, Clone)]
pub struct BootHooks {
    /// Kept current by the assessment; `boot` requests answer a copy.
    pub status: Arc<Mutex<BootStatus>>,
    /// Notified by the assessment when a trial boot failed: the supervisor stops the
    /// services and returns [`ShutdownKind::Reboot`].
    pub reboot: Arc<tokio::sync::Notify>,
}

/// The perm partition as PID 1's system stage left it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PermState {
    /// The perm partition (`/dev/vda4`), when one was found.
    pub device: Option<String>,
    /// Why /perm is a tmpfs instead of the partition; `None` when the partition is mounted.
    pub degraded: Option<String>,
    /// The mkfs program ([`crate::boot::MKFS_EXT4`]), run as `mkfs -F -L ztos-perm <device>`.
    pub mkfs: PathBuf,
}

/// How long a reformat may run before it is killed (the box reboots either way).
const REFORMAT_LIMIT: Duration = Duration::from_secs(300);

impl SupervisorOptions {
    /// Defaults for `status_socket`: ring of [`DEFAULT_RING_BYTES`], no kernel log, default
    /// backoff, a new healthy flag, no echo.
    pub fn new(status_socket: PathBuf) -> SupervisorOptions {
        SupervisorOptions {
            status_socket,
            ring_bytes: DEFAULT_RING_BYTES,
            kernel_log: false,
            backoff: BackoffPolicy::default(),
            healthy: Arc::new(AtomicBool::new(true)),
            echo_output: false,
            perm: None,
            boot: None,
        }
    }
}

/// Events the supervisor loop handles besides exits and requests.
#[derive(Debug)]
enum Timer {
    /// The restart delay of service `index` ran out.
    RestartDue { index: usize, generation: u64 },
    /// Service `index` has run for `reset_after`: it is stable.
    Stable { index: usize, generation: u64 },
    /// Service `index` was asked to stop for a restart and had its stop timeout.
    KillDue { index: usize, generation: u64 },
}

/// One service's state. Only the supervisor loop touches it.
#[derive(Debug)]
struct Service {
    spec: ServiceSpec,
    state: ServiceState,
    pid: Option<Pid>,
    restarts: u64,
    since: OffsetDateTime,
    last_exit: Option<String>,
    tracker: RestartTracker,
    started: Instant,
    /// Bumped on every start and on every cancelled restart, so stale timers are ignored.
    generation: u64,
    crash_loop: bool,
    /// An operator asked for a restart: the coming exit restarts at once and is no crash.
    restart_requested: bool,
    /// SIGKILL already sent while stopping.
    killed: bool,
    stop_deadline: Option<Instant>,
}

impl Service {
    fn set_state(&mut self, state: ServiceState) {
        if self.state != state {
            self.state = state;
            self.since = OffsetDateTime::now_utc();
        }
    }

    fn status(&self) -> ServiceStatus {
        ServiceStatus {
            name: self.spec.name.clone(),
            state: self.state,
            pid: self.pid.map(|p| p.as_raw() as u32),
            restarts: self.restarts,
            since: self.since.format(&Rfc3339).unwrap_or_default(),
            last_exit: self.last_exit.clone(),
            critical: self.spec.critical,
        }
    }
}

struct Supervisor {
    services: Vec<Service>,
    rings: Arc<Mutex<LogRings>>,
    exits: mpsc::UnboundedSender<ChildExit>,
    timers: mpsc::UnboundedSender<Timer>,
    options: SupervisorOptions,
    /// Set by an accepted `reformat-perm`: the program and arguments to run once every
    /// service has stopped.
    reformat: Option<(PathBuf, Vec<String>)>,
}

/// Runs the services of `manifest` until SIGTERM or SIGINT ([`ShutdownKind::Exit`]) or a
/// shutdown request on the status socket ([`ShutdownKind::Reboot`] / [`ShutdownKind::Poweroff`]);
/// returns after every service has been stopped (SIGTERM to its process group, its
/// `stop_timeout_secs`, then SIGKILL) and reaped. Rebooting is the caller's business.
///
/// An accepted `reformat-perm` request (PID 1 only, perm degraded) also stops every service,
/// then runs `mkfs.ext4 -F -L ztos-perm <device>` as a child reaped by this supervisor's own
/// reaper, and returns [`ShutdownKind::Reboot`] whether or not mkfs succeeded (a failure is
/// logged; the next boot finds perm degraded again).
///
/// In order: binds the status socket, starts the kernel log reader (if asked), starts every
/// service in manifest order, then loops over exits, timers and requests.
pub async fn supervise(
    manifest: Manifest,
    options: SupervisorOptions,
) -> anyhow::Result<ShutdownKind> {
    let mut sigchld = signal(SignalKind::child())?;
    let mut sigterm = signal(SignalKind::terminate())?;
    let mut sigint = signal(SignalKind::interrupt())?;
    let rings = Arc::new(Mutex::new(LogRings::new(options.ring_bytes)));
    let listener = status_socket::bind(&options.status_socket)?;
    let (requests_tx, mut requests) = mpsc::unbounded_channel::<Incoming>();
    let server = tokio::spawn(status_socket::serve(listener, requests_tx));
    if options.kernel_log {
        if let Err(err) = kernel_log::spawn_reader(std::path::Path::new("/dev/kmsg"), rings.clone())
        {
            tracing::warn!("kernel log: /dev/kmsg: {err}; the kernel ring stays empty");
        }
    }
    let (exits_tx, mut exits) = mpsc::unbounded_channel::<ChildExit>();
    let (timers_tx, mut timers) = mpsc::unbounded_channel::<Timer>();
    let mut supervisor = Supervisor {
        services: manifest
            .services
            .into_iter()
            .map(|spec| Service {
                spec,
                state: ServiceState::Stopped,
                pid: None,
                restarts: 0,
                since: OffsetDateTime::now_utc(),
                last_exit: None,
                tracker: RestartTracker::new(options.backoff.clone()),
                started: Instant::now(),
                generation: 0,
                crash_loop: false,
                restart_requested: false,
                killed: false,
                stop_deadline: None,
            })
            .collect(),
        rings,
        exits: exits_tx,
        timers: timers_tx,
        options,
        reformat: None,
    };
    for index in 0..supervisor.services.len() {
        supervisor
            .rings()
            .ensure(&supervisor.services[index].spec.name);
        supervisor.start(index);
    }
    supervisor.update_health();
    // A fallback for coalesced or missed SIGCHLDs: reaping finds nothing when there is nothing.
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let reboot_request = supervisor.options.boot.as_ref().map(|b| b.reboot.clone());
    let kind = loop {
        tokio::select! {
            _ = sigchld.recv() => { process::reap(); }
            _ = tick.tick() => { process::reap(); }
            Some(exit) = exits.recv() => supervisor.on_exit(exit),
            Some(timer) = timers.recv() => supervisor.on_timer(timer),
            Some(incoming) = requests.recv() => {
                let (response, shutdown) = supervisor.handle(incoming.request);
                let _ = incoming.reply.send(response);
                if let Some(kind) = shutdown {
                    break kind;
                }
            }
            _ = sigterm.recv() => break ShutdownKind::Exit,
            _ = sigint.recv() => break ShutdownKind::Exit,
            _ = async { reboot_request.as_ref().expect("guarded").notified().await },
                if reboot_request.is_some() => {
                tracing::warn!("supervisor: the boot assessment asks for a reboot");
                break ShutdownKind::Reboot;
            }
        }
    };
    server.abort();
    tracing::info!("supervisor: {} requested, stopping services", kind.as_str());
    if kind != ShutdownKind::Exit {
        tokio::time::sleep(SHUTDOWN_GRACE).await;
    }
    supervisor.stop_all(&mut sigchld, &mut exits).await;
    if let Some((program, args)) = supervisor.reformat.take() {
        let command = format!("{} {}", program.display(), args.join(" "));
        match supervisor
            .run_to_exit(&program, &args, &mut sigchld, &mut exits)
            .await
        {
            Ok(exit) if exit.success() => {
                tracing::warn!("supervisor: {command}: perm reformatted, rebooting");
            }
            Ok(exit) => tracing::error!(
                "supervisor: {command} {}; rebooting, perm stays degraded",
                exit.describe()
            ),
            Err(err) => {
                tracing::error!("supervisor: {command}: {err}; rebooting, perm stays degraded")
            }
        }
    }
    let _ = std::fs::remove_file(&supervisor.options.status_socket);
    Ok(kind)
}

impl Supervisor {
    fn rings(&self) -> std::sync::MutexGuard<'_, LogRings> {
        self.rings.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Records a supervisor event in the service's ring and in our own log.
    fn event(&self, index: usize, message: &str) {
        let name = &self.services[index].spec.name;
        tracing::info!("{name}: {message}");
        self.rings().push(name, SUPERVISOR_STREAM, message);
    }

    fn update_health(&self) {
        let healthy = !self
            .services
            .iter()
            .any(|s| s.spec.critical && s.crash_loop);
        self.options.healthy.store(healthy, Ordering::SeqCst);
    }

    fn after(&self, delay: Duration, timer: Timer) {
        let timers = self.timers.clone();
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            let _ = timers.send(timer);
        });
    }

    fn start(&mut self, index: usize) {
        let service = &mut self.services[index];
        service.generation += 1;
        let generation = service.generation;
        match process::spawn(&service.spec, &self.exits) {
            Ok(spawned) => {
                service.pid = Some(spawned.pid);
                service.started = Instant::now();
                service.set_state(if service.crash_loop {
                    ServiceState::CrashLoop
                } else {
                    ServiceState::Running
                });
                let name = service.spec.name.clone();
                self.capture(&name, "stdout", spawned.stdout);
                self.capture(&name, "stderr", spawned.stderr);
                self.event(index, &format!("started, pid {}", spawned.pid));
                self.after(
                    self.options.backoff.reset_after,
                    Timer::Stable { index, generation },
                );
            }
            Err(err) => {
                let message = format!("cannot start {:?}: {err}", service.spec.command[0]);
                service.last_exit = Some(message.clone());
                self.schedule_restart(index, &message);
            }
        }
    }

    /// Copies the lines of one of a service's pipes into its ring.
    fn capture(&self, name: &str, stream: &'static str, pipe: impl Into<std::os::fd::OwnedFd>) {
        let receiver = match tokio::net::unix::pipe::Receiver::from_owned_fd(pipe.into()) {
            Ok(receiver) => receiver,
            Err(err) => {
                tracing::warn!("{name}: cannot read its {stream}: {err}");
                return;
            }
        };
        let rings = self.rings.clone();
        let name = name.to_string();
        let echo = self.options.echo_output;
        tokio::spawn(async move {
            let mut reader = tokio::io::BufReader::new(receiver);
            let mut line = Vec::new();
            loop {
                line.clear();
                match reader.read_until(b'\n', &mut line).await {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {
                        let text = String::from_utf8_lossy(&line);
                        let text = text.trim_end_matches(['\n', '\r']);
                        if echo {
                            eprintln!("{name}: {text}");
                        }
                        rings
                            .lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .push(&name, stream, text);
                    }
                }
            }
        });
    }

    fn index_of_pid(&self, pid: Pid) -> Option<usize> {
        self.services.iter().position(|s| s.pid == Some(pid))
    }

    fn on_exit(&mut self, exit: ChildExit) {
        let Some(index) = self.index_of_pid(exit.pid) else {
            return;
        };
        let service = &mut self.services[index];
        service.pid = None;
        let description = exit.describe();
        service.last_exit = Some(description.clone());
        if service.restart_requested {
            service.restart_requested = false;
            self.event(index, &format!("{description}; restarting as requested"));
            self.services[index].restarts += 1;
            self.start(index);
            return;
        }
        if !service.spec.restart.restarts(exit.success()) {
            service.set_state(ServiceState::Exited);
            let policy = match service.spec.restart {
                RestartPolicy::Always => "always",
                RestartPolicy::OnFailure => "on-failure",
                RestartPolicy::Never => "never",
            };
            self.event(
                index,
                &format!("{description}; not restarted (restart = \"{policy}\")"),
            );
            return;
        }
        self.schedule_restart(index, &description);
    }

    /// After an exit (or a failed start) described by `what`: decides the delay, updates the
    /// crash-loop state and health, and arms the restart timer.
    fn schedule_restart(&mut self, index: usize, what: &str) {
        let policy = self.options.backoff.clone();
        let service = &mut self.services[index];
        let decision = service.tracker.on_exit(service.started, Instant::now());
        let entered_crash_loop = decision.crash_loop && !service.crash_loop;
        service.crash_loop = decision.crash_loop;
        service.set_state(if decision.crash_loop {
            ServiceState::CrashLoop
        } else {
            ServiceState::Backoff
        });
        service.generation += 1;
        let generation = service.generation;
        let delay = format_duration(decision.delay);
        let message = if decision.crash_loop {
            format!(
                "{what}, restarting in {delay} (crash loop: {} exits within {}{})",
                policy.crash_loop_exits,
                format_duration(policy.crash_loop_window),
                if service.spec.critical {
                    "; critical service: supervisor unhealthy"
                } else {
                    ""
                }
            )
        } else {
            format!("{what}, restarting in {delay}")
        };
        if entered_crash_loop {
            tracing::warn!("{}: crash loop", service.spec.name);
        }
        self.event(index, &message);
        self.update_health();
        self.after(decision.delay, Timer::RestartDue { index, generation });
    }

    fn on_timer(&mut self, timer: Timer) {
        match timer {
            Timer::RestartDue { index, generation } => {
                let service = &mut self.services[index];
                if service.generation == generation && service.pid.is_none() {
                    service.restarts += 1;
                    self.start(index);
                }
            }
            Timer::Stable { index, generation } => {
                let service = &mut self.services[index];
                if service.generation == generation && service.pid.is_some() {
                    service.tracker.reset();
                    if service.crash_loop {
                        service.crash_loop = false;
                        service.set_state(ServiceState::Running);
                        let stable = format_duration(self.options.backoff.reset_after);
                        self.event(
                            index,
                            &format!("ran stably for {stable}: no longer crash-looping"),
                        );
                        self.update_health();
                    }
                }
            }
            Timer::KillDue { index, generation } => {
                let service = &self.services[index];
                if service.generation == generation && service.restart_requested {
                    if let Some(pid) = service.pid {
                        let timeout = service.spec.stop_timeout_secs;
                        signal_group(pid, Signal::SIGKILL);
                        self.event(index, &format!("did not stop within {timeout} s: SIGKILL"));
                    }
                }
            }
        }
    }

    /// Answers a request; the second value is set when the request is a shutdown.
    fn handle(&mut self, request: Request) -> (Response, Option<ShutdownKind>) {
        match request {
            Request::Services {} => (
                Response::Services {
                    services: self.services.iter().map(Service::status).collect(),
                    healthy: self.options.healthy.load(Ordering::SeqCst),
                },
                None,
            ),
            Request::Logs { service, limit } => {
                match self.rings().query(service.as_deref(), limit) {
                    Some(entries) => (Response::Logs { entries }, None),
                    None => (
                        unknown_service(service.as_deref().unwrap_or_default()),
                        None,
                    ),
                }
            }
            Request::Restart { service } => {
                let Some(index) = self.services.iter().position(|s| s.spec.name == service) else {
                    return (unknown_service(&service), None);
                };
                self.restart(index);
                (Response::Ok { ok: true }, None)
            }
            Request::Shutdown { kind } => (Response::Ok { ok: true }, Some(kind)),
            Request::Boot {} => (Response::Boot(self.boot_status()), None),
            Request::ReformatPerm {} => match self.accept_reformat() {
                Ok(()) => (Response::Ok { ok: true }, Some(ShutdownKind::Reboot)),
                Err(error) => {
                    tracing::warn!("supervisor: reformat-perm refused: {error}");
                    (Response::Error { error }, None)
                }
            },
        }
    }

    /// A copy of the assessment's status, or `unknown` when this supervisor is not PID 1.
    fn boot_status(&self) -> BootStatus {
        match &self.options.boot {
            Some(hooks) => hooks.status.lock().unwrap_or_else(|p| p.into_inner()).clone(),
            None => crate::assessment::unknown_status(format!(
                "boot assessment is done by ztos-init as PID 1 (this supervisor is process {}); no slots here",
                std::process::id()
            )),
        }
    }

    /// Checks that a `reformat-perm` can be done (PID 1, perm degraded, a partition, mkfs
    /// present) and records it; the refusal says why nothing was done.
    fn accept_reformat(&mut self) -> Result<(), String> {
        let Some(perm) = &self.options.perm else {
            return Err(format!(
                "reformatting perm is only done by ztos-init as PID 1 (this supervisor is process {}); nothing was done",
                std::process::id()
            ));
        };
        let Some(reason) = &perm.degraded else {
            return Err(format!(
                "perm is healthy ({} is mounted on {}); nothing was done",
                perm.device.as_deref().unwrap_or("its partition"),
                ztos_image::layout::PERM_MOUNT
            ));
        };
        let Some(device) = &perm.device else {
            return Err(format!(
                "there is no partition to reformat ({reason}); nothing was done"
            ));
        };
        if !perm.mkfs.exists() {
            return Err(format!(
                "{} is missing, {device} cannot be reformatted; nothing was done",
                perm.mkfs.display()
            ));
        }
        let args = ["-F", "-L", ztos_image::layout::PERM_LABEL, device]
            .map(String::from)
            .to_vec();
        tracing::warn!(
            "supervisor: reformat of {device} requested (perm is degraded: {reason}); stopping services"
        );
        self.reformat = Some((perm.mkfs.clone(), args));
        Ok(())
    }

    /// Runs `program` to its end as a child registered with [`process::reap`] (which stays the
    /// only `waitpid`), killing it after [`REFORMAT_LIMIT`].
    async fn run_to_exit(
        &self,
        program: &std::path::Path,
        args: &[String],
        sigchld: &mut tokio::signal::unix::Signal,
        exits: &mut mpsc::UnboundedReceiver<ChildExit>,
    ) -> anyhow::Result<ChildExit> {
        let pid = process::spawn_command(program, args, &self.exits)
            .map_err(|err| anyhow::anyhow!("cannot start {}: {err}", program.display()))?;
        let deadline = tokio::time::Instant::now() + REFORMAT_LIMIT;
        let mut killed = false;
        let mut tick = tokio::time::interval(Duration::from_millis(200));
        loop {
            tokio::select! {
                _ = sigchld.recv() => { process::reap(); }
                _ = tick.tick() => { process::reap(); }
                Some(exit) = exits.recv() => {
                    if exit.pid == pid {
                        return Ok(exit);
                    }
                }
                _ = tokio::time::sleep_until(deadline), if !killed => {
                    killed = true;
                    tracing::error!(
                        "supervisor: {} still running after {}: SIGKILL",
                        program.display(),
                        format_duration(REFORMAT_LIMIT)
                    );
                    let _ = nix::sys::signal::kill(pid, Signal::SIGKILL);
                }
            }
        }
    }

    /// An operator's restart: forgets the crash history; a running service gets SIGTERM (and
    /// SIGKILL after its stop timeout) and starts again at once when it has exited.
    fn restart(&mut self, index: usize) {
        let service = &mut self.services[index];
        service.tracker.reset();
        service.crash_loop = false;
        match service.pid {
            Some(pid) => {
                service.restart_requested = true;
                let generation = service.generation;
                let timeout = service.spec.stop_timeout();
                signal_group(pid, Signal::SIGTERM);
                self.event(index, "restart requested: SIGTERM");
                self.after(timeout, Timer::KillDue { index, generation });
            }
            None => {
                service.restarts += 1;
                self.event(index, "restart requested");
                self.start(index);
            }
        }
        self.update_health();
    }

    /// Stops every service: SIGTERM to each process group, SIGKILL to those still there after
    /// their stop timeout, and waits until each is reaped (or gives up on it
    /// [`AFTER_KILL_WAIT`] after SIGKILL).
    async fn stop_all(
        &mut self,
        sigchld: &mut tokio::signal::unix::Signal,
        exits: &mut mpsc::UnboundedReceiver<ChildExit>,
    ) {
        let now = Instant::now();
        for index in 0..self.services.len() {
            let service = &mut self.services[index];
            service.generation += 1; // cancels pending restarts
            match service.pid {
                Some(pid) => {
                    service.stop_deadline = Some(now + service.spec.stop_timeout());
                    signal_group(pid, Signal::SIGTERM);
                    self.event(index, "stopping: SIGTERM");
                }
                None => self.services[index].set_state(ServiceState::Stopped),
            }
        }
        let mut tick = tokio::time::interval(Duration::from_millis(200));
        while let Some(deadline) = self
            .services
            .iter()
            .filter(|s| s.pid.is_some())
            .filter_map(|s| s.stop_deadline)
            .min()
        {
            tokio::select! {
                _ = sigchld.recv() => { process::reap(); }
                _ = tick.tick() => { process::reap(); }
                Some(exit) = exits.recv() => {
                    if let Some(index) = self.index_of_pid(exit.pid) {
                        let service = &mut self.services[index];
                        service.pid = None;
                        service.last_exit = Some(exit.describe());
                        service.set_state(ServiceState::Stopped);
                        // Whatever the service left running in its group goes with it.
                        signal_group(exit.pid, Signal::SIGKILL);
                        self.event(index, &format!("stopped ({})", exit.describe()));
                    }
                }
                _ = tokio::time::sleep_until(tokio::time::Instant::from_std(deadline)) => {
                    let now = Instant::now();
                    for index in 0..self.services.len() {
                        let service = &mut self.services[index];
                        let (Some(pid), Some(deadline)) = (service.pid, service.stop_deadline) else {
                            continue;
                        };
                        if deadline > now {
                            continue;
                        }
                        if service.killed {
                            service.pid = None;
                            service.set_state(ServiceState::Stopped);
                            self.event(index, "still not reaped after SIGKILL; giving up on it");
                        } else {
                            service.killed = true;
                            service.stop_deadline = Some(now + AFTER_KILL_WAIT);
                            let timeout = service.spec.stop_timeout_secs;
                            signal_group(pid, Signal::SIGKILL);
                            self.event(index, &format!("did not stop within {timeout} s: SIGKILL"));
                        }
                    }
                }
            }
        }
    }
}

fn unknown_service(name: &str) -> Response {
    Response::Error {
        error: format!("unknown service {name:?}"),
    }
}

/// Signals a service's process group (its pid: each service leads its own session).
fn signal_group(pid: Pid, signal: Signal) {
    if let Err(err) = killpg(pid, signal) {
        if err != nix::errno::Errno::ESRCH {
            tracing::warn!("sending {} to process group {pid}: {err}", signal.as_str());
        }
    }
}

/// `100 ms`, `1.6 s`, `30 s`.
pub fn format_duration(duration: Duration) -> String {
    let ms = duration.as_millis();
    if ms < 1000 {
        format!("{ms} ms")
    } else if ms % 1000 == 0 {
        format!("{} s", ms / 1000)
    } else {
        format!("{:.1} s", duration.as_secs_f64())
    }
}

#[cfg(test)]
mod tests;
