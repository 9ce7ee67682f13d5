//! Update bundles: one file holding a signed manifest and the three artifacts of a slot
//! (kernel, initramfs, root image), laid out so it can be verified and written while it streams
//! past: everything that must be checked before the first artifact byte is used comes first.
//!
//! Byte layout (integers little-endian):
//!
//! ```text
//! offset      size      field
//! 0           8         magic "ZTOSBNDL"
//! 8           2         format version (1)
//! 10          2         signature count N (0..=16)
//! 12          4         manifest length M (1..=65536)
//! 16          M         manifest: UTF-8 TOML (see [`Manifest`])
//! 16+M        96*N      signatures, each: 32-byte ed25519 public key, 64-byte signature of
//!                       b"ZTOS bundle manifest v1\0" followed by the M manifest bytes
//! 16+M+96N    ...       kernel, initramfs and root image bytes, back to back, with the sizes
//!                       and SHA-256 digests the manifest gives
//! ```
//!
//! Nothing follows the root image. A key's id is the first 8 bytes of the SHA-256 of its public
//! key (see [`crate::trust`]). Every length read from a header is bounded before anything is
//! allocated, and the manifest is parsed only after a trusted key's signature over its exact
//! bytes has verified.

use std::fmt;
use std::io::{self, Read, Write};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::layout::{extent_of, ROOT_A_LABEL};
use crate::trust::{
    KeyId, PublicKey, SecretKey, SignatureContext, TrustStore, KEY_LENGTH, SIGNATURE_LENGTH,
};
use crate::version::Version;

/// The first 8 bytes of every bundle.
pub const MAGIC: &[u8; 8] = b"ZTOSBNDL";
/// The bundle (and manifest) format this code reads and writes.
pub const FORMAT_VERSION: u16 = 1;
/// Bytes before the manifest.
pub const HEADER_LENGTH: usize = 16;
/// Largest manifest accepted.
pub const MAX_MANIFEST_LENGTH: u32 = 64 * 1024;
/// Most signatures a bundle may carry.
pub const MAX_SIGNATURES: u16 = 16;
/// Bytes of one signature record: public key and signature.
pub const SIGNATURE_RECORD_LENGTH: usize = KEY_LENGTH + SIGNATURE_LENGTH;
/// Largest kernel or initramfs accepted (both slots share a 256 MiB ESP).
pub const MAX_BOOT_ARTIFACT_BYTES: u64 = 64 * 1024 * 1024;
/// The usual file extension of a bundle.
pub const EXTENSION: &str = "ztosb";

/// The three artifacts, in bundle order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArtifactKind {
    Kernel,
    Initramfs,
    Root,
}

impl ArtifactKind {
    pub const ALL: [ArtifactKind; 3] = [
        ArtifactKind::Kernel,
        ArtifactKind::Initramfs,
        ArtifactKind::Root,
    ];

    /// Largest size of this artifact a bundle may carry.
    pub fn max_size(self) -> u64 {
        match self {
            ArtifactKind::Kernel | ArtifactKind::Initramfs => MAX_BOOT_ARTIFACT_BYTES,
            ArtifactKind::Root => extent_of(ROOT_A_LABEL)
                .map(|e| e.size)
                .unwrap_or(MAX_BOOT_ARTIFACT_BYTES),
        }
    }
}

impl fmt::Display for ArtifactKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ArtifactKind::Kernel => "kernel",
            ArtifactKind::Initramfs => "initramfs",
            ArtifactKind::Root => "root image",
        })
    }
}

/// Size and digest of one artifact.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Artifact {
    pub size: u64,
    pub sha256: [u8; 32],
}

