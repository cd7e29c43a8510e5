#!/usr/bin/env bash
# scrape.sh: does scraping /metrics slow delivery down? One relay
# (bench/scrape-relay.lua: route-to-sink.lua's durable relay plus an HTTP
# listener) holds --queues scheduled queues of one message each (injected
# over HTTP to q<N>.hold.test, first attempt a day away, so they are
# neither routed nor delivered) and relays traffic-gen's load (100 KB
# bodies, --bdat, 50 connections, --msgs per run) to bench/baresink. Runs
# alternate without and with a scraper that GETs /metrics every --interval
# seconds for the whole run (pairs in alternating order: off/on, on/off,
# ...), all through the same relay and sink, so both see the same queues
# and the same machine.
#
# Usage: bench/scrape.sh [--pairs 3] [--msgs 10000] [--queues 10000]
#                        [--interval 1] [--size 102400] [--conc 50]
#                        [--run-timeout 600]
#
# The default interval, 1 s, is 15 times Prometheus's usual 15 s and 60
# times its default scrape_interval (1 m): the worst case an operator would
# configure. Output: one line per run, the medians, the ratio on/off
# (target: no more than 2 % slower) and, measured with the relay idle
# afterwards, the CPU and wall time of one scrape with the queues present:
#   scenario=scrape run=1 scraper=off msgs=10000 secs=S rate=R msgs/s cpu_s_per_1k=C scrapes=0
#   scenario=scrape scraper=on runs=3 median rate=R msgs/s (min max) cpu_s_per_1k=C
#   scenario=scrape ratio on/off=0.99 (-1 %) target>=0.98 pass
#   scenario=scrape idle queues=10000 series=N scrape_cpu_ms=X scrape_wall_ms=Y
set -euo pipefail

prog=scrape.sh
# shellcheck source=bench/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

pairs=3
msgs=10000
queues=10000
interval=1
size=102400
conc=50
run_timeout=600

while [ $# -gt 0 ]; do
	case "$1" in
	--pairs) pairs="$2"; shift 2 ;;
	--msgs) msgs="$2"; shift 2 ;;
	--queues) queues="$2"; shift 2 ;;
	--interval) interval="$2"; shift 2 ;;
	--size) size="$2"; shift 2 ;;
	--conc) conc="$2"; shift 2 ;;
	--run-timeout) run_timeout="$2"; shift 2 ;;
	-h|--help) usage; exit 0 ;;
	*) die "unknown argument $1 (see --help)" ;;
	esac
done
need_posint "$pairs" "$msgs" "$queues" "$interval" "$size" "$conc" "$run_timeout"
at_most "$pairs" 20 --pairs
at_most "$msgs" 1000000 --msgs
at_most "$queues" 100000 --queues
at_most "$conc" 5000 --conc
command -v curl >/dev/null 2>&1 || die "curl is needed"

bench_tmp kumogo-scrape
build cmd/kumogo cmd/traffic-gen bench/baresink bench/procstat
mkdir -p "$tmp/policies"
cp "$root/bench/scrape-relay.lua" "$tmp/policies/"

sinkport=$(free_port)
sink_log="$tmp/sink.log"
start_baresink "$sinkport" "$sink_log" --expect "$msgs" --every
relay_port=$(free_port)
http_port=$(free_port)
url="http://127.0.0.1:$http_port"
start_kumogo "$relay_port" "$tmp/relay.log" "$tmp/policies" "initialization complete" scrape-relay.lua \
	KUMOGO_RELAY_LISTEN="127.0.0.1:$relay_port" KUMOGO_SINK_HOST="127.0.0.1:$sinkport" \
	KUMOGO_RELAY_DIR="$tmp/relay" KUMOGO_RELAY_HTTP="127.0.0.1:$http_port"
relay_pid=$last_pid

# The held queues: --queues recipients in batches of 1,000 per request.
note "injecting $queues held messages, one queue each"
for ((first = 0; first < queues; first += 1000)); do
	last=$((first + 1000 < queues ? first + 1000 : queues))
	{
		printf '{"envelope_sender":"hold@bench.test","content":"Subject: held\\r\\n\\r\\nheld\\r\\n","recipients":['
		for ((i = first; i < last; i++)); do
			[ "$i" -gt "$first" ] && printf ','
			printf '{"email":"u@q%d.hold.test"}' "$i"
		done
		printf ']}'
	} >"$tmp/inject.json"
	curl -sS --fail -m "$run_timeout" -H 'Content-Type: application/json' --data-binary @"$tmp/inject.json" \
		"$url/api/inject/v1" >"$tmp/inject.out" || die "injection failed: $(cat "$tmp/inject.out")"
	grep -q "\"success_count\":$((last - first))," "$tmp/inject.out" || die "injection refused: $(cat "$tmp/inject.out")"
done
held=$(curl -sS --fail -m 60 "$url/metrics" | grep -c '^scheduled_count{.*hold\.test' || true)
[ "$held" -eq "$queues" ] || die "/metrics shows $held held queues, want $queues"
note "$held held queues present; $pairs pairs of $msgs messages, scraping every ${interval}s in the 'on' runs"

