//! Console users: named, with a [`Role`], and a password stored only as an argon2id PHC
//! string in `<state_dir>/users.json` (mode 0600). Also the login rate limit (per user and per
//! source) and the in-memory login sessions the console uses to run commands with the role of
//! the user who logged in.
//!
//! Nothing here writes to the disk except [`UserStore::set_password`],
//! [`UserStore::create_first_admin`], [`UserStore::import_initial_admin`] and
//! [`UserStore::delete`]; verifying a password and the rate limit live in memory only.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use ztos_model::api::users::PasswordError;

use crate::config::Role;

/// File name of the user store inside the state directory.
pub const USERS_FILE: &str = "users.json";

/// Where an image build may put the argon2id PHC string of the admin password.
pub const INITIAL_ADMIN_HASH_PATH: &str = "/etc/ztos/admin-password.hash";

/// The admin user's name and the password rules are shared with the console, which checks a
/// new password before it sends it.
pub use ztos_model::api::users::{ADMIN_USER, MAX_PASSWORD_BYTES, MIN_PASSWORD_CHARS};

/// Failed logins (per user, and per source) that are free; each one after that waits.
pub const FREE_FAILURES: u32 = 3;
/// The wait after the first failure beyond [`FREE_FAILURES`]; it doubles with each further one.
pub const FIRST_DELAY: Duration = Duration::from_secs(2);
/// The longest wait.
pub const MAX_DELAY: Duration = Duration::from_secs(30);

/// A login session ends after this long without use (the console logs out after 15 minutes
/// idle and closes its session itself; this is the backstop if it cannot).
pub const SESSION_IDLE_LIMIT: Duration = Duration::from_secs(20 * 60);

/// Prefix of every session secret.
pub const SESSION_PREFIX: &str = "ztos_session_";

/// Longest accepted user name.
const MAX_NAME_LEN: usize = 32;

#[derive(Debug, thiserror::Error)]
pub enum UserError {
    #[error("cannot read user store {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot write user store {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("user store {path} is corrupt: {source}")]
    Corrupt {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error(
        "invalid user name {0:?}: use 1 to 32 lowercase letters, digits, '.', '_' or '-', starting with a letter"
    )]
    InvalidName(String),
    #[error("password for {0} is too short: use at least {MIN_PASSWORD_CHARS} characters")]
    PasswordTooShort(String),
    #[error("password for {0} is too long: use at most {MAX_PASSWORD_BYTES} bytes")]
    PasswordTooLong(String),
    #[error("no user named {0:?}")]
    NotFound(String),
    #[error("{0} is the last user with role admin: make another admin first")]
    LastAdmin(String),
    #[error("users exist already: the first admin password can only be set on a new box")]
    AlreadySetUp,
    #[error("{path} is not an argon2id password hash (PHC string): {reason}")]
    BadHash { path: PathBuf, reason: String },
    #[error("hashing the password failed: {0}")]
    Hash(String),
}

/// Why a login was refused.
#[derive(Debug, thiserror::Error)]
pub enum LoginError {
    /// Deliberately the same for an unknown user and a wrong password.
    #[error("invalid user name or password")]
    Invalid,
    /// Too many recent failures for this user or from this source. Refused without looking
    /// at the password, so waiting out the delay is the only way on.
    #[error("too many failed logins {who}: try again in {} s", seconds_rounded_up(*wait))]
    RateLimited { who: String, wait: Duration },
}

/// `wait` in whole seconds, rounded up and at least 1, so that "try again in N s" is never
/// too early.
pub fn seconds_rounded_up(wait: Duration) -> u64 {
    let seconds = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    seconds.max(1)
}

/// What the API shows about a user: an API answer (`ztos_model::api::users`).
pub use ztos_model::api::users::UserInfo;

/// One user as stored on disk.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct StoredUser {
    name: String,
    role: Role,
    /// argon2id PHC string.
    password_hash: String,
    created: String,
    changed: String,
}

#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct UserFile {
    #[serde(default)]
    users: Vec<StoredUser>,
}

