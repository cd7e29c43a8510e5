#!/usr/bin/env bash
# generator.sh: is the generator the bottleneck? kumogo's traffic-gen and
# postfix's smtp-source send the same load (N messages, 50 connections) to
# the same sink, a bare go-smtp discard server (bench/baresink), started
# afresh for every run; runs interleaved. For each run it prints the rate,
# the generator's CPU seconds per 1,000 messages and its peak RSS (GNU time),
# the sink's CPU seconds per 1,000 messages, and how busy each was (CPU
# seconds over wall seconds; 100 % = one core, see nproc).
#
# Generators (--gens):
#   tg-data        traffic-gen, DATA, connections kept
#   tg-bdat        traffic-gen --bdat, connections kept
#   smtp-source    smtp-source, DATA, a new connection per message
#   smtp-source-d  smtp-source -d, DATA, connections kept
#
# Usage: bench/generator.sh [--gens LIST] [--msgs 20000] [--reps 3]
#                           [--sizes 102400,1024] [--conc 50]
#                           [--run-timeout 300]
#
# Output: one line per run, then one median line per generator and size:
#   scenario=generator gen=tg-bdat sink=baresink size=102400 conc=50 msgs=N secs=S rate=R msgs/s mmh=M gen_cpu_s_per_1k=G gen_busy=P% gen_rss_mb=X sink_cpu_s_per_1k=C sink_busy=Q%
set -euo pipefail

prog=generator.sh
# shellcheck source=bench/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

gens_list="tg-data,tg-bdat,smtp-source,smtp-source-d"
msgs=20000
reps=3
sizes_list="102400,1024"
conc=50
run_timeout=300

while [ $# -gt 0 ]; do
	case "$1" in
	--gens) gens_list="$2"; shift 2 ;;
	--msgs) msgs="$2"; shift 2 ;;
	--reps) reps="$2"; shift 2 ;;
	--sizes) sizes_list="$2"; shift 2 ;;
	--size) sizes_list="$2"; shift 2 ;;
	--conc) conc="$2"; shift 2 ;;
	--run-timeout) run_timeout="$2"; shift 2 ;;
	-h|--help) usage; exit 0 ;;
	*) die "unknown argument $1 (see --help)" ;;
	esac
done
split_list gens "$gens_list"
split_list sizes "$sizes_list"
need_posint "$msgs" "$reps" "$conc" "$run_timeout" "${sizes[@]}"
at_most "$reps" 20 --reps
at_most "$msgs" 1000000 --msgs
at_most "$conc" 19900 --conc
need_known generator "tg-data tg-bdat smtp-source smtp-source-d" "${gens[@]}"

"$root/scripts/install-test-deps.sh"
need_gnu_time

bench_tmp kumogo-generator
ready_died='sink (pid %s) exited before it was ready'
ready_late='sink on port %s not ready after 30 s'
build cmd/traffic-gen bench/baresink bench/procstat

declare -A rates=() gcpus=() scpus=() grss=()
run_once() {
	local g=$1 size=$2 port sink_pid l="$tmp/sink.log" start end rc=0 c0 c1 gu gs gm secs k
	port=$(free_port)
	start_baresink "$port" "$l" --expect "$msgs"
	sink_pid=$last_pid
	c0=$(cpu_of "$sink_pid")
	start=$(date +%s%N)
	case "$g" in
	smtp-source | smtp-source-d)
		local d=()
		[ "$g" = smtp-source-d ] && d=(-d)
		timed_smtp_source "$port" "$size" "$msgs" "$conc" "${d[@]}" || rc=$?
		;;
	tg-data | tg-bdat)
		local bdat=()
		[ "$g" = tg-bdat ] && bdat=(--bdat)
		timed_traffic_gen "$port" "$size" "$msgs" "$conc" "${bdat[@]}" || rc=$?
		;;
	esac
	end=$(date +%s%N)
	c1=$(cpu_of "$sink_pid")
	kill -TERM "$sink_pid" 2>/dev/null || true
	wait "$sink_pid" 2>/dev/null || true
	if [ "$rc" -ne 0 ]; then
		tail -5 "$tmp/gen.log" >&2
		die "$g failed or timed out (exit $rc)"
	fi
	got=$(sed -n 's/.* messages=\([0-9]*\) recipients.*/\1/p' "$l")
	[ "$got" = "$msgs" ] || die "$g: the sink counted ${got:-?} messages, expected $msgs"
	read -r gu gs gm < <(tail -n 1 "$tmp/gen.time")
	secs=$(elapsed "$start" "$end")
	rate=$(rate_of "$msgs" "$secs")
	gcpu=$(time_per_1k "$gu" "$gs" "$msgs")
	scpu=$(per_1k "$c0" "$c1" "$msgs")
	printf 'scenario=generator gen=%s sink=baresink size=%d conc=%d msgs=%d secs=%s rate=%.0f msgs/s mmh=%.2f gen_cpu_s_per_1k=%s gen_busy=%.0f%% gen_rss_mb=%.0f sink_cpu_s_per_1k=%s sink_busy=%.0f%%\n' \
		"$g" "$size" "$conc" "$msgs" "$secs" "$rate" "$(mmh "$rate")" \
		"$gcpu" "$(awk -v u="$gu" -v s="$gs" -v d="$secs" 'BEGIN { print (u + s) * 100 / d }')" \
		"$(awk -v k="$gm" 'BEGIN { print k / 1024 }')" "$scpu" \
		"$(awk -v a="$c0" -v b="$c1" -v d="$secs" 'BEGIN { print (b - a) * 100 / d }')"
	k="$g/$size"
	rates[$k]="${rates[$k]:-} $rate"
	gcpus[$k]="${gcpus[$k]:-} $gcpu"
	scpus[$k]="${scpus[$k]:-} $scpu"
	grss[$k]="${grss[$k]:-} $(kb_to_mb "$gm")"
}

note "generators: ${gens[*]}; $reps runs of $msgs messages, $conc connections, sizes ${sizes[*]}; sink: baresink"
for size in "${sizes[@]}"; do
	for ((r = 1; r <= reps; r++)); do
		for g in "${gens[@]}"; do
			run_once "$g" "$size"
		done
	done
done
for size in "${sizes[@]}"; do
	for g in "${gens[@]}"; do
		k="$g/$size"
		read -r m lo hi <<<"$(stats "${rates[$k]}")"
		read -r gc _ _ <<<"$(stats "${gcpus[$k]}")"
		read -r sc _ _ <<<"$(stats "${scpus[$k]}")"
		read -r gr _ _ <<<"$(stats "${grss[$k]}")"
		printf 'scenario=generator gen=%s sink=baresink size=%d conc=%d msgs=%d runs=%d median rate=%.0f msgs/s (min %.0f max %.0f) mmh=%.2f gen_cpu_s_per_1k=%s gen_rss_mb=%s sink_cpu_s_per_1k=%s\n' \
			"$g" "$size" "$conc" "$msgs" "$reps" "$m" "$lo" "$hi" "$(mmh "$m")" \
			"$gc" "$gr" "$sc"
	done
done
