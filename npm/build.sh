#!/usr/bin/env bash
# Builds the SDK from crates/sdk:
#   npm/dist/cdn/rcall.js + rcall_bg.wasm   one classic <script> defining RongIMLib, RCRTC, RCCall
#   npm/dist/esm/                           the npm package (ESM + TypeScript declarations): `rcall`
#                                           and one entry per RongCloud package (rcall/plugin-call...)
# and prints the gzip-9 and brotli-11 size of what a page downloads for the CDN build (npm/size.sh;
# `bash npm/size.sh --check` fails above the size budget, as CI runs it).
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PWD/node_modules/.bin:$PATH"

# Size flags (issue 13, BENCHMARKS.md "SDK size"): panics carry no file/line/column, and `{:?}`
# formats nothing, so no Debug code or location strings ship (-4.7 KB gzip together); std is
# rebuilt from the toolchain's rust-src with the same flags, `optimize_for_size` (its small
# algorithms) and `-Cpanic=immediate-abort` (a panic is a bare trap: no panic machinery nor
# message formatting, -5.1 KB gzip together; without a panic hook the page saw nothing more
# before either). They are unstable flags, enabled on the pinned stable toolchain with
# RUSTC_BOOTSTRAP=1 as scripts/fuzz.sh does; only this build uses them (the wasm tests keep
# full panic messages).
# Without the reference-types and multivalue features (on by default since Rust 1.82),
# wasm-bindgen keeps JS values in its JS-side heap and returns pairs through memory: no
# externref table slot handling nor multivalue adapter in every export's shim (wasm -1,837 B
# gzip, JS glue +328 B; each feature alone saved less: BENCHMARKS.md "Session 13: size").
RUSTC_BOOTSTRAP=1 \
  CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_RUSTFLAGS="-Zlocation-detail=none -Zfmt-debug=none -Zunstable-options -Cpanic=immediate-abort -Ctarget-feature=-reference-types,-multivalue" \
  cargo build -p rcall-sdk --profile wasm --target wasm32-unknown-unknown \
  -Zbuild-std=std,panic_abort -Zbuild-std-features=optimize_for_size
# The unpacker (crates/unpack, no_std) on its own: built with the SDK, its dependencies would get
# the SDK's features (thiserror's `std`) and link std's panic handler beside its own.
# Its stack is 64 KB (it needs a few hundred bytes), not the default 1 MB below its data.
RUSTC_BOOTSTRAP=1 \
  CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_RUSTFLAGS="-Zlocation-detail=none -Zfmt-debug=none -Zunstable-options -Cpanic=immediate-abort -Clink-arg=-zstack-size=65536" \
  cargo build -p rcall-unpack --lib --profile wasm --target wasm32-unknown-unknown -Zbuild-std=core
# CARGO_TARGET_DIR: worktrees share one target dir.
wasm=${CARGO_TARGET_DIR:-target}/wasm32-unknown-unknown/wasm/rcall_sdk.wasm
unpacker=${CARGO_TARGET_DIR:-target}/wasm32-unknown-unknown/wasm/rcall_unpack.wasm
enums=$(cargo run -q -p rtc-core --example js_enums)

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# The CDN output keeps the name section for strip-decode-context.mjs (wasm-opt drops it after); the
# ESM output is only used for its glue (both ship the CDN's optimised module).
wasm-bindgen --target no-modules --no-typescript --remove-producers-section --out-dir "$work/cdn" "$wasm"
wasm-bindgen --target web --remove-name-section --remove-producers-section --out-dir "$work/esm" "$wasm"

# npm binaryen's wasm-opt (Debian's binaryen 108 produces modules Chromium rejects).
optimize() {
  if [ -x node_modules/.bin/wasm-opt ]; then
    # -Os, not -Oz: 5 KB more raw bytes but 0.4 KB less gzip, which is what a page downloads.
    # The target_features section is only read by tools. `--generate-global-effects` first lets
    # -Os use what each function may touch: -123 B gzip (+81 B brotli), session 11.
    # The first run keeps the names (--debuginfo) for order-functions.mjs, which ranks the functions
    # for gzip (-2.3 KB); the second lays them out in that order, optimises again and drops the
    # names (without its -Os the re-read module is written back 650 B larger and the order saves
    # ~1 KB less; the second -Os alone, in the old order, saves nothing). BENCHMARKS.md "Session 15".
    # Both runs inline a function called from one place only when it is at most 10 bytes
    # (binaryen inlines every one-caller function by default): the engine's and the shell's
    # handlers stay functions of their own, which the layout below can put beside look-alike
    # code: +9.7 KB raw but -6.5 KB gzip, -4.4 KB brotli (0: -5.7 KB; 100: -2.9 KB; only in the
    # first run: +0.9 KB; BENCHMARKS.md "Session 16: size").
    oci=--one-caller-inline-max-function-size=10
    node_modules/.bin/wasm-opt --generate-global-effects -Os $oci --converge --low-memory-unused --zero-filled-memory --debuginfo \
      "$1" -o "$1.opt"
    # The names prost's emptied DecodeError::push was given are unread now that -Os dropped the
    # calls: zeroed (772 B raw, -350 B gzip; the second run's memory packing drops most of them).
    node npm/blank-data.mjs "$1.opt" "$2"
    node npm/order-functions.mjs "$1.opt"
    node_modules/.bin/wasm-opt --reorder-functions-by-name -Os $oci --low-memory-unused --zero-filled-memory --strip-target-features \
      "$1.opt" -o "$1" && rm "$1.opt"
  else
    echo "warning: node_modules/.bin/wasm-opt missing (run npm ci); shipping unoptimized wasm" >&2
  fi
}
# prost's decode-error context is never read in the wasm: its calls go (-1,001 B gzip), and the
# names they passed are listed for blank-data.mjs.
node npm/strip-decode-context.mjs "$work/cdn/rcall_sdk_bg.wasm" "$work/decode-names.json"
optimize "$work/cdn/rcall_sdk_bg.wasm" "$work/decode-names.json"
# Short import/export names in the wasm and both glues (the same module serves both).
node npm/shorten-names.mjs "$work/cdn/rcall_sdk_bg.wasm" "$work/cdn/rcall_sdk.js" "$work/esm/rcall_sdk.js"
cp "$work/cdn/rcall_sdk_bg.wasm" "$work/esm/rcall_sdk_bg.wasm"

