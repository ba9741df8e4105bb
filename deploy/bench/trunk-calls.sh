#!/usr/bin/env bash
# Calls per second extension → PBX → peer trunk → carrier (a sipp UAS on 127.0.0.2), against
# extension → extension calls in the same run, through a 3-node cluster (`chaos lab`). Every call is
# digest-authenticated (407), its media ports allocated, its dialog record committed before the 200
# and its CDR at the end; a trunk call also commits its toll reservation (with its route record)
# before the INVITE goes to the carrier: one more Raft write per call.
#
# Two configurations, alternated A B A B A (each phase ROUNDS rounds of one ext→ext and one
# ext→trunk run, their order alternating by round), so that a B phase is compared with the A phases
# on either side of it: the cost of a call on this cluster grows as calls are stored, and the shared
# machine drifts.
#   A  the trunk, its route (`9.`, strip 1) and one permission group: nothing else configured;
#   B  the same plus 1,000 outbound routes before it (pattern `9555010[1-9]`: same length and first
#      seven digits as the number dialled, so each is matched up to its last digit and missed)
#      referring to 100 more peer trunks (127.0.1.1–100, never called). Going back to A deletes
#      those 1,100 records again.
# Also: `pbx_routing_compile_seconds` from the calls node's /metrics around 5 routing changes in A
# and in B (recompiling the tables after a change; not paid per call), the nodes' CPU time per call,
# and the snapshots each node built.
# Usage: deploy/bench/trunk-calls.sh [N=10000] [CONCURRENCY=50] [ROUNDS=3]   (KEEP=1 keeps the work dir)
set -euo pipefail
cd "$(dirname "$0")/../.."
n=${1:-10000}; conc=${2:-50}; rounds=${3:-3}
secret='Tr7!kq-Vw9zP'
dialled=95550100
carrier_ip=127.0.0.2
# As calls.sh: sipp answers only the first challenge and only MD5; no OPTIONS pings; one callee
# takes every call, so its per-extension limit is lifted.
sip_extra=$'digest_algorithms = ["MD5"]\nmax_transactions = 500000\nqualify_interval_secs = 0'
calls_extra='max_calls_per_extension = 10000'
command -v sipp >/dev/null && command -v curl >/dev/null || {
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq sip-tester curl >/dev/null; }
cargo build --release --workspace --all-targets >/dev/null
work=$(mktemp -d)
pids=(); callee_pid=
trap 'kill "${pids[@]}" $callee_pid 2>/dev/null || true; wait 2>/dev/null || true; [ -n "${KEEP:-}" ] || rm -rf "$work"' EXIT

# `chaos lab` does not print the admin password (`pbx cluster init` shows it once): a wrapper in
# front of the real binary keeps what init prints; every other command is the binary itself (exec).
cat > "$work/pbx" <<EOF
#!/usr/bin/env bash
if [ "\${1:-} \${2:-}" = "cluster init" ]; then
  "$PWD/target/release/pbx" "\$@" | tee "$work/init.out"; exit "\${PIPESTATUS[0]}"
fi
exec "$PWD/target/release/pbx" "\$@"
EOF
chmod +x "$work/pbx"
PBX_BIN=$work/pbx ./target/release/chaos lab --nodes 3 --first 1000 --last 2000 \
  --secret "$secret" --sip-extra "$sip_extra" --calls-extra "$calls_extra" --media-ports 8000 \
  --seconds 3600 > "$work/lab.json" &
pids+=($!)
for _ in $(seq 1 600); do grep -q ready "$work/lab.json" 2>/dev/null && break; sleep 0.5; done
grep -q ready "$work/lab.json" || { echo "the lab did not start"; exit 1; }
lab() { python3 -c 'import json,sys; v=json.loads(open(sys.argv[1]).readline()); print(eval(sys.argv[2]))' "$work/lab.json" "$1"; }
pbx_sip=$(lab 'v["sip"][0]'); api_url=$(lab 'v["api"][0]'); lab_dir=$(lab 'v["dir"]')
ca=$lab_dir/ca/ca.pem
password=$(sed -n 's/^admin password: \([^ ]*\).*/\1/p' "$work/init.out")
token=$(curl -sS --fail --cacert "$ca" -H 'content-type: application/json' \
  --data "{\"username\":\"admin\",\"password\":\"$password\"}" "$api_url/api/v1/session" |
  python3 -c 'import json,sys; print(json.load(sys.stdin)["token"])')

