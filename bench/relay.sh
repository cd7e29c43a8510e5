#!/usr/bin/env bash
# relay.sh: the relay scenario. traffic-gen (100 KB bodies, --bdat, 50
# connections, a fixed --message-count) sends to a relay on 127.0.0.1 that
# forwards every message to a sink on 127.0.0.1; the time is taken from the
# first send until the sink has counted all N messages. Relays, each started
# fresh (empty spool / queue) for every run, runs interleaved:
#
#   kumogo   kumogo --policy route-to-sink.lua: the bundled policy's durable
#            spool (synced before the 250), log records on
#   postfix  a private postfix instance (postfix -c DIR) built in a temp
#            dir: smtpd on a free 127.0.0.1 port, relayhost = the sink,
#            concurrency limits raised, no local delivery, maillog_file on;
#            the system postfix is never started
#
# With --ceiling (= --only kumogo,direct,disk,spool) it measures the relay
# against the machine's own limits instead, in the same run:
#
#   direct   the same generator and sink with nothing in between (the
#            sink's CPU is reported)
#   disk     bench/diskceiling --modes group-rewrite: N records of --size
#            made durable by group commit over a recycled (written
#            beforehand) file, 256 writers: the disk's own ceiling
#   spool    the RocksDB spool's group commit: queue/spool's
#            BenchmarkPut100KB/RocksDB/group/writers=256, N messages
#
# and prints the relay's median as a fraction of the slower of direct and
# disk (target >= 0.50), its CPU per message, and spool / disk (target
# >= 0.60).
#
# The sink is bench/baresink --expect N: a bare go-smtp discard server that
# prints the wall clock time at which it counted the Nth message (checked
# every millisecond), so the end time is exact and counting costs nothing.
#
# Usage: bench/relay.sh [--only kumogo,postfix] [--msgs 20000] [--reps 3]
#                       [--size 102400] [--conc 50] [--run-timeout 600]
#                       [--postfix-conc 50] [--keep-failed DIR] [--ceiling]
#
# A run that fails (the generator errs, the relay exits, the sink misses
# messages within --run-timeout) prints a FAILED line and the end of the
# relay's log, is left out of the medians (--keep-failed DIR keeps its
# directory), and the script exits 1 at the end.
#
# Output: one line per run, then per relay the median with min-max, then
# the ratio kumogo/postfix (target >= 3):
#   scenario=relay server=kumogo gen=traffic-gen size=102400 conc=50 msgs=N secs=S rate=R msgs/s mmh=M cpu_s_per_1k=C rss_mb=X
# secs runs from the generator's start to the sink's Nth message; gen_secs
# (the generator alone) and the relay's CPU seconds are printed alongside.
set -euo pipefail

prog=relay.sh
# shellcheck source=bench/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

only="kumogo,postfix"
msgs=20000
reps=3
size=102400
conc=50
run_timeout=600
pf_conc=50
keep=

while [ $# -gt 0 ]; do
	common_opt "$@"
	if [ "$shifted" -gt 0 ]; then
		shift "$shifted"
		continue
	fi
	case "$1" in
	--postfix-conc) pf_conc="$2"; shift 2 ;;
	--keep-failed) keep="$2"; shift 2 ;;
	--ceiling) only="kumogo,direct,disk,spool"; shift ;;
	*) die "unknown argument $1 (see --help)" ;;
	esac
done
need_posint "$msgs" "$reps" "$size" "$conc" "$run_timeout" "$pf_conc"
at_most "$reps" 20 --reps
at_most "$msgs" 1000000 --msgs
at_most "$conc" 5000 --conc
split_list relays "$only"
need_known relay "kumogo postfix direct disk spool" "${relays[@]}"

if [[ " ${relays[*]} " == *" postfix "* ]]; then
	"$root/scripts/install-test-deps.sh"
	command -v postfix >/dev/null 2>&1 || die "postfix not installed"
	getent passwd postfix >/dev/null || die "no postfix user (the postfix package creates it)"
	[ "$(id -u)" -eq 0 ] || die "postfix as a relay needs root (it drops to the postfix user)"
fi

