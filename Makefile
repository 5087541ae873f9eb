# Set-up and entry points. `make run` and `make test` work on a bare machine
# that has Python 3.10 (pyenv's is found by default): each creates .venv from
# requirements.lock when it is missing or older than the lock, else reuses it.
PYTHON310 ?= $(firstword $(wildcard /root/.pyenv/versions/3.10.*/bin/python) $(shell command -v python3.10 2>/dev/null))
VENV := .venv
PY := $(VENV)/bin/python
INSTALLED := $(VENV)/.installed
SPANS := data/spans/.complete
export TF_USE_LEGACY_KERAS := 1

.PHONY: run test setup data browser databases bench demo clean

run: $(INSTALLED) $(SPANS)
	$(PY) pipeline/run_local.py

test: $(INSTALLED) $(SPANS) browser databases
	$(PY) -m pytest tests

setup: $(INSTALLED)

$(INSTALLED): requirements.lock setup.py
	@test -n "$(PYTHON310)" || { echo "Python 3.10 not found: install it (pyenv install 3.10.13) or pass PYTHON310=/path/to/python3.10"; exit 1; }
	test -x $(PY) || $(PYTHON310) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip==24.3.1
	$(PY) -m pip install --no-deps -r requirements.lock
	$(PY) -m pip install --no-deps -e .
	touch $@

data: $(SPANS)

$(SPANS): data/make_spans.py $(INSTALLED)
	$(PY) data/make_spans.py
	touch $@

# Headless Chromium renders the lineage and monitoring HTML pages in the tests.
browser:
	@command -v chromium >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; }

# Real PostgreSQL and MariaDB servers for the metadata store tests: their fixtures
# start them in a temporary folder (tests/metadata_server/servers.py); none runs here.
databases:
	@ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql; }
	@test -x /usr/sbin/mariadbd || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends mariadb-server; }

# The whole loop on one terminal: spans arrive, models are trained, validated on the
# serving stack, released as canary and promoted while a client sends traffic.
demo: $(INSTALLED)
	$(PY) -m demo

bench: $(INSTALLED) $(SPANS)
	$(PY) benchmarks/pipeline_bench.py

clean:
	rm -rf outputs data/spans
