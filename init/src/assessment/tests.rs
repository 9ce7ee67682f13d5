//! Unit tests of the boot assessment: trial boots blessed, rolled back or left alone.
use std::fs;

use ztos_image::bootloader::{boot_entry, ENTRIES_DIR};

use super::*;

const START: Duration = Duration::from_secs(0);

/// An ESP directory with the given entries (file name, slot's version).
fn esp(entries: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    fs::create_dir_all(dir.path().join(ENTRIES_DIR)).unwrap();
    for (name, version) in entries {
        let slot = EntryName::parse(name).unwrap().slot;
        fs::write(
            dir.path().join(ENTRIES_DIR).join(name),
            boot_entry(slot, version),
        )
        .unwrap();
    }
    dir
}

fn entries(esp: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(esp.join(ENTRIES_DIR))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// A fake appliance: the ESP is a temporary directory handled by the real `slots`
/// functions, the clock moves only when the assessment sleeps, and ztosd's health and
/// crash loops follow a script over time.
struct Fake {
    esp: PathBuf,
    base: Instant,
    elapsed: Duration,
    health: Box<dyn Fn(Duration) -> Health>,
    crash_loop_from: Option<Duration>,
    console: Vec<String>,
    rebooted: bool,
    fail_bless: usize,
}

impl Fake {
    fn new(esp: &Path, health: impl Fn(Duration) -> Health + 'static) -> Fake {
        Fake {
            esp: esp.to_path_buf(),
            base: Instant::now(),
            elapsed: START,
            health: Box::new(health),
            crash_loop_from: None,
            console: Vec::new(),
            rebooted: false,
            fail_bless: 0,
        }
    }
}

impl Environment for Fake {
    fn read_state(&mut self) -> Result<BootState, String> {
        slots::read_boot_state(&self.esp).map_err(|e| e.to_string())
    }
    fn bless(&mut self, slot: Slot) -> Result<BootState, String> {
        if self.fail_bless > 0 {
            self.fail_bless -= 1;
            return Err("the ESP is busy".to_string());
        }
        slots::bless(&self.esp, slot).map_err(|e| e.to_string())?;
        self.read_state()
    }
    fn health(&mut self) -> Health {
        (self.health)(self.elapsed)
    }
    fn crash_loop(&self) -> bool {
        self.crash_loop_from
            .is_some_and(|from| self.elapsed >= from)
    }
    fn now(&self) -> Instant {
        self.base + self.elapsed
    }
    fn wall_now(&self) -> OffsetDateTime {
        OffsetDateTime::UNIX_EPOCH + self.elapsed
    }
    fn sleep(&mut self, duration: Duration) {
        self.elapsed += duration;
        assert!(
            self.elapsed < Duration::from_secs(3600),
            "the assessment never ended"
        );
    }
    fn console(&mut self, line: &str) {
        self.console.push(line.to_string());
    }
    fn reboot(&mut self) {
        self.rebooted = true;
    }
}

fn assess(fake: &mut Fake, booted: Slot) -> BootStatus {
    let status = Mutex::new(unknown_status("starting".into()));
    run(fake, AssessmentConfig::default(), booted, &status);
    status.into_inner().unwrap()
}

fn healthy_after(secs: u64) -> impl Fn(Duration) -> Health {
    move |t| {
        if t >= Duration::from_secs(secs) {
            Health::Healthy
        } else {
            Health::Unhealthy("connection refused".into())
        }
    }
}

#[test]
fn a_trial_boot_is_blessed_after_a_minute_of_health() {
    let dir = esp(&[("ztos-1-a.conf", "0.1.0"), ("ztos-2-b+2-1.conf", "0.2.0")]);
    let mut fake = Fake::new(dir.path(), healthy_after(20));
    let status = assess(&mut fake, Slot::B);
    assert_eq!(status.state, AssessmentState::Blessed);
    assert_eq!(status.booted_slot, Some(Slot::B));
    assert_eq!(status.entry.as_deref(), Some("ztos-2-b+2-1.conf"));
    assert_eq!(status.version.as_deref(), Some("0.2.0"));
    assert_eq!(entries(dir.path()), ["ztos-1-a.conf", "ztos-2-b.conf"]);
    // Healthy from 20 s, blessed 60 s later (polled every 2 s).
    assert_eq!(fake.elapsed, Duration::from_secs(80));
    assert_eq!(
        status.healthy_since.as_deref(),
        Some("1970-01-01T00:00:20Z")
    );
    assert!(!fake.rebooted);
    assert_eq!(
        fake.console.last().map(String::as_str),
        Some("ztos-init: blessed slot b (ZTOS 0.2.0)")
    );
    let b = &status.slots[1];
    assert_eq!(
        (b.status.as_str(), b.booted, b.next_boot),
        ("good", true, true)
    );
    assert_eq!(b.entry.as_deref(), Some("ztos-2-b.conf"));
}

#[test]
fn health_must_be_continuous() {
    let dir = esp(&[("ztos-1-a.conf", "0.1.0"), ("ztos-2-b+2-1.conf", "0.2.0")]);
    // Healthy at 0..50 s, a blip at 50 s, healthy again from 52 s: blessed at 112 s.
    let mut fake = Fake::new(dir.path(), |t| {
        if t == Duration::from_secs(50) {
            Health::Unhealthy("HTTP/1.1 503 Service Unavailable: {}".into())
        } else {
            Health::Healthy
        }
    });
    let status = assess(&mut fake, Slot::B);
    assert_eq!(status.state, AssessmentState::Blessed);
    assert_eq!(fake.elapsed, Duration::from_secs(112));
}

#[test]
fn a_crash_looping_ztosd_reboots_without_blessing() {
    let dir = esp(&[("ztos-1-a.conf", "0.1.0"), ("ztos-2-b+2-1.conf", "0.2.0")]);
    let mut fake = Fake::new(dir.path(), |_| {
        Health::Unhealthy("connection refused".into())
    });
    fake.crash_loop_from = Some(Duration::from_secs(10));
    let status = assess(&mut fake, Slot::B);
    assert_eq!(status.state, AssessmentState::Failed);
    assert!(fake.rebooted);
    assert_eq!(fake.elapsed, Duration::from_secs(10));
    assert!(status.message.unwrap().contains("crash-looping"));
    assert_eq!(entries(dir.path()), ["ztos-1-a.conf", "ztos-2-b+2-1.conf"]);
    assert!(
        fake.console.last().unwrap().contains("failed")
            && fake.console.last().unwrap().contains("rebooting"),
        "{:?}",
        fake.console
    );
}

#[test]
fn never_healthy_reboots_at_the_deadline() {
    let dir = esp(&[("ztos-1-a.conf", "0.1.0"), ("ztos-2-b+0-3.conf", "0.2.0")]);
    let mut fake = Fake::new(dir.path(), |_| {
        Health::Unhealthy("HTTP/1.1 503 Service Unavailable: {\"healthy\":false}".into())
    });
    let status = assess(&mut fake, Slot::B);
    assert_eq!(status.state, AssessmentState::Failed);
    assert!(fake.rebooted);
    assert_eq!(fake.elapsed, DEFAULT_HEALTH_DEADLINE);
    let message = status.message.unwrap();
    assert!(
        message.contains("300 s") && message.contains("503"),
        "{message}"
    );
    assert_eq!(entries(dir.path()), ["ztos-1-a.conf", "ztos-2-b+0-3.conf"]);
}

#[test]
fn the_last_try_is_assessed_and_blessed_like_the_others() {
    // systemd-boot renamed +1-2 to +0-3 before booting it.
    let dir = esp(&[("ztos-1-a.conf", "0.1.0"), ("ztos-2-b+0-3.conf", "0.2.0")]);
    let mut fake = Fake::new(dir.path(), healthy_after(0));
    let status = assess(&mut fake, Slot::B);
    assert_eq!(status.state, AssessmentState::Blessed);
    assert_eq!(entries(dir.path()), ["ztos-1-a.conf", "ztos-2-b.conf"]);
}

#[test]
fn a_failed_bless_is_retried() {
    let dir = esp(&[("ztos-1-a.conf", "0.1.0"), ("ztos-2-b+3.conf", "0.2.0")]);
    let mut fake = Fake::new(dir.path(), healthy_after(0));
    fake.fail_bless = 2;
    let status = assess(&mut fake, Slot::B);
    assert_eq!(status.state, AssessmentState::Blessed);
    assert_eq!(status.message, None);
    assert_eq!(fake.elapsed, Duration::from_secs(64));
    let warnings = fake
        .console
        .iter()
        .filter(|l| l.contains("retrying"))
        .count();
    assert_eq!(warnings, 1, "{:?}", fake.console);
}

#[test]
fn a_rollback_is_reported_with_the_failed_version() {
    let dir = esp(&[("ztos-1-a.conf", "0.1.0"), ("ztos-2-b+0-3.conf", "0.2.0")]);
    let mut fake = Fake::new(dir.path(), |_| panic!("no health checks on a rollback"));
    let status = assess(&mut fake, Slot::A);
    assert_eq!(status.state, AssessmentState::RolledBack);
    assert_eq!(status.rolled_back_from.as_deref(), Some("0.2.0"));
    assert_eq!(status.version.as_deref(), Some("0.1.0"));
    assert_eq!(
        fake.console,
        ["ztos-init: rolled back from 0.2.0: slot b's entry ztos-2-b+0-3.conf ran out of boot tries; running slot a (ZTOS 0.1.0)"]
    );
    assert!(!fake.rebooted);
    assert_eq!(entries(dir.path()), ["ztos-1-a.conf", "ztos-2-b+0-3.conf"]);
}

#[test]
fn good_boots_and_missing_entries_are_not_assessed() {
    let dir = esp(&[("ztos-1-a.conf", "0.1.0"), ("ztos-2-b.conf", "0.2.0")]);
    let mut fake = Fake::new(dir.path(), |_| panic!("no health checks"));
    assert_eq!(assess(&mut fake, Slot::B).state, AssessmentState::Good);
    // Slot A booted by hand from the menu while B is newer and good: still good.
    assert_eq!(assess(&mut fake, Slot::A).state, AssessmentState::Good);
    let dir = esp(&[("ztos-1-a.conf", "0.1.0")]);
    let mut fake = Fake::new(dir.path(), |_| panic!("no health checks"));
    let status = assess(&mut fake, Slot::B);
    assert_eq!(status.state, AssessmentState::Unknown);
    assert!(status.message.unwrap().contains("slot b has no boot entry"));
    let mut fake = Fake::new(&dir.path().join("missing"), |_| panic!("no health checks"));
    let status = assess(&mut fake, Slot::A);
    assert_eq!(status.state, AssessmentState::Unknown);
    assert!(status.message.unwrap().contains("loader/entries"));
}

#[test]
fn classify_follows_the_entries() {
    let state = |names: &[(&str, &str)]| {
        let dir = esp(names);
        slots::read_boot_state(dir.path()).unwrap()
    };
    let s = state(&[("ztos-1-a.conf", "0.1.0"), ("ztos-2-b+2-1.conf", "0.2.0")]);
    assert!(matches!(
        classify(Slot::B, &s),
        Classification::Trial { .. }
    ));
    let s = state(&[("ztos-3-a.conf", "0.1.0"), ("ztos-2-b+0-3.conf", "0.2.0")]);
    // The failed entry is older than A's (A was preferred by hand later): no rollback.
    assert!(matches!(classify(Slot::A, &s), Classification::Good { .. }));
    let s = state(&[("ztos-9-a.conf", "0.1.0"), ("ztos-10-b+0-3.conf", "0.2.0")]);
    match classify(Slot::A, &s) {
        Classification::RolledBack {
            failed,
            failed_version,
            ..
        } => {
            assert_eq!(failed.file_name(), "ztos-10-b+0-3.conf");
            assert_eq!(failed_version.as_deref(), Some("0.2.0"));
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn durations_come_from_the_manifest_then_the_command_line() {
    let (config, warnings) = AssessmentConfig::resolve(&BootSettings::default(), "quiet");
    assert_eq!(config, AssessmentConfig::default());
    assert!(warnings.is_empty());
    let settings = BootSettings {
        bless_after_secs: Some(30),
        health_deadline_secs: Some(120),
    };
    let (config, _) = AssessmentConfig::resolve(&settings, "ztos.slot=a quiet");
    assert_eq!(config.bless_after, Duration::from_secs(30));
    assert_eq!(config.health_deadline, Duration::from_secs(120));
    let (config, warnings) = AssessmentConfig::resolve(
        &settings,
        "ztos.slot=b ztos.bless_after=5 ztos.health_deadline=0 panic=10",
    );
    assert_eq!(config.bless_after, Duration::from_secs(5));
    assert_eq!(config.health_deadline, Duration::from_secs(120));
    assert_eq!(warnings.len(), 1);
    assert!(
        warnings[0].contains("ztos.health_deadline=\"0\""),
        "{warnings:?}"
    );
}

#[test]
fn health_is_a_200_from_the_api_socket() {
    use std::io::BufRead;
    use std::os::unix::net::UnixListener;
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("api.sock");
    let answer = |status: &'static str| {
        let listener = UnixListener::bind(&socket).unwrap();
        std::thread::spawn(move || {
            let (stream, _) = listener.accept().unwrap();
            let mut reader = std::io::BufReader::new(stream.try_clone().unwrap());
            let mut request = String::new();
            reader.read_line(&mut request).unwrap();
            assert_eq!(request, "GET /health HTTP/1.1\r\n");
            let body = "{\"healthy\":false,\"components\":[]}";
            let mut stream = stream;
            write!(
                stream,
                "HTTP/1.1 {status}\r\ncontent-length: {}\r\n\r\n{body}",
                body.len()
            )
            .unwrap();
        })
    };
    let server = answer("200 OK");
    assert_eq!(
        probe_health(&socket, Duration::from_secs(5)),
        Health::Healthy
    );
    server.join().unwrap();
    fs::remove_file(&socket).unwrap();
    let server = answer("503 Service Unavailable");
    match probe_health(&socket, Duration::from_secs(5)) {
        Health::Unhealthy(reason) => {
            assert!(
                reason.starts_with("HTTP/1.1 503 Service Unavailable: {\"healthy\":false"),
                "{reason}"
            )
        }
        Health::Healthy => panic!("503 is not healthy"),
    }
    server.join().unwrap();
    fs::remove_file(&socket).unwrap();
    match probe_health(&socket, Duration::from_secs(5)) {
        Health::Unhealthy(reason) => assert!(reason.contains("api.sock"), "{reason}"),
        Health::Healthy => panic!("no socket is not healthy"),
    }
}