impl Artifact {
    /// Size and SHA-256 of everything `reader` yields.
    pub fn of_reader(mut reader: impl Read) -> io::Result<Artifact> {
        let mut hasher = Sha256::new();
        let mut buffer = vec![0u8; 1 << 20];
        let mut size = 0u64;
        loop {
            let n = match reader.read(&mut buffer) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            hasher.update(&buffer[..n]);
            size += n as u64;
        }
        Ok(Artifact {
            size,
            sha256: hasher.finalize().into(),
        })
    }
}

/// The signed description of a bundle.
///
/// ```toml
/// format = 1
/// version = "1.2.0"
/// build_time = 1700000000      # seconds since the Unix epoch (SOURCE_DATE_EPOCH)
/// min_version = "1.0.0"        # the oldest version that may install this bundle
///
/// [kernel]
/// size = 8123456
/// sha256 = "<64 hex digits>"
///
/// [initramfs]
/// ...
///
/// [root]
/// ...
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Manifest {
    pub format: u16,
    pub version: Version,
    pub build_time: u64,
    pub min_version: Version,
    pub kernel: Artifact,
    pub initramfs: Artifact,
    pub root: Artifact,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct ManifestFile {
    format: u16,
    version: Version,
    build_time: u64,
    min_version: Version,
    kernel: Option<ArtifactFile>,
    initramfs: Option<ArtifactFile>,
    root: Option<ArtifactFile>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct ArtifactFile {
    size: u64,
    sha256: String,
}

impl Manifest {
    pub fn artifact(&self, kind: ArtifactKind) -> &Artifact {
        match kind {
            ArtifactKind::Kernel => &self.kernel,
            ArtifactKind::Initramfs => &self.initramfs,
            ArtifactKind::Root => &self.root,
        }
    }

    /// Total bytes of the three artifacts.
    pub fn artifacts_size(&self) -> u64 {
        ArtifactKind::ALL
            .iter()
            .map(|k| self.artifact(*k).size)
            .sum()
    }

    /// The manifest's TOML text (the bytes that get signed).
    pub fn to_toml(&self) -> String {
        let artifact = |a: &Artifact| {
            Some(ArtifactFile {
                size: a.size,
                sha256: hex::encode(a.sha256),
            })
        };
        toml::to_string(&ManifestFile {
            format: self.format,
            version: self.version.clone(),
            build_time: self.build_time,
            min_version: self.min_version.clone(),
            kernel: artifact(&self.kernel),
            initramfs: artifact(&self.initramfs),
            root: artifact(&self.root),
        })
        .expect("a manifest serializes")
    }

    /// Parses and checks manifest bytes: format, every artifact present with a plausible size
    /// and a 32-byte digest.
    pub fn parse(bytes: &[u8]) -> Result<Manifest, BundleError> {
        let bad = |reason: String| BundleError::Manifest(reason);
        let text = std::str::from_utf8(bytes).map_err(|e| bad(format!("not UTF-8 ({e})")))?;
        let file: ManifestFile = toml::from_str(text).map_err(|e| bad(e.to_string()))?;
        if file.format != FORMAT_VERSION {
            return Err(bad(format!(
                "format {} is not supported (this build reads format {FORMAT_VERSION})",
                file.format
            )));
        }
        let artifact = |kind: ArtifactKind, file: Option<ArtifactFile>| {
            let file = file.ok_or(BundleError::MissingArtifact(kind))?;
            if file.size == 0 {
                return Err(BundleError::EmptyArtifact(kind));
            }
            if file.size > kind.max_size() {
                return Err(BundleError::ArtifactTooLarge {
                    artifact: kind,
                    size: file.size,
                    limit: kind.max_size(),
                });
            }
            let sha256 = hex::decode(&file.sha256)
                .ok()
                .and_then(|d| <[u8; 32]>::try_from(d.as_slice()).ok())
                .ok_or_else(|| {
                    bad(format!(
                        "{kind} sha256 {:?} is not 64 hex digits",
                        file.sha256
                    ))
                })?;
            Ok(Artifact {
                size: file.size,
                sha256,
            })
        };
        Ok(Manifest {
            format: file.format,
            kernel: artifact(ArtifactKind::Kernel, file.kernel)?,
            initramfs: artifact(ArtifactKind::Initramfs, file.initramfs)?,
            root: artifact(ArtifactKind::Root, file.root)?,
            version: file.version,
            build_time: file.build_time,
            min_version: file.min_version,
        })
    }
}

/// Everything that can be wrong with a bundle.
#[derive(Debug, thiserror::Error)]
pub enum BundleError {
    #[error("not a ZTOS bundle (magic is {found}, expected \"ZTOSBNDL\")")]
    BadMagic { found: String },
    #[error("bundle format {0} is not supported (this build reads format {FORMAT_VERSION})")]
    UnsupportedFormat(u16),
    #[error("header says the manifest is {0} bytes; the limit is {MAX_MANIFEST_LENGTH}")]
    ManifestTooLarge(u32),
    #[error("header says the manifest is 0 bytes")]
    EmptyManifest,
    #[error("header says the bundle has {0} signatures; the limit is {MAX_SIGNATURES}")]
    TooManySignatures(u16),
    #[error("bundle truncated in the {part} after {read} of {expected} bytes")]
    TruncatedHeader {
        part: &'static str,
        read: u64,
        expected: u64,
    },
    #[error("bundle carries no signatures")]
    NoSignatures,
    #[error("signature by untrusted key {keys}, and none by a trusted key")]
    UntrustedSignatures { keys: String },
    #[error("signature by trusted key {key} does not verify (the manifest was changed or the signature is damaged)")]
    BadSignature { key: KeyId },
    #[error("bundle is already signed by key {key}")]
    AlreadySigned { key: KeyId },
    #[error("bad manifest: {0}")]
    Manifest(String),
    #[error("bad manifest: no {0} artifact")]
    MissingArtifact(ArtifactKind),
    #[error("manifest says the {0} is 0 bytes")]
    EmptyArtifact(ArtifactKind),
    #[error("manifest says the {artifact} is {size} bytes but a {artifact} may be at most {limit} bytes")]
    ArtifactTooLarge {
        artifact: ArtifactKind,
        size: u64,
        limit: u64,
    },
    #[error("manifest says the {artifact} is {expected} bytes but its source holds {actual}")]
    SourceSizeMismatch {
        artifact: ArtifactKind,
        expected: u64,
        actual: u64,
    },
    #[error("bundle truncated in {artifact} after {read} of {expected} bytes")]
    Truncated {
        artifact: ArtifactKind,
        read: u64,
        expected: u64,
    },
    #[error("{artifact} sha256 mismatch: manifest says {expected}, data hashes to {actual}")]
    Sha256Mismatch {
        artifact: ArtifactKind,
        expected: String,
        actual: String,
    },
    #[error("trailing bytes after the root image (the bundle is longer than its manifest says)")]
    TrailingBytes,
    #[error("reading the {part}: {source}")]
    Read {
        part: String,
        #[source]
        source: io::Error,
    },
    #[error("writing the bundle: {0}")]
    Write(#[source] io::Error),
    #[error("the bundle reader already failed: {0}")]
    AlreadyFailed(String),
}

impl BundleError {
    /// The bundle error inside an `io::Error` returned by [`ArtifactReader`], if it is one.
    pub fn from_io(error: &io::Error) -> Option<&BundleError> {
        error
            .get_ref()
            .and_then(|e| e.downcast_ref::<BundleError>())
    }

    fn into_io(self) -> io::Error {
        let kind = match &self {
            BundleError::Truncated { .. } => io::ErrorKind::UnexpectedEof,
            BundleError::Read { source, .. } => source.kind(),
            _ => io::ErrorKind::InvalidData,
        };
        io::Error::new(kind, self)
    }

    fn from_io_owned(error: io::Error) -> BundleError {
        if BundleError::from_io(&error).is_some() {
            if let Some(inner) = error.into_inner() {
                if let Ok(bundle) = inner.downcast::<BundleError>() {
                    return *bundle;
                }
            }
            // Unreachable in practice: from_io just saw a BundleError inside.
            return BundleError::AlreadyFailed("an artifact read failed".into());
        }
        BundleError::Read {
            part: "bundle".into(),
            source: error,
        }
    }
}

/// One signature record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BundleSignature {
    pub public_key: [u8; KEY_LENGTH],
    pub signature: [u8; SIGNATURE_LENGTH],
}

impl BundleSignature {
    pub fn key_id(&self) -> KeyId {
        KeyId::of(&self.public_key)
    }
}

/// Everything before the artifacts: the manifest bytes and the signatures over them. Decoding
/// checks the layout only; [`BundleReader::open`] checks the signatures.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BundleHeader {
    pub manifest: Vec<u8>,
    pub signatures: Vec<BundleSignature>,
}

/// Reads exactly `buffer.len()` bytes, or says how far it got.
fn read_part(
    reader: &mut impl Read,
    buffer: &mut [u8],
    part: &'static str,
) -> Result<(), BundleError> {
    let mut filled = 0;
    while filled < buffer.len() {
        match reader.read(&mut buffer[filled..]) {
            Ok(0) => {
                return Err(BundleError::TruncatedHeader {
                    part,
                    read: filled as u64,
                    expected: buffer.len() as u64,
                })
            }
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(source) => {
                return Err(BundleError::Read {
                    part: part.to_string(),
                    source,
                })
            }
        }
    }
    Ok(())
}

impl BundleHeader {
    /// A header for `manifest` signed by each of `keys`.
    pub fn signed(manifest: Vec<u8>, keys: &[&SecretKey]) -> Result<BundleHeader, BundleError> {
        let mut header = BundleHeader {
            manifest,
            signatures: Vec::new(),
        };
        for key in keys {
            header.add_signature(key)?;
        }
        Ok(header)
    }

    /// Appends `key`'s signature of the manifest (in memory only).
    pub fn add_signature(&mut self, key: &SecretKey) -> Result<(), BundleError> {
        let public_key = key.public().to_bytes();
        if self.signatures.iter().any(|s| s.public_key == public_key) {
            return Err(BundleError::AlreadySigned {
                key: key.public().id(),
            });
        }
        if self.signatures.len() >= usize::from(MAX_SIGNATURES) {
            return Err(BundleError::TooManySignatures(MAX_SIGNATURES + 1));
        }
        self.signatures.push(BundleSignature {
            public_key,
            signature: key.sign(SignatureContext::BundleManifest, &self.manifest),
        });
        Ok(())
    }

    /// The encoded header, manifest and signatures.
    pub fn encode(&self) -> Result<Vec<u8>, BundleError> {
        let length = u32::try_from(self.manifest.len())
            .ok()
            .filter(|l| *l <= MAX_MANIFEST_LENGTH)
            .ok_or(BundleError::ManifestTooLarge(
                u32::try_from(self.manifest.len()).unwrap_or(u32::MAX),
            ))?;
        if length == 0 {
            return Err(BundleError::EmptyManifest);
        }
        let count = u16::try_from(self.signatures.len())
            .ok()
            .filter(|c| *c <= MAX_SIGNATURES)
            .ok_or(BundleError::TooManySignatures(u16::MAX))?;
        let mut out = Vec::with_capacity(
            HEADER_LENGTH + self.manifest.len() + self.signatures.len() * SIGNATURE_RECORD_LENGTH,
        );
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
        out.extend_from_slice(&count.to_le_bytes());
        out.extend_from_slice(&length.to_le_bytes());
        out.extend_from_slice(&self.manifest);
        for signature in &self.signatures {
            out.extend_from_slice(&signature.public_key);
            out.extend_from_slice(&signature.signature);
        }
        Ok(out)
    }

    /// Reads the header, manifest and signatures from the start of a bundle, leaving `reader`
    /// at the first artifact byte. Lengths are checked against their limits before anything
    /// is allocated.
    pub fn read_from(reader: &mut impl Read) -> Result<BundleHeader, BundleError> {
        let mut fixed = [0u8; HEADER_LENGTH];
        read_part(reader, &mut fixed, "header")?;
        if &fixed[..8] != MAGIC {
            return Err(BundleError::BadMagic {
                found: format!("{:?}", String::from_utf8_lossy(&fixed[..8])),
            });
        }
        let format = u16::from_le_bytes([fixed[8], fixed[9]]);
        if format != FORMAT_VERSION {
            return Err(BundleError::UnsupportedFormat(format));
        }
        let count = u16::from_le_bytes([fixed[10], fixed[11]]);
        if count > MAX_SIGNATURES {
            return Err(BundleError::TooManySignatures(count));
        }
        let length = u32::from_le_bytes([fixed[12], fixed[13], fixed[14], fixed[15]]);
        if length > MAX_MANIFEST_LENGTH {
            return Err(BundleError::ManifestTooLarge(length));
        }
        if length == 0 {
            return Err(BundleError::EmptyManifest);
        }
        let mut manifest = vec![0u8; length as usize];
        read_part(reader, &mut manifest, "manifest")?;
        let mut records = vec![0u8; usize::from(count) * SIGNATURE_RECORD_LENGTH];
        read_part(reader, &mut records, "signatures")?;
        let signatures = records
            .chunks_exact(SIGNATURE_RECORD_LENGTH)
            .map(|record| {
                let (key, signature) = record.split_at(KEY_LENGTH);
                BundleSignature {
                    public_key: key.try_into().expect("record split at 32"),
                    signature: signature.try_into().expect("record remainder is 64"),
                }
            })
            .collect();
        Ok(BundleHeader {
            manifest,
            signatures,
        })
    }
}

/// How one signature of an opened bundle was judged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignatureCheck {
    pub key: KeyId,
    /// The key is trusted and its signature verified. Untrusted keys' signatures are ignored
    /// (never checked); a trusted key's bad signature fails [`BundleReader::open`].
    pub trusted: bool,
}

