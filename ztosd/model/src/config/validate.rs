//! Rules that span keys of a parsed [`Config`]: uniqueness, cross-references, kernel names.
//!
//! Types and ranges of single values are checked while deserializing (see types.rs); this
//! module checks what a single value cannot know. It collects every problem instead of
//! stopping at the first, so an operator fixes a candidate in one pass.

use std::collections::HashMap;
use std::net::IpAddr;

use base64::Engine as _;
use ipnet::IpNet;

use super::{Config, ConfigError, ConfigErrors, InterfaceKind, PolicyProtocol};

/// Linux `IFNAMSIZ` is 16 including the terminating NUL.
const MAX_INTERFACE_NAME: usize = 15;
/// Largest GPU batch the offload plugin accepts, in packets.
const MAX_GPU_BATCH: u32 = 1_048_576;

/// Checks every rule that involves more than one value; returns all problems found.
pub fn validate(config: &Config) -> Result<(), ConfigErrors> {
    let mut v = Validator::default();
    v.system(config);
    v.devices(config);
    v.dhcp(config);
    v.vxlan(config);
    v.tenants(config);
    v.routes(config);
    v.bgp(config);
    v.wireguard(config);
    v.macsec(config);
    v.policy(config);
    v.gpu_offload(config);
    if v.errors.is_empty() {
        Ok(())
    } else {
        Err(ConfigErrors(v.errors))
    }
}

#[derive(Default)]
struct Validator {
    errors: Vec<ConfigError>,
}

/// Remembers the first path at which each key was seen, to name it in duplicate errors.
struct Seen<K> {
    first: HashMap<K, String>,
}

impl<K: std::hash::Hash + Eq> Seen<K> {
    fn new() -> Self {
        Seen {
            first: HashMap::new(),
        }
    }

    /// The path where `key` was seen before, or `None` (and remembers `path`) if it is new.
    fn check(&mut self, key: K, path: &str) -> Option<String> {
        match self.first.get(&key) {
            Some(first) => Some(first.clone()),
            None => {
                self.first.insert(key, path.to_string());
                None
            }
        }
    }
}

impl Validator {
    fn error(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.errors.push(ConfigError::new(path, message));
    }

    /// Reports `name` if it cannot be a kernel interface name.
    fn interface_name(&mut self, path: &str, name: &str) {
        if let Some(problem) = interface_name_problem(name) {
            self.error(
                path,
                format!("{name:?} is not a valid interface name: {problem}"),
            );
        }
    }

    fn system(&mut self, config: &Config) {
        let system = &config.system;
        if let Some(problem) = hostname_problem(&system.hostname) {
            self.error(
                "system.hostname",
                format!("{:?} is not a valid hostname: {problem}", system.hostname),
            );
        }
        if system.https_port == 0 {
            self.error("system.https_port", "0 is not a valid TCP port");
        }
        if let Some(update) = &system.update {
            for (key, message) in super::check_update_config(update) {
                self.error(format!("system.update.{key}"), message);
            }
        }
        let mut users = Seen::new();
        for (i, user) in system.users.iter().enumerate() {
            let path = format!("system.users[{i}].name");
            if user.name.is_empty()
                || !user
                    .name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
            {
                self.error(
                    &path,
                    format!(
                        "{:?} is not a valid user name (letters, digits, '.', '_', '-')",
                        user.name
                    ),
                );
            }
            if let Some(first) = users.check(user.name.as_str(), &path) {
                self.error(
                    &path,
                    format!("duplicate user {:?} (also at {first})", user.name),
                );
            }
        }
    }

    /// DHCP only on enabled Ethernet-like interfaces.
    fn dhcp(&mut self, config: &Config) {
        for (i, interface) in config.interfaces.iter().enumerate() {
            if !interface.dhcp {
                continue;
            }
            let path = format!("interfaces[{i}].dhcp");
            if interface.kind == InterfaceKind::Loopback {
                self.error(
                    path,
                    format!(
                        "DHCP needs an Ethernet interface; {} is a loopback interface",
                        interface.name
                    ),
                );
            } else if !interface.enabled {
                self.error(
                    path,
                    format!(
                        "{} has enabled = false; a disabled interface cannot use DHCP",
                        interface.name
                    ),
                );
            }
        }
    }

