//! Bundle codec and verifier tests: byte layout, round trip, every rejection, and a no-panic run
//! over mutated and random inputs.

use std::io::{Cursor, Read};

use super::*;
use crate::trust::TrustStatement;

fn key(n: u8) -> SecretKey {
    SecretKey::from_seed(&[n; 32])
}

const KERNEL: &[u8] = b"kernel bytes";
const INITRAMFS: &[u8] = b"initramfs!";

fn root() -> Vec<u8> {
    (0..5000u32).map(|i| (i % 251) as u8).collect()
}

fn manifest_for(version: &str, artifacts: [&[u8]; 3]) -> Manifest {
    let of = |data: &[u8]| Artifact::of_reader(data).unwrap();
    Manifest {
        format: FORMAT_VERSION,
        version: Version::parse(version).unwrap(),
        build_time: 1_700_000_000,
        min_version: Version::parse("0.1.0").unwrap(),
        kernel: of(artifacts[0]),
        initramfs: of(artifacts[1]),
        root: of(artifacts[2]),
    }
}

/// A bundle of raw manifest bytes signed by `keys`, followed by `artifacts` verbatim.
fn raw_bundle(manifest: &[u8], keys: &[&SecretKey], artifacts: &[&[u8]]) -> Vec<u8> {
    let header = BundleHeader::signed(manifest.to_vec(), keys).unwrap();
    let mut out = header.encode().unwrap();
    for a in artifacts {
        out.extend_from_slice(a);
    }
    out
}

fn bundle(keys: &[&SecretKey]) -> Vec<u8> {
    let root = root();
    let manifest = manifest_for("1.2.0", [KERNEL, INITRAMFS, &root]);
    let header = BundleHeader::signed(manifest.to_toml().into_bytes(), keys).unwrap();
    let mut out = Vec::new();
    write_bundle(
        &mut out,
        &header,
        &manifest,
        [&mut &KERNEL[..], &mut &INITRAMFS[..], &mut &root[..]],
    )
    .unwrap();
    out
}

fn trust(keys: &[&SecretKey]) -> TrustStore {
    TrustStore::from_keys(keys.iter().map(|k| k.public()))
}

/// Opens and reads everything; returns the artifacts or the first error.
fn read_all(bytes: &[u8], trust: &TrustStore) -> Result<Vec<Vec<u8>>, BundleError> {
    let mut reader = BundleReader::open(Cursor::new(bytes), trust)?;
    let mut artifacts = Vec::new();
    while let Some(mut artifact) = reader.next_artifact()? {
        let mut data = Vec::new();
        artifact
            .read_to_end(&mut data)
            .map_err(BundleError::from_io_owned)?;
        assert!(artifact.is_verified());
        artifacts.push(data);
    }
    reader.finish()?;
    Ok(artifacts)
}

fn error_text(bytes: &[u8], trust: &TrustStore) -> String {
    read_all(bytes, trust).unwrap_err().to_string()
}

#[test]
fn header_byte_vector() {
    let manifest = b"format = 1\n".to_vec();
    let header = BundleHeader {
        manifest: manifest.clone(),
        signatures: vec![BundleSignature {
            public_key: [0xaa; 32],
            signature: [0xbb; 64],
        }],
    };
    let mut expected = Vec::new();
    expected.extend_from_slice(b"ZTOSBNDL"); // magic
    expected.extend_from_slice(&[0x01, 0x00]); // format 1, little-endian
    expected.extend_from_slice(&[0x01, 0x00]); // one signature
    expected.extend_from_slice(&[0x0b, 0x00, 0x00, 0x00]); // manifest length 11
    expected.extend_from_slice(b"format = 1\n");
    expected.extend_from_slice(&[0xaa; 32]);
    expected.extend_from_slice(&[0xbb; 64]);
    assert_eq!(header.encode().unwrap(), expected);
    let decoded = BundleHeader::read_from(&mut &expected[..]).unwrap();
    assert_eq!(decoded, header);
}

