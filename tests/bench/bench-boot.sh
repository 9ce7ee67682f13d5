#!/usr/bin/env bash
# `just bench-boot`: image sizes, and boot time to API ready under qemu TCG next to the same
# kernel booting a trivial init, in one run on this machine.
#
# Like for like: both boot Debian's kernel directly (`-kernel`, SeaBIOS) with `quiet`; the
# trivial init (tests/bench/trivial-init.rs, static) mounts devtmpfs and prints a marker; ZTOS
# boots its own initramfs, finds root A on the image, switch_roots, runs the system stage and
# the supervisor, and counts as ready when the console prints the first-boot password prompt,
# which it does once ztosd's API has answered. The full UEFI boot of the image (OVMF,
# systemd-boot) to the same point is measured too. Medians of 3 runs go to docs/benchmarks.md.
set -euo pipefail
cd "$(dirname "$0")/../.."
bench=target/release/ztos-bench
image=target/image/ztos.qcow2
kernel=$(ls .cache/kernel/linux-image/boot/vmlinuz-* | head -n1)
for f in "$bench" "$image" target/image/initramfs.img "$kernel"; do
    [ -e "$f" ] || { echo "missing $f: run just image" >&2; exit 1; }
done
work=$(mktemp -d /tmp/ztos-bench-boot.XXXXXX)
trap 'rm -rf "$work"' EXIT

rustc --edition 2021 -O -C target-feature=+crt-static -o "$work/trivial-init" tests/bench/trivial-init.rs
"$bench" initramfs --init "$work/trivial-init" --out "$work/trivial.img"

# Sizes, from a fresh build of the same inputs (the builder reports the root with and without
# kernel modules).
build_log=$(SOURCE_DATE_EPOCH=$(git log -1 --format=%ct) target/release/ztos-image build --out "$work/image" \
    --kernel-dir .cache/kernel/linux-image --bin-dir target/release)
root_line=$(grep '^root squashfs' <<<"$build_log")
root_mib=$(sed -n 's/^root squashfs \([0-9.]*\) MiB.*/\1/p' <<<"$root_line")
root_no_modules_mib=$(sed -n 's/.*, \([0-9.]*\) MiB without modules.*/\1/p' <<<"$root_line")
initramfs_mib=$(sed -n 's/^initramfs \([0-9.]*\) MiB.*/\1/p' <<<"$build_log")
raw_mib=$(( $(stat -c %s "$work/image/ztos.img") / 1048576 ))
raw_used_mib=$(( $(du -k "$work/image/ztos.img" | cut -f1) / 1024 ))
qcow2_mib=$(awk -v b="$(stat -c %s "$work/image/ztos.qcow2")" 'BEGIN {printf "%.1f", b/1048576}')

ready="new password for admin: "
seconds() { sed -n 's/.*"seconds":\([0-9.]*\).*/\1/p'; }
trivial=(); ztos_direct=(); ztos_uefi=()
for run in 1 2 3; do
    trivial+=("$("$bench" boot --kernel "$kernel" --initrd "$work/trivial.img" \
        --append "console=ttyS0,115200 quiet panic=10" --marker TRIVIAL-INIT-READY | seconds)")
    ztos_direct+=("$("$bench" boot --kernel "$kernel" --initrd target/image/initramfs.img --disk "$image" \
        --append "ztos.slot=a console=ttyS0,115200 quiet panic=10" --marker "$ready" | seconds)")
    ztos_uefi+=("$("$bench" boot --uefi-image "$image" --marker "$ready" | seconds)")
done
median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {printf "%.1f\n", a[int((NR+1)/2)]}'; }
rounded() { for v in "$@"; do printf '%.1f ' "$v"; done; }
m_trivial=$(median "${trivial[@]}")
m_direct=$(median "${ztos_direct[@]}")
m_uefi=$(median "${ztos_uefi[@]}")
ratio=$(awk -v a="$m_direct" -v b="$m_trivial" 'BEGIN {printf "%.2f", a/b}')
verdict() { awk -v v="$1" -v t="$2" 'BEGIN { print (v <= t) ? "met" : "NOT met" }'; }
cpu=$(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo)
machine="$(nproc) cores ($cpu), $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo)"

section=$(cat <<MD
## Boot (\`just bench-boot\`)

Measured $(date -u +%Y-%m-%d) on $machine; qemu $(qemu-system-x86_64 --version | head -n1 | awk '{print $4}')
with TCG (no KVM), q35, 2 vCPUs, 1 GiB; kernel $(basename "$kernel"). Medians of 3 boots.

| measurement | median | runs | target |
|---|---|---|---|
| same kernel, trivial init: qemu start to the init's marker, s | $m_trivial | $(rounded "${trivial[@]}")| - |
| ZTOS, same direct kernel boot: qemu start to API ready, s | $m_direct | $(rounded "${ztos_direct[@]}")| <= 2x trivial: $ratio x, $(verdict "$ratio" 2) |
| ZTOS, full UEFI boot of the image (OVMF, systemd-boot) to API ready, s | $m_uefi | $(rounded "${ztos_uefi[@]}")| - |

"API ready" is the console's first-boot password prompt, printed once ztosd's API answered it.

| image | size |
|---|---|
| raw image (sparse; allocated) | $raw_mib MiB ($raw_used_mib MiB) |
| qcow2 | $qcow2_mib MiB |
| root squashfs (zstd) | $root_mib MiB |
| root squashfs without kernel modules | $root_no_modules_mib MiB (target <= 30 MB: $(verdict "$root_no_modules_mib" 28.6)) |
| initramfs (gzip) | $initramfs_mib MiB |
MD
)
doc=docs/benchmarks.md
[ -f "$doc" ] || printf '# Benchmarks\n\nNumbers measured by the `just bench-*` recipes. Each recipe rewrites its own section.\n' >"$doc"
awk -v start="## Boot (\`just bench-boot\`)" 'BEGIN{skip=0} index($0,start)==1 {skip=1; next} skip && /^## / {skip=0} !skip {print}' "$doc" >"$work/doc"
printf '%s\n\n%s\n' "$(cat "$work/doc")" "$section" >"$doc"
echo "$section"
