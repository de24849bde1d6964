#!/usr/bin/env python3
"""multi: peerbench JSON lines of `ig-multi` and `ig-three` -> a Markdown
section (written to bench/multi.md by `cargo xtask bench --multi`, and
spliced into docs/benchmarks.md; report.py appends bench/multi.md to the
page of a full run).

usage: multi.py RESULTS.jsonl COMMAND NOTE

`ig-multi` runs trace_exec, trace_open and top_file in one `ig run -f`
process, `ig-three` the same gadgets as three `ig run` processes; both
print JSON to one file. peerbench sums CPU and RSS over the process group.
Each storm drives one of the gadgets (exec: trace_exec, open: trace_open);
the others see what the storm causes besides (the loader's opens of an
exec, for trace_open and top_file). Reader CPU is therefore given per
million storm operations, the same unit for both: the lines that match
the storm's pattern are not one per event here. NOTE is printed under the
table (what else ran on the machine).
"""
import json
import os
import statistics
import subprocess
import sys

LABELS = ("ig-multi", "ig-three")


def sh(cmd):
    try:
        return subprocess.run(cmd, shell=True, capture_output=True, text=True, timeout=20).stdout.strip()
    except Exception:  # noqa: BLE001 - a missing tool is just "unknown"
        return ""


def main():
    results, command, note = sys.argv[1], sys.argv[2], sys.argv[3]
    rows = {}
    errors = []
    for line in open(results):
        r = json.loads(line)
        if "error" in r or "ops" not in r:
            errors.append(f"{r.get('label')} {r.get('storm')}: {r.get('error')}")
            continue
        rows.setdefault((r["storm"], r["label"]), []).append(r)

    def med(storm, label, f):
        vals = [f(r) for r in rows.get((storm, label), [])]
        vals = [v for v in vals if v is not None]
        return statistics.median(vals) if vals else None

    def fmt(v, spec):
        return "-" if v is None else spec.format(v)

    storms = sorted({s for s, _ in rows})
    cpu = sh("grep -m1 'model name' /proc/cpuinfo | cut -d: -f2").strip()
    print("## Several gadgets in one process (`ig run -f`)\n")
    print("trace_exec, trace_open and top_file in one `ig run -f bench/multi.yaml -o json`")
    print("process (`ig-multi`) against the same three as three `ig run -o json` processes")
    print("(`ig-three`), under the storms of the table above; CPU and RSS are summed over")
    print("the processes. Reader CPU is per million storm operations (each storm drives one")
    print("gadget; the others see its side effects, so output lines are not one per")
    print("event). Attach is when the first gadget's marker shows; idle CPU and RSS are")
    print("taken 2 s later, once the others are loaded too. Medians of the repetitions.\n")
    print(f"- machine: {os.cpu_count()} CPUs ({cpu}), kernel {os.uname().release}; "
          f"ig: {sh('$IG version | head -1')}, {os.environ.get('IG_BUILD', 'built `--release`')}; "
          f"date: {sh('date -u +%Y-%m-%dT%H:%MZ')}")
    print(f"- command: `{command}`\n")
    print("| storm | run | n | RSS idle MiB | RSS under load MiB (hwm) | idle CPU % | reader CPU s | reader CPU s / M storm ops | storm slowdown | attach s | lost |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for s in storms:
        for label in LABELS:
            n = len(rows.get((s, label), []))
            if not n:
                continue
            idle = med(s, label, lambda r: r.get("rss_idle_kb", 0) / 1024)
            load = med(s, label, lambda r: r.get("rss_load_max_kb", 0) / 1024)
            hwm = med(s, label, lambda r: r.get("hwm_kb", 0) / 1024)
            icpu = med(s, label, lambda r: r.get("idle_cpu_pct"))
            cpu_s = med(s, label, lambda r: r.get("tracer_cpu_s"))
            per_mop = med(s, label, lambda r: r["tracer_cpu_s"] / (r["ops"] / 1e6) if r.get("ops") else None)
            slow = med(s, label, lambda r: r.get("workload_slowdown"))
            att = med(s, label, lambda r: r.get("attach_s"))
            lost = max(r.get("lost_reported", 0) for r in rows[(s, label)])
            print(f"| {s} | {label} | {n} | {fmt(idle, '{:.1f}')} | {fmt(load, '{:.1f}')} ({fmt(hwm, '{:.1f}')}) "
                  f"| {fmt(icpu, '{:.1f}')} | {fmt(cpu_s, '{:.2f}')} | {fmt(per_mop, '{:.2f}')} | {fmt(slow, '{:.2f}')} "
                  f"| {fmt(att, '{:.2f}')} | {lost} |")
    print()
    lines = []
    for s in storms:
        m_rss = med(s, "ig-multi", lambda r: r.get("rss_load_max_kb", 0) / 1024)
        t_rss = med(s, "ig-three", lambda r: r.get("rss_load_max_kb", 0) / 1024)
        m_cpu = med(s, "ig-multi", lambda r: r["tracer_cpu_s"] / (r["ops"] / 1e6) if r.get("ops") else None)
        t_cpu = med(s, "ig-three", lambda r: r["tracer_cpu_s"] / (r["ops"] / 1e6) if r.get("ops") else None)
        if None in (m_rss, t_rss, m_cpu, t_cpu) or not t_rss or not t_cpu:
            continue
        lines.append(f"- `{s}`: one process takes {m_rss / t_rss:.2f}× the RSS of three "
                     f"({m_rss:.1f} against {t_rss:.1f} MiB) and {m_cpu / t_cpu:.2f}× their reader CPU "
                     f"({m_cpu:.2f} against {t_cpu:.2f} s per million storm operations).")
    if lines:
        print("\n".join(lines))
        print()
    if errors:
        print("Runs that failed (left out above): " + "; ".join(errors) + ".\n")
    if note:
        print(note + "\n")


if __name__ == "__main__":
    main()