#[test]
fn manifest_text_round_trips() {
    let manifest = manifest_for("1.2.0-rc.1", [b"k", b"i", b"r"]);
    let text = manifest.to_toml();
    assert!(
        text.starts_with("format = 1\nversion = \"1.2.0-rc.1\"\n"),
        "{text}"
    );
    assert!(text.contains("[root]\nsize = 1\nsha256 = \"454349e422f05297191ead13e21d3db520e5abef52055e4964b82fb213f593a1\"\n"), "{text}");
    assert_eq!(Manifest::parse(text.as_bytes()).unwrap(), manifest);
}

#[test]
fn round_trip_and_signature_report() {
    let (k1, k2) = (key(1), key(2));
    let bytes = bundle(&[&k2, &k1]);
    let store = trust(&[&k1]);
    let artifacts = read_all(&bytes, &store).unwrap();
    assert_eq!(artifacts, vec![KERNEL.to_vec(), INITRAMFS.to_vec(), root()]);
    let reader = BundleReader::open(Cursor::new(&bytes), &store).unwrap();
    assert_eq!(reader.manifest().version.to_string(), "1.2.0");
    assert_eq!(
        reader.signatures(),
        &[
            SignatureCheck {
                key: k2.public().id(),
                trusted: false
            },
            SignatureCheck {
                key: k1.public().id(),
                trusted: true
            },
        ]
    );
    // finish() alone reads and checks every artifact.
    reader.finish().unwrap();
}

#[test]
fn nothing_of_an_artifact_is_read_before_open_returns() {
    // A reader that serves only the header: open must succeed without touching artifacts.
    let k1 = key(1);
    let bytes = bundle(&[&k1]);
    let header_len = BundleHeader::read_from(&mut &bytes[..])
        .unwrap()
        .encode()
        .unwrap()
        .len();
    let reader = BundleReader::open(Cursor::new(&bytes[..header_len]), &trust(&[&k1])).unwrap();
    assert_eq!(reader.manifest().kernel.size, KERNEL.len() as u64);
}

#[test]
fn one_flipped_root_byte_is_a_sha256_mismatch() {
    let k1 = key(1);
    let mut bytes = bundle(&[&k1]);
    let last = bytes.len() - 10;
    bytes[last] ^= 0x01;
    let mut reader = BundleReader::open(Cursor::new(&bytes), &trust(&[&k1])).unwrap();
    for _ in 0..2 {
        let mut a = reader.next_artifact().unwrap().unwrap();
        std::io::copy(&mut a, &mut std::io::sink()).unwrap();
    }
    let mut root_reader = reader.next_artifact().unwrap().unwrap();
    assert_eq!(root_reader.kind(), ArtifactKind::Root);
    let err = std::io::copy(&mut root_reader, &mut std::io::sink()).unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::InvalidData);
    let text = BundleError::from_io(&err).unwrap().to_string();
    let mut flipped = root();
    let at = flipped.len() - 10;
    flipped[at] ^= 0x01;
    assert_eq!(
        text,
        format!(
            "root image sha256 mismatch: manifest says {}, data hashes to {}",
            hex::encode(Sha256::digest(root())),
            hex::encode(Sha256::digest(&flipped))
        )
    );
    // The reader stays failed.
    assert!(reader
        .next_artifact()
        .unwrap_err()
        .to_string()
        .starts_with("the bundle reader already failed: root image sha256 mismatch"));
}

