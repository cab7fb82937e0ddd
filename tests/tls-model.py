#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""The shared library reaches thread-local storage with static models only.

Usage: tls-model.py LIBITN_SO

libitn's hot paths (itn_find, itn_sub_put, every read section) read
thread-local variables: its own and liburcu-bp's reader pointer.  Compiled
as position-independent code, an access takes the general-dynamic model by
default: a call to __tls_get_addr() each time, which made find+put through
libitn.so three times slower (bench/README.md, P1).  src/meson.build builds
with -ftls-model=initial-exec; this test fails if a dynamic-model access
comes back: an import of __tls_get_addr, or a DTPMOD/TLSDESC relocation.
Exit status 0 if none, 1 if any, 77 (skip) without readelf.
"""
import shutil
import subprocess
import sys


def main():
    if len(sys.argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    lib = sys.argv[1]
    readelf = shutil.which('readelf')
    if not readelf:
        print('readelf not found: skipped')
        return 77
    syms = subprocess.run([readelf, '-W', '--dyn-syms', lib], check=True,
                          capture_output=True, text=True).stdout
    relocs = subprocess.run([readelf, '-W', '-r', lib], check=True,
                            capture_output=True, text=True).stdout
    bad = []
    for line in syms.splitlines():
        f = line.split()
        if len(f) >= 8 and f[6] == 'UND' and f[7].startswith('__tls_get_addr'):
            bad.append('imports ' + f[7])
    for line in relocs.splitlines():
        f = line.split()
        if len(f) >= 3 and ('DTPMOD' in f[2] or 'TLSDESC' in f[2]):
            bad.append('relocation ' + ' '.join(f[2:]))
    for b in bad:
        print('%s: dynamic TLS access: %s' % (lib, b))
    if not bad:
        print('%s: thread-local storage through static models only' % lib)
    return 1 if bad else 0


if __name__ == '__main__':
    sys.exit(main())
