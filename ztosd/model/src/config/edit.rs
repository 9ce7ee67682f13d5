//! Edits of the configuration text at a key path (`bgp.neighbors[0].remote_as`) that keep
//! the operator's comments and formatting; used by `ztos set` / `ztos delete`.

use toml_edit::{ArrayOfTables, DocumentMut, InlineTable, Item, Table, Value};

use super::parse::line_column;
use super::{parse, ConfigError, ConfigErrors};

/// Sets the value at `path` and returns the edited text, which must pass [`parse`].
///
/// `value` is read as a TOML value (`65000`, `true`, `["10.0.0.1/24"]`,
/// `{ address = "10.1.1.1", remote_as = 64512 }`); text that is not a TOML value is taken
/// as a string (`leaf1`). Missing tables on the way are created, and an index one past the
/// end of an array appends to it.
pub fn set_value(text: &str, path: &str, value: &str) -> Result<String, ConfigErrors> {
    let segments = parse_path(path)?;
    let mut document = parse_document(text)?;
    let value = parse_value(value);
    let (last, parents) = segments
        .split_last()
        .expect("parse_path never returns an empty path");
    let parent = walk(&mut document, parents, Some(last), value.is_inline_table())?;
    set_in(parent, last, value)?;
    let edited = document.to_string();
    parse(&edited)?;
    Ok(edited)
}

/// Removes the key or array entry at `path` and returns the edited text, which must pass
/// [`parse`].
pub fn delete_value(text: &str, path: &str) -> Result<String, ConfigErrors> {
    let segments = parse_path(path)?;
    let mut document = parse_document(text)?;
    let (last, parents) = segments
        .split_last()
        .expect("parse_path never returns an empty path");
    let parent = walk(&mut document, parents, None, false)?;
    delete_in(parent, last)?;
    let edited = document.to_string();
    parse(&edited)?;
    Ok(edited)
}

/// One step of a key path: a table key or an array index.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    Key(String),
    Index(usize),
}

/// A segment together with the path that leads to it, for error messages.
#[derive(Debug)]
struct Step {
    segment: Segment,
    /// The path up to and including this segment, such as `bgp.neighbors[1]`.
    path: String,
}

fn parse_path(path: &str) -> Result<Vec<Step>, ConfigErrors> {
    let invalid = |why: &str| ConfigErrors::single(path, format!("invalid key path: {why}"));
    let mut steps = Vec::new();
    let mut rest = path;
    let mut so_far = String::new();
    loop {
        let key_len = rest
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '-'))
            .unwrap_or(rest.len());
        if key_len == 0 {
            return Err(invalid("expected a key name"));
        }
        let (key, after) = rest.split_at(key_len);
        if !so_far.is_empty() {
            so_far.push('.');
        }
        so_far.push_str(key);
        steps.push(Step {
            segment: Segment::Key(key.to_string()),
            path: so_far.clone(),
        });
        rest = after;
        while let Some(after_bracket) = rest.strip_prefix('[') {
            let Some((index, after)) = after_bracket.split_once(']') else {
                return Err(invalid("missing ']'"));
            };
            let index: usize = index
                .parse()
                .map_err(|_| invalid(&format!("{index:?} is not an array index")))?;
            so_far.push_str(&format!("[{index}]"));
            steps.push(Step {
                segment: Segment::Index(index),
                path: so_far.clone(),
            });
            rest = after;
        }
        if rest.is_empty() {
            return Ok(steps);
        }
        rest = rest
            .strip_prefix('.')
            .ok_or_else(|| invalid(&format!("unexpected {:?}", &rest[..1])))?;
    }
}

fn parse_document(text: &str) -> Result<DocumentMut, ConfigErrors> {
    text.parse::<DocumentMut>().map_err(|error| {
        let message = error.message().trim_end().to_string();
        match error.span() {
            Some(span) => {
                let (line, column) = line_column(text, span.start);
                ConfigErrors::single(
                    "",
                    format!("invalid TOML at line {line}, column {column}: {message}"),
                )
            }
            None => ConfigErrors::single("", format!("invalid TOML: {message}")),
        }
    })
}

/// A TOML value, or the text as a string when it is not one (`leaf1`, `10.0.0.1`).
fn parse_value(text: &str) -> Value {
    text.trim()
        .parse::<Value>()
        .unwrap_or_else(|_| Value::from(text))
}

