//! Interface private keys: generated on the box, stored as `<state-dir>/keys/<interface>.key`
//! (standard base64, mode 0600, directory mode 0700), never handed out. Only public keys leave
//! this module as text.
//!
//! Preshared keys (peers with `preshared_key = true`): generated on the box, stored as
//! `<state-dir>/keys/<interface>.<peer public key in hex>.psk` (same modes). A PSK is shared by
//! nature: [`KeyStore::load_psk`] hands it out for export to the peer (admin only, through
//! `ztos security wireguard preshared-key`).

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use base64::Engine;
use boringtun::x25519::{PublicKey, StaticSecret};
use rand::RngCore;

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("{0:?} is not a valid interface name (1 to 15 letters, digits, '-', '_' or '.')")]
    BadInterface(String),
    #[error("interface {0} already has a key; use rotate-key to replace it")]
    Exists(String),
    #[error("key file {path} is unusable: {reason}")]
    Corrupt { path: String, reason: String },
    #[error("{action} {path}: {source}")]
    Io {
        action: &'static str,
        path: String,
        source: std::io::Error,
    },
}

/// A Curve25519 private key. Debug never prints the secret.
#[derive(Clone)]
pub struct PrivateKey(StaticSecret);

impl std::fmt::Debug for PrivateKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PrivateKey(public {})", self.public_base64())
    }
}

impl PrivateKey {
    /// A fresh key from the operating system's random source.
    pub fn generate() -> Self {
        let mut bytes = [0u8; 32];
        rand::rng().fill_bytes(&mut bytes);
        PrivateKey(StaticSecret::from(bytes))
    }

    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        PrivateKey(StaticSecret::from(bytes))
    }

    pub fn secret(&self) -> StaticSecret {
        self.0.clone()
    }

    pub fn public(&self) -> PublicKey {
        PublicKey::from(&self.0)
    }

    pub fn public_base64(&self) -> String {
        encode_key(self.public().as_bytes())
    }
}

pub fn encode_key(bytes: &[u8; 32]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// Decodes a standard-base64 32-byte key; the error says what is wrong.
pub fn decode_key(text: &str) -> Result<[u8; 32], String> {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(text.trim())
        .map_err(|_| format!("{text:?} is not base64"))?;
    <[u8; 32]>::try_from(bytes.as_slice())
        .map_err(|_| format!("{text:?} decodes to {} bytes, expected 32", bytes.len()))
}

/// Whether `name` can be a Linux interface name (and so a key file name).
pub fn valid_interface_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 15
        && name != "."
        && name != ".."
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
}

fn parse_hex_key(hex: &str) -> Option<[u8; 32]> {
    if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let mut key = [0u8; 32];
    for (i, byte) in key.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(key)
}

/// The key directory.
#[derive(Debug, Clone)]
pub struct KeyStore {
    dir: PathBuf,
}

impl KeyStore {
    /// Keys live in `<state_dir>/keys`.
    pub fn new(state_dir: &Path) -> Self {
        KeyStore {
            dir: state_dir.join("keys"),
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn path(&self, interface: &str) -> Result<PathBuf, KeyError> {
        if !valid_interface_name(interface) {
            return Err(KeyError::BadInterface(interface.to_string()));
        }
        Ok(self.dir.join(format!("{interface}.key")))
    }

    /// The interface's key, if it has one.
    pub fn load(&self, interface: &str) -> Result<Option<PrivateKey>, KeyError> {
        let path = self.path(interface)?;
        let text = match fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => {
                return Err(KeyError::Io {
                    action: "cannot read",
                    path: path.display().to_string(),
                    source,
                })
            }
        };
        let bytes = decode_key(&text).map_err(|reason| KeyError::Corrupt {
            path: path.display().to_string(),
            reason: reason.replace(&format!("{text:?}"), "its content"),
        })?;
        Ok(Some(PrivateKey::from_bytes(bytes)))
    }

    /// The interface's key, generated and stored first if it has none. `true` when generated.
    pub fn load_or_generate(&self, interface: &str) -> Result<(PrivateKey, bool), KeyError> {
        if let Some(key) = self.load(interface)? {
            return Ok((key, false));
        }
        Ok((self.store_new(interface)?, true))
    }

    /// Generates a key for an interface that has none (`ztos security wireguard genkey`).
    pub fn generate(&self, interface: &str) -> Result<PrivateKey, KeyError> {
        if self.load(interface)?.is_some() {
            return Err(KeyError::Exists(interface.to_string()));
        }
        self.store_new(interface)
    }

    /// Replaces the interface's key with a new one (`rotate-key`).
    pub fn rotate(&self, interface: &str) -> Result<PrivateKey, KeyError> {
        self.store_new(interface)
    }

    fn store_new(&self, interface: &str) -> Result<PrivateKey, KeyError> {
        let path = self.path(interface)?;
        let key = PrivateKey::generate();
        self.write_secret(&path, key.0.as_bytes())?;
        Ok(key)
    }

    fn psk_path(&self, interface: &str, peer: &[u8; 32]) -> Result<PathBuf, KeyError> {
        if !valid_interface_name(interface) {
            return Err(KeyError::BadInterface(interface.to_string()));
        }
        let hex: String = peer.iter().map(|b| format!("{b:02x}")).collect();
        Ok(self.dir.join(format!("{interface}.{hex}.psk")))
    }

    /// The preshared key of `peer` on `interface`, if it has one.
    pub fn load_psk(&self, interface: &str, peer: &[u8; 32]) -> Result<Option<[u8; 32]>, KeyError> {
        let path = self.psk_path(interface, peer)?;
        let text = match fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => {
                return Err(KeyError::Io {
                    action: "cannot read",
                    path: path.display().to_string(),
                    source,
                })
            }
        };
        decode_key(&text)
            .map(Some)
            .map_err(|reason| KeyError::Corrupt {
                path: path.display().to_string(),
                reason: reason.replace(&format!("{text:?}"), "its content"),
            })
    }