#[test]
fn untrusted_and_bad_signatures() {
    let (k1, k2) = (key(1), key(2));
    let bytes = bundle(&[&k2]);
    assert_eq!(
        error_text(&bytes, &trust(&[&k1])),
        format!(
            "signature by untrusted key {}, and none by a trusted key",
            k2.public().id()
        )
    );
    // A trusted key's signature over other bytes: the manifest was changed after signing.
    let mut bytes = bundle(&[&k1]);
    let at = HEADER_LENGTH + 20;
    bytes[at] ^= 0x20;
    assert_eq!(
        error_text(&bytes, &trust(&[&k1])),
        format!(
            "signature by trusted key {} does not verify (the manifest was changed or the signature is damaged)",
            k1.public().id()
        )
    );
    // A bad trusted signature is an error even next to a good one.
    let mut bytes = bundle(&[&k1, &k2]);
    let manifest_len = BundleHeader::read_from(&mut &bytes[..])
        .unwrap()
        .manifest
        .len();
    let second_signature = HEADER_LENGTH + manifest_len + SIGNATURE_RECORD_LENGTH + KEY_LENGTH;
    bytes[second_signature] ^= 0x01;
    assert!(error_text(&bytes, &trust(&[&k1, &k2])).contains(&format!(
        "signature by trusted key {} does not verify",
        k2.public().id()
    )));
    // No signatures at all.
    let root = root();
    let manifest = manifest_for("1.2.0", [KERNEL, INITRAMFS, &root]);
    let bytes = raw_bundle(
        manifest.to_toml().as_bytes(),
        &[],
        &[KERNEL, INITRAMFS, &root],
    );
    assert_eq!(
        error_text(&bytes, &trust(&[&k1])),
        "bundle carries no signatures"
    );
}

#[test]
fn rotation_makes_a_new_key_acceptable() {
    let (k1, k2) = (key(1), key(2));
    let bytes = bundle(&[&k2]);
    let mut store = trust(&[&k1]);
    assert!(error_text(&bytes, &store).contains("untrusted key"));
    store
        .add_statements([(
            "k2.trust".to_string(),
            TrustStatement::sign(&k1, &k2.public()),
        )])
        .unwrap();
    read_all(&bytes, &store).unwrap();
    // The same through a trust directory on disk.
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("k1.pub"), k1.public().to_text()).unwrap();
    assert!(error_text(&bytes, &TrustStore::load_dir(dir.path()).unwrap()).contains("untrusted"));
    std::fs::write(
        dir.path().join("k2.trust"),
        TrustStatement::sign(&k1, &k2.public()).to_text(),
    )
    .unwrap();
    read_all(&bytes, &TrustStore::load_dir(dir.path()).unwrap()).unwrap();
}

#[test]
fn truncation_at_several_points_names_where() {
    let k1 = key(1);
    let store = trust(&[&k1]);
    let bytes = bundle(&[&k1]);
    let header_len = bytes.len() - KERNEL.len() - INITRAMFS.len() - root().len();
    let manifest_len = BundleHeader::read_from(&mut &bytes[..])
        .unwrap()
        .manifest
        .len();
    let cases = [
        (
            0,
            "bundle truncated in the header after 0 of 16 bytes".to_string(),
        ),
        (
            7,
            "bundle truncated in the header after 7 of 16 bytes".to_string(),
        ),
        (
            HEADER_LENGTH + 5,
            format!("bundle truncated in the manifest after 5 of {manifest_len} bytes"),
        ),
        (
            header_len - 1,
            "bundle truncated in the signatures after 95 of 96 bytes".to_string(),
        ),
        (
            header_len,
            "bundle truncated in kernel after 0 of 12 bytes".to_string(),
        ),
        (
            header_len + KERNEL.len() + 3,
            "bundle truncated in initramfs after 3 of 10 bytes".to_string(),
        ),
        (
            bytes.len() - 1,
            "bundle truncated in root image after 4999 of 5000 bytes".to_string(),
        ),
    ];
    for (length, expected) in cases {
        assert_eq!(
            error_text(&bytes[..length], &store),
            expected,
            "at {length}"
        );
    }
    // The io::Error kind of a truncated artifact is UnexpectedEof.
    let mut reader = BundleReader::open(Cursor::new(&bytes[..header_len + 4]), &store).unwrap();
    let mut kernel = reader.next_artifact().unwrap().unwrap();
    let err = kernel.read_to_end(&mut Vec::new()).unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::UnexpectedEof);
}

#[test]
fn trailing_bytes_are_refused() {
    let k1 = key(1);
    let mut bytes = bundle(&[&k1]);
    bytes.push(0);
    assert_eq!(
        error_text(&bytes, &trust(&[&k1])),
        "trailing bytes after the root image (the bundle is longer than its manifest says)"
    );
}

