#!/usr/bin/env bash
# `make run`: the web app, a Celery worker and Celery beat together; Ctrl-C stops all three.
set -euo pipefail
PY=${PY:-.venv/bin/python}
PORT=${PORT:-8000}
trap 'trap - INT TERM EXIT; kill 0 2>/dev/null; wait' INT TERM EXIT
echo "Serving http://127.0.0.1:${PORT}/ (admin: /admin/, API docs: /api/docs/, portal: /portal/). Ctrl-C stops all."
$PY -m celery -A creditservice worker --loglevel=INFO --concurrency=1 --pool=solo &
$PY -m celery -A creditservice beat --loglevel=INFO &
$PY manage.py runserver "127.0.0.1:${PORT}" --noreload &
wait -n
