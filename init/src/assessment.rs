//! Boot assessment (PID 1, system stage): decides whether the running boot of an updated slot
//! is kept. systemd-boot counts a trial entry's boots (`ztos-2-b+3.conf` -> `+2-1` -> ...);
//! this module blesses the entry (drops the counter) once ztosd has answered `GET /health`
//! with 200 without interruption for `bless_after`, and reboots, so that the bootloader spends
//! a try, when ztosd crash-loops or is not healthy within `health_deadline`. When the newer
//! slot ran out of tries and the older one booted, it reports the rollback.
//!
//! The decisions are pure ([`classify`], [`Trial`]); [`run`] drives them through an
//! [`Environment`] (the ESP, the health probe, the clock, the console, the reboot), which
//! [`RealEnvironment`] implements for the appliance and the tests fake. Documented in
//! docs/update.md ("Boot assessment and rollback") and docs/supervisor.md (`boot`).

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;
use ztos_image::bootloader::EntryName;
use ztos_image::esp_mount::EspMount;
use ztos_image::layout::Slot;
use ztos_image::slots::{self, BootState, SlotStatus};

use crate::supervisor::{AssessmentState, BootHooks, BootSettings, BootStatus, SlotReport};

/// Default time ztosd must be healthy without interruption before a trial slot is blessed.
pub const DEFAULT_BLESS_AFTER: Duration = Duration::from_secs(60);
/// Default time ztosd has to become healthy on a trial boot.
pub const DEFAULT_HEALTH_DEADLINE: Duration = Duration::from_secs(300);
/// How often ztosd's health is asked while assessing.
pub const POLL_INTERVAL: Duration = Duration::from_secs(2);
/// Kernel command-line keys overriding `[boot]` in services.toml.
pub const CMDLINE_BLESS_AFTER: &str = "ztos.bless_after";
pub const CMDLINE_HEALTH_DEADLINE: &str = "ztos.health_deadline";
/// Time allowed for one health request.
const HEALTH_TIMEOUT: Duration = Duration::from_secs(5);
/// Most bytes of a health answer read.
const HEALTH_MAX_BYTES: u64 = 64 * 1024;

/// The assessment's two durations.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AssessmentConfig {
    pub bless_after: Duration,
    pub health_deadline: Duration,
}

impl Default for AssessmentConfig {
    fn default() -> Self {
        AssessmentConfig {
            bless_after: DEFAULT_BLESS_AFTER,
            health_deadline: DEFAULT_HEALTH_DEADLINE,
        }
    }
}

impl AssessmentConfig {
    /// The defaults, overridden by services.toml's `[boot]`, overridden by the kernel command
    /// line (`ztos.bless_after=SECS`, `ztos.health_deadline=SECS`). A command-line value that
    /// is not a positive number of seconds is ignored with a warning (returned).
    pub fn resolve(settings: &BootSettings, cmdline: &str) -> (AssessmentConfig, Vec<String>) {
        let mut config = AssessmentConfig::default();
        if let Some(secs) = settings.bless_after_secs {
            config.bless_after = Duration::from_secs(secs);
        }
        if let Some(secs) = settings.health_deadline_secs {
            config.health_deadline = Duration::from_secs(secs);
        }
        let mut warnings = Vec::new();
        for word in cmdline.split_whitespace() {
            let Some((key, value)) = word.split_once('=') else {
                continue;
            };
            let target = match key {
                CMDLINE_BLESS_AFTER => &mut config.bless_after,
                CMDLINE_HEALTH_DEADLINE => &mut config.health_deadline,
                _ => continue,
            };
            match value.parse::<u64>() {
                Ok(secs) if secs > 0 => *target = Duration::from_secs(secs),
                _ => warnings.push(format!(
                    "ignoring {key}={value:?} on the kernel command line: give a positive number of seconds"
                )),
            }
        }
        (config, warnings)
    }
}