/// A place in the document that can hold children.
enum Node<'a> {
    Table(&'a mut Table),
    ArrayOfTables(&'a mut ArrayOfTables),
    Value(&'a mut Value),
}

impl<'a> Node<'a> {
    fn from_item(item: &'a mut Item, step: &Step) -> Result<Node<'a>, ConfigError> {
        match item {
            Item::Table(table) => Ok(Node::Table(table)),
            Item::ArrayOfTables(array) => Ok(Node::ArrayOfTables(array)),
            Item::Value(value) => Ok(Node::Value(value)),
            Item::None => Err(ConfigError::new(&step.path, "no such key")),
        }
    }

    /// What this node is, for "is a ..., not a table" errors.
    fn kind(&self) -> &'static str {
        match self {
            Node::Table(_) => "a table",
            Node::ArrayOfTables(_) => "an array of tables",
            Node::Value(value) => match value {
                Value::String(_) => "a string",
                Value::Integer(_) => "an integer",
                Value::Float(_) => "a float",
                Value::Boolean(_) => "a boolean",
                Value::Datetime(_) => "a date-time",
                Value::Array(_) => "an array",
                Value::InlineTable(_) => "a table",
            },
        }
    }
}

/// Follows `steps` from the root. With `create` (the segment after `steps`), missing tables
/// and arrays are created and an index one past the end appends an empty table. A missing
/// array whose index is the last segment holds values unless `value_is_table`.
fn walk<'a>(
    document: &'a mut DocumentMut,
    steps: &[Step],
    create: Option<&Step>,
    value_is_table: bool,
) -> Result<Node<'a>, ConfigErrors> {
    let mut node = Node::Table(document.as_table_mut());
    let mut parent_path = String::new();
    for (i, step) in steps.iter().enumerate() {
        let next = create.map(|last| steps.get(i + 1).unwrap_or(last));
        let array_of_values = i + 1 == steps.len() && !value_is_table;
        node = child(node, step, next, array_of_values, &parent_path)?;
        parent_path.clone_from(&step.path);
    }
    Ok(node)
}

fn child<'a>(
    node: Node<'a>,
    step: &Step,
    create_for: Option<&Step>,
    array_of_values: bool,
    parent_path: &str,
) -> Result<Node<'a>, ConfigError> {
    let not_container = |node: &Node<'_>| {
        let what = match step.segment {
            Segment::Key(_) => "a table",
            Segment::Index(_) => "an array",
        };
        let parent = if parent_path.is_empty() {
            "the document"
        } else {
            parent_path
        };
        ConfigError::new(
            &step.path,
            format!("{parent} is {}, not {what}", node.kind()),
        )
    };
    let next_is_index = matches!(create_for.map(|s| &s.segment), Some(Segment::Index(_)));
    match (node, &step.segment) {
        (Node::Table(table), Segment::Key(key)) => {
            if !table.contains_key(key) {
                if create_for.is_none() {
                    return Err(ConfigError::new(&step.path, "no such key"));
                }
                let placeholder = if next_is_index && array_of_values {
                    Item::Value(Value::Array(toml_edit::Array::new()))
                } else if next_is_index {
                    Item::ArrayOfTables(ArrayOfTables::new())
                } else {
                    let mut table = Table::new();
                    // An implicit table only gets a header once it holds values itself.
                    table.set_implicit(true);
                    Item::Table(table)
                };
                table.insert(key, placeholder);
            }
            let item = table
                .get_mut(key)
                .expect("key was just checked or inserted");
            Node::from_item(item, step)
        }
        (Node::ArrayOfTables(array), Segment::Index(index)) => {
            let len = array.len();
            if *index == len && create_for.is_some() {
                array.push(Table::new());
            }
            match array.get_mut(*index) {
                Some(table) => Ok(Node::Table(table)),
                None => Err(out_of_range(step, *index, len, create_for.is_some())),
            }
        }
        (Node::Value(Value::InlineTable(table)), Segment::Key(key)) => {
            if !table.contains_key(key) {
                if create_for.is_none() {
                    return Err(ConfigError::new(&step.path, "no such key"));
                }
                let placeholder = if next_is_index {
                    Value::Array(toml_edit::Array::new())
                } else {
                    Value::InlineTable(InlineTable::new())
                };
                table.insert(key, placeholder);
            }
            let value = table
                .get_mut(key)
                .expect("key was just checked or inserted");
            Ok(Node::Value(value))
        }
        (Node::Value(Value::Array(array)), Segment::Index(index)) => {
            let len = array.len();
            if *index == len && create_for.is_some() {
                if next_is_index {
                    array.push(toml_edit::Array::new());
                } else {
                    array.push(InlineTable::new());
                }
            }
            match array.get_mut(*index) {
                Some(value) => Ok(Node::Value(value)),
                None => Err(out_of_range(step, *index, len, create_for.is_some())),
            }
        }
        (node, _) => Err(not_container(&node)),
    }
}

