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

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
if ! command -v go >/dev/null 2>&1 && [ -x /usr/local/go/bin/go ]; then
	export PATH="/usr/local/go/bin:$PATH"
fi
export PATH="$PATH:/usr/sbin:/sbin"

gens_list="tg-data,tg-bdat,smtp-source,smtp-source-d"
msgs=20000
reps=3
sizes_list="102400,1024"
conc=50
run_timeout=300

die() { echo "generator.sh: $*" >&2; exit 1; }
note() { echo "generator.sh: $*" >&2; }

while [ $# -gt 0 ]; do
	case "$1" in
	--gens) gens_list="$2"; shift 2 ;;
	--msgs) msgs="$2"; shift 2 ;;
	--reps) reps="$2"; shift 2 ;;
	--sizes) sizes_list="$2"; shift 2 ;;
	--size) sizes_list="$2"; shift 2 ;;
	--conc) conc="$2"; shift 2 ;;
	--run-timeout) run_timeout="$2"; shift 2 ;;
	-h|--help) awk 'NR > 1 && !/^#/ { exit } NR > 1 { sub(/^# ?/, ""); print }' "$0"; exit 0 ;;
	*) die "unknown argument $1 (see --help)" ;;
	esac
done
IFS=',' read -r -a gens <<<"$gens_list"
IFS=',' read -r -a sizes <<<"$sizes_list"
for n in "$msgs" "$reps" "$conc" "$run_timeout" "${sizes[@]}"; do
	[[ "$n" =~ ^[1-9][0-9]*$ ]] || die "not a positive integer: $n"
done
[ "$reps" -le 20 ] || die "--reps at most 20"
[ "$msgs" -le 1000000 ] || die "--msgs at most 1000000"
[ "$conc" -le 19900 ] || die "--conc at most 19900"
for g in "${gens[@]}"; do
	case "$g" in tg-data|tg-bdat|smtp-source|smtp-source-d) ;; *) die "unknown generator $g" ;; esac
done

"$root/scripts/install-test-deps.sh"
if [ ! -x /usr/bin/time ]; then
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends time </dev/null >/dev/null ||
		die "GNU time (package time) is missing"
fi

tmp="$(mktemp -d /tmp/kumogo-generator.XXXXXX)"
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

wait_ready() {
	local port=$1 pid=$2 logf=$3 i
	for ((i = 0; i < 300; i++)); do
		kill -0 "$pid" 2>/dev/null || { cat "$logf" >&2; die "sink (pid $pid) exited before it was ready"; }
		if grep -q "listening on" "$logf" 2>/dev/null && (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
			return 0
		fi
		sleep 0.1
	done
	die "sink on port $port not ready after 30 s"
}

bin="$tmp/bin"
mkdir -p "$bin"
go build -o "$bin/traffic-gen" ./cmd/traffic-gen
go build -o "$bin/baresink" ./bench/baresink
go build -o "$bin/procstat" ./bench/procstat

cpu_of() { "$bin/procstat" --pid "$1" | sed -n 's/^cpu_s=\([0-9.]*\).*/\1/p'; }

declare -A rates=() gcpus=() scpus=() grss=()
run_once() {
	local g=$1 size=$2 port sink_pid l="$tmp/sink.log" start end rc=0 c0 c1 gu gs gm secs k
	port=$(free_port)
	"$bin/baresink" --listen "127.0.0.1:$port" --expect "$msgs" 2>"$l" &
	sink_pid=$!
	pids+=("$sink_pid")
	wait_ready "$port" "$sink_pid" "$l"
	c0=$(cpu_of "$sink_pid")
	start=$(date +%s%N)
	case "$g" in
	smtp-source | smtp-source-d)
		local d=()
		[ "$g" = smtp-source-d ] && d=(-d)
		/usr/bin/time -f '%U %S %M' -o "$tmp/gen.time" \
			timeout "$run_timeout" smtp-source "${d[@]}" -l "$size" -m "$msgs" -s "$conc" \
			-f sender@bench.localhost -t rcpt@sink.localhost -M bench.localhost \
			"127.0.0.1:$port" >"$tmp/gen.log" 2>&1 || rc=$?
		;;
	tg-data | tg-bdat)
		local bdat=()
		[ "$g" = tg-bdat ] && bdat=(--bdat)
		/usr/bin/time -f '%U %S %M' -o "$tmp/gen.time" \
			timeout $((run_timeout + 10)) "$bin/traffic-gen" --target "127.0.0.1:$port" "${bdat[@]}" \
			--message-count "$msgs" --concurrency "$conc" --body-size "$size" --duration "$run_timeout" \
			--domain bench.test --domain-suffix '' --json >"$tmp/gen.json" 2>"$tmp/gen.log" || rc=$?
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
	secs=$(awk -v a="$start" -v b="$end" 'BEGIN { printf "%.3f", (b - a) / 1e9 }')
	rate=$(awk -v m="$msgs" -v d="$secs" 'BEGIN { printf "%.1f", m / d }')
	gcpu=$(awk -v u="$gu" -v s="$gs" -v m="$msgs" 'BEGIN { printf "%.3f", (u + s) * 1000 / m }')
	scpu=$(awk -v a="$c0" -v b="$c1" -v m="$msgs" 'BEGIN { printf "%.3f", (b - a) * 1000 / m }')
	printf 'scenario=generator gen=%s sink=baresink size=%d conc=%d msgs=%d secs=%s rate=%.0f msgs/s mmh=%.2f gen_cpu_s_per_1k=%s gen_busy=%.0f%% gen_rss_mb=%.0f sink_cpu_s_per_1k=%s sink_busy=%.0f%%\n' \
		"$g" "$size" "$conc" "$msgs" "$secs" "$rate" "$(awk -v r="$rate" 'BEGIN { print r * 3600 / 1e6 }')" \
		"$gcpu" "$(awk -v u="$gu" -v s="$gs" -v d="$secs" 'BEGIN { print (u + s) * 100 / d }')" \
		"$(awk -v k="$gm" 'BEGIN { print k / 1024 }')" "$scpu" \
		"$(awk -v a="$c0" -v b="$c1" -v d="$secs" 'BEGIN { print (b - a) * 100 / d }')"
	k="$g/$size"
	rates[$k]="${rates[$k]:-} $rate"
	gcpus[$k]="${gcpus[$k]:-} $gcpu"
	scpus[$k]="${scpus[$k]:-} $scpu"
	grss[$k]="${grss[$k]:-} $(awk -v k="$gm" 'BEGIN { printf "%.0f", k / 1024 }')"
}

stats() {
	tr ' ' '\n' <<<"$1" | grep . | sort -g |
		awk '{ v[NR] = $1 } END { m = (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2; print m, v[1], v[NR] }'
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
			"$g" "$size" "$conc" "$msgs" "$reps" "$m" "$lo" "$hi" "$(awk -v r="$m" 'BEGIN { print r * 3600 / 1e6 }')" \
			"$gc" "$gr" "$sc"
	done
done