/// What the ESP says about this boot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Classification {
    /// The booted slot's entry has a tries counter: it must prove itself.
    Trial { entry: EntryName },
    /// The booted slot's entry has no counter and no newer slot failed.
    Good { entry: EntryName },
    /// The entry with the highest generation belongs to the other slot and has no tries
    /// left: it failed, and systemd-boot fell back to this slot.
    RolledBack {
        entry: EntryName,
        failed: EntryName,
        failed_version: Option<String>,
    },
    /// The booted slot has no entry (something changed the ESP by hand).
    NoEntry,
}

/// Classifies the boot of `booted` given the ESP's state (read after systemd-boot renamed
/// the entry it booted).
pub fn classify(booted: Slot, state: &BootState) -> Classification {
    let Some(entry) = state.slot(booted).entry else {
        return Classification::NoEntry;
    };
    if entry.tries.is_some() {
        return Classification::Trial { entry };
    }
    let newest = state.entries.iter().max_by_key(|e| e.generation);
    match newest {
        Some(newest) if newest.slot != booted && newest.is_bad() => Classification::RolledBack {
            entry,
            failed: *newest,
            failed_version: state.slot(newest.slot).version.clone(),
        },
        _ => Classification::Good { entry },
    }
}

/// ztosd's health as one probe saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Health {
    Healthy,
    /// Why not: the status and body of the answer, or why there was none.
    Unhealthy(String),
}

/// One look at the system during a trial.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Observation {
    /// The supervisor reports a critical service (ztosd) crash-looping.
    pub crash_loop: bool,
    pub health: Health,
}

/// What to do after an observation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Wait,
    Bless,
    /// The trial failed; the reason is shown and logged.
    Reboot(String),
}

/// The trial of one boot: pure, driven by observations and a monotonic clock.
#[derive(Debug, Clone)]
pub struct Trial {
    config: AssessmentConfig,
    started: Instant,
    healthy_since: Option<Instant>,
    last_problem: Option<String>,
}

impl Trial {
    pub fn new(config: AssessmentConfig, started: Instant) -> Trial {
        Trial {
            config,
            started,
            healthy_since: None,
            last_problem: None,
        }
    }

    /// Since when ztosd has been healthy without interruption.
    pub fn healthy_since(&self) -> Option<Instant> {
        self.healthy_since
    }

    /// A crash loop fails the trial at once. A healthy answer starts (or continues) the
    /// healthy period, and the slot is blessed when it reaches `bless_after`. An unhealthy
    /// answer ends the healthy period; past `health_deadline` since the start it fails the
    /// trial (a box that is healthy is never rebooted for the deadline).
    pub fn observe(&mut self, now: Instant, observation: Observation) -> Verdict {
        if observation.crash_loop {
            return Verdict::Reboot(
                "ztosd is crash-looping (the supervisor restarts it too often)".to_string(),
            );
        }
        match observation.health {
            Health::Healthy => {
                let since = *self.healthy_since.get_or_insert(now);
                if now.saturating_duration_since(since) >= self.config.bless_after {
                    Verdict::Bless
                } else {
                    Verdict::Wait
                }
            }
            Health::Unhealthy(reason) => {
                self.healthy_since = None;
                let waited = now.saturating_duration_since(self.started);
                if waited >= self.config.health_deadline {
                    Verdict::Reboot(format!(
                        "ztosd was not healthy for {} s in the {} s allowed (last answer: {reason})",
                        self.config.bless_after.as_secs(),
                        self.config.health_deadline.as_secs()
                    ))
                } else {
                    self.last_problem = Some(reason);
                    Verdict::Wait
                }
            }
        }
    }
}

/// What [`run`] acts through.
pub trait Environment {
    /// Reads both slots from the ESP.
    fn read_state(&mut self) -> Result<BootState, String>;
    /// Blesses `slot` and reads the state again.
    fn bless(&mut self, slot: Slot) -> Result<BootState, String>;
    fn health(&mut self) -> Health;
    /// The supervisor's crash-loop report for critical services.
    fn crash_loop(&self) -> bool;
    fn now(&self) -> Instant;
    fn wall_now(&self) -> OffsetDateTime;
    fn sleep(&mut self, duration: Duration);
    /// A line on the console and in the kernel log.
    fn console(&mut self, line: &str);
    /// Asks the supervisor to stop the services and reboot.
    fn reboot(&mut self);
}

