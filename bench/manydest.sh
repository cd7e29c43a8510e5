#!/usr/bin/env bash
# manydest.sh: the many-destination scenario. bench/smtpgen (BDAT, 50
# connections) sends N messages to kumogo (bench/manydest.lua: a queue per
# recipient domain, RocksDB spool, log records on), which looks up each
# domain's MX through bench/fakedns and delivers to one bench/baresink
# listening on many loopback addresses. Two kinds of run, fresh processes
# each time, interleaved:
#
#   one    every message to d0.bench.test (one destination)
#   many   the messages round robin over --domains domains d<k>.bench.test,
#          each with its own MX host mx.d<k>.bench.test (so its own
#          scheduled queue, site and ready queue); the MX hosts resolve to
#          --addrs loopback addresses (127.0.0.1, 127.1.X.Y), all served by
#          the one sink
#
# A run's time goes from the generator's start to the sink's Nth message.
# During the run /metrics is read every 2 s for the largest
# scheduled_queue_count and ready_queue_count; after it, the script waits
# for the queues to be reaped (reap_interval and the ready queue age-out
# set to --reap) and reports how long that took and the RSS then.
#
# Usage: bench/manydest.sh [--domains 10000] [--addrs 1000] [--msgs 20000]
#                          [--reps 3] [--size 102400] [--conc 50]
#                          [--reap 5s] [--run-timeout 600] [--only one,many]
#                          [--pprof DIR] [--profile-secs 20]
#
# --pprof DIR saves a CPU profile of kumogo (--profile-secs, default 20,
# from 2 s after the start) of each run, one and many, into DIR as
# manydest-KIND-REP.cpu.pb.gz (kumogo started with --pprof), so that
# `go tool pprof -diff_base` can show what the many destinations add,
# and a heap profile taken right after it as manydest-KIND-REP.heap.pb.gz
# (what the live heap holds mid-run: `go tool pprof -sample_index
# inuse_space`).
#
# Output: one line per run, the medians, and the ratio many/one (target
# >= 0.70):
#   scenario=manydest kind=many domains=D addrs=A size=S conc=C msgs=N secs=T rate=R msgs/s cpu_s_per_1k=X rss_mb=M peak_sched_queues=Q peak_ready_queues=Q reaped_in_s=W rss_after_reap_mb=M2
set -euo pipefail

prog=manydest.sh
# shellcheck source=bench/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

domains=10000
addrs=1000
msgs=20000
reps=3
size=102400
conc=50
reap=5s
run_timeout=600
only="one,many"
pprof_dir=
profile_secs=20

while [ $# -gt 0 ]; do
	case "$1" in
	--domains) domains="$2"; shift 2 ;;
	--addrs) addrs="$2"; shift 2 ;;
	--msgs) msgs="$2"; shift 2 ;;
	--reps) reps="$2"; shift 2 ;;
	--size) size="$2"; shift 2 ;;
	--conc) conc="$2"; shift 2 ;;
	--reap) reap="$2"; shift 2 ;;
	--run-timeout) run_timeout="$2"; shift 2 ;;
	--only) only="$2"; shift 2 ;;
	--pprof) pprof_dir="$2"; shift 2 ;;
	--profile-secs) profile_secs="$2"; shift 2 ;;
	-h|--help) usage; exit 0 ;;
	*) die "unknown argument $1 (see --help)" ;;
	esac
done
need_posint "$domains" "$addrs" "$msgs" "$reps" "$size" "$conc" "$run_timeout" "$profile_secs"
at_most "$domains" 100000 --domains
at_most "$addrs" 10000 --addrs
at_most "$reps" 20 --reps
at_most "$msgs" 1000000 --msgs
split_list kinds "$only"
need_known kind "one many" "${kinds[@]}"
[ -n "$pprof_dir" ] && mkdir -p "$pprof_dir"
command -v curl >/dev/null || die "curl is needed to read /metrics"

bench_tmp kumogo-manydest
build cmd/kumogo bench/baresink bench/fakedns bench/smtpgen bench/procstat
cp "$root/bench/manydest.lua" "$tmp/manydest.lua"

# metric NAME FILE: the value of the unlabelled sample NAME in a scrape.
metric() { awk -v n="$1" '$1 == n { printf "%d", $2; exit }' "$2"; }

