# lib.sh: what the bench scripts (sink.sh, sink-matrix.sh, relay.sh, cluster.sh,
# generator.sh) share. Sourced, never run; the sourcing script sets prog
# (its name, the prefix of its messages) and `set -euo pipefail` first.
# Sourcing it sets root (the repository), changes into it and puts Go and
# /usr/sbin on PATH. Everything here binds or dials 127.0.0.1 only and stops
# processes by the PIDs it recorded in pids.

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
if ! command -v go >/dev/null 2>&1 && [ -x /usr/local/go/bin/go ]; then
	export PATH="/usr/local/go/bin:$PATH"
fi
export PATH="$PATH:/usr/sbin:/sbin"

# die MSG: print "PROG: MSG" on stderr and exit 1.
die() { echo "$prog: $*" >&2; exit 1; }
# note MSG: print "PROG: MSG" on stderr.
note() { echo "$prog: $*" >&2; }

# usage [raw]: print the script's header comment (line 2 up to the first
# line that is not a comment), without the leading "# " unless raw is given.
usage() {
	if [ "${1:-}" = raw ]; then
		awk 'NR > 1 && !/^#/ { exit } NR > 1 { print }' "$0"
	else
		awk 'NR > 1 && !/^#/ { exit } NR > 1 { sub(/^# ?/, ""); print }' "$0"
	fi
}

# common_opt ARG...: one of the options the load scenarios share, from the
# script's arguments: --only LIST (or --only=LIST), --msgs N, --reps N,
# --size BYTES, --conc N and --run-timeout SECS set only, msgs, reps, size,
# conc and run_timeout; -h/--help prints the usage and exits. shifted is
# how many words it took: 0 when $1 is none of them (the script's own).
common_opt() {
	shifted=2
	case "$1" in
	--only) only="$2" ;;
	--only=*) only="${1#*=}"; shifted=1 ;;
	--msgs) msgs="$2" ;;
	--reps) reps="$2" ;;
	--size) size="$2" ;;
	--conc) conc="$2" ;;
	--run-timeout) run_timeout="$2" ;;
	-h|--help) usage; exit 0 ;;
	*) shifted=0 ;;
	esac
}

# need_posint VALUE...: die unless every VALUE is a positive integer.
need_posint() {
	local n
	for n in "$@"; do
		[[ "$n" =~ ^[1-9][0-9]*$ ]] || die "not a positive integer: $n"
	done
}

# at_most VALUE MAX OPTION: die "OPTION at most MAX" when VALUE > MAX.
at_most() { [ "$1" -le "$2" ] || die "$3 at most $2"; }

# split_list ARRAY LIST: split the comma-separated LIST into the array ARRAY.
split_list() { IFS=',' read -r -a "$1" <<<"$2"; }

# need_known KIND "NAME..." ITEM...: die "unknown KIND ITEM" for the first
# ITEM that is not one of the space-separated NAMEs.
need_known() {
	local kind=$1 item name ok
	local -a names
	read -r -a names <<<"$2"
	shift 2
	for item in "$@"; do
		ok=0
		for name in "${names[@]}"; do
			[ "$item" = "$name" ] && ok=1 && break
		done
		[ "$ok" -eq 1 ] || die "unknown $kind $item"
	done
}

# need_gnu_time: install GNU time (/usr/bin/time) with apt if it is missing.
need_gnu_time() {
	if [ ! -x /usr/bin/time ]; then
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends time </dev/null >/dev/null ||
			die "GNU time (package time) is missing"
	fi
}

# bench_tmp NAME: make the temp dir /tmp/NAME.XXXXXX (tmp) with bin=$tmp/bin
# for the built binaries, start an empty pids list and trap EXIT to cleanup
# (INT and TERM exit 130, which runs it).
bench_tmp() {
	tmp="$(mktemp -d "/tmp/$1.XXXXXX")"
	bin="$tmp/bin"
	pids=()
	trap cleanup EXIT
	trap 'exit 130' INT TERM
	mkdir -p "$bin"
}

