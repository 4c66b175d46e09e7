#!/bin/bash
# Issue 3 on Steam: the studies' five LoRA attempts beside full fine-tuning of the same backbone, each on the
# same 2,000-review training slice with max_length 128 (2 cores, one session), then the per-class report on
# the deterministic 10 % test split. Best checkpoint by val/f1 (10 % validation split).
cd "$(dirname "$0")/.."
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
P=.venv/bin/python
OUT=${OUT:-runs/steam_lora_studies}; mkdir -p $OUT
COMMON="--data.init_args.limit_train=2000 --data.init_args.max_length=128 --trainer.val_check_interval=1.0 --trainer.enable_progress_bar=false --trainer.logger.init_args.save_dir=$OUT"
run() {  # name, fit args...
  name=$1; shift
  $P cli.py fit "$@" $COMMON --trainer.logger.init_args.name=$name --trainer.logger.init_args.version=0 > $OUT/$name.fit.log 2>&1
  ckpt=$(ls $OUT/$name/version_0/checkpoints/best-*.ckpt | head -1)
  $P cli.py test "$@" $COMMON --trainer.logger.init_args.name=${name}_test --ckpt_path=$ckpt > $OUT/$name.test.log 2>&1
}
# RUNS picks runs; LORA_EXTRA adds overrides to the LoRA runs and SUFFIX to their names, e.g.
#   RUNS=r8_a32_qkv_3ep LORA_EXTRA="--model.init_args.layers_to_transform=[3,4,5]" SUFFIX=_top3 bash bench/steam_lora_studies.sh
RUNS=${RUNS:-"full_ft r8_a32_qv_2ep r8_a32_qkv_3ep r4_a16_qkv r4_a32_qkv r4_a32_qv"}
for a in $RUNS; do
  if [ "$a" = full_ft ]; then run full_ft --config configs/steam_classify.yaml; continue; fi
  # shellcheck disable=SC2086  # LORA_EXTRA is a list of words
  run "$a${SUFFIX:-}" --config configs/steam_lora.yaml --config configs/lora_studies/$a.yaml ${LORA_EXTRA:-}
done
