# mlmkit: `make demo` and `make test` work as the first command on a fresh clone.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# A CPU build of torch 2.13.0 installs quickly where a local wheel exists; override for CUDA, e.g. TORCH_SPEC='torch>=2.4'
TORCH_SPEC ?= torch==2.13.0
STAMP := $(VENV)/.mlmkit-installed

export HF_HUB_DISABLE_TELEMETRY := 1
export TOKENIZERS_PARALLELISM := false

.PHONY: install demo test test-fast lint bench clean mutation

install: $(STAMP)

$(STAMP): pyproject.toml Makefile
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet "$(TORCH_SPEC)"
	$(BIN)/python -m pip install --quiet -e ".[embedded,dev]"
	touch $(STAMP)

demo: install
	HF_HUB_OFFLINE=1 $(BIN)/mlmkit pretrain --recipe demo output.dir=runs/demo/mlm output.overwrite=true
	HF_HUB_OFFLINE=1 $(BIN)/mlmkit finetune sentiment --recipe demo --model runs/demo/mlm --output runs/demo/sentiment --overwrite
	HF_HUB_OFFLINE=1 $(BIN)/mlmkit fill-mask "Self-driving [MASK] are the future." --model runs/demo/mlm
	HF_HUB_OFFLINE=1 $(BIN)/mlmkit fill-mask "I [MASK] my new electric car." --model runs/demo/mlm

test: install
	HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 $(BIN)/python -m pytest -q -p no:cacheprovider tests

# for local work: everything but the tests marked slow (training loops and whole commands end to end)
test-fast: install
	HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 $(BIN)/python -m pytest -q -p no:cacheprovider -m "not slow" tests

# Mutation testing (tools/mutation.py): SET=masking mutates src/mlmkit/masking/ against the fast tests; SET=training
# mutates training/checkpoint.py and training/pretrain.py against the fast tests and the in-process training tests.
# CPU-heavy (hours on 2 cores), not part of `make test` or CI. Results stay in .mutation/<SET>/ between runs.
# A subset: make mutation SET=masking MUTANTS='mlmkit.masking.units.*'
SET ?= masking
mutation: install
	nice $(BIN)/python tools/mutation.py $(SET) $(if $(MUTANTS),--only '$(MUTANTS)')

lint: install
	$(BIN)/ruff check src tests benchmarks tools
	$(BIN)/lint-imports  # the one-way layers of ARCHITECTURE.md, declared in .importlinter

bench: install
	HF_HUB_OFFLINE=1 $(BIN)/python benchmarks/masking_throughput.py
	HF_HUB_OFFLINE=1 $(BIN)/python benchmarks/pretrain_throughput.py
	HF_HUB_OFFLINE=1 $(BIN)/python benchmarks/fill_mask_throughput.py

clean:
	rm -rf runs .pytest_cache .ruff_cache
