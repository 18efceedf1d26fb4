#!/usr/bin/env bash
# Builds the SDK and the server, then runs the server in demo mode with the example app:
#   open http://127.0.0.1:8080/ in two browser tabs, log in as two users, call.
# Every RCALL_* variable passes through to the server (RCALL_LISTEN, RCALL_APP_KEY, RCALL_APP_SECRET,
# RCALL_DB, RCALL_DEV, ...); extra arguments are passed to rcall-server as flags.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

bash scripts/build.sh demo

LISTEN="${RCALL_LISTEN:-127.0.0.1:8080}"
DB="${RCALL_DB:-rcall-demo.db}"
echo
echo "[demo] open http://${LISTEN}/ in two tabs (three for a group call), log in as e.g. alice and bob, then call."
echo "[demo] db: $DB    stop: Ctrl-C"
echo
exec target/release/rcall-server --dev --listen "$LISTEN" --db "$DB" "$@"
