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
	$(PY) -c "import torch, timm, faiss, omegaconf, safetensors, rasterio; print('environment ready: torch', torch.__version__, 'timm', timm.__version__)"
	touch $(STAMP)

# faiss-gpu replaces faiss-cpu (both provide the `faiss` module, so only one may be installed).
install-gpu: $(STAMP)
	$(PY) -m pip uninstall -y faiss-cpu
	$(PY) -m pip install 'faiss-gpu>=1.8'
	$(PY) -c "import faiss; print('faiss GPUs visible:', faiss.get_num_gpus())"

test: $(STAMP)
	$(PY) -m pytest -q tests

# pretrain -> finetune -> predict -> evaluate on the embedded synthetic data, a few minutes on a CPU.
DEMO := runs/demo
demo: $(STAMP)
	rm -rf $(DEMO)
	$(PY) -m datasets synth $(DEMO)/scenes --kind image-mask --n 32 --size 128 --seed 0
	$(PY) -m datasets synth $(DEMO)/pairs --kind change --n 64 --size 128 --seed 1
	$(PY) -m datasets check $(DEMO)/pairs
	$(PY) -m pretrain --config configs/pretrain/demo.yaml data.root=$(DEMO)/scenes data.split=train run.dir=$(DEMO)/pretrain
	$(PY) -m checkpoints inspect $(DEMO)/pretrain/encoder.safetensors
	$(PY) -m finetune --config configs/finetune/demo.yaml data.root=$(DEMO)/pairs data.crop_size=128 \
		model.encoder=$(DEMO)/pretrain/encoder.safetensors run.dir=$(DEMO)/finetune
	$(PY) -m finetune.predict --checkpoint $(DEMO)/finetune/best.safetensors \
		--a $(DEMO)/pairs/A --b $(DEMO)/pairs/B --out $(DEMO)/change --distance $(DEMO)/distance
	$(PY) -m finetune.evaluate --checkpoint $(DEMO)/finetune/best.safetensors data.root=$(DEMO)/pairs data.split=test \
		--pseudo-change --out $(DEMO)/metrics.json | tee $(DEMO)/evaluate.txt
	@echo "demo done: change maps in $(DEMO)/change/ (e.g. $$(ls $(DEMO)/change | head -1)), distance maps in $(DEMO)/distance/"
	@echo "final test score: $$(tail -1 $(DEMO)/evaluate.txt)"

bench: $(STAMP)
	$(PY) bench/pretrain_step.py

clean:
	rm -rf $(VENV) runs .pytest_cache
