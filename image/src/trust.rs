//! Update signing keys (ed25519), their text files, and the trust store that decides which keys
//! may sign update bundles: the public keys in `/etc/ztos/trust/*.pub`, plus every key that a
//! trust statement (`*.trust`, "trust key K2", signed by an already trusted key K1) adds.
//!
//! Key files are one line of text, `<tag> <base64 of the 32 raw bytes>`, optionally preceded by
//! `#` comment lines:
//!
//! ```text
//! # ZTOS update signing public key, key id 21fe31dfa154a261
//! ztos-ed25519-public-key 11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=
//! ```
//!
//! The private key file uses the tag `ztos-ed25519-secret-key` and holds the 32-byte seed. A key
//! id is the first 8 bytes of the SHA-256 of the public key, in hex.
//!
//! Every signature covers a context string followed by the message (see [`SignatureContext`]),
//! so a signature made for one purpose (a trust statement) can never be replayed as another
//! (a bundle manifest).

use std::collections::BTreeMap;
use std::fmt;
use std::io::Read;
use std::path::{Path, PathBuf};

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// The first word of a public key file's key line.
pub const PUBLIC_KEY_TAG: &str = "ztos-ed25519-public-key";
/// The first word of a private key file's key line.
pub const SECRET_KEY_TAG: &str = "ztos-ed25519-secret-key";
/// The `statement` value of a trust statement file.
pub const STATEMENT_KIND: &str = "ztos-trust-statement-v1";
/// Where the trust store lives in the root filesystem.
pub const TRUST_DIR: &str = "/etc/ztos/trust";
/// Key and statement files larger than this are refused before they are read.
pub const MAX_TRUST_FILE_BYTES: u64 = 16 * 1024;
/// A trust directory with more key and statement files than this is refused.
pub const MAX_TRUST_FILES: usize = 256;

/// Length of an ed25519 signature.
pub const SIGNATURE_LENGTH: usize = 64;
/// Length of an ed25519 public key (and of a private key seed).
pub const KEY_LENGTH: usize = 32;

/// What a signature is for; prefixed to the signed bytes (domain separation).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignatureContext {
    /// A bundle manifest: signed bytes are `b"ZTOS bundle manifest v1\0"` + the manifest.
    BundleManifest,
    /// A trust statement: signed bytes are `b"ZTOS trust statement v1\0"` + the new key's 32
    /// raw bytes.
    TrustStatement,
}

impl SignatureContext {
    pub fn prefix(self) -> &'static [u8] {
        match self {
            SignatureContext::BundleManifest => b"ZTOS bundle manifest v1\0",
            SignatureContext::TrustStatement => b"ZTOS trust statement v1\0",
        }
    }

    fn message(self, data: &[u8]) -> Vec<u8> {
        let mut message = Vec::with_capacity(self.prefix().len() + data.len());
        message.extend_from_slice(self.prefix());
        message.extend_from_slice(data);
        message
    }
}

/// Errors reading or parsing a key.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum KeyError {
    #[error("no key line (expected `{expected} <base64>`)")]
    NoKey { expected: &'static str },
    #[error("more than one key line")]
    SeveralKeys,
    #[error("key line starts with {found:?}, expected {expected:?}")]
    WrongTag {
        expected: &'static str,
        found: String,
    },
    #[error("key is not valid base64: {0}")]
    Base64(String),
    #[error("key is {0} bytes, expected 32")]
    WrongLength(usize),
    #[error("public key is not a valid ed25519 point")]
    InvalidPoint,
}

/// A key id: the first 8 bytes of SHA-256 of the public key.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KeyId([u8; 8]);

impl KeyId {
    /// The id of the public key `bytes` (whether or not they are a valid key).
    pub fn of(bytes: &[u8; KEY_LENGTH]) -> KeyId {
        let digest = Sha256::digest(bytes);
        let mut id = [0u8; 8];
        id.copy_from_slice(&digest[..8]);
        KeyId(id)
    }

    pub fn as_bytes(&self) -> &[u8; 8] {
        &self.0
    }
}

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl fmt::Debug for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyId({self})")
    }
}

/// An ed25519 public key that may sign updates.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct PublicKey(VerifyingKey);

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({})", self.id())
    }
}

