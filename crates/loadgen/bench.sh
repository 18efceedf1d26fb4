#!/usr/bin/env bash
# The signalling benchmark (BENCHMARKS.md, "Signalling server"): rcall-server, a PeerJS server
# (npm `peer` 1.0.2, installed into $PEER_DIR on first use) and matchbox_server 0.15 (crates.io,
# `cargo install`ed into $MATCHBOX_DIR on first use) each pinned to CPU 0, the load generator on
# CPU 1, all servers driven by the same generator in one run; it prints, per rate, each
# server's CPU per routed message and rcall's ratio to the better peer, and each server's knee. Everything stays on 127.0.0.1 and
# every phase is bounded in time and count.
#
#   bash crates/loadgen/bench.sh                      # defaults below
#   RATES=35000,70000 PAIRS=500 IDLE=19000 bash crates/loadgen/bench.sh
#   HOSTILE=offline,fanout,slowloris bash crates/loadgen/bench.sh   # one attacker vs 500 honest pairs
#   ACTIVE_MEM=5000 IDLE=5000 RATES= SKIP_PEERJS=1 bash crates/loadgen/bench.sh   # memory under traffic
#
# With HOSTILE set (SECURITY.md): rcall only, every limit at its production default, RATES
# defaults to 20000 and IDLE to 0; per rate, runs without an attacker, with each attacker kind,
# and without again (see rcall-loadgen's isolation phase). HOSTILE_RATE (frames/s the floods
# offer, default 20000) and HOSTILE_SOCKETS (slowloris, default 512) tune the attacker.
#
# Env: RATES (comma list, total offered msg/s), PAIRS, IDLE (idle connections for the memory
# figure; this machine caps a process at 20,000 open files), WARMUP, DURATION (s), PAYLOAD
# (bytes), SKIP_PEERJS=1, PEER_DIR, SKIP_MATCHBOX=1, MATCHBOX_DIR, TARGET_DIR (cargo target dir), NICE (e.g. -10: run the
# servers and the generator at a higher CPU priority than other work on a shared machine),
# RCALL_BIN (a prebuilt rcall-server to measure instead of this tree's, e.g. an older commit's),
# LOADGEN_BIN (likewise a prebuilt rcall-loadgen, e.g. to A/B a generator change),
# SKIP_BUILD=1 (no cargo build: run the binaries already in $TARGET_DIR/release), REDIS_STATS=1
# (print Redis's per-command statistics and slow log at the end), REDIS_MEM=1 (sample where
# Redis's memory goes every REDIS_MEM_SECS, default 5: INFO memory, the clients' query and output
# buffers, keys per kind with their MEMORY USAGE; printed at the end for the last sample before the
# kill and the one at Redis's peak RSS: crates/loadgen/redis_mem.py), REDIS_STREAM_NODE (Redis's
# stream-node-max-bytes, default 1024 as docs/cluster.md recommends; 4096 is Redis's default).
# RATES empty (RATES=) runs no load phase. SERVER_FLAGS: more flags for every rcall-server started
# (e.g. SERVER_FLAGS="--max-logins-in-progress 0").
#
# ACTIVE_MEM (connections, even; default 0 = off): the memory-under-traffic phase, run last on a
# second rcall-server started fresh with the same flags (memory freed by the earlier phases would
# otherwise be reused and the figure read low): ACTIVE_MEM/2 pairs carry ACTIVE_RATE msg/s in all
# (default 10000) for ACTIVE_SECS (default 90: past the server's 60 s resume window) while its RSS is sampled every 5 s; printed beside
# the idle figure of the same run (IDLE).
#
# Cluster mode (issue 15; a private Redis on a unix socket in the temp dir, pinned with the servers):
#   CLUSTER=2 bash crates/loadgen/bench.sh        # 2 nodes + Redis against one node, same run
# CLUSTER=N starts N rcall-server nodes with `--redis unix://…` beside the usual single node
# (SQLite); every pair has its caller on one node and its callee on the next; per rate it prints
# the nodes' CPU per routed message (summed), Redis's own (utime + stime of redis-server over
# the window), and the single node's, and both knees. PeerJS/matchbox and the idle phase are
# off unless asked for (SKIP_PEERJS=0 SKIP_MATCHBOX=0 IDLE=…); RATES defaults to
# 5000,10000,15000,20000,25000,30000,35000.
#
#   FAILOVER_CONNS=100000 NODES=7 bash crates/loadgen/bench.sh   # 100,000 connections, kill -9 of a node
#   FAILOVER_CONNS=6000 NODES=6 bash crates/loadgen/bench.sh     # the same, small (about 1 min)
# FAILOVER_CONNS: Redis + NODES nodes (default 6), the generator as FAILOVER_WORKERS processes
# (default 8), FAILOVER_RATE msg/s (default 5000) for FAILOVER_SECS (default 60), node
# KILL_NODE (default 0) killed with SIGKILL at KILL_AT s (default 25; 0 = none), then a drain
# until every client is back and quiet, at most DRAIN_SECS (default 60); see
# rcall-loadgen's failover module for what it counts. Nothing else runs. IGNORE_RETRY_AFTER=1:
# the clients wait their idle backoff after a busy refusal instead of the node's turn
# (`AuthResult.retry_after_ms`), as the SDK did before session 14 (the busy retry's A/B).
#
# Where a cluster node's CPU goes (issue 15, session 13; BENCHMARKS.md, "Session 13"): one node's
# share of the 100,000 run (14,286 connections, ~714 msg/s sent and as many received) on 2 nodes:
#   FAILOVER_CONNS=28000 NODES=2 FAILOVER_WORKERS=4 FAILOVER_RATE=1400 KILL_AT=0 FAILOVER_SECS=30 \
#     DRAIN_SECS=3 CPU_SAMPLE=5 bash crates/loadgen/bench.sh
# CPU_SAMPLE=S prints every S s each node's and Redis's CPU over the last S s, with the load
# average (the connect, idle and traffic phases apart; FAILOVER_RATE=0 for idle connections only).
# PERF_NODE=K records node K (1-based) with `perf record` from PERF_AFTER s (default 20) for
# PERF_SECS s (10) at PERF_FREQ Hz (499) with PERF_ARGS (default -g; "--call-graph dwarf,16384"
# for Rust frames) into PERF_OUT (/tmp/rcall-node.perf). AB_BIN (a binary), AB_ENV (VAR=value …)
# and AB_FLAGS (flags) apply to the even-numbered nodes only: with NODES=2 both nodes carry the
# same traffic, so an A/B compares in one run at the same load. CALLGRIND_OUT=DIR runs every
# rcall-server under callgrind (counts in DIR/node1.cg …; crates/loadgen/cg_nodes.sh prints
# instructions per message; keep the rate low, e.g. FAILOVER_CONNS=200 FAILOVER_RATE=100).
# NODE_THREADS=N: every rcall-server with N tokio worker threads (TOKIO_WORKER_THREADS).
# CLIENT_PING_MS (default 5000, the SDK's PING_INTERVAL_MS; 0 = silent clients): every failover
# client sends an app Ping this often, as the SDK does; liveness is most of an idle node's CPU,
# so silent clients (the server's WebSocket pings instead) measure another path (BENCHMARKS.md,
# "Session 14: the cost of liveness").
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"
HOSTILE=${HOSTILE:-}
if [ -n "$HOSTILE" ]; then
    RATES=${RATES:-20000}
    IDLE=${IDLE:-0}
    SKIP_PEERJS=1
    SKIP_MATCHBOX=1
