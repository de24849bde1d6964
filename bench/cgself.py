#!/usr/bin/env python3
"""cgself.py DUMP [EVENTS [TOP]]: a callgrind dump's instructions by
function, self cost only (callgrind_annotate 3.19 mis-reads the dumps of
our Rust binaries), divided by EVENTS: instructions per event. Used by
bench/daemon-cost.sh's callgrind mode (bench/daemon.md)."""
import sys, re, collections
def parse(path):
    names = {}; selfc = collections.Counter(); incl_calls = collections.Counter()
    cur = None; skip_next = False; total = 0
    for line in open(path, errors='replace'):
        line = line.rstrip('\n')
        if line.startswith('summary:'): total = int(line.split()[1]); continue
        m = re.match(r'^(c?fn)=\((\d+)\)(?: (.*))?$', line)
        if m:
            kind, i, n = m.groups()
            if n is not None: names[i] = n
            if kind == 'fn': cur = names.get(i, i)
            continue
        if line.startswith('calls='): skip_next = True; continue
        if line and (line[0].isdigit() or line[0] in '+-*'):
            parts = line.split()
            if len(parts) >= 2:
                c = int(parts[1])
                if skip_next: skip_next = False; continue
                selfc[cur] += c
    return total, selfc
total, s = parse(sys.argv[1])
ev = int(sys.argv[2]) if len(sys.argv) > 2 else 1
print(f"total {total:,}  per event {total/ev:,.0f}")
for n, c in s.most_common(int(sys.argv[3]) if len(sys.argv) > 3 else 40):
    print(f"{c/ev:9.0f} {100*c/total:5.1f}%  {n[:150]}")