declare -A rates=() cpus=() rsss=()
failed=0
run_once() {
	local kind=$1 r=$2 run sinkport dnslog dnsaddr relayport httpport d=1 a=1
	local sink_pid dns_pid relay_pid watch_pid poll_pid cpu0 cpu1 start end why= gen_rc=0
	run="$tmp/run-$kind-$r"
	mkdir -p "$run"
	if [ "$kind" = many ]; then d=$domains a=$addrs; fi
	sinkport=$(free_port)
	start_baresink "$sinkport" "$run/sink.log" --addrs "$a" --expect "$msgs"
	sink_pid=$last_pid
	"$bin/fakedns" --listen 127.0.0.1:0 --addrs "$a" 2>"$run/dns.log" &
	dns_pid=$!
	pids+=("$dns_pid")
	for ((i = 0; i < 300; i++)); do
		dnsaddr=$(sed -n 's/^listening on //p' "$run/dns.log")
		[ -n "$dnsaddr" ] && break
		kill -0 "$dns_pid" 2>/dev/null || { cat "$run/dns.log" >&2; die "fakedns exited"; }
		sleep 0.1
	done
	[ -n "$dnsaddr" ] || die "fakedns not listening after 30 s"
	relayport=$(free_port)
	httpport=$(free_port)
	local pprof_args=()
	if [ -n "$pprof_dir" ]; then pprof_port=$(free_port); pprof_args=(--pprof "127.0.0.1:$pprof_port"); fi
	(
		cd "$run" || exit 1
		export MANYDEST_DIR="$run/kumogo" MANYDEST_DNS="$dnsaddr" MANYDEST_LISTEN="127.0.0.1:$relayport" \
			MANYDEST_HTTP="127.0.0.1:$httpport" MANYDEST_SINK_PORT="$sinkport" MANYDEST_REAP="$reap" \
			KUMOGO_READY_QUEUE_REAP_INTERVAL="$reap"
		exec "$bin/kumogo" --policy "$tmp/manydest.lua" "${pprof_args[@]}"
	) 2>"$run/kumogo.log" &
	relay_pid=$!
	pids+=("$relay_pid")
	wait_ready "$relayport" "$relay_pid" "$run/kumogo.log" "initialization complete"

	"$bin/procstat" --pid "$relay_pid" --watch 200ms >"$run/watch.out" &
	watch_pid=$!
	pids+=("$watch_pid")
	# the largest queue counts, from /metrics every 2 s
	(
		ms=0 mr=0
		while :; do
			if curl -s -o "$run/m.txt" "http://127.0.0.1:$httpport/metrics"; then
				s=$(metric scheduled_queue_count "$run/m.txt") q=$(metric ready_queue_count "$run/m.txt")
				[ "${s:-0}" -gt "$ms" ] && ms=$s
				[ "${q:-0}" -gt "$mr" ] && mr=$q
				echo "$ms $mr" >"$run/peak.txt"
			fi
			sleep 2
		done
	) &
	poll_pid=$!
	pids+=("$poll_pid")
	cpu0=$(cpu_of "$relay_pid")
	local prof_pid=
	if [ -n "$pprof_dir" ]; then
		(
			sleep 2
			curl -s -o "$pprof_dir/manydest-$kind-$r.cpu.pb.gz" "http://127.0.0.1:$pprof_port/debug/pprof/profile?seconds=$profile_secs"
			curl -s -o "$pprof_dir/manydest-$kind-$r.heap.pb.gz" "http://127.0.0.1:$pprof_port/debug/pprof/heap"
		) &
		prof_pid=$!
	fi
	start=$(date +%s%N)
	local zone=()
	[ "$kind" = many ] && zone=(--domains "$domains")
	[ "$kind" = one ] && zone=(--domains 1)
	timeout "$run_timeout" "$bin/smtpgen" --target "127.0.0.1:$relayport" --mode bdat --msgs "$msgs" --size "$size" \
		--conc "$conc" --timeout "${run_timeout}s" "${zone[@]}" >"$run/gen.out" 2>"$run/gen.log" || gen_rc=$?
	[ "$gen_rc" -ne 0 ] && why="smtpgen exit $gen_rc: $(tail -2 "$run/gen.log" | tr '\n' ' ')"
	end=
	while [ -z "$why" ]; do
		end=$(sed -n 's/^reached messages=[0-9]* unix_ns=\([0-9]*\)$/\1/p' "$run/sink.log")
		[ -n "$end" ] && break
		if [ $(($(date +%s%N) - start)) -gt $((run_timeout * 1000000000)) ]; then
			why="the sink did not get all $msgs messages within $run_timeout s"
		elif ! kill -0 "$relay_pid" 2>/dev/null; then
			why="kumogo exited"
		fi
		sleep 0.05
	done
	cpu1=$(cpu_of "$relay_pid")
	[ -n "$prof_pid" ] && wait "$prof_pid" 2>/dev/null || true
	kill -TERM "$watch_pid" 2>/dev/null || true
	wait "$watch_pid" 2>/dev/null || true
	if [ -n "$why" ]; then
		kill "$poll_pid" 2>/dev/null || true
		note "$kind run $r failed: $why"
		tail -20 "$run/kumogo.log" >&2
		printf 'scenario=manydest kind=%s domains=%d msgs=%d FAILED: %s\n' "$kind" "$d" "$msgs" "$why"
		failed=$((failed + 1))
		stop "$relay_pid"; stop "$sink_pid"; stop "$dns_pid"
		rm -rf "$run"
		return 0
	fi
	# reaping: until /metrics shows no queue (bounded)
	local reap_start reaped_in=timeout rss_after
	reap_start=$(date +%s%N)
	for ((i = 0; i < 600; i++)); do
		curl -s -o "$run/m.txt" "http://127.0.0.1:$httpport/metrics" || true
		if [ "$(metric scheduled_queue_count "$run/m.txt")" = 0 ] && [ "$(metric ready_queue_count "$run/m.txt")" = 0 ]; then
			reaped_in=$(elapsed "$reap_start" "$(date +%s%N)")
			break
		fi
		sleep 0.5
	done
	kill "$poll_pid" 2>/dev/null || true
	wait "$poll_pid" 2>/dev/null || true
	rss_after=$(awk '/^VmRSS:/ { printf "%.0f", $2 / 1024 }' "/proc/$relay_pid/status")
	stop "$relay_pid"; stop "$sink_pid"; stop "$dns_pid"
	local secs rate cpu1k rss_mb peak
	secs=$(elapsed "$start" "$end")
	rate=$(rate_of "$msgs" "$secs")
	cpu1k=$(per_1k "$cpu0" "$cpu1" "$msgs")
	rss_mb=$(sed -n 's/.*hwm_sum_kb=\([0-9]*\).*/\1/p' "$run/watch.out" | awk '{ printf "%.0f", $1 / 1024 }')
	peak=$(cat "$run/peak.txt" 2>/dev/null || echo "? ?")
	printf 'scenario=manydest kind=%s domains=%d addrs=%d size=%d conc=%d msgs=%d secs=%s rate=%.0f msgs/s cpu_s_per_1k=%s rss_mb=%s peak_sched_queues=%s peak_ready_queues=%s reaped_in_s=%s rss_after_reap_mb=%s\n' \
		"$kind" "$d" "$a" "$size" "$conc" "$msgs" "$secs" "$rate" "$cpu1k" "$rss_mb" "${peak% *}" "${peak#* }" "$reaped_in" "$rss_after"
	rates[$kind]="${rates[$kind]:-} $rate"
	cpus[$kind]="${cpus[$kind]:-} $cpu1k"
	rsss[$kind]="${rsss[$kind]:-} $rss_mb"
	rm -rf "$run"
}

