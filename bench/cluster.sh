#!/usr/bin/env bash
# cluster.sh: three kumogo nodes sharing their limits through one
# redis-server against one node, in the same run. Every node runs
# bench/cluster.lua: its own RocksDB spool and log records, and an egress
# path to a counting sink with a shared max_message_rate (never reached: one
# shared throttle check per message) and a shared connection_limit (one
# lease per connection), both kept in a redis-server (Debian's package)
# started here on a free 127.0.0.1 port without persistence.
#
#   one     one node; one traffic-gen (--conc connections, --msgs messages)
#   three   three nodes; three traffic-gens at once, each with a third of
#           the connections and of the messages, one per node
#   local   (only when named with --only) one node without Redis: what
#           sharing costs one node
#
# The sink is bench/baresink --expect N, which prints when it has counted
# the Nth message; a run's time runs from the generators' start to then.
# Runs alternate (one, three, one, three, ...) with a fresh spool and an
# emptied Redis each time. Around each run Redis's command statistics are
# reset and read: "redis_requests_per_msg" is every request the nodes sent
# (throttle checks, lease acquire/release/renew, connection set-up) per
# delivered message, "scripted_per_msg" the EVALSHA/EVAL calls among them,
# and "redis_mix" every command Redis ran (script internals included) per
# message.
#
# Then the cost of one throttle check, local against shared (a redis-server
# on loopback that the benchmark starts), as alternating pairs of
# internal/sharedlimit's BenchmarkThrottleLocal and BenchmarkThrottleRedis.
#
# Usage: bench/cluster.sh [--only one,three[,local]] [--msgs 12000]
#                         [--reps 3] [--size 10240] [--conc 48]
#                         [--run-timeout 600] [--bench-pairs 3]
#
# Output: one line per run, the medians per mode, the ratio three/one, and
# the benchmark lines:
#   scenario=cluster mode=three nodes=3 size=S conc=C msgs=N secs=T rate=R msgs/s cpu_s_per_1k=X redis_requests_per_msg=Y scripted_per_msg=Z
#   scenario=cluster ratio three/one=Q
#   scenario=throttle-check pair=P local_us=A redis_us=B
# A failed run prints a FAILED line and the script exits 1 at the end.
set -euo pipefail

prog=cluster.sh
# shellcheck source=bench/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

only="one,three"
msgs=12000
reps=3
size=10240
conc=48
run_timeout=600
pairs=3

while [ $# -gt 0 ]; do
	common_opt "$@"
	if [ "$shifted" -gt 0 ]; then
		shift "$shifted"
		continue
	fi
	case "$1" in
	--bench-pairs) pairs="$2"; shift 2 ;;
	*) die "unknown argument $1 (see --help)" ;;
	esac
done
need_posint "$msgs" "$reps" "$size" "$conc" "$run_timeout" "$pairs"
at_most "$reps" 20 --reps
at_most "$msgs" 1000000 --msgs
at_most "$conc" 3000 --conc
at_most "$pairs" 20 --bench-pairs
[ "$conc" -ge 3 ] || die "--conc at least 3 (one connection per node)"
split_list modes "$only"
need_known mode "one three local" "${modes[@]}"

"$root/scripts/install-test-deps.sh"
command -v redis-server >/dev/null 2>&1 || die "redis-server not installed"
command -v redis-cli >/dev/null 2>&1 || die "redis-cli not installed (Debian's redis-tools)"

bench_tmp kumogo-cluster
build cmd/traffic-gen bench/baresink bench/procstat
build_kumogo_if kumogo
cp "$root/bench/cluster.lua" "$tmp/cluster.lua"

# The shared Redis, for the whole run.
redis_port=$(free_port)
mkdir -p "$tmp/redis"
redis-server --port "$redis_port" --bind 127.0.0.1 --dir "$tmp/redis" --save '' --appendonly no \
	--daemonize no --protected-mode yes --loglevel warning >"$tmp/redis.log" 2>&1 &
pids+=("$!")
redis_pid=$!
rcli() { redis-cli -h 127.0.0.1 -p "$redis_port" "$@"; }
for ((i = 0; i < 100; i++)); do
	[ "$(rcli ping 2>/dev/null || true)" = PONG ] && break
	kill -0 "$redis_pid" 2>/dev/null || { cat "$tmp/redis.log" >&2; die "redis-server exited"; }
	sleep 0.1
done
[ "$(rcli ping 2>/dev/null || true)" = PONG ] || die "redis-server on $redis_port does not answer"
redis_url="redis://127.0.0.1:$redis_port/"

