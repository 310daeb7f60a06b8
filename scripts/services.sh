#!/usr/bin/env bash
# Prepares what the test suite needs besides Go, run by `make test` (and so
# by .ci/run) before `go test`:
#   - Node.js and npm, and the npm `smpp` package: the SMPP adapter's tests
#     run an independent SMSC (adapters/sms/smpp/testdata/smsc) under Node.
# The vault and the queue are embedded SQLite files, and the SMTP, HTTP
# and Telegram peers run in process.
#
# Keep it:
#   - idempotent: what is installed or running is left alone;
#   - loud: print what it did;
#   - strict under CI=true: exit non-zero if something cannot be set up,
#     so tests fail instead of skipping.
set -euo pipefail
cd "$(dirname "$0")/.."

as_root() {
	if [ "$(id -u)" = 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else
		echo "services.sh: need root for: $*" >&2
		return 1
	fi
}

# apt_install PACKAGE... installs Debian packages that are missing.
apt_install() {
	local missing=()
	for p in "$@"; do
		dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
	done
	[ ${#missing[@]} -eq 0 ] && return 0
	echo "services.sh: installing ${missing[*]} from Debian's packages"
	as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
	as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
}

if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
	apt_install nodejs npm
fi
echo "services.sh: node $(node --version), npm $(npm --version)"

smsc=adapters/sms/smpp/testdata/smsc
if [ ! -d "$smsc/node_modules/smpp" ]; then
	echo "services.sh: npm ci in $smsc (the test SMSC)"
	npm ci --prefix "$smsc" --no-audit --no-fund --loglevel=error
fi
echo "services.sh: ready"
