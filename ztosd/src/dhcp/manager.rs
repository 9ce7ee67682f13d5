//! Keeps one DHCP runner per `dhcp = true` interface of the running configuration, and turns
//! their lease events into kernel state (through the daemon's reconciler), the lease status
//! that `ztos interfaces` and `GET /api/v1/interfaces` show, and the resolver configuration.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex as StdMutex};

use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;
use tokio::sync::{mpsc, watch};

use super::client::Lease;
use super::runner::{run, LeaseEvent};
use crate::config::ManagementDhcp;
use crate::netlink::DhcpAddressing;
use crate::plugin_host::CurrentConfig;

/// A lease as the status shows it: an API answer (`ztos_model::api::network`).
pub use ztos_model::api::network::DhcpLeaseStatus;

/// The status view of `lease`.
fn lease_status(lease: &Lease) -> DhcpLeaseStatus {
    let remaining = lease.expires_at.saturating_sub(lease.acquired);
    let expires = OffsetDateTime::now_utc() + remaining;
    DhcpLeaseStatus {
        address: format!("{}/{}", lease.offer.address, lease.offer.prefix_len),
        router: lease.offer.router.map(|r| r.to_string()),
        dns: lease.offer.dns.iter().map(ToString::to_string).collect(),
        server: lease.offer.server.to_string(),
        expires: expires.format(&Rfc3339).unwrap_or_default(),
    }
}

/// The leases in force, by interface.
pub type LeaseTable = Arc<StdMutex<BTreeMap<String, DhcpLeaseStatus>>>;

/// A boxed future of the sink's methods.
pub type SinkFuture<'a, T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send + 'a>>;

/// What the manager needs from the daemon.
pub trait LeaseSink: Send + Sync + 'static {
    /// Installs (`Some`) or removes (`None`) a lease's addressing.
    fn apply(
        &self,
        interface: String,
        lease: Option<DhcpAddressing>,
    ) -> SinkFuture<'_, Result<(), String>>;
    /// Marks an interface as running a DHCP client (it is set up) or no longer.
    fn activate(&self, interface: String, active: bool) -> SinkFuture<'_, Result<(), String>>;
    /// The interface `system.management_dhcp = "auto"` uses: the kernel's first Ethernet
    /// interface (lowest index), if there is one.
    fn first_ethernet(&self) -> SinkFuture<'_, Option<String>>;
}

/// How often `auto` looks again for an Ethernet interface when there is none yet.
const AUTO_RECHECK: std::time::Duration = std::time::Duration::from_secs(5);

/// The resolver file for the DNS servers of the leases (nameserver lines, at most three as
/// glibc reads, in interface order). Written atomically.
pub fn resolv_conf_text(leases: &BTreeMap<String, DhcpLeaseStatus>) -> String {
    let mut text = String::from("# written by ztosd from DHCP leases\n");
    let mut seen = Vec::new();
    for status in leases.values() {
        for server in &status.dns {
            if !seen.contains(server) && seen.len() < 3 {
                seen.push(server.clone());
                text.push_str(&format!("nameserver {server}\n"));
            }
        }
    }
    text
}

fn write_resolv_conf(path: &Path, leases: &BTreeMap<String, DhcpLeaseStatus>) {
    if let Err(error) = crate::store::atomic_write(path, resolv_conf_text(leases).as_bytes(), 0o644)
    {
        tracing::warn!(path = %path.display(), %error, "cannot write the resolver configuration");
    }
}

