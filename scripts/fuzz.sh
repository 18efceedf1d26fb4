#!/usr/bin/env bash
# Runs the cargo-fuzz targets in fuzz/ (see SECURITY.md).
#   bash scripts/fuzz.sh smoke             every target for FUZZ_SECONDS (default 5) on its corpus
#                                          (unoptimised build: CI's smoke test; run/cmin optimise)
#   bash scripts/fuzz.sh run TARGET [ARGS] one target; ARGS go to libFuzzer (e.g. -runs=10000000)
#   bash scripts/fuzz.sh cmin TARGET       minimise a target's corpus in place
# libFuzzer needs -Z flags, so cargo-fuzz runs on the pinned stable toolchain with
# RUSTC_BOOTSTRAP=1, and without a sanitizer (the code under test is safe Rust: we look for
# panics, runaway loops and 5xx answers, which the targets assert).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT/fuzz"
export PATH="$HOME/.cargo/bin:$PATH" RUSTC_BOOTSTRAP=1
export CARGO_TARGET_DIR="${FUZZ_TARGET_DIR:-$ROOT/target/fuzz}"
targets() { sed -n 's/^name = "\(.*\)"$/\1/p' Cargo.toml | grep -v '^rcall-fuzz$'; }
case "${1:-smoke}" in
    smoke)
        # One unoptimised build of every target (fuzz/Cargo.toml [profile.dev]): the run is a few
        # seconds on the corpus, and the default release build (codegen-units 1, sanitizer
        # coverage on every crate of the server) was most of CI's ~300 s fuzz step.
        cargo fuzz build --dev --sanitizer none
        for t in $(targets); do
            mkdir -p "corpus/$t"
            # A scratch copy: the smoke run must not grow the committed corpus.
            scratch=$(mktemp -d)
            cp -r "corpus/$t/." "$scratch/"
            echo "== fuzz $t: ${FUZZ_SECONDS:-5} s on $(ls "corpus/$t" | wc -l) corpus inputs"
            log="$scratch.log"
            rc=0
            cargo fuzz run "$t" --dev --sanitizer none "$scratch" -- -max_total_time="${FUZZ_SECONDS:-5}" -print_final_stats=1 >"$log" 2>&1 || rc=$?
            grep -E '^stat::number_of_executed_units|panicked|ERROR|SUMMARY|^error' "$log" || true
            [ "$rc" -eq 0 ] || tail -40 "$log"
            rm -rf "$scratch" "$log"
            [ "$rc" -eq 0 ] || { echo "fuzz target $t failed (exit $rc); crash inputs are in fuzz/artifacts/$t" >&2; exit "$rc"; }
        done
        ;;
    run)
        t=$2; shift 2
        cargo fuzz run "$t" --sanitizer none "corpus/$t" -- "$@"
        ;;
    cmin)
        # Crash inputs kept as regressions add no coverage, so cmin would drop them: keep them.
        keep=$(mktemp -d)
        cp corpus/"$2"/regression-* "$keep/" 2>/dev/null || true
        cargo fuzz cmin "$2" --sanitizer none "corpus/$2"
        cp "$keep"/. "corpus/$2/" -r
        rm -rf "$keep"
        ;;
    *) echo "usage: $0 smoke | run TARGET [libFuzzer args] | cmin TARGET" >&2; exit 2 ;;
esac