    /// Kernel device names: valid, and each used by one interface, bridge, VXLAN device, VRF,
    /// WireGuard or MACsec interface only.
    fn devices(&mut self, config: &Config) {
        let mut devices: Vec<(String, String)> = Vec::new();
        for (i, interface) in config.interfaces.iter().enumerate() {
            devices.push((format!("interfaces[{i}].name"), interface.name.clone()));
        }
        for (i, bridge) in config.bridges.iter().enumerate() {
            devices.push((format!("bridges[{i}].name"), bridge.name.clone()));
            for (j, port) in bridge.ports.iter().enumerate() {
                self.interface_name(&format!("bridges[{i}].ports[{j}]"), port);
            }
        }
        for (i, vxlan) in config.vxlan.iter().enumerate() {
            // Without a name the device is `vx<vni>`, which is always valid; errors about the
            // derived name point at the VNI that produced it.
            let field = if vxlan.name.is_some() { "name" } else { "vni" };
            devices.push((format!("vxlan[{i}].{field}"), vxlan.device_name()));
            if let Some(underlay) = &vxlan.underlay_interface {
                self.interface_name(&format!("vxlan[{i}].underlay_interface"), underlay);
            }
        }
        for (i, tenant) in config.tenants.iter().enumerate() {
            let path = format!("tenants[{i}].name");
            if tenant.name.is_empty() {
                self.error(&path, "tenant name must not be empty");
                continue;
            }
            if let Some(problem) = interface_name_problem(&tenant.vrf_device_name()) {
                self.error(
                    &path,
                    format!(
                        "{:?} makes VRF device name {:?} invalid: {problem}",
                        tenant.name,
                        tenant.vrf_device_name()
                    ),
                );
                continue;
            }
            devices.push((path, tenant.vrf_device_name()));
        }
        if let Some(wireguard) = &config.wireguard {
            for (i, interface) in wireguard.interfaces.iter().enumerate() {
                devices.push((
                    format!("wireguard.interfaces[{i}].name"),
                    interface.name.clone(),
                ));
            }
        }
        if let Some(macsec) = &config.macsec {
            for (i, interface) in macsec.interfaces.iter().enumerate() {
                if let Some(name) = &interface.name {
                    devices.push((format!("macsec.interfaces[{i}].name"), name.clone()));
                }
            }
        }

        let mut seen = Seen::new();
        for (path, name) in &devices {
            // A tenant's derived name was checked above with a message about the tenant.
            if !path.starts_with("tenants[") {
                self.interface_name(path, name);
            }
            if let Some(first) = seen.check(name.as_str(), path) {
                self.error(
                    path,
                    format!("duplicate device name {name:?} (also used by {first})"),
                );
            }
        }
    }

    fn vxlan(&mut self, config: &Config) {
        let mut vnis = Seen::new();
        for (i, vxlan) in config.vxlan.iter().enumerate() {
            let path = format!("vxlan[{i}]");
            if let Some(first) = vnis.check(vxlan.vni, &format!("{path}.vni")) {
                self.error(
                    format!("{path}.vni"),
                    format!("duplicate VNI {} (also at {first})", vxlan.vni),
                );
            }
            if let Some(bridge) = &vxlan.bridge {
                if !config.bridges.iter().any(|b| &b.name == bridge) {
                    self.error(
                        format!("{path}.bridge"),
                        format!("bridge {bridge:?} is not defined in [[bridges]]"),
                    );
                }
            }
            let mut remotes = Seen::new();
            for (j, remote) in vxlan.remote_vteps.iter().enumerate() {
                let remote_path = format!("{path}.remote_vteps[{j}]");
                if remote.is_ipv4() != vxlan.local_vtep.is_ipv4() {
                    self.error(
                        &remote_path,
                        format!(
                            "remote VTEP {remote} is {} but local_vtep {} is {}",
                            family(remote),
                            vxlan.local_vtep,
                            family(&vxlan.local_vtep)
                        ),
                    );
                } else if *remote == vxlan.local_vtep {
                    self.error(
                        &remote_path,
                        format!("remote VTEP {remote} is the local VTEP"),
                    );
                }
                if let Some(first) = remotes.check(*remote, &remote_path) {
                    self.error(
                        &remote_path,
                        format!("duplicate remote VTEP {remote} (also at {first})"),
                    );
                }
            }
        }
    }

