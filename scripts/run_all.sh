#!/usr/bin/env bash
# `make run`: the web app, the gRPC admission API, a Celery worker and Celery beat together; Ctrl-C stops all.
set -euo pipefail
PY=${PY:-.venv/bin/python}
PORT=${PORT:-8000}
export PORT
# The worker and beat create a file here when they are up (creditservice/celery.py).
export CREDITSERVICE_READY_DIR=var/run
mkdir -p "$CREDITSERVICE_READY_DIR" && rm -f "$CREDITSERVICE_READY_DIR/worker" "$CREDITSERVICE_READY_DIR/beat"
# The three write their metrics to one directory, so the web /metrics shows the worker's and beat's
# counters too (creditservice/lib/metrics_exposition.py); emptied of the last run's files first.
export PROMETHEUS_MULTIPROC_DIR=${PROMETHEUS_MULTIPROC_DIR:-$PWD/var/metrics/run}
mkdir -p "$PROMETHEUS_MULTIPROC_DIR" && rm -f "$PROMETHEUS_MULTIPROC_DIR"/*.db
# Start-up warnings (payments.W001, ...) once, not once per process: `make run`'s migrate showed them, or
# `manage.py check` does here (an error stops here); the processes below stay quiet about them.
if [ "${CREDITSERVICE_CHECKS_SHOWN:-}" != 1 ]; then
  $PY manage.py check
fi
export CREDITSERVICE_CHECKS_SHOWN=1
# Ctrl-C (or a TERM) stops our jobs and ends quietly with 0. Only our own jobs are signalled: `kill 0` would
# signal the whole process group, make included, which then reported "Terminated" as if something failed.
stop() {
  trap - INT TERM EXIT
  kill $(jobs -p) 2>/dev/null || true
  wait || true
}
trap 'stop; exit 0' INT TERM
trap stop EXIT
$PY -m celery -A creditservice worker --loglevel=INFO --concurrency=1 --pool=solo &
$PY -m celery -A creditservice beat --loglevel=INFO &
$PY manage.py runserver "127.0.0.1:${PORT}" --noreload &
# The gRPC admission API beside it (GRPC_HOST:GRPC_PORT, 127.0.0.1:50051 by default).
$PY manage.py grpc_serve &
# Once they are up, under their start-up logs: URLs, logins, the demo key (or how to make one).
# `manage.py demo_access` prints the same box at any time.
$PY manage.py demo_access --wait 90 --ready-dir "$CREDITSERVICE_READY_DIR" || true
# The first of them to stop (a crash, a configuration error) stops the others.
wait -n
