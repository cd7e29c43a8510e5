#!/usr/bin/env bash
# sink-matrix.sh: the sink scenario over a matrix of generators, body sizes
# and concurrency. Every cell starts each server afresh (so its peak RSS
# belongs to that cell), drives it with one generator on 127.0.0.1 and
# records the rate, the server's CPU seconds per 1,000 messages and its peak
# RSS (VmHWM). Servers are interleaved within a repetition.
#
# Servers (--servers):   kumogo (kumogo --policy sink.lua, logs off),
#                        smtp-sink (postfix's, one process), baresink (bare
#                        go-smtp discard server, bench/baresink)
# Generators (--gens):   tg-data  (traffic-gen, DATA)
#                        tg-bdat  (traffic-gen --bdat; smtp-sink is skipped:
#                                  it has no BDAT)
#                        smtp-source (postfix's, DATA, a new connection per
#                                  message)
# Sizes (--sizes):       102400,1024 bytes
# Concurrency (--concs): 20,200,2000,20000; a value above what one process
#                        can hold (hard RLIMIT_NOFILE minus a margin of 100)
#                        is lowered to it and the number used is printed
#
# Each cell sends max(--msgs, conc) messages (so every connection sends at
# least one). Modes:
#   --quick   --msgs 2000 --reps 1   (about 5-10 minutes)
#   default   --msgs 5000 --reps 3   (about 20 minutes)
#
# Usage: bench/sink-matrix.sh [--quick] [--servers LIST] [--gens LIST]
#        [--sizes LIST] [--concs LIST] [--msgs N] [--reps N]
#        [--run-timeout SECS] [--out FILE.tsv]
#
# A run whose generator fails prints a FAILED line and is left out (the
# script exits 1 at the end); a traffic-gen run that exits non-zero although
# every message was accepted is counted and marked gen_exit=N.
#
# Output: one line per run, then one median line (with min-max) per cell:
#   scenario=sink server=kumogo gen=tg-bdat size=102400 conc=200 msgs=N secs=S rate=R msgs/s mmh=M cpu_s_per_1k=C rss_mb=X
# and, per generator, size and concurrency, the ratios kumogo/baresink and
# kumogo/smtp-sink. The medians are written as TSV to --out (default
# bench/results/sink-matrix.tsv) for bench/plot.py.
set -euo pipefail

prog=sink-matrix.sh
# shellcheck source=bench/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

servers_list="kumogo,smtp-sink,baresink"
gens_list="tg-data,tg-bdat,smtp-source"
sizes_list="102400,1024"
concs_list="20,200,2000,20000"
msgs=5000
reps=3
run_timeout=300
out="$root/bench/results/sink-matrix.tsv"

while [ $# -gt 0 ]; do
	case "$1" in
	--quick) msgs=2000; reps=1; shift ;;
	--servers) servers_list="$2"; shift 2 ;;
	--gens) gens_list="$2"; shift 2 ;;
	--sizes) sizes_list="$2"; shift 2 ;;
	--concs) concs_list="$2"; shift 2 ;;
	--msgs) msgs="$2"; shift 2 ;;
	--reps) reps="$2"; shift 2 ;;
	--run-timeout) run_timeout="$2"; shift 2 ;;
	--out) out="$2"; shift 2 ;;
	-h|--help) usage; exit 0 ;;
	*) die "unknown argument $1 (see --help)" ;;
	esac
done
split_list servers "$servers_list"
split_list gens "$gens_list"
split_list sizes "$sizes_list"
split_list concs "$concs_list"
need_posint "$msgs" "$reps" "$run_timeout" "${sizes[@]}" "${concs[@]}"
at_most "$reps" 10 --reps
at_most "$msgs" 200000 --msgs
need_known server "kumogo smtp-sink baresink" "${servers[@]}"
need_known generator "tg-data tg-bdat smtp-source" "${gens[@]}"

