//! The system tests of ZTOS, one test binary (`--test system`) so that one link serves them
//! all: each module was once its own `tests/*.rs` file. Filter by module to run one area,
//! e.g. `cargo test -p ztos-tests --test system -- vxlan::`.
//!
//! - netns labs (need root, or `ZTOS_SKIP_ROOT_TESTS=1` to skip): `bgp`, `bgp_interop`,
//!   `console`, `dhcp`, `evpn`, `spec`, `supervisor`, `vxlan`, `wireguard`; labs are named
//!   per test (`ztos-t-<pid>-<lab>-<node>`), so tests of different modules run side by side;
//! - the image under qemu, `#[ignore]`d (`just vm-test` runs them): `vm_boot`, `vm_update`;
//! - `tidy`: the house rules over the whole repository (no root).

mod bgp;
mod bgp_interop;
mod console;
mod dhcp;
mod evpn;
mod spec;
mod supervisor;
mod tidy;
mod vm_boot;
mod vm_update;
mod vxlan;
mod wireguard;
