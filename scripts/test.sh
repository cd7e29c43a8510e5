#!/usr/bin/env bash
# test.sh: the project's test command. Installs the test dependencies (see
# install-test-deps.sh), then vets and runs every test with the race
# detector. Run from anywhere inside the repository.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

if ! command -v go >/dev/null 2>&1 && [ -x /usr/local/go/bin/go ]; then
	export PATH="/usr/local/go/bin:$PATH"
fi

if [ "${KUMOGO_SKIP_DEPS:-}" != "1" ]; then
	"$root/scripts/install-test-deps.sh"
fi

go vet ./... && go test -race -count=1 -timeout 15m ./...
