#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""report.py - the N table of bench/README.md from itn-bench-notifier runs.

usage: bench/report.py [--png FILE] RUN...

Each RUN file holds the output of one itn-bench-notifier process: its
key=value lines, its --json lines, or both (JSON is used when present).
Every figure is shown as the median of the runs with [min-max]; ratios are
the median of each run's own ratio (libitn and baseline come from the same
process).  "met?" compares the median with the goal of WORKLOADS.md.

With --png, and gnuplot on the PATH, it also plots N4 (find+put
throughput against threads, libitn and baseline, bars min-max) to FILE.
Standard library only.
"""
import argparse
import json
import shutil
import statistics
import subprocess
import sys

IDENT = ('threads', 'queries', 'align', 'readers', 'writers', 'release',
         'paths', 'inval_rate')


def parse_value(v):
    try:
        return int(v)
    except ValueError:
        pass
    try:
        return float(v)
    except ValueError:
        return v


def read_run(path):
    """One process's measurements, as dicts with a 'workload' key."""
    with open(path, encoding='utf-8') as f:
        lines = [ln.strip() for ln in f if ln.strip()]
    js = [json.loads(ln) for ln in lines if ln.startswith('{')]
    if js:
        return js
    out = []
    for ln in lines:
        words = ln.split()
        if not words or '=' in words[0]:
            continue
        m = {'workload': words[0]}
        for w in words[1:]:
            if '=' in w:
                k, v = w.split('=', 1)
                m[k] = parse_value(v)
        out.append(m)
    return out


def key_of(m):
    return (m['workload'],) + tuple((k, m[k]) for k in IDENT if k in m)


class Stat:
    def __init__(self, vals):
        self.vals = sorted(vals)
        self.med = statistics.median(self.vals)
        self.lo = self.vals[0]
        self.hi = self.vals[-1]


def collect(runs):
    """{key: {metric: Stat}} over the runs."""
    acc = {}
    for run in runs:
        for m in run:
            d = acc.setdefault(key_of(m), {})
            for k, v in m.items():
                if isinstance(v, (int, float)) and not isinstance(v, bool):
                    d.setdefault(k, []).append(v)
    return {k: {mk: Stat(v) for mk, v in d.items()} for k, d in acc.items()}


def num(v):
    if v >= 1e6:
        return f'{v / 1e6:.2f} M'
    if v >= 100:
        return f'{v:.0f}'
    if v >= 10:
        return f'{v:.1f}'
    return f'{v:.2f}'


def rat(v):
    return f'{v:.3f}' if v < 0.1 else f'{v:.2f}'


def span(s, f=num, unit=''):
    if s is None:
        return '—'
    if len(s.vals) == 1 or s.lo == s.hi:
        return f'{f(s.med)}{unit}'
    return f'{f(s.med)}{unit} [{f(s.lo)}–{f(s.hi)}]'


def verdict(ok, value, limit, higher_is_better=False):
    if ok:
        return 'yes'
    if higher_is_better:
        return f'**no**: {100 * (1 - value / limit):.0f} % short'
    return f'**no**: {100 * (value / limit - 1):.0f} % over'


