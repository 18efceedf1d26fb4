#!/usr/bin/env bash
# Installs everything rcall needs to build, demo and test, on a fresh Debian 12 (as root) that
# has only rustup/cargo, node/npm and apt. Idempotent: each step is skipped when already done,
# so a second run takes about a second.
#
#   - Debian: chromium + chromium-driver (browser tests), coturn (TURN tests), iproute2/util-linux
#     (loopback netns), redis-server (cluster mode; its tests start their own on a unix socket),
#     haproxy (the cluster e2e test runs its pages through examples/cluster/haproxy.cfg),
#     janus (SFU mode for group calls; its tests start their own with a generated config),
#     a C toolchain (crates with C parts)
#   - Rust: the toolchain pinned by rust-toolchain.toml and its wasm32-unknown-unknown target
#   - wasm-bindgen-cli, exactly the version pinned in Cargo.toml (the CLI must equal the crate)
#   - wasm-pack, which runs the browser tests (`wasm-pack test --headless --chrome`)
#   - node_modules from package-lock.json (npm binaryen's wasm-opt, playwright-core)
#   - examples/vite/node_modules from its package-lock.json (vite, typescript: the Vite example test)
#
# Source it or run it; it only prints what it does.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
export PATH="$HOME/.cargo/bin:$PATH"

WASM_BINDGEN_VERSION=0.2.130
BINARYEN_VERSION=132.0.0
WASM_TARGET=wasm32-unknown-unknown

t0=$(date +%s)
say() { printf '[setup] %s\n' "$*"; }
die() { printf '[setup] ERROR: %s\n' "$*" >&2; exit 1; }

command -v cargo >/dev/null || die "cargo not found (install rustup first: https://rustup.rs)"
command -v rustup >/dev/null || die "rustup not found"
command -v node >/dev/null || die "node not found (need node >= 20)"
command -v npm >/dev/null || die "npm not found"
node_major=$(node -p 'process.versions.node.split(".")[0]')
[ "$node_major" -ge 20 ] || die "node >= 20 required, found $(node --version)"

