#!/usr/bin/env bash
# Calls per second through the 3-node cluster with sipp: every call digest-authenticated (407), its
# media ports allocated, its dialog record committed before the 200 and its CDR at the end (two Raft
# writes per call). Anchor in the same run, alternating: Kamailio 5.6 as a transaction-stateful proxy
# (no auth, no media, nothing replicated) from ../shared/bench.
# Usage: deploy/bench/calls.sh [N=20000] [CONCURRENCY=200] [ROUNDS=3]
# PBX_BIN and CHAOS_BIN name prebuilt binaries (the release build is skipped).
# CLUSTER_EXTRA: extra lines for every node's [cluster] section, e.g. 'commit_linger_ms = 0'.
set -euo pipefail
cd "$(dirname "$0")/../.."
n=${1:-20000}; conc=${2:-200}; rounds=${3:-3}
anchor=${ANCHOR_DIR:-../shared/bench}
secret='Tr7!kq-Vw9zP'
# sipp answers only the first challenge and only MD5; no OPTIONS pings (sipp's out-of-call scenario
# expects INVITEs); one callee takes every call, so its per-extension limit is lifted.
sip_extra=$'digest_algorithms = ["MD5"]\nqualify_interval_secs = 0'
calls_extra='max_calls_per_extension = 10000'
command -v sipp >/dev/null && command -v kamailio >/dev/null || {
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq sip-tester kamailio >/dev/null; }
[ -n "${PBX_BIN:-}" ] || cargo build --release --workspace --all-targets >/dev/null
PBX_BIN=${PBX_BIN:-$PWD/target/release/pbx}; CHAOS_BIN=${CHAOS_BIN:-$PWD/target/release/chaos}
work=$(mktemp -d)
pids=()
trap 'kill $(cat "$work/kam.pid" 2>/dev/null) "${pids[@]}" 2>/dev/null || true; [ -n "${KEEP:-}" ] || rm -rf "$work"' EXIT

PBX_BIN=$PBX_BIN "$CHAOS_BIN" lab --nodes 3 --first 1000 --last 2000 \
  --secret "$secret" --sip-extra "$sip_extra" --calls-extra "$calls_extra" --cluster-extra "${CLUSTER_EXTRA:-}" --media-ports 8000 \
  --seconds 3600 > "$work/lab.json" &
pids+=($!)
for _ in $(seq 1 600); do grep -q ready "$work/lab.json" 2>/dev/null && break; sleep 0.5; done
pbx_sip=$(python3 -c 'import json,sys; print(json.loads(open(sys.argv[1]).readline())["sip"][0])' "$work/lab.json")

# The callee: a sipp UAS that registers as 2000 and answers every call on the same socket.
"$anchor/make-users.sh" 2000 2000 "$secret" > "$work/callee.csv"
scenarios=$PWD/tests/sipp
(cd "$work" && exec sipp "$pbx_sip" -sf "$scenarios/uas-register.xml" -oocsf "$scenarios/uas-answer.xml" \
  -inf callee.csv -m 1 -d 3600000 -i 127.0.0.1 -p 25080 -nostdin >/dev/null 2>&1) &
pids+=($!)
sleep 2
"$anchor/make-users.sh" 1000 1999 "$secret" > "$work/callers.csv"

pbx_cps() {
  local stat="$work/pbx-stat.csv"; rm -f "$stat"
  timeout 300 sipp "$pbx_sip" -sf tests/sipp/uac-call.xml -inf "$work/callers.csv" -s 2000 \
    -auth_uri "2000@$pbx_sip" -r 1000000 -rp 1000 -m "$n" -l "$conc" -i 127.0.0.1 \
    -p $((20000 + RANDOM % 20000)) -trace_stat -fd 1 -stf "$stat" -timeout 280s -timeout_error \
    -trace_err -error_file "$work/pbx-errors.log" \
    >/dev/null 2>&1 </dev/null || true
  local last ok bad t0 t1
  last=$(tail -1 "$stat")
  ok=$(echo "$last" | cut -d';' -f16); bad=$(echo "$last" | cut -d';' -f18)
  t0=$(echo "$last" | cut -d';' -f1 | awk '{print $3}'); t1=$(echo "$last" | cut -d';' -f3 | awk '{print $3}')
  echo "calls/s=$(awk -v ok="$ok" -v a="$t0" -v b="$t1" 'BEGIN{ if (b>a) printf "%.0f", ok/(b-a); else print 0 }') ok=$ok failed=$bad"
}

kamailio -f "$anchor/kamailio-proxy.cfg" -P "$work/kam.pid" -m 256 -DD -E 2>/dev/null &
sipp -sn uas -i 127.0.0.1 -p 15080 -nostdin >/dev/null 2>&1 &
pids+=($!)
sleep 2

echo "machine: $(nproc) cores, $(uname -r); N=$n concurrency=$conc"
for r in $(seq 1 "$rounds"); do
  k=$("$anchor/cps-bench.sh" 127.0.0.1:15070 "$n" "$conc")
  p=$(pbx_cps)
  echo "round $r kamailio proxy: $k"
  echo "round $r pbx b2bua:      $p"
done
[ -s "$work/pbx-errors.log" ] && { echo "pbx sipp errors (first lines):"; head -c 6000 "$work/pbx-errors.log"; echo; }
echo "pbx node RSS (KiB): $(ps -o rss= -C pbx | tr '\n' ' ')"
