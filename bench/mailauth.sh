#!/usr/bin/env bash
# mailauth.sh: what policy-extras.mail_auth costs the sink. Two kumogo
# sinks run the same policy (bench/mailauth.lua) on 127.0.0.1, one with
# mail_auth.check on every message (DKIM verify, SPF, iprev, DMARC, ARC,
# Authentication-Results), one without; bench/smtpgen sends both the same
# DKIM-signed messages (RSA-2048, relaxed/relaxed, from auth.example) in
# interleaved pairs (plain then auth, then auth then plain, ...). DNS is a
# zone answered in process (kumo.dns.configure_test_resolver) through
# kumogo's resolver and cache, warmed by a first unmeasured run; the check
# must pass (the policy refuses anything else, which fails the run).
#
# Usage: bench/mailauth.sh [--msgs 10000] [--size 102400] [--conc 50]
#                          [--pairs 3] [--mode data|bdat] [--run-timeout 300]
#
# Output: one line per run (rate, and the sink's CPU per 1,000 messages),
# then the medians and the ratio auth/plain of the rates (the issue's
# floor is 0.70) and the extra CPU per message of the checks:
#   scenario=mailauth server=plain|auth mode=data size=N conc=N msgs=N secs=S rate=R msgs/s cpu_ms_per_1k=C
#   scenario=mailauth ratio auth/plain=X (pairs: a b c) extra_cpu_us_per_msg=U
set -euo pipefail

prog=mailauth.sh
# shellcheck source=bench/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

msgs=10000
size=102400
conc=50
pairs=3
mode=data
run_timeout=300

while [ $# -gt 0 ]; do
	case "$1" in
	--msgs) msgs="$2"; shift 2 ;;
	--size) size="$2"; shift 2 ;;
	--conc) conc="$2"; shift 2 ;;
	--pairs) pairs="$2"; shift 2 ;;
	--mode) mode="$2"; shift 2 ;;
	--run-timeout) run_timeout="$2"; shift 2 ;;
	-h|--help) usage; exit 0 ;;
	*) die "unknown argument $1 (see --help)" ;;
	esac
done
need_posint "$msgs" "$size" "$conc" "$pairs" "$run_timeout"
at_most "$pairs" 20 --pairs
at_most "$msgs" 1000000 --msgs
need_known mode "data bdat" "$mode"
command -v openssl >/dev/null || die "openssl is needed for the DKIM key"

bench_tmp kumogo-mailauth
build bench/smtpgen bench/procstat
go build -o "$bin/kumogo" ./cmd/kumogo || die "cmd/kumogo does not build"

# The DKIM key, and the zone that publishes it with SPF, DMARC and iprev.
openssl genrsa -out "$tmp/dkim.pem" 2048 2>/dev/null
pub=$(openssl rsa -in "$tmp/dkim.pem" -pubout -outform DER 2>/dev/null | base64 -w0)
txt=$(printf 'v=DKIM1; k=rsa; p=%s' "$pub" | fold -w 250 | sed 's/.*/"&"/' | tr '\n' ' ')
cat >"$tmp/zone" <<ZONE
\$ORIGIN auth.example.
@                3600 TXT "v=spf1 ip4:127.0.0.0/8 -all"
_dmarc           3600 TXT "v=DMARC1; p=reject"
bench._domainkey 3600 TXT $txt
mx               3600 A   127.0.0.1
1.0.0.127.in-addr.arpa. 3600 PTR mx.auth.example.
ZONE

declare -A port=() pid=()
for s in plain auth; do
	port[$s]=$(free_port)
	auth=0
	[ "$s" = auth ] && auth=1
	mkdir -p "$tmp/$s"
	start_kumogo "${port[$s]}" "$tmp/$s.log" "$tmp/$s" "smtp listener on" "$root/bench/mailauth.lua" \
		BENCH_LISTEN="127.0.0.1:${port[$s]}" BENCH_DIR="$tmp/$s/spool" BENCH_ZONE="$tmp/zone" BENCH_MAIL_AUTH=$auth
	pid[$s]=$last_pid
	note "$s ready on 127.0.0.1:${port[$s]} (pid ${pid[$s]})"
done

# run_once SERVER N: one timed run of N messages; sets run_rate, run_secs
# and run_cpu (the sink's CPU ms per 1,000 messages).
run_once() {
	local s=$1 n=$2 start end c0 c1 rc=0
	c0=$(cpu_of "${pid[$s]}")
	start=$(date +%s%N)
	timeout $((run_timeout + 10)) "$bin/smtpgen" --mode "$mode" --msgs "$n" --size "$size" --conc "$conc" \
		--timeout "${run_timeout}s" --from bench@auth.example --dkim-key "$tmp/dkim.pem" \
		--target "127.0.0.1:${port[$s]}" >"$tmp/gen.log" 2>&1 || rc=$?
	end=$(date +%s%N)
	c1=$(cpu_of "${pid[$s]}")
	if [ "$rc" -ne 0 ] || ! grep -q ' failed=0 ' "$tmp/gen.log"; then
		cat "$tmp/gen.log" >&2
		die "smtpgen against $s failed or timed out (exit $rc)"
	fi
	run_secs=$(elapsed "$start" "$end")
	run_rate=$(rate_of "$n" "$run_secs")
	run_cpu=$(per_1k "$c0" "$c1" "$n")
	run_cpu=$(awk -v c="$run_cpu" 'BEGIN { printf "%.0f", c * 1000 }')
}

# warm-up: Lua states, the resolver cache, connections
warm=$((msgs < 1000 ? msgs : 1000))
for s in plain auth; do
	run_once "$s" "$warm"
done

declare -A rates=() cpus=()
ratios=""
for ((r = 1; r <= pairs; r++)); do
	order="plain auth"
	[ $((r % 2)) -eq 0 ] && order="auth plain"
	declare -A pair=()
	for s in $order; do
		run_once "$s" "$msgs"
		printf 'scenario=mailauth server=%s mode=%s size=%d conc=%d msgs=%d secs=%s rate=%.0f msgs/s cpu_ms_per_1k=%s\n' \
			"$s" "$mode" "$size" "$conc" "$msgs" "$run_secs" "$run_rate" "$run_cpu"
		rates[$s]="${rates[$s]:-} $run_rate"
		cpus[$s]="${cpus[$s]:-} $run_cpu"
		pair[$s]=$run_rate
	done
	ratios="$ratios $(awk -v a="${pair[auth]}" -v b="${pair[plain]}" 'BEGIN { printf "%.2f", a / b }')"
done

declare -A median=() cpu=()
for s in plain auth; do
	read -r median[$s] _ _ <<<"$(stats "${rates[$s]}")"
	read -r cpu[$s] _ _ <<<"$(stats "${cpus[$s]}")"
	printf 'scenario=mailauth server=%s mode=%s size=%d conc=%d msgs=%d pairs=%d median rate=%.0f msgs/s cpu_ms_per_1k=%s\n' \
		"$s" "$mode" "$size" "$conc" "$msgs" "$pairs" "${median[$s]}" "${cpu[$s]}"
done
awk -v a="${median[auth]}" -v b="${median[plain]}" -v p="${ratios# }" -v ca="${cpu[auth]}" -v cb="${cpu[plain]}" \
	'BEGIN { printf "scenario=mailauth ratio auth/plain=%.2f (pairs: %s) extra_cpu_us_per_msg=%.0f\n", a / b, p, ca - cb }'
grep -h 'bench: dkim=' "$tmp"/*.log >&2 || true