/// Runs until `config` closes: starts a runner for each interface the configuration marks
/// `dhcp = true` (or, with `system.management_dhcp = "auto"` and none marked, for the first
/// Ethernet interface, looked for every 5 s until there is one), stops the runners of interfaces that lose the flag (their lease is then
/// reported lost and removed), and applies every lease event through `sink`.
pub async fn manage(
    mut config: watch::Receiver<Arc<CurrentConfig>>,
    sink: Arc<dyn LeaseSink>,
    table: LeaseTable,
    resolv_conf: PathBuf,
) {
    let (events_tx, mut events) = mpsc::channel::<LeaseEvent>(32);
    let mut runners: BTreeMap<String, watch::Sender<bool>> = BTreeMap::new();
    loop {
        let (mut wanted, auto) = {
            let current = config.borrow_and_update();
            let wanted: Vec<String> = current
                .config
                .interfaces
                .iter()
                .filter(|i| i.dhcp)
                .map(|i| i.name.clone())
                .collect();
            let auto = current.config.system.management_dhcp == ManagementDhcp::Auto;
            (wanted, auto)
        };
        let mut auto_pending = false;
        if wanted.is_empty() && auto {
            match sink.first_ethernet().await {
                Some(name) => wanted.push(name),
                None => auto_pending = true,
            }
        }
        let stopped: Vec<String> = runners
            .keys()
            .filter(|name| !wanted.contains(name))
            .cloned()
            .collect();
        for name in stopped {
            tracing::info!(interface = %name, "DHCP stopped");
            if let Some(stop) = runners.remove(&name) {
                let _ = stop.send(true);
            }
            if let Err(error) = sink.activate(name.clone(), false).await {
                tracing::warn!(interface = %name, %error, "DHCP interface not released");
            }
        }
        for name in wanted {
            if let std::collections::btree_map::Entry::Vacant(entry) = runners.entry(name) {
                tracing::info!(interface = %entry.key(), "DHCP started");
                // The link must be up before the client can send.
                if let Err(error) = sink.activate(entry.key().clone(), true).await {
                    tracing::warn!(interface = %entry.key(), %error, "cannot set the DHCP interface up");
                }
                let (stop_tx, stop_rx) = watch::channel(false);
                tokio::spawn(run(entry.key().clone(), events_tx.clone(), stop_rx));
                entry.insert(stop_tx);
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(AUTO_RECHECK), if auto_pending => {}
            changed = config.changed() => {
                if changed.is_err() {
                    for stop in runners.values() {
                        let _ = stop.send(true);
                    }
                    return;
                }
            }
            Some(event) = events.recv() => {
                let (interface, addressing, status) = match &event {
                    LeaseEvent::Bound { interface, lease } => (
                        interface.clone(),
                        Some(DhcpAddressing {
                            address: lease.offer.address,
                            prefix_len: lease.offer.prefix_len,
                            router: lease.offer.router,
                        }),
                        Some(lease_status(lease)),
                    ),
                    LeaseEvent::Lost { interface, .. } => (interface.clone(), None, None),
                };
                match sink.apply(interface.clone(), addressing).await {
                    Ok(()) => {
                        let snapshot = {
                            let mut table = table.lock().unwrap_or_else(|p| p.into_inner());
                            match status {
                                Some(status) => table.insert(interface, status),
                                None => table.remove(&interface),
                            };
                            table.clone()
                        };
                        write_resolv_conf(&resolv_conf, &snapshot);
                    }
                    Err(error) => {
                        tracing::error!(%interface, %error, "installing the DHCP lease failed");
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dhcp_resolv_conf_lists_each_server_once_at_most_three() {
        let status = |dns: &[&str]| DhcpLeaseStatus {
            address: "10.0.2.15/24".into(),
            router: None,
            dns: dns.iter().map(|s| s.to_string()).collect(),
            server: "10.0.2.2".into(),
            expires: String::new(),
        };
        let mut leases = BTreeMap::new();
        leases.insert("eth0".to_string(), status(&["10.0.2.3", "1.1.1.1"]));
        leases.insert(
            "eth1".to_string(),
            status(&["1.1.1.1", "9.9.9.9", "8.8.8.8"]),
        );
        assert_eq!(
            resolv_conf_text(&leases),
            "# written by ztosd from DHCP leases\nnameserver 10.0.2.3\nnameserver 1.1.1.1\nnameserver 9.9.9.9\n"
        );
        assert_eq!(
            resolv_conf_text(&BTreeMap::new()),
            "# written by ztosd from DHCP leases\n"
        );
    }
}
