#!/usr/bin/env python3
"""Where a VIP takeover's time goes, from the nodes' own logs of a kept namespace lab.

Run the lab with the VIP's debug lines and keep it:

    PBX_LAB_KEEP=1 PBX_LAB_LOG="info,pbx::vip=debug,openraft=info,openraft::replication=off,\
openraft::engine::handler::replication_handler=error" \
        deploy/lab-netns.sh chaos --fault kill-owner --rounds 100 --calls 20
    deploy/bench/takeover-phases.py /tmp/.tmpXXXXXX      # the directory it printed

Each campaign of fast succession ("campaigning now", with how long the node had not heard the
leader) starts one takeover; its phases are timed on that node's clock, from the moment it last
heard the old leader: the campaign, the node's own "raft leader changed" to itself, its first lease
proof after that, and "vip acquired".
"""
import datetime
import glob
import math
import re
import sys

ANSI = re.compile(r"\x1b\[[0-9;]*m")
LINE = re.compile(r"(\S+Z)\s+\w+\s+\S+: (.*)")


def events(lab):
    out = []
    for path in glob.glob(f"{lab}/node-*.log"):
        node = re.search(r"node-(\d+)\.log$", path).group(1)
        with open(path, errors="replace") as f:
            for line in f:
                m = LINE.match(ANSI.sub("", line))
                if not m:
                    continue
                t = datetime.datetime.fromisoformat(m.group(1).replace("Z", "+00:00"))
                out.append((t.timestamp() * 1000.0, node, m.group(2)))
    out.sort()
    return out


def takeovers(ev):
    rows = []
    for i, (t, node, msg) in enumerate(ev):
        if "campaigning now" not in msg:
            continue
        silent = int(re.search(r"silent_ms=(\d+)", msg).group(1))
        contact = t - silent
        row = {"campaign": float(silent)}
        for t2, n2, m2 in ev[i + 1 :]:
            if t2 - t > 2000:
                break
            if n2 != node:
                continue
            if "elected" not in row and "raft leader changed" in m2 and f"leader={node}" in m2:
                row["elected"] = t2 - contact
            elif "elected" in row and "proof" not in row and "lease proof" in m2:
                row["proof"] = t2 - contact
            elif "vip acquired" in m2:
                row["acquired"] = t2 - contact
                break
            elif "campaigning now" in m2:
                break
        if len(row) == 4:
            rows.append(row)
    return rows


def pct(values, q):
    v = sorted(values)
    return v[max(0, math.ceil(q * len(v)) - 1)]


def main():
    rows = takeovers(events(sys.argv[1]))
    if not rows:
        sys.exit("no complete takeover in these logs")
    phases = [
        ("last contact -> campaign", lambda r: r["campaign"]),
        ("campaign -> elected", lambda r: r["elected"] - r["campaign"]),
        ("elected -> lease proof", lambda r: r["proof"] - r["elected"]),
        ("lease proof -> VIP acquired", lambda r: r["acquired"] - r["proof"]),
        ("last contact -> VIP acquired", lambda r: r["acquired"]),
    ]
    print(f"{len(rows)} takeovers (ms)")
    for name, f in phases:
        v = [f(r) for r in rows]
        print(f"{name:30s} p50 {pct(v, .5):6.1f}  p90 {pct(v, .9):6.1f}  p99 {pct(v, .99):6.1f}  max {max(v):6.1f}")


if __name__ == "__main__":
    main()