pf_confs=()
# cleanup: the EXIT trap; also stops the private postfix instances.
cleanup() {
	local p c
	for c in "${pf_confs[@]}"; do
		postfix -c "$c" stop </dev/null >/dev/null 2>&1 || true
	done
	kill_pids
	# a postfix master that ignored "stop": by the PID it wrote
	for c in "${pf_confs[@]}"; do
		p=$(tr -dc 0-9 2>/dev/null <"$(dirname "$c")/queue/pid/master.pid" || true)
		[ -n "$p" ] && kill -KILL "$p" 2>/dev/null || true
	done
	rm -rf "$tmp"
}
bench_tmp kumogo-relay
chmod 755 "$tmp" # postfix's processes run as the postfix user
ready_died='process %s exited before it was ready'
ready_late='nothing ready on port %s after 30 s'

build cmd/traffic-gen bench/baresink bench/procstat bench/diskceiling
build_kumogo_if "${relays[@]}"
if [[ " ${relays[*]} " == *" spool "* ]]; then
	go test -c -o "$bin/spool.test" ./queue/spool/
fi
copy_policies "$tmp/policies"

# postfix_config DIR SMTPD_PORT SINK_PORT: a private instance under DIR.
postfix_config() {
	local d=$1 port=$2 sinkport=$3
	mkdir -p "$d/conf" "$d/queue" "$d/data"
	chown postfix "$d/data"
	cat >"$d/conf/main.cf" <<-EOF
	# private relay instance for bench/relay.sh
	compatibility_level = 3.6
	queue_directory = $d/queue
	data_directory = $d/data
	mail_owner = postfix
	setgid_group = postdrop
	maillog_file = $d/maillog
	maillog_file_prefixes = $d
	inet_interfaces = 127.0.0.1
	inet_protocols = ipv4
	myhostname = relay.bench.localhost
	mydestination =
	local_recipient_maps =
	local_transport = error:local delivery is disabled
	alias_maps =
	alias_database =
	biff = no
	mynetworks = 127.0.0.0/8
	smtpd_relay_restrictions = permit_mynetworks, reject
	smtpd_recipient_restrictions = permit_mynetworks, reject
	smtpd_client_connection_count_limit = 0
	smtpd_client_connection_rate_limit = 0
	smtpd_tls_security_level = none
	smtp_tls_security_level = none
	relayhost = [127.0.0.1]:$sinkport
	# a fair fight: as many parallel deliveries as kumogo may open, no
	# slow start, no inbound flow control, long-lived worker processes
	default_process_limit = $((conc + pf_conc + 50))
	default_destination_concurrency_limit = $pf_conc
	smtp_destination_concurrency_limit = $pf_conc
	relay_destination_concurrency_limit = $pf_conc
	initial_destination_concurrency = $pf_conc
	default_destination_recipient_limit = 50
	in_flow_delay = 0
	max_use = 10000
	max_idle = 300
	smtp_connection_cache_on_demand = yes
	EOF
	# Every service unchrooted; smtpd only on the benchmark port, no local
	# or pickup service.
	cat >"$d/conf/master.cf" <<-EOF
	127.0.0.1:$port inet n - n - - smtpd
	cleanup    unix n - n - 0 cleanup
	qmgr       unix n - n 300 1 qmgr
	rewrite    unix - - n - - trivial-rewrite
	bounce     unix - - n - 0 bounce
	defer      unix - - n - 0 bounce
	trace      unix - - n - 0 bounce
	verify     unix - - n - 1 verify
	flush      unix n - n 1000? 0 flush
	proxymap   unix - - n - - proxymap
	smtp       unix - - n - - smtp
	relay      unix - - n - - smtp
	showq      unix n - n - - showq
	error      unix - - n - - error
	retry      unix - - n - - error
	discard    unix - - n - - discard
	anvil      unix - - n - 1 anvil
	scache     unix - - n - 1 scache
	postlog    unix-dgram n - n - 1 postlogd
	EOF
}

