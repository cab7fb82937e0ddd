#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""run-peers.py - reproduce the Peers tables of bench/README.md (issue 8).

    bench/run-peers.py [-b BUILD_DIR] [-o OUT_DIR] [-r ROUNDS] [--quick]
                       [--workload P1 ...] [--report-only] [--plot FILE]
                       [--ir]

Runs ROUNDS (5) rounds of `itn-bench-peers`, each round every selected
workload once (P1 with --threads 1,2,3,4 for the plot), keeps the raw
key=value lines in OUT_DIR/round-N.txt, and prints one markdown table per
workload with the median of the rounds and [min-max] for the headline
figures.  P1's median throughput against threads for libitn, UCX and the
kernel-style baseline goes to OUT_DIR/p1.dat and, through gnuplot, to the
PNG named by --plot (default bench/p1.png).  --report-only re-reads the
rounds already in OUT_DIR.  --ir adds P1's instructions per operation at
one thread (valgrind --tool=callgrind, inclusive Ir of the timed loop
function over its operations), which load on the machine does not change.
"""
import argparse
import os
import statistics
import subprocess
import sys

IDENT = ('variant', 'n', 'op', 'threads', 'k', 'mode', 'query', 'peer',
         'slots', 'readers', 'tbs', 'stores', 'events', 'q', 'ms')


def parse(path):
    rows = []
    for line in open(path):
        w = line.split()
        if not w or not w[0].startswith('P'):
            continue
        kv = dict(x.split('=', 1) for x in w[1:] if '=' in x)
        kv['workload'] = w[0]
        rows.append(kv)
    return rows


def ident(kv):
    return (kv['workload'],) + tuple(kv.get(k, '') for k in IDENT)


def gather(paths):
    """ident -> {key: [values over rounds]}, in first-seen order."""
    out = {}
    for p in paths:
        for kv in parse(p):
            d = out.setdefault(ident(kv), {'_kv': kv})
            for k, v in kv.items():
                try:
                    d.setdefault(k, []).append(float(v))
                except ValueError:
                    pass
    return out


def fmt(x):
    if x is None:
        return '—'
    if x == 0:
        return '0'
    a = abs(x)
    if a >= 1000:
        return f'{x:,.0f}'.replace(',', ' ')
    if a >= 100:
        return f'{x:.0f}'
    if a >= 10:
        return f'{x:.1f}'
    if a >= 1:
        return f'{x:.2f}'
    return f'{x:.3f}'


def med(d, key, spread=False):
    v = d.get(key)
    if not v:
        return '—' if d['_kv'].get('status') is None or \
            not key.startswith('peer') else d['_kv']['status']
    m = statistics.median(v)
    if spread and len(v) > 1:
        return f'{fmt(m)} [{fmt(min(v))}–{fmt(max(v))}]'
    return fmt(m)


def mx(d, key):
    v = d.get(key)
    return fmt(max(v)) if v else '—'


def table(head, rows):
    print('| ' + ' | '.join(head) + ' |')
    print('|' + '---|' * len(head))
    for r in rows:
        print('| ' + ' | '.join(r) + ' |')
    print()


def report(data, outdir, plot):
    by = {}
    for key, d in data.items():
        by.setdefault(key[0], []).append(d)

    def kv(d, k):
        return d['_kv'].get(k, '')

    if 'P1' in by:
        print('#### P1 hit path: find + reference + release (Mops/s, '
              'all threads together)\n')
        rows = []
        for d in by['P1']:
            rows.append([kv(d, 'n'), kv(d, 'threads'), kv(d, 'peer'),
                         med(d, 'itn_mops', True), med(d, 'peer_mops', True),
                         med(d, 'ratio'), med(d, 'itn_scaling'),
                         med(d, 'peer_scaling'), med(d, 'itn_cpu_scaling'),
                         med(d, 'peer_cpu_scaling')])
        table(['n', 'threads', 'peer', 'libitn Mops/s', 'peer Mops/s',
               'ratio', 'libitn scaling', 'peer scaling',
               'libitn per-CPU scaling', 'peer per-CPU scaling'], rows)
        dat = {}
        for d in by['P1']:
            if kv(d, 'n') != '10000':
                continue
            t = int(kv(d, 'threads'))
            row = dat.setdefault(t, {})
            row['libitn'] = statistics.median(d['itn_mops'])
            if d.get('peer_mops'):
                row[kv(d, 'peer')] = statistics.median(d['peer_mops'])
        if dat:
            with open(os.path.join(outdir, 'p1.dat'), 'w') as f:
                f.write('# threads libitn ucx baseline ompi (Mops/s, '
                        'median, n=10^4)\n')
                for t in sorted(dat):
                    r = dat[t]
                    f.write(f"{t} {r.get('libitn', 'NaN')} "
                            f"{r.get('ucx', 'NaN')} "
                            f"{r.get('baseline', 'NaN')} "
                            f"{r.get('ompi', 'NaN')}\n")
            if plot:
                gnuplot(os.path.join(outdir, 'p1.dat'), plot)

    if 'P2' in by:
        print('#### P2 index operations (ns/op; query = first match, '
              'with false negatives)\n')
        rows = []
        for d in by['P2']:
            q = kv(d, 'op') == 'query'
            rows.append([kv(d, 'variant'), kv(d, 'n'), kv(d, 'op'),
                         kv(d, 'peer'), med(d, 'itn_ns', True),
                         med(d, 'peer_ns', True), med(d, 'ratio'),
                         mx(d, 'itn_fn') if q else '',
                         mx(d, 'peer_fn') if q else '',
                         med(d, 'with_hit') if q else ''])
        table(['variant', 'n', 'op', 'peer', 'libitn ns', 'peer ns',
               'ratio', 'libitn FN', 'peer FN', 'queries with a hit'], rows)

    if 'P4' in by:
        print('#### P4 invalidate k regions, then register them again '
              '(ns per region)\n')
        rows = []
        for d in by['P4']:
            rows.append([kv(d, 'k'), kv(d, 'mode'), kv(d, 'peer'),
                         med(d, 'itn_ns', True), med(d, 'peer_ns', True),
                         med(d, 'ratio'), med(d, 'itn_inv_ns'),
                         med(d, 'peer_inv_ns'), med(d, 'itn_rereg_ns'),
                         med(d, 'peer_rereg_ns'), med(d, 'itn_put_ns'),
                         med(d, 'peer_put_ns')])
        table(['k', 'mode', 'peer', 'libitn total', 'peer total', 'ratio',
               'libitn inval', 'peer inval', 'libitn re-reg',
               'peer re-reg', 'libitn put (busy)', 'peer put (busy)'], rows)

    if 'P5' in by:
        print('#### P5 invalidation that hits nothing (ns per event)\n')
        rows = []
        for d in by['P5']:
            rows.append([kv(d, 'peer'), med(d, 'itn_ns', True),
                         med(d, 'bare_query_ns', True),
                         med(d, 'itn_over_bare'), med(d, 'peer_ns', True),
                         med(d, 'ratio'), med(d, 'peer_hits')])
        table(['peer', 'libitn ns', 'bare query ns', 'libitn / bare',
               'peer ns', 'ratio', 'peer hits'], rows)

    if 'P6' in by:
        print('#### P6 invalidations and nothing else: pending work '
              '(RSS deltas in KiB)\n')
        rows = []
        for d in by['P6']:
            rows.append([kv(d, 'mode'), kv(d, 'events'),
                         med(d, 'itn_ns'), med(d, 'itn_updates'),
                         mx(d, 'itn_deferred_max'), kv(d, 'itn_subs'),
                         mx(d, 'itn_rss_delta_kib'),
                         mx(d, 'itn_rss_after_kib'), med(d, 'peer_ns'),
                         med(d, 'peer_rss_delta_kib', True),
                         med(d, 'peer_rss_after_kib'), med(d, 'ratio')])
        table(['mode', 'events', 'libitn ns/event', 'libitn updates',
               'libitn deferred max', 'libitn subs', 'libitn RSS Δ (max)',
               'libitn RSS Δ after', 'UCX ns/event', 'UCX RSS Δ',
               'UCX RSS Δ after get', 'ratio'], rows)

    if 'P7' in by:
        print('#### P7 stale-hit stress with address reuse\n')
        rows = []
        for d in by['P7']:
            rows.append([kv(d, 'readers'), kv(d, 'ms'),
                         mx(d, 'itn_stale'), mx(d, 'itn_stale_find'),
                         mx(d, 'itn_fn'), med(d, 'itn_reads_per_s', True),
                         med(d, 'itn_retries_per_s'),
                         med(d, 'itn_invals_per_s'),
                         med(d, 'itn_reuses_per_s'), mx(d, 'peer_stale'),
                         med(d, 'peer_reads_per_s', True),
                         med(d, 'peer_invals_per_s'), med(d, 'ratio')])
        table(['readers', 'ms', 'libitn stale (max)',
               'libitn stale finds (max)', 'libitn FN (max)',
               'libitn reads/s', 'libitn retries/s', 'libitn invals/s',
               'libitn reuses/s', 'UCX stale (max)', 'UCX reads/s',
               'UCX invals/s', 'ratio (reads/s)'], rows)

    if 'P8' in by:
        print('#### P8 overlapping intervals against brute force\n')
        rows = []
        for d in by['P8']:
            rows.append([kv(d, 'n'), kv(d, 'query'), kv(d, 'mode'),
                         kv(d, 'q'), med(d, 'with_hit'), mx(d, 'itn_fn'),
                         mx(d, 'itn_missed'), mx(d, 'itn_wrong'),
                         med(d, 'peer_fn'), med(d, 'peer_fn_overlap'),
                         med(d, 'peer_wrong'), med(d, 'itn_ns', True),
                         med(d, 'peer_ns', True), med(d, 'ratio')])
        table(['n', 'query', 'mode', 'queries', 'with an overlap',
               'libitn FN (max)', 'libitn missed matches (max)',
               'libitn wrong', 'opal FN (containment)', 'opal FN (overlap)',
               'opal wrong', 'libitn ns', 'opal ns', 'ratio'], rows)

    if 'P9' in by:
        print('#### P9 emulator TB invalidation (millions of stores/s)\n')
        rows = []
        for d in by['P9']:
            rows.append([kv(d, 'peer'), med(d, 'itn_mstores_per_s', True),
                         med(d, 'peer_mstores_per_s', True),
                         med(d, 'ratio'), med(d, 'itn_tb_invals'),
                         med(d, 'peer_tb_invals')])
        table(['baseline', 'libitn', 'baseline Mstores/s', 'ratio',
               'libitn TB invalidations', 'baseline TB invalidations'],
              rows)


def incl_ir(cg_file, func):
    """Inclusive Ir of @func in a callgrind output file."""
    out = subprocess.run(['callgrind_annotate', '--inclusive=yes',
                          '--threshold=100', '--auto=no', cg_file],
                         capture_output=True, text=True, cwd='/').stdout
    for line in out.splitlines():
        w = line.split()
        if len(w) >= 2 and (':' + func + ' ') in line + ' ' and \
                w[0].replace(',', '').isdigit():
            return int(w[0].replace(',', ''))
    return 0


def ir_table(build, outdir):
    """P1 at one thread under callgrind: Ir per find + reference + put."""
    ops = 200000
    bench = os.path.join(build, 'bench')
    rows = []
    for n in (1000, 10000, 100000):
        runs = [
            ('driver', [os.path.join(bench, 'itn-bench-peers'), '--workload',
                        'P1', '--threads', '1', '--quick', '--n', str(n),
                        '--peer-dir', '/nonexistent'],
             ['bench_itn_find_put_loop', 'bench_bl_find_put_loop']),
            ('ucx', [os.path.join(bench, 'itn-bench-peer-ucx'), 'P1',
                     f'n={n}', 'threads=1', f'ops={ops}'],
             ['bench_ucx_get_put_loop']),
            ('ompi', [os.path.join(bench, 'itn-bench-peer-ompi'), 'P1',
                      f'n={n}', 'threads=1', f'ops={ops}'],
             ['bench_opal_find_loop']),
        ]
        ir = {}
        for name, cmd, funcs in runs:
            if not os.access(cmd[0], os.X_OK):
                continue
            cg = os.path.join(outdir, f'callgrind.P1.{name}.{n}')
            subprocess.run(['valgrind', '--tool=callgrind',
                            f'--callgrind-out-file={cg}'] + cmd,
                           stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL)
            for f in funcs:
                ir[f] = incl_ir(cg, f) / ops
        rows.append([str(n)] + [fmt(ir[f]) if ir.get(f) else '—' for f in (
            'bench_itn_find_put_loop', 'bench_ucx_get_put_loop',
            'bench_bl_find_put_loop', 'bench_opal_find_loop')])
    print('#### P1 at one thread, instructions per operation (callgrind, '
          'inclusive Ir of the loop / ops)\n')
    table(['n', 'libitn find+put', 'UCX get+put', 'kernel-style baseline',
           'opal find (no refcount)'], rows)


def gnuplot(dat, png):
    script = f'''
set terminal pngcairo noenhanced size 900,560 font "sans,11"
set output "{png}"
set title "P1 hit path, n = 10000 regions: find + reference + release"
set xlabel "threads (this machine: 2 CPUs; 3 and 4 are oversubscribed)"
set ylabel "total Mops/s (median of the rounds)"
set key top left
set grid
set xrange [0.8:4.2]
set yrange [0:*]
set xtics 1
set arrow from 2.5, graph 0 to 2.5, graph 1 nohead dt 2 lc rgb "#888888"
plot "{dat}" using 1:2 with linespoints lw 2 pt 7 title "libitn itn_find + itn_sub_put", \\
     "{dat}" using 1:3 with linespoints lw 2 pt 5 title "UCX 1.13 ucs_rcache_get + put", \\
     "{dat}" using 1:4 with linespoints lw 2 pt 9 title "kernel-style baseline (mutex + tree + kref)"
'''
    try:
        subprocess.run(['gnuplot'], input=script, text=True, check=True)
    except (OSError, subprocess.CalledProcessError) as e:
        print(f'run-peers.py: gnuplot failed: {e}', file=sys.stderr)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('-b', '--build', default='build-peers')
    ap.add_argument('-o', '--out', default='peers-results')
    ap.add_argument('-r', '--rounds', type=int, default=5)
    ap.add_argument('--quick', action='store_true')
    ap.add_argument('--workload', action='append')
    ap.add_argument('--report-only', action='store_true')
    ap.add_argument('--ir', action='store_true',
                    help='also count P1 instructions per op with callgrind')
    ap.add_argument('--plot', default=os.path.join(
        os.path.dirname(os.path.abspath(__file__)), 'p1.png'))
    a = ap.parse_args()
    os.makedirs(a.out, exist_ok=True)
    exe = os.path.join(a.build, 'bench', 'itn-bench-peers')
    paths = [os.path.join(a.out, f'round-{i + 1}.txt')
             for i in range(a.rounds)]
    if not a.report_only:
        wl = a.workload or ['P1', 'P2', 'P4', 'P5', 'P6', 'P7', 'P8', 'P9']
        for i, p in enumerate(paths):
            with open(p, 'w') as f:
                for w in wl:
                    print(f'run-peers.py: round {i + 1}/{a.rounds} {w}',
                          file=sys.stderr)
                    cmd = [exe, '--workload', w]
                    if w == 'P1':
                        cmd += ['--threads', '1,2,3,4']
                    if a.quick:
                        cmd.append('--quick')
                    r = subprocess.run(cmd, stdout=f)
                    if r.returncode:
                        print(f'run-peers.py: {" ".join(cmd)}: exit '
                              f'{r.returncode}', file=sys.stderr)
    report(gather([p for p in paths if os.path.exists(p)]), a.out, a.plot)
    if a.ir:
        ir_table(a.build, a.out)


if __name__ == '__main__':
    main()