/// `state: unknown` with the reason.
pub fn unknown_status(message: String) -> BootStatus {
    let config = AssessmentConfig::default();
    BootStatus {
        booted_slot: None,
        entry: None,
        version: None,
        state: AssessmentState::Unknown,
        rolled_back_from: None,
        healthy_since: None,
        bless_after_secs: config.bless_after.as_secs(),
        health_deadline_secs: config.health_deadline.as_secs(),
        slots: Vec::new(),
        slots_read_at: None,
        message: Some(message),
    }
}

fn rfc3339(time: OffsetDateTime) -> Option<String> {
    time.format(&Rfc3339).ok()
}

fn slot_reports(booted: Slot, state: &BootState) -> Vec<SlotReport> {
    let next = state.next_boot();
    state
        .slots
        .iter()
        .map(|s| {
            let (left, done) = match s.status {
                SlotStatus::Trial { left, done } => (Some(left), Some(done)),
                SlotStatus::Bad { done } => (Some(0), Some(done)),
                SlotStatus::Good | SlotStatus::NoEntry => (None, None),
            };
            SlotReport {
                slot: s.slot,
                entry: s.entry.map(|e| e.file_name()),
                version: s.version.clone(),
                status: s.status.as_str().to_string(),
                tries_left: left,
                tries_done: done,
                booted: s.slot == booted,
                next_boot: Some(s.slot) == next,
            }
        })
        .collect()
}

fn describe(slot: Slot, version: Option<&str>) -> String {
    match version {
        Some(version) => format!("slot {slot} (ZTOS {version})"),
        None => format!("slot {slot}"),
    }
}

/// Runs the assessment of a boot of `booted` to its end: reads the ESP, reports a good boot
/// or a rollback, or assesses a trial until it is blessed or fails (then asks for a reboot).
/// `status` is kept current for `{"request":"boot"}`.
pub fn run(
    env: &mut impl Environment,
    config: AssessmentConfig,
    booted: Slot,
    status: &Mutex<BootStatus>,
) {
    let update = |change: &mut dyn FnMut(&mut BootStatus)| {
        change(&mut status.lock().unwrap_or_else(|p| p.into_inner()));
    };
    update(&mut |s| {
        s.booted_slot = Some(booted);
        s.bless_after_secs = config.bless_after.as_secs();
        s.health_deadline_secs = config.health_deadline.as_secs();
    });
    let state = match env.read_state() {
        Ok(state) => state,
        Err(error) => {
            env.console(&format!(
                "ztos-init: warning: boot assessment: {error}; this boot is neither blessed nor checked"
            ));
            update(&mut |s| {
                s.state = AssessmentState::Unknown;
                s.message = Some(error.clone());
            });
            return;
        }
    };
    let read_at = rfc3339(env.wall_now());
    let version = state.slot(booted).version.clone();
    update(&mut |s| {
        s.slots = slot_reports(booted, &state);
        s.slots_read_at = read_at.clone();
        s.entry = state.slot(booted).entry.map(|e| e.file_name());
        s.version = version.clone();
    });
    let this = describe(booted, version.as_deref());
    let entry = match classify(booted, &state) {
        Classification::NoEntry => {
            let message = format!("slot {booted} has no boot entry on the ESP; nothing to assess");
            env.console(&format!("ztos-init: warning: {message}"));
            update(&mut |s| {
                s.state = AssessmentState::Unknown;
                s.message = Some(message.clone());
            });
            return;
        }
        Classification::Good { .. } => {
            update(&mut |s| s.state = AssessmentState::Good);
            return;
        }
        Classification::RolledBack {
            failed,
            failed_version,
            ..
        } => {
            let from = failed_version
                .clone()
                .unwrap_or_else(|| "an unknown version".into());
            env.console(&format!(
                "ztos-init: rolled back from {from}: slot {}'s entry {failed} ran out of boot tries; running {this}",
                failed.slot
            ));
            update(&mut |s| {
                s.state = AssessmentState::RolledBack;
                s.rolled_back_from = failed_version.clone();
            });
            return;
        }
        Classification::Trial { entry } => entry,
    };
    env.console(&format!(
        "ztos-init: trial boot of {this} ({entry}): blessing it once ztosd has been healthy for {} s (deadline {} s)",
        config.bless_after.as_secs(),
        config.health_deadline.as_secs()
    ));
    update(&mut |s| s.state = AssessmentState::Assessing);
    let mut trial = Trial::new(config, env.now());
    let mut bless_failed = false;
    loop {
        let observation = Observation {
            crash_loop: env.crash_loop(),
            health: env.health(),
        };
        let now = env.now();
        let verdict = trial.observe(now, observation);
        let healthy_since = trial
            .healthy_since()
            .and_then(|since| rfc3339(env.wall_now() - now.saturating_duration_since(since)));
        update(&mut |s| s.healthy_since = healthy_since.clone());
        match verdict {
            Verdict::Wait => {}
            Verdict::Bless => match env.bless(booted) {
                Ok(state) => {
                    env.console(&format!("ztos-init: blessed {this}"));
                    let read_at = rfc3339(env.wall_now());
                    update(&mut |s| {
                        s.state = AssessmentState::Blessed;
                        s.slots = slot_reports(booted, &state);
                        s.slots_read_at = read_at.clone();
                        s.message = None;
                    });
                    return;
                }
                Err(error) => {
                    if !bless_failed {
                        env.console(&format!(
                            "ztos-init: warning: blessing {this}: {error}; retrying"
                        ));
                        bless_failed = true;
                    }
                    update(&mut |s| s.message = Some(format!("blessing failed: {error}")));
                }
            },
            Verdict::Reboot(reason) => {
                env.console(&format!(
                    "ztos-init: trial boot of {this} failed: {reason}; rebooting so that the boot loader counts the try"
                ));
                update(&mut |s| {
                    s.state = AssessmentState::Failed;
                    s.message = Some(reason.clone());
                });
                env.reboot();
                return;
            }
        }
        env.sleep(POLL_INTERVAL);
    }
}

