#!/usr/bin/env bash
# `just bench-wg`: WireGuard throughput (iperf3 TCP), ping latency and CPU per Gbit/s through
# ztos-wireguard, Debian's wireguard-go, boringtun's own CLI and ztos-wireguard with 1,000
# policy rules, in one run, two network namespaces joined by one veth link (the topology of
# tests/tests/system/wireguard.rs). Method: tests/src/bin/ztos-wg-bench.rs. Medians go to the
# WireGuard section of docs/benchmarks.md (replaced on every run). Needs root.
# RUNS and SECONDS_PER_RUN (environment) change the transfers per implementation and their length.
set -euo pipefail
cd "$(dirname "$0")/../.."
runs=${RUNS:-5}
seconds=${SECONDS_PER_RUN:-10}

missing=()
for tool in iperf3:iperf3 wireguard-go:wireguard-go wg:wireguard-tools ping:iputils-ping python3:python3; do
    command -v "${tool%%:*}" >/dev/null || missing+=("${tool#*:}")
done
if [ "${#missing[@]}" -gt 0 ]; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi

cargo build --release -p ztosd -p ztos-wireguard -p ztos-tests --bins

# boringtun's CLI from crates.io, built once into a cache under target/.
cache=target/bench-cache/boringtun
boringtun=()
boringtun_note=""
if [ ! -x "$cache/bin/boringtun-cli" ]; then
    mkdir -p "$cache"
    if ! cargo install boringtun-cli --locked --root "$cache" >"$cache/install.log" 2>&1; then
        boringtun_note="boringtun-cli did not build from crates.io: $(grep -m1 '^error' "$cache/install.log" || tail -n1 "$cache/install.log")"
        echo "$boringtun_note" >&2
    fi
fi
[ -x "$cache/bin/boringtun-cli" ] && boringtun=(--boringtun "$cache/bin/boringtun-cli")

work=$(mktemp -d /tmp/ztos-bench-wg.XXXXXX)
trap 'rm -rf "$work"' EXIT
load_before=$(cut -d' ' -f1-3 /proc/loadavg)
target/release/ztos-wg-bench --runs "$runs" --seconds "$seconds" "${boringtun[@]}" >"$work/report.json"
load_after=$(cut -d' ' -f1-3 /proc/loadavg)
cat "$work/report.json"

cpu=$(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo)
machine="$(nproc) cores ($cpu), $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), kernel $(uname -r)"

section=$(python3 - "$work/report.json" "$machine" "$(date -u +%Y-%m-%d)" "$load_before" "$load_after" "$boringtun_note" <<'PY'
import json, statistics, sys
report = json.load(open(sys.argv[1]))
machine, day, load_before, load_after, note = sys.argv[2:7]
rows = {r["name"]: r for r in report["results"]}

def med(values):
    return statistics.median(values) if values else float("nan")

def summary(r):
    t = r["transfers"]
    return {
        "mbit": med([x["mbit_per_s"] for x in t]),
        "runs": " ".join(f'{x["mbit_per_s"]:.0f}' for x in t),
        "rtt": med(r["rtt_ms"]),
        "cpu": med([x["cpu_seconds_per_gbit"] for x in t]),
        "retr": med([x["retransmits"] for x in t]),
    }

s = {name: summary(r) for name, r in rows.items()}
out = []
out.append("## WireGuard (`just bench-wg`)")
out.append("")
out.append(f"Measured {day} on {machine}. Two network namespaces joined by one veth link, the same")
out.append("implementation on both ends (MTU 1420); iperf3 TCP, one stream, client to server,")
out.append(f'{report["runs"]} transfers of {report["seconds"]} s each, medians; ping: {report["pings"]} echoes 50 ms apart')
out.append("on the idle tunnel, median rtt. CPU: user + system seconds of the datapath processes of both")
out.append("nodes during a transfer, per Gbit received. iperf3 itself runs on the same 2 cores, and other")
out.append(f"work on the machine may compete (load average {load_before} before, {load_after} after).")
out.append("")
out.append("| implementation | Mbit/s (median) | runs, Mbit/s | ping rtt, ms | CPU s per Gbit | TCP retransmits |")
out.append("|---|---|---|---|---|---|")
for name, r in rows.items():
    x = s[name]
    out.append(f'| {r["description"]} | {x["mbit"]:.0f} | {x["runs"]} | {x["rtt"]:.3f} | {x["cpu"]:.2f} | {x["retr"]:.0f} |')
out.append("")
targets = []
if "ztos" in s and "wireguard-go" in s:
    ratio = s["ztos"]["mbit"] / s["wireguard-go"]["mbit"]
    targets.append(f'- ztos-wireguard / wireguard-go throughput: {ratio:.2f} x (target >= 1.5 x: {"met" if ratio >= 1.5 else "NOT met"})')
if "boringtun" in s and "ztos" in s:
    targets.append(f'- ztos-wireguard / boringtun CLI throughput: {s["ztos"]["mbit"] / s["boringtun"]["mbit"]:.2f} x')
rules = [n for n in s if n.startswith("ztos-") and n.endswith("-rules")]
for n in rules:
    cost = 1 - s[n]["mbit"] / s["ztos"]["mbit"]
    cpu = s[n]["cpu"] / s["ztos"]["cpu"] - 1
    targets.append(f'- {rows[n]["description"]}: throughput cost {cost * 100:.1f} % (negative: faster), CPU per Gbit {cpu * 100:+.1f} % (target: under 10 % cost: {"met" if cost < 0.10 else "NOT met"})')
out.extend(targets)
if note:
    out.append(f"- {note}")
elif "boringtun" not in s:
    out.append("- boringtun's CLI was not measured.")
out.append("")
out.append("The 1,000-rule policy: 998 rules that do not match the flow, then the two that allow it")
out.append("(ICMP and TCP 5201 from the client's key). A quarter of the 998 are TCP 5000-5999 from the")
out.append("client's key with other destinations, so they fall into the flow's index bucket and the")
out.append("classifier compares a flow's first packet with each of them; the rest differ in port, protocol")
out.append("or peer. Later packets of a flow are answered by the per-thread verdict cache (docs/wireguard.md).")
print("\n".join(out))
PY
)
doc=docs/benchmarks.md
awk -v start="## WireGuard (\`just bench-wg\`)" 'BEGIN{skip=0} index($0,start)==1 {skip=1; next} skip && /^## / {skip=0} !skip {print}' "$doc" >"$work/doc"
printf '%s\n\n%s\n' "$(cat "$work/doc")" "$section" >"$doc"
echo "$section"
