#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# run-n.sh - reproduce the N table of bench/README.md in one command.
#
#   bench/run-n.sh [-b BUILD_DIR] [-o OUT_DIR] [-r ROUNDS] [-p PNG]
#                  [--no-ir] [--quick] [-- ARGS...]
#
# Configures BUILD_DIR (default build-nbench, meson --buildtype=release)
# if it does not exist, builds itn-bench-notifier, then runs it ROUNDS (5)
# times, one process per round, each with every workload and --json
# (ARGS are passed on; --quick makes each round a few seconds), then
# ROUNDS more processes of N4 alone with the subscribers 64-byte aligned
# (not with --quick).  The raw
# outputs stay in OUT_DIR (default n-results); bench/report.py turns them
# into the markdown table (printed, and saved as OUT_DIR/table.md) and
# plots N4 into PNG (default OUT_DIR/n4.png; the README's plot is
# bench/n4.png).
#
# Then, unless --no-ir, one valgrind --tool=callgrind run per workload
# gives instructions per operation (exact and repeatable, where the wall
# clock of a shared machine is not): the inclusive Ir of each timed loop
# function (bench_<loop>_itn for libitn, _bl for the baseline) divided by
# the operations it ran, plus the hot callee of libitn's side.
set -eu

here=$(cd "$(dirname "$0")" && pwd)
build=build-nbench
out=n-results
rounds=5
png=
ir=1
quick=()
args=()

while [ $# -gt 0 ]; do
	case "$1" in
	-b) build=$2; shift 2 ;;
	-o) out=$2; shift 2 ;;
	-r) rounds=$2; shift 2 ;;
	-p) png=$2; shift 2 ;;
	--no-ir) ir=0; shift ;;
	--quick) quick=(--quick); shift ;;
	--) shift; args=("$@"); break ;;
	*) sed -n '4,/^set -eu/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'; exit 2 ;;
	esac
done

if [ ! -d "$build" ]; then
	meson setup "$build" "$here/.." --buildtype=release >&2
fi
ninja -C "$build" bench/itn-bench-notifier >&2
bin=$build/bench/itn-bench-notifier
mkdir -p "$out"
out=$(cd "$out" && pwd)
[ -n "$png" ] || png=$out/n4.png

{
	echo "# $(date -u '+%Y-%m-%d %H:%M UTC') $(uname -srm)," \
	     "$(nproc) CPUs, commit $(git -C "$here" rev-parse --short HEAD \
					2>/dev/null || echo unknown)"
	echo "# $bin --json ${quick[*]:-} ${args[*]:-}"
} >"$out/info.txt"

runs=()
for r in $(seq 1 "$rounds"); do
	echo "run-n.sh: round $r/$rounds" >&2
	echo "# round $r: loadavg $(cut -d' ' -f1-3 /proc/loadavg 2>/dev/null)" \
		>>"$out/info.txt"
	"$bin" --json "${quick[@]}" "${args[@]}" >"$out/run-$r.txt"
	runs+=("$out/run-$r.txt")
done
# N4 again with every subscriber 64-byte aligned: how much of N4's scaling
# is the reference count sharing a cache line with tree nodes of
# neighbouring subscribers.
if [ ${#quick[@]} -eq 0 ]; then
	for r in $(seq 1 "$rounds"); do
		echo "run-n.sh: N4 --align 64, round $r/$rounds" >&2
		"$bin" --json --workload N4 --align 64 "${args[@]}" \
			>>"$out/run-$r.txt"
	done
fi

python3 "$here/report.py" --png "$png" "${runs[@]}" | tee "$out/table.md"

[ "$ir" = 1 ] || exit 0
command -v valgrind >/dev/null && command -v callgrind_annotate >/dev/null ||
	{ echo "run-n.sh: no valgrind: no instruction counts" >&2; exit 0; }

# Inclusive Ir of function $2 in callgrind output $1 (0 if absent).  Run
# from / so that callgrind_annotate does not shorten file names.
incl() {
	(cd / && callgrind_annotate --inclusive=yes --threshold=100 \
		--auto=no "$1") |
		awk -v f="$2" 'index($0, ":" f " [") && $1 ~ /^[0-9,]+$/ {
			gsub(",", "", $1); print $1; found = 1; exit }
			END { if (!found) print 0 }'
}

# cg NAME ARGS...: one callgrind run of the bench, output in $out/cg.NAME.
cg() {
	local name=$1
	shift
	echo "run-n.sh: callgrind $name" >&2
	valgrind --tool=callgrind --callgrind-out-file="$out/cg.$name" \
		"$bin" "$@" 2>/dev/null >"$out/cg.$name.txt"
}

per() { # per TOTAL OPS
	awk -v t="$1" -v n="$2" 'BEGIN { printf(n ? "%.1f" : "-", t / n) }'
}

field() { # field FILE WORKLOAD KEY: first value of KEY on a WORKLOAD line
	awk -v w="$2" -v k="$3" '$1 == w { for (i = 2; i <= NF; i++) {
		split($i, kv, "="); if (kv[1] == k) { print kv[2]; exit } } }' "$1"
}

