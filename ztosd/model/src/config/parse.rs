//! TOML text to [`Config`] and back, with errors that carry the key path.

use super::{validate, Config, ConfigError, ConfigErrors};

/// Parses a configuration document and validates it.
///
/// Syntax errors name the line and column; type, range and unknown-key errors name the key
/// path (`bgp.neighbors[1].remote_as: 0 is not a valid AS number`). Validation runs only
/// when the document deserializes, and reports every problem it finds.
pub fn parse(text: &str) -> Result<Config, ConfigErrors> {
    let deserializer =
        toml::Deserializer::parse(text).map_err(|error| syntax_error(text, &error))?;
    let config: Config = serde_path_to_error::deserialize(deserializer).map_err(|error| {
        let path = error.path().to_string();
        let inner = error.into_inner();
        // An error at the root has the path ".", which says nothing to a user.
        let path = if path == "." { String::new() } else { path };
        let message = match inner.span() {
            // Value errors have a span; keep the path as the locator and add the line.
            Some(span) if path.is_empty() => {
                let (line, column) = line_column(text, span.start);
                format!("line {line}, column {column}: {}", inner.message())
            }
            Some(span) => with_found_value(inner.message(), text.get(span).unwrap_or("")),
            None => inner.message().to_string(),
        };
        ConfigErrors::from(ConfigError::new(path, message))
    })?;
    validate(&config)?;
    Ok(config)
}

/// Writes a configuration as pretty TOML that [`parse`] reads back to an equal value.
pub fn to_toml(config: &Config) -> String {
    // Every type in the document maps onto TOML (no maps with non-string keys, no bare
    // values at the root), so serialization cannot fail for any value of `Config`.
    toml::to_string_pretty(config).expect("configuration types always serialize to TOML")
}

/// Appends the offending TOML value to messages that do not name it themselves, such as
/// serde's "invalid IP address syntax".
fn with_found_value(message: &str, found: &str) -> String {
    let found = found.trim();
    // For a missing or unknown key the span is a table or key, not a value.
    let about_keys = message.starts_with("missing field") || message.starts_with("unknown field");
    if about_keys
        || found.is_empty()
        || found.contains('\n')
        || found.len() > 80
        || message.contains(found)
    {
        message.to_string()
    } else {
        format!("{message} (found {found})")
    }
}

fn syntax_error(text: &str, error: &toml::de::Error) -> ConfigErrors {
    let message = error.message().trim_end();
    let message = match error.span() {
        Some(span) => {
            let (line, column) = line_column(text, span.start);
            format!("invalid TOML at line {line}, column {column}: {message}")
        }
        None => format!("invalid TOML: {message}"),
    };
    ConfigErrors::single("", message)
}

/// 1-based line and column (in characters) of a byte offset.
pub(super) fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let before = text.get(..offset).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let column = before[line_start..].chars().count() + 1;
    (line, column)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Asn, Vni};

    const TWO_LEAF: &str = r#"
# Leaf 1 of a two-leaf VXLAN fabric.
[system]
hostname = "leaf1"
https_port = 8443

[[system.users]]
name = "admin"
role = "admin"

[[interfaces]]
name = "lo"
kind = "loopback"
addresses = ["10.255.0.1/32"]

[[interfaces]]
name = "eth1"
mtu = 9000
addresses = ["10.0.12.1/31"]

[[routes]]
destination = "0.0.0.0/0"
gateway = "10.0.12.0"

[[bridges]]
name = "br100"

[[vxlan]]
vni = 100
local_vtep = "10.255.0.1"
bridge = "br100"
remote_vteps = ["10.255.0.2"]

[[tenants]]
name = "blue"
vrf_table = 100
l3_vni = 5000
networks = [{ vni = 100, gateway = "192.168.100.1/24" }]

[bgp]
local_as = 65001
router_id = "10.255.0.1"

[[bgp.neighbors]]
address = "10.0.12.0"
remote_as = 65000
families = ["ipv4-unicast", "l2vpn-evpn"]
hold_time = 9

[wireguard]
[[wireguard.interfaces]]
name = "wg0"
listen_port = 51820
addresses = ["10.9.0.1/24"]

[[wireguard.interfaces.peers]]
public_key = "xTIBA5rboUvnH4htodjb6e697QjLERt1NAB4mZqp8Dg="
endpoint = "vpn.example.net:51820"
allowed_ips = ["10.9.0.2/32"]

[policy]
[[policy.groups]]
name = "ops"
members = ["xTIBA5rboUvnH4htodjb6e697QjLERt1NAB4mZqp8Dg="]

[[policy.rules]]
name = "ops-ssh"
action = "allow"
from = ["group:ops"]
protocol = "tcp"
ports = ["22", "8000-8100"]