struct Progress {
    kind: ArtifactKind,
    size: u64,
    expected: [u8; 32],
    read: u64,
    hasher: Sha256,
    done: bool,
}

/// A bundle being read: header, manifest and signatures are verified by [`BundleReader::open`];
/// the artifacts then stream through [`BundleReader::next_artifact`], hashed as they pass.
pub struct BundleReader<R> {
    reader: R,
    manifest: Manifest,
    signatures: Vec<SignatureCheck>,
    next: usize,
    current: Option<Progress>,
    failed: Option<String>,
}

impl<R> fmt::Debug for BundleReader<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BundleReader")
            .field("manifest", &self.manifest)
            .field("signatures", &self.signatures)
            .field("next", &self.next)
            .finish_non_exhaustive()
    }
}

impl<R: Read> BundleReader<R> {
    /// Reads and verifies the header, the signatures and the manifest. Succeeds only when at
    /// least one signature is by a key `trust` trusts and verifies; a trusted key's signature
    /// that does not verify is an error even when another one does; signatures by unknown keys
    /// are ignored but listed in [`BundleReader::signatures`]. No artifact byte has been read
    /// when this returns.
    pub fn open(mut reader: R, trust: &TrustStore) -> Result<BundleReader<R>, BundleError> {
        let header = BundleHeader::read_from(&mut reader)?;
        if header.signatures.is_empty() {
            return Err(BundleError::NoSignatures);
        }
        let mut checks = Vec::new();
        for signature in &header.signatures {
            let key = signature.key_id();
            let trusted = PublicKey::from_bytes(&signature.public_key)
                .ok()
                .filter(|k| trust.trusts(k));
            if let Some(public) = trusted {
                if !public.verifies(
                    SignatureContext::BundleManifest,
                    &header.manifest,
                    &signature.signature,
                ) {
                    return Err(BundleError::BadSignature { key });
                }
            }
            checks.push(SignatureCheck {
                key,
                trusted: trusted.is_some(),
            });
        }
        if !checks.iter().any(|c| c.trusted) {
            return Err(BundleError::UntrustedSignatures {
                keys: checks
                    .iter()
                    .map(|c| c.key.to_string())
                    .collect::<Vec<_>>()
                    .join(", "),
            });
        }
        let manifest = Manifest::parse(&header.manifest)?;
        Ok(BundleReader {
            reader,
            manifest,
            signatures: checks,
            next: 0,
            current: None,
            failed: None,
        })
    }

    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// Every signature and whether it was by a trusted key.
    pub fn signatures(&self) -> &[SignatureCheck] {
        &self.signatures
    }