/// A source of monotonic time, so that tests can move the rate limit's clock.
pub trait Clock: Send + Sync + std::fmt::Debug {
    fn now(&self) -> Instant;
}

/// The real clock.
#[derive(Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Instant {
        Instant::now()
    }
}

/// Failures counted for one user or one source.
#[derive(Debug, Clone, Copy)]
struct Failures {
    count: u32,
    last: Instant,
}

impl Failures {
    /// How long from `now` until the next attempt is allowed; zero if it is allowed now.
    fn wait(&self, now: Instant) -> Duration {
        if self.count < FREE_FAILURES {
            return Duration::ZERO;
        }
        let doublings = (self.count - FREE_FAILURES).min(16);
        let delay = FIRST_DELAY.saturating_mul(1 << doublings).min(MAX_DELAY);
        (self.last + delay).saturating_duration_since(now)
    }
}

#[derive(Debug)]
struct Session {
    user: String,
    role: Role,
    last_used: Instant,
}

#[derive(Debug)]
struct Inner {
    users: Vec<StoredUser>,
    failures_by_user: HashMap<String, Failures>,
    failures_by_source: HashMap<String, Failures>,
    /// SHA-256 of the secret -> session.
    sessions: HashMap<[u8; 32], Session>,
}

/// The user store. All methods take `&self`; a mutex serialises them. Password hashing takes
/// tens of milliseconds and happens outside the lock; async callers should use
/// `spawn_blocking`.
#[derive(Debug)]
pub struct UserStore {
    path: PathBuf,
    clock: Arc<dyn Clock>,
    inner: Mutex<Inner>,
}

impl UserStore {
    /// Opens the store in `state_dir`. A missing file is an empty store (a new box).
    pub fn open(state_dir: &Path) -> Result<UserStore, UserError> {
        UserStore::open_with_clock(state_dir, Arc::new(SystemClock))
    }

    /// [`UserStore::open`] with a clock of the caller's choosing (tests).
    pub fn open_with_clock(
        state_dir: &Path,
        clock: Arc<dyn Clock>,
    ) -> Result<UserStore, UserError> {
        let path = state_dir.join(USERS_FILE);
        let file = match std::fs::read(&path) {
            Ok(bytes) => {
                serde_json::from_slice::<UserFile>(&bytes).map_err(|source| UserError::Corrupt {
                    path: path.clone(),
                    source,
                })?
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => UserFile::default(),
            Err(source) => return Err(UserError::Read { path, source }),
        };
        Ok(UserStore {
            path,
            clock,
            inner: Mutex::new(Inner {
                users: file.users,
                failures_by_user: HashMap::new(),
                failures_by_source: HashMap::new(),
                sessions: HashMap::new(),
            }),
        })
    }

    /// Whether any user exists. A box without users asks for an admin password on its console.
    pub fn has_any(&self) -> bool {
        !self.lock().users.is_empty()
    }

    /// All users, sorted by name.
    pub fn list(&self) -> Vec<UserInfo> {
        let mut list: Vec<UserInfo> = self.lock().users.iter().map(info).collect();
        list.sort_by(|a, b| a.name.cmp(&b.name));
        list
    }

    /// Sets the password of `name`, creating the user if needed (with `role`, or `read`), and
    /// persists the store. `role` also changes an existing user's role. The user's open
    /// sessions end.
    pub fn set_password(
        &self,
        name: &str,
        password: &str,
        role: Option<Role>,
    ) -> Result<UserInfo, UserError> {
        validate_name(name)?;
        validate_password(name, password)?;
        let hash = hash_password(password)?;
        let mut inner = self.lock();
        let now = now_rfc3339();
        let mut users = inner.users.clone();
        let admin_count = admins(&users);
        let info = match users.iter_mut().find(|u| u.name == name) {
            Some(user) => {
                if let Some(role) = role {
                    if user.role == Role::Admin && role != Role::Admin && admin_count == 1 {
                        return Err(UserError::LastAdmin(name.to_string()));
                    }
                    user.role = role;
                }
                user.password_hash = hash;
                user.changed = now;
                info(user)
            }
            None => {
                let user = StoredUser {
                    name: name.to_string(),
                    role: role.unwrap_or_default(),
                    password_hash: hash,
                    created: now.clone(),
                    changed: now,
                };
                let created = info(&user);
                users.push(user);
                created
            }
        };
        // Write first, then change memory: a failed write leaves both as they were.
        self.persist(&users)?;
        inner.users = users;
        inner.sessions.retain(|_, s| s.user != name);
        inner.failures_by_user.remove(name);
        Ok(info)
    }

    /// Creates user `admin` with role admin, but only while no user exists: the first-boot
    /// console's question, which must not overwrite a password set meanwhile elsewhere.
    pub fn create_first_admin(&self, password: &str) -> Result<UserInfo, UserError> {
        validate_password(ADMIN_USER, password)?;
        let hash = hash_password(password)?;
        self.insert_first_admin(hash)
    }

    /// Imports the admin password hash an image build wrote to `path` (normally
    /// [`INITIAL_ADMIN_HASH_PATH`]) as user `admin`, if the file exists and no user exists yet.
    /// Returns whether it imported. The file must hold one argon2id PHC string.
    pub fn import_initial_admin(&self, path: &Path) -> Result<bool, UserError> {
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
            Err(source) => {
                return Err(UserError::Read {
                    path: path.to_path_buf(),
                    source,
                })
            }
        };
        if self.has_any() {
            return Ok(false);
        }
        let phc = text.trim();
        let bad = |reason: String| UserError::BadHash {
            path: path.to_path_buf(),
            reason,
        };
        let parsed = PasswordHash::new(phc).map_err(|e| bad(e.to_string()))?;
        if parsed.algorithm != argon2::Algorithm::Argon2id.ident() {
            return Err(bad(format!("algorithm is {}", parsed.algorithm)));
        }
        argon2::Params::try_from(&parsed).map_err(|e| bad(e.to_string()))?;
        match self.insert_first_admin(phc.to_string()) {
            Ok(_) => Ok(true),
            Err(UserError::AlreadySetUp) => Ok(false),
            Err(err) => Err(err),
        }
    }