fi
CLUSTER=${CLUSTER:-0}
FAILOVER_CONNS=${FAILOVER_CONNS:-0}
if [ "$CLUSTER" != 0 ] || [ "$FAILOVER_CONNS" != 0 ]; then
    SKIP_PEERJS=${SKIP_PEERJS:-1}
    SKIP_MATCHBOX=${SKIP_MATCHBOX:-1}
    IDLE=${IDLE:-0}
    [ "$CLUSTER" = 0 ] || RATES=${RATES-5000,10000,15000,20000,25000,30000,35000}
fi
RATES=${RATES-20000,35000,50000,70000,100000}
PAIRS=${PAIRS:-500}
IDLE=${IDLE:-19000}
WARMUP=${WARMUP:-3}
DURATION=${DURATION:-10}
PAYLOAD=${PAYLOAD:-300}
PEER_DIR=${PEER_DIR:-/tmp/rcall-bench-peerjs}
MATCHBOX_DIR=${MATCHBOX_DIR:-/tmp/rcall-bench-matchbox}
TARGET_DIR=${TARGET_DIR:-${CARGO_TARGET_DIR:-target}}
SERVER_CPU=${SERVER_CPU:-0}
LOADGEN_CPU=${LOADGEN_CPU:-1}
NICE=${NICE:-0}
ACTIVE_MEM=${ACTIVE_MEM:-0}
ACTIVE_RATE=${ACTIVE_RATE:-10000}
ACTIVE_SECS=${ACTIVE_SECS:-90}

