# Two commands set everything up on a fresh machine with Python 3.11+:
#   make demo   installs, migrates, seeds demo data and serves on http://127.0.0.1:8000
#   make test   installs and runs the test suite
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
HOST ?= 127.0.0.1
PORT ?= 8000
STAMP := $(VENV)/.installed

.PHONY: demo test install serve migrate lint bench clean

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

serve: install
	@echo "Serving on http://$(HOST):$(PORT)/admin/  (API docs: /api/docs, health: /api/health). Ctrl-C stops."
	$(BIN)/gunicorn config.wsgi:application --bind $(HOST):$(PORT) --workers 1 --threads 8 --access-logfile -

test: install
	$(BIN)/ruff check .
	$(BIN)/python -m pytest $(PYTEST_ARGS)

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

# Every benchmark in one table; BENCH="--quick" for a short smoke run, BENCH="ingest evaluate" for some.
bench: install
	$(BIN)/python -m bench $(BENCH)

clean:
	rm -rf var/ .pytest_cache .ruff_cache
