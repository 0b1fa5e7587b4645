# medrl: `make demo` and `make test` set everything up on first use (.venv, editable install).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.medrl-installed
export MEDRL_PROGRESS ?= 1

.PHONY: demo test bench lint install clean

install: $(STAMP)

# Re-install when pyproject.toml changes. torch/torchvision are installed first, together, so pip picks a
# matching pair (the Qwen-VL processors need torchvision).
$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q 'torch>=2.14' 'torchvision>=0.29'
	$(PY) -m pip install -q -e '.[dev]'
	@touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/medrl demo

test: $(STAMP)
	$(PY) -m pytest tests

bench: $(STAMP)
	$(VENV)/bin/medrl bench prefix
	$(VENV)/bin/medrl bench head
	$(VENV)/bin/medrl bench grpo-step

lint: $(STAMP)
	$(VENV)/bin/ruff check .

clean:
	rm -rf runs .pytest_cache .ruff_cache *.egg-info