# SKIP_BUILD=1: use what $TARGET_DIR/release holds (e.g. while the tree is being edited).
[ -n "${SKIP_BUILD:-}" ] || cargo build --release -p rcall-server -p rcall-loadgen --target-dir "$TARGET_DIR" >&2
BIN="$TARGET_DIR/release"
RCALL_BIN=${RCALL_BIN:-$BIN/rcall-server}
TMP=$(mktemp -d)
PIDS=()
cleanup() {
    [ -z "$AUTOGROUP_NICE0" ] || echo "$AUTOGROUP_NICE0" >/proc/self/autogroup 2>/dev/null || true
    # REDIS_STATS=1: Redis's per-command counts and µs (scripts' inner commands included) over
    # the whole run, before Redis is stopped: where its CPU per routed message goes.
    if [ -n "${REDIS_STATS:-}" ] && [ -S "$TMP/redis.sock" ]; then
        redis-cli -s "$TMP/redis.sock" INFO commandstats | grep '^cmdstat' | sed 's/^/# redis /' >&2 || true
        redis-cli -s "$TMP/redis.sock" SLOWLOG GET 5 | tr '\n' ' ' | sed 's/^/# redis slowlog: /' >&2 || true
        echo >&2
    fi
    [ -z "${REDIS_MEM_PID:-}" ] || kill "$REDIS_MEM_PID" 2>/dev/null || true
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    [ ! -s "$TMP/redis_mem.jsonl" ] || python3 "$ROOT/crates/loadgen/redis_mem.py" --report "$TMP/redis_mem.jsonl" >&2 || true
    # LOG_DIR: keep the servers' and Redis's logs (and the failover generator's attempt logs,
    # attempts.K.log: crates/loadgen/storm.py LOG_DIR prints the storm per node from them).
    if [ -n "${LOG_DIR:-}" ]; then mkdir -p "$LOG_DIR" && cp "$TMP"/*.err "$TMP"/*.out "$TMP"/*.log "$LOG_DIR"/ 2>/dev/null || true; fi
    rm -rf "$TMP"
}
trap cleanup EXIT

# With the kernel's autogroup scheduling (sched_autogroup_enabled=1) a nice value only ranks
# processes within their session; other sessions' builds still get an equal share of each
# core. NICE < 0 therefore also sets this session's autogroup nice for the run (restored at
# exit), or the cluster runs get a fraction of CPU 0 and time out in Redis round trips.
AUTOGROUP_NICE0=
if [ "$NICE" -lt 0 ] && [ -w /proc/self/autogroup ]; then
    AUTOGROUP_NICE0=$(sed -n 's/.* nice //p' /proc/self/autogroup)
    echo "$NICE" >/proc/self/autogroup 2>/dev/null || AUTOGROUP_NICE0=
fi

ulimit -n 20000 2>/dev/null || true

# rcall-server: production defaults except the per-connection and per-user rate limits above
# the offered per-connection rate (the defaults, 100/s per connection and 200/s per user, would
# refuse the benchmark's own traffic at the higher rates). Every other limit (unauthenticated
# caps per server and IP, per-user/per-device connection caps, offline quotas) is at its default.
# With HOSTILE, every limit stays at its default: the honest pairs (20 msg/s per connection at
# 20,000/s) are well inside them, and the attacker meets what production would.
RATE_FLAGS=(--rate-limit-per-sec 5000 --rate-limit-burst 10000 --user-rate-per-sec 5000 --user-rate-burst 10000)
[ -z "$HOSTILE" ] || RATE_FLAGS=()
# SERVER_FLAGS: more rcall-server flags for every node (e.g. "--max-logins-in-progress 0").
read -r -a EXTRA_FLAGS <<<"${SERVER_FLAGS:-}"
RATE_FLAGS+=("${EXTRA_FLAGS[@]}")
# start_rcall NAME [FLAG…]: starts an rcall-server; sets RCALL_PID and RCALL_ADDR.
start_rcall() {
    local name=$1
    shift
    # CALLGRIND_OUT=DIR: every rcall-server runs under callgrind, its counts in DIR/NAME.cg.
    local wrap=()
    [ -z "${CALLGRIND_OUT:-}" ] || wrap=(valgrind --tool=callgrind "--callgrind-out-file=$CALLGRIND_OUT/$name.cg")
    RUST_LOG=${SERVER_LOG:-warn}${SERVER_LOG_EXTRA:-} env ${NODE_THREADS:+TOKIO_WORKER_THREADS=$NODE_THREADS} ${NODE_ENV:-} nice -n "$NICE" taskset -c "$SERVER_CPU" "${wrap[@]}" "${NODE_BIN:-$RCALL_BIN}" --listen 127.0.0.1:0 --db "$TMP/$name.db" \
        --app-key bench-app --app-secret bench-secret-0123456789 --sdk-dir "$TMP" --web-dir "$TMP" \
        "${RATE_FLAGS[@]}" "$@" >"$TMP/$name.out" 2>"$TMP/$name.err" &
    RCALL_PID=$!
    PIDS+=("$RCALL_PID")
    for _ in $(seq 600); do grep -q 'listening on' "$TMP/$name.out" 2>/dev/null && break; sleep 0.1; done
    RCALL_ADDR=$(sed -n 's#^rcall-server listening on http://##p' "$TMP/$name.out")
    [ -n "$RCALL_ADDR" ] || { cat "$TMP/$name.err" >&2; exit 1; }
}
# start_redis: a private Redis on a unix socket in $TMP (no TCP port, no persistence), pinned with
# the servers; sets REDIS_PID and REDIS_URL.
start_redis() {
    # REDIS_CALLGRIND=FILE: Redis runs under callgrind, its counts in FILE (issue 15: Redis's
    # instructions per routed message, whatever the machine's load; crates/loadgen/cg_redis.sh).
    local wrap=()
    [ -z "${REDIS_CALLGRIND:-}" ] || wrap=(valgrind --tool=callgrind "--callgrind-out-file=$REDIS_CALLGRIND")
    nice -n "$NICE" taskset -c "${REDIS_CPU:-$SERVER_CPU}" "${wrap[@]}" redis-server --port 0 --unixsocket "$TMP/redis.sock" --unixsocketperm 700 \
        --save "" --appendonly no --daemonize no --dir "$TMP" --logfile "$TMP/redis.log" \
        --stream-node-max-bytes "${REDIS_STREAM_NODE:-1024}" &
    REDIS_PID=$!
    PIDS+=("$REDIS_PID")
    for _ in $(seq 300); do [ -S "$TMP/redis.sock" ] && break; sleep 0.1; done
    [ -S "$TMP/redis.sock" ] || { cat "$TMP/redis.log" >&2; exit 1; }
    REDIS_URL="unix://$TMP/redis.sock"
    if [ -n "${REDIS_MEM:-}" ]; then
        python3 "$ROOT/crates/loadgen/redis_mem.py" "$TMP/redis.sock" "$TMP/redis_mem.jsonl" "${REDIS_MEM_SECS:-5}" &
        REDIS_MEM_PID=$!
    fi
}
# start_nodes N: N cluster nodes on $REDIS_URL; sets NODE_URLS and NODE_PIDS (comma lists).
start_nodes() {
    local urls=() pids=()
    for i in $(seq "$1"); do
        # AB_BIN / AB_ENV / AB_FLAGS: the even-numbered nodes run that binary / with those
        # variables / with those flags too, the others RCALL_BIN as is: an A/B in one run (with
        # FAILOVER_CONNS and NODES=2 both nodes carry the same traffic, so their CPU compares at
        # the same load).
        if [ $((i % 2)) = 0 ]; then
            read -r -a ab_flags <<<"${AB_FLAGS:-}"
            NODE_BIN=${AB_BIN:-} NODE_ENV=${AB_ENV:-} start_rcall "node$i" --redis "$REDIS_URL" "${ab_flags[@]}"
        else
            start_rcall "node$i" --redis "$REDIS_URL"
        fi
        urls+=("ws://$RCALL_ADDR/ws")
        pids+=("$RCALL_PID")
    done
    NODE_URLS=$(IFS=,; echo "${urls[*]}")
    NODE_PIDS=$(IFS=,; echo "${pids[*]}")
}

# cpu_timeline PIDS SECS: every SECS s, each pid's CPU (utime + stime) over the last SECS s, with
# the load average: which phase (connect, steady, drain) a node's CPU goes to.
cpu_timeline() {
    local tck t=0 p line
    tck=$(getconf CLK_TCK)
    declare -A last
    for p in ${1//,/ }; do last[$p]=$(awk '{print $14 + $15}' "/proc/$p/stat" 2>/dev/null); done
    while sleep "$2"; do
        t=$((t + $2))
        line="# cpu t=${t}s"
        for p in ${1//,/ }; do
            local now
            now=$(awk '{print $14 + $15}' "/proc/$p/stat" 2>/dev/null) || now=
            [ -n "$now" ] || { line+=" $p:-"; continue; }
            line+=" $p:$(awk -v a="$now" -v b="${last[$p]:-$now}" -v k="$tck" 'BEGIN{printf "%.2f", (a - b) / k}')"
            last[$p]=$now
        done
        echo "$line s; load $(cut -d' ' -f1-3 /proc/loadavg)"
    done
}
if [ "$FAILOVER_CONNS" != 0 ]; then
    start_redis
    # Each login's stages (debug lines of `rcall_server::cluster::login`): the generator reads
    # them from the nodes' logs for its per-stage resume figures.
    # Their memory gauges every 5 s (`rcall_server::mem`): printed at each node's peak RSS.
    SERVER_LOG_EXTRA=,rcall_server::cluster::login=debug,rcall_server::mem=debug
    start_nodes "${NODES:-6}"
    NODE_LOGS=$(for i in $(seq "${NODES:-6}"); do printf '%s,' "$TMP/node$i.err"; done)
    echo "# $(date -u +%FT%TZ) $(uname -r), $(nproc) CPUs; nodes + Redis on CPU $SERVER_CPU, loadgen on CPU $LOADGEN_CPU, nice $NICE; load average $(cut -d' ' -f1-3 /proc/loadavg)"
    echo "# rcall-server $RCALL_BIN ($(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo '?') tree), $(redis-server --version | cut -d' ' -f1-3)"
    echo "# clients app-ping every ${CLIENT_PING_MS:-5000} ms (0 = never)"
    echo "# node pids $NODE_PIDS, Redis $REDIS_PID${AB_BIN:+; even nodes run $AB_BIN}${AB_ENV:+; even nodes with $AB_ENV}${AB_FLAGS:+; even nodes with flags $AB_FLAGS}"
    if [ -n "${CPU_SAMPLE:-}" ]; then
        cpu_timeline "$NODE_PIDS,$REDIS_PID" "$CPU_SAMPLE" &
        PIDS+=("$!")
    fi
    if [ -n "${PERF_NODE:-}" ]; then
        PERF_PID=$(cut -d, -f"$PERF_NODE" <<<"$NODE_PIDS")
        (sleep "${PERF_AFTER:-20}" && perf record -F "${PERF_FREQ:-499}" ${PERF_ARGS--g} -p "$PERF_PID" -o "${PERF_OUT:-/tmp/rcall-node.perf}" \
            -- sleep "${PERF_SECS:-10}" >/dev/null 2>&1 && echo "# perf: node $PERF_NODE (pid $PERF_PID) from ${PERF_AFTER:-20} s for ${PERF_SECS:-10} s into ${PERF_OUT:-/tmp/rcall-node.perf}; load average $(cut -d' ' -f1-3 /proc/loadavg)") &
    fi
    nice -n "$NICE" taskset -c "$LOADGEN_CPU" "${LOADGEN_BIN:-$BIN/rcall-loadgen}" --app-key bench-app --app-secret bench-secret-0123456789 \
        --failover-conns "$FAILOVER_CONNS" --nodes "$NODE_URLS" --node-pids "$NODE_PIDS" --redis-pid "$REDIS_PID" \
        --failover-rate "${FAILOVER_RATE:-5000}" --failover-secs "${FAILOVER_SECS:-60}" --kill-at-secs "${KILL_AT:-25}" \
        --kill-node "${KILL_NODE:-0}" --workers "${FAILOVER_WORKERS:-8}" --drain-secs "${DRAIN_SECS:-60}" --payload "$PAYLOAD" --node-logs "${NODE_LOGS%,}" \
        --client-ping-ms "${CLIENT_PING_MS:-5000}" ${LOG_DIR:+--attempt-log "$TMP/attempts"} \
        $([ "${IGNORE_RETRY_AFTER:-0}" != 0 ] && echo --ignore-retry-after)
    exit 0
fi
if [ "$ACTIVE_MEM" != 0 ]; then
    start_rcall active
    ACTIVE_ARGS=(--active-memory "$ACTIVE_MEM" --active-rate "$ACTIVE_RATE" --active-secs "$ACTIVE_SECS"
        --active-rcall "ws://$RCALL_ADDR/ws" --active-rcall-pid "$RCALL_PID")
else
    ACTIVE_ARGS=()
fi
start_rcall bench

ARGS=(--rcall "ws://$RCALL_ADDR/ws" --rcall-pid "$RCALL_PID" --app-key bench-app --app-secret bench-secret-0123456789)
ARGS+=("${ACTIVE_ARGS[@]}")
if [ "$CLUSTER" != 0 ]; then
    start_redis
    start_nodes "$CLUSTER"
    ARGS+=(--cluster "$NODE_URLS" --cluster-pids "$NODE_PIDS" --redis-pid "$REDIS_PID")
fi
if [ -n "$RATES" ]; then ARGS+=(--rates "$RATES"); else ARGS+=(--rates); fi
[ -z "$HOSTILE" ] || ARGS+=(--hostile "$HOSTILE" --hostile-rate "${HOSTILE_RATE:-20000}" --hostile-sockets "${HOSTILE_SOCKETS:-512}")

if [ "${SKIP_PEERJS:-0}" != 1 ]; then
    if [ ! -x "$PEER_DIR/node_modules/.bin/peerjs" ]; then
        mkdir -p "$PEER_DIR"
        npm install --prefix "$PEER_DIR" --no-audit --no-fund --loglevel=error peer@1.0.2 >&2
    fi
    PEER_PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
    nice -n "$NICE" taskset -c "$SERVER_CPU" node "$PEER_DIR/node_modules/peer/dist/bin/peerjs.js" --host 127.0.0.1 --port "$PEER_PORT" \
        --concurrent_limit 50000 --alive_timeout 3600000 >"$TMP/peer.out" 2>&1 &
    PEER_PID=$!
    PIDS+=("$PEER_PID")
    for _ in $(seq 100); do
        (exec 3<>"/dev/tcp/127.0.0.1/$PEER_PORT") 2>/dev/null && break
        sleep 0.1
    done
    ARGS+=(--peerjs "ws://127.0.0.1:$PEER_PORT/peerjs" --peerjs-pid "$PEER_PID")
fi

if [ "${SKIP_MATCHBOX:-0}" != 1 ]; then
    if [ ! -x "$MATCHBOX_DIR/bin/matchbox_server" ]; then
        cargo install --locked matchbox_server --version 0.15.0 --root "$MATCHBOX_DIR" \
            --target-dir "$MATCHBOX_DIR/target" >&2
    fi
    MB_PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
    # Logging at warn like rcall-server (its default logs every connection at info).
    RUST_LOG=warn nice -n "$NICE" taskset -c "$SERVER_CPU" "$MATCHBOX_DIR/bin/matchbox_server" "127.0.0.1:$MB_PORT" \
        >"$TMP/matchbox.out" 2>&1 &
    MB_PID=$!
    PIDS+=("$MB_PID")
    for _ in $(seq 100); do
        (exec 3<>"/dev/tcp/127.0.0.1/$MB_PORT") 2>/dev/null && break
        sleep 0.1
    done
    ARGS+=(--matchbox "ws://127.0.0.1:$MB_PORT" --matchbox-pid "$MB_PID")
fi

echo "# $(date -u +%FT%TZ) $(uname -r), $(nproc) CPUs; server on CPU $SERVER_CPU, loadgen on CPU $LOADGEN_CPU, nice $NICE; load average $(cut -d' ' -f1-3 /proc/loadavg)"
echo "# rcall-server $RCALL_BIN ($(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo '?') tree), peer@1.0.2 on node $(node --version 2>/dev/null || echo '-'), matchbox_server 0.15.0"
nice -n "$NICE" taskset -c "$LOADGEN_CPU" "${LOADGEN_BIN:-$BIN/rcall-loadgen}" "${ARGS[@]}" --pairs "$PAIRS" \
    --warmup-secs "$WARMUP" --duration-secs "$DURATION" --payload "$PAYLOAD" --idle "$IDLE"