# One process holds at most the hard file limit (20,000 here; it cannot be
# raised without CAP_SYS_RESOURCE): leave 100 for everything else.
hard=$(ulimit -Hn)
if [ "$hard" = unlimited ]; then hard=1048576; fi
ulimit -n "$hard" 2>/dev/null || true
max_conc=$((hard - 100))
for i in "${!concs[@]}"; do
	if [ "${concs[$i]}" -gt "$max_conc" ]; then
		note "concurrency ${concs[$i]} lowered to $max_conc (hard RLIMIT_NOFILE $hard per process)"
		concs[$i]=$max_conc
	fi
done

"$root/scripts/install-test-deps.sh"
need_gnu_time

bench_tmp kumogo-matrix
build cmd/traffic-gen bench/baresink bench/procstat
build_kumogo_if "${servers[@]}"
copy_policies "$tmp/policies"

# start_server NAME: sets srv_pid and srv_port.
start_server() {
	local s=$1 l="$tmp/$1.log"
	srv_port=$(free_port)
	case "$s" in
	baresink) start_baresink "$srv_port" "$l" ;;
	# -m: connections served at once (default 256)
	smtp-sink) start_smtp_sink "$srv_port" "$l" 4096 -m "$max_conc" ;;
	kumogo)
		start_kumogo "$srv_port" "$l" "$tmp/policies" "initialization complete" sink.lua \
			KUMOGO_SINK_LISTEN="127.0.0.1:$srv_port" KUMOGO_SINK_DIR="$tmp/kumogo-sink"
		;;
	esac
	srv_pid=$last_pid
}

declare -A rates=() cpus=() rsss=() gcpus=()
# run_cell GEN SERVER SIZE CONC N
run_cell() {
	local g=$1 s=$2 size=$3 conc=$4 n=$5 start end rc=0 cpu0 cpu1 hwm secs rate cpu1k rss gu gs gcpu1k k
	start_server "$s"
	cpu0=$(cpu_of "$srv_pid")
	start=$(date +%s%N)
	case "$g" in
	smtp-source) timed_smtp_source "$srv_port" "$size" "$n" "$conc" || rc=$? ;;
	tg-data | tg-bdat)
		local bdat=()
		[ "$g" = tg-bdat ] && bdat=(--bdat)
		timed_traffic_gen "$srv_port" "$size" "$n" "$conc" "${bdat[@]}" || rc=$?
		if [ "$rc" -eq 0 ] && ! grep -q "\"sent\":$n," "$tmp/gen.json"; then rc=99; fi
		;;
	esac
	end=$(date +%s%N)
	cpu1=$(cpu_of "$srv_pid")
	hwm=$(hwm_of "$srv_pid")
	stop "$srv_pid"
	local flag=
	if [ "$rc" -ne 0 ]; then
		if [[ "$g" == tg-* ]] && grep -q "\"sent\":$n,\"failed\":0," "$tmp/gen.json" 2>/dev/null; then
			# every message was accepted, but a client saw an error (a
			# refused connect, say): counted, and marked
			flag=" gen_exit=$rc"
			note "$g against $s (size $size, conc $conc): all $n accepted, but traffic-gen exited $rc:"
			grep -m 3 '^traffic-gen:' "$tmp/gen.log" >&2 || true
		else
			note "$g against $s (size $size, conc $conc) failed (exit $rc):"
			{ grep -m 3 -i 'traffic-gen:\|error\|fatal' "$tmp/gen.log" || tail -3 "$tmp/gen.log"; } >&2
			printf 'scenario=sink server=%s gen=%s size=%d conc=%d msgs=%d FAILED exit=%d\n' "$s" "$g" "$size" "$conc" "$n" "$rc"
			failed=$((failed + 1))
			return 0
		fi
	fi
	read -r gu gs _ < <(tail -n 1 "$tmp/gen.time") || true
	secs=$(elapsed "$start" "$end")
	rate=$(rate_of "$n" "$secs")
	cpu1k=$(per_1k "$cpu0" "$cpu1" "$n")
	gcpu1k=$(time_per_1k "${gu:-0}" "${gs:-0}" "$n")
	rss=$(kb_to_mb "$hwm")
	printf 'scenario=sink server=%s gen=%s size=%d conc=%d msgs=%d secs=%s rate=%.0f msgs/s mmh=%.2f cpu_s_per_1k=%s rss_mb=%s gen_cpu_s_per_1k=%s%s\n' \
		"$s" "$g" "$size" "$conc" "$n" "$secs" "$rate" "$(mmh "$rate")" \
		"$cpu1k" "$rss" "$gcpu1k" "$flag"
	k="$g/$size/$conc/$s"
	rates[$k]="${rates[$k]:-} $rate"
	cpus[$k]="${cpus[$k]:-} $cpu1k"
	rsss[$k]="${rsss[$k]:-} $rss"
	gcpus[$k]="${gcpus[$k]:-} $gcpu1k"
}