def table(stats, nruns):
    rows = []

    def get(wl, **ident):
        k = (wl,) + tuple((i, ident[i]) for i in IDENT if i in ident)
        return stats.get(k)

    n1 = get('N1')
    if n1:
        ns, r = n1['ns_pair'].med, n1['ratio'].med
        ok = ns <= 3 and r <= 0.2
        rows.append(('N1', 'ns per `itn_read_begin`+`itn_read_retry`',
                     span(n1['ns_pair']), span(n1['base_ns_pair']),
                     span(n1['ratio'], rat, '×'),
                     '≤ 3 ns; ≤ 0.2× baseline',
                     f'{num(ns)} ns; {rat(r)}×',
                     'yes' if ok else verdict(False, max(ns / 3, r / 0.2), 1)))
    # N2/N3: the fast paths (runs before --paths have no paths key), then
    # the locked paths alone, for reference.
    for paths in ('fast', 'locked'):
        n2 = get('N2', paths=paths) or (get('N2') if paths == 'fast'
                                        else None)
        n3 = get('N3', paths=paths) or (get('N3') if paths == 'fast'
                                        else None)
        how = '' if paths == 'fast' else '; locked paths only'
        if n2:
            r = n2['ratio_bare'].med
            rows.append(('N2' + ('' if paths == 'fast' else ' locked'),
                         'ns per start+end overlapping nothing '
                         f'({n2["subs"].med:.0f} subs){how}; bare query: '
                         f'{span(n2["bare_ns"])} ns',
                         span(n2['ns_pair']), span(n2['base_ns_pair']),
                         span(n2['ratio_base'], rat, '×'),
                         '≤ 1.5× the bare query' if paths == 'fast'
                         else '(for reference)',
                         span(n2['ratio_bare'], rat, '×') +
                         f' (baseline {rat(n2["base_ratio_bare"].med)}×)',
                         verdict(r <= 1.5, r, 1.5) if paths == 'fast'
                         else '—'))
        if n3 and 'ratio_n2' in n3:
            r = n3['ratio_n2'].med
            rows.append(('N3' + ('' if paths == 'fast' else ' locked'),
                         'ns per start+end hitting 1 sub '
                         f'(callback: mutex + `itn_set_seq`){how}',
                         span(n3['ns_pair']), span(n3['base_ns_pair']),
                         span(n3['ratio_base'], rat, '×'),
                         '≤ 2× N2' if paths == 'fast'
                         else '(for reference)',
                         span(n3['ratio_n2'], rat, '×') +
                         f' (baseline {rat(n3["base_ratio_n2"].med)}×)',
                         verdict(r <= 2, r, 2) if paths == 'fast'
                         else '—'))
    def n4key(k):
        d = dict(k[1:])
        return (d.get('align', 0), d['threads'],
                d.get('queries', 'shared') != 'shared')

    for k in sorted((k for k in stats if k[0] == 'N4'), key=n4key):
        d = stats[k]
        ident = dict(k[1:])
        t, align = ident['threads'], ident.get('align', 0)
        queries = ident.get('queries', 'shared')
        goal, against, met = '—', '—', '—'
        if t > 1 and 'scaling' in d:
            s = d['scaling'].med
            goal = f'scaling ≥ 0.9 × {t} = {0.9 * t:.1f}'
            against = (span(d['scaling'], rat, '×') +
                       f' (baseline {rat(d["base_scaling"].med)}×'
                       + (f', bare tree {rat(d["bare_scaling"].med)}×'
                          if 'bare_scaling' in d else '') + ')')
            met = verdict(s >= 0.9 * t, s, 0.9 * t, True)
        cpus = (f'; CPUs the threads got: {d["cpus"].med:.2f} '
                f'(baseline {d["base_cpus"].med:.2f})' if 'cpus' in d else '')
        what = ('' if t == 1 else
                ', every thread finds every sub' if queries == 'shared' else
                ', each thread its own subs')
        lay = f', subs {align}-byte aligned' if align else ''
        rows.append((f'N4 ×{t}', f'`itn_find`+`itn_sub_put` ops/s, {t} '
                     f'thread{"s" if t > 1 else ""}{what}{lay}{cpus}',
                     span(d['ops_s']), span(d['base_ops_s']),
                     span(d['ratio'], rat, '×'), goal, against, met))
    for rel in ('yes', 'no'):
        d = get('N5', release=rel)
        if not d:
            continue
        r = d['ratio_w1'].med
        if rel == 'yes':
            fig = ('ns per insert+remove among '
                   f'{d["subs"].med:.0f}, with `release` (two indexes); '
                   f'T-W1 pair: {span(d["w1_ns_pair"])} ns')
            goal, met = '≤ 2.5× T-W1', verdict(r <= 2.5, r, 2.5)
        else:
            fig = 'the same without `release` (one index)'
            goal, met = '(for reference)', '—'
        rows.append(('N5', fig, span(d['ns_pair']), span(d['base_ns_pair']),
                     span(d['ratio_base'], rat, '×'), goal,
                     span(d['ratio_w1'], rat, '×') +
                     f' (baseline {rat(d["base_ratio_w1"].med)}×)', met))
    n6 = sorted((k for k in stats if k[0] == 'N6'),
                key=lambda k: (dict(k[1:]).get('inval_rate', 0),
                               dict(k[1:])['readers'],
                               dict(k[1:])['writers']))
    for k in n6:
        d = stats[k]
        rd, wr = dict(k[1:])['readers'], dict(k[1:])['writers']
        rate = dict(k[1:]).get('inval_rate', 0)
        # --inval-rate: the writers were paced (the achieved rate is the
        # invalidations/s row).
        paced = f' @ {rate}/s' if rate else ''
        stale = d['stale'].hi + d['base_stale'].hi
        if rd == 2:
            r = d['ratio_faults'].med
            goal, met = '≥ 2× baseline faults/s', verdict(r >= 2, r, 2, True)
        else:
            goal, met = '(for reference)', '—'
        cpus = (f' (CPUs the threads got: {d["cpus"].med:.2f}, baseline '
                f'{d["base_cpus"].med:.2f})' if 'cpus' in d else '')
        rows.append((f'N6 {rd}R+{wr}W{paced}', f'faults/s, {rd} reader(s) + '
                     f'{wr} writer(s){paced}{cpus}',
                     span(d['faults_s']), span(d['base_faults_s']),
                     span(d['ratio_faults'], rat, '×'), goal,
                     span(d['ratio_faults'], rat, '×'), met))
        rows.append((f'N6 {rd}R+{wr}W{paced}', 'invalidations/s',
                     span(d['invals_s']), span(d['base_invals_s']),
                     span(d['ratio_invals'], rat, '×'), '—', '—', '—'))
        rows.append((f'N6 {rd}R+{wr}W{paced}',
                     'stale mappings (libitn / baseline)',
                     f'{int(d["stale"].hi)}', f'{int(d["base_stale"].hi)}',
                     '—', '0', f'{int(stale)}',
                     'yes' if stale == 0 else '**no**'))
    m1 = get('M1')
    if m1:
        b = m1['bytes_per_sub'].med
        heap = m1['heap_per_sub'].med if 'heap_per_sub' in m1 else None
        rows.append(('M1', 'bytes per subscription: `sizeof(struct itn_sub)`'
                     + (f'; heap per subscription: {heap:.0f}'
                        if heap is not None and heap >= 0 else ''),
                     f'{b:.0f}', f'{m1["base_sizeof_sub"].med:.0f}',
                     rat(b / m1['base_sizeof_sub'].med) + '×',
                     f'≤ 2× the kernel\'s {m1["kernel"].med:.0f} B',
                     f'{rat(b / m1["kernel"].med)}×',
                     verdict(b <= 2 * m1['kernel'].med, b,
                             2 * m1['kernel'].med)))

    out = [f'Median of {nruns} run{"s" if nruns != 1 else ""} '
           '[min–max]; ratios are per run, then the median.', '',
           '| id | figure | libitn | baseline | libitn / baseline | goal '
           '| against the goal | met? |',
           '|---|---|---|---|---|---|---|---|']
    for r in rows:
        out.append('| ' + ' | '.join(r) + ' |')
    return '\n'.join(out)