    /// The preshared key of `peer` on `interface`, generated and stored first if it has none.
    /// `true` when generated.
    pub fn load_or_generate_psk(
        &self,
        interface: &str,
        peer: &[u8; 32],
    ) -> Result<([u8; 32], bool), KeyError> {
        if let Some(psk) = self.load_psk(interface, peer)? {
            return Ok((psk, false));
        }
        let path = self.psk_path(interface, peer)?;
        let mut psk = [0u8; 32];
        rand::rng().fill_bytes(&mut psk);
        self.write_secret(&path, &psk)?;
        Ok((psk, true))
    }

    /// Deletes the preshared keys of `interface` whose peer is not in `keep` (peers removed
    /// from the configuration or set to `preshared_key = false`). Returns how many went.
    pub fn remove_psks_except(
        &self,
        interface: &str,
        keep: &std::collections::HashSet<[u8; 32]>,
    ) -> Result<usize, KeyError> {
        if !valid_interface_name(interface) {
            return Err(KeyError::BadInterface(interface.to_string()));
        }
        let entries = match fs::read_dir(&self.dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
            Err(source) => {
                return Err(KeyError::Io {
                    action: "cannot list",
                    path: self.dir.display().to_string(),
                    source,
                })
            }
        };
        let prefix = format!("{interface}.");
        let mut removed = 0;
        for entry in entries.flatten() {
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            let Some(hex) = name
                .strip_prefix(&prefix)
                .and_then(|rest| rest.strip_suffix(".psk"))
            else {
                continue;
            };
            // `<interface>.<64 hex digits>.psk` only: an interface named `wg0.x` has its own
            // prefix and never matches 64 hex digits followed by `.psk` after `wg0.`.
            let Some(peer) = parse_hex_key(hex) else {
                continue;
            };
            if !keep.contains(&peer) {
                fs::remove_file(entry.path()).map_err(|source| KeyError::Io {
                    action: "cannot remove",
                    path: entry.path().display().to_string(),
                    source,
                })?;
                removed += 1;
            }
        }
        Ok(removed)
    }

