#!/usr/bin/env python3
"""Summarise an `ncu --csv --page raw` log (bench/device_lncc.sh): per kernel
(name, grid) the median time, DRAM bandwidth, SOL percentages, occupancy and
the top stall reasons, and a limiter guess. Usage: ncu_summary.py ncu.csv [min_grid_blocks]"""
import csv, sys, statistics, re
lines = open(sys.argv[1]).read().splitlines()
start = next(i for i, l in enumerate(lines) if l.startswith('"ID"'))
rows = list(csv.reader([l for l in lines[start:] if l.startswith('"')]))
hdr = rows[0]
data = [r for r in rows[1:] if r and r[0].isdigit()]
ix = {h: i for i, h in enumerate(hdr)}
def g(r, k):
    try: return float(r[ix[k]].replace(',', ''))
    except Exception: return float('nan')
groups = {}
for r in data:
    name = r[ix['Kernel Name']]
    short = name.split('(')[0].replace('void ', '').replace('grcu::', '').replace(' ', '')
    key = (short, r[ix['Grid Size']], r[ix['Block Size']])
    groups.setdefault(key, []).append(r)
stalls = [h for h in hdr if h.startswith('smsp__average_warps_issue_stalled_') and h.endswith('_per_issue_active.ratio')]
print('| kernel | grid | block | n | time ms | DRAM TB/s | DRAM % | SM % | L1 % | L2 % | FP64 pipe % | occupancy % (achieved) | regs | top stalls (warps per issue) |')
print('|---|---|---|---|---|---|---|---|---|---|---|---|---|---|')
for key, rs in sorted(groups.items(), key=lambda kv: -statistics.median(g(r, 'gpu__time_duration.sum') for r in kv[1])):
    med = lambda k: statistics.median(g(r, k) for r in rs)
    t = med('gpu__time_duration.sum')  # ns
    bw = med('dram__bytes.sum') / (t * 1e-9)  # bytes/s
    st = sorted(((med(s), s.replace('smsp__average_warps_issue_stalled_', '').replace('_per_issue_active.ratio', '')) for s in stalls), reverse=True)[:3]
    print('| %s | %s | %s | %d | %.3f | %.2f | %.0f | %.0f | %.0f | %.0f | %.0f | %.0f | %.0f | %s |' % (
        key[0][:60], key[1], key[2], len(rs), t / 1e6, bw / 1e12, med('gpu__dram_throughput.avg.pct_of_peak_sustained_elapsed'),
        med('sm__throughput.avg.pct_of_peak_sustained_elapsed'), med('l1tex__throughput.avg.pct_of_peak_sustained_active'),
        med('lts__throughput.avg.pct_of_peak_sustained_elapsed'), med('sm__pipe_fp64_cycles_active.avg.pct_of_peak_sustained_elapsed'),
med('sm__warps_active.avg.pct_of_peak_sustained_active'),
        med('launch__registers_per_thread'), ', '.join('%s %.2f' % (n, v) for v, n in st)))
