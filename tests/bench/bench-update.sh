#!/usr/bin/env bash
# `just bench-update`: an update's root-image write throughput next to a raw sequential write
# of the same bytes to the same virtual disk, and the time from an update's start to the new
# version blessed, in one run on this machine (qemu TCG). Method: tests/src/update_bench.rs.
# Medians of the runs go to docs/benchmarks.md.
set -euo pipefail
cd "$(dirname "$0")/../.."
bench=target/release/ztos-bench
image=target/image/ztos.qcow2
kernel=$(ls .cache/kernel/linux-image/boot/vmlinuz-* | head -n1)
for f in "$bench" "$image" target/image/initramfs.img "$kernel" target/keys/dev.key; do
    [ -e "$f" ] || { echo "missing $f: run just image" >&2; exit 1; }
done
work=$(mktemp -d /tmp/ztos-bench-update.XXXXXX)
trap 'rm -rf "$work"' EXIT

# The bundle: the same inputs as the image, as version 0.2.0, signed with the development key.
SOURCE_DATE_EPOCH=$(git log -1 --format=%ct) target/release/ztos-image build --out "$work/release" \
    --kernel-dir .cache/kernel/linux-image --bin-dir target/release --version 0.2.0 \
    --trust-key target/keys/dev.pub --no-qcow2 >/dev/null
rm -f "$work/release/ztos.img"
target/release/ztos-image bundle --from-build "$work/release" --key target/keys/dev.key --out "$work/update.ztosb"

runs=5
report=$("$bench" update --kernel "$kernel" --initramfs target/image/initramfs.img --image "$image" \
    --bundle "$work/update.ztosb" --root "$work/release/root.squashfs" --runs $runs)
echo "$report"

# values EXPR: the numbers a Python expression over the report (r) gives, space-separated.
values() { python3 -c 'import json,sys; r=json.loads(sys.argv[1]); print(" ".join(str(x) for x in eval(sys.argv[2], {}, {"r": r})))' "$report" "$1"; }
raw_mbs=$(values '[w["bytes"]/w["seconds"]/1048576 for w in r["raw"]]')
upd_mbs=$(values '[w["bytes"]/w["write_seconds"]/1048576 for w in r["update"]]')
upd_wall=$(values '[w["wall_seconds"] for w in r["update"]]')
bytes=$(values '[r["update"][0]["bytes"]]')
clock=$(values '[r["raw_clock"]]')
blessed=$(values '[r["update_to_blessed_seconds"]]')
median() { printf '%s\n' $@ | sort -g | awk '{a[NR]=$1} END {printf "%.1f\n", a[int((NR+1)/2)]}'; }
rounded() { for v in "$@"; do printf '%.1f ' "$v"; done; }
m_raw=$(median $raw_mbs)
m_upd=$(median $upd_mbs)
m_wall=$(median $upd_wall)
ratio=$(awk -v a="$m_upd" -v b="$m_raw" 'BEGIN {printf "%.2f", a/b}')
verdict=$(awk -v v="$ratio" 'BEGIN { print (v >= 0.8) ? "met" : "NOT met" }')
cpu=$(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo)
machine="$(nproc) cores ($cpu), $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo)"

section=$(cat <<MD
## Update (\`just bench-update\`)

Measured $(date -u +%Y-%m-%d) on $machine; qemu $(qemu-system-x86_64 --version | head -n1 | awk '{print $4}')
with TCG (no KVM), q35, 2 vCPUs, 1 GiB; the image's disk on virtio through a qcow2 overlay. The
root image is $(awk -v b="$bytes" 'BEGIN {printf "%.1f", b/1048576}') MiB; $runs runs of each, medians.

| measurement | median | runs | target |
|---|---|---|---|
| raw: GNU \`dd bs=4M iflag=direct oflag=direct conv=fsync\` of the root image onto slot B, as dd times itself, MiB/s | $m_raw | $(rounded $raw_mbs)| - |
| update: writing-root phase (root received and checked in memory first; 4 MiB O_DIRECT writes into slot B, fdatasync), MiB/s | $m_upd | $(rounded $upd_mbs)| >= 0.8 of raw: $ratio, $verdict |
| update: whole request (upload, verify, stage, receive root, write, re-read, boot entry), s | $m_wall | $(rounded $upd_wall)| - |
| update start to the new version blessed (reboot, boot, 60 s healthy), s | $(printf '%.1f' "$blessed") | 1 run | - |

The raw side boots the image's kernel directly with ZTOS's initramfs (its storage modules) and a
busybox \`/bench-init\` that runs the host's GNU dd (with its libc) once per run; dd's own timing
($clock) runs from its first read to its data synced and leaves out its start. dd reads and
writes 4 MiB direct, so the virtual disks move the bytes (through the page cache, copying them
on the emulated CPU was most of dd's time: 78 MiB/s); ztosd writes 4 MiB direct from memory.
The raw figure still holds dd's reads, one 4 MiB read before each write, which ztosd has
already done while receiving: the nearest a plain tool comes to writing the same bytes. The
update side is the appliance as shipped, fed over HTTPS through
qemu's user network; ztosd receives the root image whole into memory and checks its size and
sha256 before it touches slot B (receiving runs at the network's and the emulated CPU's speed,
about 8 MiB/s here, and is not part of the write), and times the write from its first byte to
the data synced. One write lasts tens of milliseconds, so single runs vary; the medians are
compared. Blessing waits \`bless_after_secs\` (60 s) of continuous health on purpose.
MD
)
# Replace the section in place (the file's other sections, and their order, stay as they are).
doc=docs/benchmarks.md
printf '%s\n' "$section" >"$work/section"
awk -v start="## Update (\`just bench-update\`)" -v file="$work/section" '
    index($0, start) == 1 { while ((getline line < file) > 0) print line; print ""; skip = 1; done = 1; next }
    skip && /^## / { skip = 0 }
    !skip { print }
    END { if (!done) { print ""; while ((getline line < file) > 0) print line } }' "$doc" >"$work/doc"
cp "$work/doc" "$doc"
echo "$section"