rm -rf npm/dist && mkdir -p npm/dist/cdn npm/dist/esm
{
  echo "/* rcall — CallLib 5.X compatible call SDK. https://github.com/ (see README) */"
  echo "(function () {"
  cat "$work/cdn/rcall_sdk.js"
  cat npm/src/facade.js
  sed "s|__RCALL_ENUMS__|$enums|" npm/src/cdn-entry.js
  echo "})();"
} > npm/dist/cdn/rcall.js
# The CDN's rcall_bg.wasm is the unpacker (crates/unpack) carrying the module LZMA-compressed:
# -19.5 KB gzip-9 (xz packs wasm far better than gzip), for ~18 ms of unpacking in Chromium here
# (BENCHMARKS.md "Session 17: size"); its code section split into streams of like values, each
# compressed on its own: -6.4 KB more (crates/unpack/src/streams.rs, "Session 18: size"). The ESM
# package ships the module itself: a bundler's server compresses it and the browser compiles it
# while it downloads.
command -v xz >/dev/null || { echo "npm/build.sh: xz is missing (apt install xz-utils; scripts/setup.sh installs it)" >&2; exit 1; }
cargo run -q -p rcall-unpack --bin rcall-pack -- "$work/cdn/rcall_sdk_bg.wasm" "$work/payload"
if [ -x node_modules/.bin/wasm-opt ]; then
  # Functions called from one place stay functions (binaryen inlines them by default): merged into
  # one, the LZMA loop and the join ran ~40 % slower in V8's baseline compiler (Liftoff), which
  # runs the unpacker and allocates registers poorly across a large function.
  node_modules/.bin/wasm-opt -Oz --one-caller-inline-max-function-size=10 --strip-debug --strip-producers --strip-target-features \
    "$unpacker" -o "$work/unpack.wasm"
else
  cp "$unpacker" "$work/unpack.wasm"
fi
node npm/pack-wasm.mjs "$work/unpack.wasm" "$work/payload" "$work/cdn/rcall_sdk_bg.wasm" npm/dist/cdn/rcall_bg.wasm
# Minify the classic script (what a CDN page downloads); the ESM package is left readable for
# bundlers, which minify anyway. Only the banner comment stays (the glue's JSDoc blocks that
# mention rcall were kept too: 567 B gzip); the glue's internal property names, which never leave
# this one script (the object's wasm pointer, the class helpers, the closures' unref), are mangled
# (-131 B gzip). BENCHMARKS.md "Session 11: size".
internal='regex=/^(__wbg_ptr|__destroy_into_raw|__wrap|_wbg_cb_unref)$/'
if [ -x node_modules/.bin/terser ]; then
  node_modules/.bin/terser npm/dist/cdn/rcall.js --compress --mangle --mangle-props "$internal" \
    --comments '/^ rcall —/' -o npm/dist/cdn/rcall.min.js
  mv npm/dist/cdn/rcall.min.js npm/dist/cdn/rcall.js
else
  echo "warning: node_modules/.bin/terser missing (run npm ci); shipping unminified JS" >&2
fi

cp "$work/esm/rcall_sdk.js" "$work/esm/rcall_sdk_bg.wasm" npm/dist/esm/
# index.js: the entry, then the facade (a function declaration, hoisted above its use).
{
  sed "s|__RCALL_ENUMS__|$enums|" npm/src/esm-entry.js
  echo
  cat npm/src/facade.js
} > npm/dist/esm/index.js
cp npm/src/index.d.ts npm/dist/esm/index.d.ts
# One entry per RongCloud package (rcall/plugin-call, ...): re-exports of index.js, a few hundred
# bytes each, so the wasm and the facade stay in one shared module.
cp npm/src/entries/*.js npm/src/entries/*.d.ts npm/dist/esm/
cp npm/package.json npm/dist/esm/package.json

bash npm/size.sh
