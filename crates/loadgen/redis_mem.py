#!/usr/bin/env python3
"""Where Redis's memory goes (issue 15's 1 GB goal): bench.sh runs this with REDIS_MEM=1.

    redis_mem.py SOCKET LOG [INTERVAL_S]   # sample every INTERVAL_S (5) until Redis goes away
    redis_mem.py --report LOG              # print the sample before the kill and the peak one

Each sample: INFO memory, MEMORY STATS, the clients' buffers (CLIENT LIST: query buffers of the
nodes' pipelined scripts, output buffers of their pub/sub subscribers), and per key kind (the
part after `rcall:{app}:`, e.g. `mbox`, `presence`) the count, the total of MEMORY USAGE over a
sample of up to 64 keys scaled to the count, and the encodings seen. One full SCAN per sample:
cheap next to the benchmark's traffic (a few hundred thousand keys at 100,000 connections).
Standard library only: a minimal RESP client over the unix socket.
"""
import json
import os
import socket
import sys
import time


class Redis:
    def __init__(self, path):
        self.s = socket.socket(socket.AF_UNIX)
        self.s.settimeout(60)
        self.s.connect(path)
        self.f = self.s.makefile("rb")

    def send(self, *cmds):
        out = []
        for c in cmds:
            out.append(b"*%d\r\n" % len(c))
            for a in c:
                a = a if isinstance(a, bytes) else str(a).encode()
                out.append(b"$%d\r\n%s\r\n" % (len(a), a))
        self.s.sendall(b"".join(out))
        return [self.read() for _ in cmds]

    def cmd(self, *a):
        return self.send(a)[0]

    def read(self):
        line = self.f.readline()
        if not line:
            raise EOFError
        t, rest = line[:1], line[1:-2]
        if t == b"+":
            return rest.decode()
        if t == b"-":
            return RuntimeError(rest.decode())
        if t == b":":
            return int(rest)
        if t == b"$":
            n = int(rest)
            if n < 0:
                return None
            b = self.f.read(n + 2)[:-2]
            try:
                return b.decode()
            except UnicodeDecodeError:
                return b
        if t == b"*":
            n = int(rest)
            return None if n < 0 else [self.read() for _ in range(n)]
        raise ValueError(line)


def kind(key):
    if isinstance(key, bytes):
        key = key.decode("latin-1")
    if key.startswith("rcall:{"):
        tag, _, rest = key[7:].partition("}:")
        if tag == "nodes":
            return "nodes:" + rest.split(":")[0]
        parts = rest.split(":")
        if parts[0] in ("policy", "rooms", "ch") and len(parts) > 1:
            return parts[0] + ":" + parts[1]
        return parts[0]
    return "other"


def sample(r, t0_ms):
    s = {"t": (time.time() * 1000 - t0_ms) / 1000}
    info = r.cmd("INFO", "memory")
    for line in info.split("\r\n"):
        if ":" in line:
            k, v = line.split(":", 1)
            if k in ("used_memory", "used_memory_rss", "used_memory_peak", "used_memory_dataset", "used_memory_overhead",
                     "mem_clients_normal", "used_memory_scripts", "used_memory_vm_eval", "mem_fragmentation_ratio",
                     "allocator_frag_ratio", "allocator_active", "allocator_resident", "mem_not_counted_for_evict"):
                s[k] = float(v) if "." in v else int(v)
    clients = r.cmd("CLIENT", "LIST").split("\n")
    agg = {"n": 0, "qbuf": 0, "qbuf_free": 0, "omem": 0, "tot_mem": 0, "pubsub": 0}
    top = []
    for c in clients:
        f = dict(kv.split("=", 1) for kv in c.split() if "=" in kv)
        if not f:
            continue
        agg["n"] += 1
        agg["qbuf"] += int(f.get("qbuf", 0))
        agg["qbuf_free"] += int(f.get("qbuf-free", 0))
        agg["omem"] += int(f.get("omem", 0))
        tm = int(f.get("tot-mem", 0))
        agg["tot_mem"] += tm
        if "P" in f.get("flags", ""):
            agg["pubsub"] += 1
        top.append((tm, f.get("flags", ""), int(f.get("qbuf", 0)), int(f.get("omem", 0)), f.get("cmd", "")))
    top.sort(reverse=True)
    s["clients"] = agg
    s["clients_top"] = top[:4]
    kinds = {}
    cursor = "0"
    while True:
        cursor, keys = r.cmd("SCAN", cursor, "COUNT", 2000)
        for k in keys:
            e = kinds.setdefault(kind(k), {"n": 0, "samples": []})
            e["n"] += 1
            if len(e["samples"]) < 64:
                e["samples"].append(k)
        if cursor == "0":
            break
    for name, e in kinds.items():
        keys = e.pop("samples")
        usage = r.send(*[("MEMORY", "USAGE", k, "SAMPLES", "0") for k in keys])
        enc = r.send(*[("OBJECT", "ENCODING", k) for k in keys])
        sizes = [u for u in usage if isinstance(u, int)]
        e["avg"] = sum(sizes) / max(len(sizes), 1)
        e["bytes"] = int(e["avg"] * e["n"])
        e["enc"] = sorted({x for x in enc if isinstance(x, str)})
    s["kinds"] = kinds
    return s