    /// The next artifact (kernel, initramfs, root image in turn), or `None` after the root
    /// image. What the previous artifact's reader left unread is read (and hashed) first.
    pub fn next_artifact(&mut self) -> Result<Option<ArtifactReader<'_, R>>, BundleError> {
        if let Some(reason) = &self.failed {
            return Err(BundleError::AlreadyFailed(reason.clone()));
        }
        if self.current.as_ref().is_some_and(|p| !p.done) {
            let mut rest = ArtifactReader { bundle: self };
            io::copy(&mut rest, &mut io::sink()).map_err(BundleError::from_io_owned)?;
        }
        let Some(kind) = ArtifactKind::ALL.get(self.next).copied() else {
            self.current = None;
            return Ok(None);
        };
        self.next += 1;
        let artifact = self.manifest.artifact(kind);
        self.current = Some(Progress {
            kind,
            size: artifact.size,
            expected: artifact.sha256,
            read: 0,
            hasher: Sha256::new(),
            done: false,
        });
        Ok(Some(ArtifactReader { bundle: self }))
    }

    /// Reads (and checks) whatever artifacts are left, then makes sure nothing follows the root
    /// image. Returns the underlying reader.
    pub fn finish(mut self) -> Result<R, BundleError> {
        while let Some(mut artifact) = self.next_artifact()? {
            io::copy(&mut artifact, &mut io::sink()).map_err(BundleError::from_io_owned)?;
        }
        let mut byte = [0u8; 1];
        loop {
            match self.reader.read(&mut byte) {
                Ok(0) => return Ok(self.reader),
                Ok(_) => return Err(BundleError::TrailingBytes),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(source) => {
                    return Err(BundleError::Read {
                        part: "end of the bundle".into(),
                        source,
                    })
                }
            }
        }
    }

    fn fail(&mut self, error: BundleError) -> io::Error {
        self.failed = Some(error.to_string());
        error.into_io()
    }

    fn read_artifact(&mut self, buffer: &mut [u8]) -> io::Result<usize> {
        if let Some(reason) = &self.failed {
            return Err(BundleError::AlreadyFailed(reason.clone()).into_io());
        }
        let Some(progress) = self.current.as_mut() else {
            return Ok(0);
        };
        if progress.done || buffer.is_empty() {
            return Ok(0);
        }
        let want = usize::try_from(progress.size - progress.read)
            .unwrap_or(usize::MAX)
            .min(buffer.len());
        let n = match self.reader.read(&mut buffer[..want]) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => return Err(e),
            Err(source) => {
                let error = BundleError::Read {
                    part: format!(
                        "{} after {} of {} bytes",
                        progress.kind, progress.read, progress.size
                    ),
                    source,
                };
                return Err(self.fail(error));
            }
        };
        if n == 0 {
            let error = BundleError::Truncated {
                artifact: progress.kind,
                read: progress.read,
                expected: progress.size,
            };
            return Err(self.fail(error));
        }
        progress.hasher.update(&buffer[..n]);
        progress.read += n as u64;
        if progress.read == progress.size {
            progress.done = true;
            let actual: [u8; 32] = std::mem::take(&mut progress.hasher).finalize().into();
            if actual != progress.expected {
                let error = BundleError::Sha256Mismatch {
                    artifact: progress.kind,
                    expected: hex::encode(progress.expected),
                    actual: hex::encode(actual),
                };
                return Err(self.fail(error));
            }
        }
        Ok(n)
    }
}

