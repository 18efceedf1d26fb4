#!/usr/bin/env bash
# A busy refusal's cost in isolation (issue 15, session 17; BENCHMARKS.md "Session 17: a login's
# own cost"): Redis on a unix socket in a temp dir, one rcall-server node in cluster mode with a
# login bound of 1 (one tokio thread, CPU 0), Redis paused so that one login holds the bound,
# then N logins (CONC at a time, the Node `ws` client on CPU 1: `npm ci` first) refused as busy;
# prints the node's CPU per refusal. Run it in a private network namespace:
#   unshare -n bash -c "ip link set lo up && bash crates/loadgen/refusal.sh [BIN] [N] [CONC]"
# BIN defaults to $TARGET_DIR/release/rcall-server (TARGET_DIR: $CARGO_TARGET_DIR or target).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
TARGET_DIR=${TARGET_DIR:-${CARGO_TARGET_DIR:-$ROOT/target}}
BIN=${1:-$TARGET_DIR/release/rcall-server}
N=${2:-20000}
CONC=${3:-200}
T=$(mktemp -d)
PIDS=()
cleanup() {
    redis-cli -s "$T/redis.sock" CLIENT UNPAUSE >/dev/null 2>&1 || true
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$T"
}
trap cleanup EXIT
redis-server --port 0 --unixsocket "$T/redis.sock" --save '' --appendonly no >"$T/redis.log" 2>&1 &
PIDS+=($!)
for _ in $(seq 50); do [ -S "$T/redis.sock" ] && break; sleep 0.1; done
PORT=$((20000 + RANDOM % 20000))
RUST_LOG=warn TOKIO_WORKER_THREADS=1 taskset -c 0 "$BIN" --listen "127.0.0.1:$PORT" --db "$T/node.db" \
    --app-key bench-app --app-secret bench-secret-0123456789 --sdk-dir "$T" --web-dir "$T" \
    --redis "unix://$T/redis.sock" --max-logins-in-progress 1 >"$T/node.out" 2>"$T/node.err" &
NODE=$!
PIDS+=("$NODE")
for _ in $(seq 100); do curl -s -o /dev/null "http://127.0.0.1:$PORT/" && break; sleep 0.1; done
# A valid token for the login that holds the slot (the refused ones are not checked).
TOKEN=$(python3 - <<'PY'
import base64, hashlib, hmac, json, time
now = int(time.time() * 1000)
p = json.dumps({"k": "bench-app", "u": "holder", "iat": now, "exp": now + 600000}, separators=(",", ":")).encode()
sig = hmac.new(b"bench-secret-0123456789", p, hashlib.sha256).digest()
b64 = lambda b: base64.urlsafe_b64encode(b).decode().rstrip("=")
print(b64(p) + "." + b64(sig))
PY
)
redis-cli -s "$T/redis.sock" CLIENT PAUSE 120000 ALL >/dev/null
echo "# $(date -u +%FT%TZ) $BIN; load average $(cut -d' ' -f1-3 /proc/loadavg)"
taskset -c 1 node "$ROOT/crates/loadgen/refusal.mjs" "$PORT" "$NODE" "$N" "$CONC" "$TOKEN"
