//! Full config paths such as `bgp.neighbors[0].remote_as`: parsing them and looking up the
//! value they name in a set of sections. Plugins use the same form for
//! [`FieldError`](crate::protocol::FieldError) paths.

use serde_json::Value;

use crate::protocol::Sections;

/// One step of a config path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Segment {
    Key(String),
    Index(usize),
}

/// Why a config path could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    #[error("config path {0:?} is empty")]
    Empty(String),
    #[error("config path {path:?} is not valid at byte {offset}")]
    Invalid { path: String, offset: usize },
}

/// Parses `a.b[0].c` into `[Key(a), Key(b), Index(0), Key(c)]`. The first segment is a key
/// (the section name).
pub fn parse(path: &str) -> Result<Vec<Segment>, PathError> {
    if path.is_empty() {
        return Err(PathError::Empty(path.to_string()));
    }
    let invalid = |offset| PathError::Invalid {
        path: path.to_string(),
        offset,
    };
    let bytes = path.as_bytes();
    let mut segments = Vec::new();
    let mut i = 0;
    // Whether the next segment must be a key (at the start and after a dot).
    let mut expect_key = true;
    while i < bytes.len() {
        match bytes[i] {
            b'[' => {
                if expect_key {
                    return Err(invalid(i));
                }
                let close = path[i..].find(']').map(|o| i + o).ok_or(invalid(i))?;
                let index = path[i + 1..close].parse().map_err(|_| invalid(i + 1))?;
                segments.push(Segment::Index(index));
                i = close + 1;
            }
            b'.' if !expect_key => {
                expect_key = true;
                i += 1;
            }
            b'.' | b']' => return Err(invalid(i)),
            _ if expect_key => {
                // Keys are TOML bare keys: letters, digits, `_` and `-`.
                let end = path[i..]
                    .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '-'))
                    .map(|o| i + o)
                    .unwrap_or(path.len());
                if end == i {
                    return Err(invalid(i));
                }
                segments.push(Segment::Key(path[i..end].to_string()));
                expect_key = false;
                i = end;
            }
            _ => return Err(invalid(i)),
        }
    }
    if expect_key {
        return Err(invalid(path.len()));
    }
    Ok(segments)
}

/// The value at `path` in `sections`, or `None` if nothing is there.
pub fn lookup<'a>(sections: &'a Sections, path: &str) -> Result<Option<&'a Value>, PathError> {
    let segments = parse(path)?;
    let (first, rest) = segments
        .split_first()
        .ok_or(PathError::Empty(path.to_string()))?;
    let Segment::Key(section) = first else {
        return Err(PathError::Invalid {
            path: path.to_string(),
            offset: 0,
        });
    };
    let mut value = match sections.get(section) {
        Some(value) => value,
        None => return Ok(None),
    };
    for segment in rest {
        let next = match segment {
            Segment::Key(key) => value.get(key.as_str()),
            Segment::Index(index) => value.get(*index),
        };
        match next {
            Some(next) => value = next,
            None => return Ok(None),
        }
    }
    Ok(Some(value))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn parses_keys_and_indexes() {
        assert_eq!(
            parse("bgp.neighbors[10].remote_as").unwrap(),
            vec![
                Segment::Key("bgp".into()),
                Segment::Key("neighbors".into()),
                Segment::Index(10),
                Segment::Key("remote_as".into()),
            ]
        );
    }

    #[test]
    fn refuses_malformed_paths() {
        for bad in [
            "", "[0]", "a..b", "a.", "a[x]", "a[0", "a]b", "a[0]b", "a b",
        ] {
            assert!(parse(bad).is_err(), "{bad:?} should not parse");
        }
        assert_eq!(
            parse("a..b").unwrap_err().to_string(),
            "config path \"a..b\" is not valid at byte 2"
        );
    }

    #[test]
    fn looks_up_values() {
        let mut sections = Sections::new();
        sections.insert(
            "bgp".into(),
            json!({"neighbors": [{"remote_as": 65001}, {"description": "lab"}]}),
        );
        sections.insert("tenants".into(), Value::Null);
        assert_eq!(
            lookup(&sections, "bgp.neighbors[0].remote_as").unwrap(),
            Some(&json!(65001))
        );
        assert_eq!(
            lookup(&sections, "bgp.neighbors[1].description").unwrap(),
            Some(&json!("lab"))
        );
        assert_eq!(lookup(&sections, "bgp.neighbors[2]").unwrap(), None);
        assert_eq!(lookup(&sections, "tenants[0].name").unwrap(), None);
        assert_eq!(lookup(&sections, "wireguard").unwrap(), None);
    }
}