# Relay state for one run: relay_pid (kumogo, or postfix's master), tree
# (--tree for postfix), relay_port.
start_relay() {
	local s=$1 sinkport=$2 run=$3 l i
	relay_port=$(free_port)
	l="$run/$s.log"
	case "$s" in
	kumogo)
		start_kumogo "$relay_port" "$l" "$tmp/policies" "initialization complete" route-to-sink.lua \
			KUMOGO_RELAY_LISTEN="127.0.0.1:$relay_port" KUMOGO_SINK_HOST="127.0.0.1:$sinkport" \
			KUMOGO_RELAY_DIR="$run/kumogo"
		relay_pid=$last_pid
		tree=()
		;;
	direct)
		# no relay: the generator talks to the sink, whose CPU is reported
		relay_port=$sinkport
		relay_pid=$sink_pid
		tree=()
		;;
	postfix)
		postfix_config "$run/postfix" "$relay_port" "$sinkport"
		pf_confs+=("$run/postfix/conf")
		postfix -c "$run/postfix/conf" start </dev/null >"$l" 2>&1 || {
			cat "$l" "$run/postfix/maillog" >&2 2>/dev/null
			die "postfix -c $run/postfix/conf start failed"
		}
		relay_pid=
		for ((i = 0; i < 100; i++)); do
			relay_pid=$(tr -dc 0-9 2>/dev/null <"$run/postfix/queue/pid/master.pid" || true)
			[ -n "$relay_pid" ] && break
			sleep 0.1
		done
		[ -n "$relay_pid" ] || die "postfix master did not write its pid"
		wait_ready "$relay_port" "$relay_pid" "$l" ""
		tree=(--tree)
		;;
	esac
}

stop_relay() {
	local s=$1 run=$2
	case "$s" in
	kumogo) stop "$relay_pid" ;;
	direct) ;; # the sink is stopped with the run
	postfix)
		postfix -c "$run/postfix/conf" stop </dev/null >/dev/null 2>&1 || true
		for ((i = 0; i < 100; i++)); do
			kill -0 "$relay_pid" 2>/dev/null || break
			sleep 0.1
		done
		kill -KILL "$relay_pid" 2>/dev/null || true
		pf_confs=()
		;;
	esac
}

