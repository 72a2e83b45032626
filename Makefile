# The two commands: `make demo` runs the demo shop end to end, `make test` runs the tests.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# Dataset folder loaded after the bundled demo catalogue, e.g. DATA=../shared/data/crowdflower
DATA ?=
PORT ?= 8000
# Each entry runs the whole suite once: "embedded" (PostgreSQL 16 + pgvector under var/)
# or a postgresql:// URL of a server of yours.
TEST_DATABASES ?= embedded
PYTEST_ARGS ?=

.PHONY: demo test lint install clean chromium

install: $(STAMP)

$(STAMP): requirements.txt requirements-dev.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	touch $@

demo: $(STAMP)
	$(PY) -m config.demo --port $(PORT) $(if $(DATA),--data $(DATA))

# The browser tests drive Debian's chromium; install it when missing (needs root or sudo).
chromium:
	@command -v chromium >/dev/null || { \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  APT="$$SUDO env DEBIAN_FRONTEND=noninteractive apt-get -y -q"; \
	  $$APT install chromium >/dev/null || { $$APT update >/dev/null && $$APT install chromium >/dev/null; }; }

test: $(STAMP) chromium
	@set -e; for db in $(TEST_DATABASES); do \
	  if [ "$$db" = embedded ]; then \
	    echo "== tests on the embedded PostgreSQL (with pgvector)"; \
	    env -u DATABASE_URL $(PY) -m pytest $(PYTEST_ARGS); \
	  else \
	    echo "== tests on $$db"; \
	    DATABASE_URL="$$db" $(PY) -m pytest $(PYTEST_ARGS); \
	  fi; \
	done

# Lint and format check (ruff.toml); `ruff format .` fixes the format.
lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

clean:
	rm -rf $(VENV) var
