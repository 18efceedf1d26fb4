#!/usr/bin/env bash
# Instructions of a Redis run under callgrind by bench.sh (REDIS_CALLGRIND=FILE, issue 15):
# the total and the inclusive counts of the route/ack path, each divided by MESSAGES (the
# run's issued messages), so two builds' scripts compare per message whatever the machine's
# load (one run per build: each has its own Redis).
#
#   bash crates/loadgen/cg_redis.sh MESSAGES FILE…
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/cg_per_message.sh"
FUNCTIONS=(evalShaCommand luaRedisGenericCommand readQueryFromClient writeToClient
    xaddCommand xtrimCommand xlenCommand delCommand publishCommand pexpireCommand getCommand
    setCommand existsCommand hkeysCommand hgetCommand hsetCommand hvalsCommand hgetallCommand
    timeCommand)
cg_line_of() { grep -E -- "[ :]$1( |$)"; }
cg_per_message "$@"