/// The appliance: the ESP through [`EspMount`], ztosd's API socket, the supervisor's health
/// flag and reboot notification, /dev/console and /dev/kmsg.
#[derive(Debug)]
pub struct RealEnvironment {
    pub api_socket: PathBuf,
    /// The supervisor's flag: false while a critical service crash-loops.
    pub supervisor_healthy: Arc<AtomicBool>,
    pub reboot: Arc<tokio::sync::Notify>,
}

impl Environment for RealEnvironment {
    fn read_state(&mut self) -> Result<BootState, String> {
        let esp = EspMount::mount().map_err(|e| format!("ESP: {e}"))?;
        let state = slots::read_boot_state(esp.path()).map_err(|e| format!("ESP: {e}"))?;
        esp.unmount().map_err(|e| format!("ESP: {e}"))?;
        Ok(state)
    }

    fn bless(&mut self, slot: Slot) -> Result<BootState, String> {
        let esp = EspMount::mount().map_err(|e| format!("ESP: {e}"))?;
        slots::bless(esp.path(), slot).map_err(|e| format!("ESP: {e}"))?;
        let state = slots::read_boot_state(esp.path()).map_err(|e| format!("ESP: {e}"))?;
        esp.unmount().map_err(|e| format!("ESP: {e}"))?;
        Ok(state)
    }

    fn health(&mut self) -> Health {
        probe_health(&self.api_socket, HEALTH_TIMEOUT)
    }

    fn crash_loop(&self) -> bool {
        !self.supervisor_healthy.load(Ordering::SeqCst)
    }

    fn now(&self) -> Instant {
        Instant::now()
    }

    fn wall_now(&self) -> OffsetDateTime {
        OffsetDateTime::now_utc()
    }

    fn sleep(&mut self, duration: Duration) {
        std::thread::sleep(duration);
    }

