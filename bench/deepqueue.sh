#!/usr/bin/env bash
# deepqueue.sh: a deep queue and a restart under it (the scale issue's
# deep-queue and restart scenarios), one command.
#
#   bench/deepqueue.sh --messages 1000000 --spool rocksdb [--pprof]
#   bench/deepqueue.sh --messages 200000 --spool localdisk
#   bench/deepqueue.sh --messages 200000 --compare main --reps 2   # A/B against another commit
#
# 1. bench/deepfill writes N messages of --size bytes (random text, one
#    recipient each, meta queue = the counting sink) straight into the
#    spool (filling over SMTP would take longer than the measurement).
# 2. kumogo starts on that spool with bench/countsink answering MAIL with
#    451 (a throttling destination): it enumerates the spool, tries each
#    message once and queues it again (retry_interval 1h). Once every
#    message was refused and /metrics counts N scheduled, it reports the
#    RSS per queued message (VmRSS minus that of the same daemon on an
#    empty spool, divided by N), and the daemon's CPU over --idle seconds
#    as % of one core.
# 3. kill -9, the destination recovers (the sink accepts), kumogo starts
#    again: time to `initialization complete`, to the first delivery at the
#    sink, the enumeration rate kumogo logs, and the time until the sink
#    has every message; lost and duplicated messages are counted there.
#
# Options: --messages N (100000), --spool rocksdb|localdisk (rocksdb),
# --size BYTES (4096), --idle SECS (60), --pprof (CPU profile of the
# restart's first --profile-secs (20) and a heap profile of the deep
# queue, kept in --out-dir), --compare REV (also run kumogo built from git
# REV, alternating, for an A/B in one run), --reps N (1), --dir DIR (where
# the spool goes; default a temp dir under /tmp), --out-dir DIR
# (bench/results/deepqueue), --timeout SECS (per wait; default from N).
# Log records are off (the scenario measures the queue, not the logs).
# Output: one `scenario=deepqueue ...` line per run, appended with the
# date and commit to DIR/deepqueue.txt and as a row to DIR/deepqueue.tsv
# (the chart's input, bench/plot.py).
set -euo pipefail
prog=deepqueue.sh
# shellcheck source=bench/lib.sh
source "$(dirname "$0")/lib.sh"

msgs=100000 kind=rocksdb size=4096 idle=60 pprof=0 profile_secs=20 compare="" reps=1 dir="" outdir="$root/bench/results/deepqueue" timeout=""
while [ $# -gt 0 ]; do
	case $1 in
	--messages) msgs=$2; shift ;;
	--spool) kind=$2; shift ;;
	--size) size=$2; shift ;;
	--idle) idle=$2; shift ;;
	--pprof) pprof=1 ;;
	--profile-secs) profile_secs=$2; shift ;;
	--compare) compare=$2; shift ;;
	--reps) reps=$2; shift ;;
	--dir) dir=$2; shift ;;
	--out-dir) outdir=$2; shift ;;
	--timeout) timeout=$2; shift ;;
	-h | --help) usage; exit 0 ;;
	*) die "unknown option $1 (see --help)" ;;
	esac
	shift
done
need_posint "$msgs" "$size" "$idle" "$reps" "$profile_secs"
need_known spool "rocksdb localdisk" "$kind"
case $kind in rocksdb) spoolkind=RocksDB ;; localdisk) spoolkind=LocalDisk ;; esac
[ -n "$timeout" ] || timeout=$((300 + msgs / 500))

bench_tmp deepqueue
[ -n "$dir" ] || dir="$tmp/work"
mkdir -p "$dir" "$outdir"
note "building"
build bench/deepfill bench/countsink bench/procstat
go build -o "$bin/kumogo-HEAD" ./cmd/kumogo
builds=(HEAD)
if [ -n "$compare" ]; then
	src="$tmp/src-$compare"
	mkdir -p "$src"
	git archive "$compare" | tar -x -C "$src"
	(cd "$src" && go build -o "$bin/kumogo-$compare" ./cmd/kumogo)
	builds=("$compare" HEAD)
fi
commit=$(git rev-parse --short HEAD)
free_kb() { df -k --output=avail "$dir" | tail -1; }
need_kb=$((msgs * (size + 2048) / 1024 * 2))
[ "$(free_kb)" -gt "$need_kb" ] || die "$dir has $(free_kb) kB free, the spool needs about $need_kb kB"

# now_ns: the clock, in ns.
now_ns() { date +%s%N; }
# rss_kb PID: VmRSS in kB.
rss_kb() { awk '/^VmRSS:/ { print $2 }' "/proc/$1/status"; }
# metric HTTPPORT NAME: the value of an unlabelled metric on /metrics.
metric() { curl -s "http://127.0.0.1:$1/metrics" | awk -v n="$2" '$1 == n { printf "%d", $2 }'; }
# sinkval KEY: a count from the sink's status file.
sinkval() { sed -n "s/.*\\b$1=\\([0-9]*\\).*/\\1/p" "$tmp/sink.status" 2>/dev/null; }
# wait_until SECS CMD...: poll CMD every 0.2 s until it succeeds; 1 on timeout.
wait_until() {
	local end=$(($(date +%s) + $1))
	shift
	until "$@"; do
		[ "$(date +%s)" -lt "$end" ] || return 1
		sleep 0.2
	done
}

