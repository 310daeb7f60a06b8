#!/usr/bin/env bash
# Prepares what the test suite needs besides Go, run by `make test` (and so
# by .ci/run) before `go test`:
#   - PostgreSQL (installed, configured for loopback trust and started when
#     missing or stopped), for the vault's shared record store, the
#     gateways' shared state and the core's store;
#   - MariaDB and RabbitMQ (installed and started when missing or stopped),
#     for the core's SQL-view and RabbitMQ connectors;
#   - a HashiCorp Vault server binary, built once from the Go module proxy;
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

# PostgreSQL on 127.0.0.1:5432, trust auth, database "test": the shared
# vault record store's tests (vault/postgres) run against it.
pg_ready() { pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null; }
if ! pg_ready; then
	if ! command -v pg_lsclusters >/dev/null || [ -z "$(ls /etc/postgresql 2>/dev/null)" ]; then
		apt_install postgresql
	fi
	ver=$(ls /etc/postgresql | sort -n | tail -1)
	if [ -z "$(pg_lsclusters -h 2>/dev/null)" ]; then
		as_root pg_createcluster "$ver" main
	fi
	hba=/etc/postgresql/$ver/main/pg_hba.conf
	if ! as_root grep -qE '^host\s+all\s+all\s+127\.0\.0\.1/32\s+trust' "$hba"; then
		echo "services.sh: trust auth for loopback in $hba (a test machine only)"
		as_root sed -i '1i host all all 127.0.0.1/32 trust\nhost all all ::1/128 trust\nlocal all all trust' "$hba"
	fi
	echo "services.sh: starting PostgreSQL $ver"
	as_root pg_ctlcluster --skip-systemctl-redirect "$ver" main start || as_root pg_ctlcluster --skip-systemctl-redirect "$ver" main reload
	for _ in $(seq 60); do pg_ready && break; sleep 0.5; done
fi
if pg_ready; then
	psql -h 127.0.0.1 -U postgres -tAc "select 1 from pg_database where datname='test'" | grep -q 1 ||
		createdb -h 127.0.0.1 -U postgres test
	echo "services.sh: PostgreSQL ready on 127.0.0.1:5432"
elif [ -n "${CI:-}" ]; then
	echo "services.sh: PostgreSQL did not start" >&2
	exit 1
else
	echo "services.sh: PostgreSQL unavailable; its tests will skip" >&2
fi

# MariaDB on 127.0.0.1:3306, root with an empty password, database "test":
# the core's SQL-view connector reads MySQL/MariaDB views (adapters/dbviews).
mysql_ready() { mariadb -h 127.0.0.1 -P 3306 -u root -e 'select 1' >/dev/null 2>&1; }
if ! mysql_ready; then
	command -v mariadbd >/dev/null || [ -x /usr/sbin/mariadbd ] || apt_install mariadb-server
	if ! mariadb-admin ping >/dev/null 2>&1; then
		echo "services.sh: starting MariaDB"
		as_root mkdir -p /run/mysqld
		as_root chown mysql:mysql /run/mysqld 2>/dev/null || true
		as_root start-stop-daemon --start --oknodo --background --exec /usr/sbin/mariadbd -- --user=mysql --bind-address=127.0.0.1
		for _ in $(seq 60); do mariadb-admin ping >/dev/null 2>&1 && break; sleep 0.5; done
	fi
	if ! mysql_ready; then
		# A fresh Debian install lets root in only through the socket.
		echo "services.sh: letting root in over TCP from loopback with an empty password (a test machine only)"
		as_root mariadb -e "ALTER USER 'root'@'localhost' IDENTIFIED VIA mysql_native_password USING PASSWORD(''); CREATE USER IF NOT EXISTS 'root'@'127.0.0.1' IDENTIFIED BY ''; GRANT ALL ON *.* TO 'root'@'127.0.0.1' WITH GRANT OPTION; FLUSH PRIVILEGES;" || true
	fi
fi
if mysql_ready; then
	mariadb -h 127.0.0.1 -u root -e 'CREATE DATABASE IF NOT EXISTS test'
	echo "services.sh: MariaDB ready on 127.0.0.1:3306"
elif [ -n "${CI:-}" ]; then
	echo "services.sh: MariaDB did not start" >&2
	exit 1
else
	echo "services.sh: MariaDB unavailable; its tests will skip" >&2
fi

# RabbitMQ on 127.0.0.1:5672, guest/guest (allowed from loopback by
# default): the core's RabbitMQ connector (adapters/rabbitmq).
amqp_ready() { (exec 3<>/dev/tcp/127.0.0.1/5672) 2>/dev/null; }
if ! amqp_ready; then
	command -v rabbitmq-server >/dev/null || apt_install rabbitmq-server
	echo "services.sh: starting RabbitMQ"
	as_root rabbitmq-server -detached || true
	for _ in $(seq 120); do amqp_ready && break; sleep 0.5; done
fi
if amqp_ready; then
	echo "services.sh: RabbitMQ ready on 127.0.0.1:5672"
elif [ -n "${CI:-}" ]; then
	echo "services.sh: RabbitMQ did not start" >&2
	exit 1
else
	echo "services.sh: RabbitMQ unavailable; its tests will skip" >&2
fi

# A real HashiCorp Vault server (dev mode) for the Transit key provider's
# tests (vault/hashicorp). Vault is not in Debian and its module cannot be
# `go install`ed, so tools/vault/build-vault.sh builds it from the Go
# module proxy once (about 20 minutes and 4.6 GB of memory on 2 cores the
# first time) into ~/.cache/blindpost/bin; later runs find it there. The
# tests start and stop their own server.
echo "services.sh: vault binary $(tools/vault/build-vault.sh)"

smsc=adapters/sms/smpp/testdata/smsc
if [ ! -d "$smsc/node_modules/smpp" ]; then
	echo "services.sh: npm ci in $smsc (the test SMSC)"
	npm ci --prefix "$smsc" --no-audit --no-fund --loglevel=error
fi
echo "services.sh: ready"
