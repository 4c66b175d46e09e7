#!/bin/bash
# Issue 4, a stronger teacher: all-mpnet-base-v2 (110M) with LoRA (r=8, alpha=32, Q+K+V) on a seeded slice of
# SST-2, then the same 3-layer student as the SST-2 pipeline (layers 0, 2, 5 of the pipeline's fine-tuned
# all-MiniLM-L6-v2 teacher) distilled from mpnet's cached logits over all 67k training sentences, and, for the
# ablation, the same student fine-tuned on the gold labels alone. The cache is keyed by text, so the MPNet
# tokenizer of the teacher and the BERT vocabulary of the student never meet.
# Run after `python cli.py pipeline --config configs/sst2_pipeline_minilm.yaml`.
# Usage: bash bench/distill_mpnet_sst2.sh [OUT_DIR]     (N=20000 training sentences for the teacher by default)
#   STUDENT_INIT=teacher KEEP=[0,5,11] EPOCHS=2 ABLATION=0: the student keeps 3 of the merged mpnet teacher's own
#   12 layers instead (768 wide); the teacher and its cache are reused when TEACHER points at an existing run.
#   EXTRA: overrides for every run (e.g. --trainer.precision=bf16-mixed); STUDENT_EXTRA: for the student and the
#   ablation only; DISTILL=0 skips the distilled student (bench/distill_mpnet_ablation.sh runs the ablation alone).
set -euo pipefail
cd "$(dirname "$0")/.."
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
OUT=${1:-bench/results/distill_mpnet}
N=${N:-20000}
S=${STUDENT_INIT:-runs/sst2_pipeline_minilm/teacher/fit/version_0/hf_model}   # the pipeline's fine-tuned MiniLM
KEEP=${KEEP:-[0,2,5]}
EPOCHS=${EPOCHS:-2}
NAME=${NAME:-student}
R=/tmp/runs/mpnet
P=.venv/bin/python
COMMON="--trainer.enable_progress_bar=false --trainer.logger.init_args.save_dir=$R ${EXTRA:-}"
STUDENT_EXTRA=${STUDENT_EXTRA:-}
mkdir -p "$OUT"
last() { ls -td "$R/$1"/version_* | head -1; }
if [ -z "${TEACHER:-}" ]; then
  $P cli.py fit --config configs/sst2_lora.yaml --model.init_args.model_name=sentence-transformers/all-mpnet-base-v2 \
    --data.init_args.limit_train=$N --trainer.max_epochs=1 --trainer.val_check_interval=0.5 \
    --model.init_args.lora_dropout=0.1 --model.init_args.optimizer.init_args.lr=5.0e-4 \
    $COMMON --trainer.logger.init_args.name=teacher > "$OUT/teacher.log" 2>&1
  cp "$(last teacher)/metrics.csv" "$OUT/teacher_metrics.csv"; cp "$(last teacher)/throughput.json" "$OUT/teacher_throughput.json"
fi
T=${TEACHER:-$(last teacher)/hf_model}
[ "$S" = teacher ] && S=$T
if [ "${DISTILL:-1}" = 1 ]; then
  $P cli.py fit --config configs/sst2_distill.yaml --model.init_args.teacher=$T --model.init_args.model_name=$S \
    --model.init_args.keep_layers=$KEEP --trainer.max_epochs=$EPOCHS --trainer.val_check_interval=0.5 \
    $COMMON $STUDENT_EXTRA --trainer.logger.init_args.name=$NAME > "$OUT/$NAME.log" 2>&1
  cp "$(last $NAME)/metrics.csv" "$OUT/${NAME}_metrics.csv"; cp "$(last $NAME)/throughput.json" "$OUT/${NAME}_throughput.json"
fi
if [ "${ABLATION:-1}" = 1 ]; then
  $P cli.py fit --config configs/sst2_classify.yaml --model.init_args.model_name=$S --model.init_args.keep_layers=$KEEP \
    --trainer.max_epochs=$EPOCHS --trainer.val_check_interval=0.5 $COMMON $STUDENT_EXTRA \
    --trainer.logger.init_args.name=ablation > "$OUT/ablation.log" 2>&1
  cp "$(last ablation)/metrics.csv" "$OUT/ablation_metrics.csv"; cp "$(last ablation)/throughput.json" "$OUT/ablation_throughput.json"
fi
