#!/usr/bin/env bash
# Instructions per routed message of one rcall-server build (issue 15; BENCHMARKS.md, "Session
# 12"): noise-insensitive, so an A/B holds on a busy machine. Starts the server under
# `valgrind --tool=callgrind` with bench.sh's flags, drives it with a fixed rcall-loadgen workload,
# and prints the inclusive counts of the hot path divided by the `Hub::route` calls.
#
#   bash crates/loadgen/callgrind.sh OLD_BIN old & bash crates/loadgen/callgrind.sh NEW_BIN new; wait
#
# Run the two builds at the same time (as above): a server starved of CPU batches more per wake-up
# and reads fewer times per message, so runs at different loads do not compare. Compare the per-call
# figures too (printed with the call counts). Env: PAIRS (50), RATE (total msg/s, 150), SECS (20),
# TARGET_DIR (where rcall-loadgen is built), OUT (directory for the callgrind files, /tmp).
set -euo pipefail
command -v valgrind >/dev/null || { echo "callgrind.sh needs valgrind: apt-get install -y valgrind (a benchmark tool; scripts/setup.sh does not install it)" >&2; exit 1; }
BIN=$1
NAME=$2
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
TARGET_DIR=${TARGET_DIR:-${CARGO_TARGET_DIR:-$ROOT/target}}
OUT=${OUT:-/tmp}
D=$(mktemp -d)
trap 'rm -rf "$D"' EXIT
RUST_LOG=warn valgrind --tool=callgrind --callgrind-out-file="$OUT/$NAME.cg" "$BIN" --listen 127.0.0.1:0 \
    --db "$D/x.db" --app-key bench-app --app-secret bench-secret-0123456789 --sdk-dir "$D" --web-dir "$D" \
    --rate-limit-per-sec 5000 --rate-limit-burst 10000 --user-rate-per-sec 5000 --user-rate-burst 10000 \
    >"$D/out" 2>"$D/err" &
PID=$!
for _ in $(seq 600); do grep -q 'listening on' "$D/out" 2>/dev/null && break; sleep 0.2; done
ADDR=$(sed -n 's#^rcall-server listening on http://##p' "$D/out")
[ -n "$ADDR" ] || { cat "$D/err" >&2; exit 1; }
echo "# $NAME: $BIN; load average $(cut -d' ' -f1-3 /proc/loadavg)"
"$TARGET_DIR/release/rcall-loadgen" --rcall "ws://$ADDR/ws" --rcall-pid "$PID" --app-key bench-app \
    --app-secret bench-secret-0123456789 --pairs "${PAIRS:-50}" --rates "${RATE:-150}" --warmup-secs 0 \
    --duration-secs "${SECS:-20}" --idle 0 2>&1 | grep '^rcall-server'
kill -INT "$PID"
wait "$PID" || true
echo "# $NAME: load average $(cut -d' ' -f1-3 /proc/loadavg) at the end"
TREE="$OUT/$NAME.cg.tree"
callgrind_annotate --inclusive=yes --tree=caller "$OUT/$NAME.cg" >"$TREE" 2>/dev/null
# Inclusive count and calls of a function (the calls summed over its callers).
count() {
    awk -v f="$1" '
        index($0, "*  ???:" f " [") > 0 { gsub(",", "", $1); incl = $1; exit }
        /^ *[0-9,]+ .*< / { line = $0; sub(/.*\(/, "", line); sub(/x\).*/, "", line); gsub(",", "", line); calls += line }
        /^$/ { calls = 0 }
        END { print incl + 0, calls + 0 }' "$TREE"
}
read -r _ ROUTES < <(count "rcall_server::hub::Hub::route")
TOTAL=$(awk '/PROGRAM TOTALS/ { gsub(",", "", $1); print $1 }' "$TREE")
echo "# $NAME: $ROUTES messages routed; whole process $((TOTAL / ROUTES)) instructions per message"
printf '%10s %10s %8s  %s\n' "per msg" calls "per call" function
for f in "<tokio_util::task::task_tracker::TrackedFuture<F> as core::future::future::Future>::poll" \
    "rcall_server::ws::on_inbound" "rcall_server::hub::Hub::route" \
    "rtc_core::proto::envelope::ClientFrame::from_bytes" \
    "<rcall_server::socket::WebSocket<S> as futures_core::stream::Stream>::poll_next" \
    "rcall_server::socket::Decoder::decode" "rcall_server::ws::write_or_abort::{{closure}}" \
    "rcall_server::hub::Hub::ack" "_rjem_malloc" "_rjem_sdallocx"; do
    read -r INCL CALLS < <(count "$f")
    [ "$INCL" != 0 ] || continue
    printf '%10d %10d %8d  %s\n' $((INCL / ROUTES)) "$CALLS" $((INCL / (CALLS > 0 ? CALLS : 1))) "$f"
done
