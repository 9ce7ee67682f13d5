//! ZTOS versions (`MAJOR.MINOR.PATCH` with an optional `-pre` part, ordered as semver orders
//! them) and the update policy: which bundle versions a running system accepts.

use std::cmp::Ordering;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::bundle::Manifest;

/// Longest version string accepted (versions land in file names and boot entry titles).
pub const MAX_VERSION_LENGTH: usize = 64;

/// A version: `1.2.3` or `1.2.3-rc.1`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Version {
    pub major: u64,
    pub minor: u64,
    pub patch: u64,
    /// The pre-release identifiers after `-` (`rc.1` -> `["rc", "1"]`); empty for a release.
    pub pre: Vec<String>,
}

#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
#[error("invalid version {text:?}: {reason}")]
pub struct VersionError {
    pub text: String,
    pub reason: String,
}

impl Version {
    pub fn new(major: u64, minor: u64, patch: u64) -> Version {
        Version {
            major,
            minor,
            patch,
            pre: Vec::new(),
        }
    }

    pub fn parse(text: &str) -> Result<Version, VersionError> {
        let fail = |reason: &str| VersionError {
            text: text.chars().take(MAX_VERSION_LENGTH + 8).collect(),
            reason: reason.to_string(),
        };
        if text.len() > MAX_VERSION_LENGTH {
            return Err(fail(&format!(
                "longer than {MAX_VERSION_LENGTH} characters"
            )));
        }
        if text.contains('+') {
            return Err(fail("build metadata (+...) is not supported"));
        }
        let (core, pre) = match text.split_once('-') {
            Some((core, pre)) => (core, Some(pre)),
            None => (text, None),
        };
        let numbers: Vec<&str> = core.split('.').collect();
        let [major, minor, patch] = numbers.as_slice() else {
            return Err(fail("expected MAJOR.MINOR.PATCH"));
        };
        let number = |part: &str, name: &str| -> Result<u64, VersionError> {
            if part.is_empty() || !part.bytes().all(|b| b.is_ascii_digit()) {
                return Err(fail(&format!("{name} {part:?} is not a number")));
            }
            if part.len() > 1 && part.starts_with('0') {
                return Err(fail(&format!("{name} {part:?} has a leading zero")));
            }
            part.parse()
                .map_err(|_| fail(&format!("{name} {part:?} is too large")))
        };
        let pre = match pre {
            None => Vec::new(),
            Some(pre) => {
                let identifiers: Vec<String> = pre.split('.').map(str::to_string).collect();
                for identifier in &identifiers {
                    if identifier.is_empty()
                        || !identifier
                            .bytes()
                            .all(|b| b.is_ascii_alphanumeric() || b == b'-')
                    {
                        return Err(fail(
                            "pre-release identifiers are dot-separated [0-9A-Za-z-]+",
                        ));
                    }
                }
                identifiers
            }
        };
        Ok(Version {
            major: number(major, "major")?,
            minor: number(minor, "minor")?,
            patch: number(patch, "patch")?,
            pre,
        })
    }

    pub fn is_prerelease(&self) -> bool {
        !self.pre.is_empty()
    }
}

impl FromStr for Version {
    type Err = VersionError;
    fn from_str(s: &str) -> Result<Version, VersionError> {
        Version::parse(s)
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.patch)?;
        if !self.pre.is_empty() {
            write!(f, "-{}", self.pre.join("."))?;
        }
        Ok(())
    }
}

/// Semver §11 precedence of one pre-release identifier: numeric ones compare numerically and
/// sort before alphanumeric ones, which compare as ASCII.
fn compare_identifier(a: &str, b: &str) -> Ordering {
    let numeric = |s: &str| s.bytes().all(|c| c.is_ascii_digit());
    match (numeric(a), numeric(b)) {
        (true, true) => a.len().cmp(&b.len()).then_with(|| a.cmp(b)),
        (true, false) => Ordering::Less,
        (false, true) => Ordering::Greater,
        (false, false) => a.cmp(b),
    }
}

impl Ord for Version {
    fn cmp(&self, other: &Version) -> Ordering {
        (self.major, self.minor, self.patch)
            .cmp(&(other.major, other.minor, other.patch))
            .then_with(|| match (self.pre.is_empty(), other.pre.is_empty()) {
                // A release is newer than its pre-releases (1.0.0-rc.1 < 1.0.0).
                (true, true) => Ordering::Equal,
                (true, false) => Ordering::Greater,
                (false, true) => Ordering::Less,
                (false, false) => {
                    for (a, b) in self.pre.iter().zip(&other.pre) {
                        let order = compare_identifier(a, b);
                        if order != Ordering::Equal {
                            return order;
                        }
                    }
                    self.pre.len().cmp(&other.pre.len())
                }
            })
    }
}

