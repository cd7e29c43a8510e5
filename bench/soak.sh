#!/usr/bin/env bash
# soak.sh: memory under a steady load. kumogo --policy route-to-sink.lua
# (RocksDB spool synced before every 250, log records on, as bench/relay.sh
# runs it) relays traffic-gen's mail, at a fixed rate, to bench/baresink
# for a bounded time, and the relay is sampled every --interval seconds:
# RSS from /proc, the Go runtime's memory (its pprof endpoint on
# 127.0.0.1), goroutines and open files. The samples go to a TSV and a PNG
# chart (bench/soak_plot.py).
#
# Usage: bench/soak.sh [--duration 30m] [--rate 200] [--size 10240]
#                      [--conc 20] [--interval 10]
#                      [--out bench/results/soak.tsv]
#                      [--png bench/results/soak-rss.png]
#
# --duration takes seconds or a Go-style 90s / 30m / 1h (at most 24h). The
# generator stops at --duration; the relay is sampled 30 s more while it
# drains, then stopped with SIGTERM.
#
# TSV columns: t_s rss_mb heap_inuse_mb heap_retained_mb stack_mb
# go_other_mb goroutines fds (heap_retained = freed heap the Go runtime
# has not returned to the kernel yet; go_other = its metadata, GC and
# runtime structures). RSS minus the Go columns is memory allocated outside
# the Go heap (pebble's memtables and block cache when built with cgo, the
# C library).
set -euo pipefail

prog=soak.sh
# shellcheck source=bench/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

duration=30m
rate=200
size=10240
conc=20
interval=10
out=bench/results/soak.tsv
png=bench/results/soak-rss.png

while [ $# -gt 0 ]; do
	case "$1" in
	--duration) duration="$2"; shift 2 ;;
	--rate) rate="$2"; shift 2 ;;
	--size) size="$2"; shift 2 ;;
	--conc) conc="$2"; shift 2 ;;
	--interval) interval="$2"; shift 2 ;;
	--out) out="$2"; shift 2 ;;
	--png) png="$2"; shift 2 ;;
	-h|--help) usage; exit 0 ;;
	*) die "unknown argument $1 (see --help)" ;;
	esac
done
secs=$(python3 -c '
import re, sys
m = re.fullmatch(r"(\d+)(s|m|h)?", sys.argv[1])
if not m: sys.exit("bad duration " + sys.argv[1])
print(int(m.group(1)) * {None: 1, "s": 1, "m": 60, "h": 3600}[m.group(2)])' "$duration") || die "bad --duration $duration"
need_posint "$secs" "$rate" "$size" "$conc" "$interval"
at_most "$secs" 86400 --duration
at_most "$conc" 5000 --conc

bench_tmp kumogo-soak
build cmd/traffic-gen bench/baresink
build_kumogo_if kumogo
copy_policies "$tmp/policies"

sink_port=$(free_port)
start_baresink "$sink_port" "$tmp/sink.log"
relay_port=$(free_port)
pprof_port=$(free_port)
(
	cd "$tmp/policies"
	export KUMOGO_RELAY_LISTEN="127.0.0.1:$relay_port" KUMOGO_SINK_HOST="127.0.0.1:$sink_port" \
		KUMOGO_RELAY_DIR="$tmp/relay"
	exec "$bin/kumogo" --policy route-to-sink.lua --pprof "127.0.0.1:$pprof_port"
) 2>"$tmp/relay.log" &
relay_pid=$!
pids+=("$relay_pid")
wait_ready "$relay_port" "$relay_pid" "$tmp/relay.log" "initialization complete"

note "relay pid $relay_pid: $rate msgs/s of $size bytes over $conc connections for ${secs}s, sampled every ${interval}s"
"$bin/traffic-gen" --target "127.0.0.1:$relay_port" --concurrency "$conc" --body-size "$size" \
	--throttle "$rate/s" --duration "$secs" --domain bench.test --domain-suffix '' --json \
	>"$tmp/gen.json" 2>"$tmp/gen.log" &
gen_pid=$!
pids+=("$gen_pid")

mkdir -p "$(dirname "$out")"
python3 - "$relay_pid" "$pprof_port" "$interval" $((secs + 30)) "$out" <<'PY'
import os, re, sys, time, urllib.request
pid, port, interval, total, out = int(sys.argv[1]), sys.argv[2], float(sys.argv[3]), float(sys.argv[4]), sys.argv[5]
def rss_mb():
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
def memstats():
    body = urllib.request.urlopen(f"http://127.0.0.1:{port}/debug/pprof/heap?debug=1", timeout=10).read().decode()
    # "# HeapInuse = N", and "# Stack = inuse / sys" for stacks and spans
    return {k: int(v) for k, v in re.findall(r"^# (\w+) = (\d+)", body, re.M)}
def goroutines():
    body = urllib.request.urlopen(f"http://127.0.0.1:{port}/debug/pprof/goroutine?debug=1", timeout=10).read().decode()
    return int(re.search(r"goroutine profile: total (\d+)", body).group(1))
MB = 1 << 20
start = time.monotonic()
with open(out, "w") as f:
    f.write("t_s\trss_mb\theap_inuse_mb\theap_retained_mb\tstack_mb\tgo_other_mb\tgoroutines\tfds\n")
    while time.monotonic() - start <= total:
        try:
            ms = memstats()
            row = (time.monotonic() - start, rss_mb(), ms["HeapInuse"] / MB,
                   (ms["HeapIdle"] - ms["HeapReleased"]) / MB, ms["Stack"] / MB,
                   (ms["MSpan"] + ms["MCache"] + ms["BuckHashSys"] + ms["GCSys"] + ms["OtherSys"]) / MB,
                   goroutines(), len(os.listdir(f"/proc/{pid}/fd")))
        except (OSError, KeyError, AttributeError) as e:
            print(f"soak.sh: sample failed: {e}", file=sys.stderr)
            break
        f.write("%.0f\t%.1f\t%.1f\t%.1f\t%.1f\t%.1f\t%d\t%d\n" % row)
        f.flush()
        time.sleep(interval)
PY
wait "$gen_pid" || note "traffic-gen exited with $?: $(tail -3 "$tmp/gen.log")"
stop "$relay_pid"
sent=$(python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print(d.get("sent", d))' "$tmp/gen.json" 2>/dev/null || echo "?")
note "sent: $sent; samples in $out"
tail -n 3 "$tmp/relay.log" >&2
python3 "$root/bench/soak_plot.py" "$out" "$png"
