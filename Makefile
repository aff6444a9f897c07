# Set-up is part of every target: each one installs what is missing and is
# quick when everything is already there.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
APT_PACKAGES := tesseract-ocr tesseract-ocr-eng fonts-ocr-b tmux sqlite3

.PHONY: run test check lint format bench bench-read bench-lookup system-deps venv clean

run: $(STAMP)
	$(BIN)/kiosk --samples

test: $(STAMP)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

check: $(STAMP)
	$(BIN)/ruff format --check .
	$(BIN)/ruff check .
	$(BIN)/mypy kiosk drivers backend tools tests
	$(BIN)/python -m pytest $(PYTEST_ARGS)

format: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

bench: bench-read bench-lookup

bench-read: $(STAMP)
	$(BIN)/python -m tools.bench_read $(BENCH_ARGS)

bench-lookup: $(STAMP)
	$(BIN)/python -m tools.bench_lookup $(BENCH_ARGS)

# Debian packages: Tesseract, the OCR-B font, tmux and the sqlite3 shell (for
# the lookup benchmark's import floor). Installs only when missing,
# and needs root (or sudo) the first time.
system-deps:
	@missing=""; for p in $(APT_PACKAGES); do \
	  dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  SUDO=""; [ "$$(id -u)" = 0 ] || SUDO=sudo; \
	  $$SUDO apt-get update -q && \
	  DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -q $$missing; \
	fi

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)

$(STAMP): pyproject.toml $(VENV)/bin/python
	$(MAKE) system-deps
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $(STAMP)

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .mypy_cache .ruff_cache
