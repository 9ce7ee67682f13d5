//! The configuration document: types, parsing, validation, text editing and JSON Schema.
//!
//! The flow is always text -> [`parse`] (TOML syntax, types and ranges, unknown keys) ->
//! [`validate`] (cross-references and rules that span keys). Every error carries the path of
//! the offending key, such as `bgp.neighbors[1].remote_as`, and names the offending value.

mod edit;
mod parse;
mod types;
mod update;
mod validate;

use std::fmt;

use serde::{Deserialize, Serialize};

pub use edit::{delete_value, set_value};
pub use parse::{parse, to_toml};
pub use types::*;
pub use update::{check_update_config, MaintenanceWindow, UpdateConfig};
pub use validate::validate;

/// One problem in a configuration document, at a key path such as `interfaces[2].name`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConfigError {
    /// Dotted key path with array indexes; empty when the problem concerns the whole text.
    pub path: String,
    pub message: String,
}

impl ConfigError {
    pub fn new(path: impl Into<String>, message: impl Into<String>) -> Self {
        ConfigError {
            path: path.into(),
            message: message.into(),
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "{}: {}", self.path, self.message)
        }
    }
}

/// All problems found in a configuration document; never empty when returned as an error.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl ConfigErrors {
    /// A list holding exactly one error.
    pub fn single(path: impl Into<String>, message: impl Into<String>) -> Self {
        ConfigErrors(vec![ConfigError::new(path, message)])
    }
}

impl From<ConfigError> for ConfigErrors {
    fn from(error: ConfigError) -> Self {
        ConfigErrors(vec![error])
    }
}

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, error) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{error}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

/// The top-level sections of the document, in the order they are written.
pub const SECTIONS: &[&str] = &[
    "system",
    "interfaces",
    "routes",
    "bridges",
    "vxlan",
    "tenants",
    "bgp",
    "wireguard",
    "macsec",
    "policy",
    "gpu_offload",
];

/// One top-level section as JSON, as handed to the plugin that owns it. `None` when the
/// section is absent or empty, or `name` is not a section. `system` is always present,
/// because all of its keys have defaults.
pub fn section_value(config: &Config, name: &str) -> Option<serde_json::Value> {
    fn list<T: Serialize>(items: &[T]) -> Option<serde_json::Value> {
        if items.is_empty() {
            None
        } else {
            serde_json::to_value(items).ok()
        }
    }
    fn optional<T: Serialize>(item: &Option<T>) -> Option<serde_json::Value> {
        item.as_ref()
            .and_then(|item| serde_json::to_value(item).ok())
    }
    match name {
        "system" => serde_json::to_value(&config.system).ok(),
        "interfaces" => list(&config.interfaces),
        "routes" => list(&config.routes),
        "bridges" => list(&config.bridges),
        "vxlan" => list(&config.vxlan),
        "tenants" => list(&config.tenants),
        "bgp" => optional(&config.bgp),
        "wireguard" => optional(&config.wireguard),
        "macsec" => optional(&config.macsec),
        "policy" => optional(&config.policy),
        "gpu_offload" => optional(&config.gpu_offload),
        _ => None,
    }
}

/// The JSON Schema of the configuration document (the same file as docs/config.schema.json).
pub fn json_schema() -> serde_json::Value {
    let schema = schemars::schema_for!(Config);
    schema.to_value()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_display_joins_path_and_message() {
        let errors = ConfigErrors(vec![
            ConfigError::new("bgp.local_as", "0 is not a valid AS number"),
            ConfigError::new("", "TOML parse error at line 1, column 2: oops"),
        ]);
        assert_eq!(
            errors.to_string(),
            "bgp.local_as: 0 is not a valid AS number; TOML parse error at line 1, column 2: oops"
        );
        let json = serde_json::to_value(&errors).unwrap();
        assert_eq!(json[0]["path"], "bgp.local_as");
        let back: ConfigErrors = serde_json::from_value(json).unwrap();
        assert_eq!(back, errors);
    }

    #[test]
    fn sections_match_the_document_keys() {
        let config = parse(
            r#"
            [[interfaces]]
            name = "eth0"
            [bgp]
            local_as = 65001
            "#,
        )
        .unwrap();
        let whole = serde_json::to_value(&config).unwrap();
        for name in SECTIONS {
            assert_eq!(
                section_value(&config, name).as_ref(),
                whole.get(*name),
                "{name}"
            );
        }
        assert_eq!(section_value(&config, "bgp").unwrap()["local_as"], 65001);
        assert!(section_value(&config, "wireguard").is_none());
        assert!(section_value(&config, "routes").is_none());
        assert!(section_value(&config, "nonsense").is_none());
        // Every field of Config is a section and vice versa.
        let schema = json_schema();
        let mut properties: Vec<&str> = schema["properties"]
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        properties.sort_unstable();
        let mut sections = SECTIONS.to_vec();
        sections.sort_unstable();
        assert_eq!(properties, sections);
    }

    /// docs/config.schema.json is generated; `ZTOS_UPDATE_GOLDEN=1` rewrites it.
    #[test]
    fn json_schema_matches_golden_file() {
        let path =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/config.schema.json");
        let mut actual = serde_json::to_string_pretty(&json_schema()).unwrap();
        actual.push('\n');
        if std::env::var_os("ZTOS_UPDATE_GOLDEN").is_some_and(|v| v == "1") {
            std::fs::write(&path, &actual).unwrap();
            return;
        }
        let expected = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            expected == actual,
            "{} is out of date: run `ZTOS_UPDATE_GOLDEN=1 cargo test -p ztos-model --lib config`",
            path.display()
        );
    }
}