#[test]
fn a_manifest_that_lies_about_a_size() {
    let k1 = key(1);
    let store = trust(&[&k1]);
    let root = root();
    // Says the kernel is one byte shorter than it is (digest of the real kernel): the kernel's
    // digest cannot match, whatever the signer intended.
    let mut manifest = manifest_for("1.2.0", [KERNEL, INITRAMFS, &root]);
    manifest.kernel.size -= 1;
    let bytes = raw_bundle(
        manifest.to_toml().as_bytes(),
        &[&k1],
        &[KERNEL, INITRAMFS, &root],
    );
    assert!(error_text(&bytes, &store).starts_with("kernel sha256 mismatch"));
    // Says the root image is longer than the data: truncated.
    let mut manifest = manifest_for("1.2.0", [KERNEL, INITRAMFS, &root]);
    manifest.root.size += 100;
    let bytes = raw_bundle(
        manifest.to_toml().as_bytes(),
        &[&k1],
        &[KERNEL, INITRAMFS, &root],
    );
    assert_eq!(
        error_text(&bytes, &store),
        "bundle truncated in root image after 5000 of 5100 bytes"
    );
    // Says the root image is larger than a root partition: refused before any byte is read.
    let mut manifest = manifest_for("1.2.0", [KERNEL, INITRAMFS, &root]);
    manifest.root.size = 1 << 50;
    let bytes = raw_bundle(
        manifest.to_toml().as_bytes(),
        &[&k1],
        &[KERNEL, INITRAMFS, &root],
    );
    let limit = ArtifactKind::Root.max_size();
    assert_eq!(
        BundleReader::open(Cursor::new(&bytes), &store).unwrap_err().to_string(),
        format!("manifest says the root image is {} bytes but a root image may be at most {limit} bytes", 1u64 << 50)
    );
    // The writer refuses sources that do not match the manifest.
    let manifest = manifest_for("1.2.0", [KERNEL, INITRAMFS, &root]);
    let header = BundleHeader::signed(manifest.to_toml().into_bytes(), &[&k1]).unwrap();
    let err = write_bundle(
        &mut Vec::new(),
        &header,
        &manifest,
        [
            &mut &b"kernel bytes, grown"[..],
            &mut &INITRAMFS[..],
            &mut &root[..],
        ],
    )
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        "manifest says the kernel is 12 bytes but its source holds 19"
    );
}

#[test]
fn hostile_header_lengths_allocate_nothing_large() {
    let store = trust(&[&key(1)]);
    let mut header = Vec::new();
    header.extend_from_slice(MAGIC);
    header.extend_from_slice(&1u16.to_le_bytes());
    header.extend_from_slice(&1u16.to_le_bytes());
    header.extend_from_slice(&u32::MAX.to_le_bytes());
    assert_eq!(
        BundleReader::open(Cursor::new(&header), &store)
            .unwrap_err()
            .to_string(),
        "header says the manifest is 4294967295 bytes; the limit is 65536"
    );
    header[10..12].copy_from_slice(&u16::MAX.to_le_bytes());
    assert_eq!(
        BundleReader::open(Cursor::new(&header), &store)
            .unwrap_err()
            .to_string(),
        "header says the bundle has 65535 signatures; the limit is 16"
    );
    header[10..12].copy_from_slice(&1u16.to_le_bytes());
    header[12..16].copy_from_slice(&0u32.to_le_bytes());
    assert_eq!(
        BundleReader::open(Cursor::new(&header), &store)
            .unwrap_err()
            .to_string(),
        "header says the manifest is 0 bytes"
    );
    header[8..10].copy_from_slice(&2u16.to_le_bytes());
    assert_eq!(
        BundleReader::open(Cursor::new(&header), &store)
            .unwrap_err()
            .to_string(),
        "bundle format 2 is not supported (this build reads format 1)"
    );
    assert_eq!(
        BundleReader::open(Cursor::new(b"PK\x03\x04 not a bundle"), &store)
            .unwrap_err()
            .to_string(),
        "not a ZTOS bundle (magic is \"PK\\u{3}\\u{4} not\", expected \"ZTOSBNDL\")"
    );
}

