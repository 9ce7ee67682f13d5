//! `ztos bgp decode HEX`: one BGP message captured as hex (from tcpdump, Wireshark or a peer's
//! log), with or without the 16-byte marker, decoded into a value that serializes to the JSON
//! documented in docs/bgp-codec.md.

use serde::Serializer;

use crate::{decode_message, Context, DecodeError, Received, HEADER_LEN};

/// Why `ztos bgp decode` could not decode its argument.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HexDecodeError {
    #[error("invalid hex character {character:?} at position {position}")]
    InvalidCharacter { character: char, position: usize },
    #[error("odd number of hex digits ({digits}); every byte needs two")]
    OddDigits { digits: usize },
    #[error("no bytes given")]
    Empty,
    /// The bytes are a message the session could not survive; the error carries the
    /// NOTIFICATION a speaker would send.
    #[error("{0}")]
    Bgp(#[from] DecodeError),
}

/// Decodes one message under [`Context::MODERN`] (four-octet AS numbers, extended messages, no
/// add-path), which is what sessions between current implementations negotiate.
pub fn decode_hex(text: &str) -> Result<Received, HexDecodeError> {
    decode_hex_with(text, &Context::MODERN)
}

/// Decodes one message given as hex. Whitespace, `:` and `-` between digits are ignored, as is
/// a leading `0x`; the 16-byte all-ones marker may be left out.
pub fn decode_hex_with(text: &str, context: &Context) -> Result<Received, HexDecodeError> {
    let text = text.trim();
    let text = text
        .strip_prefix("0x")
        .or_else(|| text.strip_prefix("0X"))
        .unwrap_or(text);
    let mut bytes = Vec::with_capacity(text.len() / 2 + 16);
    let mut high: Option<u8> = None;
    let mut digits = 0usize;
    for (position, character) in text.chars().enumerate() {
        if character.is_whitespace() || character == ':' || character == '-' {
            continue;
        }
        let Some(value) = character.to_digit(16) else {
            return Err(HexDecodeError::InvalidCharacter {
                character,
                position,
            });
        };
        digits += 1;
        // to_digit(16) is below 16, so the cast is exact.
        let value = value as u8;
        match high.take() {
            None => high = Some(value),
            Some(h) => bytes.push(h << 4 | value),
        }
    }
    if high.is_some() {
        return Err(HexDecodeError::OddDigits { digits });
    }
    if bytes.is_empty() {
        return Err(HexDecodeError::Empty);
    }
    let has_marker = bytes.len() >= HEADER_LEN && bytes[..16].iter().all(|&b| b == 0xff);
    if !has_marker {
        let mut with_marker = vec![0xff; 16];
        with_marker.extend_from_slice(&bytes);
        bytes = with_marker;
    }
    Ok(decode_message(&bytes, context)?)
}

/// Lowercase hex without separators.
pub(crate) fn to_hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for &b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 0xf)]));
    }
    out
}

/// Serializes bytes as a lowercase hex string.
pub(crate) fn serialize_hex<S: Serializer, T: AsRef<[u8]>>(
    bytes: &T,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(&to_hex(bytes.as_ref()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Message;

    #[test]
    fn keepalive_with_and_without_marker_and_separators() {
        let with_marker = "ffffffffffffffffffffffffffffffff001304";
        let without = "00 13 04";
        let colons = "FF:FF:FF:FF:FF:FF:FF:FF:FF:FF:FF:FF:FF:FF:FF:FF:00:13:04";
        for text in [with_marker, without, colons, "0x001304"] {
            assert_eq!(
                decode_hex(text).unwrap(),
                Received::Message(Message::Keepalive),
                "{text}"
            );
        }
    }

    #[test]
    fn bad_hex_names_the_problem() {
        assert_eq!(
            decode_hex("0013zz").unwrap_err(),
            HexDecodeError::InvalidCharacter {
                character: 'z',
                position: 4
            }
        );
        assert_eq!(
            decode_hex("00130").unwrap_err(),
            HexDecodeError::OddDigits { digits: 5 }
        );
        assert_eq!(decode_hex("  ").unwrap_err(), HexDecodeError::Empty);
        // A keepalive claiming 20 bytes: Bad Message Length.
        let err = decode_hex("001404").unwrap_err();
        let HexDecodeError::Bgp(err) = err else {
            panic!("expected a BGP error, got {err:?}")
        };
        assert_eq!((err.notification.code, err.notification.subcode), (1, 2));
    }

    #[test]
    fn json_of_a_keepalive_is_stable() {
        let json = serde_json::to_value(decode_hex("001304").unwrap()).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"outcome": "accepted", "type": "keepalive"})
        );
    }
}