# policy SINKPORT SMTPPORT HTTPPORT SPOOLDIR: the scenario's policy file.
policy() {
	cat >"$tmp/deep.lua" <<EOF
local kumo = require 'kumo'
kumo.on('init', function()
  kumo.define_spool { name = 'data', path = '$4/data', kind = '$spoolkind' }
  kumo.define_spool { name = 'meta', path = '$4/meta', kind = '$spoolkind' }
  kumo.start_esmtp_listener { listen = '127.0.0.1:$2', hostname = 'deep.test' }
  kumo.start_http_listener { listen = '127.0.0.1:$3', hostname = 'deep.test' }
end)
kumo.on('get_queue_config', function()
  return kumo.make_queue_config { retry_interval = '1h', max_retry_interval = '1h' }
end)
kumo.on('get_egress_path_config', function()
  return kumo.make_egress_path { enable_tls = 'Disabled', prohibited_hosts = {}, max_ready = 10000 }
end)
EOF
	echo "$tmp/deep.lua"
}

# start_daemon BUILD LOG [ARGS...]: start kumogo in the background; sets kpid.
start_daemon() {
	local b=$1 logf=$2
	shift 2
	"$bin/kumogo-$b" --policy "$pol" "$@" >"$logf" 2>&1 &
	kpid=$!
	pids+=("$kpid")
}
# wait_init LOG: until LOG says initialization complete (or die).
wait_init() {
	wait_until "$timeout" grep -q 'initialization complete' "$1" || { tail -20 "$1" >&2; die "no initialization complete"; }
}