    fn tenants(&mut self, config: &Config) {
        let mut names = Seen::new();
        let mut tables = Seen::new();
        let mut l3_vnis = Seen::new();
        let mut network_vnis = Seen::new();
        // Bridge name -> (tenant index, path) of the first tenant network that uses it.
        let mut bridge_owner: HashMap<&str, (usize, String)> = HashMap::new();
        for (i, tenant) in config.tenants.iter().enumerate() {
            let path = format!("tenants[{i}]");
            if let Some(first) = names.check(tenant.name.as_str(), &format!("{path}.name")) {
                self.error(
                    format!("{path}.name"),
                    format!("duplicate tenant {:?} (also at {first})", tenant.name),
                );
            }
            if let Some(first) = tables.check(tenant.vrf_table, &format!("{path}.vrf_table")) {
                self.error(
                    format!("{path}.vrf_table"),
                    format!("duplicate VRF table {} (also at {first})", tenant.vrf_table),
                );
            }
            if let Some(l3_vni) = tenant.l3_vni {
                if let Some(first) = l3_vnis.check(l3_vni, &format!("{path}.l3_vni")) {
                    self.error(
                        format!("{path}.l3_vni"),
                        format!("duplicate L3 VNI {l3_vni} (also at {first})"),
                    );
                }
            }
            for (j, network) in tenant.networks.iter().enumerate() {
                let network_path = format!("{path}.networks[{j}].vni");
                if let Some(first) = network_vnis.check(network.vni, &network_path) {
                    self.error(
                        &network_path,
                        format!("VNI {} is already a network of {first}", network.vni),
                    );
                    continue;
                }
                let Some(vxlan) = config.vxlan.iter().find(|v| v.vni == network.vni) else {
                    self.error(
                        &network_path,
                        format!("VNI {} is not defined in [[vxlan]]", network.vni),
                    );
                    continue;
                };
                let Some(bridge) = vxlan.bridge.as_deref() else {
                    self.error(
                        &network_path,
                        format!("the [[vxlan]] entry of VNI {} has no bridge", network.vni),
                    );
                    continue;
                };
                match bridge_owner.get(bridge) {
                    Some((owner, first)) if *owner != i => self.error(
                        &network_path,
                        format!(
                            "bridge {bridge:?} of VNI {} already belongs to the tenant at {first}",
                            network.vni
                        ),
                    ),
                    Some(_) => {}
                    None => {
                        bridge_owner.insert(bridge, (i, network_path.clone()));
                    }
                }
            }
        }
        // An L3 VNI carries routed traffic of one VRF; it cannot also be an L2 network.
        for (i, tenant) in config.tenants.iter().enumerate() {
            if let Some(l3_vni) = tenant.l3_vni {
                if let Some(network) = network_vnis.first.get(&l3_vni) {
                    self.error(
                        format!("tenants[{i}].l3_vni"),
                        format!("L3 VNI {l3_vni} is also used as an L2 network at {network}"),
                    );
                }
            }
        }
    }

    fn routes(&mut self, config: &Config) {
        for (i, route) in config.routes.iter().enumerate() {
            let path = format!("routes[{i}]");
            if let Some(gateway) = route.gateway {
                if gateway.is_ipv4() != matches!(route.destination, IpNet::V4(_)) {
                    self.error(
                        format!("{path}.gateway"),
                        format!(
                            "gateway {gateway} is {} but destination {} is {}",
                            family(&gateway),
                            route.destination,
                            family(&route.destination.addr())
                        ),
                    );
                }
            }
            if let Some(interface) = &route.interface {
                self.interface_name(&format!("{path}.interface"), interface);
            }
            if route.gateway.is_none() && route.interface.is_none() {
                self.error(
                    &path,
                    format!(
                        "route to {} needs a gateway or an interface",
                        route.destination
                    ),
                );
            }
            if let Some(tenant) = &route.tenant {
                if !config.tenants.iter().any(|t| &t.name == tenant) {
                    self.error(
                        format!("{path}.tenant"),
                        format!("tenant {tenant:?} is not defined in [[tenants]]"),
                    );
                }
            }
        }
    }

    fn bgp(&mut self, config: &Config) {
        let Some(bgp) = &config.bgp else { return };
        if bgp.router_id.is_some_and(|id| id.is_unspecified()) {
            self.error("bgp.router_id", "0.0.0.0 is not a valid router ID");
        }
        let mut addresses = Seen::new();
        for (i, neighbor) in bgp.neighbors.iter().enumerate() {
            let path = format!("bgp.neighbors[{i}]");
            if let Some(first) = addresses.check(neighbor.address, &format!("{path}.address")) {
                self.error(
                    format!("{path}.address"),
                    format!("duplicate neighbor {} (also at {first})", neighbor.address),
                );
            }
            if neighbor.address.is_unspecified() {
                self.error(
                    format!("{path}.address"),
                    format!("{} is not a valid neighbor address", neighbor.address),
                );
            }
            // RFC 4271 §4.2: the hold time MUST be either zero or at least three seconds.
            if let Some(hold_time) = neighbor.hold_time {
                if hold_time == 1 || hold_time == 2 {
                    self.error(
                        format!("{path}.hold_time"),
                        format!("{hold_time} is not a valid hold time (0 or at least 3 seconds)"),
                    );
                }
            }
            let mut families = Seen::new();
            for (j, family) in neighbor.families.iter().enumerate() {
                let family_path = format!("{path}.families[{j}]");
                if let Some(first) = families.check(*family, &family_path) {
                    self.error(
                        &family_path,
                        format!("duplicate address family (also at {first})"),
                    );
                }
            }
        }
    }

