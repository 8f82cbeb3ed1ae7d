# Two commands from a fresh clone: `make demo` and `make test`.
# Both create the virtualenv and install the project themselves.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.installed
NEWSLETTER := $(BIN)/newsletter
DEMO_SUBSCRIBERS := alice@example.org bruno@example.org camille@example.org

.PHONY: demo test test-deps lint clean bench bench-build bench-send bench-cli bytecode

$(INSTALLED): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[test]'
	touch $(INSTALLED)

# The demo's unsubscribe-link signing key: random, local, never committed (.env is ignored).
.env:
	$(PYTHON) -c "import secrets; print('NEWSLETTER_TOKEN_KEY=' + secrets.token_urlsafe(32))" > .env

## Build the demo newsletter and send its newest issue to the local outbox (no account needed).
demo: $(INSTALLED) .env
	@set -a; . ./.env; set +a; \
	if [ -z "$$($(NEWSLETTER) subscribers list)" ]; then \
		$(NEWSLETTER) subscribers add --source demo $(DEMO_SUBSCRIBERS); \
	fi; \
	$(NEWSLETTER) build && \
	{ $(NEWSLETTER) send --yes; status=$$?; [ $$status -eq 0 ] || [ $$status -eq 3 ]; } && \
	echo "Open public/index.html, or the messages in outbox/new/ with any mail client."

# The Node mail parser the suite reads messages back with (tests/node/); reinstalled only when
# its lock file changes.
NODE_TEST_DEPS := tests/node/node_modules/.package-lock.json

$(NODE_TEST_DEPS): tests/node/package-lock.json
	@command -v npm >/dev/null || { echo "make test needs Node.js 18+ and npm (Debian: apt-get install nodejs npm)"; exit 1; }
	npm ci --prefix tests/node --no-audit --no-fund --loglevel=error
	touch $(NODE_TEST_DEPS)

## Run the whole test suite (installs what it needs first).
# One worker per core; tests wait on conditions, never on each other, so they can share the machine.
test: $(INSTALLED) $(NODE_TEST_DEPS) test-deps lint
	$(BIN)/python -m pytest -n auto --dist worksteal

## Lint, format and types: zero findings, or make test stops here.
lint: $(INSTALLED)
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src
	$(BIN)/mypy

# The browser tests drive Debian's chromium (Playwright's own browser download is not used).
# tests/browser.py reads the same path from NEWSLETTER_CHROMIUM.
CHROMIUM ?= $(or $(NEWSLETTER_CHROMIUM),/usr/bin/chromium)

## What the suite needs besides Python: Debian's chromium, installed when running as root.
test-deps:
	@if [ ! -x "$(CHROMIUM)" ]; then \
		if [ "$(CHROMIUM)" = /usr/bin/chromium ] && [ "$$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then \
			echo "Installing Debian's chromium for the browser tests..."; \
			apt-get update -qq && \
			DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
		else \
			echo "Error: $(CHROMIUM) not found; the browser tests need it — run: sudo apt-get install chromium (or set NEWSLETTER_CHROMIUM)" >&2; \
			exit 1; \
		fi; \
	fi

## Benchmarks against peers (minutes; never part of `make test`): figures for issue 13.
bench: bench-cli bench-build bench-send

# pip compiles an installed package's bytecode; this editable checkout gets it here, so that no
# figure includes Python compiling our modules at every start (as it does wherever
# PYTHONDONTWRITEBYTECODE is set, e.g. in many containers and CI images).
bytecode: $(INSTALLED)
	$(BIN)/python -m compileall -q src

bench-cli: $(INSTALLED) bytecode
	$(BIN)/python benchmarks/startup.py
	$(BIN)/python benchmarks/import_csv.py 100000

bench-build: $(INSTALLED) bytecode
	$(BIN)/python benchmarks/build.py

bench-send: $(INSTALLED) bytecode
	$(BIN)/python benchmarks/send.py

clean:
	rm -rf public outbox preview newsletter.db newsletter.db-wal newsletter.db-shm
