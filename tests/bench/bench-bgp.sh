#!/usr/bin/env bash
# `just bench-bgp`: BGP route throughput and memory, measured in one run on this machine for
# ztos-bgp, BIRD 2, FRR's bgpd and GoBGP with the same harness (tests/src/bgp_bench.rs).
#
# Peer A (AS 65001) sends N IPv4 prefixes to the daemon under test (AS 65000) in a network
# namespace of its own, which passes them to peer B (AS 65002); the time is from A's first
# UPDATE to B having all N, the memory the daemon's peak RSS. Medians of the repeats and the
# ratios to BIRD are written to docs/benchmarks.md. Needs root (network namespaces).
set -euo pipefail
cd "$(dirname "$0")/../.."
bin=target/release
[ "$(id -u)" = 0 ] || { echo "bench-bgp needs root (network namespaces)" >&2; exit 1; }
for b in ztosd ztos-bgp ztos-bench; do
    [ -x "$bin/$b" ] || { echo "missing $bin/$b: cargo build --release --workspace --bins" >&2; exit 1; }
done

work=$(mktemp -d /tmp/ztos-bench-bgp.XXXXXX)
policy=/usr/sbin/policy-rc.d
created_policy=""
cleanup() {
    [ -z "$created_policy" ] || rm -f "$policy"
    rm -rf "$work"
}
trap cleanup EXIT

# The peers from Debian. Installing must not start their packaged services on the host (the
# bench starts its own daemons in a namespace): service starts are refused while apt runs, and
# the units the packages enabled are disabled again.
need=()
command -v bird >/dev/null || need+=(bird2)
[ -x /usr/lib/frr/bgpd ] || need+=(frr)
command -v gobgpd >/dev/null || need+=(gobgpd)
if [ ${#need[@]} -gt 0 ]; then
    echo "installing: ${need[*]}"
    if [ ! -e "$policy" ]; then
        printf '#!/bin/sh\n# just bench-bgp: no service starts while installing\nexit 101\n' >"$policy"
        chmod 755 "$policy"
        created_policy=1
    fi
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
    if [ -d /run/systemd/system ]; then
        for p in "${need[@]}"; do
            case $p in
                bird2) systemctl disable -q bird.service 2>/dev/null || true ;;
                frr) systemctl disable -q frr.service 2>/dev/null || true ;;
                gobgpd) systemctl disable -q gobgpd.service 2>/dev/null || true ;;
            esac
        done
    fi
    [ -z "$created_policy" ] || rm -f "$policy"
    created_policy=""
fi

bird_version=$(bird --version 2>&1 | awk '{print $NF; exit}')
frr_version=$(/usr/lib/frr/bgpd -v 2>&1 | awk '/version/ {print $NF; exit}')
gobgp_version=$(gobgpd --version 2>&1 | awk '{print $NF; exit}')
ztos_version=$("$bin/ztos-bgp" --version | awk '{print $NF; exit}')

# 100k /24s five times per daemon, 1M /32s three times (GoBGP takes two minutes a run there);
# medians. Runs of the daemons are interleaved. About 8 minutes on 2 cores.
sizes=(--size 100000/24x5 --size 1000000/32x3)
sets=10
load_before=$(cut -d' ' -f1-3 /proc/loadavg)
started=$(date +%s)
report=$("$bin/ztos-bench" bgp "${sizes[@]}" --attribute-sets $sets --timeout-secs 400 --markdown "$work/tables.md")
elapsed=$(( $(date +%s) - started ))
load_after=$(cut -d' ' -f1-3 /proc/loadavg)
mkdir -p target
printf '%s\n' "$report" >target/bench-bgp.json
failed=$(python3 -c 'import json,sys; r=json.loads(sys.argv[1]); print(sum(1 for s in r["results"] for x in s["runs"] if x["error"]))' "$report")

cpu=$(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo)
machine="$(nproc) cores ($cpu), $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), kernel $(uname -r)"

section=$(cat <<MD
## BGP (\`just bench-bgp\`)

Measured $(date -u +%Y-%m-%d) on $machine, in one run of $((elapsed / 60)) min $((elapsed % 60)) s:
ztos-bgp $ztos_version (release build, under ztosd, \`--no-kernel\`), BIRD $bird_version (no kernel
protocol), FRR bgpd $frr_version (\`-Z -n\`: no zebra, no kernel), GoBGP $gobgp_version (no zebra).

Method (the one Ze publishes): three network namespaces joined by veths, peer A (AS 65001) -
daemon under test (AS 65000) - peer B (AS 65002), eBGP both sides, the daemon passive. A and B
are \`ztos-bench bgp\`, written with ZTOS's codec. A sends N IPv4 prefixes (20.0.0.0 upwards)
in full 4096-byte UPDATEs with $sets attribute sets shared by the prefixes (AS path of three ASNs,
two communities, a MED on some), then End-of-RIB; B decodes everything it receives and counts
distinct prefixes, and checks each route came through the daemon (AS path 65000 65001 ...; next
hop as the daemon sets it by default, $(python3 -c 'import json,sys; r=json.loads(sys.argv[1]); print(", ".join(sorted({h for s in r["results"] for x in s["runs"] for h in x["next_hops"]})))' "$report") at B).
Time: A's first UPDATE written to B holding all N. Memory: the daemon's VmHWM after B has all N
(for ztos-bgp the plugin process; ztosd's peak is given beside it); bytes per route is (peak -
RSS with both sessions up before A sent) / N. Daemon CPU is its user + system time over the
same span. Each run starts a fresh daemon in fresh namespaces. Everything shares the same
$(nproc) cores: A and B run next to the daemon, and other work on the machine may compete (load
average $load_before before, $load_after after). Defaults of each daemon, except what would skew
the comparison: FRR \`no bgp ebgp-requires-policy\` and \`advertisement-interval 0\` towards
B, BIRD \`import all\`/\`export all\`.
$(cat "$work/tables.md")

Raw numbers of the last run: \`target/bench-bgp.json\` (not committed).
MD
)
doc=docs/benchmarks.md
[ -f "$doc" ] || printf '# Benchmarks\n\nNumbers measured by the `just bench-*` recipes. Each recipe rewrites its own section.\n' >"$doc"
# Replace this recipe's section, keep the others.
awk -v start="## BGP (\`just bench-bgp\`)" 'BEGIN{skip=0} index($0,start)==1 {skip=1; next} skip && /^## / {skip=0} !skip {print}' "$doc" >"$work/doc"
printf '%s\n\n%s\n' "$(cat "$work/doc")" "$section" >"$doc"
echo "$section"
if [ "$failed" != 0 ]; then
    echo "bench-bgp: $failed run(s) failed; see the section above" >&2
    exit 1
fi
