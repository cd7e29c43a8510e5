#!/usr/bin/env bash
# ab.sh: an interleaved A/B comparison of two commits with one bench script.
# Each commit is exported (git archive) into a temp dir, and the script is
# run from there, alternating A, B, A, B, ... so that both see the same
# machine state; the runs' rate= and cpu_s_per_1k= fields are collected
# from the lines that carry them (not the median lines), and so is
# redis_requests_per_msg= where the script reports it (bench/cluster.sh).
#
# Usage: bench/ab.sh [--a REV] [--b REV] [--pairs 3] -- SCRIPT [ARG...]
#   --a REV    the base (default main)
#   --b REV    the change (default HEAD)
#   --pairs N  A/B pairs (default 3)
#   --keep DIR keep each run's whole output as DIR/run-P-SIDE.txt (for
#              scripts that print more than one rate, e.g. manydest.sh's
#              one and many runs and their ratio)
#   SCRIPT     a bench script path relative to the repository root, run with
#              its ARGs in each export, e.g.
#              bench/relay.sh --only kumogo --reps 1 --msgs 10000
#
# Output: one line per run, then per side the median rate and CPU and the
# change of B against A:
#   ab run=1 side=A rev=<sha> rate=972 cpu_s_per_1k=1.025
#   ab side=A rev=<sha> runs=3 median rate=... cpu_s_per_1k=...
#   ab B/A rate=1.04 (+4 %) cpu_s_per_1k=0.97
set -euo pipefail

prog=ab.sh
# shellcheck source=bench/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

a=main
b=HEAD
pairs=3
keep=
while [ $# -gt 0 ]; do
	case "$1" in
	--a) a="$2"; shift 2 ;;
	--b) b="$2"; shift 2 ;;
	--pairs) pairs="$2"; shift 2 ;;
	--keep) keep="$2"; shift 2 ;;
	--) shift; break ;;
	-h|--help) usage; exit 0 ;;
	*) die "unknown argument $1 (see --help)" ;;
	esac
done
[ $# -gt 0 ] || die "no bench script given (see --help)"
need_posint "$pairs"
at_most "$pairs" 20 --pairs
script=$1
shift
[ -x "$root/$script" ] || die "$script is not an executable script of the repository"

bench_tmp kumogo-ab
[ -n "$keep" ] && mkdir -p "$keep"
declare -A rev=()
for side in A B; do
	r=$a
	[ "$side" = B ] && r=$b
	rev[$side]=$(git -C "$root" rev-parse --short "$r^{commit}") || die "no commit $r"
	mkdir -p "$tmp/$side"
	git -C "$root" archive "${rev[$side]}" | tar -x -C "$tmp/$side"
done
note "A=${rev[A]} ($a), B=${rev[B]} ($b), $pairs pairs of: $script $*"

declare -A rates=() cpus=() rqs=()
for ((p = 1; p <= pairs; p++)); do
	for side in A B; do
		out="$tmp/out-$side-$p"
		if ! (cd "$tmp/$side" && "./$script" "$@") >"$out"; then
			note "run $p of $side failed; its output:"
			cat "$out" >&2
			continue
		fi
		[ -n "$keep" ] && cp "$out" "$keep/run-$p-$side.txt"
		line=$(grep 'rate=' "$out" | grep -v median | tail -1)
		rate=$(sed -n 's/.* rate=\([0-9.]*\).*/\1/p' <<<"$line")
		cpu=$(sed -n 's/.* cpu_s_per_1k=\([0-9.]*\).*/\1/p' <<<"$line")
		rq=$(sed -n 's/.* redis_requests_per_msg=\([0-9.]*\).*/\1/p' <<<"$line")
		printf 'ab run=%d side=%s rev=%s rate=%s cpu_s_per_1k=%s%s\n' "$p" "$side" "${rev[$side]}" "${rate:-?}" "${cpu:-?}" \
			"${rq:+ redis_requests_per_msg=$rq}"
		[ -n "$rate" ] && rates[$side]="${rates[$side]:-} $rate"
		[ -n "$cpu" ] && cpus[$side]="${cpus[$side]:-} $cpu"
		[ -n "$rq" ] && rqs[$side]="${rqs[$side]:-} $rq"
	done
done

declare -A mr=() mc=()
for side in A B; do
	[ -n "${rates[$side]:-}" ] || die "every run of $side failed"
	read -r mr[$side] lo hi <<<"$(stats "${rates[$side]}")"
	printf 'ab side=%s rev=%s runs=%d median rate=%s (min %s max %s)' "$side" "${rev[$side]}" "$(wc -w <<<"${rates[$side]}")" "${mr[$side]}" "$lo" "$hi"
	if [ -n "${cpus[$side]:-}" ]; then
		read -r mc[$side] lo hi <<<"$(stats "${cpus[$side]}")"
		printf ' cpu_s_per_1k=%s (%s-%s)' "${mc[$side]}" "$lo" "$hi"
	fi
	if [ -n "${rqs[$side]:-}" ]; then
		read -r x lo hi <<<"$(stats "${rqs[$side]}")"
		printf ' redis_requests_per_msg=%s (%s-%s)' "$x" "$lo" "$hi"
	fi
	printf '\n'
done
awk -v a="${mr[A]}" -v b="${mr[B]}" -v ca="${mc[A]:-0}" -v cb="${mc[B]:-0}" 'BEGIN {
	printf "ab B/A rate=%.2f (%+.0f %%)", b / a, (b / a - 1) * 100
	if (ca > 0) printf " cpu_s_per_1k=%.2f", cb / ca
	printf "\n"
}'
