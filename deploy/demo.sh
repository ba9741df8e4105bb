#!/usr/bin/env bash
# Quick start: build the PBX and run a three-node cluster on this machine (loopback).
# First run creates certificates, configs and data under data/demo and prints the admin credentials;
# later runs resume from that data. Ctrl-C stops all three nodes.
set -euo pipefail
cd "$(dirname "$0")/.."
./deploy/prereqs.sh
cargo build --workspace --all-targets
exec ./target/debug/pbx demo --dir "${PBX_DEMO_DIR:-data/demo}"
