#!/usr/bin/env bash
# The demo (scripts/demo.sh) on several nodes: a private Redis, three rcall-server nodes in
# cluster mode and HAProxy in front of them with examples/cluster/haproxy.cfg:
#   open http://127.0.0.1:8080/ in two or three tabs, log in as different users, call; each
#   tab's WebSocket lands on another node (the nodes log `connected user_id=…`).
#   Kill a node (the PIDs are printed) and watch its tabs reconnect to another one.
# Ports: RCALL_LB_BIND (127.0.0.1:8080), RCALL_NODE1..3 (127.0.0.1:8081..8083). Ctrl-C stops all.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
export PATH="$HOME/.cargo/bin:$PATH:/usr/sbin"

bash scripts/build.sh cluster-demo

export RCALL_LB_BIND="${RCALL_LB_BIND:-127.0.0.1:8080}"
export RCALL_NODE1="${RCALL_NODE1:-127.0.0.1:8081}"
export RCALL_NODE2="${RCALL_NODE2:-127.0.0.1:8082}"
export RCALL_NODE3="${RCALL_NODE3:-127.0.0.1:8083}"
DIR=$(mktemp -d -t rcall-cluster-demo.XXXXXX)
pids=()
cleanup() {
    trap - EXIT INT TERM
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    for _ in $(seq 50); do
        alive=0
        for p in "${pids[@]}"; do kill -0 "$p" 2>/dev/null && alive=1; done
        [ $alive = 0 ] && break
        sleep 0.1
    done
    for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null || true; done
    rm -rf "$DIR"
}
trap cleanup EXIT INT TERM

# Redis on a unix socket only (no TCP port); append-only file as production should run it.
redis-server --port 0 --unixsocket "$DIR/redis.sock" --unixsocketperm 700 --dir "$DIR" \
    --appendonly yes --appendfsync everysec --save '' --stream-node-max-bytes 1024 --logfile "$DIR/redis.log" &
pids+=($!)
for _ in $(seq 100); do [ -S "$DIR/redis.sock" ] && break; sleep 0.1; done
[ -S "$DIR/redis.sock" ] || { echo "[cluster-demo] redis-server did not start: $DIR/redis.log" >&2; exit 1; }

i=0
for addr in "$RCALL_NODE1" "$RCALL_NODE2" "$RCALL_NODE3"; do
    i=$((i + 1))
    # Same app key and secret (here the dev ones) on every node; each its own SQLite file.
    target/release/rcall-server --dev --listen "$addr" --db "$DIR/node$i.db" \
        --redis "unix://$DIR/redis.sock" >"$DIR/node$i.log" 2>&1 &
    pids+=($!)
    echo "[cluster-demo] node $i: http://$addr (pid $!, log $DIR/node$i.log)"
done
haproxy -f examples/cluster/haproxy.cfg -db 2>"$DIR/haproxy.log" &
pids+=($!)
echo
echo "[cluster-demo] open http://${RCALL_LB_BIND}/ in two or three tabs and call. Ctrl-C stops everything."
echo "[cluster-demo] which node each tab is on: grep connected $DIR/node*.log"
echo
wait -n
