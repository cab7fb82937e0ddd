#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# run-spin.sh - check one Promela model of tests/model/ with spin.
#
# Usage: run-spin.sh [--quick] [--expect-fail[=ERE]] [--pan FLAGS] MODEL.pml
#                   [-DNAME[=V]...]
#
# Generates the verifier (spin -a, with the -D options given after the
# model) in a temporary directory, compiles it with $CC (default cc) for an
# exhaustive safety search (-DSAFETY: assertions and invalid end states,
# i.e. deadlocks; -DCOLLAPSE: lossless state compression; -DMEMLIM) and
# runs it (./pan -m$PAN_DEPTH FLAGS).  --quick compiles it with -O0 instead
# of -O2: for small state spaces and expected failures, where compiling
# takes longer than the search.
#
# Default mode: passes when pan reports no error AND explored the whole
# state space: no "max search depth too small", no memory bound reached,
# no bit-state or hash-compact search.
#
# --expect-fail: passes only when pan finds an error (a mutant or a race
# the model must catch).  With =ERE, the error must also match the
# extended regular expression ERE, matched against pan's error line and
# the source line of the violated assertion (the assertions of the models
# carry a comment naming the property: /* I6 */ ...).  The trail is
# replayed (pan -r) and printed.
#
# Environment: SPIN (default spin), CC (default cc), MEMLIM (MB, default
# 1024), PAN_DEPTH (default 100000).  Exits 77 (skip) when spin is absent.
set -eu

expect_fail=
expect_re=
pan_flags=
opt=-O2
while [ $# -gt 0 ]; do
	case $1 in
	--quick) opt=-O0 ;;
	--expect-fail) expect_fail=1 ;;
	--expect-fail=*) expect_fail=1 expect_re=${1#--expect-fail=} ;;
	--pan) pan_flags=$2; shift ;;
	--) shift; break ;;
	-*) echo "run-spin.sh: unknown option $1" >&2; exit 2 ;;
	*) break ;;
	esac
	shift
done
if [ $# -lt 1 ]; then
	echo "usage: run-spin.sh [--quick] [--expect-fail[=ERE]]" \
		"[--pan FLAGS] MODEL.pml [-DNAME[=V]...]" >&2
	exit 2
fi
model=$1
shift
defines=("$@")

SPIN=${SPIN:-spin}
CC=${CC:-cc}
MEMLIM=${MEMLIM:-1024}
PAN_DEPTH=${PAN_DEPTH:-100000}

if ! command -v "$SPIN" >/dev/null 2>&1; then
	echo "run-spin.sh: $SPIN not found: skipped"
	exit 77
fi

name=$(basename "$model")
tmp=$(mktemp -d "${TMPDIR:-/tmp}/itn-spin.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
cp "$model" "$tmp/$name"
cd "$tmp"

what="$name${defines[*]:+ ${defines[*]}}${pan_flags:+ (pan $pan_flags)}"
echo "== $what"
"$SPIN" -a "${defines[@]}" "$name" >spin.out 2>&1 || {
	cat spin.out
	echo "FAIL: spin -a $what"
	exit 1
}
# shellcheck disable=SC2086 # word splitting of CFLAGS is wanted
"$CC" "$opt" -w -DSAFETY -DCOLLAPSE -DMEMLIM="$MEMLIM" ${PAN_CFLAGS:-} \
	-o pan pan.c || {
	echo "FAIL: cannot compile the verifier with $CC"
	exit 1
}
rc=0
# shellcheck disable=SC2086
./pan -m"$PAN_DEPTH" $pan_flags >pan.out 2>&1 || rc=$?

field()
{
	sed -n "$1" pan.out | head -n 1
}
errors=$(field 's/.*errors: \([0-9][0-9]*\).*/\1/p')
stored=$(field 's/^ *\([0-9][0-9]*\) states, stored.*/\1/p')
depth=$(field 's/.*depth reached \([0-9][0-9]*\).*/\1/p')
secs=$(field 's/^pan: elapsed time \([0-9.e+]*\) .*/\1/p')
mem=$(field 's/^ *\([0-9.]*\)[[:space:]]*total actual memory usage.*/\1/p')
incomplete=
grep -q 'max search depth too small' pan.out &&
	incomplete="max search depth too small"
grep -q 'reached -DMEMLIM bound' pan.out &&
	incomplete="memory bound (MEMLIM=$MEMLIM MB) reached"
grep -q 'Full statespace search' pan.out ||
	incomplete="not a full state-space search"
grep -Eq 'Bit statespace|hash-compact' pan.out &&
	incomplete="bit-state or hash-compact search"

if [ -z "$errors" ]; then
	cat pan.out
	echo "FAIL: pan did not finish (status $rc)"
	exit 1
fi
echo "states stored: $stored, depth reached: $depth, errors: $errors," \
	"time: ${secs:-?} s, memory: ${mem:-?} MB"

if [ "$errors" -eq 0 ]; then
	if [ -n "$incomplete" ]; then
		cat pan.out
		echo "FAIL: $what: incomplete search: $incomplete"
		exit 1
	fi
	if [ -n "$expect_fail" ]; then
		echo "FAIL: $what: spin found no error, but it must" \
			"${expect_re:+($expect_re)}"
		exit 1
	fi
	echo "PASS: $what: no error in the full state space"
	exit 0
fi

# An error: say what it is, where, and how spin got there.  pan replays
# its own trail (-r, with the same flags, so -A still ignores assertions):
# the steps, then where each process stopped.
msg=$(grep -E '^pan:[0-9]+: ' pan.out | head -n 1 || true)
echo "$msg"
# shellcheck disable=SC2086
trail=$(./pan -r $pan_flags 2>&1 || true)
src=
case $msg in
*"assertion violated"*)
	where=$("$SPIN" -t -k "$name.trail" "${defines[@]}" "$name" 2>&1 |
		sed -n "s/^spin: $name:\([0-9][0-9]*\), Error:.*/\1/p" |
		head -n 1 || true)
	if [ -n "$where" ]; then
		src=$(sed -n "${where}p" "$name" | sed 's/^[[:space:]]*//')
		echo "violated at $name:$where: $src"
	fi
	;;
*"invalid end state"*)
	echo "blocked forever:"
	printf '%s\n' "$trail" | grep -A1 '(invalid end state)' |
		grep -v '^--$' | sed 's/^[[:space:]]*/  /'
	;;
esac
echo "--- trail (pan -r) ---"
printf '%s\n' "$trail" | sed -n '/^global vars:/q;p' |
	grep -v '^[[:space:]]*$' | sed 's/^[[:space:]]*//' | cut -c1-160 |
	head -n 200
echo "--- end of trail ---"
if [ -z "$expect_fail" ]; then
	echo "FAIL: $what: $msg"
	exit 1
fi
if [ -n "$expect_re" ] &&
   ! printf '%s\n%s\n' "$msg" "$src" | grep -Eq -- "$expect_re"; then
	echo "FAIL: $what: spin found an error, but not the expected one" \
		"($expect_re)"
	exit 1
fi
echo "PASS: $what: spin found the expected error${expect_re:+ ($expect_re)}"
exit 0
