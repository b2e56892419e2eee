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

.PHONY: install test lint extract train demo bench clean

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

# Targets whose stage has not landed yet say so and fail, rather than pretend to work.
define require
	@test -f $(1) || { echo "make $@: not yet available ($(1) does not exist yet)"; exit 2; }
endef

extract: $(STAMP)
	$(call require,extract/run.py)
	$(PY) -m extract.run --dataset $(DATASET) --root $(ROOT) --out $(OUT) \
		--teachers $(TEACHERS) --student-input $(STUDENT_INPUT) --format $(FORMAT)

train: $(STAMP)
	$(call require,train/run.py)
	$(PY) -m train.run --cache $(CACHE)

# The whole pipeline on embedded synthetic data (shards/demo/report.md and report.png).
demo: $(STAMP)
	$(OFFLINE) $(PY) -m train.demo

bench: $(STAMP)
	$(call require,benchmarks/run_all.py)
	$(PY) -m benchmarks.run_all

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .ruff_cache
