#!/usr/bin/env bash
# Hook for the external services the test suite needs, run by `make test`
# (and so by .ci/run) before `go test`.
#
# Today the suite needs none: the vault and the queue are embedded SQLite
# files, and the SMTP peers run in process. When a later issue adds tests
# against PostgreSQL, RabbitMQ, Kafka or Vault/OpenBao, this script starts
# them. Keep it:
#   - idempotent: a service that is already running is left alone;
#   - loud: print what it started and where it listens, to stderr on failure;
#   - strict under CI=true: exit non-zero if a needed service cannot start,
#     so tests fail instead of skipping.
set -euo pipefail

echo "services.sh: no external service needed (embedded vault and queue, in-process SMTP)"
