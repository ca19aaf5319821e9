# The two commands: `make run` and `make test`. See README.md.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PORT ?= 8000
export PORT

.PHONY: run test soak serve bench lint venv dev-venv test-deps migrate seed clean

$(VENV)/.runtime: requirements.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements.txt
	touch $@

$(VENV)/.dev: $(VENV)/.runtime requirements-dev.txt
	$(PY) -m pip install -q -r requirements-dev.txt
	touch $@

venv: $(VENV)/.runtime
dev-venv: $(VENV)/.dev

migrate: venv
	$(PY) manage.py migrate --noinput

# Local development settings, written once by `make run` when there is no .env (never overwritten):
# DEBUG=1 and a random SECRET_KEY, so that manage.py in another shell runs as it does under make run.
.env:
	@set -C; umask 077; { \
	  echo "# Written once by make run for local development; yours to edit, never overwritten."; \
	  echo "DEBUG=1"; \
	  echo "SECRET_KEY=$$($(PYTHON) -c 'import secrets; print(secrets.token_urlsafe(50))')"; \
	} > $@
	@echo "Wrote .env for local development (DEBUG=1 and a new random SECRET_KEY)."

## make run: set up, migrate, seed a demo, serve the app with a Celery worker and beat (Ctrl-C stops all).
# collectstatic: with DEBUG=0 the static files are served by WhiteNoise from STATIC_ROOT only.
run: .env migrate
	$(PY) manage.py collectstatic --noinput -v 0
	CREDITSERVICE_CHECKS_SHOWN=1 $(PY) manage.py seed_demo
	CREDITSERVICE_CHECKS_SHOWN=1 PY=$(PY) exec bash scripts/run_all.sh

## make serve: the production web server alone (gunicorn), as deployed and as `make bench` measures it.
serve: venv
	$(PY) manage.py collectstatic --noinput -v 0
	$(VENV)/bin/gunicorn creditservice.wsgi:application -c scripts/gunicorn.conf.py

## make test: the whole suite, on PostgreSQL and Redis when they answer (required under CI=true); then,
## when that ran on PostgreSQL, again on SQLite (the embedded default): every test not marked postgres
## or redis. The second pass runs even if the first failed; either failing fails `make test`.
SQLITE_TEST_DATABASE := $(CURDIR)/var/test-sqlite.sqlite3
test: dev-venv test-deps
	@mkdir -p var; eval "$$($(PY) -m creditservice.testing.services)"; status=0; \
	$(PY) -m pytest $(PYTEST_ARGS) || status=$$?; \
	case "$${DATABASE_URL:-}" in postgres*) \
	  echo "== The suite again on SQLite, the embedded default (tests marked postgres or redis left out) =="; \
	  env -u TEST_REDIS_URL -u CELERY_BROKER_URL DATABASE_URL=sqlite:///$(SQLITE_TEST_DATABASE) \
	    CREDITSERVICE_TEST_SQLITE_PASS=1 $(PY) -m pytest -m "not postgres and not redis" $(PYTEST_ARGS) \
	    || status=$$?;; \
	esac; exit $$status

## make soak: 8 clients doing credits, reservations, commits and releases for SOAK_SECONDS (60) against a
## fresh SQLite server as `make run` serves it; prints the 5xx count and check_ledger. Against a running
## `make run`: make soak SOAK_ARGS="--url http://127.0.0.1:8000".
soak: venv
	$(PY) scripts/soak.py --seconds $${SOAK_SECONDS:-60} $(SOAK_ARGS)

## make fuzz: the API against its own schema (creditservice/tests/test_api_schema_fuzz.py) with FUZZ_EXAMPLES (100)
## examples per operation for each caller and mode (600 per operation in all) and a new random seed each run.
.PHONY: fuzz
fuzz: dev-venv
	FUZZ_EXAMPLES=$${FUZZ_EXAMPLES:-100} FUZZ_RANDOM=1 $(PY) -m pytest creditservice/tests/test_api_schema_fuzz.py -q $(PYTEST_ARGS)

test-deps:
	@bash scripts/install_test_deps.sh

lint: dev-venv
	$(VENV)/bin/ruff check .

## make bench: admission (HTTP, the nginx gateway, gRPC) and billing throughput on the real stack (PostgreSQL); prints the figures.
bench: dev-venv
	@bash scripts/install_bench_deps.sh
	@eval "$$(CI=true $(PY) -m creditservice.testing.services)" && $(PY) -m bench $(BENCH_ARGS)

clean:
	rm -rf var staticfiles .pytest_cache
