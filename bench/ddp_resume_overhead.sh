#!/bin/bash
# Issue 6: DDP (2 processes, gloo) against one process over the same global batch, and resume overhead,
# on real SST-2 with all-MiniLM-L6-v2 (150 optimizer steps each, global batch 32).
cd "$(dirname "$0")/.."
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
P=.venv/bin/python
OUT=${OUT:-runs/i6}; mkdir -p $OUT
C="--config configs/sst2_classify.yaml --trainer.max_steps=150 --trainer.limit_val_batches=1 --trainer.val_check_interval=50 --trainer.enable_progress_bar=false --trainer.logger.init_args.save_dir=$OUT"
/usr/bin/time -v $P cli.py fit $C --data.init_args.batch_size=32 --trainer.logger.init_args.name=one > $OUT/one.log 2>&1
/usr/bin/time -v $P cli.py fit $C --config configs/trainer/ddp.yaml --data.init_args.batch_size=16 --trainer.logger.init_args.name=ddp > $OUT/ddp.log 2>&1
# resume overhead: a run that stops at step 100 (checkpoint), then resumes to 150, against the straight 150-step run above
R="--config configs/sst2_classify.yaml --trainer.limit_val_batches=1 --trainer.val_check_interval=50 --trainer.enable_progress_bar=false --trainer.logger.init_args.save_dir=$OUT --trainer.logger.init_args.name=resume --trainer.logger.init_args.version=0 --data.init_args.batch_size=32"
$P cli.py fit $R --trainer.max_steps=100 > $OUT/resume_a.log 2>&1
/usr/bin/time -v $P cli.py fit $R --trainer.max_steps=150 --ckpt_path=last > $OUT/resume_b.log 2>&1
