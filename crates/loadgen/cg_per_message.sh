# Sourced by cg_nodes.sh and cg_redis.sh (not run by itself): what the two callgrind summaries
# share. `cg_per_message MESSAGES FILE…` prints, per callgrind FILE, the program's total and the
# inclusive count of each of the caller's FUNCTIONS (an array), each divided by MESSAGES;
# `cg_line_of FN` (the caller's: Rust symbols and C functions are spelled differently) prints
# the lines of callgrind_annotate's listing on stdin that count FN.
cg_per_message() {
    local messages=$1 f tree total fn n
    shift
    for f in "$@"; do
        tree=$(callgrind_annotate --inclusive=yes "$f" 2>/dev/null)
        total=$(sed -n 's/^ *\([0-9,]*\) .*PROGRAM TOTALS.*/\1/p' <<<"$tree" | tr -d , || true)
        printf '%s: %d instructions per message in all\n' "$f" $((total / messages))
        for fn in "${FUNCTIONS[@]}"; do
            n=$(cg_line_of "$fn" <<<"$tree" | head -1 | sed 's/^ *\([0-9,]*\) .*/\1/' | tr -d , || true)
            printf '  %9d  %s\n' $((${n:-0} / messages)) "$fn"
        done
    done
}
