#!/usr/bin/env bash
# A/B of a Go benchmark between two commits, interleaved in one run: builds
# the test binary of PKG at each commit (temporary git worktrees), then runs
# A, B, A, B, ... with the same flags, so that both see the same machine.
#
#   bench/abgo.sh [--pairs N] A B PKG BENCH [test flags...]
#   bench/abgo.sh main HEAD ./cmd/kumogo/ Sink100KB -test.benchtime 5000x
#   GOMAXPROCS=1 bench/abgo.sh main HEAD ./runtime/ MessageReceivedExtras -test.benchtime 100000x
#
# Output: each run's benchmark lines prefixed with "A" or "B".
set -euo pipefail
pairs=3
if [[ ${1:-} == --pairs ]]; then pairs=$2; shift 2; fi
[[ $# -ge 4 ]] || { sed -n '2,10p' "$0"; exit 2; }
a=$1 b=$2 pkg=$3 bench=$4
shift 4
root=$(git rev-parse --show-toplevel)
tmp=$(mktemp -d)
trap 'git -C "$root" worktree remove --force "$tmp/A" 2>/dev/null; git -C "$root" worktree remove --force "$tmp/B" 2>/dev/null; rm -rf "$tmp"' EXIT
for side in A B; do
	ref=$a
	[[ $side == B ]] && ref=$b
	git -C "$root" worktree add --detach -q "$tmp/$side" "$ref"
	(cd "$tmp/$side" && go test -c -o "$tmp/$side.test" "$pkg")
	echo "$side = $ref ($(git -C "$root" rev-parse --short "$ref"))"
done
for ((i = 1; i <= pairs; i++)); do
	for side in A B; do
		# run in the package's directory of that side, as go test does
		(cd "$tmp/$side/$pkg" && "$tmp/$side.test" -test.run '^$' -test.bench "$bench" -test.benchmem "$@") |
			grep -E '^Benchmark' | sed "s/^/$side /"
	done
done
