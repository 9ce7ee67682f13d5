#!/usr/bin/env bash
# Runs a cargo-fuzz target for a fixed time, seeded from its checked-in corpus.
#
#   fuzz/run.sh TARGET SECS        one target (`just fuzz`)
#   fuzz/run.sh --all SECS         every target, SECS shared between them (`just fuzz-ci`)
#
# Needs a nightly toolchain (cargo-fuzz instruments with nightly-only flags). Without one it says
# so on stderr and exits 0: the project cannot install toolchains offline, and the rest of the
# test command must still run. cargo-fuzz itself is installed from crates.io when missing.
#
# The checked-in corpus (fuzz/corpus/TARGET) is only read. What the fuzzer adds goes to
# target/fuzz/corpus/TARGET, kept between runs so they build on each other; crashes go to
# target/fuzz/artifacts/TARGET. Neither is in git. A crash, panic, timeout or OOM fails the run
# and prints the reproducer's path and the command that replays it.
set -euo pipefail

usage() {
    echo "usage: $0 TARGET|--all SECS" >&2
    exit 2
}
[ $# -eq 2 ] || usage
which=$1
secs=$2
[[ $secs =~ ^[1-9][0-9]*$ ]] || {
    echo "fuzz: SECS must be a positive number of seconds, not '$secs'" >&2
    exit 2
}

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

# The installed nightly toolchain, by its full name (a dated nightly is fine too).
nightly=$(rustup toolchain list 2>/dev/null | awk '$1 ~ /^nightly/ { print $1; exit }')
if [ -z "$nightly" ]; then
    echo "fuzz: SKIPPED: no nightly Rust toolchain is installed (rustup toolchain list shows none)." >&2
    echo "fuzz: cargo-fuzz needs one; install it with 'rustup toolchain install nightly' to fuzz." >&2
    exit 0
fi

if ! command -v cargo-fuzz >/dev/null; then
    echo "fuzz: installing cargo-fuzz (cargo install cargo-fuzz --locked)" >&2
    cargo install cargo-fuzz --locked
fi

if [ "$which" = --all ]; then
    mapfile -t targets < <(cargo "+$nightly" fuzz list)
else
    targets=("$which")
fi
[ ${#targets[@]} -gt 0 ] || {
    echo "fuzz: no fuzz targets found in fuzz/" >&2
    exit 1
}
per_target=$((secs / ${#targets[@]}))
[ "$per_target" -ge 1 ] || per_target=1

for target in "${targets[@]}"; do
    seeds=fuzz/corpus/$target
    grown=target/fuzz/corpus/$target
    artifacts=target/fuzz/artifacts/$target
    mkdir -p "$grown" "$artifacts"
    corpus=("$grown")
    [ -d "$seeds" ] && corpus+=("$seeds")
    echo "fuzz: $target for ${per_target}s with $nightly (seeds: $seeds, grown corpus: $grown)" >&2
    cargo "+$nightly" fuzz build "$target"
    started=$(date +%s)
    status=0
    # -timeout: one input running 10 s is a hang; -rss_limit_mb: 2 GiB is an OOM.
    cargo "+$nightly" fuzz run "$target" "${corpus[@]}" -- \
        -max_total_time="$per_target" -timeout=10 -rss_limit_mb=2048 \
        -artifact_prefix="$artifacts/" -print_final_stats=1 || status=$?
    if [ "$status" -ne 0 ]; then
        echo "fuzz: $target FAILED (exit $status) after $(($(date +%s) - started))s." >&2
        found=0
        while IFS= read -r artifact; do
            found=1
            echo "fuzz: reproducer: $root/$artifact" >&2
            echo "fuzz: replay with: cargo +$nightly fuzz run $target $root/$artifact" >&2
        done < <(find "$artifacts" -type f -newermt "@$started" | sort)
        [ "$found" -eq 1 ] || echo "fuzz: no reproducer was written (see the output above)." >&2
        exit 1
    fi
done