fn decode_key_bytes(b64: &str) -> Result<[u8; KEY_LENGTH], KeyError> {
    let bytes = BASE64
        .decode(b64.trim())
        .map_err(|e| KeyError::Base64(e.to_string()))?;
    <[u8; KEY_LENGTH]>::try_from(bytes.as_slice()).map_err(|_| KeyError::WrongLength(bytes.len()))
}

/// The base64 after `tag` on the one key line of `text` (comments and blank lines skipped).
fn key_line<'a>(text: &'a str, tag: &'static str) -> Result<&'a str, KeyError> {
    let mut lines = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'));
    let line = lines.next().ok_or(KeyError::NoKey { expected: tag })?;
    if lines.next().is_some() {
        return Err(KeyError::SeveralKeys);
    }
    let (found, b64) = line.split_once(char::is_whitespace).unwrap_or((line, ""));
    if found != tag {
        return Err(KeyError::WrongTag {
            expected: tag,
            found: found.to_string(),
        });
    }
    Ok(b64)
}

impl PublicKey {
    pub fn from_bytes(bytes: &[u8; KEY_LENGTH]) -> Result<PublicKey, KeyError> {
        VerifyingKey::from_bytes(bytes)
            .map(PublicKey)
            .map_err(|_| KeyError::InvalidPoint)
    }

    pub fn to_bytes(&self) -> [u8; KEY_LENGTH] {
        self.0.to_bytes()
    }

    pub fn id(&self) -> KeyId {
        KeyId::of(self.0.as_bytes())
    }

    /// Parses a public key file's text.
    pub fn parse_text(text: &str) -> Result<PublicKey, KeyError> {
        PublicKey::from_bytes(&decode_key_bytes(key_line(text, PUBLIC_KEY_TAG)?)?)
    }

    pub fn from_base64(b64: &str) -> Result<PublicKey, KeyError> {
        PublicKey::from_bytes(&decode_key_bytes(b64)?)
    }

    pub fn to_base64(&self) -> String {
        BASE64.encode(self.0.as_bytes())
    }

    /// The text of a public key file.
    pub fn to_text(&self) -> String {
        format!(
            "# ZTOS update signing public key, key id {}\n{PUBLIC_KEY_TAG} {}\n",
            self.id(),
            self.to_base64()
        )
    }

    /// Whether `signature` is this key's signature of `data` for `context` (strict ed25519
    /// verification: no malleable signatures, no weak keys).
    pub fn verifies(
        &self,
        context: SignatureContext,
        data: &[u8],
        signature: &[u8; SIGNATURE_LENGTH],
    ) -> bool {
        self.0
            .verify_strict(&context.message(data), &Signature::from_bytes(signature))
            .is_ok()
    }
}

/// An ed25519 private key. Never part of an image: the image build refuses any file that holds
/// one (see [`contains_secret_key`]).
pub struct SecretKey(SigningKey);

impl fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SecretKey({})", self.public().id())
    }
}

impl SecretKey {
    /// A new key from the operating system's random source.
    pub fn generate() -> SecretKey {
        let mut seed = [0u8; KEY_LENGTH];
        rand::fill(&mut seed);
        SecretKey::from_seed(&seed)
    }

    pub fn from_seed(seed: &[u8; KEY_LENGTH]) -> SecretKey {
        SecretKey(SigningKey::from_bytes(seed))
    }

    pub fn public(&self) -> PublicKey {
        PublicKey(self.0.verifying_key())
    }

    /// Parses a private key file's text.
    pub fn parse_text(text: &str) -> Result<SecretKey, KeyError> {
        Ok(SecretKey::from_seed(&decode_key_bytes(key_line(
            text,
            SECRET_KEY_TAG,
        )?)?))
    }

    /// The text of a private key file.
    pub fn to_text(&self) -> String {
        format!(
            "# ZTOS update signing PRIVATE key, key id {}; keep it offline, never in an image\n{SECRET_KEY_TAG} {}\n",
            self.public().id(),
            BASE64.encode(self.0.to_bytes())
        )
    }

    pub fn sign(&self, context: SignatureContext, data: &[u8]) -> [u8; SIGNATURE_LENGTH] {
        self.0.sign(&context.message(data)).to_bytes()
    }
}

