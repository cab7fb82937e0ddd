#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# run-t.sh - reproduce the T tables of bench/README.md.
#
#   bench/run-t.sh [-b BUILD_DIR] [-o OUT_DIR] [-r ROUNDS] [-c CPU]
#                  [--no-wall] [--no-ir] [--only 'W1 dense 10000']
#
# Wall clock: ROUNDS (5) rounds, round-robin over every configuration, one
# process per configuration and round, pinned with taskset -c CPU (1) when
# taskset exists; the table shows the median [min-max] of the rounds.
# Instructions: one callgrind run per configuration (W1/W1m with loops=100
# at n=100 and loops=1 at n=10^4, as the kernel reference did; the loops are
# identical, so Ir/op does not change).  "lib" = inclusive Ir of
# itn__tree_insert / itn__tree_remove / itn__tree_iter_first+_next, "loop" =
# inclusive Ir of the bench_tree_*_loop function, both per op (per query).
# Raw outputs stay in OUT_DIR (default: t-results); the markdown tables go
# to stdout, next to the kernel's figures of WORKLOADS.md K1-K3.
#
# The build should be -O2 without sanitizers, e.g.
#   meson setup build-bench --buildtype=debugoptimized -Dwerror=true
#   ninja -C build-bench bench/itn-bench
set -eu

build=build-bench
out=t-results
rounds=5
cpu=1
wall=1
ir=1
only=

while [ $# -gt 0 ]; do
	case "$1" in
	-b) build=$2; shift 2 ;;
	-o) out=$2; shift 2 ;;
	-r) rounds=$2; shift 2 ;;
	-c) cpu=$2; shift 2 ;;
	--no-wall) wall=0; shift ;;
	--no-ir) ir=0; shift ;;
	--only) only=$2; shift 2 ;;
	*) sed -n '4,21p' "$0" | sed 's/^# \{0,1\}//'; exit 2 ;;
	esac
done

bin=$build/bench/itn-bench
[ -x "$bin" ] || { echo "run-t.sh: no $bin (build it first)" >&2; exit 2; }
mkdir -p "$out"
out=$(cd "$out" && pwd)

configs=()
for w in W1 W1m; do
	for v in sparse dense; do
		for n in 100 10000 1000000; do
			configs+=("$w $v $n")
		done
	done
done
for wv in "W2 dense" "W3 dense" "W2 sparse"; do
	for n in 100 10000 1000000; do
		configs+=("$wv $n")
	done
done
[ -n "$only" ] && configs=("$only")

pin=()
command -v taskset >/dev/null && pin=(taskset -c "$cpu")

if [ "$wall" = 1 ]; then
	: >"$out/wall.txt"
	for r in $(seq 1 "$rounds"); do
		echo "run-t.sh: wall-clock round $r/$rounds" >&2
		for c in "${configs[@]}"; do
			set -- $c
			"${pin[@]}" "$bin" --workload "$1" --variant "$2" \
				--n "$3" >>"$out/wall.txt"
		done
	done
	"$bin" --workload W4 >"$out/w4.txt"
fi

# Inclusive Ir of function $2 in callgrind output $1.  Run from / because
# callgrind_annotate shortens paths under the current directory and may then
# list one function twice, split by the spelling of its file name.
incl() {
	(cd / && callgrind_annotate --inclusive=yes --threshold=100 \
		--auto=no "$1") |
		awk -v f="$2" 'index($0, ":" f " [") && $1 ~ /^[0-9,]+$/ {
			gsub(",", "", $1); print $1; found = 1; exit }
			END { if (!found) print 0 }'
}

