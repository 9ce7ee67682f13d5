//! API tokens for remote (HTTPS) clients: named, scoped by a [`Role`], and stored only as
//! SHA-256 hashes in `<state_dir>/tokens.json` (mode 0600). The secret is shown once, when the
//! token is created, and can never be read back.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use crate::config::Role;

/// File name of the token store inside the state directory.
pub const TOKENS_FILE: &str = "tokens.json";

/// Prefix of every token secret, so that a leaked secret is easy to recognise (and to scan for).
pub const SECRET_PREFIX: &str = "ztos_";

/// Longest accepted token name.
const MAX_NAME_LEN: usize = 64;

#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("cannot read token store {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot write token store {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("token store {path} is corrupt: {source}")]
    Corrupt {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error(
        "invalid token name {0:?}: use 1 to 64 letters, digits, '.', '_' or '-', starting with a letter or digit"
    )]
    InvalidName(String),
    #[error("a token named {0:?} already exists")]
    Duplicate(String),
    #[error("no token named {0:?}")]
    NotFound(String),
}

/// What the API shows about a token: an API answer (`ztos_model::api::tokens`).
pub use ztos_model::api::tokens::TokenInfo;

/// One token as stored on disk.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct StoredToken {
    name: String,
    role: Role,
    /// Lowercase hex SHA-256 of the secret.
    sha256: String,
    created: String,
}

#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct TokenFile {
    #[serde(default)]
    tokens: Vec<StoredToken>,
}

#[derive(Debug)]
struct Inner {
    tokens: Vec<StoredToken>,
    /// Token name -> RFC 3339 time of the last successful verification. Kept in memory only
    /// so that verifying a token never writes to the disk.
    last_used: BTreeMap<String, String>,
}

/// The token store. All methods take `&self`; a mutex serialises them.
#[derive(Debug)]
pub struct TokenStore {
    path: PathBuf,
    inner: Mutex<Inner>,
}

impl TokenStore {
    /// Opens the store in `state_dir`. A missing file is an empty store; the file is created on
    /// the first [`TokenStore::create`].
    pub fn open(state_dir: &Path) -> Result<TokenStore, TokenError> {
        let path = state_dir.join(TOKENS_FILE);
        let file = match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice::<TokenFile>(&bytes).map_err(|source| {
                TokenError::Corrupt {
                    path: path.clone(),
                    source,
                }
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => TokenFile::default(),
            Err(source) => return Err(TokenError::Read { path, source }),
        };
        Ok(TokenStore {
            path,
            inner: Mutex::new(Inner {
                tokens: file.tokens,
                last_used: BTreeMap::new(),
            }),
        })
    }

    /// Creates a token and persists the store. Returns the token's info and its secret, which
    /// is not stored anywhere and cannot be shown again.
    pub fn create(&self, name: &str, role: Role) -> Result<(TokenInfo, String), TokenError> {
        validate_name(name)?;
        let mut inner = self.lock();
        if inner.tokens.iter().any(|t| t.name == name) {
            return Err(TokenError::Duplicate(name.to_string()));
        }
        let mut random = [0u8; 32];
        rand::rng().fill_bytes(&mut random);
        let secret = format!("{SECRET_PREFIX}{}", hex::encode(random));
        let stored = StoredToken {
            name: name.to_string(),
            role,
            sha256: hash_secret(&secret),
            created: now_rfc3339(),
        };
        let mut tokens = inner.tokens.clone();
        tokens.push(stored.clone());
        // Write first, then change memory: a failed write leaves both as they were.
        self.persist(&tokens)?;
        inner.tokens = tokens;
        Ok((info(&stored, None), secret))
    }

    /// All tokens, sorted by name.
    pub fn list(&self) -> Vec<TokenInfo> {
        let inner = self.lock();
        let mut list: Vec<TokenInfo> = inner
            .tokens
            .iter()
            .map(|t| info(t, inner.last_used.get(&t.name)))
            .collect();
        list.sort_by(|a, b| a.name.cmp(&b.name));
        list
    }

    /// Revokes (deletes) the token called `name` and persists the store.
    pub fn revoke(&self, name: &str) -> Result<(), TokenError> {
        let mut inner = self.lock();
        if !inner.tokens.iter().any(|t| t.name == name) {
            return Err(TokenError::NotFound(name.to_string()));
        }
        let tokens: Vec<StoredToken> = inner
            .tokens
            .iter()
            .filter(|t| t.name != name)
            .cloned()
            .collect();
        self.persist(&tokens)?;
        inner.tokens = tokens;
        inner.last_used.remove(name);
        Ok(())
    }

    /// Returns the token whose secret is `secret`, recording the time of use. The hash of
    /// `secret` is compared with every stored hash in constant time, so the time taken does
    /// not reveal how much of a guess was right.
    pub fn verify(&self, secret: &str) -> Option<TokenInfo> {
        let presented = Sha256::digest(secret.as_bytes());
        let mut inner = self.lock();
        let mut found: Option<usize> = None;
        for (index, token) in inner.tokens.iter().enumerate() {
            let Ok(stored) = hex::decode(&token.sha256) else {
                continue;
            };
            if constant_time_eq(&stored, &presented) {
                found = Some(index);
            }
        }
        let index = found?;
        let now = now_rfc3339();
        let name = inner.tokens[index].name.clone();
        inner.last_used.insert(name.clone(), now.clone());
        Some(info(&inner.tokens[index], Some(&now)))
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock cannot leave `Inner` half-changed (every change is
        // a single assignment after the write), so a poisoned lock is safe to reuse.
        self.inner
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
    }

    fn persist(&self, tokens: &[StoredToken]) -> Result<(), TokenError> {
        let file = TokenFile {
            tokens: tokens.to_vec(),
        };
        let mut bytes = serde_json::to_vec_pretty(&file).expect("token file serializes");
        bytes.push(b'\n');
        if let Some(dir) = self.path.parent() {
            std::fs::create_dir_all(dir).map_err(|source| TokenError::Write {
                path: self.path.clone(),
                source,
            })?;
        }
        crate::store::atomic_write(&self.path, &bytes, 0o600).map_err(|source| TokenError::Write {
            path: self.path.clone(),
            source,
        })
    }
}

fn info(token: &StoredToken, last_used: Option<&String>) -> TokenInfo {
    TokenInfo {
        name: token.name.clone(),
        role: token.role,
        created: token.created.clone(),
        last_used: last_used.cloned(),
    }
}

fn validate_name(name: &str) -> Result<(), TokenError> {
    let valid = !name.is_empty()
        && name.len() <= MAX_NAME_LEN
        && name
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphanumeric())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if valid {
        Ok(())
    } else {
        Err(TokenError::InvalidName(name.to_string()))
    }
}

fn hash_secret(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

fn now_rfc3339() -> String {
    OffsetDateTime::now_utc()
        .format(&Rfc3339)
        .expect("the current time formats as RFC 3339")
}

/// Compares two byte strings without an early exit on the first difference.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let difference = a
        .iter()
        .zip(b)
        .fold(0u8, |acc, (x, y)| acc | std::hint::black_box(x ^ y));
    difference == 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn created_token_verifies_and_survives_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let store = TokenStore::open(dir.path()).unwrap();
        let (info, secret) = store.create("ci", Role::Operate).unwrap();
        assert_eq!(info.name, "ci");
        assert_eq!(info.role, Role::Operate);
        assert!(secret.starts_with(SECRET_PREFIX));
        assert_eq!(secret.len(), SECRET_PREFIX.len() + 64);

        let verified = store.verify(&secret).expect("secret verifies");
        assert_eq!(verified.name, "ci");
        assert!(verified.last_used.is_some());
        assert!(store.list()[0].last_used.is_some());

        let reopened = TokenStore::open(dir.path()).unwrap();
        assert_eq!(reopened.verify(&secret).unwrap().role, Role::Operate);
    }

