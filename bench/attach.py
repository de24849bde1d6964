#!/usr/bin/env python3
"""attach: attach-only results (peerbench.py --attach-only) -> a markdown table.

usage: attach.py RESULTS.jsonl

One row per storm kind and peer: the runs, attach time (launch to the
earliest numbered marker the output holds; see peerbench.py) min / median /
max in ms, the median time to the first output line, and how many runs had
to fall back to the first output (no numbered marker captured). Runs that
failed are counted apart.
"""
import json
import statistics
import sys


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    rows = {}
    failed = {}
    for line in open(sys.argv[1]):
        r = json.loads(line)
        key = (r["storm"].split(":")[0], r["label"])
        if "error" in r:
            failed[key] = failed.get(key, 0) + 1
            continue
        rows.setdefault(key, []).append(r)
    print("| storm | peer | n | attach ms min / med / max | first output ms med | coarse | failed |")
    print("|---|---|---|---|---|---|---|")
    for key in sorted(set(rows) | set(failed)):
        rs = rows.get(key, [])
        att = sorted(r["attach_s"] * 1000 for r in rs)
        out = [r["first_output_s"] * 1000 for r in rs if "first_output_s" in r]
        coarse = sum(1 for r in rs if r.get("attach_coarse"))
        if att:
            a = f"{att[0]:.0f} / {statistics.median(att):.0f} / {att[-1]:.0f}"
        else:
            a = "-"
        o = f"{statistics.median(out):.0f}" if out else "-"
        print(f"| {key[0]} | {key[1]} | {len(rs)} | {a} | {o} | {coarse} | {failed.get(key, 0)} |")


if __name__ == "__main__":
    main()
