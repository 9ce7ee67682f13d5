//! AS numbers and AS_PATH (RFC 4271 §4.3, RFC 5065 confederation segments) in two- and
//! four-octet form, with the RFC 6793 helpers: AS_TRANS, rebuilding the true path from AS_PATH
//! and AS4_PATH, and splitting a path for a peer that speaks two-octet AS numbers only.

use std::fmt;

use serde::Serialize;

use super::reader::Reader;
use super::EncodeError;

/// An AS number (four octets; two-octet ones are the same numbers below 65536).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct Asn(pub u32);

/// RFC 6793 §9: the two-octet stand-in for an AS number that does not fit two octets.
pub const AS_TRANS: Asn = Asn(23456);

impl Asn {
    /// The two-octet form: the number itself, or AS_TRANS when it does not fit.
    pub fn to_two_octet(self) -> u16 {
        u16::try_from(self.0).unwrap_or(AS_TRANS.0 as u16)
    }
}

impl fmt::Display for Asn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// The segment types of RFC 4271 and RFC 5065.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AsSegmentKind {
    Set,
    Sequence,
    ConfedSequence,
    ConfedSet,
}

impl AsSegmentKind {
    fn code(self) -> u8 {
        match self {
            AsSegmentKind::Set => 1,
            AsSegmentKind::Sequence => 2,
            AsSegmentKind::ConfedSequence => 3,
            AsSegmentKind::ConfedSet => 4,
        }
    }

    fn from_code(code: u8) -> Option<AsSegmentKind> {
        Some(match code {
            1 => AsSegmentKind::Set,
            2 => AsSegmentKind::Sequence,
            3 => AsSegmentKind::ConfedSequence,
            4 => AsSegmentKind::ConfedSet,
            _ => return None,
        })
    }

