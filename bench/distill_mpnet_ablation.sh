#!/bin/bash
# Issue 4's ablation for the SST-2 student of record (configs/sst2_pipeline.yaml): the same student, layers 0, 5
# and 11 of the merged all-mpnet-base-v2 LoRA teacher, trained on the gold labels alone (no teacher, no augmented
# texts) with the student stage's other settings: lr 5e-5, 2 epochs, validation every half epoch, bf16-mixed.
# The teacher is first trained as the pipeline's teacher stage trains it (1 epoch on the seeded 20k slice,
# bf16-mixed, adapter dropout 0.1, lr 5e-4), unless TEACHER names a merged teacher that exists
# (e.g. TEACHER=runs/sst2_pipeline/teacher/fit/version_0/hf_model).
# Usage: bash bench/distill_mpnet_ablation.sh [OUT_DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
EXTRA="--trainer.precision=bf16-mixed" STUDENT_EXTRA="--model.init_args.optimizer.init_args.lr=5.0e-5" \
  STUDENT_INIT=teacher KEEP="[0,5,11]" EPOCHS=2 DISTILL=0 bash bench/distill_mpnet_sst2.sh "${1:-bench/results/sst2_mpnet_ablation}"
