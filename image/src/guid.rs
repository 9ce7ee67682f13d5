//! GUIDs as GPT and filesystems use them: parsing, printing, the mixed-endian on-disk form,
//! and the deterministic derivation that makes two builds with the same inputs identical.

use std::fmt;

use sha2::{Digest, Sha256};

/// A GUID, stored in the byte order of its text form (RFC 4122).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Guid([u8; 16]);

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum GuidError {
    #[error("malformed guid {0:?}: expected 8-4-4-4-12 hexadecimal digits")]
    Malformed(String),
}

impl Guid {
    pub const ZERO: Guid = Guid([0; 16]);

    pub fn from_bytes(bytes: [u8; 16]) -> Guid {
        Guid(bytes)
    }

    pub fn as_bytes(&self) -> &[u8; 16] {
        &self.0
    }

    pub fn parse(text: &str) -> Result<Guid, GuidError> {
        let malformed = || GuidError::Malformed(text.to_string());
        let groups: Vec<&str> = text.split('-').collect();
        let lengths: Vec<usize> = groups.iter().map(|g| g.len()).collect();
        if lengths != [8, 4, 4, 4, 12] {
            return Err(malformed());
        }
        let digits: String = groups.concat();
        let decoded = hex::decode(&digits).map_err(|_| malformed())?;
        let bytes: [u8; 16] = decoded.try_into().map_err(|_| malformed())?;
        Ok(Guid(bytes))
    }

    /// A version-4-shaped GUID derived from `parts` by SHA-256, so the same build inputs always
    /// give the same disk, partition and filesystem identifiers.
    pub fn derive(parts: &[&str]) -> Guid {
        let mut hasher = Sha256::new();
        hasher.update(b"ztos-guid");
        for part in parts {
            hasher.update([0u8]);
            hasher.update(part.as_bytes());
        }
        let digest = hasher.finalize();
        let mut bytes = [0u8; 16];
        bytes.copy_from_slice(&digest[..16]);
        bytes[6] = (bytes[6] & 0x0f) | 0x40;
        bytes[8] = (bytes[8] & 0x3f) | 0x80;
        Guid(bytes)
    }

    /// The on-disk form GPT uses: the first three fields little-endian, the rest as written.
    pub fn to_mixed_endian(&self) -> [u8; 16] {
        let b = self.0;
        [
            b[3], b[2], b[1], b[0], b[5], b[4], b[7], b[6], b[8], b[9], b[10], b[11], b[12], b[13],
            b[14], b[15],
        ]
    }

    /// Inverse of [`Guid::to_mixed_endian`].
    pub fn from_mixed_endian(b: [u8; 16]) -> Guid {
        Guid([
            b[3], b[2], b[1], b[0], b[5], b[4], b[7], b[6], b[8], b[9], b[10], b[11], b[12], b[13],
            b[14], b[15],
        ])
    }
}

impl fmt::Display for Guid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let h = hex::encode(self.0);
        write!(
            f,
            "{}-{}-{}-{}-{}",
            &h[0..8],
            &h[8..12],
            &h[12..16],
            &h[16..20],
            &h[20..32]
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_prints_the_esp_type() {
        let esp = Guid::parse("c12a7328-f81f-11d2-ba4b-00a0c93ec93b").unwrap();
        assert_eq!(esp.to_string(), "c12a7328-f81f-11d2-ba4b-00a0c93ec93b");
        // The ESP type GUID as it appears on disk in every GPT.
        assert_eq!(
            esp.to_mixed_endian(),
            [
                0x28, 0x73, 0x2a, 0xc1, 0x1f, 0xf8, 0xd2, 0x11, 0xba, 0x4b, 0x00, 0xa0, 0xc9, 0x3e,
                0xc9, 0x3b
            ]
        );
        assert_eq!(Guid::from_mixed_endian(esp.to_mixed_endian()), esp);
    }

    #[test]
    fn rejects_malformed_text_naming_it() {
        for bad in [
            "",
            "c12a7328f81f11d2ba4b00a0c93ec93b",
            "g12a7328-f81f-11d2-ba4b-00a0c93ec93b",
        ] {
            let err = Guid::parse(bad).unwrap_err();
            assert!(err.to_string().contains(&format!("{bad:?}")), "{err}");
        }
    }

    #[test]
    fn derivation_is_deterministic_distinct_and_v4_shaped() {
        let a = Guid::derive(&["0.1.0", "1700000000", "ztos-root-a"]);
        assert_eq!(a, Guid::derive(&["0.1.0", "1700000000", "ztos-root-a"]));
        assert_ne!(a, Guid::derive(&["0.1.0", "1700000000", "ztos-root-b"]));
        assert_ne!(a, Guid::derive(&["0.1.0", "1700000001", "ztos-root-a"]));
        // Part boundaries matter: ("ab", "c") and ("a", "bc") differ.
        assert_ne!(Guid::derive(&["ab", "c"]), Guid::derive(&["a", "bc"]));
        let text = a.to_string();
        assert_eq!(&text[14..15], "4");
        assert!(matches!(&text[19..20], "8" | "9" | "a" | "b"), "{text}");
    }
}
