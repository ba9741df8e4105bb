#!/bin/sh
# A `command` VIP driver hook: `[vip] driver = "command"`, `command = "/etc/pbx/vip-hook.sh"`.
# Called as:  vip-hook.sh acquire|release <address/prefix> <interface>
# It must be idempotent, finish within `command_timeout_secs` (default 10), exit 0 on success, and say
# what went wrong on stderr otherwise (the node logs it and raises a `vip_driver_failed` event).
# The lease and fencing stay with the node: SIP and media are served only while the lease holds,
# whatever the cloud does. `release` is also called once at start, to clear what a crash left.
#
# Example for AWS (a secondary private IP moved between instances in one subnet); set ENI_ID per node.
set -eu
verb=$1
addr=${2%/*}
ifname=$3
case "$verb" in
acquire)
    aws ec2 assign-private-ip-addresses --network-interface-id "$ENI_ID" \
        --private-ip-addresses "$addr" --allow-reassignment
    ip addr replace "$2" dev "$ifname"
    ;;
release)
    ip addr del "$2" dev "$ifname" 2>/dev/null || true
    ;;
*)
    echo "usage: $0 acquire|release <address/prefix> <interface>" >&2
    exit 2
    ;;
esac