run_one() {
	local b=$1 rep=$2 spooldir="$dir/spool-$b-$rep"
	rm -rf "$spooldir" "$tmp/defer" "$tmp/sink.status"
	mkdir -p "$spooldir"
	touch "$tmp/defer"
	"$bin/countsink" --defer-file "$tmp/defer" --expect "$msgs" --status "$tmp/sink.status" >"$tmp/sink.out" 2>"$tmp/sink.log" &
	local spid=$!
	pids+=("$spid")
	wait_until 10 grep -q 'listening on' "$tmp/sink.log" || die "countsink did not start"
	local sinkport smtpport httpport pport
	sinkport=$(sed -n 's/.*listening on 127.0.0.1:\([0-9]*\).*/\1/p' "$tmp/sink.log")
	smtpport=$(free_port) httpport=$(free_port) pport=$(free_port)
	pol=$(policy "$sinkport" "$smtpport" "$httpport" "$spooldir")
	local pargs=()
	[ "$pprof" -eq 1 ] && pargs=(--pprof "127.0.0.1:$pport")

	# the same daemon on an empty spool
	start_daemon "$b" "$tmp/k0.log"
	wait_init "$tmp/k0.log"
	sleep 2
	local base_kb
	base_kb=$(rss_kb "$kpid")
	stop "$kpid"
	rm -rf "$spooldir"/*

	note "[$b $rep] filling $msgs messages of $size bytes ($spoolkind)"
	local fill
	fill=$("$bin/deepfill" --kind "$spoolkind" --data "$spooldir/data" --meta "$spooldir/meta" --messages "$msgs" --size "$size" \
		--queue "[127.0.0.1]:$sinkport")
	note "[$b $rep] $fill"

	note "[$b $rep] first start: every message is tried once and refused with 451"
	local t0 t1
	t0=$(now_ns)
	start_daemon "$b" "$tmp/k1.log" "${pargs[@]}"
	wait_init "$tmp/k1.log"
	t1=$(now_ns)
	local enum1
	enum1=$(sed -n 's/.*spool enumerated.*per_second=\([0-9]*\).*/\1/p' "$tmp/k1.log" | head -1)
	refused_all() { [ "$(sinkval refused)" -ge "$msgs" ] 2>/dev/null; }
	wait_until "$timeout" refused_all || die "only $(sinkval refused) of $msgs refused"
	local t2
	t2=$(now_ns)
	all_scheduled() { [ "$(metric "$httpport" scheduled_count_total)" = "$msgs" ]; }
	wait_until "$timeout" all_scheduled || die "scheduled_count_total $(metric "$httpport" scheduled_count_total), want $msgs"
	sleep 10
	local rss hwm
	rss=$(rss_kb "$kpid")
	hwm=$(awk '/^VmHWM:/ { print $2 }' "/proc/$kpid/status")
	local heap_b=""
	if [ "$pprof" -eq 1 ]; then
		curl -s -o "$outdir/heap-$kind-$msgs-$b.pprof" "http://127.0.0.1:$pport/debug/pprof/heap?gc=1"
		heap_b=$(curl -s "http://127.0.0.1:$pport/debug/pprof/heap?debug=1&gc=1" | sed -n 's/^# HeapInuse = //p')
	fi
	local c0 c1
	c0=$(cpu_of "$kpid")
	sleep "$idle"
	c1=$(cpu_of "$kpid")
	local idle_pct
	idle_pct=$(awk -v a="$c0" -v b="$c1" -v s="$idle" 'BEGIN { printf "%.2f", (b - a) / s * 100 }')

	note "[$b $rep] kill -9 with $msgs queued; the destination recovers; restart"
	kill -KILL "$kpid"
	wait "$kpid" 2>/dev/null || true
	rm -f "$tmp/defer"
	local r0 r1 prof_pid=""
	r0=$(now_ns)
	start_daemon "$b" "$tmp/k2.log" "${pargs[@]}"
	if [ "$pprof" -eq 1 ]; then
		wait_until 10 curl -sf -o /dev/null "http://127.0.0.1:$pport/debug/pprof/" || true
		curl -s -o "$outdir/restart-$kind-$msgs-$b.pprof" "http://127.0.0.1:$pport/debug/pprof/profile?seconds=$profile_secs" &
		prof_pid=$!
	fi
	wait_init "$tmp/k2.log"
	r1=$(now_ns)
	local enum2
	enum2=$(sed -n 's/.*spool enumerated.*per_second=\([0-9]*\).*/\1/p' "$tmp/k2.log" | head -1)
	delivered_all() { [ "$(sinkval unique)" -ge "$msgs" ] 2>/dev/null; }
	wait_until "$timeout" delivered_all || note "delivered only $(sinkval unique) of $msgs"
	sleep 2 # a duplicate would arrive now
	[ -n "$prof_pid" ] && wait "$prof_pid" 2>/dev/null || true
	local first last unique dup unknown
	first=$(sinkval first_accept_ns) last=$(sinkval last_accept_ns) unique=$(sinkval unique) dup=$(sinkval dup) unknown=$(sinkval unknown)
	stop "$kpid"
	stop "$spid"
	local line
	line=$(awk -v b="$b" -v k="$kind" -v n="$msgs" -v sz="$size" -v fill="$fill" -v base="$base_kb" -v rss="$rss" -v hwm="$hwm" \
		-v heap="$heap_b" -v t0="$t0" -v t1="$t1" -v t2="$t2" -v e1="$enum1" -v e2="$enum2" -v idle="$idle_pct" -v isecs="$idle" \
		-v r0="$r0" -v r1="$r1" -v first="$first" -v last="$last" -v u="$unique" -v dup="$dup" -v unk="$unknown" 'BEGIN {
		split(fill, f, /[ =]/); frate = ""; for (i = 1; i in f; i++) if (f[i] == "rate") frate = f[i + 1]
		printf "scenario=deepqueue build=%s spool=%s messages=%d size=%d fill_rate=%s rss_base_mb=%.1f rss_mb=%.1f hwm_mb=%.1f rss_per_msg_b=%.0f", \
			b, k, n, sz, frate, base / 1024, rss / 1024, hwm / 1024, (rss - base) * 1024 / n
		if (heap != "") printf " heap_per_msg_b=%.0f", heap / n
		printf " idle_cpu_pct=%s idle_secs=%d first_start_init_s=%.2f first_enum_rate=%s first_attempts_s=%.1f", idle, isecs, (t1 - t0) / 1e9, e1, (t2 - t0) / 1e9
		printf " restart_init_s=%.2f restart_enum_rate=%s first_delivery_s=%.2f all_delivered_s=%.1f delivered=%d lost=%d dup=%d unknown=%d\n", \
			(r1 - r0) / 1e9, e2, (first - r0) / 1e9, (last - r0) / 1e9, u, n - u, dup, unk
	}')
	echo "$line"
	echo "$(date -u +%FT%TZ) commit=$commit $line" >>"$outdir/deepqueue.txt"
	if [ ! -s "$outdir/deepqueue.tsv" ]; then
		printf 'build\tspool\tmessages\trss_per_msg_b\trss_mb\tidle_cpu_pct\trestart_enum_rate\trestart_init_s\tfirst_delivery_s\tdelivery_rate\tlost\tdup\n' >"$outdir/deepqueue.tsv"
	fi
	awk -v b="$b@$commit" -v k="$kind" -v n="$msgs" -v base="$base_kb" -v rss="$rss" -v idle="$idle_pct" -v e2="$enum2" -v r0="$r0" -v r1="$r1" \
		-v first="$first" -v last="$last" -v u="$unique" -v dup="$dup" 'BEGIN {
		printf "%s\t%s\t%d\t%.0f\t%.1f\t%s\t%s\t%.2f\t%.2f\t%.0f\t%d\t%d\n", b, k, n, (rss - base) * 1024 / n, rss / 1024, idle, e2, \
			(r1 - r0) / 1e9, (first - r0) / 1e9, u / ((last - first) / 1e9 + 1e-9), n - u, dup }' >>"$outdir/deepqueue.tsv"
	rm -rf "$spooldir"
}

for ((rep = 1; rep <= reps; rep++)); do
	for b in "${builds[@]}"; do
		run_one "$b" "$rep"
	done
done
