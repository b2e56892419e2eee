# Two commands set everything up on a fresh machine: `make demo` and `make test`.
PYTHON   ?= python3
VENV     := .venv
PY       := $(VENV)/bin/python
STAMP    := $(VENV)/.installed
# torch and torchvision pinned for this platform (these releases come from the machine's disk).
TORCH    := torch==2.14.1 torchvision==0.29.1
# FAISS=gpu installs faiss-gpu instead of faiss-cpu (never both: they are the same module).
FAISS    ?= cpu

DATASET       ?= vcr
ROOT          ?= data/$(DATASET)
OUT           ?= shards/$(DATASET)
TEACHERS      ?= effnet-lite0,minilm
STUDENT_INPUT ?= pixels:16
FORMAT        ?= wds
CACHE         ?= $(OUT)

OFFLINE := HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1

.PHONY: install test lint extract train demo demo-full bench clean

install: $(STAMP)

# Re-installed only when pyproject.toml changes.
$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --disable-pip-version-check $(TORCH) -e '.[$(FAISS),dev]'
	touch $(STAMP)

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

test: $(STAMP) lint
	$(OFFLINE) $(PY) -m pytest

extract: $(STAMP)
	$(PY) -m extract.run --dataset $(DATASET) --root $(ROOT) --out $(OUT) \
		--teachers $(TEACHERS) --student-input $(STUDENT_INPUT) --format $(FORMAT)

train: $(STAMP)
	$(PY) -m train.run --cache $(CACHE)

# The whole pipeline on embedded synthetic data and the evaluation protocol over it
# (shards/demo/report.md and its plots); demo-full: the whole grid (hours on 2 CPU cores).
demo: $(STAMP)
	$(OFFLINE) $(PY) -m train.demo

demo-full: $(STAMP)
	$(OFFLINE) $(PY) -m train.demo --full

# Speed and size figures (ratios measured in one run); rewrites the table in BENCHMARKS.md.
bench: $(STAMP)
	$(OFFLINE) $(PY) -m benchmarks.run_all

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .ruff_cache
