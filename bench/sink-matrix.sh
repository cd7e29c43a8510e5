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

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
if ! command -v go >/dev/null 2>&1 && [ -x /usr/local/go/bin/go ]; then
	export PATH="/usr/local/go/bin:$PATH"
fi
export PATH="$PATH:/usr/sbin:/sbin"

servers_list="kumogo,smtp-sink,baresink"
gens_list="tg-data,tg-bdat,smtp-source"
sizes_list="102400,1024"
concs_list="20,200,2000,20000"
msgs=5000
reps=3
run_timeout=300
out="$root/bench/results/sink-matrix.tsv"

die() { echo "sink-matrix.sh: $*" >&2; exit 1; }
note() { echo "sink-matrix.sh: $*" >&2; }

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
	-h|--help) awk 'NR > 1 && !/^#/ { exit } NR > 1 { sub(/^# ?/, ""); print }' "$0"; exit 0 ;;
	*) die "unknown argument $1 (see --help)" ;;
	esac
done
IFS=',' read -r -a servers <<<"$servers_list"
IFS=',' read -r -a gens <<<"$gens_list"
IFS=',' read -r -a sizes <<<"$sizes_list"
IFS=',' read -r -a concs <<<"$concs_list"
for n in "$msgs" "$reps" "$run_timeout" "${sizes[@]}" "${concs[@]}"; do
	[[ "$n" =~ ^[1-9][0-9]*$ ]] || die "not a positive integer: $n"
done
[ "$reps" -le 10 ] || die "--reps at most 10"
[ "$msgs" -le 200000 ] || die "--msgs at most 200000"
for s in "${servers[@]}"; do
	case "$s" in kumogo|smtp-sink|baresink) ;; *) die "unknown server $s" ;; esac
done
for g in "${gens[@]}"; do
	case "$g" in tg-data|tg-bdat|smtp-source) ;; *) die "unknown generator $g" ;; esac
done

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
if [ ! -x /usr/bin/time ]; then
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends time </dev/null >/dev/null ||
		die "GNU time (package time) is missing"
fi

