# Two commands set up everything on a fresh machine with only Python 3.11 and pip:
#   make run    -- the app on http://127.0.0.1:8501 (then also: .venv/bin/vae-studio --help)
#   make test   -- make lint (ruff), then the whole test suite (unit, reliability, app, real-browser end-to-end)
# Also: make lint (ruff alone), make test-fast (no browser tests), make bench (writes bench/RESULTS.md).
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
CHROMIUM := /usr/bin/chromium
PORT ?= 8501
APT_GET := $(if $(filter 0,$(shell id -u)),apt-get,sudo apt-get)

.PHONY: setup run test test-fast lint bench browser clean

setup: $(STAMP)

$(STAMP): requirements.txt requirements-dev.txt pyproject.toml
	@command -v $(PYTHON) >/dev/null 2>&1 || { echo "need $(PYTHON) on PATH"; exit 1; }
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements-dev.txt
	# vae_core itself, editable: the `vae-studio` command, and `python -m vae_core` from any folder.
	# The venv's own setuptools builds it (no download); its dependencies are the pinned ones above.
	$(PY) -m pip install --quiet --no-build-isolation -e .
	touch $(STAMP)

# Debian's Chromium for the browser tests (Playwright drives it; it never downloads a browser).
browser: $(CHROMIUM)

$(CHROMIUM):
	$(APT_GET) update -qq
	DEBIAN_FRONTEND=noninteractive $(APT_GET) install -y -qq chromium

run: setup
	$(PY) -m streamlit run app.py --server.port $(PORT)

test: lint browser
	$(PY) -m pytest tests -q

# ruff, configured in pyproject.toml: the whole tree lints clean and is formatted.
lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

test-fast: setup
	$(PY) -m pytest tests/unit tests/app tests/reliability -q

bench: setup
	$(PY) -m bench

clean:
	rm -rf $(VENV) .pytest_cache tests/e2e/artifacts
