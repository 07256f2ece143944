# Every target builds its own environment in .venv, so a fresh clone needs nothing but python3.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
DC     := $(VENV)/bin/densechange
STAMP  := $(VENV)/.installed

.PHONY: install install-gpu test docs demo compare study bench clean

install: $(STAMP)

# One resolution of everything (the dev extra includes the docs' packages). pip byte-compiles what it
# installs: a machine with PYTHONDONTWRITEBYTECODE set would otherwise compile torch in every process.
$(STAMP): setup.cfg pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -e '.[dev]'
	$(PY) -c "import torch, timm, faiss, omegaconf, safetensors, rasterio; print('environment ready: torch', torch.__version__, 'timm', timm.__version__)"
	touch $(STAMP)

# faiss-gpu replaces faiss-cpu (both provide the `faiss` module, so only one may be installed).
install-gpu: $(STAMP)
	$(PY) -m pip uninstall -y faiss-cpu
	$(PY) -m pip install 'faiss-gpu>=1.8'
	$(PY) -c "import faiss; print('faiss GPUs visible:', faiss.get_num_gpus())"

# The 15 slowest tests are printed after every run; torch.compile's kernel cache stays inside .venv.
# Then the tests whose numbers depend on the CPU's kernels (marker `numeric`, the multi-process ones left out)
# run again on the AVX2 kernels of ATen and oneDNN: a CPU with AVX-512 or AMX checks both instruction sets.
# The toolkit's own modules are compiled once for the suite's many processes, even where the
# environment sets PYTHONDONTWRITEBYTECODE (an empty value turns it off).
TEST_ENV := TORCHINDUCTOR_CACHE_DIR=$(abspath $(VENV))/torchinductor-cache PYTHONDONTWRITEBYTECODE=
AVX2_CAPS := ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2
# One pytest worker per core (pytest-xdist), each on one intra-op thread (tests/conftest.py); idle workers
# take queued tests from busy ones (worksteal), so the long multi-process tests do not leave a core idle at the end.
test: $(STAMP)
	$(TEST_ENV) $(PY) -m pytest -q tests -n auto --dist worksteal --durations=15
	$(TEST_ENV) $(AVX2_CAPS) $(PY) -m pytest -q tests -n auto --dist worksteal -m "numeric and not slow" --durations=5

# The documentation site (docs/, mkdocs.yml) into site/; --strict turns every broken link or page into an error.
# The config reference is generated from the config dataclasses by docs/hooks/config_reference.py.
# The dev extra that `make install` installs holds the docs' packages (also alone: pip install '.[docs]').
docs: $(STAMP)
	$(VENV)/bin/mkdocs build --strict --site-dir site

# pretrain -> finetune -> predict -> evaluate on the embedded synthetic data, a few minutes on a CPU.
DEMO := runs/demo
demo: $(STAMP)
	rm -rf $(DEMO)
	$(DC) synth $(DEMO)/scenes kind=image-mask n=32 size=128 seed=0
	$(DC) synth $(DEMO)/pairs kind=change n=64 size=128 seed=1
	$(DC) check $(DEMO)/pairs
	$(DC) pretrain --config configs/pretrain/demo.yaml data.root=$(DEMO)/scenes data.split=train run.dir=$(DEMO)/pretrain
	$(DC) weights inspect $(DEMO)/pretrain/encoder.safetensors
	$(DC) finetune --config configs/finetune/demo.yaml data.root=$(DEMO)/pairs data.crop_size=128 \
		model.encoder=$(DEMO)/pretrain/encoder.safetensors run.dir=$(DEMO)/finetune
	$(DC) predict checkpoint=$(DEMO)/finetune/best.safetensors \
		a=$(DEMO)/pairs/A b=$(DEMO)/pairs/B out=$(DEMO)/change distance=$(DEMO)/distance
	$(DC) evaluate checkpoint=$(DEMO)/finetune/best.safetensors data.root=$(DEMO)/pairs data.split=test \
		pseudo_change=each out=$(DEMO)/metrics.json | tee $(DEMO)/evaluate.txt
	@echo "demo done: change maps in $(DEMO)/change/ (e.g. $$(ls $(DEMO)/change | grep -m1 "\.png$$")), distance maps in $(DEMO)/distance/"
	@echo "final test score: $$(tail -1 $(DEMO)/evaluate.txt)"

# Does SaDL or DeepCL help? A small grid on the embedded data (densechange compare), about 10 minutes on 2 cores:
# random and demo-pretrained encoders, with and without the metric branch, half and all of the labels, 2 seeds.
COMPARE := runs/compare
compare: $(STAMP)
	rm -rf $(COMPARE)
	$(DC) synth $(COMPARE)/scenes kind=image-mask n=32 size=128 seed=0
	$(DC) synth $(COMPARE)/pairs kind=change n=80 size=128 seed=1
	$(DC) pretrain --config configs/pretrain/demo.yaml data.root=$(COMPARE)/scenes data.split=train run.dir=$(COMPARE)/sadl
	$(DC) compare --config configs/finetune/demo.yaml grid.out=$(COMPARE)/grid \
		'grid.encoders=[random,sadl=$(COMPARE)/sadl/encoder.safetensors]' 'grid.variants=[deepcl,no_metric]' \
		'grid.fractions=[0.5,1]' 'grid.seeds=[0,1]' grid.steps=36 'grid.baselines=[random/deepcl,random/no_metric]' \
		data.root=$(COMPARE)/pairs data.crop_size=96 data.val_split=null
	@echo "comparison done: $(COMPARE)/grid/results.md, results.csv and f1_vs_fraction.png"

# The study behind docs/study.md (about 2.5 hours on a 2-core CPU, resumable).
study: $(STAMP)
	PY=$(PY) bash bench/study/run.sh

bench: $(STAMP)
	$(PY) bench/pretrain_step.py

clean:
	rm -rf $(VENV) runs site .pytest_cache
