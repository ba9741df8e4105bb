#!/usr/bin/env bash
# REGISTER+digest throughput: the PBX (3-node cluster, every binding replicated) against Kamailio's
# registrar (../shared/bench anchor) on the same machine in the same run, alternating, ROUNDS times.
# Each round also prints the CPU time (user + system) spent per registration: Kamailio's processes
# summed, and every process named pbx (summed, then each node), so run it with nothing else of ours.
# Usage: deploy/bench/register.sh [N=60000] [CONCURRENCY=200] [ROUNDS=3]
# PBX_BIN and CHAOS_BIN name prebuilt binaries (the release build is skipped).
# CLUSTER_EXTRA: extra lines for every node's [cluster] section, e.g. 'commit_linger_ms = 0'.
# NODES (default 3): NODES=1 runs the same build without followers. Not the cost of replication
# alone: a one-node cluster still writes and syncs its Raft log, and commits smaller entries.
set -euo pipefail
cd "$(dirname "$0")/../.."
n=${1:-60000}; conc=${2:-200}; rounds=${3:-3}
anchor=${ANCHOR_DIR:-../shared/bench}
secret='Tr7!kq-Vw9zP'
# sipp answers only the first challenge and only MD5. Transaction limits are the defaults.
# Qualifying (OPTIONS to every contact) is off: the Kamailio anchor does not qualify either.
sip_extra=$'digest_algorithms = ["MD5"]\nqualify_interval_secs = 0'
command -v sipp >/dev/null && command -v kamailio >/dev/null || {
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq sip-tester kamailio >/dev/null; }
[ -n "${PBX_BIN:-}" ] || cargo build --release --workspace --all-targets >/dev/null
PBX_BIN=${PBX_BIN:-$PWD/target/release/pbx}; CHAOS_BIN=${CHAOS_BIN:-$PWD/target/release/chaos}
work=$(mktemp -d)
trap 'kill $(cat "$work/kam.pid" 2>/dev/null) $lab_pid 2>/dev/null || true; rm -rf "$work"' EXIT

# Users: 1000..5999. Kamailio checks "Secret-<user>-pass"; the PBX's policy refuses a password that
# contains the extension number, so the PBX's users share one strong secret.
"$anchor/make-users.sh" 1000 5999 > "$work/kam-users.csv"
"$anchor/make-users.sh" 1000 5999 "$secret" > "$work/pbx-users.csv"

PBX_BIN=$PBX_BIN "$CHAOS_BIN" lab --nodes "${NODES:-3}" --first 1000 --last 5999 \
  --secret "$secret" --sip-extra "$sip_extra" --cluster-extra "${CLUSTER_EXTRA:-}" --seconds 3600 > "$work/lab.json" &
lab_pid=$!
for _ in $(seq 1 600); do grep -q ready "$work/lab.json" 2>/dev/null && break; sleep 0.5; done
pbx_sip=$(python3 -c 'import json,sys; print(json.loads(open(sys.argv[1]).readline())["sip"][0])' "$work/lab.json")
kamailio -f "$anchor/kamailio-registrar.cfg" -P "$work/kam.pid" -m 256 -DD -E 2>/dev/null &
sleep 2

# CPU time (user + system, clock ticks) of every process named $1, summed.
cpu_ticks() {
  local t=0 pid
  for pid in $(pgrep -x "$1"); do
    t=$((t + $(awk '{print $14 + $15}' "/proc/$pid/stat" 2>/dev/null || echo 0)))
  done
  echo "$t"
}
# Microseconds of CPU per registration from a tick difference and the run's "ok=" count.
per_reg() { awk -v d="$1" -v hz="$(getconf CLK_TCK)" -v out="$2" \
  'BEGIN{ match(out, /ok=[0-9]+/); ok=substr(out, RSTART+3, RLENGTH-3); if (ok>0) printf "%.0f", d*1e6/hz/ok; else print "-" }'; }

echo "machine: $(nproc) cores, $(uname -r); N=$n concurrency=$conc pbx nodes=${NODES:-3}"
for r in $(seq 1 "$rounds"); do
  c0=$(cpu_ticks kamailio)
  k=$(USERS="$work/kam-users.csv" "$anchor/reg-bench.sh" 127.0.0.1:15060 "$n" "$conc")
  c1=$(cpu_ticks kamailio); p0=$(cpu_ticks pbx); declare -A before=()
  for pid in $(pgrep -x pbx); do before[$pid]=$(awk '{print $14 + $15}' "/proc/$pid/stat"); done
  p=$(USERS="$work/pbx-users.csv" "$anchor/reg-bench.sh" "$pbx_sip" "$n" "$conc")
  p1=$(cpu_ticks pbx); nodes=""
  for pid in "${!before[@]}"; do
    nodes+="$(per_reg $(( $(awk '{print $14 + $15}' "/proc/$pid/stat") - before[$pid] )) "$p") "
  done
  echo "round $r kamailio: $k cpu_us_per_reg=$(per_reg $((c1 - c0)) "$k")"
  echo "round $r pbx:      $p cpu_us_per_reg=$(per_reg $((p1 - p0)) "$p") (per node: $nodes)"
  echo "round $r pbx node RSS (KiB): $(ps -o rss= -C pbx | tr '\n' ' ')"
done
echo "pbx node RSS (KiB): $(ps -o rss= -C pbx | tr '\n' ' ')"