/// Whether `data` holds a private key line (the secret tag followed by 32 bytes of base64).
/// The tag alone (as a string constant inside a binary) does not count.
pub fn contains_secret_key(data: &[u8]) -> bool {
    let tag = SECRET_KEY_TAG.as_bytes();
    let mut rest = data;
    while let Some(at) = rest.windows(tag.len()).position(|w| w == tag) {
        let after = &rest[at + tag.len()..];
        let candidate: Vec<u8> = after
            .iter()
            .skip_while(|b| **b == b' ' || **b == b'\t')
            .take_while(|b| b.is_ascii_alphanumeric() || **b == b'+' || **b == b'/' || **b == b'=')
            .copied()
            .collect();
        if BASE64
            .decode(&candidate)
            .is_ok_and(|bytes| bytes.len() == KEY_LENGTH)
        {
            return true;
        }
        rest = &rest[at + 1..];
    }
    false
}

/// Errors loading the trust store or resolving trust statements.
#[derive(Debug, thiserror::Error)]
pub enum TrustError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: {source}")]
    Key {
        path: PathBuf,
        #[source]
        source: KeyError,
    },
    #[error("{path} is larger than {MAX_TRUST_FILE_BYTES} bytes")]
    FileTooLarge { path: PathBuf },
    #[error("{dir} holds more than {MAX_TRUST_FILES} key and statement files")]
    TooManyFiles { dir: PathBuf },
    #[error("{path} is a private key; private keys must never be in a trust directory")]
    SecretKeyInTrustDir { path: PathBuf },
    #[error("{dir} holds no trusted public key (*.pub)")]
    NoKeys { dir: PathBuf },
    #[error("trust statement {source_name}: {reason}")]
    BadStatement { source_name: String, reason: String },
    #[error(
        "trust statement {source_name}: signature by {signer} does not verify (forged or damaged)"
    )]
    ForgedStatement { source_name: String, signer: KeyId },
    #[error("trust statement {source_name} is signed by untrusted key {signer}")]
    UntrustedSigner { source_name: String, signer: KeyId },
    #[error("trust statements form a cycle: {chain}")]
    Cycle { chain: String },
}

/// "Trust key `trust`", signed by `signed_by`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrustStatement {
    pub trust: PublicKey,
    pub signed_by: PublicKey,
    pub signature: [u8; SIGNATURE_LENGTH],
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct StatementFile {
    statement: String,
    trust: String,
    signed_by: String,
    signature: String,
}

impl TrustStatement {
    /// `signer` says: trust `key`.
    pub fn sign(signer: &SecretKey, key: &PublicKey) -> TrustStatement {
        TrustStatement {
            trust: *key,
            signed_by: signer.public(),
            signature: signer.sign(SignatureContext::TrustStatement, &key.to_bytes()),
        }
    }

    pub fn verifies(&self) -> bool {
        self.signed_by.verifies(
            SignatureContext::TrustStatement,
            &self.trust.to_bytes(),
            &self.signature,
        )
    }

    /// The statement's file text (TOML).
    pub fn to_text(&self) -> String {
        let body = toml::to_string(&StatementFile {
            statement: STATEMENT_KIND.to_string(),
            trust: self.trust.to_base64(),
            signed_by: self.signed_by.to_base64(),
            signature: BASE64.encode(self.signature),
        })
        .expect("a statement of strings serializes");
        format!(
            "# ZTOS trust statement: key {} says trust key {}\n{body}",
            self.signed_by.id(),
            self.trust.id()
        )
    }

    /// Parses a statement file's text; `source_name` names it in errors.
    pub fn parse_text(text: &str, source_name: &str) -> Result<TrustStatement, TrustError> {
        let bad = |reason: String| TrustError::BadStatement {
            source_name: source_name.to_string(),
            reason,
        };
        let file: StatementFile = toml::from_str(text).map_err(|e| bad(e.message().to_string()))?;
        if file.statement != STATEMENT_KIND {
            return Err(bad(format!(
                "statement is {:?}, expected {STATEMENT_KIND:?}",
                file.statement
            )));
        }
        let trust = PublicKey::from_base64(&file.trust).map_err(|e| bad(format!("trust: {e}")))?;
        let signed_by =
            PublicKey::from_base64(&file.signed_by).map_err(|e| bad(format!("signed_by: {e}")))?;
        let signature = BASE64
            .decode(file.signature.trim())
            .map_err(|e| bad(format!("signature is not valid base64: {e}")))?;
        let signature = <[u8; SIGNATURE_LENGTH]>::try_from(signature.as_slice()).map_err(|_| {
            bad(format!(
                "signature is {} bytes, expected 64",
                signature.len()
            ))
        })?;
        Ok(TrustStatement {
            trust,
            signed_by,
            signature,
        })
    }
}

