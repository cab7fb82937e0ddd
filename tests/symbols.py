#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""The shared library exports exactly the names of its version script.

Usage: symbols.py LIBITN_SYM LIBITN_SO

Compares `nm -D --defined-only LIBITN_SO` with the global: names of the
version script, node by node: every listed name is defined with its node's
version (itn_find@@ITN_0.1), and nothing else is exported (no itn__
internals, no liburcu or libc symbols leaking through the static core).
Exit status 0 if they match, 1 if not, 77 (skip) without nm.
"""
import re
import shutil
import subprocess
import sys


def version_script(path):
    """{name: node} of the global: names of a GNU ld version script."""
    text = re.sub(r'/\*.*?\*/', '', open(path).read(), flags=re.S)
    text = re.sub(r'#[^\n]*', '', text)
    names = {}
    for node in re.finditer(r'([A-Za-z_][\w.]*)\s*\{(.*?)\}', text, re.S):
        body = re.split(r'\blocal:', node.group(2))[0]
        body = body.replace('global:', '')
        for name in re.findall(r'([A-Za-z_]\w*)\s*;', body):
            names[name] = node.group(1)
    return names


def exported(nm, lib):
    """{name: version or None} of the dynamic symbols lib defines."""
    out = subprocess.run([nm, '-D', '--defined-only', lib], check=True,
                         capture_output=True, text=True).stdout
    syms = {}
    for line in out.splitlines():
        fields = line.split()
        if len(fields) < 2:
            continue
        kind, name = fields[-2], fields[-1]
        if kind == 'A':          # the version node itself (ITN_0.1)
            continue
        name, _, version = name.partition('@')
        syms[name] = version.lstrip('@') or None
    return syms


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    sym_file, lib = sys.argv[1:]
    nm = shutil.which('nm')
    if nm is None:
        print('nm not found: skipped')
        return 77
    want = version_script(sym_file)
    have = exported(nm, lib)
    problems = []
    if not want:
        problems.append(f'{sym_file}: no global: names')
    for name in sorted(set(want) - set(have)):
        problems.append(f'{name}: in {sym_file} but not defined by {lib}')
    for name in sorted(set(have) - set(want)):
        problems.append(f'{name}: exported by {lib} but not in {sym_file}')
    for name in sorted(set(want) & set(have)):
        if have[name] is not None and have[name] != want[name]:
            problems.append(f'{name}: version {have[name]}, the script '
                            f'says {want[name]}')
    for p in problems:
        print(p)
    print(f'symbols: {len(want)} in the version script, {len(have)} '
          f'exported, {len(problems)} problems')
    return 1 if problems else 0


if __name__ == '__main__':
    sys.exit(main())
