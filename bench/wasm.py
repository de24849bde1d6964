#!/usr/bin/env python3
"""Cost of a WASM guest: trace_open vs trace_open_classify (the same eBPF
program plus a C guest that classifies every path).

usage (as root, from the repository): python3 bench/wasm.py [--dur S] [--rate N] [--reps N]

Needs an ig binary ($IG, default target/release/ig from
cargo build --release --bin ig) and bench/bin/openstorm
(make -C bench bin/openstorm). For each gadget and repetition: start
`ig run GADGET -o json -v` into a file, wait until it says the gadget
started, run an open() storm of --rate opens/s for --dur seconds, stop ig
with SIGINT and read its CPU time (getrusage of the child). Start-up:
time from spawn to "started", with the compiled-module cache emptied
(cold) and kept (warm), and the compile/load time ig logs itself.
Prints a Markdown section on stdout.
"""

import argparse
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
IG = os.environ.get("IG", os.path.join(ROOT, "target/release/ig"))
STORM = os.path.join(ROOT, "bench/bin/openstorm")
TARGET = "/tmp/ig-wasm-bench-target"


def start(gadget, out, extra=()):
    t0 = time.monotonic()
    p = subprocess.Popen(
        [IG, "run", gadget, "-o", "json", "-v", *extra],
        stdout=out,
        stderr=subprocess.PIPE,
        text=True,
    )
    err = []
    for line in p.stderr:
        err.append(line)
        if "started" in line:
            return p, time.monotonic() - t0, err
    p.wait()
    sys.exit(f"{gadget} did not start:\n{''.join(err)}")


def stop(p, err):
    p.send_signal(signal.SIGINT)
    err.extend(p.stderr.read().splitlines(True))
    _, status, ru = os.wait4(p.pid, 0)
    p.returncode = status
    return ru.ru_utime + ru.ru_stime


def storm_run(gadget, dur, rate, tmp):
    path = os.path.join(tmp, "out.jsonl")
    with open(path, "w") as out:
        p, _, err = start(gadget, out)
        r = subprocess.run(
            [STORM, "-t", str(dur), "-r", str(rate), "-f", TARGET],
            capture_output=True,
            text=True,
            check=True,
        )
        time.sleep(0.5)
        cpu = stop(p, err)
    ops = int(re.search(r"ops=(\d+)", r.stdout).group(1))
    seen = 0
    with open(path) as f:
        for line in f:
            if TARGET in line:
                seen += 1
    lost = sum(int(m) for m in re.findall(r": (\d+) events lost", "".join(err)))
    return {"ops": ops, "seen": seen, "cpu": cpu, "lost": lost}


def startup(gadget, cold, tmp):
    if cold:
        shutil.rmtree(os.path.join(tmp, "wasm-cache"), ignore_errors=True)
    with open(os.devnull, "w") as out:
        p, secs, err = start(gadget, out)
        stop(p, err)
    m = re.search(r"(Compiled|Cached) in (\d+) ms", "".join(err))
    return secs, (m.group(1), int(m.group(2))) if m else None


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--dur", type=float, default=5)
    ap.add_argument("--rate", type=int, default=200000)
    ap.add_argument("--reps", type=int, default=3)
    a = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="ig-wasm-bench-")
    os.environ["IG_STORE"] = os.path.join(tmp, "store")
    for g in ["trace_open", "trace_open_classify"]:
        subprocess.run(
            [IG, "image", "build", os.path.join(ROOT, "gadgets", g), "-t", g],
            check=True,
            capture_output=True,
        )
    rows = {}
    for g in ["trace_open", "trace_open_classify"]:
        rows[g] = [storm_run(g, a.dur, a.rate, tmp) for _ in range(a.reps)]
    cold = [startup("trace_open_classify", True, tmp) for _ in range(a.reps)]
    warm = [startup("trace_open_classify", False, tmp) for _ in range(a.reps)]
    base = [startup("trace_open", False, tmp) for _ in range(a.reps)]
    shutil.rmtree(tmp, ignore_errors=True)

    med = statistics.median
    print("## WASM guest cost (trace_open vs trace_open_classify)\n")
    print(
        f"Command: `IG={os.path.relpath(IG, ROOT)} python3 bench/wasm.py --dur {a.dur:g} "
        f"--rate {a.rate} --reps {a.reps}` (median of {a.reps} runs).\n"
    )
    print("| gadget | opens/s asked | events seen/s | lost | ig CPU s | ig CPU µs/event |")
    print("|---|---|---|---|---|---|")
    for g, rs in rows.items():
        seen = med(r["seen"] for r in rs)
        cpu = med(r["cpu"] for r in rs)
        lost = med(r["lost"] for r in rs)
        per = cpu / seen * 1e6 if seen else float("nan")
        print(f"| {g} | {a.rate} | {seen / a.dur:.0f} | {lost:.0f} | {cpu:.2f} | {per:.2f} |")
    print()
    print("| start-up (spawn to \"started\") | median s | module compile/load (ig's log) |")
    print("|---|---|---|")
    for name, runs in [
        ("trace_open (no module)", base),
        ("trace_open_classify, cold cache", cold),
        ("trace_open_classify, warm cache", warm),
    ]:
        secs = med(s for s, _ in runs)
        logs = ", ".join(f"{m[0].lower()} {m[1]} ms" for _, m in runs if m) or "-"
        print(f"| {name} | {secs:.3f} | {logs} |")


if __name__ == "__main__":
    main()
