# The two entry points of the README. Each makes .venv and installs what it needs.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test install clean serve

$(BIN)/python:
	$(PY) -m venv $(VENV)

# torch==2.13.0 first: on a machine without CUDA that is the CPU wheel on local disk;
# asking for a bare 'torch' would pull a multi-GB CUDA build.
$(STAMP): $(BIN)/python pyproject.toml
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -c "import torch" 2>/dev/null || $(BIN)/python -m pip install -q torch==2.13.0
	$(BIN)/python -m pip install -q -e '.[test,app,bench]'
	touch $(STAMP)

# Browser tests need Debian's chromium (Playwright drives it; no browser download).
CHROMIUM := /usr/bin/chromium
$(CHROMIUM):
	@command -v apt-get >/dev/null || { echo "install Chromium and set LATENTATLAS_CHROMIUM to its path"; exit 1; }
	SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq chromium

install: $(STAMP)

# demo-out is the demo's own folder: a rerun refreshes it (--force), as `make clean` removes it.
demo: $(STAMP)
	$(BIN)/latentatlas demo --out demo-out --force

# The web app on http://127.0.0.1:7860
serve: $(STAMP)
	$(BIN)/latentatlas serve

test: $(STAMP) $(CHROMIUM)
	$(BIN)/python -m pytest

clean:
	rm -rf $(VENV) demo-out