/// Why a key is trusted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyOrigin {
    /// Listed directly (a `*.pub` file, or given to [`TrustStore::from_keys`]).
    Listed,
    /// Added by a trust statement signed by this (trusted) key.
    Endorsed { by: KeyId },
}

/// A trusted key and why it is trusted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrustedKey {
    pub key: PublicKey,
    pub origin: KeyOrigin,
}

/// The keys whose signatures make a bundle acceptable.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustStore {
    keys: BTreeMap<KeyId, TrustedKey>,
}

/// Reads a trust file, refusing large ones before reading them whole.
fn read_small(path: &Path) -> Result<String, TrustError> {
    let io = |source| TrustError::Io {
        path: path.to_path_buf(),
        source,
    };
    let file = std::fs::File::open(path).map_err(io)?;
    let mut text = String::new();
    file.take(MAX_TRUST_FILE_BYTES + 1)
        .read_to_string(&mut text)
        .map_err(io)?;
    if text.len() as u64 > MAX_TRUST_FILE_BYTES {
        return Err(TrustError::FileTooLarge {
            path: path.to_path_buf(),
        });
    }
    Ok(text)
}

impl TrustStore {
    /// A store trusting exactly `keys` (tests, and tools given keys on the command line).
    pub fn from_keys(keys: impl IntoIterator<Item = PublicKey>) -> TrustStore {
        TrustStore {
            keys: keys
                .into_iter()
                .map(|key| {
                    (
                        key.id(),
                        TrustedKey {
                            key,
                            origin: KeyOrigin::Listed,
                        },
                    )
                })
                .collect(),
        }
    }