impl PartialOrd for Version {
    fn partial_cmp(&self, other: &Version) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Serialize for Version {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Version {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Version, D::Error> {
        let text = String::deserialize(deserializer)?;
        Version::parse(&text).map_err(serde::de::Error::custom)
    }
}

/// Why an update is refused by the version policy.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum PolicyError {
    #[error("refusing to downgrade from {current} to {offered} (allow it with --allow-downgrade)")]
    Downgrade { current: Version, offered: Version },
    #[error("version {version} is already running (reinstall it with --allow-downgrade)")]
    SameVersion { version: Version },
    #[error("the bundle updates only from {minimum} or later; this system runs {current}")]
    BelowMinimum { current: Version, minimum: Version },
}

/// Whether a system running `current` may install the bundle described by `manifest`:
/// a system older than the manifest's minimum is always refused (the bundle may rely on a
/// migration it lacks); an older or equal version only with `allow_downgrade`.
pub fn check_update(
    current: &Version,
    manifest: &Manifest,
    allow_downgrade: bool,
) -> Result<(), PolicyError> {
    if *current < manifest.min_version {
        return Err(PolicyError::BelowMinimum {
            current: current.clone(),
            minimum: manifest.min_version.clone(),
        });
    }
    match manifest.version.cmp(current) {
        Ordering::Greater => Ok(()),
        _ if allow_downgrade => Ok(()),
        Ordering::Equal => Err(PolicyError::SameVersion {
            version: current.clone(),
        }),
        Ordering::Less => Err(PolicyError::Downgrade {
            current: current.clone(),
            offered: manifest.version.clone(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bundle::{Artifact, Manifest, FORMAT_VERSION};

    fn v(text: &str) -> Version {
        Version::parse(text).unwrap()
    }

    #[test]
    fn parse_and_display_round_trip() {
        for text in [
            "0.0.0",
            "1.2.3",
            "10.20.30",
            "1.0.0-rc.1",
            "1.0.0-alpha-2.x",
        ] {
            assert_eq!(v(text).to_string(), text);
        }
        assert_eq!(v("1.2.3"), Version::new(1, 2, 3));
        assert_eq!(v("1.0.0-rc.1").pre, vec!["rc", "1"]);
    }

    #[test]
    fn bad_versions_name_the_problem() {
        for (text, reason) in [
            ("1.2", "expected MAJOR.MINOR.PATCH"),
            ("1.2.3.4", "expected MAJOR.MINOR.PATCH"),
            ("1.x.3", "minor \"x\" is not a number"),
            ("01.2.3", "leading zero"),
            ("1.2.3-", "pre-release identifiers"),
            ("1.2.3-rc..1", "pre-release identifiers"),
            ("1.2.3+build", "build metadata"),
            ("99999999999999999999.0.0", "too large"),
            ("", "expected MAJOR.MINOR.PATCH"),
        ] {
            let err = Version::parse(text).unwrap_err().to_string();
            assert!(err.contains(reason), "{text}: {err}");
        }
        let long = format!("1.0.0-{}", "a".repeat(100));
        assert!(Version::parse(&long)
            .unwrap_err()
            .to_string()
            .contains("longer than"));
    }

    #[test]
    fn precedence_follows_semver() {
        let ordered = [
            "0.9.9",
            "1.0.0-alpha",
            "1.0.0-alpha.1",
            "1.0.0-alpha.beta",
            "1.0.0-beta",
            "1.0.0-beta.2",
            "1.0.0-beta.11",
            "1.0.0-rc.1",
            "1.0.0",
            "1.0.1",
            "1.1.0",
            "1.10.0",
            "2.0.0",
        ];
        for pair in ordered.windows(2) {
            assert!(v(pair[0]) < v(pair[1]), "{} < {}", pair[0], pair[1]);
        }
    }

    fn manifest(version: &str, min: &str) -> Manifest {
        let artifact = Artifact {
            size: 1,
            sha256: [0; 32],
        };
        Manifest {
            format: FORMAT_VERSION,
            version: v(version),
            build_time: 0,
            min_version: v(min),
            kernel: artifact.clone(),
            initramfs: artifact.clone(),
            root: artifact,
        }
    }

    #[test]
    fn policy() {
        let current = v("1.2.0");
        assert_eq!(
            check_update(&current, &manifest("1.3.0", "0.0.0"), false),
            Ok(())
        );
        assert_eq!(
            check_update(&current, &manifest("1.1.0", "0.0.0"), false)
                .unwrap_err()
                .to_string(),
            "refusing to downgrade from 1.2.0 to 1.1.0 (allow it with --allow-downgrade)"
        );
        assert_eq!(
            check_update(&current, &manifest("1.1.0", "0.0.0"), true),
            Ok(())
        );
        assert_eq!(
            check_update(&current, &manifest("1.2.0", "0.0.0"), false),
            Err(PolicyError::SameVersion {
                version: current.clone()
            })
        );
        assert_eq!(
            check_update(&current, &manifest("1.2.0", "0.0.0"), true),
            Ok(())
        );
        // A pre-release of the running version is older.
        assert!(matches!(
            check_update(&current, &manifest("1.2.0-rc.1", "0.0.0"), false),
            Err(PolicyError::Downgrade { .. })
        ));
        // Below the minimum: refused even when downgrades are allowed.
        for allow in [false, true] {
            assert_eq!(
                check_update(&current, &manifest("2.0.0", "1.5.0"), allow)
                    .unwrap_err()
                    .to_string(),
                "the bundle updates only from 1.5.0 or later; this system runs 1.2.0"
            );
        }
        assert_eq!(
            check_update(&current, &manifest("2.0.0", "1.2.0"), false),
            Ok(())
        );
    }
}
