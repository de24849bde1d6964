#!/bin/bash
# daemon-cost.sh MODE N RATE OUTDIR: the cost per event of `ig daemon` and
# `gadgetctl run trace_open -o json` on loopback TCP, each side apart, for
# exactly the events of one open storm (bench/daemon.md).
#
#   MODE  cpu       CPU time of each process (/proc/PID/stat), user and all
#         callgrind both processes under valgrind's callgrind, counters
#                   zeroed before the storm and dumped after the drain:
#                   instructions per event in user space, by function
#                   (read the dumps with bench/cgself.py)
#         perf      perf record -g of each process during the storm
#   N RATE  opens of the storm, and its rate (bin/openstorm -n N -r RATE)
#
# The storm runs as uid 4242 and the gadget is filtered to it (--uid 4242,
# in the kernel): events of the machine's other processes (other sessions'
# storms) are neither traced nor counted. Events are what gadgetctl printed
# between the storm's start and the end of the drain.
#
# BIN: the directory of ig and gadgetctl (default: target/release).
# Example: BIN=target/dist bench/daemon-cost.sh cpu 300000 100000 /tmp/cost
set -u
MODE=$1 N=$2 RATE=$3 OUT=$4
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
BIN=${BIN:-$HERE/../target/release}
PORT=${PORT:-17791}
TARGET=/tmp/daemon-cost-target
STORM="setpriv --reuid=4242 --regid=4242 --clear-groups $HERE/bin/openstorm -f $TARGET"
[ -x "$HERE/bin/openstorm" ] || make -C "$HERE" bin/openstorm >/dev/null
touch $TARGET && chmod 644 $TARGET
mkdir -p "$OUT" && rm -f "$OUT"/*
VD="" VC=""
if [ "$MODE" = callgrind ]; then
    VD="valgrind --tool=callgrind --callgrind-out-file=$OUT/cg.daemon.%p"
    VC="valgrind --tool=callgrind --callgrind-out-file=$OUT/cg.ctl.%p"
fi
$VD "$BIN/ig" daemon -H tcp://127.0.0.1:$PORT --tls-insecure 2>"$OUT/daemon.err" &
DPID=$!
until (exec 3<>/dev/tcp/127.0.0.1/$PORT) 2>/dev/null; do sleep 0.1; done
$VC "$BIN/gadgetctl" --remote-address tcp://127.0.0.1:$PORT run trace_open --uid 4242 -o json \
    >"$OUT/out.json" 2>"$OUT/ctl.err" &
CPID=$!
until grep -q "$TARGET" "$OUT/out.json" 2>/dev/null; do $STORM -t 1 -n 1 >/dev/null; sleep 0.5; done
sleep 1
L0=$(wc -l <"$OUT/out.json")
[ "$MODE" = callgrind ] && { callgrind_control -z $DPID; callgrind_control -z $CPID; } >/dev/null
ticks() { awk -v f=$2 '{print f == "u" ? $14 : $14 + $15}' /proc/$1/stat; }
D0=$(ticks $DPID a) C0=$(ticks $CPID a) DU0=$(ticks $DPID u) CU0=$(ticks $CPID u)
if [ "$MODE" = perf ]; then
    perf record -F 999 -g -p $DPID -o "$OUT/perf.daemon" 2>/dev/null & P1=$!
    perf record -F 999 -g -p $CPID -o "$OUT/perf.ctl" 2>/dev/null & P2=$!
fi
$STORM -t 600 -n "$N" -r "$RATE" >"$OUT/storm.txt"
prev=-1
while true; do sleep 1; c=$(wc -l <"$OUT/out.json"); [ "$c" = "$prev" ] && break; prev=$c; done
[ "$MODE" = perf ] && { kill -INT $P1 $P2; wait $P1 $P2; }
D1=$(ticks $DPID a) C1=$(ticks $CPID a) DU1=$(ticks $DPID u) CU1=$(ticks $CPID u)
[ "$MODE" = callgrind ] && { callgrind_control -d $DPID; callgrind_control -d $CPID; sleep 1; } >/dev/null
EV=$(( $(wc -l <"$OUT/out.json") - L0 ))
echo "storm: $(cat "$OUT/storm.txt")"
awk -v e=$EV -v d=$((D1-D0)) -v c=$((C1-C0)) -v du=$((DU1-DU0)) -v cu=$((CU1-CU0)) 'BEGIN {
    m = e / 1e6 * 100
    printf "events=%d CPU s per M events: daemon %.2f (user %.2f) gadgetctl %.2f (user %.2f) both %.2f\n",
        e, d / m, du / m, c / m, cu / m, (d + c) / m }'
grep -ih "drop\|lost" "$OUT/ctl.err" | tail -2
kill -INT $CPID; sleep 1; kill -INT $DPID; wait $CPID $DPID 2>/dev/null
[ "$MODE" = callgrind ] && ls "$OUT"/cg.*.1
true