if [ "$ir" = 1 ]; then
	: >"$out/ir.txt"
	for c in "${configs[@]}"; do
		set -- $c
		w=$1 v=$2 n=$3
		loops=1
		[ "$n" = 100 ] && loops=100
		f="$out/callgrind.$w.$v.$n"
		echo "run-t.sh: callgrind $w $v $n" >&2
		line=$(valgrind --tool=callgrind --callgrind-out-file="$f" \
			"$bin" --workload "$w" --variant "$v" --n "$n" \
			--loops "$loops" 2>/dev/null)
		case "$line" in *digest=ok*) ;; *)
			echo "run-t.sh: $line" >&2; exit 1 ;;
		esac
		case $w in
		W1)
			echo "$w $v $n ops=$((n * loops))" \
			     "ins_lib=$(incl "$f" itn__tree_insert)" \
			     "ins_loop=$(incl "$f" bench_tree_insert_loop)" \
			     "rem_lib=$(incl "$f" itn__tree_remove)" \
			     "rem_loop=$(incl "$f" bench_tree_remove_loop)" ;;
		W1m)
			echo "$w $v $n ops=$((n * loops))" \
			     "ins_lib=$(incl "$f" itn__tree_insert)" \
			     "ins_loop=$(incl "$f" bench_tree_malloc_insert_loop)" \
			     "rem_lib=$(incl "$f" itn__tree_remove)" \
			     "rem_loop=$(incl "$f" bench_tree_free_remove_loop)" ;;
		*)
			q=$(echo "$line" | sed 's/.* q=\([0-9]*\).*/\1/')
			hits=$(echo "$line" | sed 's/.* hits=\([0-9]*\).*/\1/')
			echo "$w $v $n ops=$q hits=$hits" \
			     "first=$(incl "$f" itn__tree_iter_first)" \
			     "next=$(incl "$f" itn__tree_iter_next)" \
			     "loop=$(incl "$f" bench_tree_query_loop)" ;;
		esac >>"$out/ir.txt"
	done
fi

# Kernel reference figures (WORKLOADS.md K1-K3): ns are medians.
cat >"$out/kernel.txt" <<'EOF'
W1 sparse 100 12.29 7.61 121.0/128.2 99.0/106.2
W1 sparse 10000 97.56 38.70 188.6/195.6 112.7/119.7
W1 sparse 1000000 620.8 127.7 256.2/263.2 112.8/119.8
W1 dense 100 11.24 8.16 116.8/124.0 110.4/117.5
W1 dense 10000 91.79 34.62 188.8/195.8 109.9/116.9
W1 dense 1000000 623.2 125.9 261.6/268.6 122.2/129.2
W1m sparse 100 14.72 12.15 205.8 215.8
W1m sparse 10000 115.4 48.89 377.6 230.7
W1m sparse 1000000 766.9 190.9 445.4 230.8
W1m dense 100 13.83 12.18 201.5 227.1
W1m dense 10000 110.9 44.61 377.8 227.9
W1m dense 1000000 783.2 195.9 450.8 240.2
W2 dense 100 35.04 65.6/78.6 65.5 21.6
W2 dense 10000 104.5 148.0/163.5 140.4 23.2
W2 dense 1000000 9009 1191.7/1432.8 208.5 30.3
W3 dense 100 35.12 65.7/78.8 65.5 21.9
W3 dense 10000 110.8 161.6/181.5 140.7 23.2
W3 dense 1000000 18974 2562.0/3203.6 208.6 26.3
W2 sparse 100 167.9 996.7/1212.4 65.5 32.3
W2 sparse 10000 65622 100571/119753 105.8 36.7
W2 sparse 1000000 85.7e6 10223111/12160147 132.9 36.9
EOF

