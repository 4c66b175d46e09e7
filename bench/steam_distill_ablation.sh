#!/bin/bash
# Issue 4 on Steam: the pipeline's 3-layer student (distilled from the LoRA teacher's cached logits) against the
# same student fine-tuned without a teacher: same init (layers 0, 2, 5 of the merged teacher), same 8k-review
# slice, same LR (1e-4), schedule, 2 epochs and seed. Run after `python cli.py pipeline --config configs/steam_pipeline.yaml`.
# Usage: bash bench/steam_distill_ablation.sh [OUT_DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
OUT=${1:-bench/results/steam_distill}
T=${TEACHER:-runs/steam_pipeline/teacher/fit/version_0/hf_model}   # the merged LoRA teacher
R=/tmp/runs/steam_i4
mkdir -p "$OUT"
last() { ls -td "$R/$1"/version_* | head -1; }
.venv/bin/python cli.py fit --config configs/steam_classify.yaml --model.init_args.model_name=$T \
  --model.init_args.keep_layers=[0,2,5] --model.init_args.optimizer.init_args.lr=1e-4 \
  --trainer.max_epochs=2 --data.init_args.limit_train=8000 --trainer.enable_progress_bar=false \
  --trainer.logger.init_args.save_dir=$R --trainer.logger.init_args.name=ablation_l3 \
  > "$OUT/ablation_l3.log" 2>&1
A=$(last ablation_l3)
cp "$A/metrics.csv" "$OUT/ablation_l3_metrics.csv"
cp "$A/throughput.json" "$OUT/ablation_l3_throughput.json"
cp runs/steam_pipeline/student/fit/version_0/metrics.csv "$OUT/distilled_l3_metrics.csv"
# Every model on the deterministic test split (the pipeline's dev accuracy is on the validation split, which also
# picked each run's best checkpoint): the merged LoRA teacher, the distilled student, the no-teacher student.
for pair in teacher:$T student:runs/steam_pipeline/student/fit/version_0/hf_model ablation:$A/hf_model; do
  name=${pair%%:*}; dir=${pair#*:}
  .venv/bin/python cli.py test --config configs/steam_classify.yaml --model.init_args.model_name=$dir \
    --trainer.enable_progress_bar=false --trainer.logger.init_args.save_dir=$R \
    --trainer.logger.init_args.name=test_$name > "$OUT/test_$name.log" 2>&1
  cp "$(last test_$name)/test_report.json" "$OUT/test_$name.json"
done
