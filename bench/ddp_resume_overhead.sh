#!/bin/bash
# Issue 6: DDP (2 processes, gloo) against one process over the same global batch, and resume overhead,
# on real SST-2 with all-MiniLM-L6-v2 (150 optimizer steps each, global batch 32). Run on an idle machine:
#   bash bench/ddp_resume_overhead.sh            # OUT=runs/i6; throughput.json and *.log per run
cd "$(dirname "$0")/.."
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
P=.venv/bin/python
OUT=${OUT:-runs/i6}; PART=${PART:-all}; mkdir -p $OUT
C="--config configs/sst2_classify.yaml --trainer.max_steps=150 --trainer.limit_val_batches=1 --trainer.val_check_interval=50 --trainer.enable_progress_bar=false --trainer.logger.init_args.save_dir=$OUT"
if [ "$PART" = all ]; then
  rm -rf $OUT/one $OUT/ddp
  /usr/bin/time -v $P cli.py fit $C --data.init_args.batch_size=32 --trainer.logger.init_args.name=one > $OUT/one.log 2>&1
  /usr/bin/time -v $P cli.py fit $C --config configs/trainer/ddp.yaml --data.init_args.batch_size=16 --trainer.logger.init_args.name=ddp > $OUT/ddp.log 2>&1
fi
# Resume overhead: the same 150-step run, SIGKILLed right after step 101 (its last.ckpt is from step 100's
# validation), then resumed with --ckpt_path=last, against the straight run "one" above. The difference is
# the restart (process, model load, checkpoint restore) plus the one step redone.
rm -rf $OUT/resume
KILL='{"class_path": "tests.ddp_utils.SigkillAtStep", "init_args": {"step": 101}}'
R="$C --data.init_args.batch_size=32 --trainer.logger.init_args.name=resume --trainer.logger.init_args.version=0"
/usr/bin/time -v $P cli.py fit $R "--trainer.callbacks+=$KILL" > $OUT/resume_a.log 2>&1
/usr/bin/time -v $P cli.py fit $R --ckpt_path=last > $OUT/resume_b.log 2>&1
grep -H "Elapsed\|Maximum resident\|Exit status" $OUT/*.log
