//! The ztosd side: validate and apply `[wireguard]` and `[policy]`, answer the
//! `wireguard genkey|rotate-key|show` requests, report status and Prometheus metrics.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::TryStreamExt;
use ipnet::IpNet;
use serde_json::Value;
use ztos_model::wireguard::{
    PacketCounter, PolicyCounters, PolicyRuleCounter, WireguardInterface, WireguardKey,
    WireguardPresharedKey, WireguardRotatedKey, WireguardShow, WireguardStatus,
};
use ztos_plugin::client::UnknownMethod;
use ztos_plugin::{FieldError, Handler, LogLevel, Metric, MetricKind, PluginSender, Sections};

use crate::config;
use crate::datapath::Interface;
use crate::keys::{decode_key, encode_key, KeyError, KeyStore};
use crate::policy::Enforcer;

/// What runs now.
pub struct Running {
    pub revision: Option<u64>,
    pub interfaces: BTreeMap<String, Interface>,
    pub policy_config: config::Policy,
    pub policy: Arc<Enforcer>,
}

impl std::fmt::Debug for Running {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Running")
            .field("revision", &self.revision)
            .field("interfaces", &self.interfaces.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

/// The plugin handler. Cloneable state is shared with the status reporter.
#[derive(Debug, Clone)]
pub struct WireguardPlugin {
    keys: KeyStore,
    sender: PluginSender,
    running: Arc<Mutex<Running>>,
}

/// What peers must be told after a key rotation.
pub const ROTATE_NOTICE: &str = "Every peer of this interface must replace the old public key \
with the new one in its configuration (for ZTOS peers: wireguard.interfaces[].peers[].public_key, \
and any [[policy.groups]] members or rules that name it). Until they do, their handshakes fail \
and no traffic passes; sessions established with the old key have been dropped.";

/// Why an apply or a request of the WireGuard plugin failed; the text is what the operator sees.
#[derive(Debug, thiserror::Error)]
pub enum WireguardError {
    #[error(transparent)]
    Key(#[from] KeyError),
    #[error("internal error: state lock poisoned")]
    Poisoned,
    #[error("{method} needs params.{param}")]
    MissingParam { method: String, param: &'static str },
    #[error("peer: {0}")]
    BadPeerKey(String),
    #[error("{peer} is not a peer of {interface} with preshared_key = true in the running configuration")]
    NotPresharedPeer { interface: String, peer: String },
    #[error("{interface} has no preshared key for {peer}")]
    NoPresharedKey { interface: String, peer: String },
    #[error("{0} is not a configured wireguard interface and has no key")]
    NoSuchInterface(String),
    #[error("policy: {0}")]
    Policy(String),
    #[error("{}", .0.iter().map(|e| format!("{}: {}", e.path, e.message)).collect::<Vec<_>>().join("; "))]
    Config(Vec<FieldError>),
    /// An apply that changed what it could; each problem names its interface.
    #[error("{}", .0.join("; "))]
    Apply(Vec<String>),
    #[error("internal error: cannot encode the answer: {0}")]
    Encode(serde_json::Error),
    #[error(transparent)]
    UnknownMethod(#[from] UnknownMethod),
}

impl WireguardPlugin {
    pub fn new(state_dir: PathBuf, sender: PluginSender) -> Result<Self, WireguardError> {
        let policy = Enforcer::new(&config::Policy::default()).map_err(WireguardError::Policy)?;
        Ok(WireguardPlugin {
            keys: KeyStore::new(&state_dir),
            sender,
            running: Arc::new(Mutex::new(Running {
                revision: None,
                interfaces: BTreeMap::new(),
                policy_config: config::Policy::default(),
                policy: Arc::new(policy),
            })),
        })
    }

    /// Status and metrics every `period`, for as long as the process runs.
    pub fn spawn_reporter(&self, period: Duration) {
        let this = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(period);
            loop {
                tick.tick().await;
                this.report();
            }
        });
    }

    /// Sends the current status and metrics to ztosd.
    pub fn report(&self) {
        let (status, metrics) = match self.running.lock() {
            Ok(running) => (
                serde_json::to_value(status_of(&running)).unwrap_or(Value::Null),
                metrics_of(&running),
            ),
            Err(_) => return,
        };
        self.sender.status(status);
        self.sender.metrics(metrics);
    }

    fn lock(&self) -> Result<std::sync::MutexGuard<'_, Running>, WireguardError> {
        self.running.lock().map_err(|_| WireguardError::Poisoned)
    }

    /// The preshared keys of `spec`'s peers with `preshared_key = true`, generated (with an
    /// event) where missing; the PSKs of its other peers are deleted.
    fn preshared_keys(
        &self,
        spec: &config::Interface,
    ) -> Result<HashMap<[u8; 32], [u8; 32]>, WireguardError> {
        let mut psks = HashMap::new();
        for peer in spec.peers.iter().filter(|p| p.preshared_key) {
            let public = decode_key(&peer.public_key).map_err(WireguardError::BadPeerKey)?;
            let (psk, generated) = self.keys.load_or_generate_psk(&spec.name, &public)?;
            if generated {
                self.sender.event(
                    "psk_generated",
                    format!(
                        "generated the preshared key for peer {} of {}; give it to the peer \
                         (ztos security wireguard preshared-key {} {})",
                        peer.public_key, spec.name, spec.name, peer.public_key
                    ),
                );
            }
            psks.insert(public, psk);
        }
        let keep: HashSet<[u8; 32]> = psks.keys().copied().collect();
        let removed = self.keys.remove_psks_except(&spec.name, &keep)?;
        if removed > 0 {
            self.sender.log(
                LogLevel::Info,
                format!(
                    "{}: deleted {removed} preshared key(s) of peers without preshared_key",
                    spec.name
                ),
            );
        }
        Ok(psks)
    }

    async fn apply_sections(
        &self,
        revision: u64,
        parsed: config::Sections,
    ) -> Result<(), WireguardError> {
        let mut link_work = Vec::new();
        let mut problems = Vec::new();
        {
            let mut running = self.lock()?;
            if running.policy_config != parsed.policy {
                let enforcer =
                    Arc::new(Enforcer::new(&parsed.policy).map_err(WireguardError::Policy)?);
                for interface in running.interfaces.values() {
                    interface.set_policy(enforcer.clone());
                }
                running.policy = enforcer;
                running.policy_config = parsed.policy.clone();
            }
            let wanted: HashSet<&str> = parsed
                .wireguard
                .interfaces
                .iter()
                .map(|i| i.name.as_str())
                .collect();
            let gone: Vec<String> = running
                .interfaces
                .keys()
                .filter(|name| !wanted.contains(name.as_str()))
                .cloned()
                .collect();
            for name in gone {
                running.interfaces.remove(&name);
                self.sender
                    .log(LogLevel::Info, format!("interface {name} removed"));
            }
            for spec in &parsed.wireguard.interfaces {
                let psks = match self.preshared_keys(spec) {
                    Ok(psks) => psks,
                    Err(e) => {
                        problems.push(format!("{}: {e}", spec.name));
                        continue;
                    }
                };
                let policy = running.policy.clone();
                let restart = running
                    .interfaces
                    .get(&spec.name)
                    .is_some_and(|i| i.config.listen_port != spec.listen_port);
                if restart {
                    running.interfaces.remove(&spec.name);
                }
                match running.interfaces.get_mut(&spec.name) {
                    Some(interface) => {
                        let before_routes = interface.allowed_ips();
                        let before = interface.config.clone();
                        if before.peers != spec.peers {
                            if let Err(e) = interface.set_peers(&spec.peers, &psks) {
                                problems.push(format!("{}: {e}", spec.name));
                                continue;
                            }
                        }
                        interface.config = spec.clone();
                        let after_routes = interface.allowed_ips();
                        if before.addresses != spec.addresses
                            || before.mtu != spec.mtu
                            || before_routes != after_routes
                        {
                            link_work.push(LinkWork {
                                name: spec.name.clone(),
                                mtu: spec.mtu.map(ztos_model::config::Mtu::get),
                                old_addresses: before.addresses.clone(),
                                addresses: spec.addresses.clone(),
                                old_routes: before_routes,
                                routes: after_routes,
                            });
                        }
                    }
                    None => {
                        let (key, generated) = self.keys.load_or_generate(&spec.name)?;
                        if generated {
                            self.sender.event(
                                "key_generated",
                                format!(
                                    "generated the private key of {}; its public key is {}",
                                    spec.name,
                                    key.public_base64()
                                ),
                            );
                        }
                        match Interface::start(spec, key, &psks, policy) {
                            Ok(interface) => {
                                link_work.push(LinkWork {
                                    name: spec.name.clone(),
                                    mtu: spec.mtu.map(ztos_model::config::Mtu::get),
                                    old_addresses: Vec::new(),
                                    addresses: spec.addresses.clone(),
                                    old_routes: HashSet::new(),
                                    routes: interface.allowed_ips(),
                                });
                                running.interfaces.insert(spec.name.clone(), interface);
                            }
                            Err(e) => problems.push(e.to_string()),
                        }
                    }
                }
            }
            running.revision = Some(revision);
        }
        for work in link_work {
            if let Err(e) = work.run().await {
                problems.push(e);
            }
        }
        self.report();
        if problems.is_empty() {
            Ok(())
        } else {
            Err(WireguardError::Apply(problems))
        }
    }
}

impl Handler for WireguardPlugin {
    type Error = WireguardError;

    async fn validate(&mut self, sections: Sections) -> Vec<FieldError> {
        match config::Sections::parse(&sections) {
            Ok(parsed) => match Enforcer::new(&parsed.policy) {
                Ok(_) => Vec::new(),
                Err(e) => vec![FieldError {
                    path: "policy".into(),
                    message: e,
                }],
            },
            Err(errors) => errors,
        }
    }

    async fn apply(&mut self, revision: u64, sections: Sections) -> Result<(), WireguardError> {
        let parsed = config::Sections::parse(&sections).map_err(WireguardError::Config)?;
        let result = self.apply_sections(revision, parsed).await;
        match &result {
            Ok(()) => self
                .sender
                .log(LogLevel::Info, format!("applied revision {revision}")),
            Err(e) => self.sender.log(
                LogLevel::Error,
                format!("revision {revision} applied with errors: {e}"),
            ),
        }
        result
    }

    async fn request(&mut self, method: String, params: Value) -> Result<Value, WireguardError> {
        let interface = || -> Result<String, WireguardError> {
            params
                .get("interface")
                .and_then(Value::as_str)
                .map(str::to_string)
                .ok_or_else(|| WireguardError::MissingParam {
                    method: method.clone(),
                    param: "interface",
                })
        };
        match method.as_str() {
            "wireguard genkey" => {
                let name = interface()?;
                let key = self.keys.generate(&name)?;
                let running = self.lock()?;
                if let Some(interface) = running.interfaces.get(&name) {
                    interface.set_key(key.clone());
                }
                answer(&WireguardKey {
                    interface: name,
                    public_key: key.public_base64(),
                })
            }
            "wireguard rotate-key" => {
                let name = interface()?;
                let old = self.keys.load(&name)?.map(|k| k.public_base64());
                let key = self.keys.rotate(&name)?;
                {
                    let running = self.lock()?;
                    if let Some(interface) = running.interfaces.get(&name) {
                        interface.set_key(key.clone());
                    }
                }
                self.sender.event(
                    "key_rotated",
                    format!(
                        "rotated the key of {name}; new public key {}",
                        key.public_base64()
                    ),
                );
                self.report();
                answer(&WireguardRotatedKey {
                    interface: name,
                    old_public_key: old,
                    public_key: key.public_base64(),
                    notice: ROTATE_NOTICE.to_string(),
                })
            }
            "wireguard preshared-key" => {
                let name = interface()?;
                let peer = params
                    .get("peer")
                    .and_then(Value::as_str)
                    .ok_or_else(|| WireguardError::MissingParam {
                        method: method.clone(),
                        param: "peer (a public key)",
                    })?
                    .to_string();
                let public = decode_key(&peer).map_err(WireguardError::BadPeerKey)?;
                let configured = {
                    let running = self.lock()?;
                    running.interfaces.get(&name).is_some_and(|i| {
                        i.config
                            .peers
                            .iter()
                            .any(|p| p.preshared_key && decode_key(&p.public_key) == Ok(public))
                    })
                };
                if !configured {
                    return Err(WireguardError::NotPresharedPeer {
                        interface: name,
                        peer,
                    });
                }
                let psk = self.keys.load_psk(&name, &public)?.ok_or_else(|| {
                    WireguardError::NoPresharedKey {
                        interface: name.clone(),
                        peer: peer.clone(),
                    }
                })?;
                self.sender.event(
                    "psk_exported",
                    format!("the preshared key for peer {peer} of {name} was exported"),
                );
                answer(&WireguardPresharedKey {
                    interface: name,
                    peer,
                    preshared_key: encode_key(&psk),
                })
            }
            "wireguard show" => {
                let only = params.get("interface").and_then(Value::as_str);
                let running = self.lock()?;
                if let Some(name) = only {
                    if !running.interfaces.contains_key(name) {
                        // An interface with a key but not configured still shows its key.
                        let key = self.keys.load(name)?;
                        return match key {
                            Some(key) => answer(&WireguardShow {
                                interfaces: vec![WireguardInterface {
                                    name: name.to_string(),
                                    public_key: key.public_base64(),
                                    configured: false,
                                    listen_port: None,
                                    peers: Vec::new(),
                                    counters: None,
                                }],
                                policy: None,
                            }),
                            None => Err(WireguardError::NoSuchInterface(name.to_string())),
                        };
                    }
                }
                let interfaces = running
                    .interfaces
                    .values()
                    .filter(|i| only.is_none_or(|n| n == i.name()))
                    .map(Interface::status)
                    .collect();
                answer(&WireguardShow {
                    interfaces,
                    policy: Some(policy_status(&running)),
                })
            }
            _ => Err(UnknownMethod(method).into()),
        }
    }
}

fn policy_status(running: &Running) -> PolicyCounters {
    let p = &running.policy;
    let rules = p
        .names
        .iter()
        .zip(&p.actions)
        .zip(&p.counters)
        .map(|((name, action), counter)| {
            let (packets, bytes) = counter.get();
            PolicyRuleCounter {
                name: name.clone(),
                action: *action,
                packets,
                bytes,
            }
        })
        .collect();
    let (packets, bytes) = p.default_deny.get();
    PolicyCounters {
        rules,
        default_deny: PacketCounter { packets, bytes },
    }
}

/// The status report ztosd shows in `ztos security status` and `/api/v1/security/status`.
pub fn status_of(running: &Running) -> WireguardStatus {
    WireguardStatus {
        applied_revision: running.revision,
        backend: "userspace".to_string(),
        interfaces: running.interfaces.values().map(Interface::status).collect(),
        policy: policy_status(running),
    }
}

/// A request's answer as the protocol carries it.
fn answer<T: serde::Serialize>(value: &T) -> Result<Value, WireguardError> {
    serde_json::to_value(value).map_err(WireguardError::Encode)
}

fn metric(name: &str, help: &str, kind: MetricKind, labels: &[(&str, &str)], value: f64) -> Metric {
    Metric {
        name: name.to_string(),
        help: help.to_string(),
        kind,
        labels: labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        value,
    }
}

/// Prometheus metrics per peer and per policy rule.
pub fn metrics_of(running: &Running) -> Vec<Metric> {
    let mut out = Vec::new();
    for interface in running.interfaces.values() {
        let status = interface.status();
        for peer in &status.peers {
            let labels = [
                ("interface", status.name.as_str()),
                ("peer", peer.public_key.as_str()),
                ("peer_name", peer.name.as_deref().unwrap_or("")),
            ];
            let c = MetricKind::Counter;
            out.push(metric(
                "ztos_wireguard_peer_rx_bytes_total",
                "Bytes received from the peer (decrypted payload).",
                c,
                &labels,
                peer.rx_bytes as f64,
            ));
            out.push(metric(
                "ztos_wireguard_peer_tx_bytes_total",
                "Bytes sent to the peer (payload before encryption).",
                c,
                &labels,
                peer.tx_bytes as f64,
            ));
            out.push(metric(
                "ztos_wireguard_peer_policy_denied_total",
                "Packets from or to the peer dropped by the policy.",
                c,
                &labels,
                (peer.policy_denied_in + peer.policy_denied_out) as f64,
            ));
            out.push(metric(
                "ztos_wireguard_peer_latest_handshake_seconds",
                "Unix time of the latest handshake (0: none).",
                MetricKind::Gauge,
                &labels,
                peer.latest_handshake.unwrap_or(0) as f64,
            ));
        }
        let counters = status.counters.unwrap_or_default();
        let labels = [("interface", status.name.as_str())];
        out.push(metric(
            "ztos_wireguard_invalid_datagrams_total",
            "Datagrams that failed authentication or parsing.",
            MetricKind::Counter,
            &labels,
            counters.invalid_datagrams as f64,
        ));
        out.push(metric(
            "ztos_wireguard_cookies_sent_total",
            "Cookie replies sent under handshake load.",
            MetricKind::Counter,
            &labels,
            counters.cookies_sent as f64,
        ));
    }
    let p = &running.policy;
    for (name, counter) in p.names.iter().zip(&p.counters) {
        let (packets, bytes) = counter.get();
        out.push(metric(
            "ztos_policy_rule_packets_total",
            "Packets that matched the policy rule.",
            MetricKind::Counter,
            &[("rule", name)],
            packets as f64,
        ));
        out.push(metric(
            "ztos_policy_rule_bytes_total",
            "Bytes that matched the policy rule.",
            MetricKind::Counter,
            &[("rule", name)],
            bytes as f64,
        ));
    }
    let (packets, _) = p.default_deny.get();
    out.push(metric(
        "ztos_policy_default_deny_packets_total",
        "Packets from peers that no rule allowed.",
        MetricKind::Counter,
        &[],
        packets as f64,
    ));
    out
}

/// Addresses, MTU and routes of one TUN device, changed through rtnetlink.
struct LinkWork {
    name: String,
    mtu: Option<u32>,
    old_addresses: Vec<IpNet>,
    addresses: Vec<IpNet>,
    old_routes: HashSet<IpNet>,
    routes: HashSet<IpNet>,
}

impl LinkWork {
    async fn run(self) -> Result<(), String> {
        let name = &self.name;
        let index = nix::net::if_::if_nametoindex(name.as_str())
            .map_err(|e| format!("{name}: no such device: {e}"))?;
        let (connection, handle, _) = rtnetlink::new_connection()
            .map_err(|e| format!("cannot open a netlink socket: {e}"))?;
        let task = tokio::spawn(connection);
        let result = self.run_on(&handle, index).await;
        task.abort();
        result
    }

    async fn run_on(&self, handle: &rtnetlink::Handle, index: u32) -> Result<(), String> {
        let name = &self.name;
        let mut link = rtnetlink::LinkUnspec::new_with_index(index).up();
        if let Some(mtu) = self.mtu {
            link = link.mtu(mtu);
        }
        handle
            .link()
            .set(link.build())
            .execute()
            .await
            .map_err(|e| format!("{name}: cannot set it up: {e}"))?;
        for old in &self.old_addresses {
            if self.addresses.contains(old) {
                continue;
            }
            let mut found = handle
                .address()
                .get()
                .set_link_index_filter(index)
                .set_address_filter(old.addr())
                .execute();
            while let Ok(Some(message)) = found.try_next().await {
                handle
                    .address()
                    .del(message)
                    .execute()
                    .await
                    .map_err(|e| format!("{name}: cannot remove {old}: {e}"))?;
            }
        }
        for address in &self.addresses {
            match handle
                .address()
                .add(index, address.addr(), address.prefix_len())
                .execute()
                .await
            {
                Ok(()) => {}
                Err(e) if ztos_netlink::already_exists(&e) => {}
                Err(e) => return Err(format!("{name}: cannot add {address}: {e}")),
            }
        }
        let route = |prefix: &IpNet| -> Result<_, String> {
            let builder = rtnetlink::RouteMessageBuilder::<IpAddr>::new()
                .destination_prefix(prefix.addr(), prefix.prefix_len())
                .map_err(|e| format!("{name}: route {prefix}: {e}"))?;
            Ok(builder.output_interface(index).build())
        };
        for old in self.old_routes.difference(&self.routes) {
            // Gone already when the address that covered it went; not an error.
            let _ = handle.route().del(route(old)?).execute().await;
        }
        for prefix in &self.routes {
            // A prefix the interface's own address already covers has its connected route.
            if self.addresses.iter().any(|a| a.trunc() == *prefix) {
                continue;
            }
            match handle.route().add(route(prefix)?).execute().await {
                Ok(()) => {}
                Err(e) if ztos_netlink::already_exists(&e) => {}
                Err(e) => return Err(format!("{name}: cannot route {prefix}: {e}")),
            }
        }
        Ok(())
    }
}