tmp="$(mktemp -d /tmp/kumogo-matrix.XXXXXX)"
pids=()
cleanup() {
	local p
	for p in "${pids[@]}"; do
		kill -TERM "$p" 2>/dev/null || true
	done
	for p in "${pids[@]}"; do
		wait "$p" 2>/dev/null || true
	done
	rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() {
	python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

# wait_ready PORT PID LOG PATTERN: until LOG shows PATTERN (if given) and the
# port accepts connections; at most 30 s.
wait_ready() {
	local port=$1 pid=$2 logf=$3 pattern=$4 i
	for ((i = 0; i < 300; i++)); do
		kill -0 "$pid" 2>/dev/null || { cat "$logf" >&2; die "server (pid $pid) exited before it was ready"; }
		if [ -z "$pattern" ] || grep -q "$pattern" "$logf" 2>/dev/null; then
			if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
				return 0
			fi
		fi
		sleep 0.1
	done
	cat "$logf" >&2
	die "server on port $port not ready after 30 s"
}

# stop PID: TERM, wait (at most 20 s), then KILL.
stop() {
	local p=$1 i
	kill -TERM "$p" 2>/dev/null || return 0
	for ((i = 0; i < 200; i++)); do
		kill -0 "$p" 2>/dev/null || break
		sleep 0.1
	done
	kill -KILL "$p" 2>/dev/null || true
	wait "$p" 2>/dev/null || true
}

bin="$tmp/bin"
mkdir -p "$bin" "$tmp/policies"
go build -o "$bin/traffic-gen" ./cmd/traffic-gen
go build -o "$bin/baresink" ./bench/baresink
go build -o "$bin/procstat" ./bench/procstat
for s in "${servers[@]}"; do
	if [ "$s" = kumogo ]; then
		go build -o "$bin/kumogo" ./cmd/kumogo || die "cmd/kumogo does not build (try a clean git worktree)"
	fi
done
cp "$root"/policies/*.lua "$tmp/policies/" 2>/dev/null || true

# start_server NAME: sets srv_pid and srv_port.
start_server() {
	local s=$1 l="$tmp/$1.log"
	srv_port=$(free_port)
	case "$s" in
	baresink)
		"$bin/baresink" --listen "127.0.0.1:$srv_port" 2>"$l" &
		srv_pid=$!
		pids+=("$srv_pid")
		wait_ready "$srv_port" "$srv_pid" "$l" "listening on"
		;;
	smtp-sink)
		userflag=()
		[ "$(id -u)" -eq 0 ] && userflag=(-u nobody)
		# -m: connections served at once (default 256)
		smtp-sink "${userflag[@]}" -m "$max_conc" "127.0.0.1:$srv_port" 4096 >"$l" 2>&1 &
		srv_pid=$!
		pids+=("$srv_pid")
		wait_ready "$srv_port" "$srv_pid" "$l" ""
		;;
	kumogo)
		(cd "$tmp/policies" && KUMOGO_SINK_LISTEN="127.0.0.1:$srv_port" KUMOGO_SINK_DIR="$tmp/kumogo-sink" \
			exec "$bin/kumogo" --policy sink.lua) 2>"$l" &
		srv_pid=$!
		pids+=("$srv_pid")
		wait_ready "$srv_port" "$srv_pid" "$l" "initialization complete"
		;;
	esac
}

cpu_of() { "$bin/procstat" --pid "$1" | sed -n 's/^cpu_s=\([0-9.]*\).*/\1/p'; }
hwm_of() { "$bin/procstat" --pid "$1" | sed -n 's/.*hwm_kb=\([0-9]*\).*/\1/p'; }

declare -A rates=() cpus=() rsss=() gcpus=()
# run_cell GEN SERVER SIZE CONC N
run_cell() {
	local g=$1 s=$2 size=$3 conc=$4 n=$5 start end rc=0 cpu0 cpu1 hwm secs rate cpu1k rss gu gs gcpu1k k
	start_server "$s"
	cpu0=$(cpu_of "$srv_pid")
	start=$(date +%s%N)
	case "$g" in
	smtp-source)
		/usr/bin/time -f '%U %S %M' -o "$tmp/gen.time" \
			timeout "$run_timeout" smtp-source -l "$size" -m "$n" -s "$conc" -f sender@bench.localhost \
			-t rcpt@sink.localhost -M bench.localhost "127.0.0.1:$srv_port" >"$tmp/gen.log" 2>&1 || rc=$?
		;;
	tg-data | tg-bdat)
		local bdat=()
		[ "$g" = tg-bdat ] && bdat=(--bdat)
		/usr/bin/time -f '%U %S %M' -o "$tmp/gen.time" \
			timeout $((run_timeout + 10)) "$bin/traffic-gen" --target "127.0.0.1:$srv_port" "${bdat[@]}" \
			--message-count "$n" --concurrency "$conc" --body-size "$size" --duration "$run_timeout" \
			--domain bench.test --domain-suffix '' --json >"$tmp/gen.json" 2>"$tmp/gen.log" || rc=$?
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
	secs=$(awk -v a="$start" -v b="$end" 'BEGIN { printf "%.3f", (b - a) / 1e9 }')
	rate=$(awk -v m="$n" -v d="$secs" 'BEGIN { printf "%.1f", m / d }')
	cpu1k=$(awk -v a="$cpu0" -v b="$cpu1" -v m="$n" 'BEGIN { printf "%.3f", (b - a) * 1000 / m }')
	gcpu1k=$(awk -v u="${gu:-0}" -v s="${gs:-0}" -v m="$n" 'BEGIN { printf "%.3f", (u + s) * 1000 / m }')
	rss=$(awk -v k="$hwm" 'BEGIN { printf "%.0f", k / 1024 }')
	printf 'scenario=sink server=%s gen=%s size=%d conc=%d msgs=%d secs=%s rate=%.0f msgs/s mmh=%.2f cpu_s_per_1k=%s rss_mb=%s gen_cpu_s_per_1k=%s%s\n' \
		"$s" "$g" "$size" "$conc" "$n" "$secs" "$rate" "$(awk -v r="$rate" 'BEGIN { print r * 3600 / 1e6 }')" \
		"$cpu1k" "$rss" "$gcpu1k" "$flag"
	k="$g/$size/$conc/$s"
	rates[$k]="${rates[$k]:-} $rate"
	cpus[$k]="${cpus[$k]:-} $cpu1k"
	rsss[$k]="${rsss[$k]:-} $rss"
	gcpus[$k]="${gcpus[$k]:-} $gcpu1k"
}

# stats "v1 v2 ...": "median min max"
stats() {
	tr ' ' '\n' <<<"$1" | grep . | sort -g |
		awk '{ v[NR] = $1 } END { m = (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2; print m, v[1], v[NR] }'
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
				mmh=$(awk -v r="$m" 'BEGIN { printf "%.2f", r * 3600 / 1e6 }')
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