/// `index` is past the end; `can_append` says whether index `len` would have appended.
fn out_of_range(step: &Step, index: usize, len: usize, can_append: bool) -> ConfigError {
    let hint = if can_append {
        format!(" (the array has {len} entries; use index {len} to append)")
    } else {
        format!(" (the array has {len} entries)")
    };
    ConfigError::new(&step.path, format!("index {index} is out of range{hint}"))
}

fn set_in(parent: Node<'_>, last: &Step, mut value: Value) -> Result<(), ConfigErrors> {
    match (parent, &last.segment) {
        (Node::Table(table), Segment::Key(key)) => {
            let new_item = match (table.get(key), value) {
                // Keep the shape the operator chose: a `[table]` stays a table and a
                // `[[array]]` stays an array of tables.
                (Some(Item::Table(old)), Value::InlineTable(inline)) => {
                    let mut new = inline.into_table();
                    *new.decor_mut() = old.decor().clone();
                    if let Some(position) = old.position() {
                        new.set_position(position);
                    }
                    Item::Table(new)
                }
                (Some(Item::ArrayOfTables(_)), Value::Array(array))
                    if array.iter().all(Value::is_inline_table) =>
                {
                    let mut tables = ArrayOfTables::new();
                    for entry in array {
                        if let Value::InlineTable(inline) = entry {
                            tables.push(inline.into_table());
                        }
                    }
                    Item::ArrayOfTables(tables)
                }
                (Some(Item::Value(old)), mut value) => {
                    *value.decor_mut() = old.decor().clone();
                    Item::Value(value)
                }
                (_, value) => Item::Value(value),
            };
            table.insert(key, new_item);
            Ok(())
        }
        (Node::ArrayOfTables(array), Segment::Index(index)) => {
            let Value::InlineTable(inline) = value else {
                return Err(ConfigErrors::single(
                    &last.path,
                    "an entry of an array of tables must be a table such as { name = \"x\" }",
                ));
            };
            let len = array.len();
            let table = inline.into_table();
            match array.get_mut(*index) {
                Some(old) => {
                    let decor = old.decor().clone();
                    *old = table;
                    *old.decor_mut() = decor;
                }
                None if *index == len => array.push(table),
                None => return Err(out_of_range(last, *index, len, true).into()),
            }
            Ok(())
        }
        (Node::Value(Value::InlineTable(table)), Segment::Key(key)) => {
            if let Some(old) = table.get(key) {
                *value.decor_mut() = old.decor().clone();
                table.insert(key, value);
            } else {
                // The last value's spacing was before the closing brace; re-space the
                // one-line table so the new key does not inherit it.
                table.insert(key, value);
                table.fmt();
            }
            Ok(())
        }
        (Node::Value(Value::Array(array)), Segment::Index(index)) => {
            let len = array.len();
            if *index < len {
                *value.decor_mut() = array.get(*index).expect("index < len").decor().clone();
                array.replace_formatted(*index, value);
            } else if *index == len {
                array.push(value);
            } else {
                return Err(out_of_range(last, *index, len, true).into());
            }
            Ok(())
        }
        (node, segment) => {
            let what = match segment {
                Segment::Key(_) => "a table",
                Segment::Index(_) => "an array",
            };
            let parent = last
                .path
                .rsplit_once(['.', '['])
                .map_or("the document", |(p, _)| p);
            let parent = if parent.is_empty() {
                "the document"
            } else {
                parent
            };
            Err(ConfigErrors::single(
                &last.path,
                format!("{parent} is {}, not {what}", node.kind()),
            ))
        }
    }
}