/// One artifact's bytes. Yields exactly the manifest's size; the read that reaches the end
/// fails with `InvalidData` (carrying [`BundleError::Sha256Mismatch`]) if the digest differs,
/// and a stream that ends early fails with `UnexpectedEof` ([`BundleError::Truncated`]).
/// [`BundleError::from_io`] recovers the bundle error.
pub struct ArtifactReader<'a, R> {
    bundle: &'a mut BundleReader<R>,
}

impl<R> fmt::Debug for ArtifactReader<'_, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ArtifactReader").finish_non_exhaustive()
    }
}

impl<R: Read> ArtifactReader<'_, R> {
    pub fn kind(&self) -> ArtifactKind {
        self.bundle
            .current
            .as_ref()
            .map(|p| p.kind)
            .unwrap_or(ArtifactKind::Root)
    }

    /// The artifact's size according to the (signed) manifest.
    pub fn size(&self) -> u64 {
        self.bundle.current.as_ref().map(|p| p.size).unwrap_or(0)
    }

    /// Whether every byte has been read and the digest matched.
    pub fn is_verified(&self) -> bool {
        self.bundle
            .current
            .as_ref()
            .is_some_and(|p| p.done && self.bundle.failed.is_none())
    }
}

impl<R: Read> Read for ArtifactReader<'_, R> {
    fn read(&mut self, buffer: &mut [u8]) -> io::Result<usize> {
        self.bundle.read_artifact(buffer)
    }
}

