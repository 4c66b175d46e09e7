#!/usr/bin/env bash
# Training throughput, ours against the standard HF Trainer, same model/data/batch, one after the other.
# Usage: bash bench/train_throughput.sh [OUT_DIR]   (nothing else should run on the machine)
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-bench/results}
PEER=../shared/bench/peer_hf_trainer.py
PY=.venv/bin/python
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
mkdir -p "$OUT"
ours() {  # $1 tag, rest: extra CLI args
  local tag=$1; shift
  $PY cli.py fit --config configs/sst2_classify.yaml --trainer.max_steps 200 --trainer.limit_val_batches 0 \
    --trainer.enable_progress_bar false --trainer.logger.init_args.save_dir /tmp/bench_runs \
    --trainer.logger.init_args.name "$tag" "$@" 2>&1 | grep TrainThroughput
  cp "$(ls -td /tmp/bench_runs/$tag/version_* | head -1)/throughput.json" "$OUT/ours_$tag.json"
}
ours full_s200
$PY $PEER --max-steps 200 --batch-size 32 --padding dynamic --seed 42 --no-eval --tag peer_dynamic --result-json "$OUT/peer_dynamic_s200.json" | tail -1
ours full_s200_rep2
$PY $PEER --max-steps 60 --batch-size 32 --padding max_length --seed 42 --no-eval --tag peer_maxlen --result-json "$OUT/peer_maxlen128_s60.json" | tail -1