fn delete_in(parent: Node<'_>, last: &Step) -> Result<(), ConfigErrors> {
    let removed = match (parent, &last.segment) {
        (Node::Table(table), Segment::Key(key)) => table.remove(key).is_some(),
        (Node::Value(Value::InlineTable(table)), Segment::Key(key)) => {
            let removed = table.remove(key).is_some();
            // The removed value may have held the spacing before the closing brace.
            table.fmt();
            removed
        }
        (Node::ArrayOfTables(array), Segment::Index(index)) => {
            if *index >= array.len() {
                return Err(out_of_range(last, *index, array.len(), false).into());
            }
            array.remove(*index);
            true
        }
        (Node::Value(Value::Array(array)), Segment::Index(index)) => {
            if *index >= array.len() {
                return Err(out_of_range(last, *index, array.len(), false).into());
            }
            array.remove(*index);
            true
        }
        (node, _) => {
            return Err(ConfigErrors::single(
                &last.path,
                format!("cannot delete from {}", node.kind()),
            ))
        }
    };
    if removed {
        Ok(())
    } else {
        Err(ConfigErrors::single(&last.path, "no such key"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Asn;

    const BASE: &str = r#"# Leaf 1.
[system]
hostname = "leaf0" # set by the installer

[[interfaces]]
name = "eth0"

# Uplink to the spine.
[[interfaces]]
name = "eth1"
mtu = 1500

[bgp]
local_as = 65001 # our AS

[[bgp.neighbors]]
address = "10.0.0.1"
remote_as = 65000
"#;

    #[test]
    fn set_keeps_comments_and_formatting() {
        let edited = set_value(BASE, "system.hostname", "leaf1").unwrap();
        assert_eq!(
            edited,
            BASE.replace(
                "hostname = \"leaf0\" # set by",
                "hostname = \"leaf1\" # set by"
            )
        );
        let edited = set_value(BASE, "bgp.local_as", "65010").unwrap();
        assert_eq!(edited, BASE.replace("65001 # our AS", "65010 # our AS"));
        let edited = set_value(BASE, "interfaces[1].mtu", "9000").unwrap();
        assert_eq!(edited, BASE.replace("mtu = 1500", "mtu = 9000"));
    }

    #[test]
    fn set_parses_values_and_falls_back_to_strings() {
        let edited = set_value(BASE, "interfaces[0].addresses", r#"["10.0.0.2/31"]"#).unwrap();
        let config = parse(&edited).unwrap();
        assert_eq!(config.interfaces[0].addresses[0].to_string(), "10.0.0.2/31");
        let edited = set_value(BASE, "interfaces[0].enabled", "false").unwrap();
        assert!(!parse(&edited).unwrap().interfaces[0].enabled);
        let edited = set_value(BASE, "interfaces[0].description", "to spine 1").unwrap();
        assert!(edited.contains("description = \"to spine 1\""), "{edited}");
    }

    #[test]
    fn set_appends_one_past_the_end() {
        let edited = set_value(
            BASE,
            "bgp.neighbors[1]",
            "{ address = \"10.1.1.1\", remote_as = 64512 }",
        )
        .unwrap();
        let config = parse(&edited).unwrap();
        let neighbors = &config.bgp.unwrap().neighbors;
        assert_eq!(neighbors.len(), 2);
        assert_eq!(neighbors[1].remote_as, Asn::new(64512).unwrap());
        assert!(
            edited.ends_with("[[bgp.neighbors]]\naddress = \"10.1.1.1\"\nremote_as = 64512\n"),
            "{edited}"
        );

        let edited = set_value(BASE, "interfaces[2].name", "eth2").unwrap();
        assert_eq!(parse(&edited).unwrap().interfaces[2].name, "eth2");

        let error = set_value(BASE, "interfaces[5].name", "eth5").unwrap_err();
        assert_eq!(
            error.to_string(),
            "interfaces[5]: index 5 is out of range (the array has 2 entries; use index 2 to append)"
        );
    }

    #[test]
    fn set_inside_inline_tables_and_arrays() {
        let text = "[[bridges]]\nname = \"br10\"\n[[bridges]]\nname = \"br11\"\n\
            [[vxlan]]\nvni = 10\nlocal_vtep = \"10.0.0.1\"\nbridge = \"br10\"\n\
            [[vxlan]]\nvni = 11\nlocal_vtep = \"10.0.0.1\"\nbridge = \"br11\"\n\
            [[tenants]]\nname = \"red\"\nvrf_table = 10\nnetworks = [{ vni = 10 }] # red nets\n";
        let edited = set_value(text, "tenants[0].networks[0].gateway", "10.10.0.1/24").unwrap();
        assert!(
            edited.contains("networks = [{ vni = 10, gateway = \"10.10.0.1/24\" }] # red nets"),
            "{edited}"
        );
        let edited = set_value(&edited, "tenants[0].networks[1]", "{ vni = 11 }").unwrap();
        assert_eq!(parse(&edited).unwrap().tenants[0].networks.len(), 2);
        let edited = delete_value(&edited, "tenants[0].networks[0].gateway").unwrap();
        assert!(
            edited.contains("networks = [{ vni = 10 }, { vni = 11 }] # red nets"),
            "{edited}"
        );
        let edited = set_value(&edited, "vxlan[0].remote_vteps[0]", "10.0.0.2").unwrap();
        let edited = set_value(&edited, "vxlan[0].remote_vteps[1]", "10.0.0.3").unwrap();
        let edited = set_value(&edited, "vxlan[0].remote_vteps[0]", "10.0.0.4").unwrap();
        let remotes = &parse(&edited).unwrap().vxlan[0].remote_vteps;
        assert_eq!(remotes.len(), 2);
        assert_eq!(remotes[0].to_string(), "10.0.0.4");
    }

    #[test]
    fn set_creates_missing_tables() {
        let edited = set_value("", "bgp.local_as", "65000").unwrap();
        assert_eq!(edited, "[bgp]\nlocal_as = 65000\n");
        let edited = set_value(&edited, "bgp.neighbors[0].address", "10.0.0.9").unwrap_err();
        // A neighbor without remote_as does not validate; the error names the entry.
        assert_eq!(
            edited.to_string(),
            "bgp.neighbors[0]: missing field `remote_as`"
        );
        let edited = set_value("", "gpu_offload.batch_size", "512").unwrap();
        assert_eq!(parse(&edited).unwrap().gpu_offload.unwrap().batch_size, 512);
        let edited = set_value(
            "",
            "wireguard.interfaces[0]",
            "{ name = \"wg0\", listen_port = 51820 }",
        )
        .unwrap();
        assert_eq!(
            parse(&edited).unwrap().wireguard.unwrap().interfaces[0].name,
            "wg0"
        );
    }

    #[test]
    fn set_returns_validation_errors() {
        let error = set_value(BASE, "bgp.neighbors[0].remote_as", "0").unwrap_err();
        assert_eq!(
            error.to_string(),
            "bgp.neighbors[0].remote_as: 0 is not a valid AS number"
        );
        let error = set_value(BASE, "interfaces[1].name", "eth0").unwrap_err();
        assert_eq!(
            error.to_string(),
            "interfaces[1].name: duplicate device name \"eth0\" (also used by interfaces[0].name)"
        );
        let error = set_value(BASE, "system.hostnam", "x").unwrap_err();
        assert!(
            error.to_string().contains("unknown field `hostnam`"),
            "{error}"
        );
    }

    #[test]
    fn set_rejects_paths_through_values() {
        let error = set_value(BASE, "system.hostname.x", "1").unwrap_err();
        assert_eq!(
            error.to_string(),
            "system.hostname.x: system.hostname is a string, not a table"
        );
        let error = set_value(BASE, "interfaces.name", "1").unwrap_err();
        assert_eq!(
            error.to_string(),
            "interfaces.name: interfaces is an array of tables, not a table"
        );
        let error = set_value(BASE, "bgp[0]", "1").unwrap_err();
        assert_eq!(error.to_string(), "bgp[0]: bgp is a table, not an array");
    }

    #[test]
    fn bad_paths_and_text_are_errors() {
        for path in ["", ".a", "a..b", "a[x]", "a[1", "a]"] {
            let error = set_value(BASE, path, "1").unwrap_err();
            assert_eq!(error.0[0].path, path);
            assert!(
                error.0[0].message.starts_with("invalid key path"),
                "{error}"
            );
        }
        let error = set_value("[system\n", "system.hostname", "x").unwrap_err();
        assert!(
            error.to_string().starts_with("invalid TOML at line 1"),
            "{error}"
        );
    }

    #[test]
    fn delete_keeps_the_rest() {
        let edited = delete_value(BASE, "interfaces[1].mtu").unwrap();
        assert_eq!(edited, BASE.replace("mtu = 1500\n", ""));
        let edited = delete_value(BASE, "bgp.neighbors[0]").unwrap();
        assert!(parse(&edited).unwrap().bgp.unwrap().neighbors.is_empty());
        assert!(edited.contains("local_as = 65001 # our AS"), "{edited}");
        let edited = delete_value(BASE, "bgp").unwrap();
        assert!(parse(&edited).unwrap().bgp.is_none());
        assert!(edited.starts_with("# Leaf 1.\n[system]\n"), "{edited}");
        let edited = delete_value(BASE, "interfaces[0]").unwrap();
        let config = parse(&edited).unwrap();
        assert_eq!(config.interfaces.len(), 1);
        assert_eq!(config.interfaces[0].name, "eth1");
    }

    #[test]
    fn delete_errors_name_the_path() {
        let error = delete_value(BASE, "system.nothing").unwrap_err();
        assert_eq!(error.to_string(), "system.nothing: no such key");
        let error = delete_value(BASE, "policy.rules[0]").unwrap_err();
        assert_eq!(error.to_string(), "policy: no such key");
        let error = delete_value(BASE, "interfaces[7]").unwrap_err();
        assert_eq!(
            error.to_string(),
            "interfaces[7]: index 7 is out of range (the array has 2 entries)"
        );
        let error = delete_value(BASE, "bgp.local_as").unwrap_err();
        assert_eq!(error.to_string(), "bgp: missing field `local_as`");
    }
}
