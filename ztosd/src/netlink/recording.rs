//! `RecordingKernel`: an in-memory kernel that applies operations to a `KernelState` and
//! records them, with the kernel's refusals (duplicate names, missing devices, unknown link
//! kinds). Unit tests and API tests that run without root use it instead of netlink.

use std::io;
use std::sync::{Arc, Mutex, MutexGuard};

use super::model::{KernelLink, KernelRoute, KernelState, LinkChange, LinkKind, Op, RTPROT_ZTOS};
use super::plan::route_matches;
use super::{Kernel, KernelFuture, ReconcileError, MANAGED_ALIAS};

/// A fake kernel. Cloning gives another handle to the same state, so a test can keep one
/// while the `Reconciler` owns the other.
#[derive(Debug, Clone, Default)]
pub struct RecordingKernel {
    inner: Arc<Mutex<Inner>>,
}

#[derive(Debug, Default)]
struct Inner {
    state: KernelState,
    executed: Vec<Op>,
    unsupported_kinds: Vec<String>,
    fail_on: Option<Op>,
}

impl RecordingKernel {
    /// A kernel that starts with `state` (use `KernelState::default()` for an empty one).
    pub fn new(state: KernelState) -> RecordingKernel {
        RecordingKernel {
            inner: Arc::new(Mutex::new(Inner {
                state,
                ..Inner::default()
            })),
        }
    }

    /// A kernel with `lo` and the given existing (physical) interfaces, all down.
    pub fn with_interfaces(names: &[&str]) -> RecordingKernel {
        let mut state = KernelState::default();
        for name in std::iter::once(&"lo").chain(names) {
            let index = state.links.len() as u32 + 1;
            state.links.push(KernelLink {
                index,
                name: name.to_string(),
                kind: LinkKind::Other(if *name == "lo" { "device" } else { "veth" }.into()),
                alias: None,
                mtu: if *name == "lo" { 65536 } else { 1500 },
                up: false,
                oper_state: "down".into(),
                mac: None,
                master: None,
            });
        }
        RecordingKernel::new(state)
    }

    /// Makes creating links of this kind fail the way a kernel without the module does.
    pub fn refuse_kind(&self, kind: &str) {
        self.lock().unsupported_kinds.push(kind.to_string());
    }

    /// Makes executing exactly this operation fail (once) with EIO.
    pub fn fail_on(&self, op: Op) {
        self.lock().fail_on = Some(op);
    }

    /// The current in-memory kernel state.
    pub fn state(&self) -> KernelState {
        self.lock().state.clone()
    }

    /// Every operation executed successfully so far, in order.
    pub fn executed(&self) -> Vec<Op> {
        self.lock().executed.clone()
    }

    /// Forgets the recorded operations (not the state).
    pub fn clear_executed(&self) {
        self.lock().executed.clear();
    }

    /// Changes the state behind the reconciler's back, as another program would.
    pub fn modify(&self, change: impl FnOnce(&mut KernelState)) {
        change(&mut self.lock().state)
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn apply(&self, op: &Op) -> Result<(), ReconcileError> {
        let mut inner = self.lock();
        if inner.fail_on.as_ref() == Some(op) {
            inner.fail_on = None;
            return Err(kernel_error(op, libc_errno::EIO));
        }
        if let Op::CreateLink { name, kind } = op {
            if inner.unsupported_kinds.iter().any(|k| k == kind.name()) {
                return Err(super::creation_refused(name, kind, unsupported()));
            }
        }
        apply_to_state(&mut inner.state, op).map_err(|errno| kernel_error(op, errno))?;
        inner.executed.push(op.clone());
        Ok(())
    }
}

impl Kernel for RecordingKernel {
    fn read_state(&self) -> KernelFuture<'_, KernelState> {
        let state = self.state();
        Box::pin(async move { Ok(state) })
    }

    fn execute<'a>(&'a self, op: &'a Op) -> KernelFuture<'a, ()> {
        let result = self.apply(op);
        Box::pin(async move { result })
    }
}

/// The errno values the fake kernel answers with.
mod libc_errno {
    pub const ENOENT: i32 = 2;
    pub const EIO: i32 = 5;
    pub const ENODEV: i32 = 19;
    pub const EEXIST: i32 = 17;
    pub const EADDRNOTAVAIL: i32 = 99;
    pub const EOPNOTSUPP: i32 = 95;
}

