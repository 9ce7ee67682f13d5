//! TLS for the HTTPS API and web UI: the operator's certificate when one is configured,
//! otherwise a local CA and a server certificate made on first start and kept in
//! `<state_dir>/tls/`. Clients trust the box by pinning `tls/ca.pem` (or its fingerprint).
//!
//! The generated CA's private key is used once, to sign the server certificate, and is never
//! written to disk: whoever copies the state directory cannot mint certificates that clients
//! trusting this CA would accept for other names.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use sha2::{Digest, Sha256};

/// Directory under the state directory holding the generated certificates.
pub const TLS_DIR: &str = "tls";
pub const CA_FILE: &str = "ca.pem";
pub const SERVER_CERT_FILE: &str = "server.pem";
pub const SERVER_KEY_FILE: &str = "server.key";

/// Validity of generated certificates, in days. A generated CA is pinned by its clients, so a
/// short lifetime would only force operators to re-pin; ten years matches appliance lifetimes.
const VALIDITY_DAYS: i64 = 3650;

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} holds no PEM certificate")]
    NoCertificate { path: PathBuf },
    #[error("{path} holds no PEM private key: {message}")]
    NoPrivateKey { path: PathBuf, message: String },
    #[error("{path} is not valid PEM: {message}")]
    Pem { path: PathBuf, message: String },
    #[error("a certificate ({cert}) needs a private key too; set both or neither")]
    CertificateWithoutKey { cert: PathBuf },
    #[error("a private key ({key}) needs a certificate too; set both or neither")]
    KeyWithoutCertificate { key: PathBuf },
    #[error("cannot generate a certificate for {hostname:?}: {source}")]
    Generate {
        hostname: String,
        source: rcgen::Error,
    },
    #[error("certificate {cert} and key {key} are not usable: {source}")]
    Rustls {
        cert: PathBuf,
        key: PathBuf,
        source: rustls::Error,
    },
}

/// Installs ring as the process-wide rustls crypto provider, for code (such as the CLI's HTTPS
/// client) that builds configs with the default builders. Calling it again is harmless.
pub fn install_crypto_provider() {
    // Err only means a provider is already installed, which is what we want.
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// Builds the server TLS config. With `cert` and `key`, loads the operator's PEM files;
/// otherwise uses `<state_dir>/tls/`, generating a CA and a server certificate for `hostname`
/// (plus `localhost`, `127.0.0.1` and `::1`) on first start and reusing them afterwards.
/// ALPN offers `h2` and `http/1.1`.
pub fn load_or_generate(
    state_dir: &Path,
    cert: Option<&Path>,
    key: Option<&Path>,
    hostname: &str,
) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let (cert_path, key_path) = match (cert, key) {
        (Some(cert), Some(key)) => (cert.to_path_buf(), key.to_path_buf()),
        (Some(cert), None) => {
            return Err(TlsError::CertificateWithoutKey {
                cert: cert.to_path_buf(),
            })
        }
        (None, Some(key)) => {
            return Err(TlsError::KeyWithoutCertificate {
                key: key.to_path_buf(),
            })
        }
        (None, None) => {
            let dir = state_dir.join(TLS_DIR);
            let cert = dir.join(SERVER_CERT_FILE);
            let key = dir.join(SERVER_KEY_FILE);
            let complete = [CA_FILE, SERVER_CERT_FILE, SERVER_KEY_FILE]
                .iter()
                .all(|f| dir.join(f).exists());
            if !complete {
                generate(&dir, hostname)?;
            }
            (cert, key)
        }
    };
    let chain = read_certificates(&cert_path)?;
    let private_key = read_private_key(&key_path)?;
    let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .and_then(|builder| {
        builder
            .with_no_client_auth()
            .with_single_cert(chain, private_key)
    })
    .map_err(|source| TlsError::Rustls {
        cert: cert_path.clone(),
        key: key_path.clone(),
        source,
    })?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// SHA-256 of the generated CA certificate (DER), as lowercase hex; `None` when there is no
/// readable CA in `<state_dir>/tls/` (for example when the operator supplies the certificate).
pub fn ca_fingerprint(state_dir: &Path) -> Option<String> {
    let path = state_dir.join(TLS_DIR).join(CA_FILE);
    let chain = read_certificates(&path).ok()?;
    chain.first().map(|der| hex::encode(Sha256::digest(der)))
}

/// Makes a fresh CA and a server certificate signed by it, and writes `ca.pem`, `server.pem`
/// and `server.key` (mode 0600) into `dir`. The CA key is dropped when this returns.
fn generate(dir: &Path, hostname: &str) -> Result<(), TlsError> {
    let gen_err = |source| TlsError::Generate {
        hostname: hostname.to_string(),
        source,
    };
    let now = time::OffsetDateTime::now_utc();
    let not_before = now - time::Duration::days(1);
    let not_after = now + time::Duration::days(VALIDITY_DAYS);

    let ca_key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).map_err(gen_err)?;
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).map_err(gen_err)?;
    ca_params.distinguished_name = distinguished_name(&format!("ZTOS local CA ({hostname})"));
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca_params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    ca_params.not_before = not_before;
    ca_params.not_after = not_after;
    let ca_cert = ca_params.self_signed(&ca_key).map_err(gen_err)?;
    let issuer = Issuer::new(ca_params, ca_key);

    let mut names = vec![hostname.to_string()];
    for name in ["localhost", "127.0.0.1", "::1"] {
        if !names.iter().any(|n| n == name) {
            names.push(name.to_string());
        }
    }
    let server_key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).map_err(gen_err)?;
    let mut server_params = CertificateParams::new(names).map_err(gen_err)?;
    server_params.distinguished_name = distinguished_name(hostname);
    server_params.is_ca = IsCa::ExplicitNoCa;
    server_params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    server_params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    server_params.use_authority_key_identifier_extension = true;
    server_params.not_before = not_before;
    server_params.not_after = not_after;
    let server_cert = server_params
        .signed_by(&server_key, &issuer)
        .map_err(gen_err)?;

    create_private_dir(dir)?;
    // The key first and the CA last: `load_or_generate` treats the set as complete only when
    // all three exist, so an interrupted run is simply redone on the next start.
    write(
        &dir.join(SERVER_KEY_FILE),
        server_key.serialize_pem().as_bytes(),
        0o600,
    )?;
    let chain = format!("{}{}", server_cert.pem(), ca_cert.pem());
    write(&dir.join(SERVER_CERT_FILE), chain.as_bytes(), 0o644)?;
    write(&dir.join(CA_FILE), ca_cert.pem().as_bytes(), 0o644)?;
    tracing::info!(
        dir = %dir.display(),
        hostname,
        "generated a local CA and server certificate"
    );
    Ok(())
}