# run_once RELAY REP: one measured run; prints its line and records values.
declare -A rates=() cpus=() rsss=()
run_once() {
	case "$1" in
	disk | spool)
		run_store "$@"
		return
		;;
	esac
	local s=$1 r=$2 run sinkport sink_pid sink_log start end gen_end gen_rc=0 i
	local cpu0 cpu1 watch_pid watch_out secs gen_secs rate mmh cpu1k rss_mb
	run="$tmp/run-$s-$r"
	mkdir -p "$run"
	chmod 755 "$run"
	sinkport=$(free_port)
	sink_log="$run/sink.log"
	start_baresink "$sinkport" "$sink_log" --expect "$msgs"
	sink_pid=$last_pid
	start_relay "$s" "$sinkport" "$run"

	watch_out="$run/watch.out"
	"$bin/procstat" --pid "$relay_pid" "${tree[@]}" --watch 200ms >"$watch_out" &
	watch_pid=$!
	pids+=("$watch_pid")
	cpu0=$(cpu_of "$relay_pid" "${tree[@]}")

	start=$(date +%s%N)
	traffic_gen_args "$relay_port" "$size" "$msgs" "$conc"
	timeout "$run_timeout" "$bin/traffic-gen" "${tg_args[@]}" --bdat >"$run/gen.json" 2>"$run/gen.log" || gen_rc=$?
	gen_end=$(date +%s%N)
	# The sink's count: wait until it has all N (bounded by --run-timeout
	# from the start).
	end= why=
	if [ "$gen_rc" -ne 0 ] || ! grep -q "\"sent\":$msgs," "$run/gen.json"; then
		why="traffic-gen exit $gen_rc"
	fi
	while [ -z "$why" ]; do
		end=$(sed -n 's/^reached messages=[0-9]* unix_ns=\([0-9]*\)$/\1/p' "$sink_log")
		[ -n "$end" ] && break
		if [ $(($(date +%s%N) - start)) -gt $((run_timeout * 1000000000)) ]; then
			why="the sink did not get all $msgs messages within $run_timeout s"
		elif ! kill -0 "$relay_pid" 2>/dev/null; then
			why="the relay exited"
		fi
		sleep 0.05
	done
	if [ -n "$why" ]; then
		# A failed run is reported and left out of the medians.
		kill -TERM "$watch_pid" 2>/dev/null || true
		wait "$watch_pid" 2>/dev/null || true
		note "$s run $r failed: $why; traffic-gen said:"
		tail -4 "$run/gen.log" >&2
		if kill -0 "$relay_pid" 2>/dev/null; then
			note "$s is still running"
		else
			wait "$relay_pid" 2>/dev/null && rc=0 || rc=$?
			note "$s exited (status $rc); the end of its log:"
		fi
		tail -40 "$run/$s.log" "$run/postfix/maillog" 2>/dev/null | grep -v '^$' | tail -40 >&2 || true
		stop_relay "$s" "$run"
		stop "$sink_pid"
		printf 'scenario=relay server=%s gen=traffic-gen size=%d conc=%d msgs=%d FAILED: %s\n' \
			"$s" "$size" "$conc" "$msgs" "$why"
		failed=$((failed + 1))
		[ -n "$keep" ] && mkdir -p "$keep/run-$s-$r" && cp "$run"/*.log "$run"/gen.json "$run"/postfix/maillog "$keep/run-$s-$r/" 2>/dev/null || true
		rm -rf "$run"
		return 0
	fi
	cpu1=$(cpu_of "$relay_pid" "${tree[@]}")
	kill -TERM "$watch_pid" 2>/dev/null || true
	wait "$watch_pid" 2>/dev/null || true
	stop_relay "$s" "$run"
	stop "$sink_pid"
	# kumogo: its VmHWM; postfix: the sum of VmHWM over every process that
	# lived during the run
	rss_mb=$(sed -n 's/.*hwm_sum_kb=\([0-9]*\).*/\1/p' "$watch_out" | awk '{ printf "%.0f", $1 / 1024 }')
	peak_sum=$(sed -n 's/^peak_rss_kb=\([0-9]*\).*/\1/p' "$watch_out" | awk '{ printf "%.0f", $1 / 1024 }')
	procs=$(sed -n 's/.*procs_seen=\([0-9]*\).*/\1/p' "$watch_out")
	secs=$(elapsed "$start" "$end")
	gen_secs=$(elapsed "$start" "$gen_end")
	rate=$(rate_of "$msgs" "$secs")
	mmh=$(mmh_2f "$rate")
	cpu1k=$(per_1k "$cpu0" "$cpu1" "$msgs")
	printf 'scenario=relay server=%s gen=traffic-gen size=%d conc=%d msgs=%d secs=%s rate=%.0f msgs/s mmh=%s cpu_s_per_1k=%s rss_mb=%s gen_secs=%s relay_cpu_s=%.2f procs=%s peak_rss_sum_mb=%s\n' \
		"$s" "$size" "$conc" "$msgs" "$secs" "$rate" "$mmh" "$cpu1k" "$rss_mb" "$gen_secs" \
		"$(awk -v a="$cpu0" -v b="$cpu1" 'BEGIN { print b - a }')" "${procs:-?}" "${peak_sum:-?}"
	rates[$s]="${rates[$s]:-} $rate"
	cpus[$s]="${cpus[$s]:-} $cpu1k"
	rsss[$s]="${rsss[$s]:-} $rss_mb"
	rm -rf "$run"
}

