#!/usr/bin/env bash
# A one-machine lab of real hosts: network namespaces joined by one bridge, addresses from the
# benchmarking range 198.18.0.0/15 (RFC 2544), never routed anywhere.
#
#   pbx-sw            the switch: bridge br0
#   pbx-n1 .. pbx-nN  node hosts, eth0 = 198.18.0.(10+i)/24; the VIP 198.18.0.100/24 moves between them
#   pbx-ph1           phone host: 198.18.0.21 and .22 (the chaos phones and the admin client)
#   pbx-ph2           second phone host: 198.18.0.31 (probes ARP for the VIP from outside; chaos adds
#                     .32 and up, one source address per ARP prober)
#
# Usage (as root):
#   deploy/lab-netns.sh up [N]         build the topology (N nodes, default 3)
#   deploy/lab-netns.sh down           remove every namespace it made
#   deploy/lab-netns.sh status         addresses, and which node holds the VIP
#   deploy/lab-netns.sh run [args]     up, then a 3-node cluster in it (chaos lab --netns) until Ctrl-C
#   deploy/lab-netns.sh chaos [args]   up, then `chaos failover [args]` from pbx-ph1, then down
#   deploy/lab-netns.sh fence [args]   up, then `chaos fence-check [args]` (an owner without its kernel fence), down
#   deploy/lab-netns.sh trunk [args]   up, then `chaos trunk-failover [args]` (Kamailio as a trunk provider), down
#                                      e.g. deploy/lab-netns.sh chaos --fault kill-owner --rounds 10
# Binaries: $PBX_BIN / $CHAOS_BIN, else target/release, else target/debug.
set -euo pipefail

cd "$(dirname "$0")/.."
PREFIX=pbx
NET=198.18.0
VIP=$NET.100

need() {
    command -v "$1" >/dev/null 2>&1 || {
        echo "lab-netns: '$1' missing; run deploy/prereqs.sh --lab" >&2
        exit 1
    }
}

host() { # name address...
    local ns=$PREFIX-$1
    shift
    ip netns add "$ns"
    ip -n "$ns" link set lo up
    ip link add "$ns-eth" type veth peer name "$ns-port"
    ip link set "$ns-eth" netns "$ns"
    ip -n "$ns" link set "$ns-eth" name eth0
    for a in "$@"; do
        ip -n "$ns" addr add "$a/24" dev eth0
    done
    ip -n "$ns" link set eth0 up
    ip link set "$ns-port" netns "$PREFIX-sw"
    ip -n "$PREFIX-sw" link set "$ns-port" master br0
    ip -n "$PREFIX-sw" link set "$ns-port" up
}

up() {
    local n=${1:-3}
    need ip
    need nft
    need arping
    if ip netns list | grep -q "^$PREFIX-sw\b"; then
        return 0
    fi
    ip netns add "$PREFIX-sw"
    ip -n "$PREFIX-sw" link set lo up
    ip -n "$PREFIX-sw" link add br0 type bridge
    ip -n "$PREFIX-sw" link set br0 up
    for i in $(seq 1 "$n"); do
        host "n$i" "$NET.$((10 + i))"
    done
    host ph1 "$NET.21" "$NET.22"
    host ph2 "$NET.31"
    echo "lab up: $n nodes ($NET.11..), phones $NET.21/.22, observer $NET.31, VIP $VIP"
}

down() {
    for ns in $(ip netns list | awk '{print $1}' | grep "^$PREFIX-" || true); do
        # Nodes left running in a namespace would keep it alive: stop them first.
        ip netns pids "$ns" 2>/dev/null | xargs -r kill -9 2>/dev/null || true
        ip netns del "$ns"
    done
}

status() {
    for ns in $(ip netns list | awk '{print $1}' | grep "^$PREFIX-" | sort || true); do
        printf '%-8s %s\n' "$ns" "$(ip -n "$ns" -br addr show dev eth0 2>/dev/null | awk '{$1=$2=""; print}')"
    done
}

bin() { # name
    local var
    var=$(echo "$1" | tr a-z A-Z)_BIN
    if [ -n "${!var:-}" ]; then
        echo "${!var}"
    elif [ -x "target/release/$1" ]; then
        echo "$PWD/target/release/$1"
    else
        echo "$PWD/target/debug/$1"
    fi
}

case "${1:-}" in
up) up "${2:-3}" ;;
down) down ;;
status) status ;;
run)
    shift
    up 3
    trap down EXIT
    PBX_BIN=$(bin pbx) ip netns exec "$PREFIX-ph1" "$(bin chaos)" lab --netns --secret "${LAB_SECRET:-Tr7!kq-Vw9zP}" "$@"
    ;;
chaos)
    shift
    down
    up 3
    trap down EXIT
    PBX_BIN=$(bin pbx) ip netns exec "$PREFIX-ph1" "$(bin chaos)" failover "$@"
    ;;
fence)
    shift
    down
    up 3
    trap down EXIT
    PBX_BIN=$(bin pbx) ip netns exec "$PREFIX-ph1" "$(bin chaos)" fence-check "$@"
    ;;
trunk)
    shift
    down
    up 3
    trap down EXIT
    PBX_BIN=$(bin pbx) ip netns exec "$PREFIX-ph1" "$(bin chaos)" trunk-failover "$@"
    ;;
*)
    sed -n '2,20p' "$0"
    exit 2
    ;;
esac