fn distinguished_name(common_name: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, "ZTOS");
    dn.push(DnType::CommonName, common_name);
    dn
}

fn create_private_dir(dir: &Path) -> Result<(), TlsError> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|source| TlsError::Write {
            path: dir.to_path_buf(),
            source,
        })
}

fn write(path: &Path, bytes: &[u8], mode: u32) -> Result<(), TlsError> {
    crate::store::atomic_write(path, bytes, mode).map_err(|source| TlsError::Write {
        path: path.to_path_buf(),
        source,
    })
}

fn read_file(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        path: path.to_path_buf(),
        source,
    })
}

fn read_certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let bytes = read_file(path)?;
    let chain = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::Pem {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
    if chain.is_empty() {
        return Err(TlsError::NoCertificate {
            path: path.to_path_buf(),
        });
    }
    Ok(chain)
}

fn read_private_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let bytes = read_file(path)?;
    PrivateKeyDer::from_pem_slice(&bytes).map_err(|e| TlsError::NoPrivateKey {
        path: path.to_path_buf(),
        message: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls::client::danger::ServerCertVerifier;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn generates_once_and_reuses() {
        let dir = tempfile::tempdir().unwrap();
        let config = load_or_generate(dir.path(), None, None, "leaf1").unwrap();
        assert_eq!(
            config.alpn_protocols,
            vec![b"h2".to_vec(), b"http/1.1".to_vec()]
        );
        let tls = dir.path().join(TLS_DIR);
        let key_mode = std::fs::metadata(tls.join(SERVER_KEY_FILE))
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(key_mode, 0o600);
        let fingerprint = ca_fingerprint(dir.path()).unwrap();
        assert_eq!(fingerprint.len(), 64);
        let server_pem = std::fs::read(tls.join(SERVER_CERT_FILE)).unwrap();

        load_or_generate(dir.path(), None, None, "leaf1").unwrap();
        assert_eq!(ca_fingerprint(dir.path()).unwrap(), fingerprint);
        assert_eq!(
            std::fs::read(tls.join(SERVER_CERT_FILE)).unwrap(),
            server_pem
        );
        // No CA private key is kept.
        let names: Vec<_> = std::fs::read_dir(&tls)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(names.len(), 3, "{names:?}");
    }

    #[test]
    fn server_certificate_verifies_against_the_ca_for_every_name() {
        install_crypto_provider();
        let dir = tempfile::tempdir().unwrap();
        load_or_generate(dir.path(), None, None, "leaf1.example").unwrap();
        let tls = dir.path().join(TLS_DIR);
        let mut roots = rustls::RootCertStore::empty();
        for ca in read_certificates(&tls.join(CA_FILE)).unwrap() {
            roots.add(ca).unwrap();
        }
        let verifier = rustls::client::WebPkiServerVerifier::builder(Arc::new(roots))
            .build()
            .unwrap();
        let chain = read_certificates(&tls.join(SERVER_CERT_FILE)).unwrap();
        let now = rustls::pki_types::UnixTime::now();
        for name in ["leaf1.example", "localhost", "127.0.0.1", "::1"] {
            let server_name = rustls::pki_types::ServerName::try_from(name).unwrap();
            verifier
                .verify_server_cert(&chain[0], &chain[1..], &server_name, &[], now)
                .unwrap_or_else(|e| panic!("{name}: {e}"));
        }
        let other = rustls::pki_types::ServerName::try_from("other.example").unwrap();
        assert!(verifier
            .verify_server_cert(&chain[0], &chain[1..], &other, &[], now)
            .is_err());
    }

    #[test]
    fn operator_files_are_loaded_and_half_a_pair_is_refused() {
        let generated = tempfile::tempdir().unwrap();
        load_or_generate(generated.path(), None, None, "box").unwrap();
        let tls = generated.path().join(TLS_DIR);
        let cert = tls.join(SERVER_CERT_FILE);
        let key = tls.join(SERVER_KEY_FILE);

        let state = tempfile::tempdir().unwrap();
        load_or_generate(state.path(), Some(&cert), Some(&key), "box").unwrap();
        assert!(!state.path().join(TLS_DIR).exists());
        assert!(ca_fingerprint(state.path()).is_none());

        let err = load_or_generate(state.path(), Some(&cert), None, "box").unwrap_err();
        assert!(err.to_string().contains("server.pem"), "{err}");
        let err = load_or_generate(state.path(), Some(&key), Some(&key), "box").unwrap_err();
        assert!(matches!(err, TlsError::NoCertificate { .. }), "{err}");
        let missing = state.path().join("missing.pem");
        let err = load_or_generate(state.path(), Some(&missing), Some(&key), "box").unwrap_err();
        assert!(err.to_string().contains("missing.pem"), "{err}");
    }
}