def run(path, log, t0_ms, interval):
    while not os.path.exists(path):
        time.sleep(0.1)
    r = None
    with open(log, "a") as out:
        while True:
            t = time.time()
            try:
                r = r or Redis(path)
                out.write(json.dumps(sample(r, t0_ms)) + "\n")
                out.flush()
            except (ConnectionRefusedError, FileNotFoundError):
                return  # Redis is gone: the run is over
            except (EOFError, OSError):
                r = None  # a busy Redis timed the sample out: connect again next time
            time.sleep(max(0.0, interval - (time.time() - t)))


def mb(b):
    return "%.1f" % (b / 1e6)


def show(label, s):
    c = s["clients"]
    print("# redis %s (t = %.0f s): used %s MB (dataset %s, overhead %s, clients %s, scripts %s), RSS %s MB, fragmentation %.2f (allocator %.2f)" % (
        label, s["t"], mb(s["used_memory"]), mb(s.get("used_memory_dataset", 0)), mb(s.get("used_memory_overhead", 0)),
        mb(s.get("mem_clients_normal", 0)), mb(s.get("used_memory_scripts", 0) + s.get("used_memory_vm_eval", 0)),
        mb(s["used_memory_rss"]), s.get("mem_fragmentation_ratio", 0), s.get("allocator_frag_ratio", 0)))
    print("# redis %s clients: %d (%d pub/sub), query buffers %s MB (+%s MB free), output buffers %s MB, total %s MB; largest: %s" % (
        label, c["n"], c["pubsub"], mb(c["qbuf"]), mb(c["qbuf_free"]), mb(c["omem"]), mb(c["tot_mem"]),
        ", ".join("%s MB [%s qbuf %s omem %s %s]" % (mb(t[0]), t[1], mb(t[2]), mb(t[3]), t[4]) for t in s["clients_top"])))
    kinds = sorted(s["kinds"].items(), key=lambda kv: -kv[1]["bytes"])
    print("# redis %s keys: %s" % (label, "; ".join(
        "%s %d × %.0f B = %s MB (%s)" % (k, e["n"], e["avg"], mb(e["bytes"]), "/".join(e["enc"])) for k, e in kinds)))


def report(log):
    samples = [json.loads(l) for l in open(log) if l.strip()]
    if not samples:
        print("# redis: no memory samples")
        return
    peak = max(samples, key=lambda s: s["used_memory_rss"])
    print("# redis memory over the run (t, used MB, RSS MB, streams): " + ", ".join(
        "%.0f s %s/%s/%d" % (s["t"], mb(s["used_memory"]), mb(s["used_memory_rss"]), s["kinds"].get("mbox", {}).get("n", 0))
        for s in samples))
    # Before the kill: the last sample with every node's connections to Redis still there.
    most = max(s["clients"]["n"] for s in samples)
    show("before the kill", [s for s in samples if s["clients"]["n"] == most][-1])
    show("at its peak RSS", peak)


if __name__ == "__main__":
    if sys.argv[1] == "--report":
        report(sys.argv[2])
    else:
        run(sys.argv[1], sys.argv[2], time.time() * 1000, float(sys.argv[3]) if len(sys.argv) > 3 else 5)