    /// Loads `dir` (normally [`TRUST_DIR`]): every `*.pub` is trusted, then every `*.trust`
    /// statement is resolved (see [`TrustStore::add_statements`]). A `*.key` file (or any file
    /// holding a private key line) is an error; other files (a README) are ignored. A directory
    /// without any public key is an error: such a store could never accept an update.
    pub fn load_dir(dir: &Path) -> Result<TrustStore, TrustError> {
        let io = |source| TrustError::Io {
            path: dir.to_path_buf(),
            source,
        };
        let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)
            .map_err(io)?
            .map(|e| e.map(|e| e.path()))
            .collect::<Result<_, _>>()
            .map_err(io)?;
        paths.sort();
        let mut keys = Vec::new();
        let mut statements = Vec::new();
        let mut count = 0;
        for path in paths {
            let extension = path.extension().and_then(|e| e.to_str()).unwrap_or("");
            if !matches!(extension, "pub" | "trust" | "key") || !path.is_file() {
                continue;
            }
            count += 1;
            if count > MAX_TRUST_FILES {
                return Err(TrustError::TooManyFiles {
                    dir: dir.to_path_buf(),
                });
            }
            let text = read_small(&path)?;
            if extension == "key" || contains_secret_key(text.as_bytes()) {
                return Err(TrustError::SecretKeyInTrustDir { path });
            }
            if extension == "pub" {
                let key = PublicKey::parse_text(&text).map_err(|source| TrustError::Key {
                    path: path.clone(),
                    source,
                })?;
                keys.push(key);
            } else {
                let name = path.display().to_string();
                statements.push((name.clone(), TrustStatement::parse_text(&text, &name)?));
            }
        }
        if keys.is_empty() {
            return Err(TrustError::NoKeys {
                dir: dir.to_path_buf(),
            });
        }
        let mut store = TrustStore::from_keys(keys);
        store.add_statements(statements)?;
        Ok(store)
    }

    /// Resolves trust statements (each with a name for errors): a statement whose signer is
    /// trusted (directly or through earlier statements, in any order) is verified and makes its
    /// key trusted. Errors: a statement whose signature does not verify, one whose signer never
    /// becomes trusted, and cycles (a key endorsing itself or one of the keys it was endorsed
    /// through). On error the store is unchanged.
    pub fn add_statements(
        &mut self,
        statements: impl IntoIterator<Item = (String, TrustStatement)>,
    ) -> Result<(), TrustError> {
        let mut resolved = self.clone();
        let mut pending: Vec<(String, TrustStatement)> = statements.into_iter().collect();
        loop {
            let before = pending.len();
            let mut still_pending = Vec::new();
            for (name, statement) in pending {
                let signer = statement.signed_by.id();
                if !resolved.keys.contains_key(&signer) {
                    still_pending.push((name, statement));
                    continue;
                }
                if !statement.verifies() {
                    return Err(TrustError::ForgedStatement {
                        source_name: name,
                        signer,
                    });
                }
                let target = statement.trust.id();
                if let Some(chain) = resolved.endorsement_chain_through(signer, target) {
                    return Err(TrustError::Cycle { chain });
                }
                resolved.keys.entry(target).or_insert(TrustedKey {
                    key: statement.trust,
                    origin: KeyOrigin::Endorsed { by: signer },
                });
            }
            pending = still_pending;
            if pending.is_empty() || pending.len() == before {
                break;
            }
        }
        if let Some(chain) = cycle_among(&pending) {
            return Err(TrustError::Cycle { chain });
        }
        if let Some((name, statement)) = pending.into_iter().next() {
            return Err(TrustError::UntrustedSigner {
                source_name: name,
                signer: statement.signed_by.id(),
            });
        }
        *self = resolved;
        Ok(())
    }

    /// If `target` is `signer` or one of the keys `signer` was endorsed through, the chain
    /// `target -> ... -> signer -> target` (a statement by `signer` trusting `target` closes a
    /// cycle).
    fn endorsement_chain_through(&self, signer: KeyId, target: KeyId) -> Option<String> {
        let mut chain = vec![signer];
        let mut current = signer;
        loop {
            if current == target {
                chain.reverse();
                chain.push(target);
                return Some(
                    chain
                        .iter()
                        .map(KeyId::to_string)
                        .collect::<Vec<_>>()
                        .join(" -> "),
                );
            }
            match self.keys.get(&current).map(|k| &k.origin) {
                Some(KeyOrigin::Endorsed { by }) if chain.len() <= self.keys.len() => {
                    current = *by;
                    chain.push(current);
                }
                _ => return None,
            }
        }
    }

    pub fn get(&self, id: &KeyId) -> Option<&TrustedKey> {
        self.keys.get(id)
    }

    /// Whether `key` itself (not merely a key with the same id) is trusted.
    pub fn trusts(&self, key: &PublicKey) -> bool {
        self.keys.get(&key.id()).is_some_and(|k| k.key == *key)
    }

    pub fn keys(&self) -> impl Iterator<Item = &TrustedKey> {
        self.keys.values()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
}