    fn insert_first_admin(&self, password_hash: String) -> Result<UserInfo, UserError> {
        let mut inner = self.lock();
        if !inner.users.is_empty() {
            return Err(UserError::AlreadySetUp);
        }
        let now = now_rfc3339();
        let user = StoredUser {
            name: ADMIN_USER.to_string(),
            role: Role::Admin,
            password_hash,
            created: now.clone(),
            changed: now,
        };
        let users = vec![user];
        self.persist(&users)?;
        let created = info(&users[0]);
        inner.users = users;
        Ok(created)
    }

    /// Deletes the user called `name` and ends their sessions. The last admin cannot be deleted.
    pub fn delete(&self, name: &str) -> Result<(), UserError> {
        let mut inner = self.lock();
        let user = inner
            .users
            .iter()
            .find(|u| u.name == name)
            .ok_or_else(|| UserError::NotFound(name.to_string()))?;
        if user.role == Role::Admin && admins(&inner.users) == 1 {
            return Err(UserError::LastAdmin(name.to_string()));
        }
        let users: Vec<StoredUser> = inner
            .users
            .iter()
            .filter(|u| u.name != name)
            .cloned()
            .collect();
        self.persist(&users)?;
        inner.users = users;
        inner.sessions.retain(|_, s| s.user != name);
        inner.failures_by_user.remove(name);
        Ok(())
    }

