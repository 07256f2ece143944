# Every target builds its own environment in .venv, so a fresh clone needs nothing but python3.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: install install-gpu test demo bench clean

install: $(STAMP)

$(STAMP): setup.cfg pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --upgrade pip
	$(PY) -m pip install -e '.[dev]'
	$(PY) -c "import torch, timm, faiss, omegaconf, safetensors; print('environment ready: torch', torch.__version__, 'timm', timm.__version__)"
	touch $(STAMP)

# faiss-gpu replaces faiss-cpu (both provide the `faiss` module, so only one may be installed).
install-gpu: $(STAMP)
	$(PY) -m pip uninstall -y faiss-cpu
	$(PY) -m pip install -e '.[dev,gpu]' --no-deps
	$(PY) -m pip install 'faiss-gpu>=1.8'

test: $(STAMP)
	$(PY) -m pytest -q tests

demo: $(STAMP)
	$(PY) -m pretrain.demo

bench: $(STAMP)
	$(PY) bench/pretrain_step.py

clean:
	rm -rf $(VENV) runs .pytest_cache