/// Writes a whole bundle: `header` (whose manifest must be `manifest`'s bytes), then the
/// artifacts from `sources` (kernel, initramfs, root), each checked against the manifest's
/// size and digest as it is copied, so a file changed since it was hashed is caught.
pub fn write_bundle(
    out: &mut impl Write,
    header: &BundleHeader,
    manifest: &Manifest,
    sources: [&mut dyn Read; 3],
) -> Result<(), BundleError> {
    out.write_all(&header.encode()?)
        .map_err(BundleError::Write)?;
    let mut buffer = vec![0u8; 1 << 20];
    for (kind, source) in ArtifactKind::ALL.into_iter().zip(sources) {
        let expected = manifest.artifact(kind);
        let mut hasher = Sha256::new();
        let mut copied = 0u64;
        loop {
            let n = match source.read(&mut buffer) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(source) => {
                    return Err(BundleError::Read {
                        part: kind.to_string(),
                        source,
                    })
                }
            };
            copied += n as u64;
            if copied > expected.size {
                return Err(BundleError::SourceSizeMismatch {
                    artifact: kind,
                    expected: expected.size,
                    actual: copied,
                });
            }
            hasher.update(&buffer[..n]);
            out.write_all(&buffer[..n]).map_err(BundleError::Write)?;
        }
        if copied != expected.size {
            return Err(BundleError::SourceSizeMismatch {
                artifact: kind,
                expected: expected.size,
                actual: copied,
            });
        }
        let actual: [u8; 32] = hasher.finalize().into();
        if actual != expected.sha256 {
            return Err(BundleError::Sha256Mismatch {
                artifact: kind,
                expected: hex::encode(expected.sha256),
                actual: hex::encode(actual),
            });
        }
    }
    out.flush().map_err(BundleError::Write)
}

#[cfg(test)]
mod tests;