    /// Checks `password` for `name`, attempted from `source` (a tty, `local`, or the peer's
    /// address), and returns the user's role. After [`FREE_FAILURES`] failures for the user or
    /// from the source, each further attempt must wait (2 s, doubling up to 30 s); a success
    /// clears both counts.
    pub fn verify(&self, name: &str, password: &str, source: &str) -> Result<Role, LoginError> {
        let now = self.clock.now();
        let stored = {
            let inner = self.lock();
            let by_user = inner
                .failures_by_user
                .get(name)
                .map_or(Duration::ZERO, |f| f.wait(now));
            if !by_user.is_zero() {
                return Err(LoginError::RateLimited {
                    who: format!("for {name}"),
                    wait: by_user,
                });
            }
            let by_source = inner
                .failures_by_source
                .get(source)
                .map_or(Duration::ZERO, |f| f.wait(now));
            if !by_source.is_zero() {
                return Err(LoginError::RateLimited {
                    who: format!("from {source}"),
                    wait: by_source,
                });
            }
            inner
                .users
                .iter()
                .find(|u| u.name == name)
                .map(|u| (u.password_hash.clone(), u.role))
        };
        // Hash outside the lock. An unknown user is checked against a dummy hash so that
        // the time taken does not tell which user names exist.
        let ok = match &stored {
            Some((hash, _)) => check_password(hash, password),
            None => {
                check_password(dummy_hash(), password);
                false
            }
        };
        let mut inner = self.lock();
        match (ok, stored) {
            (true, Some((_, role))) => {
                inner.failures_by_user.remove(name);
                inner.failures_by_source.remove(source);
                Ok(role)
            }
            _ => {
                let now = self.clock.now();
                // Bound the memory that guessing random names can use.
                if inner.failures_by_user.len() > 10_000 {
                    inner.failures_by_user.clear();
                }
                let inner = &mut *inner;
                for (map, key) in [
                    (&mut inner.failures_by_user, name),
                    (&mut inner.failures_by_source, source),
                ] {
                    let entry = map.entry(key.to_string()).or_insert(Failures {
                        count: 0,
                        last: now,
                    });
                    entry.count = entry.count.saturating_add(1);
                    entry.last = now;
                }
                Err(LoginError::Invalid)
            }
        }
    }

    /// Opens a login session for `user` with `role` and returns its secret. Sessions live in
    /// memory only: a restart of ztosd ends them all.
    pub fn open_session(&self, user: &str, role: Role) -> String {
        let mut random = [0u8; 32];
        rand::rng().fill_bytes(&mut random);
        let secret = format!("{SESSION_PREFIX}{}", hex::encode(random));
        let now = self.clock.now();
        let mut inner = self.lock();
        inner
            .sessions
            .retain(|_, s| now.saturating_duration_since(s.last_used) < SESSION_IDLE_LIMIT);
        inner.sessions.insert(
            Sha256::digest(secret.as_bytes()).into(),
            Session {
                user: user.to_string(),
                role,
                last_used: now,
            },
        );
        secret
    }

    /// The user and role of the session whose secret is `secret`, if it is open and has been
    /// used within [`SESSION_IDLE_LIMIT`]; marks it used.
    pub fn session(&self, secret: &str) -> Option<(String, Role)> {
        let key: [u8; 32] = Sha256::digest(secret.as_bytes()).into();
        let now = self.clock.now();
        let mut inner = self.lock();
        let session = inner.sessions.get_mut(&key)?;
        if now.saturating_duration_since(session.last_used) >= SESSION_IDLE_LIMIT {
            inner.sessions.remove(&key);
            return None;
        }
        session.last_used = now;
        Some((session.user.clone(), session.role))
    }

    /// Ends the session whose secret is `secret`; returns the user it belonged to.
    pub fn close_session(&self, secret: &str) -> Option<String> {
        let key: [u8; 32] = Sha256::digest(secret.as_bytes()).into();
        self.lock().sessions.remove(&key).map(|s| s.user)
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // Every change to `Inner` is a single assignment after the write, so a poisoned lock
        // cannot hold a half-made change.
        self.inner
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
    }

    fn persist(&self, users: &[StoredUser]) -> Result<(), UserError> {
        let file = UserFile {
            users: users.to_vec(),
        };
        let mut bytes = serde_json::to_vec_pretty(&file).expect("user file serializes");
        bytes.push(b'\n');
        if let Some(dir) = self.path.parent() {
            std::fs::create_dir_all(dir).map_err(|source| UserError::Write {
                path: self.path.clone(),
                source,
            })?;
        }
        crate::store::atomic_write(&self.path, &bytes, 0o600).map_err(|source| UserError::Write {
            path: self.path.clone(),
            source,
        })
    }
}

