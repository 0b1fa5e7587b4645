# medrl: `make demo` and `make test` set everything up on first use (.venv, editable install).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.medrl-installed
export MEDRL_PROGRESS ?= 1

.PHONY: demo test test-gguf test-fast bench lint install clean app browser gguf

install: $(STAMP)

# Re-install when pyproject.toml changes. One resolver run for torch, torchvision and the project, so pip picks a
# matching torch/torchvision pair (the Qwen-VL processors need torchvision). --no-compile: byte-compiling every file
# of torch and its CUDA libraries up front cost 17 s of a fresh clone's 95 s install (measured on 2 vCPUs); Python
# compiles the modules a run imports on first use instead.
$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --no-compile 'torch>=2.14' 'torchvision>=0.29' -e '.[dev]'
	@touch $(STAMP)

# The data the single-stage tiny recipes read (runs/demo_data/, seconds), so `medrl train NAME` runs as written; then
# the demo.
demo: $(STAMP)
	$(VENV)/bin/medrl recipes --data
	$(VENV)/bin/medrl demo

# CI's command: lint and format first (seconds), then every test but the GGUF round trips, which need llama.cpp
# compiled (`make test-gguf`, CI's second command: about four minutes of compiling on 2 cores, once).
test: $(STAMP) browser
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(PY) -m pytest tests -m "not gguf"

# The GGUF export checked in llama.cpp itself (tests marked gguf), after `make gguf` builds the tools.
test-gguf: gguf
	$(PY) -m pytest tests -m gguf

# The inner loop: the unit tests without the end-to-end ones marked slow (no browser needed).
test-fast: $(STAMP)
	$(PY) -m pytest tests -m "not slow"

# The app's browser tests drive Debian's Chromium through Playwright (never `playwright install`). Installed here when
# missing (as root, or with passwordless sudo); otherwise make stops and names the one command. Never skipped silently.
CHROMIUM ?= /usr/bin/chromium
CHROMIUM_PKGS := chromium chromium-driver
browser:
	@test -x $(CHROMIUM) || { \
	  if [ "$$(id -u)" = 0 ]; then SUDO=; elif sudo -n true 2>/dev/null; then SUDO=sudo; else \
	    echo "make test: the browser tests need Chromium; run: sudo apt-get update && sudo apt-get install -y $(CHROMIUM_PKGS)" >&2; \
	    exit 1; fi; \
	  echo "installing Debian's Chromium for the browser tests (apt-get)"; \
	  $$SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -qq && \
	  $$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(CHROMIUM_PKGS) >/dev/null && \
	  test -x $(CHROMIUM); }

# `medrl export --format gguf` needs llama.cpp's converter and llama-cpp-python, compiled here for this CPU from one
# pinned source package: about four minutes on 2 cores, once (a second run checks and returns).
gguf: $(STAMP)
	$(VENV)/bin/medrl gguf-setup

app: $(STAMP)
	$(VENV)/bin/medrl app $(APP_ARGS)

# Every CPU benchmark, each as `medrl bench NAME --json` in a fresh process; their tables, JSON and this machine (CPU,
# flags, torch's kernels, threads, versions) replace this CPU kind's section of docs/benchmarks.md. Run it again under
# `ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2` for the AVX2 section.
bench: $(STAMP)
	$(VENV)/bin/medrl bench report

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

clean:
	rm -rf runs .pytest_cache .ruff_cache *.egg-info
