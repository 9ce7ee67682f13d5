# ZTOS task runner. Recipes stay thin; the logic lives in the crates and in tests/.

set shell := ["bash", "-euo", "pipefail", "-c"]

# List the recipes.
default:
    @just --list

# Install the Debian packages the build, the labs and the benchmarks need.
deps:
    .ci/deps

# Build every binary (debug).
build:
    cargo build --workspace --bins

# The whole test suite: format, lints, unit tests, netns labs (needs root).
test: deps
    cargo fmt --all --check
    cargo clippy --workspace --all-targets -- -D warnings
    cargo build --workspace --bins
    cargo test --workspace --no-fail-fast -- --test-threads=2

# Run ZTOS: a two-node netns lab running ztosd with an example config, API on https://127.0.0.1:8443.
demo: deps build
    target/debug/ztos-lab up

# The spec's VXLAN test: two netns nodes, ping across VNI 100.
vxlan-test: deps
    tests/vxlan-test.sh

# Benchmark the API (wrk over HTTPS, a keep-alive client over the unix socket) and config apply.
bench-api: deps
    cargo build --release --workspace --bins
    tests/bench/bench-api.sh

# Regenerate golden files (JSON Schema, OpenAPI) after an intended change.
update-golden:
    ZTOS_UPDATE_GOLDEN=1 cargo test --workspace --lib golden