# --- 1. Debian packages -------------------------------------------------------------------------
apt_missing=()
have_pkg() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'install ok installed'; }
{ command -v chromium >/dev/null && have_pkg chromium; } || apt_missing+=(chromium fonts-liberation)
{ command -v chromedriver >/dev/null && have_pkg chromium-driver; } || apt_missing+=(chromium-driver)
command -v ip >/dev/null || apt_missing+=(iproute2)
command -v turnserver >/dev/null || apt_missing+=(coturn)
command -v unshare >/dev/null || apt_missing+=(util-linux)
{ command -v redis-server >/dev/null || [ -x /usr/bin/redis-server ]; } || apt_missing+=(redis-server)
{ command -v haproxy >/dev/null || [ -x /usr/sbin/haproxy ]; } || apt_missing+=(haproxy)
{ command -v janus >/dev/null || [ -x /usr/bin/janus ]; } || apt_missing+=(janus)
command -v cc >/dev/null || apt_missing+=(build-essential)
# make: rcall-server's allocator (tikv-jemalloc-sys) builds jemalloc with configure + make.
command -v make >/dev/null || apt_missing+=(make)
command -v pkg-config >/dev/null || apt_missing+=(pkg-config)
# xz: npm/build.sh packs the CDN's wasm with it (npm/pack-wasm.mjs).
command -v xz >/dev/null || apt_missing+=(xz-utils)
if [ ${#apt_missing[@]} -gt 0 ]; then
    command -v apt-get >/dev/null || die "missing ${apt_missing[*]} and no apt-get"
    [ "$(id -u)" = 0 ] || die "missing ${apt_missing[*]}: run as root (or install them yourself)"
    say "apt-get install ${apt_missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${apt_missing[@]}" >/dev/null
    # The package starts a system Redis on port 6379 where systemd runs; nothing here needs it
    # (tests start their own on a unix socket), so do not leave one running.
    if [[ " ${apt_missing[*]} " == *" redis-server "* ]] && [ -d /run/systemd/system ]; then
        systemctl disable --now redis-server >/dev/null 2>&1 || true
    fi
    # Same for HAProxy's system service (the test and scripts/cluster-demo.sh run their own).
    if [[ " ${apt_missing[*]} " == *" haproxy "* ]] && [ -d /run/systemd/system ]; then
        systemctl disable --now haproxy >/dev/null 2>&1 || true
    fi
    # Same for Janus (its package starts one on 8088/8188 with the sample rooms where systemd
    # runs): SFU mode talks to a Janus you configure; tests start their own.
    if [[ " ${apt_missing[*]} " == *" janus "* ]] && [ -d /run/systemd/system ]; then
        systemctl disable --now janus >/dev/null 2>&1 || true
    fi
else
    say "debian packages: ok (chromium, chromium-driver, coturn, redis-server, haproxy, janus, iproute2, util-linux, cc, pkg-config)"
fi

# --- 2. Rust toolchain + wasm target --------------------------------------------------------------
# rust-toolchain.toml pins the channel; `rustup toolchain install` with no argument installs it
# (with its components and targets) on rustup >= 1.28. Older rustup installs it on `rustup show`.
channel=$(sed -n 's/^channel *= *"\(.*\)".*/\1/p' rust-toolchain.toml)
if ! rustup toolchain list | grep -q "^${channel}-"; then
    say "rustup: installing toolchain $channel"
    rustup toolchain install 2>/dev/null || rustup show >/dev/null
fi
if ! rustup target list --installed | grep -qx "$WASM_TARGET"; then
    say "rustup target add $WASM_TARGET"
    rustup target add "$WASM_TARGET"
else
    say "rust: ok ($(rustc --version | cut -d' ' -f1-2), $WASM_TARGET)"
fi
# std's source: npm/build.sh rebuilds std for the SDK with size flags (-Zbuild-std). Listed in
# rust-toolchain.toml too, but a toolchain installed before it was listed lacks it.
if ! rustup component list --installed | grep -q '^rust-src'; then
    say "rustup component add rust-src"
    rustup component add rust-src
fi

# --- 3. wasm-bindgen CLI (must equal the wasm-bindgen crate version in Cargo.lock) -----------------
wb_have() {
    command -v wasm-bindgen >/dev/null &&
        [ "$(wasm-bindgen --version 2>/dev/null)" = "wasm-bindgen $WASM_BINDGEN_VERSION" ] &&
        command -v wasm-bindgen-test-runner >/dev/null
}
if ! wb_have; then
    say "cargo install wasm-bindgen-cli $WASM_BINDGEN_VERSION (takes ~3 min on 2 cores)"
    # --locked fails for 0.2.130 (its lockfile pins a webpki-roots version the registry no
    # longer serves), so fall back to a fresh resolution.
    if ! cargo install wasm-bindgen-cli --version "$WASM_BINDGEN_VERSION" --locked --force; then
        say "--locked install failed; retrying without --locked"
        cargo install wasm-bindgen-cli --version "$WASM_BINDGEN_VERSION" --force
    fi
    wb_have || die "wasm-bindgen $WASM_BINDGEN_VERSION still not on PATH after install"
else
    say "wasm-bindgen: ok ($WASM_BINDGEN_VERSION)"
fi

# --- 3b. wasm-pack (the design card's way to run the browser tests) -------------------------------
if ! command -v wasm-pack >/dev/null; then
    say "cargo install wasm-pack (about 2 min on 2 cores)"
    cargo install wasm-pack --locked || cargo install wasm-pack
else
    say "wasm-pack: ok ($(wasm-pack --version 2>/dev/null))"
fi

# --- 3c. cargo-fuzz (the fuzz smoke step; see SECURITY.md) ---------------------------------------
CARGO_FUZZ_VERSION=0.13.2
if ! cargo fuzz --version 2>/dev/null | grep -q "$CARGO_FUZZ_VERSION"; then
    say "cargo install cargo-fuzz $CARGO_FUZZ_VERSION (about 1 min on 2 cores)"
    cargo install cargo-fuzz --version "$CARGO_FUZZ_VERSION" --locked
else
    say "cargo-fuzz: ok ($CARGO_FUZZ_VERSION)"
fi

# --- 4. node_modules (npm ci when missing or older than package-lock.json) -------------------------
stamp=node_modules/.rcall-lock.sha1
want=$(sha1sum package-lock.json | cut -d' ' -f1)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ] ||
   [ ! -x node_modules/.bin/wasm-opt ] || [ ! -d node_modules/playwright-core ]; then
    say "npm ci"
    npm ci --no-audit --no-fund --loglevel=error
    echo "$want" >"$stamp"
else
    say "node_modules: ok (matches package-lock.json)"
fi
wo=$(node_modules/.bin/wasm-opt --version 2>/dev/null || true)
case "$wo" in
    *"version ${BINARYEN_VERSION%%.*}"*) ;;
    *) die "node_modules/.bin/wasm-opt is '$wo', expected binaryen $BINARYEN_VERSION" ;;
esac

# --- 5. examples/vite/node_modules (vite + typescript for tests/e2e/vite-example.test.mjs, which
#        runs inside the network namespace and so cannot install them itself) -----------------------
vstamp=examples/vite/node_modules/.rcall-lock.sha1
if [ -f examples/vite/package-lock.json ]; then
    vwant=$(sha1sum examples/vite/package-lock.json | cut -d' ' -f1)
    if [ ! -f "$vstamp" ] || [ "$(cat "$vstamp")" != "$vwant" ] || [ ! -x examples/vite/node_modules/.bin/vite ]; then
        say "npm ci (examples/vite)"
        npm --prefix examples/vite ci --no-audit --no-fund --loglevel=error
        echo "$vwant" >"$vstamp"
    else
        say "examples/vite/node_modules: ok"
    fi
fi

say "done in $(( $(date +%s) - t0 ))s"
