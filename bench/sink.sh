#!/usr/bin/env bash
# sink.sh: the sink scenario. Each generator drives each server on
# 127.0.0.1 with the same load (100 KB messages, 50 sessions by default);
# servers run side by side in one invocation and runs are interleaved, so
# compare the ratios from one run, not absolute rates across runs.
#
# Generators (--gen, comma-separated; default smtp-source,smtpgen-bdat):
#   smtp-source   postfix's smtp-source, DATA, a new connection per message
#                 (with --reuse: -d, the connection is kept)
#   smtpgen-bdat  bench/smtpgen --mode bdat: MAIL, RCPT, BDAT n LAST
#                 pipelined, connections kept (smtp-sink is skipped: no BDAT)
#   smtpgen-data  bench/smtpgen --mode data: DATA, connections kept
#
# Servers:
#   baresink   bare go-smtp discard server (bench/baresink), the baseline
#   smtp-sink  postfix's smtp-sink
#   kumogo     kumogo --policy sink.lua (KUMOGO_SINK_LISTEN=127.0.0.1:PORT)
#
# Usage: bench/sink.sh [--only baresink,smtp-sink,kumogo] [--msgs 20000]
#                      [--size 102400] [--conc 50] [--reps 3]
#                      [--run-timeout 300] [--reuse] [--gen LIST]
#
# Output: one line per run, then per generator one median line per server
# and each server's ratio to baresink:
#   scenario=sink server=<name> gen=smtp-source size=102400 conc=50 msgs=N secs=S rate=R msgs/s
set -euo pipefail

prog=sink.sh
# shellcheck source=bench/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

only="baresink,smtp-sink,kumogo"
only_given=0
msgs=20000
size=102400
conc=50
reps=3
run_timeout=300
reuse=0
gen_list="smtp-source,smtpgen-bdat"

while [ $# -gt 0 ]; do
	case "$1" in
	--only) only="$2"; only_given=1; shift 2 ;;
	--only=*) only="${1#*=}"; only_given=1; shift ;;
	--msgs) msgs="$2"; shift 2 ;;
	--size) size="$2"; shift 2 ;;
	--conc) conc="$2"; shift 2 ;;
	--reps) reps="$2"; shift 2 ;;
	--run-timeout) run_timeout="$2"; shift 2 ;;
	--reuse) reuse=1; shift ;;
	--gen) gen_list="$2"; shift 2 ;;
	--gen=*) gen_list="${1#*=}"; shift ;;
	-h|--help) usage raw; exit 0 ;;
	*) die "unknown argument $1 (see --help)" ;;
	esac
done
need_posint "$msgs" "$size" "$conc" "$reps" "$run_timeout"
at_most "$reps" 20 --reps
at_most "$msgs" 1000000 --msgs

split_list servers "$only"
need_known server "baresink smtp-sink kumogo" "${servers[@]}"

split_list gens "$gen_list"
need_known generator "smtp-source smtpgen-bdat smtpgen-data" "${gens[@]}"

"$root/scripts/install-test-deps.sh"

bench_tmp kumogo-sink
build bench/smtpgen

# Build and start every selected server.
declare -A port=()
declare -A pid=()
declare -A logf=()
active=()
for s in "${servers[@]}"; do
	p="$(free_port)"
	l="$tmp/$s.log"
	case "$s" in
	baresink)
		build bench/baresink
		start_baresink "$p" "$l"
		;;
	smtp-sink)
		start_smtp_sink "$p" "$l" 20000
		;;
	kumogo)
		if ! go build -o "$bin/kumogo" ./cmd/kumogo 2>"$tmp/kumogo-build.log"; then
			cat "$tmp/kumogo-build.log" >&2
			if [ "$only_given" -eq 1 ]; then
				die "cmd/kumogo does not build"
			fi
			note "cmd/kumogo does not build yet; skipping kumogo"
			continue
		fi
		# "--policy sink.lua" names the bundled policy; a copy of the repo's
		# policies sits in the working directory in case it is read as a path.
		copy_policies "$tmp/kumogo-run"
		start_kumogo "$p" "$l" "$tmp/kumogo-run" "smtp listener on" sink.lua KUMOGO_SINK_LISTEN="127.0.0.1:$p" KUMOGO_SINK_DIR="$tmp/kumogo-spool"
		;;
	esac
	pid[$s]=$last_pid
	port[$s]=$p
	logf[$s]=$l
	active+=("$s")
	note "$s ready on 127.0.0.1:$p (pid ${pid[$s]})"
