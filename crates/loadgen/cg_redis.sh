#!/usr/bin/env bash
# Instructions of a Redis run under callgrind by bench.sh (REDIS_CALLGRIND=FILE, issue 15):
# the total and the inclusive counts of the route/ack path, each divided by MESSAGES (the
# run's issued messages), so two builds' scripts compare per message whatever the machine's
# load (one run per build: each has its own Redis).
#
#   bash crates/loadgen/cg_redis.sh MESSAGES FILE…
set -euo pipefail
MESSAGES=$1
shift
for f in "$@"; do
    tree=$(callgrind_annotate --inclusive=yes "$f" 2>/dev/null)
    total=$(sed -n 's/^ *\([0-9,]*\) .*PROGRAM TOTALS.*/\1/p' <<<"$tree" | tr -d , || true)
    printf '%s: %d instructions per message in all\n' "$f" $((total / MESSAGES))
    for fn in evalShaCommand luaRedisGenericCommand readQueryFromClient writeToClient \
        xaddCommand xtrimCommand xlenCommand delCommand publishCommand pexpireCommand getCommand \
        setCommand existsCommand hkeysCommand hgetCommand hsetCommand hvalsCommand hgetallCommand \
        timeCommand; do
        n=$(grep -E -- "[ :]$fn( |$)" <<<"$tree" | head -1 | sed 's/^ *\([0-9,]*\) .*/\1/' | tr -d , || true)
        printf '  %9d  %s\n' $((${n:-0} / MESSAGES)) "$fn"
    done
done
