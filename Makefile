# CityGrid: two commands do all the set-up on a fresh Debian machine.
#   make run   - install what is missing, start PostGIS, migrate, load the demo city, serve :8000
#   make test  - the same set-up, then the whole test suite
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell sha1sum requirements.lock pyproject.toml | sha1sum | cut -c1-12)
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
PG_VERSION ?= 15
DEBIAN_PACKAGES := postgresql-$(PG_VERSION) postgresql-$(PG_VERSION)-postgis-3 chromium fonts-wqy-microhei wrk

.PHONY: run test sysdeps venv db-dev db-test lint bench clean-db

run: sysdeps venv db-dev
	$(BIN)/citygrid serve

test: sysdeps venv db-test
	$(BIN)/python -m pytest

# System packages from Debian, only when something is missing (fast the second time).
sysdeps:
	@missing=""; \
	for p in $(DEBIAN_PACKAGES); do dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "install ok installed" || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq $$missing >/dev/null; \
	fi

venv: $(STAMP)

$(STAMP): requirements.lock pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --disable-pip-version-check -r requirements.lock
	$(BIN)/pip install -q --disable-pip-version-check --no-deps -e .
	rm -f $(VENV)/.installed-* && touch $@

db-dev: venv
	$(BIN)/python -m app.devdb up citygrid
	$(BIN)/citygrid db upgrade
	$(BIN)/citygrid demo load --if-empty

db-test: venv
	$(BIN)/python -m app.devdb up citygrid_test citygrid_test_empty

lint: venv
	$(BIN)/ruff check app gis grids layers data tests bench
	$(BIN)/mypy

bench: sysdeps venv
	$(BIN)/python -m bench.run

clean-db:
	$(BIN)/python -m app.devdb down; rm -rf .pgdata