    fn wireguard(&mut self, config: &Config) {
        let Some(wireguard) = &config.wireguard else {
            return;
        };
        let mut ports = Seen::new();
        for (i, interface) in wireguard.interfaces.iter().enumerate() {
            let path = format!("wireguard.interfaces[{i}]");
            // Port 0 lets the kernel pick a free port, so two interfaces may both use it.
            if interface.listen_port != 0 {
                if let Some(first) =
                    ports.check(interface.listen_port, &format!("{path}.listen_port"))
                {
                    self.error(
                        format!("{path}.listen_port"),
                        format!(
                            "duplicate listen port {} (also at {first})",
                            interface.listen_port
                        ),
                    );
                }
            }
            let mut keys = Seen::new();
            let mut allowed = Seen::new();
            for (j, peer) in interface.peers.iter().enumerate() {
                let peer_path = format!("{path}.peers[{j}]");
                let key_path = format!("{peer_path}.public_key");
                if let Some(problem) = public_key_problem(&peer.public_key) {
                    self.error(
                        &key_path,
                        format!("{:?} is not a valid public key: {problem}", peer.public_key),
                    );
                } else if let Some(first) = keys.check(peer.public_key.as_str(), &key_path) {
                    self.error(
                        &key_path,
                        format!("duplicate peer {:?} (also at {first})", peer.public_key),
                    );
                }
                if let Some(endpoint) = &peer.endpoint {
                    if let Some(problem) = endpoint_problem(endpoint) {
                        self.error(
                            format!("{peer_path}.endpoint"),
                            format!("{endpoint:?} is not a valid endpoint: {problem}"),
                        );
                    }
                }
                // Cryptokey routing maps each prefix to exactly one peer of an interface.
                for (k, prefix) in peer.allowed_ips.iter().enumerate() {
                    let prefix_path = format!("{peer_path}.allowed_ips[{k}]");
                    if let Some(first) = allowed.check(prefix.trunc(), &prefix_path) {
                        self.error(
                            &prefix_path,
                            format!("{prefix} is already allowed at {first}"),
                        );
                    }
                }
            }
        }
    }

    fn macsec(&mut self, config: &Config) {
        let Some(macsec) = &config.macsec else { return };
        let mut parents = Seen::new();
        for (i, interface) in macsec.interfaces.iter().enumerate() {
            let path = format!("macsec.interfaces[{i}]");
            self.interface_name(&format!("{path}.parent"), &interface.parent);
            if let Some(first) = parents.check(interface.parent.as_str(), &format!("{path}.parent"))
            {
                self.error(
                    format!("{path}.parent"),
                    format!(
                        "interface {:?} is already protected at {first}",
                        interface.parent
                    ),
                );
            }
            if interface.cak.is_empty() {
                self.error(format!("{path}.cak"), "CAK name must not be empty");
            }
        }
    }

    fn policy(&mut self, config: &Config) {
        let Some(policy) = &config.policy else { return };
        let mut groups = Seen::new();
        for (i, group) in policy.groups.iter().enumerate() {
            let path = format!("policy.groups[{i}]");
            if group.name.is_empty() {
                self.error(format!("{path}.name"), "group name must not be empty");
            }
            if let Some(first) = groups.check(group.name.as_str(), &format!("{path}.name")) {
                self.error(
                    format!("{path}.name"),
                    format!("duplicate group {:?} (also at {first})", group.name),
                );
            }
            for (j, member) in group.members.iter().enumerate() {
                if let Some(problem) = public_key_problem(member) {
                    self.error(
                        format!("{path}.members[{j}]"),
                        format!("{member:?} is not a valid public key: {problem}"),
                    );
                }
            }
        }
        let mut rules = Seen::new();
        for (i, rule) in policy.rules.iter().enumerate() {
            let path = format!("policy.rules[{i}]");
            if let Some(first) = rules.check(rule.name.as_str(), &format!("{path}.name")) {
                self.error(
                    format!("{path}.name"),
                    format!("duplicate rule {:?} (also at {first})", rule.name),
                );
            }
            for (j, from) in rule.from.iter().enumerate() {
                let from_path = format!("{path}.from[{j}]");
                if let Some(group) = from.strip_prefix("group:") {
                    if !policy.groups.iter().any(|g| g.name == group) {
                        self.error(
                            &from_path,
                            format!("group {group:?} is not defined in [[policy.groups]]"),
                        );
                    }
                } else if let Some(problem) = public_key_problem(from) {
                    self.error(
                        &from_path,
                        format!("{from:?} is neither a public key ({problem}) nor group:<name>"),
                    );
                }
            }
            let ports_allowed = matches!(
                rule.protocol,
                Some(PolicyProtocol::Tcp | PolicyProtocol::Udp)
            );
            for (j, ports) in rule.ports.iter().enumerate() {
                let ports_path = format!("{path}.ports[{j}]");
                if let Err(problem) = parse_port_range(ports) {
                    self.error(
                        &ports_path,
                        format!("{ports:?} is not a valid port or range: {problem}"),
                    );
                }
            }
            if !rule.ports.is_empty() && !ports_allowed {
                self.error(
                    format!("{path}.ports"),
                    "ports need protocol \"tcp\" or \"udp\"",
                );
            }
        }
    }

    fn gpu_offload(&mut self, config: &Config) {
        let Some(gpu) = &config.gpu_offload else {
            return;
        };
        if !(1..=MAX_GPU_BATCH).contains(&gpu.batch_size) {
            self.error(
                "gpu_offload.batch_size",
                format!(
                    "{} is not a valid batch size (1 to {MAX_GPU_BATCH})",
                    gpu.batch_size
                ),
            );
        }
    }
}