note "kinds: ${kinds[*]}; $reps runs of $msgs messages of $size bytes, $conc connections, BDAT; many = $domains domains on $addrs addresses"
for ((r = 1; r <= reps; r++)); do
	for k in "${kinds[@]}"; do
		run_once "$k" "$r"
	done
done

declare -A med=()
for k in "${kinds[@]}"; do
	[ -n "${rates[$k]:-}" ] || continue
	read -r m lo hi <<<"$(stats "${rates[$k]}")"
	read -r c _ _ <<<"$(stats "${cpus[$k]}")"
	read -r x _ _ <<<"$(stats "${rsss[$k]}")"
	med[$k]=$m
	printf 'scenario=manydest kind=%s runs=%d median rate=%.0f msgs/s (min %.0f max %.0f) cpu_s_per_1k=%s rss_mb=%s\n' \
		"$k" "$(wc -w <<<"${rates[$k]}")" "$m" "$lo" "$hi" "$c" "$x"
done
if [ -n "${med[one]:-}" ] && [ -n "${med[many]:-}" ]; then
	awk -v a="${med[many]}" -v b="${med[one]}" -v d="$domains" \
		'BEGIN { r = a / b; printf "scenario=manydest ratio many/one=%.2f domains=%d target>=0.70 %s\n", r, d, (r >= 0.70 ? "pass" : "short") }'
fi
[ "$failed" -eq 0 ] || { note "$failed run(s) failed"; exit 1; }