/// Checks the password rules: at least [`MIN_PASSWORD_CHARS`] characters, at most
/// [`MAX_PASSWORD_BYTES`] bytes. `name` is only for the message.
pub fn validate_password(name: &str, password: &str) -> Result<(), UserError> {
    ztos_model::api::users::validate_password(name, password).map_err(|err| match err {
        PasswordError::TooShort(name) => UserError::PasswordTooShort(name),
        PasswordError::TooLong(name) => UserError::PasswordTooLong(name),
    })
}

/// The argon2id PHC string of `password` with a fresh random salt and the crate's default
/// parameters (19 MiB, 2 passes). The image builder uses this too.
pub fn hash_password(password: &str) -> Result<String, UserError> {
    let mut salt = [0u8; 16];
    rand::rng().fill_bytes(&mut salt);
    let salt = SaltString::encode_b64(&salt).map_err(|e| UserError::Hash(e.to_string()))?;
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|hash| hash.to_string())
        .map_err(|e| UserError::Hash(e.to_string()))
}

fn check_password(phc: &str, password: &str) -> bool {
    match PasswordHash::new(phc) {
        Ok(hash) => Argon2::default()
            .verify_password(password.as_bytes(), &hash)
            .is_ok(),
        Err(_) => false,
    }
}

fn dummy_hash() -> &'static str {
    static DUMMY: OnceLock<String> = OnceLock::new();
    DUMMY.get_or_init(|| {
        let mut random = [0u8; 16];
        rand::rng().fill_bytes(&mut random);
        hash_password(&hex::encode(random)).unwrap_or_default()
    })
}

fn admins(users: &[StoredUser]) -> usize {
    users.iter().filter(|u| u.role == Role::Admin).count()
}

fn info(user: &StoredUser) -> UserInfo {
    UserInfo {
        name: user.name.clone(),
        role: user.role,
        created: user.created.clone(),
        changed: user.changed.clone(),
    }
}

/// User names: 1 to 32 of `a-z 0-9 . _ -`, starting with a letter.
pub fn validate_name(name: &str) -> Result<(), UserError> {
    // `setup` is a route (`/api/v1/users/setup`), so a user of that name could not be deleted.
    let valid = !name.is_empty()
        && name != "setup"
        && name.len() <= MAX_NAME_LEN
        && name.chars().next().is_some_and(|c| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '_' | '-'));
    if valid {
        Ok(())
    } else {
        Err(UserError::InvalidName(name.to_string()))
    }
}

