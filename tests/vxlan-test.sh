#!/usr/bin/env bash
# The spec's VXLAN lab: two ZTOS leaves in network namespaces, a host behind each, VNI 100
# between them; asserts that the hosts ping each other. Needs root (network namespaces).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --workspace --bins
cargo test -p ztos-tests --test system -- --nocapture vxlan::
