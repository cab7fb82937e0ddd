#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# subproject-consumer.sh - use libitn as a meson subproject the way a
# user's project does: a wrap file that provides 'itn', and a plain
# dependency('itn').
#
# Usage: tests/subproject-consumer.sh [LIBITN_SOURCE_DIR]
#
# Copies tests/subproject (a tiny project: meson.build, consumer.c,
# subprojects/libitn.wrap with "[provide] dependency_names = itn") into a
# temporary directory, links the libitn source tree in as
# subprojects/libitn, configures it with --force-fallback-for=itn (so the
# wrap and libitn's meson.override_dependency('itn', ...) are what
# resolves the dependency, even where an itn.pc is installed), builds it,
# checks that meson reports the overridden dependency, and runs the
# consumer through meson test.
#
# Exit status: 0 passed, 1 failed, 77 (skipped) when a tool is missing,
# or when run by meson test without ITN_CONSUMER_TESTS=1 (.ci/run sets it:
# this takes a whole build of the library).
set -uo pipefail

say()
{
	printf 'subproject-consumer: %s\n' "$*"
}

fail()
{
	say "FAILED: $*"
	exit 1
}

# run LOG CMD...: print the command, run it with its output in LOG, show
# the end of LOG if it fails.
run()
{
	local log=$1

	shift
	printf '+ %s\n' "$*"
	if ! "$@" >"$log" 2>&1; then
		tail -n 40 "$log"
		return 1
	fi
}

if [ "${ITN_CONSUMER_GATE:-}" = 1 ] && [ "${ITN_CONSUMER_TESTS:-}" != 1 ]
then
	say "skipped: set ITN_CONSUMER_TESTS=1 to run (builds libitn again)"
	exit 77
fi
src=$(cd "${1:-$(dirname "$0")/..}" && pwd) || fail "no source directory"
[ -f "$src/tests/subproject/meson.build" ] ||
	fail "$src is not the libitn source tree"
for tool in meson ninja; do
	if ! command -v "$tool" >/dev/null; then
		say "skipped: $tool not found"
		exit 77
	fi
done

tmp=$(mktemp -d "${TMPDIR:-/tmp}/itn-subproject.XXXXXX") || fail "mktemp"
trap 'rm -rf "$tmp"' EXIT
proj=$tmp/consumer

say "copying the consumer project to $proj, libitn from $src"
cp -R "$src/tests/subproject" "$proj" || fail "cp"
mkdir -p "$proj/subprojects" || fail "mkdir"
ln -s "$src" "$proj/subprojects/libitn" || fail "ln"

run "$tmp/setup.log" meson setup "$proj/build" "$proj" \
	--force-fallback-for=itn || fail "meson setup"
grep -E 'Dependency itn found: YES .*\(overridden\)' "$tmp/setup.log" ||
	fail "dependency('itn') was not resolved by libitn's override"
run "$tmp/compile.log" meson compile -C "$proj/build" ||
	fail "meson compile"
run "$tmp/test.log" meson test -C "$proj/build" --print-errorlogs ||
	fail "meson test"
grep -E '^ *1/1 .*consumer +OK' "$tmp/test.log" || fail "consumer did not pass"
printf '+ %s\n' "$proj/build/consumer"
"$proj/build/consumer" || fail "consumer"

say "passed: dependency('itn') from the subproject built and ran"
exit 0