# redis_calls: "requests scripted" since the last CONFIG RESETSTAT.
# Redis also counts the commands that its scripts run (TIME, GET, SET and
# the sorted-set commands of internal/sharedlimit's scripts), so those are
# left out: what stays is what the nodes sent (EVALSHA/EVAL, ZREM of a
# released lease, HELLO and CLIENT of new connections), one round trip each
# (the lease renewals are pipelined, so they cost even less).
redis_calls() {
	rcli info commandstats | tr -d '\r' | awk -F'[:=,|]' '
		/^cmdstat_(info|config|flushall|ping)[:|]/ { next }
		/^cmdstat_(time|get|set|zremrangebyscore|zcard|zadd|pexpire)[:|]/ { next }
		/^cmdstat_/ { n = ($2 == "calls") ? $3 : $4; total += n; if ($1 == "cmdstat_evalsha" || $1 == "cmdstat_eval") ev += n }
		END { printf "%d %d\n", total, ev }'
}

# redis_mix MSGS: "cmd:calls_per_msg,..." of the commands since the last
# CONFIG RESETSTAT, most frequent first.
redis_mix() {
	rcli info commandstats | tr -d '\r' | awk -F'[:=,]' -v m="$1" '
		/^cmdstat_(info|config|flushall|ping)/ { next }
		/^cmdstat_/ { sub(/^cmdstat_/, "", $1); printf "%d %s\n", $3, $1 }' |
		sort -rn | awk -v m="$1" '{ printf "%s%s:%.3f", (NR > 1 ? "," : ""), $2, $1 / m } END { print "" }'
}

# run_once MODE REP: one measured run; prints its line and records values.
declare -A rates=() cpus=() rtps=() evs=()
failed=0
run_once() {
	local mode=$1 r=$2 run sinkport sink_pid sink_log n i start end why= redis=
	local share_m share_c
	local -a node_pids=() gen_pids=() node_ports=() cpu0=()
	run="$tmp/run-$mode-$r"
	mkdir -p "$run"
	n=1
	[ "$mode" = three ] && n=3
	[ "$mode" = local ] || redis=$redis_url
	rcli flushall >/dev/null
	sinkport=$(free_port)
	sink_log="$run/sink.log"
	start_baresink "$sinkport" "$sink_log" --expect "$msgs"
	sink_pid=$last_pid
	for ((i = 0; i < n; i++)); do
		node_ports[i]=$(free_port)
		mkdir -p "$run/node$i"
		start_kumogo "${node_ports[i]}" "$run/node$i.log" "$run/node$i" "initialization complete" "$tmp/cluster.lua" \
			KUMOGO_NODE_LISTEN="127.0.0.1:${node_ports[i]}" KUMOGO_SINK_HOST="127.0.0.1:$sinkport" \
			KUMOGO_NODE_DIR="$run/node$i" KUMOGO_REDIS="$redis" KUMOGO_CLUSTER_CONNS=64
		node_pids[i]=$last_pid
		cpu0[i]=$(cpu_of "$last_pid")
	done
	rcli config resetstat >/dev/null
	start=$(date +%s%N)
	for ((i = 0; i < n; i++)); do
		# the first generator takes the remainders
		share_m=$((msgs / n + (i == 0 ? msgs % n : 0)))
		share_c=$((conc / n + (i == 0 ? conc % n : 0)))
		traffic_gen_args "${node_ports[i]}" "$size" "$share_m" "$share_c"
		timeout "$run_timeout" "$bin/traffic-gen" "${tg_args[@]}" --bdat >"$run/gen$i.json" 2>"$run/gen$i.log" &
		gen_pids[i]=$!
		pids+=("$!")
	done
	for ((i = 0; i < n; i++)); do
		wait "${gen_pids[i]}" || why="traffic-gen $i exit $?"
		share_m=$((msgs / n + (i == 0 ? msgs % n : 0)))
		[ -n "$why" ] || grep -q "\"sent\":$share_m," "$run/gen$i.json" || why="traffic-gen $i did not send $share_m"
	done
	while [ -z "$why" ]; do
		end=$(sed -n 's/^reached messages=[0-9]* unix_ns=\([0-9]*\)$/\1/p' "$sink_log")
		[ -n "$end" ] && break
		if [ $(($(date +%s%N) - start)) -gt $((run_timeout * 1000000000)) ]; then
			why="the sink did not get all $msgs messages within $run_timeout s"
		fi
		for ((i = 0; i < n; i++)); do
			kill -0 "${node_pids[i]}" 2>/dev/null || why="node $i exited"
		done
		sleep 0.05
	done
	local calls ev mix cpu=0 secs rate rtp evp c
	read -r calls ev <<<"$(redis_calls)"
	mix=$(redis_mix "$msgs")
	for ((i = 0; i < n; i++)); do
		c=$(cpu_of "${node_pids[i]}" || echo "${cpu0[i]}")
		cpu=$(awk -v a="$cpu" -v b="$c" -v z="${cpu0[i]}" 'BEGIN { print a + b - z }')
	done
	for ((i = 0; i < n; i++)); do
		stop "${node_pids[i]}"
	done
	stop "$sink_pid"
	if [ -n "$why" ]; then
		note "$mode run $r failed: $why"
		for ((i = 0; i < n; i++)); do
			tail -5 "$run/gen$i.log" "$run/node$i.log" >&2 2>/dev/null || true
		done
		printf 'scenario=cluster mode=%s nodes=%d size=%d conc=%d msgs=%d FAILED: %s\n' "$mode" "$n" "$size" "$conc" "$msgs" "$why"
		failed=$((failed + 1))
		rm -rf "$run"
		return 0
	fi
	secs=$(elapsed "$start" "$end")
	rate=$(rate_of "$msgs" "$secs")
	rtp=$(awk -v c="$calls" -v m="$msgs" 'BEGIN { printf "%.3f", c / m }')
	evp=$(awk -v c="$ev" -v m="$msgs" 'BEGIN { printf "%.3f", c / m }')
	printf 'scenario=cluster mode=%s nodes=%d size=%d conc=%d msgs=%d secs=%s rate=%.0f msgs/s cpu_s_per_1k=%s redis_requests_per_msg=%s scripted_per_msg=%s redis_mix=%s\n' \
		"$mode" "$n" "$size" "$conc" "$msgs" "$secs" "$rate" \
		"$(awk -v c="$cpu" -v m="$msgs" 'BEGIN { printf "%.3f", c * 1000 / m }')" "$rtp" "$evp" "${mix:-none}"
	rates[$mode]="${rates[$mode]:-} $rate"
	cpus[$mode]="${cpus[$mode]:-} $(awk -v c="$cpu" -v m="$msgs" 'BEGIN { printf "%.3f", c * 1000 / m }')"
	rtps[$mode]="${rtps[$mode]:-} $rtp"
	evs[$mode]="${evs[$mode]:-} $evp"
	rm -rf "$run"
}

