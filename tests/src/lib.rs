//! ztos-tests: system tests of ZTOS and the netns lab harness they share. `lab` builds
//! labs of network namespaces joined by veth pairs, runs ztosd in them and tears everything
//! down; the `ztos-lab` binary uses it for the interactive two-leaf demo. `tidy` checks the
//! house rules no compiler enforces.

pub mod bgp_bench;
pub mod lab;
pub mod peers;
pub mod release;
pub mod tidy;
pub mod update_bench;
pub mod vm;

pub use lab::{Lab, Node, ProcessHandle, ZtosdHandle};
