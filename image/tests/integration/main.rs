//! ztos-image's integration tests, one test binary (`--test integration`, one link) with a
//! module per area: `grow` (perm grown to a bigger disk, checked by sfdisk), `release_bundle`
//! (the `ztos-image` tool's release flow) and `reproducible` (two builds, bit-identical).

mod grow;
mod release_bundle;
mod reproducible;