# api METHOD PATH [BODY]: the answer on stdout; fails (answer on stderr) unless 2xx.
api() {
  local out; out=$(mktemp -p "$work")
  local code; code=$(curl -sS --cacert "$ca" -H "authorization: Bearer $token" \
    -H 'content-type: application/json' -X "$1" ${3:+--data "$3"} -o "$out" -w '%{http_code}' \
    "$api_url$2") || code=000
  if [[ $code == 2* ]]; then cat "$out"; rm -f "$out"; return 0; fi
  echo "$1 $2 -> $code: $(cat "$out")" >&2; rm -f "$out"; return 1
}
# bulk: lines "METHOD<TAB>PATH<TAB>BODY" on stdin, 8 requests at a time; exits on any failure.
bulk() {
  local i=0 fails="$work/bulk-fails"; : > "$fails"
  while IFS=$'\t' read -r method path body; do
    { api "$method" "$path" "$body" >/dev/null 2>>"$fails" || true; } &
    if (( ++i % 8 == 0 )); then wait; fi
  done
  wait
  if [ -s "$fails" ]; then echo "setup failed:"; head -5 "$fails"; exit 1; fi
}
# compile_cost LABEL: 5 routing changes (the group written again), each recompiled by the node's
# trunk-address refresh within a second; the mean from the histogram's sum and count.
metric() { curl -sS --cacert "$ca" "$api_url/metrics" | awk -v m="$1" '$1 == m { print $2 }'; }
compile_cost() {
  local s0 c0 s1 c1
  s0=$(metric pbx_routing_compile_seconds_sum); c0=$(metric pbx_routing_compile_seconds_count)
  for _ in 1 2 3 4 5; do api PUT /api/v1/permission-groups/internal "$group" >/dev/null; sleep 1.5; done
  s1=$(metric pbx_routing_compile_seconds_sum); c1=$(metric pbx_routing_compile_seconds_count)
  awk -v l="$1" -v s0="${s0:-0}" -v c0="${c0:-0}" -v s1="${s1:-0}" -v c1="${c1:-0}" 'BEGIN {
    if (c1 > c0) printf "compile %s: %.3f ms mean over %d recompiles\n", l, (s1 - s0) * 1000 / (c1 - c0), c1 - c0;
    else print "compile " l ": no recompile seen" }'
}

# The callee of ext→ext calls: a sipp UAS that registers as 2000 and answers on the same socket.
# Its registration lasts 300 s (uas-register.xml), less than this run: it is started again on the
# same address (so the same binding is renewed) before every round.
users() { echo SEQUENTIAL; for u in $(seq "$1" "$2"); do echo "$u;[authentication username=$u password=$secret]"; done; }
users 2000 2000 > "$work/callee.csv"
users 1000 1999 > "$work/callers.csv"
scenarios=$PWD/tests/sipp
callee_port=$((25000 + RANDOM % 5000))
start_callee() {
  if [ -n "$callee_pid" ]; then kill "$callee_pid" 2>/dev/null || true; wait "$callee_pid" 2>/dev/null || true; fi
  (cd "$work" && exec sipp "$pbx_sip" -sf "$scenarios/uas-register.xml" -oocsf "$scenarios/uas-answer.xml" \
    -inf callee.csv -m 1 -d 3600000 -i 127.0.0.1 -p "$callee_port" -nostdin >/dev/null 2>&1) &
  callee_pid=$!
  sleep 1
  api GET /api/v1/extensions/2000/registrations | grep -q ":$callee_port" || { echo "callee 2000 not registered"; exit 1; }
}
# The carrier: sipp's built-in UAS (180, 200 with SDP, ACK, BYE) on the trunk's address.
carrier_port=$((15000 + RANDOM % 5000))
(cd "$work" && exec sipp -sn uas -i "$carrier_ip" -p "$carrier_port" -nostdin >/dev/null 2>&1) &
pids+=($!)

# The configuration, as an admin makes it: the trunk (no limits, no qualify), its route, and the
# group every extension is in unless told otherwise (`internal`) allowed to use it, with no toll
# limits. The carrier's address passes the flood detector because it is a trunk's (40 SIP packets
# per 2 s per source otherwise, which a busy carrier crosses in milliseconds).
api POST /api/v1/trunks "{\"name\":\"carrier\",\"kind\":\"peer\",\"host\":\"$carrier_ip\",\"port\":$carrier_port,\"transport\":\"udp\",\"qualify_secs\":0,\"max_calls\":0,\"calls_per_minute\":0}" >/dev/null
api POST /api/v1/routes/outbound '{"name":"national","position":1000,"patterns":["9."],"strip":1,"class":"local","trunks":["carrier"]}' >/dev/null
group='{"routes":["national"],"limits":{}}'
api POST /api/v1/permission-groups '{"name":"internal","routes":["national"],"limits":{}}' >/dev/null
sleep 2
start_callee