fn family(address: &IpAddr) -> &'static str {
    if address.is_ipv4() {
        "IPv4"
    } else {
        "IPv6"
    }
}

/// Why `name` cannot be a Linux interface name (see the kernel's `dev_valid_name`).
pub(crate) fn interface_name_problem(name: &str) -> Option<String> {
    if name.is_empty() {
        Some("empty".to_string())
    } else if name.len() > MAX_INTERFACE_NAME {
        Some(format!(
            "{} bytes long, at most {MAX_INTERFACE_NAME} allowed",
            name.len()
        ))
    } else if name == "." || name == ".." {
        Some("reserved name".to_string())
    } else {
        name.chars()
            .find(|c| *c == '/' || *c == ':' || c.is_whitespace())
            .map(|c| format!("contains {c:?}"))
    }
}

/// Why `name` is not a valid hostname (RFC 1123 §2.1).
fn hostname_problem(name: &str) -> Option<String> {
    if name.is_empty() {
        return Some("empty".to_string());
    }
    if name.len() > 253 {
        return Some(format!(
            "{} characters long, at most 253 allowed",
            name.len()
        ));
    }
    for label in name.split('.') {
        if label.is_empty() || label.len() > 63 {
            return Some(format!("label {label:?} must be 1 to 63 characters"));
        }
        if let Some(c) = label
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || *c == '-'))
        {
            return Some(format!("label {label:?} contains {c:?}"));
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Some(format!("label {label:?} starts or ends with '-'"));
        }
    }
    None
}

/// Why `key` is not a WireGuard public key: standard base64 of 32 bytes.
pub(crate) fn public_key_problem(key: &str) -> Option<String> {
    match base64::engine::general_purpose::STANDARD.decode(key) {
        Ok(bytes) if bytes.len() == 32 => None,
        Ok(bytes) => Some(format!("decodes to {} bytes, expected 32", bytes.len())),
        Err(_) => Some("not base64".to_string()),
    }
}

/// Why `endpoint` is not `host:port` (IPv6 addresses in brackets).
fn endpoint_problem(endpoint: &str) -> Option<String> {
    if endpoint.parse::<std::net::SocketAddr>().is_ok() {
        return None;
    }
    let Some((host, port)) = endpoint.rsplit_once(':') else {
        return Some("expected host:port".to_string());
    };
    match port.parse::<u16>() {
        Ok(0) | Err(_) => return Some(format!("port {port:?} is not 1 to 65535")),
        Ok(_) => {}
    }
    if host.starts_with('[') || host.contains(':') {
        return Some("an IPv6 address must be written as [address]:port".to_string());
    }
    hostname_problem(host).map(|problem| format!("host: {problem}"))
}

