#!/usr/bin/env bash
# recordsync-ab.sh: what syncing the log records with the mail costs the
# relay. A = REV with multiLogger.Sync (cmd/kumogo/multilogger.go) turned
# into a no-op (records written, never synced: a commit made here on a
# detached temporary worktree), B = REV as it is; bench/ab.sh alternates
# them with the relay scenario (target: B at most 10 % slower than A).
#
# Usage: bench/recordsync-ab.sh [--rev REV] [--pairs 3] [--msgs 10000]
#   --rev REV    the code to measure (default HEAD)
#   --pairs N    A/B pairs (default 3)
#   --msgs N     messages per relay run (default 10000)
#
# Output: bench/ab.sh's (per run rate= and cpu_s_per_1k=, medians, B/A).
set -euo pipefail

prog=recordsync-ab.sh
# shellcheck source=bench/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

rev=HEAD
pairs=3
msgs=10000
while [ $# -gt 0 ]; do
	case "$1" in
	--rev) rev="$2"; shift 2 ;;
	--pairs) pairs="$2"; shift 2 ;;
	--msgs) msgs="$2"; shift 2 ;;
	-h|--help) usage; exit 0 ;;
	*) die "unknown argument $1 (see --help)" ;;
	esac
done
need_posint "$pairs" "$msgs"
rev=$(git -C "$root" rev-parse --short "$rev^{commit}") || die "no commit $rev"

wt=$(mktemp -d)
trap 'git -C "$root" worktree remove --force "$wt" 2>/dev/null || true; rm -rf "$wt"' EXIT
git -C "$root" worktree add --detach -q "$wt" "$rev"
f=cmd/kumogo/multilogger.go
sed -i 's|^func (m \*multiLogger) Sync(ctx context.Context) error {$|&\n\tif ctx != nil {\n\t\treturn nil // reference: records written, never synced\n\t}|' "$wt/$f"
grep -q 'reference: records written, never synced' "$wt/$f" || die "$f: multiLogger.Sync not found"
(cd "$wt" && go build -o /dev/null ./cmd/kumogo/) || die "the reference does not build"
git -C "$wt" -c user.name=bench -c user.email=bench@localhost commit -qam "reference: multiLogger.Sync a no-op (bench/recordsync-ab.sh)"
ref=$(git -C "$wt" rev-parse --short HEAD)
note "A = $ref ($rev with records never synced), B = $rev"
"$root/bench/ab.sh" --a "$ref" --b "$rev" --pairs "$pairs" -- bench/relay.sh --only kumogo --reps 1 --msgs "$msgs"
