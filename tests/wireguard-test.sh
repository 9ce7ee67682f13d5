#!/usr/bin/env bash
# The spec's WireGuard test: ZTOS nodes in network namespaces with ztos-wireguard under real
# ztosd daemons; ping and an iperf3 transfer through the tunnel, the zero-trust policy (TCP 443
# from one peer only, counters), garbage on the listen port; interop with wireguard-go/wg(8)
# both ways with a preshared key, roaming, key rotation, replayed packets, a handshake flood
# (cookies), kill -9 of the plugin under the supervisor. Needs root.
# Installs iperf3 (and wireguard-go/wireguard-tools for the interop tests) when missing.
set -euo pipefail
cd "$(dirname "$0")/.."
missing=()
for tool in iperf3:iperf3 wireguard-go:wireguard-go wg:wireguard-tools python3:python3; do
    command -v "${tool%%:*}" >/dev/null || missing+=("${tool#*:}")
done
if [ "${#missing[@]}" -gt 0 ]; then
    apt-get install -y "${missing[@]}"
fi
cargo build --workspace --bins
cargo test -p ztos-tests --test system -- --nocapture --test-threads 1 wireguard::