done
[ "${#active[@]}" -gt 0 ] || die "no server to measure"

smtp_source_args "$size" "$msgs" "$conc"
srcflags=("${src_args[@]}")
[ "$reuse" -eq 1 ] && srcflags+=(-d)
genflags=(--msgs "$msgs" --size "$size" --conc "$conc" --timeout "${run_timeout}s")

# run_once GEN SERVER: one timed run; sets run_rate (msgs/s) and run_secs.
run_once() {
	local gen=$1 s=$2 start end rc=0
	start=$(date +%s%N)
	case "$gen" in
	smtp-source)
		timeout "$run_timeout" smtp-source "${srcflags[@]}" "127.0.0.1:${port[$s]}" >"$tmp/gen.log" 2>&1 || rc=$?
		;;
	smtpgen-bdat | smtpgen-data)
		timeout $((run_timeout + 10)) "$bin/smtpgen" --mode "${gen#smtpgen-}" "${genflags[@]}" \
			--target "127.0.0.1:${port[$s]}" >"$tmp/gen.log" 2>&1 || rc=$?
		;;
	esac
	end=$(date +%s%N)
	if [ "$rc" -ne 0 ]; then
		cat "$tmp/gen.log" >&2
		die "$gen against $s failed or timed out (exit $rc)"
	fi
	run_secs=$(elapsed "$start" "$end")
	run_rate=$(rate_of "$msgs" "$run_secs")
}

declare -A rates=()
for gen in "${gens[@]}"; do
	for ((r = 1; r <= reps; r++)); do
		for s in "${active[@]}"; do
			if [ "$gen" = smtpgen-bdat ] && [ "$s" = smtp-sink ]; then
				continue # smtp-sink does not implement BDAT
			fi
			run_once "$gen" "$s"
			rate=$run_rate secs=$run_secs
			printf 'scenario=sink server=%s gen=%s size=%d conc=%d msgs=%d secs=%s rate=%.0f msgs/s\n' \
				"$s" "$gen" "$size" "$conc" "$msgs" "$secs" "$rate"
			rates[$gen/$s]="${rates[$gen/$s]:-} $rate"
		done
	done
done

declare -A median=()
for gen in "${gens[@]}"; do
	for s in "${active[@]}"; do
		[ -n "${rates[$gen/$s]:-}" ] || continue
		read -r m _ _ <<<"$(stats "${rates[$gen/$s]}")"
		median[$gen/$s]=$m
		printf 'scenario=sink server=%s gen=%s size=%d conc=%d msgs=%d runs=%d median rate=%.0f msgs/s\n' \
			"$s" "$gen" "$size" "$conc" "$msgs" "$reps" "${median[$gen/$s]}"
	done
	if [ -n "${median[$gen/baresink]:-}" ]; then
		for s in "${active[@]}"; do
			[ "$s" = baresink ] && continue
			[ -n "${median[$gen/$s]:-}" ] || continue
			awk -v s="$s" -v g="$gen" -v a="${median[$gen/$s]}" -v b="${median[$gen/baresink]}" \
				'BEGIN { printf "scenario=sink gen=%s ratio %s/baresink=%.2f\n", g, s, a / b }'
		done
	fi
done

# Stop the baseline and check it saw every message.
if [ -n "${pid[baresink]:-}" ]; then
	kill -TERM "${pid[baresink]}" 2>/dev/null || true
	wait "${pid[baresink]}" 2>/dev/null || true
	got=$(sed -n 's/.*messages=\([0-9]*\).*/\1/p' "${logf[baresink]}")
	want=$((msgs * reps * ${#gens[@]}))
	if [ "$got" != "$want" ]; then
		note "baresink counted ${got:-?} messages, expected $want"
	fi
fi