fn unsupported() -> io::Error {
    io::Error::from_raw_os_error(libc_errno::EOPNOTSUPP)
}

fn kernel_error(op: &Op, errno: i32) -> ReconcileError {
    ReconcileError::Kernel {
        op: op.to_string(),
        source: io::Error::from_raw_os_error(errno),
    }
}

/// Applies one operation the way the kernel would, or returns the errno it would answer.
fn apply_to_state(state: &mut KernelState, op: &Op) -> Result<(), i32> {
    use libc_errno::*;
    let exists = |state: &KernelState, name: &str| state.link(name).is_some();
    match op {
        Op::CreateLink { name, kind } => {
            if exists(state, name) {
                return Err(EEXIST);
            }
            if let LinkKind::Vxlan(params) = kind {
                if let Some(underlay) = &params.underlay {
                    if !exists(state, underlay) {
                        return Err(ENODEV);
                    }
                }
            }
            let index = state.links.iter().map(|l| l.index).max().unwrap_or(0) + 1;
            state.links.push(KernelLink {
                index,
                name: name.clone(),
                kind: kind.clone(),
                alias: Some(MANAGED_ALIAS.to_string()),
                mtu: if matches!(kind, LinkKind::Vxlan(_)) {
                    1450
                } else {
                    1500
                },
                up: false,
                oper_state: "down".into(),
                mac: Some(format!("02:00:00:00:00:{:02x}", index & 0xff)),
                master: None,
            });
        }
        Op::SetLink { name, change } => {
            if let LinkChange::Master(Some(master)) = change {
                if !exists(state, master) {
                    return Err(ENODEV);
                }
            }
            let link = state
                .links
                .iter_mut()
                .find(|l| &l.name == name)
                .ok_or(ENODEV)?;
            match change {
                LinkChange::Mtu(mtu) => link.mtu = *mtu,
                LinkChange::Up => {
                    link.up = true;
                    link.oper_state = "up".into();
                }
                LinkChange::Down => {
                    link.up = false;
                    link.oper_state = "down".into();
                }
                LinkChange::Master(master) => link.master = master.clone(),
            }
        }
        Op::DeleteLink { name } => {
            if !exists(state, name) {
                return Err(ENODEV);
            }
            state.links.retain(|l| &l.name != name);
            for link in &mut state.links {
                if link.master.as_ref() == Some(name) {
                    link.master = None;
                }
            }
            state.addresses.retain(|(link, _)| link != name);
            state.flood.retain(|entry| &entry.link != name);
            state
                .routes
                .retain(|r| r.route.device.as_ref() != Some(name));
        }
        Op::AddAddress { link, address } => {
            if !exists(state, link) {
                return Err(ENODEV);
            }
            let entry = (link.clone(), *address);
            if state.addresses.contains(&entry) {
                return Err(EEXIST);
            }
            state.addresses.push(entry);
        }
        Op::DelAddress { link, address } => {
            let before = state.addresses.len();
            state
                .addresses
                .retain(|(l, a)| !(l == link && a == address));
            if state.addresses.len() == before {
                return Err(EADDRNOTAVAIL);
            }
        }
        Op::AddRoute(route) => {
            if let Some(device) = &route.device {
                if !exists(state, device) {
                    return Err(ENODEV);
                }
            }
            if state.routes.iter().any(|r| r.route.key() == route.key()) {
                return Err(EEXIST);
            }
            state.routes.push(KernelRoute {
                route: route.clone(),
                protocol: RTPROT_ZTOS,
            });
        }
        Op::DelRoute(route) => {
            let position = state
                .routes
                .iter()
                .position(|r| r.protocol == RTPROT_ZTOS && route_matches(route, &r.route))
                .ok_or(ENOENT)?;
            state.routes.remove(position);
        }
        Op::AddFlood(entry) => {
            if !exists(state, &entry.link) {
                return Err(ENODEV);
            }
            if state.flood.contains(entry) {
                return Err(EEXIST);
            }
            state.flood.push(entry.clone());
        }
        Op::DelFlood(entry) => {
            let before = state.flood.len();
            state.flood.retain(|e| e != entry);
            if state.flood.len() == before {
                return Err(ENOENT);
            }
        }
    }
    Ok(())
}