# scraper OUT: GET /metrics every interval until killed; each scrape's
# wall time in ms, one per line, in OUT.
scraper() {
	local out=$1 t0 t
	while :; do
		t0=$(date +%s%N)
		t=$(curl -s -o /dev/null -m 30 -w '%{time_total}' "$url/metrics" || echo fail)
		echo "$t" | awk '{ if ($1 == "fail") print "fail"; else printf "%.1f\n", $1 * 1000 }' >>"$out"
		t=$(((t0 + interval * 1000000000 - $(date +%s%N)) / 1000000))
		[ "$t" -gt 0 ] && sleep "$(awk -v m="$t" 'BEGIN { printf "%.3f", m / 1000 }')"
	done
}

declare -A rates=() cpus=()
runs=0
run_once() {
	local mode=$1 start end cpu0 cpu1 secs rate cpu1k spid= nscr=0 smed=- want
	runs=$((runs + 1))
	want=$((runs * msgs))
	: >"$tmp/scrapes"
	if [ "$mode" = on ]; then
		scraper "$tmp/scrapes" &
		spid=$!
		pids+=("$spid")
	fi
	cpu0=$(cpu_of "$relay_pid")
	start=$(date +%s%N)
	traffic_gen_args "$relay_port" "$size" "$msgs" "$conc"
	timeout "$run_timeout" "$bin/traffic-gen" "${tg_args[@]}" --bdat >"$tmp/gen.json" 2>"$tmp/gen.log" ||
		die "traffic-gen failed in run $runs: $(tail -3 "$tmp/gen.log")"
	grep -q "\"sent\":$msgs," "$tmp/gen.json" || die "traffic-gen did not send $msgs messages in run $runs"
	while :; do
		end=$(sed -n "s/^reached messages=$want unix_ns=\([0-9]*\)$/\1/p" "$sink_log")
		[ -n "$end" ] && break
		[ $(($(date +%s%N) - start)) -lt $((run_timeout * 1000000000)) ] || die "the sink did not get run $runs's messages within $run_timeout s"
		kill -0 "$relay_pid" 2>/dev/null || die "the relay exited: $(tail -20 "$tmp/relay.log")"
		sleep 0.05
	done
	cpu1=$(cpu_of "$relay_pid")
	if [ -n "$spid" ]; then
		kill -TERM "$spid" 2>/dev/null || true
		wait "$spid" 2>/dev/null || true
		nscr=$(grep -c . "$tmp/scrapes" || true)
		grep -q fail "$tmp/scrapes" && die "a scrape failed during run $runs"
		smed=$(stats "$(tr '\n' ' ' <"$tmp/scrapes")" | awk '{ print $1 }')
	fi
	secs=$(elapsed "$start" "$end")
	rate=$(rate_of "$msgs" "$secs")
	cpu1k=$(per_1k "$cpu0" "$cpu1" "$msgs")
	printf 'scenario=scrape run=%d scraper=%s msgs=%d secs=%s rate=%.0f msgs/s cpu_s_per_1k=%s scrapes=%d scrape_wall_ms_median=%s\n' \
		"$runs" "$mode" "$msgs" "$secs" "$rate" "$cpu1k" "$nscr" "$smed"
	rates[$mode]="${rates[$mode]:-} $rate"
	cpus[$mode]="${cpus[$mode]:-} $cpu1k"
}

for ((p = 1; p <= pairs; p++)); do
	if ((p % 2)); then
		run_once off
		run_once on
	else
		run_once on
		run_once off
	fi
done

declare -A med=()
for mode in off on; do
	read -r m lo hi <<<"$(stats "${rates[$mode]}")"
	read -r c clo chi <<<"$(stats "${cpus[$mode]}")"
	med[$mode]=$m
	printf 'scenario=scrape scraper=%s runs=%d median rate=%.0f msgs/s (min %.0f max %.0f) cpu_s_per_1k=%s (%s-%s)\n' \
		"$mode" "$pairs" "$m" "$lo" "$hi" "$c" "$clo" "$chi"
done
awk -v on="${med[on]}" -v off="${med[off]}" 'BEGIN {
	r = on / off
	printf "scenario=scrape ratio on/off=%.3f (%+.1f %%) target>=0.98 %s\n", r, (r - 1) * 100, (r >= 0.98 ? "pass" : "short")
}'

# One scrape with the relay idle: its CPU (every thread of the relay) and
# wall time, median of 10.
sleep 2
series=$(curl -sS -m 60 "$url/metrics" | grep -vc '^#' || true)
cpu0=$(cpu_of "$relay_pid")
: >"$tmp/idle"
for ((i = 0; i < 10; i++)); do
	curl -s -o /dev/null -m 30 -w '%{time_total}\n' "$url/metrics" | awk '{ printf "%.1f\n", $1 * 1000 }' >>"$tmp/idle"
done
cpu1=$(cpu_of "$relay_pid")
printf 'scenario=scrape idle queues=%d series=%d scrape_cpu_ms=%s scrape_wall_ms=%s\n' "$queues" "$series" \
	"$(awk -v a="$cpu0" -v b="$cpu1" 'BEGIN { printf "%.1f", (b - a) * 100 }')" \
	"$(stats "$(tr '\n' ' ' <"$tmp/idle")" | awk '{ print $1 }')"
