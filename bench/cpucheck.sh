#!/usr/bin/env bash
# cpucheck.sh IG [ig run args...]: ig's CPU per event under a fixed-count
# open storm, for comparing two builds quickly (the peer matrix is
# `cargo xtask bench`). Runs `IG run trace_open -o json ARGS` to a file in
# /dev/shm, makes N opens with bench/bin/openstorm (K threads), and prints
# the events seen and ig's CPU (all threads, from /proc/PID/task/*/schedstat,
# in nanoseconds) per million events.
# Env: N (opens, default 2000000), K (storm threads, default 1), IG_STORE.
# Needs `make -C bench bin/openstorm` and trace_open in the store.
set -eu
IG=$1; shift
N=${N:-2000000}; K=${K:-1}
B=$(dirname "$0")/bin
out=$(mktemp /dev/shm/cpucheck.XXXXXX)
"$IG" run trace_open -o json "$@" > "$out" 2> "$out.err" &
pid=$!
for _ in $(seq 1 200); do grep -q started "$out.err" 2>/dev/null && break; sleep 0.05; done
sleep 0.5
cpu() { cat /proc/$pid/task/*/schedstat | awk '{s += $1} END {print s}'; }
c0=$(cpu)
storm=$("$B/openstorm" -t 60 -k "$K" -n "$N")
sleep 0.5
c1=$(cpu)
kill -INT $pid; wait $pid || true
ev=$(grep -c benchopen-target "$out" || true)
bytes=$(stat -c %s "$out")
echo "storm: $storm"
python3 -c "
c = ($c1 - $c0) / 1e9; ev = $ev
print(f'events={ev} cpu_s={c:.2f} cpu_s_per_Mev={c / ev * 1e6 if ev else 0:.3f} bytes_per_event={$bytes / max(ev, 1):.0f}')"
grep -i lost "$out.err" || true
rm -f "$out" "$out.err"