# The nodes' processes: the one taking the calls (node 1, which initialised the cluster) and the
# other two; their CPU time (user + system, in clock ticks) is read around every sipp run.
node1=$(pgrep -f -- "--config $lab_dir/node-1.toml")
others=$(pgrep -d' ' -f -- "--config $lab_dir/node-[23].toml")
ticks() { local p t=0; for p in "$@"; do t=$((t + $(awk '{print $14 + $15}' "/proc/$p/stat"))); done; echo "$t"; }
hz=$(getconf CLK_TCK)
echo "calls go to node $(curl -sS --cacert "$ca" "$api_url/api/v1/health" |
  python3 -c 'import json,sys; h=json.load(sys.stdin); print(h["node_id"], "(leader:", str(h["leader"]) + ")")')"

# cps NUMBER TAG: one sipp run of N calls to NUMBER;
# "calls/s=… ok=… failed=… cpu_us_per_call=<node 1> <the other two>".
cps() {
  local stat="$work/stat-$2.csv"; rm -f "$stat"
  local c1 co; c1=$(ticks "$node1"); co=$(ticks $others)
  timeout 300 sipp "$pbx_sip" -sf "$scenarios/uac-call.xml" -inf "$work/callers.csv" -s "$1" \
    -auth_uri "$1@$pbx_sip" -r 1000000 -rp 1000 -m "$n" -l "$conc" -i 127.0.0.1 \
    -p $((20000 + RANDOM % 20000)) -trace_stat -fd 1 -stf "$stat" -timeout 280s -timeout_error \
    -trace_err -error_file "$work/errors-$2.log" \
    >/dev/null 2>&1 </dev/null || true
  local last ok bad t0 t1
  last=$(tail -1 "$stat")
  ok=$(echo "$last" | cut -d';' -f16); bad=$(echo "$last" | cut -d';' -f18)
  t0=$(echo "$last" | cut -d';' -f1 | awk '{print $3}'); t1=$(echo "$last" | cut -d';' -f3 | awk '{print $3}')
  c1=$(( $(ticks "$node1") - c1 )); co=$(( $(ticks $others) - co ))
  echo "calls/s=$(awk -v ok="$ok" -v a="$t0" -v b="$t1" 'BEGIN{ if (b>a) printf "%.0f", ok/(b-a); else print 0 }') ok=$ok failed=$bad" \
    "cpu_us_per_call=$(awk -v a="$c1" -v b="$co" -v hz="$hz" -v ok="$ok" 'BEGIN{ ok = ok > 0 ? ok : 1; printf "%.0f %.0f", a * 1e6 / hz / ok, b * 1e6 / hz / ok }')"
}

# One trunk call first: the path works, or stop here with the node's log.
smoke=$(n=1 conc=1 cps "$dialled" smoke)
if [[ $smoke != *"ok=1 "* ]]; then
  echo "the smoke call through the trunk failed: $smoke"; cat "$work/errors-smoke.log" 2>/dev/null | head -40
  tail -40 "$lab_dir/node-1.log"; exit 1
fi

results=$work/results
phase() {
  local p=$1 r e t
  for r in $(seq 1 "$rounds"); do
    start_callee
    if (( r % 2 )); then e=$(cps 2000 "$p-ext"); t=$(cps "$dialled" "$p-trunk")
    else t=$(cps "$dialled" "$p-trunk"); e=$(cps 2000 "$p-ext"); fi
    echo "phase $p round $r ext→ext:   $e"
    echo "phase $p round $r ext→trunk: $t"
    echo "$p $r ${e#calls/s=} ${t#calls/s=}" | sed 's/ ok=/ /g; s/ failed=/ /g; s/ cpu_us_per_call=/ /g' >> "$results"
  done
}
decoys() {
  local i
  for i in $(seq 0 99); do
    printf 'POST\t/api/v1/trunks\t{"name":"decoy-t%02d","kind":"peer","host":"127.0.1.%d","port":5060,"transport":"udp","qualify_secs":0}\n' "$i" $((i + 1))
  done
}
routes() {
  local i
  for i in $(seq 0 999); do
    printf 'POST\t/api/v1/routes/outbound\t{"name":"decoy-%04d","position":%d,"patterns":["9555010[1-9]"],"strip":1,"class":"local","trunks":["decoy-t%02d","decoy-t%02d"]}\n' \
      "$i" "$i" $((i % 100)) $(((i + 1) % 100))
  done
}
seconds_since() { awk -v a="$1" -v b="$(date +%s.%N)" 'BEGIN{printf "%.1f", b-a}'; }
route_count() { api GET /api/v1/routes/outbound | python3 -c 'import json,sys; print(len(json.load(sys.stdin)["routes"]))'; }
add_decoys() {
  local t0; t0=$(date +%s.%N)
  decoys | bulk
  routes | bulk
  echo "configured 100 trunks and 1,000 routes in $(seconds_since "$t0") s; outbound routes now: $(route_count)"
  sleep 2
}
remove_decoys() {
  local t0; t0=$(date +%s.%N)
  routes | awk -F'\t' '{ split($3, a, "\""); print "DELETE\t/api/v1/routes/outbound/" a[4] "\t" }' | bulk
  decoys | awk -F'\t' '{ split($3, a, "\""); print "DELETE\t/api/v1/trunks/" a[4] "\t" }' | bulk
  echo "deleted them in $(seconds_since "$t0") s; outbound routes now: $(route_count)"
  sleep 2
}