note "modes: ${modes[*]}; $reps runs of $msgs messages of $size bytes, $conc connections in all, BDAT; redis on 127.0.0.1:$redis_port"
for ((r = 1; r <= reps; r++)); do
	for m in "${modes[@]}"; do
		run_once "$m" "$r"
	done
done

declare -A med=()
for m in "${modes[@]}"; do
	if [ -z "${rates[$m]:-}" ]; then
		printf 'scenario=cluster mode=%s runs=0 (every run failed)\n' "$m"
		continue
	fi
	read -r x lo hi <<<"$(stats "${rates[$m]}")"
	read -r c _ _ <<<"$(stats "${cpus[$m]}")"
	read -r t _ _ <<<"$(stats "${rtps[$m]}")"
	read -r e _ _ <<<"$(stats "${evs[$m]}")"
	med[$m]=$x
	printf 'scenario=cluster mode=%s runs=%d median rate=%.0f msgs/s (min %.0f max %.0f) cpu_s_per_1k=%s redis_requests_per_msg=%s scripted_per_msg=%s\n' \
		"$m" "$(wc -w <<<"${rates[$m]}")" "$x" "$lo" "$hi" "$c" "$t" "$e"
done
if [ -n "${med[one]:-}" ] && [ -n "${med[three]:-}" ]; then
	awk -v a="${med[three]}" -v b="${med[one]}" 'BEGIN { printf "scenario=cluster ratio three/one=%.2f\n", a / b }'
fi
if [ -n "${med[one]:-}" ] && [ -n "${med[local]:-}" ]; then
	awk -v a="${med[one]}" -v b="${med[local]}" 'BEGIN { printf "scenario=cluster ratio one-shared/one-local=%.2f\n", a / b }'
fi

# The cost of one check: alternating pairs, each benchmark in its own
# process with its own redis-server (started by the benchmark).
go test -c -o "$bin/sharedlimit.test" ./internal/sharedlimit/
declare -a loc=() red=()
for ((p = 1; p <= pairs; p++)); do
	a=$("$bin/sharedlimit.test" -test.run '^$' -test.bench '^BenchmarkThrottleLocal$' -test.benchtime 200000x |
		awk '/^BenchmarkThrottleLocal/ { printf "%.3f", $3 / 1000 }')
	b=$("$bin/sharedlimit.test" -test.run '^$' -test.bench '^BenchmarkThrottleRedis$' -test.benchtime 5000x |
		awk '/^BenchmarkThrottleRedis/ { printf "%.1f", $3 / 1000 }')
	printf 'scenario=throttle-check pair=%d local_us=%s redis_us=%s round_trips_per_check=1\n' "$p" "${a:-?}" "${b:-?}"
	loc+=("${a:-0}")
	red+=("${b:-0}")
done
read -r lm _ _ <<<"$(stats "${loc[*]}")"
read -r rm_ rlo rhi <<<"$(stats "${red[*]}")"
printf 'scenario=throttle-check median local_us=%s redis_us=%s (min %s max %s)\n' "$lm" "$rm_" "$rlo" "$rhi"

if [ "$failed" -gt 0 ]; then
	note "$failed run(s) failed (see the FAILED lines)"
	exit 1
fi
