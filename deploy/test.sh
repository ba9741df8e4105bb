#!/usr/bin/env bash
# Quick start: install what is needed, then run every check and test of the workspace.
set -euo pipefail
cd "$(dirname "$0")/.."
./deploy/prereqs.sh --sip-tools
# Always select the whole workspace with all targets: a narrower selection resolves some build
# dependencies with other features, which makes cargo compile RocksDB (ten minutes) once more.
cargo fmt --all -- --check
cargo clippy --workspace --all-targets -- -D warnings
cargo build --workspace --all-targets
# One test at a time: the integration tests run three-node clusters of real processes, and two of those
# at once would starve each other of the machine's two cores.
cargo test --workspace -- --test-threads=1