    /// Writes a 32-byte secret as base64 to `path`: a new file (mode 0600) in the key
    /// directory (mode 0700), synced and renamed into place.
    fn write_secret(&self, path: &Path, secret: &[u8; 32]) -> Result<(), KeyError> {
        self.ensure_dir()?;
        let file_name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("secret");
        let tmp = self.dir.join(format!(".{file_name}.tmp"));
        let io = |action: &'static str, p: &Path| {
            let path = p.display().to_string();
            move |source| KeyError::Io {
                action,
                path,
                source,
            }
        };
        let _ = fs::remove_file(&tmp);
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(io("cannot create", &tmp))?;
        let text = format!("{}\n", encode_key(secret));
        file.write_all(text.as_bytes())
            .and_then(|()| file.sync_all())
            .map_err(io("cannot write", &tmp))?;
        drop(file);
        fs::rename(&tmp, path).map_err(io("cannot rename into place", path))?;
        if let Ok(dir) = fs::File::open(&self.dir) {
            let _ = dir.sync_all();
        }
        Ok(())
    }

    fn ensure_dir(&self) -> Result<(), KeyError> {
        fs::create_dir_all(&self.dir).map_err(|source| KeyError::Io {
            action: "cannot create",
            path: self.dir.display().to_string(),
            source,
        })?;
        fs::set_permissions(&self.dir, fs::Permissions::from_mode(0o700)).map_err(|source| {
            KeyError::Io {
                action: "cannot set mode 0700 on",
                path: self.dir.display().to_string(),
                source,
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generate_store_load_and_rotate() {
        let dir = tempfile::tempdir().unwrap();
        let store = KeyStore::new(dir.path());
        assert!(store.load("wg0").unwrap().is_none());
        let key = store.generate("wg0").unwrap();
        let path = dir.path().join("keys/wg0.key");
        assert_eq!(
            fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert_eq!(
            fs::metadata(dir.path().join("keys"))
                .unwrap()
                .permissions()
                .mode()
                & 0o777,
            0o700
        );
        let loaded = store.load("wg0").unwrap().unwrap();
        assert_eq!(loaded.public_base64(), key.public_base64());
        assert!(matches!(store.generate("wg0"), Err(KeyError::Exists(_))));
        let (same, generated) = store.load_or_generate("wg0").unwrap();
        assert!(!generated);
        assert_eq!(same.public_base64(), key.public_base64());
        let rotated = store.rotate("wg0").unwrap();
        assert_ne!(rotated.public_base64(), key.public_base64());
        assert_eq!(
            store.load("wg0").unwrap().unwrap().public_base64(),
            rotated.public_base64()
        );
        assert!(!format!("{rotated:?}").contains(&encode_key(rotated.0.as_bytes())));
    }

    #[test]
    fn refuses_bad_names_and_corrupt_files() {
        let dir = tempfile::tempdir().unwrap();
        let store = KeyStore::new(dir.path());
        for name in ["", "../x", "a/b", "0123456789abcdef", ".."] {
            assert!(matches!(store.load(name), Err(KeyError::BadInterface(_))));
        }
        fs::create_dir_all(dir.path().join("keys")).unwrap();
        fs::write(dir.path().join("keys/wg1.key"), "AAAA\n").unwrap();
        let err = store.load("wg1").unwrap_err().to_string();
        assert!(err.contains("decodes to 3 bytes"), "{err}");
        assert!(!err.contains("AAAA"), "{err}");
    }

    #[test]
    fn preshared_keys_are_per_peer_private_files_and_stale_ones_go() {
        let dir = tempfile::tempdir().unwrap();
        let store = KeyStore::new(dir.path());
        let (a, b) = ([1u8; 32], [2u8; 32]);
        assert_eq!(store.load_psk("wg0", &a).unwrap(), None);
        let (psk_a, generated) = store.load_or_generate_psk("wg0", &a).unwrap();
        assert!(generated);
        let (again, generated) = store.load_or_generate_psk("wg0", &a).unwrap();
        assert!(!generated);
        assert_eq!(again, psk_a);
        let (psk_b, _) = store.load_or_generate_psk("wg0", &b).unwrap();
        assert_ne!(psk_a, psk_b);
        // Another interface's PSK for the same peer is a different key and file.
        let (other, _) = store.load_or_generate_psk("wg0.5", &a).unwrap();
        assert_ne!(other, psk_a);
        let path = dir.path().join(format!("keys/wg0.{}.psk", "01".repeat(32)));
        assert_eq!(
            fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert_eq!(
            decode_key(&fs::read_to_string(&path).unwrap()).unwrap(),
            psk_a
        );
        // The interface key file and other interfaces' PSKs are left alone.
        store.generate("wg0").unwrap();
        let keep: std::collections::HashSet<[u8; 32]> = [b].into();
        assert_eq!(store.remove_psks_except("wg0", &keep).unwrap(), 1);
        assert_eq!(store.load_psk("wg0", &a).unwrap(), None);
        assert_eq!(store.load_psk("wg0", &b).unwrap(), Some(psk_b));
        assert_eq!(store.load_psk("wg0.5", &a).unwrap(), Some(other));
        assert!(store.load("wg0").unwrap().is_some());
        assert!(matches!(
            store.load_or_generate_psk("../x", &a),
            Err(KeyError::BadInterface(_))
        ));
        fs::write(&path, "AAAA\n").unwrap();
        let err = store.load_psk("wg0", &a).unwrap_err().to_string();
        assert!(err.contains("decodes to 3 bytes"), "{err}");
    }

    #[test]
    fn public_key_matches_the_rfc7748_vector() {
        // RFC 7748 section 6.1: Alice's private and public keys.
        let private = "77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a";
        let public = "8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a";
        let bytes: [u8; 32] = (0..32)
            .map(|i| u8::from_str_radix(&private[2 * i..2 * i + 2], 16).unwrap())
            .collect::<Vec<_>>()
            .try_into()
            .unwrap();
        let key = PrivateKey::from_bytes(bytes);
        let hex: String = key
            .public()
            .as_bytes()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(hex, public);
        assert_eq!(
            decode_key(&key.public_base64()).unwrap(),
            *key.public().as_bytes()
        );
    }
}