fn now_rfc3339() -> String {
    OffsetDateTime::now_utc()
        .format(&Rfc3339)
        .expect("the current time formats as RFC 3339")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn setup_is_not_a_user_name_because_it_is_a_route() {
        assert!(validate_name("setup").is_err());
        assert!(validate_name("setup2").is_ok());
    }

    /// A clock the test moves by hand.
    #[derive(Debug)]
    struct ManualClock(Mutex<Instant>);

    impl ManualClock {
        fn advance(&self, by: Duration) {
            *self.0.lock().unwrap() += by;
        }
    }

    impl Clock for ManualClock {
        fn now(&self) -> Instant {
            *self.0.lock().unwrap()
        }
    }

    fn store_with_clock() -> (tempfile::TempDir, UserStore, Arc<ManualClock>) {
        let dir = tempfile::tempdir().unwrap();
        let clock = Arc::new(ManualClock(Mutex::new(Instant::now())));
        let store = UserStore::open_with_clock(dir.path(), clock.clone()).unwrap();
        (dir, store, clock)
    }

    #[test]
    fn password_verifies_and_only_the_hash_is_on_disk_with_mode_0600() {
        let (dir, store, _) = store_with_clock();
        assert!(!store.has_any());
        let info = store
            .set_password("admin", "correct horse", Some(Role::Admin))
            .unwrap();
        assert_eq!(info.role, Role::Admin);
        assert!(store.has_any());
        assert_eq!(
            store.verify("admin", "correct horse", "ttyS0").unwrap(),
            Role::Admin
        );

        let path = dir.path().join(USERS_FILE);
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(!text.contains("correct horse"), "{text}");
        assert!(text.contains("$argon2id$"), "{text}");
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);

        let reopened = UserStore::open(dir.path()).unwrap();
        assert_eq!(
            reopened.verify("admin", "correct horse", "local").unwrap(),
            Role::Admin
        );
        assert_eq!(reopened.list()[0].name, "admin");
    }

    #[test]
    fn wrong_password_and_unknown_user_give_the_same_error() {
        let (_dir, store, _) = store_with_clock();
        store
            .set_password("ops", "password-1", Some(Role::Read))
            .unwrap();
        let wrong = store.verify("ops", "password-2", "a").unwrap_err();
        let unknown = store.verify("nobody", "password-1", "b").unwrap_err();
        assert!(matches!(wrong, LoginError::Invalid));
        assert_eq!(wrong.to_string(), unknown.to_string());
        assert_eq!(wrong.to_string(), "invalid user name or password");
    }

    #[test]
    fn password_rules_and_names_are_checked_with_clear_errors() {
        let (_dir, store, _) = store_with_clock();
        let err = store.set_password("admin", "short", None).unwrap_err();
        assert_eq!(
            err.to_string(),
            "password for admin is too short: use at least 8 characters"
        );
        // Characters, not bytes: seven two-byte characters are still too short.
        assert!(store.set_password("admin", "ééééééé", None).is_err());
        assert!(store.set_password("admin", "éééééééé", None).is_ok());
        let err = store
            .set_password("admin", &"x".repeat(MAX_PASSWORD_BYTES + 1), None)
            .unwrap_err();
        assert!(matches!(err, UserError::PasswordTooLong(_)), "{err}");
        for bad in ["", "Admin", "1x", "a b", "a/b", &"x".repeat(33)] {
            let err = store.set_password(bad, "long enough", None).unwrap_err();
            assert!(matches!(err, UserError::InvalidName(_)), "{bad}: {err}");
        }
    }

    #[test]
    fn rate_limit_grows_per_user_and_resets_on_success() {
        let (_dir, store, clock) = store_with_clock();
        store
            .set_password("admin", "the right one", Some(Role::Admin))
            .unwrap();
        for _ in 0..FREE_FAILURES {
            assert!(matches!(
                store.verify("admin", "wrong password", "ttyS0"),
                Err(LoginError::Invalid)
            ));
        }
        // Now limited: even the right password is refused without being checked.
        let err = store.verify("admin", "the right one", "tty1").unwrap_err();
        let LoginError::RateLimited { wait, .. } = &err else {
            panic!("{err}")
        };
        assert_eq!(*wait, FIRST_DELAY);
        assert_eq!(
            err.to_string(),
            "too many failed logins for admin: try again in 2 s"
        );
        clock.advance(FIRST_DELAY);
        // One more failure doubles the wait.
        assert!(matches!(
            store.verify("admin", "wrong again", "tty1"),
            Err(LoginError::Invalid)
        ));
        let LoginError::RateLimited { wait, .. } = store.verify("admin", "x", "tty1").unwrap_err()
        else {
            panic!()
        };
        assert_eq!(wait, FIRST_DELAY * 2);
        // It never exceeds the cap.
        for _ in 0..10 {
            clock.advance(MAX_DELAY);
            let _ = store.verify("admin", "still wrong", "tty1");
        }
        let LoginError::RateLimited { wait, .. } = store.verify("admin", "x", "tty1").unwrap_err()
        else {
            panic!()
        };
        assert_eq!(wait, MAX_DELAY);
        clock.advance(MAX_DELAY);
        assert_eq!(
            store.verify("admin", "the right one", "tty1").unwrap(),
            Role::Admin
        );
        // The success cleared the count: three fresh failures are free again.
        for _ in 0..FREE_FAILURES {
            assert!(matches!(
                store.verify("admin", "wrong", "tty1"),
                Err(LoginError::Invalid)
            ));
        }
    }

    #[test]
    fn rate_limit_applies_per_source_across_user_names() {
        let (_dir, store, _clock) = store_with_clock();
        store
            .set_password("alice", "alice's secret", Some(Role::Read))
            .unwrap();
        for name in ["root", "guest", "operator"] {
            let _ = store.verify(name, "guess", "192.0.2.7");
        }
        let err = store
            .verify("alice", "alice's secret", "192.0.2.7")
            .unwrap_err();
        assert!(
            err.to_string()
                .starts_with("too many failed logins from 192.0.2.7: try again in "),
            "{err}"
        );
        // Another source is not affected.
        assert_eq!(
            store.verify("alice", "alice's secret", "ttyS0").unwrap(),
            Role::Read
        );
    }

    #[test]
    fn first_admin_only_on_a_new_box_and_the_last_admin_stays() {
        let (_dir, store, _) = store_with_clock();
        store.create_first_admin("first password").unwrap();
        assert!(matches!(
            store.create_first_admin("second password"),
            Err(UserError::AlreadySetUp)
        ));
        assert!(store.verify("admin", "first password", "x").is_ok());
        let err = store.delete("admin").unwrap_err();
        assert_eq!(
            err.to_string(),
            "admin is the last user with role admin: make another admin first"
        );
        assert!(matches!(
            store.set_password("admin", "first password", Some(Role::Read)),
            Err(UserError::LastAdmin(_))
        ));
        store
            .set_password("second", "password two", Some(Role::Admin))
            .unwrap();
        store.delete("admin").unwrap();
        assert_eq!(store.list().len(), 1);
        assert!(matches!(store.delete("admin"), Err(UserError::NotFound(_))));
    }

    #[test]
    fn initial_admin_hash_is_imported_once_and_must_be_argon2id() {
        let (dir, store, _) = store_with_clock();
        let path = dir.path().join("admin-password.hash");
        assert!(!store.import_initial_admin(&path).unwrap());
        std::fs::write(&path, "$2b$12$notargon2notargon2notargon2no\n").unwrap();
        let err = store.import_initial_admin(&path).unwrap_err();
        assert!(err.to_string().contains("admin-password.hash"), "{err}");
        std::fs::write(
            &path,
            format!("{}\n", hash_password("from the image").unwrap()),
        )
        .unwrap();
        assert!(store.import_initial_admin(&path).unwrap());
        assert_eq!(
            store.verify("admin", "from the image", "ttyS0").unwrap(),
            Role::Admin
        );
        // Users exist now: a second import changes nothing.
        store
            .set_password("admin", "changed on the box", None)
            .unwrap();
        assert!(!store.import_initial_admin(&path).unwrap());
        assert!(store.verify("admin", "changed on the box", "ttyS0").is_ok());
    }

    #[test]
    fn sessions_carry_the_role_and_end_on_close_idle_or_password_change() {
        let (_dir, store, clock) = store_with_clock();
        store
            .set_password("reader", "read only!", Some(Role::Read))
            .unwrap();
        let secret = store.open_session("reader", Role::Read);
        assert!(secret.starts_with(SESSION_PREFIX));
        assert_eq!(
            store.session(&secret),
            Some(("reader".to_string(), Role::Read))
        );
        assert_eq!(store.close_session(&secret), Some("reader".to_string()));
        assert_eq!(store.session(&secret), None);

        let idle = store.open_session("reader", Role::Read);
        clock.advance(SESSION_IDLE_LIMIT);
        assert_eq!(store.session(&idle), None);

        let changed = store.open_session("reader", Role::Read);
        store.set_password("reader", "new password", None).unwrap();
        assert_eq!(store.session(&changed), None);
    }

    #[test]
    fn corrupt_file_is_an_error_naming_the_path() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(USERS_FILE), b"{not json").unwrap();
        let err = UserStore::open(dir.path()).unwrap_err();
        assert!(err.to_string().contains(USERS_FILE), "{err}");
    }
}