touch "$out/wall.txt" "$out/ir.txt"
awk '
function med(key,   n, i, j, t, a, s) {
	n = split(vals[key], a, " ")
	if (n == 0)
		return "-"
	for (i = 2; i <= n; i++)	# insertion sort, numeric
		for (j = i; j > 1 && a[j - 1] + 0 > a[j] + 0; j--) {
			t = a[j]; a[j] = a[j - 1]; a[j - 1] = t
		}
	s = fmt(a[int((n + 1) / 2)])
	if (n > 1)
		s = s " [" fmt(a[1]) "–" fmt(a[n]) "]"
	return s
}
function fmt(x) {
	x += 0
	if (x >= 1e6)
		return sprintf("%.1f ms", x / 1e6)
	if (x >= 1000)
		return sprintf("%.0f", x)
	return sprintf("%.2f", x)
}
function per(x, d) {
	if (x == "" || d == 0)
		return "-"
	return sprintf(x / d >= 10000 ? "%.0f" : "%.1f", x / d)
}
FILENAME ~ /wall.txt$/ {
	w = substr($1, 3); v = ""; n = ""
	for (i = 2; i <= NF; i++) {
		split($i, kv, "=")
		if (kv[1] == "variant") v = kv[2]
		else if (kv[1] == "n") n = kv[2]
		else if (kv[1] ~ /^ns_|^mean_hits$/)
			vals[w " " v " " n " " kv[1]] = vals[w " " v " " n " " kv[1]] " " kv[2]
	}
	next
}
FILENAME ~ /ir.txt$/ {
	key = $1 " " $2 " " $3
	for (i = 4; i <= NF; i++) {
		split($i, kv, "=")
		ir[key " " kv[1]] = kv[2]
	}
	next
}
FILENAME ~ /kernel.txt$/ {
	key = $1 " " $2 " " $3
	order[++nk] = key
	kern[key] = $0
}
END {
	printf "### T-W1 insert all, then remove all (embedded nodes)\n\n"
	printf "| variant | n | ns / insert | kernel | ns / remove | kernel | Ir / insert (lib / loop) | kernel | Ir / remove (lib / loop) | kernel |\n"
	printf "|---|---|---|---|---|---|---|---|---|---|\n"
	for (k = 1; k <= nk; k++) {
		key = order[k]; split(kern[key], K, " ")
		if (K[1] != "W1") continue
		o = ir[key " ops"]
		printf "| %s | %s | %s | %s | %s | %s | %s / %s | %s | %s / %s | %s |\n",
			K[2], K[3], med(key " ns_insert"), K[4], med(key " ns_remove"), K[5],
			per(ir[key " ins_lib"], o), per(ir[key " ins_loop"], o), K[6],
			per(ir[key " rem_lib"], o), per(ir[key " rem_loop"], o), K[7]
	}
	printf "\n### T-W2 (point) and T-W3 (64 KiB range) queries\n\n"
	printf "| workload | variant | n | ns / query | kernel | mean hits | Ir / query (lib / loop) | kernel | Ir iter_first | kernel | Ir iter_next | kernel |\n"
	printf "|---|---|---|---|---|---|---|---|---|---|---|---|\n"
	for (k = 1; k <= nk; k++) {
		key = order[k]; split(kern[key], K, " ")
		if (K[1] != "W2" && K[1] != "W3") continue
		o = ir[key " ops"]; h = ir[key " hits"]
		lib = ir[key " first"] + ir[key " next"]
		split(vals[key " mean_hits"], mh, " ")
		printf "| %s | %s | %s | %s | %s | %s | %s / %s | %s | %s | %s | %s | %s |\n",
			K[1], K[2], K[3], med(key " ns_query"), fmt(K[4]), mh[1],
			per(lib, o), per(ir[key " loop"], o), K[5],
			per(ir[key " first"], o), K[6], per(ir[key " next"], h), K[7]
	}
	printf "\n### T-W1m malloc(48) + insert, remove + free\n\n"
	printf "| variant | n | ns / (malloc+insert) | kernel | ns / (remove+free) | kernel | Ir (loop) ins / rem | kernel |\n"
	printf "|---|---|---|---|---|---|---|---|\n"
	for (k = 1; k <= nk; k++) {
		key = order[k]; split(kern[key], K, " ")
		if (K[1] != "W1m") continue
		o = ir[key " ops"]
		printf "| %s | %s | %s | %s | %s | %s | %s / %s | %s / %s |\n",
			K[2], K[3], med(key " ns_insert"), K[4], med(key " ns_remove"), K[5],
			per(ir[key " ins_loop"], o), per(ir[key " rem_loop"], o), K[6], K[7]
	}
}' "$out/wall.txt" "$out/ir.txt" "$out/kernel.txt"
[ -s "$out/w4.txt" ] && { echo; echo "W4: $(cat "$out/w4.txt")"; }
exit 0
