#!/usr/bin/env bash
# LoRA against full fine-tuning throughput on the same backbone, batch and data, one after the other.
# Usage: bash bench/lora_throughput.sh [OUT_DIR]            SST-2, 200 steps each: LoRA, full, LoRA
#        DATA=steam bash bench/lora_throughput.sh [OUT_DIR]  Steam reviews (max_length 256), 80 steps each: full, LoRA, full, LoRA
#        EXTRA="--trainer.precision=bf16-mixed" TAG=_bf16 ...   the same overrides for every run, a suffix for the files
#        LORA_EXTRA="--model.init_args.layers_to_transform=[3,4,5]" ...   overrides for the LoRA runs only
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-bench/results}
PY=.venv/bin/python
DATA=${DATA:-sst2}
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
mkdir -p "$OUT"
EXTRA=${EXTRA:-} LORA_EXTRA=${LORA_EXTRA:-} TAG=${TAG:-}
run() {  # $1 config, $2 tag, $3 steps
  local more=$EXTRA name=$2$TAG
  case $1 in *lora*) more="$more $LORA_EXTRA" ;; esac
  # shellcheck disable=SC2086  # the overrides are words
  $PY cli.py fit --config "configs/$1.yaml" --trainer.max_steps "$3" --trainer.limit_val_batches 0 \
    --trainer.enable_progress_bar false --trainer.logger.init_args.save_dir /tmp/bench_runs \
    --trainer.logger.init_args.name "$name" $more 2>&1 | grep TrainThroughput
  cp "$(ls -td /tmp/bench_runs/$name/version_* | head -1)/throughput.json" "$OUT/ours_$name.json"
}
if [ "$DATA" = steam ]; then
  run steam_classify steam_full_s80 80
  run steam_lora steam_lora_s80 80
  run steam_classify steam_full_s80_rep2 80
  run steam_lora steam_lora_s80_rep2 80
else
  run sst2_lora lora_s200 200
  run sst2_classify full_s200_rep3 200
  run sst2_lora lora_s200_rep2 200
fi
