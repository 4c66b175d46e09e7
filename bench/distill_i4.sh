#!/bin/bash
# Issue 4 measurements, one after the other (2 cores: never in parallel).
cd "$(dirname "$0")/.."
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
T=${TEACHER:-/tmp/runs/sst2_classify/version_0/hf_model}   # the 90.02 % teacher (RESULTS.md, issue 2)
P=.venv/bin/python
COMMON="--trainer.enable_progress_bar false --trainer.logger.init_args.save_dir /tmp/runs/i4"
# 1) epoch cost: plain fine-tuning vs cached KD vs online KD of the same 3-layer student, 400 steps each
$P cli.py fit --config configs/sst2_classify.yaml --model.init_args.model_name=$T --model.init_args.keep_layers=[0,2,5] \
  --trainer.max_epochs 1 --trainer.limit_train_batches 400 --trainer.val_check_interval 1.0 $COMMON --trainer.logger.init_args.name=tp_plain > /tmp/runs/i4/tp_plain.log 2>&1
$P cli.py fit --config configs/sst2_distill.yaml --model.init_args.teacher=$T --model.init_args.model_name=$T --model.init_args.keep_layers=[0,2,5] \
  --trainer.max_epochs 1 --trainer.limit_train_batches 400 --trainer.val_check_interval 1.0 $COMMON --trainer.logger.init_args.name=tp_cached > /tmp/runs/i4/tp_cached.log 2>&1
$P cli.py fit --config configs/sst2_distill.yaml --model.init_args.teacher=$T --model.init_args.model_name=$T --model.init_args.keep_layers=[0,2,5] \
  --model.init_args.cache_teacher=false --trainer.max_epochs 1 --trainer.limit_train_batches 400 --trainer.val_check_interval 1.0 $COMMON --trainer.logger.init_args.name=tp_online > /tmp/runs/i4/tp_online.log 2>&1
# 2) ablation: the same 3-layer student (same init, same epochs, same LR), no teacher
$P cli.py fit --config configs/sst2_classify.yaml --model.init_args.model_name=$T --model.init_args.keep_layers=[0,2,5] \
  --trainer.max_epochs 2 $COMMON --trainer.logger.init_args.name=ablation_l3 > /tmp/runs/i4/ablation_l3.log 2>&1
# 3) 2-layer distilled student
$P cli.py fit --config configs/sst2_distill.yaml --model.init_args.teacher=$T --model.init_args.model_name=$T --model.init_args.keep_layers=[0,5] \
  --trainer.max_epochs 2 $COMMON --trainer.logger.init_args.name=distill_l2 > /tmp/runs/i4/distill_l2.log 2>&1
