//! The services manifest (`/etc/ztos/services.toml`): which programs the supervisor runs, how
//! and when they are restarted. Parsing is strict: unknown keys, duplicate names and empty
//! commands are errors that name the file and the offending value.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

/// Default time a service gets between SIGTERM and SIGKILL.
pub const DEFAULT_STOP_TIMEOUT_SECS: u64 = 10;

/// Why a manifest cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    #[error("reading manifest {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("manifest {path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("manifest {path}: service name {name:?} appears more than once")]
    DuplicateName { path: PathBuf, name: String },
    #[error("manifest {path}: service {name:?} has an empty command")]
    EmptyCommand { path: PathBuf, name: String },
    #[error(
        "manifest {path}: invalid service name {name:?}: use letters, digits, '.', '_' or '-'"
    )]
    InvalidName { path: PathBuf, name: String },
    #[error(
        "manifest {path}: service {name:?} has stop_timeout_secs 0: give it at least 1 second"
    )]
    ZeroStopTimeout { path: PathBuf, name: String },
}

/// When a service that exited is started again.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RestartPolicy {
    /// Whatever the exit status (the default: appliance services are meant to run forever).
    #[default]
    Always,
    /// Only after a non-zero exit status or a signal.
    OnFailure,
    /// Never; the service is reported `exited`.
    Never,
}

impl RestartPolicy {
    /// Whether a service that ended this way is started again.
    pub fn restarts(self, success: bool) -> bool {
        match self {
            RestartPolicy::Always => true,
            RestartPolicy::OnFailure => !success,
            RestartPolicy::Never => false,
        }
    }
}

/// One `[[service]]` entry.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceSpec {
    pub name: String,
    /// Program and arguments; the program is looked up in `PATH` when it has no `/`.
    pub command: Vec<String>,
    /// Added to the supervisor's own environment.
    #[serde(default)]
    pub environment: BTreeMap<String, String>,
    #[serde(default)]
    pub restart: RestartPolicy,
    /// A critical service that crash-loops makes the supervisor unhealthy (and, in the
    /// appliance, stops the watchdog being petted).
    #[serde(default)]
    pub critical: bool,
    pub working_directory: Option<PathBuf>,
    #[serde(default = "default_stop_timeout_secs")]
    pub stop_timeout_secs: u64,
}

fn default_stop_timeout_secs() -> u64 {
    DEFAULT_STOP_TIMEOUT_SECS
}

impl ServiceSpec {
    pub fn stop_timeout(&self) -> Duration {
        Duration::from_secs(self.stop_timeout_secs)
    }
}

/// The whole manifest: services in the order they are started, and the boot assessment's
/// settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Manifest {
    pub services: Vec<ServiceSpec>,
    pub boot: BootSettings,
}

/// `[boot]`: how ztos-init (PID 1) judges a trial boot of an updated slot
/// (`crate::assessment`). Absent keys take the defaults; the kernel command line
/// (`ztos.bless_after=`, `ztos.health_deadline=`) overrides both.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BootSettings {
    /// How long ztosd must answer /health with 200 without interruption before the slot is
    /// blessed (default 60).
    pub bless_after_secs: Option<u64>,
    /// How long ztosd has to become healthy before init reboots to spend a try (default 300).
    pub health_deadline_secs: Option<u64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ManifestFile {
    #[serde(default)]
    service: Vec<ServiceSpec>,
    #[serde(default)]
    boot: BootSettings,
}

