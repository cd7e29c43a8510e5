#!/usr/bin/env bash
# install-test-deps.sh: install what kumogo's tests and benchmarks need on a
# Debian machine. Idempotent: packages already present are skipped quietly,
# and `apt-get update` runs only when something is missing. Works without a
# TTY (CI=true, no stdin).
#
#   postfix  smtp-source / smtp-sink (load generator and reference sink);
#            installed with "No configuration" and never left listening on :25
#   swaks    scripted SMTP client for manual and test checks
#   zstd     to read log segments by hand
#   python3  helper scripts
#   python3-dkim  dkimpy: an independent DKIM verifier for kumogo's signatures
#   python3-authres  lets dkimpy seal ARC sets (the ARC tests verify kumogo's
#            verifier against dkimpy's seals)
#   gcc, libc6-dev  cgo, needed by `go test -race`
#   prometheus  a real Prometheus server that the metrics test starts on
#            loopback with its own config; the packaged service is kept
#            from starting (policy-rc.d) and is never left running
#   redis-server  the shared-throttle tests start their own instance on a
#            loopback port with a temporary directory; the packaged service
#            is kept from starting the same way and stopped if it runs
#   rabbitmq-server  the AMQP tests start their own broker (own node name,
#            RABBITMQ_* directories and loopback ports); the packaged service
#            is kept from starting the same way and stopped if it runs
#   haproxy  the egress proxy tests start their own instance on a loopback
#            port as KumoMTA's documented forward proxy; the packaged
#            service is kept from starting and stopped if it runs
set -euo pipefail

export DEBIAN_FRONTEND=noninteractive
export PATH="$PATH:/usr/sbin:/sbin"

log() { echo "install-test-deps: $*" >&2; }

pkg_installed() {
	dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q '^install ok installed$'
}

SUDO=()
if [ "$(id -u)" -ne 0 ]; then
	if command -v sudo >/dev/null 2>&1; then
		SUDO=(sudo -n)
	fi
fi

missing=()
for p in postfix swaks zstd gcc libc6-dev python3-dkim python3-authres prometheus redis-server rabbitmq-server haproxy; do
	pkg_installed "$p" || missing+=("$p")
done
if ! command -v python3 >/dev/null 2>&1; then
	missing+=(python3)
fi

if [ "${#missing[@]}" -gt 0 ]; then
	if [ "$(id -u)" -ne 0 ] && [ "${#SUDO[@]}" -eq 0 ]; then
		log "missing packages (${missing[*]}) and not root: install them by hand"
		exit 1
	fi
	if ! command -v apt-get >/dev/null 2>&1; then
		log "missing packages (${missing[*]}) and no apt-get on this machine"
		exit 1
	fi
	log "installing: ${missing[*]}"
	# Postfix must not ask questions and must not configure itself as a
	# mail server: "No configuration" leaves it without main.cf services.
	if command -v debconf-set-selections >/dev/null 2>&1; then
		"${SUDO[@]}" debconf-set-selections <<'SEL'
postfix postfix/main_mailer_type select No configuration
postfix postfix/mailname string localhost
SEL
	fi
	# Services installed here (prometheus) must not start: tests run their
	# own instances on loopback ports.
	made_policy=0
	if [ ! -e /usr/sbin/policy-rc.d ]; then
		printf '#!/bin/sh\nexit 101\n' | "${SUDO[@]}" tee /usr/sbin/policy-rc.d >/dev/null
		"${SUDO[@]}" chmod 755 /usr/sbin/policy-rc.d
		made_policy=1
	fi
	"${SUDO[@]}" apt-get update -qq </dev/null >/dev/null
	"${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
		--no-install-recommends -o Dpkg::Options::=--force-confdef \
		-o Dpkg::Options::=--force-confold "${missing[@]}" </dev/null >/dev/null
	if [ "$made_policy" = 1 ]; then
		"${SUDO[@]}" rm -f /usr/sbin/policy-rc.d
	fi
fi

# Whatever happened at install time, the postfix daemon must not be running:
# tests and benchmarks bind their own ports and must never see a real MTA on
# port 25.
if command -v postfix >/dev/null 2>&1 && [ -f /etc/postfix/main.cf ]; then
	if "${SUDO[@]}" postfix status >/dev/null 2>&1; then
		log "stopping the postfix daemon"
		"${SUDO[@]}" postfix stop >/dev/null 2>&1 || true
	fi
fi

# The packaged redis service must not hold port 6379 either: tests run their
# own redis-server on a free loopback port.
if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet redis-server 2>/dev/null; then
	log "stopping the packaged redis-server"
	"${SUDO[@]}" systemctl stop redis-server >/dev/null 2>&1 || true
fi

# Nor the packaged rabbitmq-server service (tests start their own broker).
if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet rabbitmq-server 2>/dev/null; then
	log "stopping the packaged rabbitmq-server"
	"${SUDO[@]}" systemctl stop rabbitmq-server >/dev/null 2>&1 || true
fi

# Nor may the packaged haproxy service hold ports or proxy anything.
if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet haproxy 2>/dev/null; then
	log "stopping the packaged haproxy"
	"${SUDO[@]}" systemctl stop haproxy >/dev/null 2>&1 || true
fi

for tool in smtp-source smtp-sink swaks zstd python3 prometheus redis-server haproxy; do
	if ! command -v "$tool" >/dev/null 2>&1; then
		log "expected $tool on PATH after install, not found"
		exit 1
	fi
done
