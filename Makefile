# Two commands set everything up on a fresh machine with Python 3.11+:
#   make demo   installs, migrates, seeds demo data and serves on http://127.0.0.1:8000
#   make test   installs and runs the test suite, on every core (XDIST= for one process)
# While developing: make test-fast (the suite without browser, fuzzing, load and slow tests).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
HOST ?= 127.0.0.1
PORT ?= 8000
STAMP := $(VENV)/.installed

.PHONY: demo test test-fast install serve migrate lint lint-imports bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)

migrate: install
	$(BIN)/python manage.py migrate --noinput
	$(BIN)/python manage.py clickhouse_migrate

demo: migrate
	$(BIN)/python manage.py demo
	@$(MAKE) --no-print-directory serve

# One process (the embedded mode): uvicorn on config.asgi serves GrowthBook's streams (GET /sub/<key>)
# on its event loop and every other request with Django in 8 threads (ASGI_THREADS), so a change made
# in the admin reaches the streams of the same process at once. Production runs web on gunicorn and
# the streams in a process of their own (docker-compose.yml).
serve: install
	@echo "Serving on http://$(HOST):$(PORT)/admin/  (API docs: /api/docs, health: /api/health). Ctrl-C stops."
	$(BIN)/uvicorn config.asgi:application --host $(HOST) --port $(PORT) --timeout-graceful-shutdown 3

# pytest-xdist: one worker per core; XDIST= runs one process (for --pdb, or to compare).
# Each worker has its own test database, Redis key prefix (so its own streams channel), chDB
# directory, temporary directories and ports, with DATABASE_URL and REDIS_URL set too (CI); the
# serial (load) test runs while the others wait, heavy tests are handed out first
# (tests/support/parallel.py). loadgroup hands out tests one at a time as workers free up, an
# xdist_group's tests together on one worker, in the order collected (--no-loadscope-reorder: the
# transactional tests must stay last).
XDIST ?= -n auto --dist loadgroup --no-loadscope-reorder

test: install
	$(BIN)/ruff check .
	$(BIN)/lint-imports
	$(BIN)/python -m pytest $(XDIST) $(PYTEST_ARGS)

# The quick subset: no browser, fuzzing, load tests, statistical simulations or other slow tests
# (markers in pyproject.toml), on every core like make test.
FAST := not slow and not browser and not fuzz and not load
test-fast: install
	$(BIN)/ruff check .
	$(BIN)/lint-imports
	$(BIN)/python -m pytest -m "$(FAST)" $(XDIST) $(PYTEST_ARGS)

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports

# The architecture contracts (.importlinter): pure logic without Django, apps depending one way,
# only analytics.clickhouse importing the ClickHouse drivers.
lint-imports: install
	$(BIN)/lint-imports

# Every benchmark in one table; BENCH="--quick" for a short smoke run, BENCH="ingest evaluate" for some.
bench: install
	$(BIN)/python -m bench $(BENCH)

clean:
	rm -rf var/ .pytest_cache .ruff_cache .import_linter_cache