skip() { [ "$1" = tg-bdat ] && [ "$2" = smtp-sink ]; }

cells=0
for g in "${gens[@]}"; do for s in "${servers[@]}"; do skip "$g" "$s" || cells=$((cells + 1)); done; done
note "$((cells * ${#sizes[@]} * ${#concs[@]})) cells x $reps runs; at least $msgs messages per run; concurrency ${concs[*]}"

started=$(date +%s)
failed=0
for g in "${gens[@]}"; do
	for size in "${sizes[@]}"; do
		for conc in "${concs[@]}"; do
			n=$((msgs > conc ? msgs : conc))
			for ((r = 1; r <= reps; r++)); do
				for s in "${servers[@]}"; do
					skip "$g" "$s" && continue
					run_cell "$g" "$s" "$size" "$conc" "$n"
				done
			done
		done
	done
done

mkdir -p "$(dirname "$out")"
printf 'gen\tsize\tconc\tserver\tmsgs\truns\trate_median\trate_min\trate_max\tmmh\tcpu_s_per_1k\trss_mb\tgen_cpu_s_per_1k\n' >"$out.tmp"
for g in "${gens[@]}"; do
	for size in "${sizes[@]}"; do
		for conc in "${concs[@]}"; do
			n=$((msgs > conc ? msgs : conc))
			for s in "${servers[@]}"; do
				k="$g/$size/$conc/$s"
				[ -n "${rates[$k]:-}" ] || continue
				read -r m lo hi <<<"$(stats "${rates[$k]}")"
				read -r c _ _ <<<"$(stats "${cpus[$k]}")"
				read -r x _ _ <<<"$(stats "${rsss[$k]}")"
				read -r gc _ _ <<<"$(stats "${gcpus[$k]}")"
				mmh=$(mmh_2f "$m")
				printf 'scenario=sink server=%s gen=%s size=%d conc=%d msgs=%d runs=%d median rate=%.0f msgs/s (min %.0f max %.0f) mmh=%s cpu_s_per_1k=%s rss_mb=%s\n' \
					"$s" "$g" "$size" "$conc" "$n" "$reps" "$m" "$lo" "$hi" "$mmh" "$c" "$x"
				printf '%s\t%d\t%d\t%s\t%d\t%d\t%.0f\t%.0f\t%.0f\t%s\t%s\t%s\t%s\n' \
					"$g" "$size" "$conc" "$s" "$n" "$reps" "$m" "$lo" "$hi" "$mmh" "$c" "$x" "$gc" >>"$out.tmp"
			done
			for peer in baresink smtp-sink; do
				a="${rates[$g/$size/$conc/kumogo]:-}" b="${rates[$g/$size/$conc/$peer]:-}"
				[ -n "$a" ] && [ -n "$b" ] || continue
				read -r am _ _ <<<"$(stats "$a")"
				read -r bm _ _ <<<"$(stats "$b")"
				awk -v g="$g" -v z="$size" -v c="$conc" -v p="$peer" -v a="$am" -v b="$bm" \
					'BEGIN { printf "scenario=sink gen=%s size=%d conc=%d ratio kumogo/%s=%.2f\n", g, z, c, p, a / b }'
			done
		done
	done
done
mv "$out.tmp" "$out"
note "medians written to $out; $(($(date +%s) - started)) s"
if [ "$failed" -gt 0 ]; then
	note "$failed run(s) failed (FAILED lines above); they are not in the medians"
	exit 1
fi
