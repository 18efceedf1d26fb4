#!/usr/bin/env python3
"""A failover storm per node and per 0.5 s from the kill (issue 15, session 18).

    python3 crates/loadgen/storm.py LOG_DIR [STEPS]

LOG_DIR: a failover run's kept logs (bench.sh with LOG_DIR=…): the nodes' `cluster login`
debug lines (nodeK.err, K = bench node + 1) and the generator's attempt logs (attempts.W.log:
`kill_ms <wall ms>`, then `<start µs> <node> <end µs> ok|fail|busy <turn ms>` per reconnect
attempt). Prints, per node and 0.5 s step (STEPS of them, default 12): the attempts that
reached it (by their start), the busy answers it gave (by their end) with the median and
largest turn in them, and the logins it completed (by the node's own line) with their mean
server-side time. A node under-used in the storm shows few logins while its clients wait for
turns it gave (or another node gave: after a busy answer a client tries its next node).
"""
import glob
import os
import re
import statistics
import sys

STEP_MS = 500


def main():
    log_dir = sys.argv[1]
    steps = int(sys.argv[2]) if len(sys.argv) > 2 else 12
    kill_ms = None
    attempts = []  # (start ms, node, end ms, turn or None if ok, -1 if failed)
    for path in sorted(glob.glob(os.path.join(log_dir, "attempts.*.log"))):
        with open(path) as f:
            for line in f:
                v = line.split()
                if v[0] == "kill_ms":
                    kill_ms = int(v[1])
                    continue
                start, node, end = int(v[0]) / 1000, int(v[1]), int(v[2]) / 1000
                turn = None if v[3] == "ok" else (-1 if v[3] == "fail" else int(v[4]))
                attempts.append((start, node, end, turn))
    if kill_ms is None:
        sys.exit(f"{log_dir}: no attempts.*.log with a kill_ms line")
    logins = {}  # node -> [(at ms, total ms)]
    for path in glob.glob(os.path.join(log_dir, "node*.err")):
        node = int(re.search(r"node(\d+)\.err$", path).group(1)) - 1
        rows = logins.setdefault(node, [])
        with open(path, errors="replace") as f:
            for line in f:
                if "cluster login" not in line or "abandoned" in line:
                    continue
                at = re.search(r"at_ms=(\d+)", line)
                total = re.search(r"total_ms=(\d+)", line)
                if at and total and int(at.group(1)) >= kill_ms:
                    rows.append((int(at.group(1)), int(total.group(1))))
    nodes = sorted(set(logins) | {a[1] for a in attempts})

    def step(t):
        return int((t - kill_ms) // STEP_MS)

    head = " | ".join(f"{i * STEP_MS / 1000:.1f}" for i in range(steps))
    print(f"# per 0.5 s from the kill (wall ms {kill_ms}); cells: attempts in / busy answers out "
          "(median, max turn ms) / logins done (mean server ms)")
    print(f"| node | {head} |")
    print("|---|" + "---:|" * steps)
    for n in nodes:
        cells = []
        for i in range(steps):
            arr = sum(1 for a in attempts if a[1] == n and step(a[0]) == i)
            busy = [a[3] for a in attempts if a[1] == n and a[3] is not None and a[3] >= 0 and step(a[2]) == i]
            done = [t for (at, t) in logins.get(n, []) if step(at) == i]
            b = f"{len(busy)} ({statistics.median(busy):.0f}, {max(busy)})" if busy else "0"
            d = f"{len(done)} ({statistics.mean(done):.0f})" if done else "0"
            cells.append(f"{arr} / {b} / {d}")
        print(f"| {n} | " + " | ".join(cells) + " |")
    # Where the turns given in the storm's first second send their clients back (the time the
    # client comes back at: the refusal's end plus the turn, before the client's +0-20 %).
    print("\n# busy answers given in the first second after the kill: turn ms per node, quartiles and count")
    for n in nodes:
        t = sorted(a[3] for a in attempts if a[1] == n and a[3] is not None and a[3] >= 0 and 0 <= a[2] - kill_ms < 1000)
        if t:
            q = statistics.quantiles(t, n=4) if len(t) > 1 else [t[0]] * 3
            print(f"node {n}: {len(t)} turns, min {t[0]} / q1 {q[0]:.0f} / median {q[1]:.0f} / q3 {q[2]:.0f} / max {t[-1]}")
    oks = [a for a in attempts if a[3] is None]
    resumed = sorted(a[2] - kill_ms for a in oks)
    if resumed:
        print(f"\n# {len(resumed)} successful reconnects: kill -> SyncDone p50 {resumed[len(resumed) // 2]:.0f} ms, "
              f"p99 {resumed[int(len(resumed) * 0.99)]:.0f} ms, max {resumed[-1]:.0f} ms; "
              f"{sum(1 for a in attempts if a[3] is not None and a[3] >= 0)} busy answers, "
              f"{sum(1 for a in attempts if a[3] == -1)} other failures")


if __name__ == "__main__":
    main()