#[test]
fn bad_manifests_are_named() {
    let k1 = key(1);
    let store = trust(&[&k1]);
    let root = root();
    let good = manifest_for("1.2.0", [KERNEL, INITRAMFS, &root]).to_toml();
    let open = |text: &str| {
        let bytes = raw_bundle(text.as_bytes(), &[&k1], &[KERNEL, INITRAMFS, &root]);
        BundleReader::open(Cursor::new(bytes), &store)
            .unwrap_err()
            .to_string()
    };
    assert!(open("format = = 1").starts_with("bad manifest: "));
    let without_root = good.split("[root]").next().unwrap().to_string();
    assert_eq!(open(&without_root), "bad manifest: no root image artifact");
    assert!(open(&good.replace("format = 1", "format = 7")).contains("format 7 is not supported"));
    assert!(
        open(&good.replace("version = \"1.2.0\"", "version = \"1.2\""))
            .contains("invalid version \"1.2\"")
    );
    assert!(open(&format!("{good}extra = true\n")).contains("unknown field"));
    let kernel_size = format!("size = {}", KERNEL.len());
    assert_eq!(
        open(&good.replacen(&kernel_size, "size = 0", 1)),
        "manifest says the kernel is 0 bytes"
    );
    let digest = hex::encode(Sha256::digest(KERNEL));
    assert!(open(&good.replace(&digest, "abcd"))
        .contains("kernel sha256 \"abcd\" is not 64 hex digits"));
    assert!(open("\u{0}\u{ff}").starts_with("bad manifest"));
    let bytes = raw_bundle(b"\xff\xfe", &[&k1], &[]);
    assert!(BundleReader::open(Cursor::new(bytes), &store)
        .unwrap_err()
        .to_string()
        .contains("not UTF-8"));
}

#[test]
fn sign_appends_and_refuses_duplicates() {
    let (k1, k2) = (key(1), key(2));
    let bytes = bundle(&[&k1]);
    let mut rest = &bytes[..];
    let mut header = BundleHeader::read_from(&mut rest).unwrap();
    assert_eq!(
        header.add_signature(&k1).unwrap_err().to_string(),
        format!("bundle is already signed by key {}", k1.public().id())
    );
    header.add_signature(&k2).unwrap();
    let mut resigned = header.encode().unwrap();
    resigned.extend_from_slice(rest);
    read_all(&resigned, &trust(&[&k2])).unwrap();
}

/// xorshift64*: deterministic, dependency-free randomness for the no-panic run.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

#[test]
fn no_panic_on_mutated_or_random_input_and_every_flip_is_caught() {
    let k1 = key(1);
    let store = trust(&[&k1]);
    let good = bundle(&[&k1]);
    read_all(&good, &store).unwrap();
    let mut rng = Rng(0x5eed_1234_abcd_0001);
    let mut rejected = 0;
    for round in 0..3000 {
        let mut input = good.clone();
        let single_flip = round % 3 == 0;
        match round % 6 {
            0 | 3 => {
                let at = rng.below(input.len());
                input[at] ^= 1 << rng.below(8);
            }
            1 => input.truncate(rng.below(good.len())),
            2 => {
                for _ in 0..1 + rng.below(8) {
                    let at = rng.below(input.len());
                    input[at] = rng.next() as u8;
                }
            }
            4 => {
                let at = rng.below(input.len());
                let junk: Vec<u8> = (0..1 + rng.below(64)).map(|_| rng.next() as u8).collect();
                input.splice(at..at, junk);
            }
            _ => {
                let length = rng.below(300);
                input = (0..length).map(|_| rng.next() as u8).collect();
                if length > 16 && rng.below(2) == 0 {
                    input[..8].copy_from_slice(MAGIC);
                    input[8..10].copy_from_slice(&1u16.to_le_bytes());
                }
            }
        }
        let result = read_all(&input, &store);
        if single_flip {
            assert!(
                result.is_err(),
                "a flipped bit was accepted (round {round})"
            );
        }
        if input != good && result.is_err() {
            rejected += 1;
        }
    }
    assert!(
        rejected > 2900,
        "only {rejected} of 3000 mutations rejected"
    );
}