def plot_n4(stats, nruns, png):
    if not shutil.which('gnuplot'):
        print('report.py: gnuplot not found: no plot', file=sys.stderr)
        return False
    pts = {}
    subs = ''
    for k, d in stats.items():
        ident = dict(k[1:])
        if k[0] != 'N4' or ident.get('align', 0):
            continue
        pts[(ident['threads'], ident.get('queries', 'shared'))] = d
        if 'subs' in d:
            subs = f"{d['subs'].med:.0f} "
    threads = sorted({t for t, _ in pts})
    if not threads:
        print('report.py: no N4 measurement: no plot', file=sys.stderr)
        return False

    def get(t, q):
        return pts.get((t, q)) or (pts.get((t, 'shared')) if t == 1 else None)

    def block(q, metric):
        out = []
        for t in threads:
            d = get(t, q)
            if d and metric in d:
                m = d[metric]
                out.append(f'{t} {m.med / 1e6} {m.lo / 1e6} {m.hi / 1e6}')
        return '\n'.join(out)

    tmax = max(threads)
    script = f"""
$ls << EOD
{block('shared', 'ops_s')}
EOD
$ld << EOD
{block('disjoint', 'ops_s')}
EOD
$bs << EOD
{block('shared', 'base_ops_s')}
EOD
$xs << EOD
{block('shared', 'bare_ops_s')}
EOD
set terminal pngcairo noenhanced size 860,540 font ',11'
set output '{png}'
set title "N4: itn_find + itn_sub_put, {subs}subscriptions\\n" . \\
    "median of {nruns} runs, bars min-max"
set xlabel 'threads'
set ylabel 'million operations per second'
set xrange [0.5:{tmax + 0.5}]
set xtics 1
set yrange [0:*]
set key top left
set grid ytics
plot $ls using 1:2:3:4 with yerrorlines lw 2 pt 7 lc rgb '#1f77b4' \\
        title 'libitn find+put, threads share the subs', \\
     $ld using 1:2:3:4 with yerrorlines lw 2 pt 9 dt 3 lc rgb '#1f77b4' \\
        title 'libitn find+put, each thread its own subs', \\
     $bs using 1:2:3:4 with yerrorlines lw 2 pt 5 lc rgb '#d62728' \\
        title 'baseline find+put (one mutex)', \\
     $xs using 1:2:3:4 with yerrorlines lw 1 pt 6 dt 2 lc rgb '#555555' \\
        title 'bare tree query, no lock, no reference (ceiling)'
"""
    r = subprocess.run(['gnuplot'], input=script, text=True,
                       capture_output=True)
    if r.returncode:
        print(f'report.py: gnuplot failed:\n{r.stderr}', file=sys.stderr)
        return False
    return True


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--png', help='plot N4 into this PNG file (gnuplot)')
    ap.add_argument('runs', nargs='+', help='outputs of itn-bench-notifier')
    args = ap.parse_args()
    runs = [read_run(p) for p in args.runs]
    runs = [r for r in runs if r]
    if not runs:
        sys.exit('report.py: no measurement in the given files')
    stats = collect(runs)
    print(table(stats, len(runs)))
    if args.png and plot_n4(stats, len(runs), args.png):
        print(f'report.py: wrote {args.png}', file=sys.stderr)


if __name__ == '__main__':
    main()
