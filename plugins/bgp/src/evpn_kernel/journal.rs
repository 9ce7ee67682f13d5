//! The flood journal: the ingress-replication remotes ztos-bgp added, one file per network
//! namespace under `/run/ztos`, read by [`EvpnKernel::sweep`](super::EvpnKernel::sweep).

use std::collections::BTreeSet;
use std::io;
use std::net::IpAddr;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use super::{mac_text, EvpnKernelError, JournalError};

/// The flood journal of the calling thread's network namespace, in `dir`.
pub(super) fn journal_in(dir: &Path) -> Result<PathBuf, EvpnKernelError> {
    let namespace =
        std::fs::metadata("/proc/thread-self/ns/net").map_err(EvpnKernelError::Namespace)?;
    Ok(dir.join(format!("bgp-evpn-flood-{}", namespace.ino())))
}

/// The flood remotes ztos-bgp added: (VXLAN device, its MAC address, VTEP).
pub(super) type Journal = BTreeSet<(String, [u8; 6], IpAddr)>;

/// The journal: one `device device-mac vtep` line per flood remote ztos-bgp added.
pub(super) fn render_journal(entries: &Journal) -> String {
    entries
        .iter()
        .map(|(device, mac, vtep)| format!("{device} {} {vtep}\n", mac_text(mac)))
        .collect()
}

pub(super) fn parse_mac(text: &str) -> Option<[u8; 6]> {
    let mut mac = [0; 6];
    let mut parts = text.split(':');
    for byte in &mut mac {
        let part = parts.next()?;
        if part.len() != 2 {
            return None;
        }
        *byte = u8::from_str_radix(part, 16).ok()?;
    }
    parts.next().is_none().then_some(mac)
}

pub(super) fn parse_journal(text: &str) -> Result<Journal, JournalError> {
    let mut entries = BTreeSet::new();
    for (number, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let fields: Vec<&str> = line.split_whitespace().collect();
        let [device, mac, vtep] = fields.as_slice() else {
            return Err(JournalError::Fields {
                line: number + 1,
                text: line.to_string(),
            });
        };
        let mac = parse_mac(mac).ok_or_else(|| JournalError::Mac {
            line: number + 1,
            mac: mac.to_string(),
        })?;
        let vtep = vtep
            .parse::<IpAddr>()
            .map_err(|source| JournalError::Vtep {
                line: number + 1,
                vtep: vtep.to_string(),
                source,
            })?;
        entries.insert((device.to_string(), mac, vtep));
    }
    Ok(entries)
}

pub(super) fn read_journal(path: &Path) -> Result<Journal, EvpnKernelError> {
    match std::fs::read_to_string(path) {
        Ok(text) => parse_journal(&text).map_err(|source| EvpnKernelError::JournalSyntax {
            path: path.to_path_buf(),
            source,
        }),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(BTreeSet::new()),
        Err(source) => Err(EvpnKernelError::JournalRead {
            path: path.to_path_buf(),
            source,
        }),
    }
}

/// Replaces the journal atomically (write, then rename); an empty journal is no file.
pub(super) fn write_journal(path: &Path, entries: &Journal) -> Result<(), EvpnKernelError> {
    let fail = |source: io::Error| EvpnKernelError::JournalWrite {
        path: path.to_path_buf(),
        source,
    };
    if entries.is_empty() {
        return match std::fs::remove_file(path) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(fail(e)),
            _ => Ok(()),
        };
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(fail)?;
    }
    let temporary = path.with_extension("new");
    std::fs::write(&temporary, render_journal(entries)).map_err(fail)?;
    std::fs::rename(&temporary, path).map_err(fail)
}
