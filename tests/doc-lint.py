#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""Every exported symbol has a kernel-doc block in the public headers.

Usage: doc-lint.py LIBITN_SYM INCLUDE_DIR

For each name in the version script, the headers under INCLUDE_DIR (all of
them, recursively) must hold exactly one block

    /**
     * name() - Summary.
     * @arg: ...
     *
     * ...
     * Context: ...
     * Return: ...
     */

directly followed by the declaration of that name, with an @arg: line for
each parameter of the declaration and none for parameters it does not have
(style.md 4.9; kernel-doc.rst).  Exit status 0 if all is well, 1 otherwise,
with one line per problem.
"""
import os
import re
import sys

# One kernel-doc function block: "/**", then " * name() - summary".
BLOCK = re.compile(r'/\*\*\n \* (\w+)\(\) - [^\n]*\n(.*?)\*/', re.S)
# The version script's exported names (global: section, one per line).
SYMBOL = re.compile(r'^\s*([A-Za-z_]\w*)\s*;', re.M)
PARAM_DOC = re.compile(r'^ \* @(\w+):', re.M)


def exported_symbols(path):
    text = re.sub(r'/\*.*?\*/', '', open(path).read(), flags=re.S)
    text = re.sub(r'#[^\n]*', '', text)
    names = []
    for node in re.finditer(r'global:(.*?)(?:local:|\})', text, re.S):
        names += SYMBOL.findall(node.group(1))
    return names


def headers(root):
    for top, dirs, files in os.walk(root):
        dirs.sort()
        for name in sorted(files):
            if name.endswith('.h'):
                yield os.path.join(top, name)


def split_params(text):
    """Split a parameter list at top-level commas."""
    params, depth, cur = [], 0, ''
    for ch in text:
        if ch in '([':
            depth += 1
        elif ch in ')]':
            depth -= 1
        if ch == ',' and depth == 0:
            params.append(cur)
            cur = ''
        else:
            cur += ch
    params.append(cur)
    return [p.strip() for p in params if p.strip()]


def param_name(param):
    """The declared name of one parameter ('' when unnamed or void)."""
    if param in ('void', '...'):
        return ''
    fnptr = re.search(r'\(\s*\*\s*(\w+)\s*\)', param)   # void (*fn)(...)
    if fnptr:
        return fnptr.group(1)
    m = re.search(r'(\w+)\s*(\[[^\]]*\]\s*)*$', param)
    return m.group(1) if m else ''


def declaration(text, name):
    """Parameter names of the declaration of name() at the start of text,
    or None when text does not start with one."""
    m = re.match(r'\s*[^;{}()]*?\b' + name + r'\s*\(', text)
    if not m:
        return None
    depth, i = 1, m.end()
    while i < len(text) and depth:
        depth += {'(': 1, ')': -1}.get(text[i], 0)
        i += 1
    return [p for p in map(param_name, split_params(text[m.end():i - 1]))
            if p]


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    sym_file, include_dir = sys.argv[1:]
    symbols = exported_symbols(sym_file)
    problems = []
    if not symbols:
        problems.append(f'{sym_file}: no exported symbols found')

    blocks = {}
    for path in headers(include_dir):
        text = open(path).read()
        for m in BLOCK.finditer(text):
            blocks.setdefault(m.group(1), []).append(
                (os.path.relpath(path, include_dir), m.group(2),
                 text[m.end():]))

    for sym in symbols:
        found = blocks.get(sym, [])
        if not found:
            problems.append(f'{sym}: no "/**\\n * {sym}() - ..." block in '
                            f'{include_dir}')
            continue
        if len(found) > 1:
            where = ', '.join(f[0] for f in found)
            problems.append(f'{sym}: {len(found)} kernel-doc blocks ({where})')
        path, body, after = found[0]
        for section in ('Context:', 'Return:'):
            if not re.search(r'^ \* ' + section, body, re.M):
                problems.append(f'{path}: {sym}(): no "{section}" section')
        params = declaration(after, sym)
        if params is None:
            problems.append(f'{path}: {sym}(): the block is not followed by '
                            f'the declaration of {sym}()')
            continue
        documented = PARAM_DOC.findall(body)
        for p in params:
            if p not in documented:
                problems.append(f'{path}: {sym}(): parameter @{p} is not '
                                f'documented')
        for p in documented:
            if p not in params:
                problems.append(f'{path}: {sym}(): @{p} documented but not '
                                f'a parameter')

    for p in problems:
        print(p)
    print(f'doc-lint: {len(symbols)} symbols, {len(problems)} problems')
    return 1 if problems else 0


if __name__ == '__main__':
    sys.exit(main())