nq=4096
echo
echo "Instructions per operation (callgrind; Ir of the timed loop / ops):"
echo
echo "| workload | libitn | baseline | reference | libitn hot callee |"
echo "|---|---|---|---|---|"

cg N1 --workload N1 --reps 1 --iters 100000
ops=$((100000 + 100000 / 10 + 1))
echo "| N1 read_begin+read_retry | $(per "$(incl "$out/cg.N1" bench_n1_loop_itn)" $ops)" \
     "| $(per "$(incl "$out/cg.N1" bench_n1_loop_bl)" $ops) | — | — |"

# N2 and N3 with --paths both: the locked paths alone are counted in
# their own loops (bench_*_loop_itn_locked).
cg N2 --workload N2 --reps 1 --passes 4
ops=$((5 * nq))
echo "| N2 start+end, miss | $(per "$(incl "$out/cg.N2" bench_miss_loop_itn)" $ops)" \
     "| $(per "$(incl "$out/cg.N2" bench_miss_loop_bl)" $ops)" \
     "| bare query $(per "$(incl "$out/cg.N2" bench_bare_query_loop)" $ops)" \
     "| itn__tree_search_rcu $(per "$(incl "$out/cg.N2" itn__tree_search_rcu)" $ops) |"
echo "| N2 start+end, miss, locked paths only" \
     "| $(per "$(incl "$out/cg.N2" bench_miss_loop_itn_locked)" $ops)" \
     "| $(per "$(incl "$out/cg.N2" bench_miss_loop_bl)" $ops)" \
     "| bare query $(per "$(incl "$out/cg.N2" bench_bare_query_loop)" $ops)" \
     "| — |"

cg N3 --workload N3 --reps 1 --passes 4
echo "| N3 start+end, 1 hit | $(per "$(incl "$out/cg.N3" bench_hit_loop_itn)" $ops)" \
     "| $(per "$(incl "$out/cg.N3" bench_hit_loop_bl)" $ops) | — | — |"
echo "| N3 start+end, 1 hit, locked paths only" \
     "| $(per "$(incl "$out/cg.N3" bench_hit_loop_itn_locked)" $ops)" \
     "| $(per "$(incl "$out/cg.N3" bench_hit_loop_bl)" $ops) | — | — |"

cg N4 --workload N4 --reps 1 --threads 1 --seconds 1
a=$(field "$out/cg.N4.txt" N4 n_ops)
b=$(field "$out/cg.N4.txt" N4 base_n_ops)
echo "| N4 find+put, 1 thread | $(per "$(incl "$out/cg.N4" bench_n4_thread_itn)" "$a")" \
     "| $(per "$(incl "$out/cg.N4" bench_n4_thread_bl)" "$b") | —" \
     "| itn__tree_search_rcu $(per "$(incl "$out/cg.N4" itn__tree_search_rcu)" "$a") |"

# T-W1 with 5 loops over the 10^4 intervals: 50000 pairs too.
for rel in yes no; do
	cg "N5$rel" --workload N5 --reps 1 --churn 50000 --w1-loops 5 \
		--release $rel
	echo "| N5 insert+remove, release=$rel" \
	     "| $(per "$(incl "$out/cg.N5$rel" bench_churn_loop_itn)" 50000)" \
	     "| $(per "$(incl "$out/cg.N5$rel" bench_churn_loop_bl)" 50000)" \
	     "| T-W1 pair $(per "$(incl "$out/cg.N5$rel" bench_tree_w1_loop)" 50000) | — |"
done
