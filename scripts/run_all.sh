#!/usr/bin/env bash
# `make run`: the web app, a Celery worker and Celery beat together; Ctrl-C stops all three.
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
trap 'trap - INT TERM EXIT; kill 0 2>/dev/null; wait' INT TERM EXIT
$PY -m celery -A creditservice worker --loglevel=INFO --concurrency=1 --pool=solo &
$PY -m celery -A creditservice beat --loglevel=INFO &
$PY manage.py runserver "127.0.0.1:${PORT}" --noreload &
# Once all three are up, under their start-up logs: URLs, logins, the demo key (or how to make one).
# `manage.py demo_access` prints the same box at any time.
$PY manage.py demo_access --wait 90 --ready-dir "$CREDITSERVICE_READY_DIR" || true
# The first of the three to stop (a crash, a configuration error) stops the others.
wait -n