/// A cycle among unresolved statements (signer -> trusted key edges), as `a -> b -> a`.
fn cycle_among(statements: &[(String, TrustStatement)]) -> Option<String> {
    let edges: Vec<(KeyId, KeyId)> = statements
        .iter()
        .map(|(_, s)| (s.signed_by.id(), s.trust.id()))
        .collect();
    // Depth-first from every node; the graph has at most MAX_TRUST_FILES edges per store load
    // (or what a caller passes), so the quadratic walk is fine.
    fn walk(
        edges: &[(KeyId, KeyId)],
        path: &mut Vec<KeyId>,
        depth_limit: usize,
    ) -> Option<Vec<KeyId>> {
        let last = *path.last().expect("path starts non-empty");
        if path.len() > depth_limit {
            return None;
        }
        for (from, to) in edges {
            if *from != last {
                continue;
            }
            if let Some(start) = path.iter().position(|k| k == to) {
                let mut cycle = path[start..].to_vec();
                cycle.push(*to);
                return Some(cycle);
            }
            path.push(*to);
            if let Some(cycle) = walk(edges, path, depth_limit) {
                return Some(cycle);
            }
            path.pop();
        }
        None
    }
    for (from, _) in &edges {
        let mut path = vec![*from];
        if let Some(cycle) = walk(&edges, &mut path, edges.len() + 1) {
            return Some(
                cycle
                    .iter()
                    .map(KeyId::to_string)
                    .collect::<Vec<_>>()
                    .join(" -> "),
            );
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(n: u8) -> SecretKey {
        SecretKey::from_seed(&[n; 32])
    }

    #[test]
    fn key_files_round_trip_and_id_is_sha256_prefix() {
        let secret = key(7);
        let public = secret.public();
        let text = public.to_text();
        assert!(text.contains(&format!("{PUBLIC_KEY_TAG} ")), "{text}");
        assert_eq!(PublicKey::parse_text(&text).unwrap(), public);
        let secret_text = secret.to_text();
        assert_eq!(
            SecretKey::parse_text(&secret_text).unwrap().public(),
            public
        );
        let digest = Sha256::digest(public.to_bytes());
        assert_eq!(public.id().to_string(), hex::encode(&digest[..8]));
        assert_eq!(public.id().to_string().len(), 16);
    }

    #[test]
    fn key_file_byte_vector() {
        // RFC 8032 §7.1 test 1: secret 9d61b19d..., public d75a9801...
        let seed: [u8; 32] =
            hex::decode("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60")
                .unwrap()
                .try_into()
                .unwrap();
        let public = SecretKey::from_seed(&seed).public();
        assert_eq!(
            hex::encode(public.to_bytes()),
            "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a"
        );
        let line = format!("{PUBLIC_KEY_TAG} 11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=");
        assert_eq!(PublicKey::parse_text(&line).unwrap(), public);
        assert_eq!(public.id().to_string(), "21fe31dfa154a261");
    }

    #[test]
    fn bad_key_files_name_the_problem() {
        assert_eq!(
            PublicKey::parse_text("# only a comment\n"),
            Err(KeyError::NoKey {
                expected: PUBLIC_KEY_TAG
            })
        );
        let secret_text = key(1).to_text();
        assert!(matches!(
            PublicKey::parse_text(&secret_text),
            Err(KeyError::WrongTag { .. })
        ));
        assert_eq!(
            PublicKey::parse_text(&format!("{PUBLIC_KEY_TAG} AAAA")),
            Err(KeyError::WrongLength(3))
        );
        assert!(matches!(
            PublicKey::parse_text(&format!("{PUBLIC_KEY_TAG} !!!")),
            Err(KeyError::Base64(_))
        ));
        let two = format!("{}{}", key(1).public().to_text(), key(2).public().to_text());
        assert_eq!(PublicKey::parse_text(&two), Err(KeyError::SeveralKeys));
    }

    #[test]
    fn signatures_are_bound_to_their_context() {
        let secret = key(3);
        let signature = secret.sign(SignatureContext::BundleManifest, b"data");
        let public = secret.public();
        assert!(public.verifies(SignatureContext::BundleManifest, b"data", &signature));
        assert!(!public.verifies(SignatureContext::TrustStatement, b"data", &signature));
        assert!(!public.verifies(SignatureContext::BundleManifest, b"datA", &signature));
        assert!(!key(4)
            .public()
            .verifies(SignatureContext::BundleManifest, b"data", &signature));
    }

    #[test]
    fn secret_key_detection_needs_a_whole_key() {
        let secret = key(5).to_text();
        assert!(contains_secret_key(secret.as_bytes()));
        let mut embedded = b"\x7fELF binary...".to_vec();
        embedded.extend_from_slice(secret.as_bytes());
        assert!(contains_secret_key(&embedded));
        // The tag alone, as a string constant in a binary, is not a key.
        assert!(!contains_secret_key(
            format!("\0{SECRET_KEY_TAG}\0{PUBLIC_KEY_TAG}").as_bytes()
        ));
        assert!(!contains_secret_key(key(5).public().to_text().as_bytes()));
    }

    fn names(statements: Vec<TrustStatement>) -> Vec<(String, TrustStatement)> {
        statements
            .into_iter()
            .enumerate()
            .map(|(i, s)| (format!("s{i}"), s))
            .collect()
    }

    #[test]
    fn statement_file_round_trips() {
        let statement = TrustStatement::sign(&key(1), &key(2).public());
        let text = statement.to_text();
        assert_eq!(TrustStatement::parse_text(&text, "x").unwrap(), statement);
        let err = TrustStatement::parse_text("statement = \"ztos-trust-statement-v1\"\n", "x")
            .unwrap_err();
        assert!(err.to_string().contains("missing field"), "{err}");
        let err = TrustStatement::parse_text(&text.replace("-v1", "-v9"), "x").unwrap_err();
        assert!(err.to_string().contains("expected"), "{err}");
    }

    #[test]
    fn rotation_chain_in_any_order() {
        let (k1, k2, k3) = (key(1), key(2), key(3));
        let mut store = TrustStore::from_keys([k1.public()]);
        assert!(!store.trusts(&k3.public()));
        // K2 -> K3 is listed before K1 -> K2; both resolve.
        store
            .add_statements(names(vec![
                TrustStatement::sign(&k2, &k3.public()),
                TrustStatement::sign(&k1, &k2.public()),
            ]))
            .unwrap();
        assert!(store.trusts(&k2.public()));
        assert!(store.trusts(&k3.public()));
        assert_eq!(
            store.get(&k3.public().id()).unwrap().origin,
            KeyOrigin::Endorsed {
                by: k2.public().id()
            }
        );
    }

    #[test]
    fn forged_unsigned_and_unanchored_statements_are_rejected() {
        let (k1, k2, k3) = (key(1), key(2), key(3));
        let mut store = TrustStore::from_keys([k1.public()]);
        // Claims to be signed by K1 but signed by K3.
        let mut forged = TrustStatement::sign(&k3, &k2.public());
        forged.signed_by = k1.public();
        let err = store
            .add_statements(names(vec![forged]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("does not verify"), "{err}");
        assert!(err.contains(&k1.public().id().to_string()), "{err}");
        let err = store
            .add_statements(names(vec![TrustStatement::sign(&k3, &k2.public())]))
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            format!(
                "trust statement s0 is signed by untrusted key {}",
                k3.public().id()
            )
        );
        // Failed resolutions leave the store unchanged.
        assert!(!store.trusts(&k2.public()));
        assert_eq!(store.keys().count(), 1);
    }

    #[test]
    fn cycles_are_rejected() {
        let (k1, k2, k3) = (key(1), key(2), key(3));
        // An unanchored cycle K2 -> K3 -> K2.
        let mut store = TrustStore::from_keys([k1.public()]);
        let err = store
            .add_statements(names(vec![
                TrustStatement::sign(&k2, &k3.public()),
                TrustStatement::sign(&k3, &k2.public()),
            ]))
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("trust statements form a cycle"), "{err}");
        // An anchored one closing back on its root: K1 -> K2 -> K1.
        let err = store
            .add_statements(names(vec![
                TrustStatement::sign(&k1, &k2.public()),
                TrustStatement::sign(&k2, &k1.public()),
            ]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("cycle"), "{err}");
        assert!(err.contains(&k1.public().id().to_string()), "{err}");
        // A key endorsing itself.
        let err = store
            .add_statements(names(vec![TrustStatement::sign(&k1, &k1.public())]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("cycle"), "{err}");
    }

    #[test]
    fn load_dir_reads_keys_and_statements_and_refuses_private_keys() {
        let dir = tempfile::tempdir().unwrap();
        let (k1, k2) = (key(1), key(2));
        std::fs::write(dir.path().join("README.md"), "not a key").unwrap();
        let err = TrustStore::load_dir(dir.path()).unwrap_err().to_string();
        assert!(err.contains("no trusted public key"), "{err}");
        std::fs::write(dir.path().join("k1.pub"), k1.public().to_text()).unwrap();
        let store = TrustStore::load_dir(dir.path()).unwrap();
        assert!(store.trusts(&k1.public()) && !store.trusts(&k2.public()));
        std::fs::write(
            dir.path().join("k2.trust"),
            TrustStatement::sign(&k1, &k2.public()).to_text(),
        )
        .unwrap();
        let store = TrustStore::load_dir(dir.path()).unwrap();
        assert!(store.trusts(&k2.public()));
        // A private key, even under a .pub name, is refused.
        std::fs::write(dir.path().join("k3.pub"), key(3).to_text()).unwrap();
        let err = TrustStore::load_dir(dir.path()).unwrap_err().to_string();
        assert!(err.contains("is a private key"), "{err}");
        std::fs::remove_file(dir.path().join("k3.pub")).unwrap();
        std::fs::write(dir.path().join("bad.pub"), "ztos-ed25519-public-key AAAA\n").unwrap();
        let err = TrustStore::load_dir(dir.path()).unwrap_err().to_string();
        assert!(err.contains("bad.pub") && err.contains("3 bytes"), "{err}");
    }
}
