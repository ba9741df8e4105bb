#!/usr/bin/env bash
# Relay cost: CALLS concurrent G.711 calls with RTP both ways, relayed by the PBX (3-node cluster, the
# VIP owner relays) and by rtpengine in userspace (`--table=-1`), alternating, ROUNDS times. The relay
# under test (every PBX process, or rtpengine) is pinned to CPU 0 and the generator (chaos's phones)
# to CPU 1. "CPU per packet" is the CPU time of those relay processes over the media phase divided by
# the packets relayed.
# Usage: deploy/bench/relay.sh [CALLS=1000] [SECONDS=20] [ROUNDS=2]
# PBX_BIN and CHAOS_BIN name prebuilt binaries (the release build is skipped).
set -euo pipefail
cd "$(dirname "$0")/../.."
calls=${1:-1000}; secs=${2:-20}; rounds=${3:-2}
command -v rtpengine >/dev/null || {
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq rtpengine-daemon >/dev/null; }
[ -n "${PBX_BIN:-}" ] || cargo build --release --workspace --bins >/dev/null
PBX_BIN=${PBX_BIN:-$PWD/target/release/pbx}; CHAOS_BIN=${CHAOS_BIN:-$PWD/target/release/chaos}
[ "$(nproc)" -ge 2 ] || { echo "relay.sh: needs 2 CPUs (relay on 0, generator on 1)" >&2; exit 1; }

echo "machine: $(nproc) cores, $(uname -r); calls=$calls seconds=$secs"
for r in $(seq 1 "$rounds"); do
  echo "round $r pbx:"
  PBX_BIN=$PBX_BIN taskset -c 1 "$CHAOS_BIN" call-load --calls "$calls" --seconds "$secs" --pbx-cpu 0
  echo "round $r rtpengine:"
  taskset -c 1 "$CHAOS_BIN" rtpengine-load --calls "$calls" --seconds "$secs" --cpu 0
done
