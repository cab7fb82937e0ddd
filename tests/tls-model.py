#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""The shared library reaches thread-local storage with static models only.

Usage: tls-model.py LIBITN_SO

libitn's hot paths (itn_find, itn_sub_put, every read section) read
thread-local variables: its own and liburcu-bp's reader pointer.  Compiled
as position-independent code, an access takes the general-dynamic model by
default: a call to __tls_get_addr() each time, which makes find+put through
libitn.so 1.1-1.4x slower (bench/README.md, "Comparing two builds").  src/meson.build builds
with -ftls-model=initial-exec; this test fails if a dynamic-model access
comes back: an import of __tls_get_addr, or a DTPMOD/TLSDESC relocation.
Exit status 0 if none, 1 if any, 77 (skip) without readelf.

With --expect-dynamic (a -Dtls_model=dynamic build): the opposite, some
dynamic access must be there (else the option did not take effect).
"""
import shutil
import subprocess
import sys


def main():
    args = sys.argv[1:]
    expect_dynamic = '--expect-dynamic' in args
    args = [a for a in args if a != '--expect-dynamic']
    if len(args) != 1:
        print(__doc__, file=sys.stderr)
        return 2
    lib = args[0]
    readelf = shutil.which('readelf')
    if not readelf:
        print('readelf not found: skipped')
        return 77
    syms = subprocess.run([readelf, '-W', '--dyn-syms', lib], check=True,
                          capture_output=True, text=True).stdout
    relocs = subprocess.run([readelf, '-W', '-r', lib], check=True,
                            capture_output=True, text=True).stdout
    found = []
    for line in syms.splitlines():
        f = line.split()
        if len(f) >= 8 and f[6] == 'UND' and f[7].startswith('__tls_get_addr'):
            found.append('imports ' + f[7])
    for line in relocs.splitlines():
        f = line.split()
        if len(f) >= 3 and ('DTPMOD' in f[2] or 'TLSDESC' in f[2]):
            found.append('relocation ' + ' '.join(f[2:]))
    for b in found:
        print('%s: dynamic TLS access: %s' % (lib, b))
    if expect_dynamic:
        if not found:
            print('%s: no dynamic TLS access, but tls_model=dynamic' % lib)
        return 0 if found else 1
    if not found:
        print('%s: thread-local storage through static models only' % lib)
    return 1 if found else 0


if __name__ == '__main__':
    sys.exit(main())