/// Parses `N` or `N-M` with 1 <= N <= M <= 65535.
pub(crate) fn parse_port_range(text: &str) -> Result<(u16, u16), String> {
    let (low, high) = text.split_once('-').unwrap_or((text, text));
    let parse = |part: &str| -> Result<u16, String> {
        match part.trim().parse::<u16>() {
            Ok(0) | Err(_) => Err(format!("{part:?} is not a port 1 to 65535")),
            Ok(port) => Ok(port),
        }
    };
    let (low, high) = (parse(low)?, parse(high)?);
    if low > high {
        return Err(format!("{low} is greater than {high}"));
    }
    Ok((low, high))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::parse;

    const KEY_A: &str = "xTIBA5rboUvnH4htodjb6e697QjLERt1NAB4mZqp8Dg=";
    const KEY_B: &str = "TrMvSoP4jYQlY6RIzBgbssQqY3vxI2Pi+y71lOWWXX0=";

    /// All errors of a document that deserializes, as "path: message" strings.
    fn errors(text: &str) -> Vec<String> {
        let config: Config = toml::from_str(text).unwrap_or_else(|e| panic!("{e}"));
        match validate(&config) {
            Ok(()) => Vec::new(),
            Err(errors) => errors.0.iter().map(ToString::to_string).collect(),
        }
    }

    fn assert_has(errors: &[String], expected: &str) {
        assert!(
            errors.iter().any(|e| e == expected),
            "expected {expected:?} among {errors:#?}"
        );
    }

    #[test]
    fn dhcp_only_on_enabled_non_loopback_interfaces() {
        assert_eq!(
            errors(
                r#"
                [[interfaces]]
                name = "eth0"
                dhcp = true
                addresses = ["192.0.2.1/24"]
                "#
            ),
            Vec::<String>::new()
        );
        let found = errors(
            r#"
            [[interfaces]]
            name = "lo"
            kind = "loopback"
            dhcp = true
            [[interfaces]]
            name = "eth1"
            enabled = false
            dhcp = true
            "#,
        );
        assert_has(
            &found,
            "interfaces[0].dhcp: DHCP needs an Ethernet interface; lo is a loopback interface",
        );
        assert_has(
            &found,
            "interfaces[1].dhcp: eth1 has enabled = false; a disabled interface cannot use DHCP",
        );
        assert_eq!(found.len(), 2, "{found:?}");
    }

    #[test]
    fn valid_document_has_no_errors() {
        let text = format!(
            r#"
            [[interfaces]]
            name = "eth0"
            [[bridges]]
            name = "br10"
            [[vxlan]]
            vni = 10
            local_vtep = "10.0.0.1"
            bridge = "br10"
            remote_vteps = ["10.0.0.2"]
            [[tenants]]
            name = "red"
            vrf_table = 10
            networks = [{{ vni = 10 }}]
            [[routes]]
            destination = "10.1.0.0/16"
            gateway = "10.0.0.254"
            tenant = "red"
            [[wireguard.interfaces]]
            name = "wg0"
            listen_port = 51820
            [[wireguard.interfaces.peers]]
            public_key = "{KEY_A}"
            endpoint = "[2001:db8::1]:51820"
            [[policy.rules]]
            name = "all"
            action = "allow"
            from = ["{KEY_B}"]
            "#
        );
        assert_eq!(errors(&text), Vec::<String>::new());
        parse(&text).unwrap();
    }

    #[test]
    fn all_errors_are_collected() {
        let errors = errors(
            r#"
            [system]
            hostname = "bad_host"
            [[interfaces]]
            name = "eth0"
            [[interfaces]]
            name = "eth0"
            [gpu_offload]
            batch_size = 0
            "#,
        );
        assert_eq!(
            errors,
            vec![
                "system.hostname: \"bad_host\" is not a valid hostname: label \"bad_host\" contains '_'",
                "interfaces[1].name: duplicate device name \"eth0\" (also used by interfaces[0].name)",
                "gpu_offload.batch_size: 0 is not a valid batch size (1 to 1048576)",
            ]
        );
    }

    #[test]
    fn hostnames_follow_rfc_1123() {
        assert_eq!(hostname_problem("leaf-1.dc1.example"), None);
        assert_eq!(hostname_problem("1leaf"), None);
        assert!(hostname_problem("").is_some());
        assert!(hostname_problem("-leaf").is_some());
        assert!(hostname_problem("leaf-").is_some());
        assert!(hostname_problem("a..b").is_some());
        assert!(hostname_problem(&"a".repeat(64)).is_some());
        assert_eq!(hostname_problem(&"a".repeat(63)), None);
        let long = vec!["a".repeat(63); 4].join(".");
        assert!(hostname_problem(&long).is_some(), "255 characters");
    }

    #[test]
    fn interface_names_follow_the_kernel() {
        assert_eq!(interface_name_problem("eth0"), None);
        assert_eq!(interface_name_problem(&"x".repeat(15)), None);
        assert!(interface_name_problem(&"x".repeat(16)).is_some());
        for bad in ["", ".", "..", "a/b", "a:b", "a b"] {
            assert!(interface_name_problem(bad).is_some(), "{bad:?}");
        }
        let errors = errors("[[interfaces]]\nname = \"eth0:1\"\n");
        assert_eq!(
            errors,
            vec!["interfaces[0].name: \"eth0:1\" is not a valid interface name: contains ':'"]
        );
    }

    #[test]
    fn device_names_are_unique_across_kinds() {
        let errors = errors(
            r#"
            [[interfaces]]
            name = "vx10"
            [[bridges]]
            name = "vrf-red"
            [[vxlan]]
            vni = 10
            local_vtep = "10.0.0.1"
            [[vxlan]]
            vni = 10
            name = "vx-other"
            local_vtep = "10.0.0.1"
            [[tenants]]
            name = "red"
            vrf_table = 10
            [[wireguard.interfaces]]
            name = "eth9"
            listen_port = 1
            [[wireguard.interfaces]]
            name = "eth9"
            listen_port = 1
            "#,
        );
        assert_has(
            &errors,
            "vxlan[0].vni: duplicate device name \"vx10\" (also used by interfaces[0].name)",
        );
        assert_has(
            &errors,
            "vxlan[1].vni: duplicate VNI 10 (also at vxlan[0].vni)",
        );
        assert_has(
            &errors,
            "tenants[0].name: duplicate device name \"vrf-red\" (also used by bridges[0].name)",
        );
        assert_has(
            &errors,
            "wireguard.interfaces[1].name: duplicate device name \"eth9\" (also used by wireguard.interfaces[0].name)",
        );
        assert_has(&errors, "wireguard.interfaces[1].listen_port: duplicate listen port 1 (also at wireguard.interfaces[0].listen_port)");
        assert_eq!(errors.len(), 5, "{errors:#?}");
    }

    #[test]
    fn long_tenant_name_makes_vrf_name_invalid() {
        let errors = errors("[[tenants]]\nname = \"engineering-lab\"\nvrf_table = 5\n");
        assert_eq!(
            errors,
            vec![
                "tenants[0].name: \"engineering-lab\" makes VRF device name \"vrf-engineering-lab\" invalid: 19 bytes long, at most 15 allowed"
            ]
        );
    }

    #[test]
    fn vxlan_references_and_vteps() {
        let errors = errors(
            r#"
            [[vxlan]]
            vni = 10
            local_vtep = "10.0.0.1"
            bridge = "br-missing"
            remote_vteps = ["2001:db8::2", "10.0.0.1", "10.0.0.3", "10.0.0.3"]
            "#,
        );
        assert_eq!(
            errors,
            vec![
                "vxlan[0].bridge: bridge \"br-missing\" is not defined in [[bridges]]",
                "vxlan[0].remote_vteps[0]: remote VTEP 2001:db8::2 is IPv6 but local_vtep 10.0.0.1 is IPv4",
                "vxlan[0].remote_vteps[1]: remote VTEP 10.0.0.1 is the local VTEP",
                "vxlan[0].remote_vteps[3]: duplicate remote VTEP 10.0.0.3 (also at vxlan[0].remote_vteps[2])",
            ]
        );
    }

    #[test]
    fn tenant_rules() {
        let errors = errors(
            r#"
            [[bridges]]
            name = "br10"
            [[vxlan]]
            vni = 10
            local_vtep = "10.0.0.1"
            bridge = "br10"
            [[vxlan]]
            vni = 11
            local_vtep = "10.0.0.1"
            bridge = "br10"
            [[vxlan]]
            vni = 12
            local_vtep = "10.0.0.1"
            [[tenants]]
            name = "red"
            vrf_table = 10
            l3_vni = 11
            networks = [{ vni = 10 }, { vni = 12 }, { vni = 13 }]
            [[tenants]]
            name = "red"
            vrf_table = 10
            l3_vni = 11
            networks = [{ vni = 10 }, { vni = 11 }]
            "#,
        );
        assert_eq!(
            errors,
            vec![
                "tenants[1].name: duplicate device name \"vrf-red\" (also used by tenants[0].name)",
                "tenants[0].networks[1].vni: the [[vxlan]] entry of VNI 12 has no bridge",
                "tenants[0].networks[2].vni: VNI 13 is not defined in [[vxlan]]",
                "tenants[1].name: duplicate tenant \"red\" (also at tenants[0].name)",
                "tenants[1].vrf_table: duplicate VRF table 10 (also at tenants[0].vrf_table)",
                "tenants[1].l3_vni: duplicate L3 VNI 11 (also at tenants[0].l3_vni)",
                "tenants[1].networks[0].vni: VNI 10 is already a network of tenants[0].networks[0].vni",
                "tenants[1].networks[1].vni: bridge \"br10\" of VNI 11 already belongs to the tenant at tenants[0].networks[0].vni",
                "tenants[0].l3_vni: L3 VNI 11 is also used as an L2 network at tenants[1].networks[1].vni",
                "tenants[1].l3_vni: L3 VNI 11 is also used as an L2 network at tenants[1].networks[1].vni",
            ]
        );
    }

    #[test]
    fn route_rules() {
        let errors = errors(
            r#"
            [[routes]]
            destination = "2001:db8::/32"
            gateway = "10.0.0.1"
            [[routes]]
            destination = "10.0.0.0/8"
            [[routes]]
            destination = "10.0.0.0/8"
            interface = "eth0"
            tenant = "nobody"
            "#,
        );
        assert_eq!(
            errors,
            vec![
                "routes[0].gateway: gateway 10.0.0.1 is IPv4 but destination 2001:db8::/32 is IPv6",
                "routes[1]: route to 10.0.0.0/8 needs a gateway or an interface",
                "routes[2].tenant: tenant \"nobody\" is not defined in [[tenants]]",
            ]
        );
    }

    #[test]
    fn bgp_rules() {
        let errors = errors(
            r#"
            [bgp]
            local_as = 65001
            router_id = "0.0.0.0"
            [[bgp.neighbors]]
            address = "10.0.0.1"
            remote_as = 65002
            hold_time = 2
            [[bgp.neighbors]]
            address = "10.0.0.1"
            remote_as = 65003
            hold_time = 0
            families = ["l2vpn-evpn", "l2vpn-evpn"]
            "#,
        );
        assert_eq!(
            errors,
            vec![
                "bgp.router_id: 0.0.0.0 is not a valid router ID",
                "bgp.neighbors[0].hold_time: 2 is not a valid hold time (0 or at least 3 seconds)",
                "bgp.neighbors[1].address: duplicate neighbor 10.0.0.1 (also at bgp.neighbors[0].address)",
                "bgp.neighbors[1].families[1]: duplicate address family (also at bgp.neighbors[1].families[0])",
            ]
        );
    }

    #[test]
    fn wireguard_rules() {
        let errors = errors(&format!(
            r#"
            [[wireguard.interfaces]]
            name = "wg0"
            listen_port = 51820
            [[wireguard.interfaces.peers]]
            public_key = "{KEY_A}"
            endpoint = "peer.example.net:51820"
            allowed_ips = ["10.9.0.2/32", "10.9.1.0/24"]
            [[wireguard.interfaces.peers]]
            public_key = "c2hvcnQ="
            endpoint = "10.0.0.1"
            allowed_ips = ["10.9.1.7/24"]
            [[wireguard.interfaces.peers]]
            public_key = "{KEY_A}"
            endpoint = "2001:db8::1:51820"
            [[wireguard.interfaces]]
            name = "wg1"
            listen_port = 51821
            [[wireguard.interfaces.peers]]
            public_key = "{KEY_A}"
            endpoint = "peer.example.net:0"
            allowed_ips = ["10.9.0.2/32"]
            "#
        ));
        assert_eq!(
            errors,
            vec![
                "wireguard.interfaces[0].peers[1].public_key: \"c2hvcnQ=\" is not a valid public key: decodes to 5 bytes, expected 32",
                "wireguard.interfaces[0].peers[1].endpoint: \"10.0.0.1\" is not a valid endpoint: expected host:port",
                "wireguard.interfaces[0].peers[1].allowed_ips[0]: 10.9.1.7/24 is already allowed at wireguard.interfaces[0].peers[0].allowed_ips[1]",
                "wireguard.interfaces[0].peers[2].public_key: duplicate peer \"xTIBA5rboUvnH4htodjb6e697QjLERt1NAB4mZqp8Dg=\" (also at wireguard.interfaces[0].peers[0].public_key)",
                "wireguard.interfaces[0].peers[2].endpoint: \"2001:db8::1:51820\" is not a valid endpoint: an IPv6 address must be written as [address]:port",
                "wireguard.interfaces[1].peers[0].endpoint: \"peer.example.net:0\" is not a valid endpoint: port \"0\" is not 1 to 65535",
            ]
        );
    }

    #[test]
    fn policy_rules() {
        let errors = errors(&format!(
            r#"
            [[policy.groups]]
            name = "ops"
            members = ["{KEY_A}", "not a key"]
            [[policy.groups]]
            name = "ops"
            members = []
            [[policy.rules]]
            name = "web"
            action = "allow"
            from = ["group:ops", "group:devs", "{KEY_B}", "nope!"]
            protocol = "tcp"
            ports = ["443", "8000-8100", "0", "9-8", "70000", "x"]
            [[policy.rules]]
            name = "web"
            action = "deny"
            protocol = "icmp"
            ports = ["1"]
            "#
        ));
        assert_eq!(
            errors,
            vec![
                "policy.groups[0].members[1]: \"not a key\" is not a valid public key: not base64",
                "policy.groups[1].name: duplicate group \"ops\" (also at policy.groups[0].name)",
                "policy.rules[0].from[1]: group \"devs\" is not defined in [[policy.groups]]",
                "policy.rules[0].from[3]: \"nope!\" is neither a public key (not base64) nor group:<name>",
                "policy.rules[0].ports[2]: \"0\" is not a valid port or range: \"0\" is not a port 1 to 65535",
                "policy.rules[0].ports[3]: \"9-8\" is not a valid port or range: 9 is greater than 8",
                "policy.rules[0].ports[4]: \"70000\" is not a valid port or range: \"70000\" is not a port 1 to 65535",
                "policy.rules[0].ports[5]: \"x\" is not a valid port or range: \"x\" is not a port 1 to 65535",
                "policy.rules[1].name: duplicate rule \"web\" (also at policy.rules[0].name)",
                "policy.rules[1].ports: ports need protocol \"tcp\" or \"udp\"",
            ]
        );
        assert_eq!(parse_port_range("1-65535"), Ok((1, 65535)));
        assert_eq!(parse_port_range("22"), Ok((22, 22)));
    }

    #[test]
    fn macsec_rules() {
        let errors = errors(
            r#"
            [[macsec.interfaces]]
            parent = "eth1"
            cipher_suite = "gcm-aes-xpn-256"
            cak = "fabric"
            [[macsec.interfaces]]
            parent = "eth1"
            name = "eth1"
            cak = ""
            [[interfaces]]
            name = "eth1"
            "#,
        );
        assert_eq!(
            errors,
            vec![
                "macsec.interfaces[1].name: duplicate device name \"eth1\" (also used by interfaces[0].name)",
                "macsec.interfaces[1].parent: interface \"eth1\" is already protected at macsec.interfaces[0].parent",
                "macsec.interfaces[1].cak: CAK name must not be empty",
            ]
        );
    }

    #[test]
    fn users_are_unique() {
        let errors = errors(
            "[[system.users]]\nname = \"admin\"\n[[system.users]]\nname = \"admin\"\nrole = \"read\"\n",
        );
        assert_eq!(
            errors,
            vec!["system.users[1].name: duplicate user \"admin\" (also at system.users[0].name)"]
        );
    }

    #[test]
    fn gpu_batch_size_range() {
        assert!(errors("[gpu_offload]\nbatch_size = 1048576\n").is_empty());
        assert_eq!(
            errors("[gpu_offload]\nbatch_size = 1048577\n"),
            vec!["gpu_offload.batch_size: 1048577 is not a valid batch size (1 to 1048576)"]
        );
    }
}