echo "machine: $(nproc) cores, $(uname -r); N=$n concurrency=$conc rounds=$rounds"
phase A1
compile_cost "A (1 route, 1 trunk)"
add_decoys
phase B1
compile_cost "B (1,001 routes, 101 trunks)"
remove_decoys
phase A2
add_decoys
phase B2
remove_decoys
phase A3

python3 - "$results" <<'EOF'
import statistics, sys
rows = [l.split() for l in open(sys.argv[1])]
phases = list(dict.fromkeys(x[0] for x in rows))
print("| phase | round | ext→ext calls/s | ext→trunk calls/s | trunk / ext | failed (ext / trunk) "
      "| PBX CPU µs per call, ext→ext (node 1 + others) | same, ext→trunk |")
print("|---|---|---|---|---|---|---|---|")
for p, r, e, eok, ebad, e1, eo, t, tok, tbad, t1, to in rows:
    print(f"| {p} | {r} | {int(e):,} | {int(t):,} | {int(t)/max(int(e),1):.2f} | {ebad} / {tbad} "
          f"| {e1} + {eo} | {t1} + {to} |")
med = {}
for p in phases:
    sel = [x for x in rows if x[0] == p]
    m = lambda i: statistics.median(int(x[i]) for x in sel)
    med[p] = {k: m(i) for k, i in (("e", 2), ("e1", 5), ("eo", 6), ("t", 7), ("t1", 10), ("to", 11))}
    d = med[p]
    print(f"| {p} | median | {d['e']:,.0f} | {d['t']:,.0f} | {d['t']/max(d['e'],1):.2f} | "
          f"| {d['e1']:.0f} + {d['eo']:.0f} | {d['t1']:.0f} + {d['to']:.0f} |")
ratios = [int(x[7]) / max(int(x[2]), 1) for x in rows if x[0].startswith("A")]
print(f"goal 1, ext→trunk / ext→ext per round, A phases: median {statistics.median(ratios):.2f} "
      f"(min {min(ratios):.2f}, max {max(ratios):.2f})")
for i, p in enumerate(phases):
    if p.startswith("B") and 0 < i < len(phases) - 1:
        a, b, c = med[phases[i - 1]], med[p], med[phases[i + 1]]
        at = (a["t"] + c["t"]) / 2; ae = (a["e"] + c["e"]) / 2
        print(f"goal 2, {p}: ext→trunk {b['t']:,.0f} against {at:,.0f} (mean of {phases[i-1]} and "
              f"{phases[i+1]}) = {b['t']/at:.3f}; ext→ext {b['e']:,.0f} against {ae:,.0f} = "
              f"{b['e']/ae:.3f}; trunk/ext {b['t']/b['e']:.3f} against {at/ae:.3f}")
EOF
# sipp's own noise at exit ("Failed to delete FD from epoll") is left out.
for f in "$work"/errors-*.log; do
  errs=$(grep -v -e 'Failed to delete FD from epoll' -e 'The following events occurred' "$f" 2>/dev/null || true)
  [ -z "$errs" ] || { echo "sipp errors in $(basename "$f") (first lines):"; echo "$errs" | head -c 3000; echo; }
done
echo "pbx RSS (KiB), node 1 then the others: $(ps -o rss= -p "$node1,${others// /,}" | tr '\n' ' ')"
for i in 1 2 3; do
  echo "node $i: $(grep -c 'snapshot built' "$lab_dir/node-$i.log" || true) snapshots built, the last of" \
    "$(grep 'snapshot built' "$lab_dir/node-$i.log" | tail -1 | sed 's/\x1b\[[0-9;]*m//g' | sed -n 's/.*rows=\([0-9]*\).*/\1/p') rows"
done