    #[test]
    fn file_holds_only_the_hash_and_is_private() {
        let dir = tempfile::tempdir().unwrap();
        let store = TokenStore::open(dir.path()).unwrap();
        let (_, secret) = store.create("backup", Role::Read).unwrap();
        let path = dir.path().join(TOKENS_FILE);
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(!text.contains(&secret));
        assert!(!text.contains(&secret[SECRET_PREFIX.len()..]));
        assert!(text.contains(&hash_secret(&secret)));
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }

    #[test]
    fn wrong_secrets_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let store = TokenStore::open(dir.path()).unwrap();
        let (_, secret) = store.create("a", Role::Admin).unwrap();
        assert!(store.verify("").is_none());
        assert!(store.verify("ztos_").is_none());
        let mut wrong = secret.clone();
        wrong.pop();
        wrong.push(if secret.ends_with('0') { '1' } else { '0' });
        assert!(store.verify(&wrong).is_none());
        // The stored hash itself is not a secret that verifies.
        assert!(store.verify(&hash_secret(&secret)).is_none());
    }

    #[test]
    fn duplicate_and_invalid_names_are_errors_naming_them() {
        let dir = tempfile::tempdir().unwrap();
        let store = TokenStore::open(dir.path()).unwrap();
        store.create("ops", Role::Read).unwrap();
        let err = store.create("ops", Role::Admin).unwrap_err();
        assert!(matches!(err, TokenError::Duplicate(_)));
        assert!(err.to_string().contains("\"ops\""), "{err}");
        for bad in ["", "-x", "has space", "a/b", &"x".repeat(65)] {
            let err = store.create(bad, Role::Read).unwrap_err();
            assert!(matches!(err, TokenError::InvalidName(_)), "{bad}: {err}");
        }
        assert_eq!(store.list().len(), 1);
    }

    #[test]
    fn revoke_removes_the_token_and_unknown_names_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        let store = TokenStore::open(dir.path()).unwrap();
        let (_, secret) = store.create("old", Role::Admin).unwrap();
        store.create("keep", Role::Read).unwrap();
        store.revoke("old").unwrap();
        assert!(store.verify(&secret).is_none());
        assert_eq!(
            store
                .list()
                .iter()
                .map(|t| t.name.as_str())
                .collect::<Vec<_>>(),
            ["keep"]
        );
        let reopened = TokenStore::open(dir.path()).unwrap();
        assert!(reopened.verify(&secret).is_none());
        let err = store.revoke("old").unwrap_err();
        assert_eq!(err.to_string(), "no token named \"old\"");
    }

    #[test]
    fn corrupt_file_is_an_error_naming_the_path() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(TOKENS_FILE), b"{not json").unwrap();
        let err = TokenStore::open(dir.path()).unwrap_err();
        assert!(err.to_string().contains(TOKENS_FILE), "{err}");
    }
}
