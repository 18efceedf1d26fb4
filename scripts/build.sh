#!/usr/bin/env bash
# What the demos (demo.sh, cluster-demo.sh) run first: setup.sh (tools and node_modules), the
# SDK (npm/build.sh → npm/dist) and the release server (target/release/rcall-server).
#   bash scripts/build.sh [LOG_TAG]    LOG_TAG prefixes its progress lines (default: build)
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
export PATH="$HOME/.cargo/bin:$PATH"
tag="${1:-build}"

bash scripts/setup.sh
echo "[$tag] building the SDK (npm/build.sh)"
bash npm/build.sh
echo "[$tag] building the server"
cargo build --release -p rcall-server
