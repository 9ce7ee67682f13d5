#!/usr/bin/env bash
# `just bench-api`: API throughput and config apply time, measured in one run on this machine.
#
# ztosd (release build) runs in a network namespace of its own, so the 500-VNI config and the
# HTTPS listener never touch the host's interfaces. Measured:
#   1. GET /api/v1/security/status over HTTPS with wrk (2 threads, 32 connections, 10 s, x3)
#   2. the same over the unix socket with ztos-bench (32 keep-alive connections, 10 s, x3)
#   3. commit of a config with 500 VXLAN VNIs (500 bridges + 500 vxlan devices), then the same
#      config again unchanged (x3 each, in fresh namespaces for the first)
# Medians of the repeats are written to docs/benchmarks.md.
set -euo pipefail
cd "$(dirname "$0")/../.."
root=$PWD
bin=$root/target/release
[ "$(id -u)" = 0 ] || { echo "bench-api needs root (network namespaces)" >&2; exit 1; }
for b in ztosd ztos ztos-bench; do [ -x "$bin/$b" ] || { echo "missing $bin/$b: cargo build --release --workspace --bins" >&2; exit 1; }; done
command -v wrk >/dev/null || { echo "wrk is missing: just deps" >&2; exit 1; }

work=$(mktemp -d /tmp/ztos-bench.XXXXXX)
ns=ztos-bench-$$
pid=""
cleanup() {
    [ -n "$pid" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null || true
    ip netns del "$ns" 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

start_ztosd() {
    ip netns del "$ns" 2>/dev/null || true
    ip netns add "$ns"
    ip -n "$ns" link set lo up
    rm -rf "$work/state"
    ip netns exec "$ns" "$bin/ztosd" --state-dir "$work/state" --api-socket "$work/api.sock" \
        --plugin-socket "$work/plugin.sock" --https-listen 127.0.0.1:8443 --log warn \
        >"$work/ztosd.log" 2>&1 &
    pid=$!
    for _ in $(seq 100); do [ -S "$work/api.sock" ] && break; sleep 0.1; done
    [ -S "$work/api.sock" ] || { cat "$work/ztosd.log"; echo "ztosd did not start" >&2; exit 1; }
}
stop_ztosd() { kill "$pid"; wait "$pid" 2>/dev/null || true; pid=""; }
median() { sort -g | awk '{a[NR]=$1} END {printf "%.1f\n", a[int((NR+1)/2)]}'; }
rounded() { for v in "$@"; do printf '%.1f ' "$v"; done; }

start_ztosd
token=$("$bin/ztos" --socket "$work/api.sock" --json token create bench --role read | sed -n 's/.*"secret": "\(ztos_[0-9a-f]*\)".*/\1/p')
[ -n "$token" ] || { echo "could not create a token" >&2; exit 1; }

https_rps=(); https_p99=(); unix_rps=(); unix_p99=()
for run in 1 2 3; do
    out=$(ip netns exec "$ns" wrk -t2 -c32 -d10s --latency -H "Authorization: Bearer $token" \
        https://127.0.0.1:8443/api/v1/security/status)
    https_rps+=("$(awk '/^Requests\/sec/ {print $2}' <<<"$out")")
    # wrk prints latency percentiles with a unit (us, ms, s); normalise to ms.
    https_p99+=("$(awk '$1=="99%" {v=$2; if (v ~ /us$/) {sub(/us/,"",v); v/=1000} else if (v ~ /ms$/) {sub(/ms/,"",v)} else if (v ~ /s$/) {sub(/s/,"",v); v*=1000}; print v}' <<<"$out")")
    errors=$(awk '/Non-2xx/ {print $NF}' <<<"$out"); [ -z "$errors" ] || { echo "wrk saw non-2xx answers: $errors" >&2; exit 1; }
    json=$("$bin/ztos-bench" load --socket "$work/api.sock" --connections 32 --seconds 10)
    unix_rps+=("$(sed -n 's/.*"requests_per_second":\([0-9.]*\).*/\1/p' <<<"$json")")
    unix_p99+=("$(sed -n 's/.*"p99_ms":\([0-9.]*\).*/\1/p' <<<"$json")")
done
stop_ztosd

# A config with 500 VNIs: the VTEP address on lo, and per VNI a bridge and a VXLAN device with two
# static remote VTEPs.
cfg=$work/vni500.toml
{
    echo '[system]'; echo 'hostname = "bench"'; echo
    # The VTEP address sits on lo: this host's kernel has no dummy module for a separate loopback.
    echo '[[interfaces]]'; echo 'name = "lo"'; echo 'kind = "loopback"'; echo 'addresses = ["10.255.0.1/32"]'
    for i in $(seq 1 500); do
        vni=$((1000 + i))
        printf '\n[[bridges]]\nname = "br%d"\n' "$vni"
        printf '\n[[vxlan]]\nvni = %d\nlocal_vtep = "10.255.0.1"\nbridge = "br%d"\nremote_vteps = ["10.255.0.2", "10.255.0.3"]\n' "$vni" "$vni"
    done
} >"$cfg"
# Removing the 500 VNIs through ztosd before the namespace goes matters: deleting a namespace
# that still holds 1,000 devices makes the kernel tear them down in the background under the
# rtnl lock, which would slow the next run's first commit down by seconds.
empty=$work/empty.toml
printf '[system]\nhostname = "bench"\n' >"$empty"
ms() { sed -n 's/.*"milliseconds":\([0-9.]*\).*/\1/p' <<<"$1"; }
first=(); again=(); removal=()
for run in 1 2 3; do
    start_ztosd
    r1=$("$bin/ztos-bench" commit --socket "$work/api.sock" --file "$cfg")
    r2=$("$bin/ztos-bench" commit --socket "$work/api.sock" --file "$cfg")
    r3=$("$bin/ztos-bench" commit --socket "$work/api.sock" --file "$empty")
    first+=("$(ms "$r1")")
    again+=("$(ms "$r2")")
    removal+=("$(ms "$r3")")
    changes_first=$(sed -n 's/.*"changes":\([0-9]*\).*/\1/p' <<<"$r1")
    changes_again=$(sed -n 's/.*"changes":\([0-9]*\).*/\1/p' <<<"$r2")
    [ "$changes_again" = 0 ] || { echo "unchanged re-commit made $changes_again kernel changes" >&2; exit 1; }
    stop_ztosd
done

m_https_rps=$(printf '%s\n' "${https_rps[@]}" | median)
m_https_p99=$(printf '%s\n' "${https_p99[@]}" | median)
m_unix_rps=$(printf '%s\n' "${unix_rps[@]}" | median)
m_unix_p99=$(printf '%s\n' "${unix_p99[@]}" | median)
m_first=$(printf '%s\n' "${first[@]}" | median)
m_again=$(printf '%s\n' "${again[@]}" | median)
m_removal=$(printf '%s\n' "${removal[@]}" | median)
cpu=$(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo)
machine="$(nproc) cores ($cpu), $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), kernel $(uname -r)"
verdict() { awk -v v="$1" -v t="$2" -v dir="$3" 'BEGIN { ok = (dir == "min") ? (v >= t) : (v <= t); print ok ? "met" : "NOT met" }'; }

section=$(cat <<MD
## API (\`just bench-api\`)

Measured $(date -u +%Y-%m-%d) on $machine; ztosd release build in its own network namespace,
load generator on the same 2 cores. Medians of 3 runs of 10 s, 32 connections.

| measurement | median | runs | target |
|---|---|---|---|
| GET /api/v1/security/status over HTTPS (wrk -t2 -c32), requests/s | $m_https_rps | $(rounded "${https_rps[@]}")| >= 20000: $(verdict "$m_https_rps" 20000 min) |
| same, p99 latency (ms) | $m_https_p99 | $(rounded "${https_p99[@]}")| < 5 ms: $(verdict "$m_https_p99" 5 max) |
| GET /api/v1/security/status over the unix socket (ztos-bench, 32 conns), requests/s | $m_unix_rps | $(rounded "${unix_rps[@]}")| >= 20000: $(verdict "$m_unix_rps" 20000 min) |
| same, p99 latency (ms) | $m_unix_p99 | $(rounded "${unix_p99[@]}")| < 5 ms: $(verdict "$m_unix_p99" 5 max) |
| commit of a 500-VNI config (500 bridges + 500 VXLAN, $changes_first kernel changes), ms | $m_first | $(rounded "${first[@]}")| - |
| re-commit of the same config unchanged (0 kernel changes), ms | $m_again | $(rounded "${again[@]}")| < 100 ms: $(verdict "$m_again" 100 max) |
| commit removing all 500 VNIs again, ms | $m_removal | $(rounded "${removal[@]}")| - |

Notes:

- Removing the 500 VNIs is slow because the kernel waits for an RCU grace period on every link
  it deletes, and ztosd deletes 1,000 links one by one. The kernel can delete a whole
  interface group in one RTM_DELLINK (IFLA_GROUP); putting the devices ZTOS creates into one
  group would make bulk removal a single request. Not done yet.
- The script removes the VNIs through ztosd before deleting each namespace: deleting a
  namespace that still holds 1,000 devices makes the kernel tear them down in the background
  under the rtnl lock, and the next run's first commit then took 8.5 s instead of 0.4 s.
MD
)
doc=docs/benchmarks.md
[ -f "$doc" ] || printf '# Benchmarks\n\nNumbers measured by the `just bench-*` recipes. Each recipe rewrites its own section.\n' >"$doc"
# Replace this recipe's section, keep the others.
awk -v start="## API (\`just bench-api\`)" 'BEGIN{skip=0} index($0,start)==1 {skip=1; next} skip && /^## / {skip=0} !skip {print}' "$doc" >"$work/doc"
printf '%s\n\n%s\n' "$(cat "$work/doc")" "$section" >"$doc"
echo "$section"