[gpu_offload]
enabled = true
batch_size = 1024
"#;

    fn single_error(text: &str) -> String {
        let errors = parse(text).unwrap_err();
        assert_eq!(errors.0.len(), 1, "{errors}");
        errors.to_string()
    }

    #[test]
    fn full_document_parses_and_round_trips() {
        let config = parse(TWO_LEAF).unwrap();
        assert_eq!(config.system.hostname, "leaf1");
        assert_eq!(config.vxlan[0].vni, Vni::new(100).unwrap());
        assert_eq!(
            config.bgp.as_ref().unwrap().neighbors[0].remote_as,
            Asn::new(65000).unwrap()
        );
        let text = to_toml(&config);
        let again = parse(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
        assert_eq!(again, config);
        assert_eq!(to_toml(&again), text);
    }

    #[test]
    fn empty_document_is_the_default_config() {
        let config = parse("").unwrap();
        assert_eq!(config, Config::default());
        assert_eq!(parse(&to_toml(&config)).unwrap(), config);
    }

    #[test]
    fn range_errors_carry_the_key_path() {
        let text = r#"
            [bgp]
            local_as = 65001
            [[bgp.neighbors]]
            address = "10.0.0.1"
            remote_as = 65002
            [[bgp.neighbors]]
            address = "10.0.0.2"
            remote_as = 0
        "#;
        assert_eq!(
            single_error(text),
            "bgp.neighbors[1].remote_as: 0 is not a valid AS number"
        );
        let text = "[[vxlan]]\nvni = 16777216\nlocal_vtep = \"10.0.0.1\"\n";
        assert_eq!(
            single_error(text),
            "vxlan[0].vni: 16777216 is not a valid VNI (1 to 16777215)"
        );
        let text = "[[interfaces]]\nname = \"eth0\"\nmtu = 20\n";
        assert_eq!(
            single_error(text),
            "interfaces[0].mtu: 20 is not a valid MTU (68 to 65535)"
        );
        let text = "[[vxlan]]\nvni = -1\nlocal_vtep = \"10.0.0.1\"\n";
        assert_eq!(
            single_error(text),
            "vxlan[0].vni: -1 is not a valid VNI (1 to 16777215)"
        );
    }

    #[test]
    fn type_errors_carry_the_key_path() {
        let error =
            single_error("[[routes]]\ndestination = \"10.0.0.0/33\"\ninterface = \"eth0\"\n");
        assert!(error.starts_with("routes[0].destination: "), "{error}");
        let error = single_error("[system]\nhttps_port = \"443\"\n");
        assert!(
            error.starts_with("system.https_port: invalid type: string \"443\""),
            "{error}"
        );
        let error = single_error("[[vxlan]]\nvni = 5\nlocal_vtep = \"10.0.0.300\"\n");
        assert_eq!(
            error,
            "vxlan[0].local_vtep: invalid IP address syntax (found \"10.0.0.300\")"
        );
        let error = single_error("[[interfaces]]\nmtu = 1500\n");
        assert_eq!(error, "interfaces[0]: missing field `name`");
    }

    #[test]
    fn unknown_keys_are_errors_naming_the_key() {
        let error = single_error("[[interfaces]]\nname = \"eth0\"\nmtux = 1500\n");
        assert!(error.starts_with("interfaces[0]"), "{error}");
        assert!(
            error.contains("unknown field `mtux`, expected one of"),
            "{error}"
        );
        let error = single_error("[sytem]\nhostname = \"x\"\n");
        assert!(error.contains("unknown field `sytem`"), "{error}");
    }

    #[test]
    fn syntax_errors_name_line_and_column() {
        let error = single_error("[system]\nhostname = \"leaf1\"\nhttps_port = = 3\n");
        assert!(
            error.starts_with("invalid TOML at line 3, column 14: "),
            "{error}"
        );
        let error = single_error("[system\n");
        assert!(
            error.starts_with("invalid TOML at line 1, column "),
            "{error}"
        );
    }

    #[test]
    fn validation_runs_after_deserializing() {
        let error = single_error("[system]\nhostname = \"-leaf\"\n");
        assert!(error.starts_with("system.hostname: "), "{error}");
    }

    /// The complete example in docs/configuration.md is a valid document.
    #[test]
    fn documented_example_is_valid() {
        let path =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/configuration.md");
        let doc = std::fs::read_to_string(&path).unwrap();
        let section = doc.split("## The document").nth(1).expect("section exists");
        let example = section
            .split("```toml\n")
            .nth(1)
            .and_then(|block| block.split("```").next())
            .expect("the section starts with a TOML example");
        let config = parse(example).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        assert_eq!(config.system.hostname, "leaf1");
        assert_eq!(config.tenants[0].networks[0].vni, config.vxlan[0].vni);
    }

    #[test]
    fn line_column_counts_from_one() {
        assert_eq!(line_column("ab\ncd", 0), (1, 1));
        assert_eq!(line_column("ab\ncd", 4), (2, 2));
        assert_eq!(line_column("ab\ncd", 99), (2, 3));
    }
}
