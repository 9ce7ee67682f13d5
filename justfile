# ZTOS task runner. Recipes stay thin; the logic lives in the crates and in tests/.

set shell := ["bash", "-euo", "pipefail", "-c"]

# The last commit's time, read once per `just` run: every file in the image carries it.
source_date_epoch := `git log -1 --format=%ct`

# List the recipes.
default:
    @just --list

# Install the Debian packages the build, the labs and the benchmarks need.
deps:
    .ci/deps

# Build every binary (debug).
build:
    cargo build --workspace --bins

# The whole test suite: format, lints, unit tests, netns labs, then the image booted in qemu (needs root).
test: deps
    cargo fmt --all --check
    cargo clippy --workspace --all-targets -- -D warnings
    just deny
    cargo build --workspace --bins
    # Two tests at a time per binary; the netns labs of all areas share one binary (--test system).
    cargo test --workspace --no-fail-fast -- --test-threads=2
    just fuzz-ci
    just vm-test

# Run ZTOS: build the appliance image and boot it in qemu, console here, HTTPS on https://127.0.0.1:8443.
demo: image build
    target/debug/ztos-lab vm

# Run ztosd without the image: a two-leaf netns lab, API forwarded to https://127.0.0.1:8443.
lab: deps build
    target/debug/ztos-lab up

# The spec's VXLAN test: two netns nodes, ping across VNI 100.
vxlan-test: deps
    tests/vxlan-test.sh

# Benchmark the API (wrk over HTTPS, a keep-alive client over the unix socket) and config apply.
bench-api: deps
    cargo build --release --workspace --bins
    tests/bench/bench-api.sh

# Boot time to API ready under qemu TCG against the same kernel with a trivial init, and image sizes.
bench-boot: image
    tests/bench/bench-boot.sh

# Update write throughput against a raw write of the same bytes to the same virtual disk, and update-to-blessed time.
bench-update: image
    tests/bench/bench-update.sh

# WireGuard iperf3 throughput, ping latency and CPU per Gbit/s through ztos-wireguard, wireguard-go, boringtun's CLI and ztos with 1,000 policy rules (needs root).
bench-wg: deps
    tests/bench/bench-wg.sh

# BGP route throughput and peak memory: ztos-bgp, BIRD 2, FRR and GoBGP pass 100k and 1M prefixes from peer A to peer B in netns (needs root).
bench-bgp: deps
    cargo build --release --workspace --bins
    tests/bench/bench-bgp.sh

# Regenerate golden files (JSON Schema, OpenAPI) after an intended change.
update-golden:
    ZTOS_UPDATE_GOLDEN=1 cargo test --workspace --lib golden

# Fetch Debian's linux-image-amd64 into .cache/kernel/linux-image and check it against kernel-config/.
kernel: deps
    cargo build --release --workspace --bins
    target/release/ztos-image fetch-kernel --cache .cache/kernel

# A development update-signing key pair, target/keys/dev.key (private, never in an image) and dev.pub.
# Images built here trust dev.pub; releases are signed with an offline key (docs/update.md).
dev-key:
    cargo build --release -p ztos-image
    test -f target/keys/dev.key || (mkdir -p target/keys && target/release/ztos-image keygen --out target/keys/dev)

# Build the appliance image (target/image/ztos.img and ztos.qcow2), twice, and check both are identical.
image: deps dev-key
    test -d .cache/kernel/linux-image || just kernel
    cargo build --release --workspace --bins
    SOURCE_DATE_EPOCH={{source_date_epoch}} target/release/ztos-image build --out target/image --kernel-dir .cache/kernel/linux-image --bin-dir target/release --trust-key target/keys/dev.pub
    SOURCE_DATE_EPOCH={{source_date_epoch}} target/release/ztos-image build --out target/image-check --kernel-dir .cache/kernel/linux-image --bin-dir target/release --trust-key target/keys/dev.pub --no-qcow2 >/dev/null
    cmp target/image/ztos.img target/image-check/ztos.img && echo "reproducible: $(sha256sum target/image/ztos.img)"
    rm -rf target/image-check
    target/release/ztos-image inspect target/image/ztos.img

# Boot the image headless in qemu (TCG): the boot tests, then the A/B update tests (two VMs at a time).
vm-test: image
    cargo test -p ztos-tests --test system -- --ignored --nocapture vm_boot::
    cargo test -p ztos-tests --test system -- --ignored --nocapture --test-threads=2 vm_update::

# Licenses, duplicate versions and sources of the dependency tree (deny.toml); skipped, saying so, when cargo-deny is not installed (`cargo install cargo-deny --locked` took 15 minutes on the 2-core dev machine, too long for every test run).
deny:
    if command -v cargo-deny >/dev/null; then cargo deny check licenses bans sources; else echo "deny: cargo-deny is not installed, skipping (cargo install cargo-deny --locked)"; fi

# Fuzz a decoder with cargo-fuzz for `secs` seconds, seeded from fuzz/corpus/ (needs a nightly toolchain; installs cargo-fuzz when missing).
fuzz target="bgp_decode" secs="600":
    fuzz/run.sh {{target}} {{secs}}

# The test command's short fuzzing run: every fuzz target, 60 s in all; a crash fails it with the reproducer's path (skipped, saying so, without a nightly toolchain).
fuzz-ci:
    fuzz/run.sh --all 60