# kill_pids: TERM every PID in pids, then wait for each.
kill_pids() {
	local p
	for p in "${pids[@]}"; do
		kill -TERM "$p" 2>/dev/null || true
	done
	for p in "${pids[@]}"; do
		wait "$p" 2>/dev/null || true
	done
}

# cleanup: the EXIT trap; stops the recorded PIDs and removes tmp. A script
# with more to undo defines its own after sourcing this file.
cleanup() {
	kill_pids
	rm -rf "$tmp"
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

# build NAME...: go build ./NAME (bench/baresink, cmd/traffic-gen, ...)
# into $bin/<last part of NAME>.
build() {
	local pkg
	for pkg in "$@"; do
		go build -o "$bin/${pkg##*/}" "./$pkg"
	done
}

# build_kumogo_if NAME...: when one NAME is kumogo, build cmd/kumogo into
# $bin or die.
build_kumogo_if() {
	local s
	for s in "$@"; do
		if [ "$s" = kumogo ]; then
			go build -o "$bin/kumogo" ./cmd/kumogo || die "cmd/kumogo does not build (try a clean git worktree)"
		fi
	done
}

# copy_policies DIR: a copy of the repo's policies/*.lua in DIR.
copy_policies() {
	mkdir -p "$1"
	cp "$root"/policies/*.lua "$1/" 2>/dev/null || true
}

# free_port: a free TCP port on 127.0.0.1.
free_port() {
	python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

# What wait_ready says when it gives up (printf formats, %s = PID, PORT).
ready_died='server (pid %s) exited before it was ready'
ready_late='server on port %s not ready after 30 s'

# wait_ready PORT PID LOG PATTERN: until LOG shows PATTERN (if given) and the
# port accepts connections; at most 30 s. Shows LOG and dies if PID exits
# first or time runs out.
wait_ready() {
	local port=$1 pid=$2 logf=$3 pattern=$4 i
	for ((i = 0; i < 300; i++)); do
		kill -0 "$pid" 2>/dev/null || {
			cat "$logf" >&2
			# shellcheck disable=SC2059
			die "$(printf "$ready_died" "$pid")"
		}
		if [ -z "$pattern" ] || grep -q "$pattern" "$logf" 2>/dev/null; then
			if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
				return 0
			fi
		fi
		sleep 0.1
	done
	cat "$logf" >&2
	# shellcheck disable=SC2059
	die "$(printf "$ready_late" "$port")"
}

# start_baresink PORT LOG [ARG...]: $bin/baresink on 127.0.0.1:PORT (its
# stderr in LOG), recorded in pids, ready; sets last_pid.
start_baresink() {
	local port=$1 l=$2
	"$bin/baresink" --listen "127.0.0.1:$port" "${@:3}" 2>"$l" &
	last_pid=$!
	pids+=("$last_pid")
	wait_ready "$port" "$last_pid" "$l" "listening on"
}

# start_smtp_sink PORT LOG BACKLOG [OPT...]: postfix's smtp-sink on
# 127.0.0.1:PORT (as nobody when root; output in LOG), recorded in pids,
# ready; sets last_pid.
start_smtp_sink() {
	local port=$1 l=$2 backlog=$3 userflag=()
	[ "$(id -u)" -eq 0 ] && userflag=(-u nobody)
	smtp-sink "${userflag[@]}" "${@:4}" "127.0.0.1:$port" "$backlog" >"$l" 2>&1 &
	last_pid=$!
	pids+=("$last_pid")
	wait_ready "$port" "$last_pid" "$l" ""
}

# start_kumogo PORT LOG DIR PATTERN POLICY [VAR=VALUE...]: $bin/kumogo
# --policy POLICY run in DIR with the VARs in its environment (its stderr in
# LOG), recorded in pids, ready on PORT once LOG shows PATTERN; sets last_pid.
start_kumogo() {
	local port=$1 l=$2 dir=$3 pattern=$4 policy=$5
	shift 5
	(
		cd "$dir" || exit 1
		for kv in "$@"; do export "$kv"; done
		exec "$bin/kumogo" --policy "$policy"
	) 2>"$l" &
	last_pid=$!
	pids+=("$last_pid")
	wait_ready "$port" "$last_pid" "$l" "$pattern"
}

# cpu_of PID [--tree]: the process's (or tree's) CPU seconds, from procstat.
cpu_of() { "$bin/procstat" --pid "$1" "${@:2}" | sed -n 's/^cpu_s=\([0-9.]*\).*/\1/p'; }
# hwm_of PID: the process's peak RSS (VmHWM) in KB, from procstat.
hwm_of() { "$bin/procstat" --pid "$1" | sed -n 's/.*hwm_kb=\([0-9]*\).*/\1/p'; }

# smtp_source_args SIZE N CONC: smtp-source's load flags (N messages of SIZE
# bytes over CONC sessions, bench addresses) into the array src_args.
smtp_source_args() {
	src_args=(-l "$1" -m "$2" -s "$3" -f sender@bench.localhost -t rcpt@sink.localhost -M bench.localhost)
}

# traffic_gen_args PORT SIZE N CONC: traffic-gen's flags for N messages of
# SIZE bytes over CONC connections to 127.0.0.1:PORT, bounded by
# run_timeout, a JSON summary on stdout, into the array tg_args.
traffic_gen_args() {
	tg_args=(--target "127.0.0.1:$1" --message-count "$3" --concurrency "$4" --body-size "$2"
		--duration "$run_timeout" --domain bench.test --domain-suffix '' --json)
}

# timed_smtp_source PORT SIZE N CONC [FLAG...]: smtp-source (FLAGs first)
# under GNU time ("user sys maxrss_kb" in $tmp/gen.time) and timeout
# run_timeout; its output in $tmp/gen.log. Returns its status.
timed_smtp_source() {
	smtp_source_args "$2" "$3" "$4"
	/usr/bin/time -f '%U %S %M' -o "$tmp/gen.time" \
		timeout "$run_timeout" smtp-source "${@:5}" "${src_args[@]}" "127.0.0.1:$1" >"$tmp/gen.log" 2>&1
}

# timed_traffic_gen PORT SIZE N CONC [FLAG...]: $bin/traffic-gen under GNU
# time ($tmp/gen.time) and timeout run_timeout + 10; JSON in $tmp/gen.json,
# stderr in $tmp/gen.log. Returns its status.
timed_traffic_gen() {
	traffic_gen_args "$1" "$2" "$3" "$4"
	/usr/bin/time -f '%U %S %M' -o "$tmp/gen.time" \
		timeout $((run_timeout + 10)) "$bin/traffic-gen" "${tg_args[@]}" "${@:5}" \
		>"$tmp/gen.json" 2>"$tmp/gen.log"
}

# elapsed START END: seconds between two `date +%s%N` stamps (%.3f).
elapsed() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", (b - a) / 1e9 }'; }
# rate_of N SECS: N / SECS (%.1f), messages per second.
rate_of() { awk -v m="$1" -v d="$2" 'BEGIN { printf "%.1f", m / d }'; }
# per_1k CPU0 CPU1 N: (CPU1 - CPU0) * 1000 / N (%.3f), CPU s per 1,000 messages.
per_1k() { awk -v a="$1" -v b="$2" -v m="$3" 'BEGIN { printf "%.3f", (b - a) * 1000 / m }'; }
# time_per_1k USER SYS N: (USER + SYS) * 1000 / N (%.3f), from GNU time.
time_per_1k() { awk -v u="$1" -v s="$2" -v m="$3" 'BEGIN { printf "%.3f", (u + s) * 1000 / m }'; }
# kb_to_mb KB: KB / 1024 (%.0f).
kb_to_mb() { awk -v k="$1" 'BEGIN { printf "%.0f", k / 1024 }'; }
# mmh RATE: million messages per hour as awk prints it (callers format it).
mmh() { awk -v r="$1" 'BEGIN { print r * 3600 / 1e6 }'; }
# mmh_2f RATE: the same rounded to 2 decimals.
mmh_2f() { awk -v r="$1" 'BEGIN { printf "%.2f", r * 3600 / 1e6 }'; }

# stats "v1 v2 ...": "median min max"
stats() {
	tr ' ' '\n' <<<"$1" | grep . | sort -g |
		awk '{ v[NR] = $1 } END { m = (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2; print m, v[1], v[NR] }'
}