# run_store disk|spool REP: one run of the disk ceiling or of the RocksDB
# spool's group commit, N records of --size bytes, 256 writers, on the
# disk of the temp dir; prints its line and records the rate.
run_store() {
	local s=$1 r=$2 dir="$tmp/store-$1-$2" rate line
	mkdir -p "$dir"
	case "$s" in
	disk)
		line=$("$bin/diskceiling" --dir "$dir" --n "$msgs" --size "$size" --modes group-rewrite | grep '^group buffered rewrite') || true
		rate=$(awk '{ print $4 }' <<<"$line")
		;;
	spool)
		# the benchmark's 100 KB messages; its TempDir under the temp dir
		line=$(cd "$dir" && TMPDIR="$dir" "$bin/spool.test" -test.run '^$' -test.bench 'Put100KB/RocksDB/group/writers=256$' \
			-test.benchtime "${msgs}x" | grep 'msgs/s') || true
		rate=$(sed -n 's/.* \([0-9.]*\) msgs\/s.*/\1/p' <<<"$line")
		;;
	esac
	rm -rf "$dir"
	if [ -z "$rate" ]; then
		printf 'scenario=relay server=%s msgs=%d FAILED: no rate\n' "$s" "$msgs"
		failed=$((failed + 1))
		return 0
	fi
	printf 'scenario=relay server=%s group-commit size=%d writers=256 msgs=%d rate=%.0f msgs/s\n' "$s" "$size" "$msgs" "$rate"
	rates[$s]="${rates[$s]:-} $rate"
	cpus[$s]="${cpus[$s]:-} 0"
	rsss[$s]="${rsss[$s]:-} 0"
}

failed=0
note "relays: ${relays[*]}; $reps runs of $msgs messages of $size bytes, $conc connections, BDAT"
for ((r = 1; r <= reps; r++)); do
	for s in "${relays[@]}"; do
		run_once "$s" "$r"
	done
done

declare -A med=()
for s in "${relays[@]}"; do
	if [ -z "${rates[$s]:-}" ]; then
		printf 'scenario=relay server=%s gen=traffic-gen size=%d conc=%d msgs=%d runs=0 (every run failed)\n' "$s" "$size" "$conc" "$msgs"
		continue
	fi
	nrun=$(wc -w <<<"${rates[$s]}")
	read -r m lo hi <<<"$(stats "${rates[$s]}")"
	read -r c clo chi <<<"$(stats "${cpus[$s]}")"
	read -r x xlo xhi <<<"$(stats "${rsss[$s]}")"
	med[$s]=$m
	printf 'scenario=relay server=%s gen=traffic-gen size=%d conc=%d msgs=%d runs=%d median rate=%.0f msgs/s (min %.0f max %.0f) mmh=%.2f cpu_s_per_1k=%s (%s-%s) rss_mb=%s (%s-%s)\n' \
		"$s" "$size" "$conc" "$msgs" "$nrun" "$m" "$lo" "$hi" "$(mmh "$m")" \
		"$c" "$clo" "$chi" "$x" "$xlo" "$xhi"
done
if [ -n "${med[kumogo]:-}" ] && [ -n "${med[postfix]:-}" ]; then
	awk -v a="${med[kumogo]}" -v b="${med[postfix]}" \
		'BEGIN { r = a / b; printf "scenario=relay ratio kumogo/postfix=%.2f target>=3 %s\n", r, (r >= 3 ? "pass" : "short") }'
fi
# the ceiling: the relay against the slower of direct and disk, and the
# spool's group commit against the disk's
if [ -n "${med[kumogo]:-}" ] && [ -n "${med[direct]:-}" ] && [ -n "${med[disk]:-}" ]; then
	read -r kc _ _ <<<"$(stats "${cpus[kumogo]}")"
	awk -v k="${med[kumogo]}" -v d="${med[direct]}" -v f="${med[disk]}" -v c="$kc" \
		'BEGIN { m = (d < f ? d : f); w = (d < f ? "direct" : "disk"); r = k / m
		printf "scenario=relay ceiling=%s (%.0f msgs/s) relay/ceiling=%.2f target>=0.50 %s relay_cpu_us_per_msg=%.0f\n", w, m, r, (r >= 0.5 ? "pass" : "short"), c * 1000 }'
fi
if [ -n "${med[spool]:-}" ] && [ -n "${med[disk]:-}" ]; then
	awk -v a="${med[spool]}" -v b="${med[disk]}" \
		'BEGIN { r = a / b; printf "scenario=relay ratio spool/disk=%.2f (RocksDB group commit / recycled-file group commit) target>=0.60 %s\n", r, (r >= 0.6 ? "pass" : "short") }'
fi
if [ "$failed" -gt 0 ]; then
	note "$failed run(s) failed (see the FAILED lines)"
	exit 1
fi