    fn console(&mut self, line: &str) {
        // Best effort, like PID 1's other console lines: <5> keeps it in the kernel log
        // (which the supervisor's `kernel` ring captures) without repeating it on a quiet
        // console.
        if let Ok(mut console) = std::fs::OpenOptions::new().write(true).open("/dev/console") {
            let _ = writeln!(console, "{line}");
        }
        if let Ok(mut kmsg) = std::fs::OpenOptions::new().write(true).open("/dev/kmsg") {
            let _ = write!(kmsg, "<5>{line}");
        }
    }

    fn reboot(&mut self) {
        self.reboot.notify_one();
    }
}

/// `GET /health` on ztosd's unix API socket: healthy on a 200 answer; otherwise the status
/// line and the start of the body (ztosd's components say why), or why no answer came.
pub fn probe_health(socket: &Path, timeout: Duration) -> Health {
    let attempt = || -> std::io::Result<(String, String)> {
        let mut stream = UnixStream::connect(socket)?;
        stream.set_read_timeout(Some(timeout))?;
        stream.set_write_timeout(Some(timeout))?;
        stream.write_all(
            b"GET /health HTTP/1.1\r\nHost: localhost\r\nAccept: application/json\r\nConnection: close\r\n\r\n",
        )?;
        let mut answer = Vec::new();
        stream.take(HEALTH_MAX_BYTES).read_to_end(&mut answer)?;
        let text = String::from_utf8_lossy(&answer).into_owned();
        let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
        let status_line = head.lines().next().unwrap_or_default().to_string();
        Ok((status_line, body.trim().to_string()))
    };
    match attempt() {
        Ok((status_line, body)) => {
            let code = status_line.split_whitespace().nth(1);
            if status_line.starts_with("HTTP/1.") && code == Some("200") {
                Health::Healthy
            } else if status_line.is_empty() {
                Health::Unhealthy(format!("{}: empty answer", socket.display()))
            } else {
                let body: String = body.chars().take(300).collect();
                Health::Unhealthy(format!("{status_line}: {body}"))
            }
        }
        Err(error) => Health::Unhealthy(format!("{}: {error}", socket.display())),
    }
}

/// Starts the assessment of this boot on its own thread (PID 1 only): reads `/proc/cmdline`
/// for the booted slot and overrides, and returns the hooks the supervisor answers `boot`
/// requests and reboots through. Never fails the boot: problems end in `state: unknown`.
pub fn spawn(settings: &BootSettings, supervisor_healthy: Arc<AtomicBool>) -> BootHooks {
    let cmdline = std::fs::read_to_string("/proc/cmdline").unwrap_or_default();
    let (config, warnings) = AssessmentConfig::resolve(settings, &cmdline);
    let mut initial = unknown_status("the boot assessment is starting".to_string());
    initial.bless_after_secs = config.bless_after.as_secs();
    initial.health_deadline_secs = config.health_deadline.as_secs();
    let hooks = BootHooks {
        status: Arc::new(Mutex::new(initial)),
        reboot: Arc::new(tokio::sync::Notify::new()),
    };
    let mut env = RealEnvironment {
        api_socket: PathBuf::from(ztos_image::layout::API_SOCKET),
        supervisor_healthy,
        reboot: hooks.reboot.clone(),
    };
    for warning in &warnings {
        env.console(&format!("ztos-init: warning: {warning}"));
    }
    let booted = match crate::boot::parse_cmdline(&cmdline) {
        Ok(parsed) => parsed.slot,
        Err(error) => {
            let message = format!("cannot tell the booted slot: {error}");
            env.console(&format!("ztos-init: warning: boot assessment: {message}"));
            hooks
                .status
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .message = Some(message);
            return hooks;
        }
    };
    let status = hooks.status.clone();
    let spawned = std::thread::Builder::new()
        .name("boot-assessment".to_string())
        .spawn(move || run(&mut env, config, booted, &status));
    if let Err(error) = spawned {
        hooks
            .status
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .message = Some(format!("cannot start the boot assessment thread: {error}"));
    }
    hooks
}

#[cfg(test)]
mod tests;