    fn is_confed(self) -> bool {
        matches!(
            self,
            AsSegmentKind::ConfedSequence | AsSegmentKind::ConfedSet
        )
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct AsSegment {
    pub kind: AsSegmentKind,
    pub asns: Vec<Asn>,
}

/// An AS_PATH (or AS4_PATH): segments in wire order, leftmost = most recent AS.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Default, Serialize)]
#[serde(transparent)]
pub struct AsPath {
    pub segments: Vec<AsSegment>,
}

impl AsPath {
    /// A path of one AS_SEQUENCE (empty when `asns` is).
    pub fn sequence(asns: Vec<Asn>) -> AsPath {
        if asns.is_empty() {
            return AsPath::default();
        }
        AsPath {
            segments: vec![AsSegment {
                kind: AsSegmentKind::Sequence,
                asns,
            }],
        }
    }

    /// The path length for route selection (RFC 4271 §9.1.2.2 a): each AS of a sequence counts,
    /// a set counts one, confederation segments do not count (RFC 5065 §5.3).
    pub fn route_selection_len(&self) -> usize {
        self.segments
            .iter()
            .map(|s| match s.kind {
                AsSegmentKind::Sequence => s.asns.len(),
                AsSegmentKind::Set => 1,
                AsSegmentKind::ConfedSequence | AsSegmentKind::ConfedSet => 0,
            })
            .sum()
    }

    /// The AS the route was learned from: the first AS of a leading AS_SEQUENCE.
    pub fn first_asn(&self) -> Option<Asn> {
        let first = self.segments.first()?;
        (first.kind == AsSegmentKind::Sequence)
            .then(|| first.asns.first().copied())
            .flatten()
    }

    /// Whether `asn` appears anywhere in the path (loop detection).
    pub fn contains(&self, asn: Asn) -> bool {
        self.segments.iter().any(|s| s.asns.contains(&asn))
    }

    /// The path with `asn` prepended `count` times, as an eBGP speaker sends it.
    #[must_use]
    pub fn prepend(&self, asn: Asn, count: usize) -> AsPath {
        let mut segments = self.segments.clone();
        match segments.first_mut() {
            Some(first) if first.kind == AsSegmentKind::Sequence => {
                first.asns.splice(0..0, std::iter::repeat_n(asn, count));
            }
            _ => segments.insert(
                0,
                AsSegment {
                    kind: AsSegmentKind::Sequence,
                    asns: vec![asn; count],
                },
            ),
        }
        AsPath { segments }
    }

    /// RFC 6793 §4.2.3: the true path of a route from a two-octet speaker, rebuilt from the
    /// AS_PATH (with AS_TRANS) and the AS4_PATH. When the AS4_PATH is longer than the AS_PATH it
    /// is ignored; otherwise the leading ASes of the AS_PATH that the AS4_PATH lacks are kept
    /// and the AS4_PATH follows. Confederation segments of the AS4_PATH are dropped.
    #[must_use]
    pub fn merge_as4(&self, as4_path: &AsPath) -> AsPath {
        let as4 = AsPath {
            segments: as4_path
                .segments
                .iter()
                .filter(|s| !s.kind.is_confed())
                .cloned()
                .collect(),
        };
        let path_len = self.route_selection_len();
        let as4_len = as4.route_selection_len();
        if path_len < as4_len {
            return self.clone();
        }
        let mut keep = path_len - as4_len;
        let mut segments = Vec::new();
        for segment in &self.segments {
            if keep == 0 {
                break;
            }
            match segment.kind {
                AsSegmentKind::Sequence => {
                    let take = keep.min(segment.asns.len());
                    segments.push(AsSegment {
                        kind: segment.kind,
                        asns: segment.asns[..take].to_vec(),
                    });
                    keep -= take;
                }
                AsSegmentKind::Set => {
                    segments.push(segment.clone());
                    keep -= 1;
                }
                AsSegmentKind::ConfedSequence | AsSegmentKind::ConfedSet => {
                    segments.push(segment.clone())
                }
            }
        }
        segments.extend(as4.segments);
        AsPath { segments }
    }

    /// RFC 6793 §4.2.2: what a four-octet speaker sends a two-octet peer: the AS_PATH with
    /// AS_TRANS for each AS that does not fit, and the AS4_PATH to send alongside, `None` when
    /// every AS fits (then no AS4_PATH is sent).
    pub fn to_two_octet(&self) -> (AsPath, Option<AsPath>) {
        let needs_as4 = self
            .segments
            .iter()
            .any(|s| s.asns.iter().any(|a| a.0 > u32::from(u16::MAX)));
        if !needs_as4 {
            return (self.clone(), None);
        }
        let two = AsPath {
            segments: self
                .segments
                .iter()
                .map(|s| AsSegment {
                    kind: s.kind,
                    asns: s
                        .asns
                        .iter()
                        .map(|a| Asn(u32::from(a.to_two_octet())))
                        .collect(),
                })
                .collect(),
        };
        let as4 = AsPath {
            segments: self
                .segments
                .iter()
                .filter(|s| !s.kind.is_confed())
                .cloned()
                .collect(),
        };
        (two, Some(as4))
    }

    /// Decodes an AS_PATH (`four_octet` per the session) or an AS4_PATH (always four octets).
    /// RFC 7606 §7.2: an unknown segment type, an empty segment or an overrun is malformed.
    pub(crate) fn decode(bytes: &[u8], four_octet: bool) -> Result<AsPath, String> {
        let mut reader = Reader::new(bytes);
        let mut segments = Vec::new();
        while !reader.is_empty() {
            let code = reader.u8().unwrap_or(0);
            let kind = AsSegmentKind::from_code(code)
                .ok_or_else(|| format!("AS path segment type {code} is not 1 to 4"))?;
            let count = reader
                .u8()
                .ok_or_else(|| "AS path segment length missing".to_string())?;
            if count == 0 {
                return Err("AS path segment of length 0".to_string());
            }
            let width = if four_octet { 4 } else { 2 };
            let raw = reader.take(usize::from(count) * width).ok_or_else(|| {
                format!(
                    "AS path segment of {count} AS numbers needs {} bytes, {} left",
                    usize::from(count) * width,
                    reader.remaining()
                )
            })?;
            let asns = raw
                .chunks_exact(width)
                .map(|c| match *c {
                    [a, b] => Asn(u32::from(u16::from_be_bytes([a, b]))),
                    [a, b, c, d] => Asn(u32::from_be_bytes([a, b, c, d])),
                    _ => Asn(0),
                })
                .collect();
            segments.push(AsSegment { kind, asns });
        }
        Ok(AsPath { segments })
    }

    /// Encodes the path; sequences longer than 255 are split into several segments.
    pub(crate) fn encode(&self, four_octet: bool, out: &mut Vec<u8>) -> Result<(), EncodeError> {
        for segment in &self.segments {
            if segment.asns.len() > 255 && segment.kind != AsSegmentKind::Sequence {
                return Err(EncodeError::AsSetTooLong {
                    count: segment.asns.len(),
                });
            }
            for chunk in segment.asns.chunks(255) {
                out.push(segment.kind.code());
                // chunks(255) yields at most 255 elements.
                out.push(chunk.len() as u8);
                for asn in chunk {
                    if four_octet {
                        out.extend_from_slice(&asn.0.to_be_bytes());
                    } else {
                        let two = u16::try_from(asn.0)
                            .map_err(|_| EncodeError::AsnNeedsFourOctets { asn: asn.0 })?;
                        out.extend_from_slice(&two.to_be_bytes());
                    }
                }
            }
        }
        Ok(())
    }
}

impl fmt::Display for AsPath {
    /// `65001 65002 {65003,65004} (65010)` as routers print paths.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, segment) in self.segments.iter().enumerate() {
            if i > 0 {
                f.write_str(" ")?;
            }
            let (open, sep, close) = match segment.kind {
                AsSegmentKind::Sequence => ("", " ", ""),
                AsSegmentKind::Set => ("{", ",", "}"),
                AsSegmentKind::ConfedSequence => ("(", " ", ")"),
                AsSegmentKind::ConfedSet => ("[", ",", "]"),
            };
            f.write_str(open)?;
            for (j, asn) in segment.asns.iter().enumerate() {
                if j > 0 {
                    f.write_str(sep)?;
                }
                write!(f, "{asn}")?;
            }
            f.write_str(close)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seq(asns: &[u32]) -> AsSegment {
        AsSegment {
            kind: AsSegmentKind::Sequence,
            asns: asns.iter().copied().map(Asn).collect(),
        }
    }

    #[test]
    fn two_and_four_octet_byte_vectors() {
        // AS_SEQUENCE 65001 65002, AS_SET {100}.
        let two = [2, 2, 0xfd, 0xe9, 0xfd, 0xea, 1, 1, 0, 100];
        let four = [2, 2, 0, 0, 0xfd, 0xe9, 0, 0, 0xfd, 0xea, 1, 1, 0, 0, 0, 100];
        let path = AsPath {
            segments: vec![
                seq(&[65001, 65002]),
                AsSegment {
                    kind: AsSegmentKind::Set,
                    asns: vec![Asn(100)],
                },
            ],
        };
        assert_eq!(AsPath::decode(&two, false).unwrap(), path);
        assert_eq!(AsPath::decode(&four, true).unwrap(), path);
        let mut out = Vec::new();
        path.encode(false, &mut out).unwrap();
        assert_eq!(out, two);
        out.clear();
        path.encode(true, &mut out).unwrap();
        assert_eq!(out, four);
        assert_eq!(path.to_string(), "65001 65002 {100}");
        assert_eq!(path.route_selection_len(), 3);
        assert_eq!(path.first_asn(), Some(Asn(65001)));
    }

    #[test]
    fn malformed_segments_are_named() {
        assert_eq!(
            AsPath::decode(&[5, 1, 0, 1], false).unwrap_err(),
            "AS path segment type 5 is not 1 to 4"
        );
        assert_eq!(
            AsPath::decode(&[2, 0], false).unwrap_err(),
            "AS path segment of length 0"
        );
        assert_eq!(
            AsPath::decode(&[2, 2, 0, 1, 0], false).unwrap_err(),
            "AS path segment of 2 AS numbers needs 4 bytes, 3 left"
        );
        assert_eq!(
            AsPath::decode(&[2], true).unwrap_err(),
            "AS path segment length missing"
        );
    }

    #[test]
    fn as_trans_round_trip_through_a_two_octet_speaker() {
        // 65001 4200000001 65002: a two-octet peer sees 65001 23456 65002 plus the AS4_PATH.
        let path = AsPath::sequence(vec![Asn(65001), Asn(4_200_000_001), Asn(65002)]);
        let (two, as4) = path.to_two_octet();
        assert_eq!(
            two,
            AsPath::sequence(vec![Asn(65001), AS_TRANS, Asn(65002)])
        );
        let as4 = as4.unwrap();
        assert!(path.encode(false, &mut Vec::new()).is_err());
        // A two-octet speaker in between prepended its own AS 65100 to AS_PATH only.
        let received = two.prepend(Asn(65100), 1);
        let merged = received.merge_as4(&as4);
        assert_eq!(
            merged,
            AsPath {
                segments: vec![seq(&[65100]), seq(&[65001, 4_200_000_001, 65002])]
            }
        );
        assert_eq!(merged.route_selection_len(), 4);
        // An AS4_PATH longer than the AS_PATH is ignored.
        let short = AsPath::sequence(vec![Asn(65001)]);
        assert_eq!(short.merge_as4(&as4), short);
        // Nothing to translate: no AS4_PATH.
        assert_eq!(short.to_two_octet(), (short.clone(), None));
    }

    #[test]
    fn long_sequences_split_into_segments_of_255() {
        let path = AsPath::sequence((0..300).map(Asn).collect());
        let mut out = Vec::new();
        path.encode(true, &mut out).unwrap();
        assert_eq!(out.len(), 2 + 255 * 4 + 2 + 45 * 4);
        let decoded = AsPath::decode(&out, true).unwrap();
        assert_eq!(decoded.segments.len(), 2);
        assert_eq!(decoded.route_selection_len(), 300);
    }
}