impl Manifest {
    /// Reads and checks the manifest at `path`.
    pub fn load(path: &Path) -> Result<Manifest, ManifestError> {
        let text = std::fs::read_to_string(path).map_err(|source| ManifestError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Manifest::parse(&text, path)
    }

    /// Parses and checks manifest text; `path` is only used in error messages.
    pub fn parse(text: &str, path: &Path) -> Result<Manifest, ManifestError> {
        let file: ManifestFile = toml::from_str(text).map_err(|err| ManifestError::Parse {
            path: path.to_path_buf(),
            message: err.message().to_string()
                + &err
                    .span()
                    .map(|span| {
                        let line = text[..span.start].matches('\n').count() + 1;
                        format!(" (line {line})")
                    })
                    .unwrap_or_default(),
        })?;
        let mut seen = HashSet::new();
        for service in &file.service {
            let name = &service.name;
            let valid_name = !name.is_empty()
                && name.len() <= 64
                && name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
            if !valid_name {
                return Err(ManifestError::InvalidName {
                    path: path.to_path_buf(),
                    name: name.clone(),
                });
            }
            if !seen.insert(name.as_str()) {
                return Err(ManifestError::DuplicateName {
                    path: path.to_path_buf(),
                    name: name.clone(),
                });
            }
            if service
                .command
                .first()
                .is_none_or(|program| program.is_empty())
            {
                return Err(ManifestError::EmptyCommand {
                    path: path.to_path_buf(),
                    name: name.clone(),
                });
            }
            if service.stop_timeout_secs == 0 {
                return Err(ManifestError::ZeroStopTimeout {
                    path: path.to_path_buf(),
                    name: name.clone(),
                });
            }
        }
        for (key, value) in [
            ("bless_after_secs", file.boot.bless_after_secs),
            ("health_deadline_secs", file.boot.health_deadline_secs),
        ] {
            if value == Some(0) {
                return Err(ManifestError::Parse {
                    path: path.to_path_buf(),
                    message: format!("[boot] {key} = 0: give it at least 1 second"),
                });
            }
        }
        Ok(Manifest {
            services: file.service,
            boot: file.boot,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Manifest, ManifestError> {
        Manifest::parse(text, Path::new("/etc/ztos/services.toml"))
    }

    #[test]
    fn full_service_entry_and_defaults() {
        let manifest = parse(
            r#"
[[service]]
name = "ztosd"
command = ["/usr/bin/ztosd", "--state-dir", "/perm/ztos"]
environment = { ZTOS_LOG = "debug" }
critical = true
working_directory = "/perm"
stop_timeout_secs = 20

[[service]]
name = "once"
command = ["true"]
restart = "never"
"#,
        )
        .unwrap();
        let ztosd = &manifest.services[0];
        assert_eq!(ztosd.command[2], "/perm/ztos");
        assert_eq!(ztosd.environment["ZTOS_LOG"], "debug");
        assert!(ztosd.critical);
        assert_eq!(ztosd.restart, RestartPolicy::Always);
        assert_eq!(ztosd.stop_timeout(), Duration::from_secs(20));
        let once = &manifest.services[1];
        assert_eq!(once.restart, RestartPolicy::Never);
        assert!(!once.critical);
        assert_eq!(once.stop_timeout_secs, DEFAULT_STOP_TIMEOUT_SECS);
    }

    #[test]
    fn restart_policies_decide_by_exit_status() {
        assert!(RestartPolicy::Always.restarts(true));
        assert!(RestartPolicy::OnFailure.restarts(false));
        assert!(!RestartPolicy::OnFailure.restarts(true));
        assert!(!RestartPolicy::Never.restarts(false));
    }

    #[test]
    fn unknown_keys_are_rejected_naming_key_and_file() {
        let err = parse("[[service]]\nname = \"a\"\ncommand = [\"x\"]\nuser = \"nobody\"\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("/etc/ztos/services.toml"), "{err}");
        assert!(err.contains("user"), "{err}");
        let err = parse("[[services]]\nname = \"a\"\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("services"), "{err}");
    }

    #[test]
    fn bad_restart_value_is_named() {
        let err = parse("[[service]]\nname = \"a\"\ncommand = [\"x\"]\nrestart = \"sometimes\"\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("sometimes"), "{err}");
    }

    #[test]
    fn duplicate_names_are_rejected() {
        let err = parse(
            "[[service]]\nname = \"ztosd\"\ncommand = [\"a\"]\n[[service]]\nname = \"ztosd\"\ncommand = [\"b\"]\n",
        )
        .unwrap_err();
        assert!(matches!(err, ManifestError::DuplicateName { ref name, .. } if name == "ztosd"));
        assert!(err.to_string().contains("\"ztosd\""), "{err}");
    }

    #[test]
    fn empty_commands_are_rejected() {
        for command in ["[]", "[\"\"]"] {
            let err = parse(&format!(
                "[[service]]\nname = \"broken\"\ncommand = {command}\n"
            ))
            .unwrap_err();
            assert!(
                matches!(err, ManifestError::EmptyCommand { ref name, .. } if name == "broken"),
                "{err}"
            );
        }
    }

    #[test]
    fn bad_names_and_zero_timeouts_are_rejected() {
        let err = parse("[[service]]\nname = \"a b\"\ncommand = [\"x\"]\n").unwrap_err();
        assert!(err.to_string().contains("\"a b\""), "{err}");
        let err = parse("[[service]]\nname = \"a\"\ncommand = [\"x\"]\nstop_timeout_secs = 0\n")
            .unwrap_err();
        assert!(
            matches!(err, ManifestError::ZeroStopTimeout { .. }),
            "{err}"
        );
    }

    #[test]
    fn the_appliance_manifest_runs_ztosd_critical_and_both_consoles() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../rootfs/etc/ztos/services.toml");
        let manifest = Manifest::load(&path).unwrap();
        let ztosd = &manifest.services[0];
        assert_eq!(ztosd.name, "ztosd");
        assert!(ztosd.critical);
        assert!(ztosd
            .command
            .windows(2)
            .any(|w| w == ["--state-dir", "/perm/ztos"]));
        assert!(ztosd
            .command
            .windows(2)
            .any(|w| w == ["--initial-config", "/etc/ztos/ztos.toml"]));
        for tty in ["/dev/ttyS0", "/dev/tty1"] {
            assert!(
                manifest
                    .services
                    .iter()
                    .any(|s| s.command == ["/usr/bin/ztos", "console", "--tty", tty]
                        && s.restart == RestartPolicy::Always),
                "no console on {tty}"
            );
        }
    }

    #[test]
    fn missing_file_is_named() {
        let err = Manifest::load(Path::new("/nonexistent/services.toml")).unwrap_err();
        assert!(
            err.to_string().contains("/nonexistent/services.toml"),
            "{err}"
        );
    }

    #[test]
    fn boot_settings_are_optional_checked_and_strict() {
        let manifest = parse("[[service]]\nname = \"x\"\ncommand = [\"true\"]\n").unwrap();
        assert_eq!(manifest.boot, BootSettings::default());
        let manifest =
            parse("[boot]\nbless_after_secs = 30\nhealth_deadline_secs = 600\n").unwrap();
        assert_eq!(manifest.boot.bless_after_secs, Some(30));
        assert_eq!(manifest.boot.health_deadline_secs, Some(600));
        let err = parse("[boot]\nbless_after_secs = 0\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("[boot] bless_after_secs = 0"), "{err}");
        let err = parse("[boot]\nbless_after = 5\n").unwrap_err().to_string();
        assert!(err.contains("bless_after"), "{err}");
        let err = parse("[boot]\nbless_after_secs = -1\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("services.toml"), "{err}");
    }
}
