#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# pkgconfig-consumer.sh - use an installed libitn the way a user's build
# does: through pkg-config.
#
# Usage: tests/pkgconfig-consumer.sh [LIBITN_SOURCE_DIR]
#
# Builds the library alone (tests, bench and examples off) in a temporary
# directory, installs it with meson install --destdir, then compiles
# tests/subproject/consumer.c against it with
#	cc consumer.c $(pkg-config --cflags --libs itn)
# and runs it with LD_LIBRARY_PATH pointing at the staged libdir; then the
# same with pkg-config --static against a static-only copy of the install
# (libitn.a alone, as a static link of libitn needs).  The staged .pc
# files keep their /usr/local paths: PKG_CONFIG_SYSROOT_DIR maps them into
# the staging directory, as cross and staged builds do.
#
# Exit status: 0 passed, 1 failed, 77 (skipped) when a tool is missing,
# or when run by meson test without ITN_CONSUMER_TESTS=1 (.ci/run sets it:
# this takes a whole build of the library).
set -uo pipefail

say()
{
	printf 'pkgconfig-consumer: %s\n' "$*"
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
[ -f "$src/meson.build" ] || fail "$src is not the libitn source tree"
CC=${CC:-cc}
for tool in meson ninja pkg-config "$CC" readelf; do
	if ! command -v "$tool" >/dev/null; then
		say "skipped: $tool not found"
		exit 77
	fi
done

tmp=$(mktemp -d "${TMPDIR:-/tmp}/itn-pkgconfig.XXXXXX") || fail "mktemp"
trap 'rm -rf "$tmp"' EXIT
dest=$tmp/dest

say "building and staging libitn from $src in $tmp"
run "$tmp/setup.log" meson setup "$tmp/build" "$src" --prefix=/usr/local \
	-Dtests=disabled -Dbench=disabled -Dexamples=disabled ||
	fail "meson setup"
run "$tmp/compile.log" meson compile -C "$tmp/build" || fail "meson compile"
run "$tmp/install.log" meson install -C "$tmp/build" --destdir "$dest" ||
	fail "meson install"

pc=$(find "$dest" -name itn.pc -print -quit)
[ -n "$pc" ] || fail "meson install staged no itn.pc"
libdir=$(dirname "$(dirname "$pc")")
say "staged $pc"
export PKG_CONFIG_PATH=${pc%/itn.pc}
export PKG_CONFIG_SYSROOT_DIR=$dest

# consumer NAME PKG-CONFIG-OPTIONS...: compile and link with the flags
# pkg-config gives, as a user's Makefile would.
consumer()
{
	local name=$1 flags

	shift
	flags=$(pkg-config "$@" --cflags --libs itn) ||
		fail "pkg-config $* --cflags --libs itn"
	say "pkg-config ${*:+$* }--cflags --libs itn: $flags"
	# shellcheck disable=SC2086 # the flags are words
	run "$tmp/$name.log" "$CC" -std=c11 -Wall -Wextra -Werror \
		-o "$tmp/$name" "$src/tests/subproject/consumer.c" $flags ||
		fail "compiling $name"
}

consumer consumer-shared
readelf -d "$tmp/consumer-shared" | grep -q 'NEEDED.*libitn\.so\.0' ||
	fail "consumer-shared does not link libitn.so.0"
printf '+ LD_LIBRARY_PATH=%s %s\n' "$libdir" "$tmp/consumer-shared"
LD_LIBRARY_PATH=$libdir "$tmp/consumer-shared" || fail "consumer-shared"

# A static-only install: the linker finds libitn.a for -litn.
cp -a "$dest" "$tmp/dest-static" || fail "cp"
export PKG_CONFIG_SYSROOT_DIR=$tmp/dest-static
export PKG_CONFIG_PATH=$tmp/dest-static${PKG_CONFIG_PATH#"$dest"}
rm -f "$tmp/dest-static${libdir#"$dest"}"/libitn.so*
consumer consumer-static --static
if readelf -d "$tmp/consumer-static" | grep -q 'NEEDED.*libitn'; then
	fail "consumer-static still needs a shared libitn"
fi
printf '+ %s\n' "$tmp/consumer-static"
"$tmp/consumer-static" || fail "consumer-static"

say "passed: shared and static consumers built with pkg-config and ran"
exit 0
