#!/bin/bash
# Training the full presets over several GPUs (`make fsdp-gpu OUT=dir`, e.g. on the lent nvidia-h200-x2): a few
# steps of each preset in PRESETS, sharded (fsdp) and replicated (ddp), one process per GPU, on random weights and
# the mini train split. Each run's train.json (copied to $OUT's logs as <preset>-<sharding>.json) records its peak
# GPU memory per process, its median seconds per step and the machine; one that does not fit records the
# out-of-memory error. The hub tokenizers cannot be fetched there: the built-in ones stand in, saved under
# $QBENCH_HUB_DIR in the hub ids' places (the prompts come out a few tokens shorter or longer; the 576/729 visual
# tokens that dominate a sequence do not change).
set -u
OUT=${OUT:?set OUT to the folder that receives the logs and train.json files}
PRESETS=${PRESETS:-llava cobra ml-mamba}
SHARDINGS=${SHARDINGS:-fsdp ddp}
RUN_LIMIT=${RUN_LIMIT:-240}  # seconds per run
GPUS=$(nvidia-smi --list-gpus | wc -l)
TRAIN="--data mini --train-questions 50 --steps ${STEPS:-10} --batch-size ${BATCH:-16} --recipe cobra --lr 1e-4
       --save-every 1000 --save-dtype bf16 --device cuda"
export PRESETS HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1 TRANSFORMERS_VERBOSITY=error QBENCH_HUB_DIR=${QBENCH_HUB_DIR:-/tmp/hub}
RUNS=/tmp/fsdp-runs && LOGS=$RUNS/logs && mkdir -p "$LOGS"
python3 - <<'EOF'
import os
from qbench.backbones import BACKBONES
from qbench.presets import get_preset
from qbench.tokenizers import builtin_tokenizer
for preset in os.environ["PRESETS"].split():
    spec = get_preset(preset)
    builtin = BACKBONES[spec.backbone.kind].tiny_tokenizer
    builtin_tokenizer(builtin).save_pretrained(os.path.join(os.environ["QBENCH_HUB_DIR"], spec.tokenizer))
EOF
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader > "$LOGS/gpu.txt"
for preset in $PRESETS; do
  for sharding in $SHARDINGS; do
    run=$preset-$sharding && started=$(date +%s)
    timeout "$RUN_LIMIT" python3 -m accelerate.commands.launch --multi_gpu --num_processes "$GPUS" --num_machines 1 \
      --mixed_precision bf16 --dynamo_backend no -m qbench.cli train --model "$preset" --output "$RUNS/$run" \
      --sharding "$sharding" $TRAIN > "$LOGS/$run.log" 2>&1
    echo "$run: exit $? in $(( $(date +%s) - started )) s" | tee -a "$LOGS/times.txt"
    cp "$RUNS/$run/train.json" "$LOGS/$run.json"  # what results/train/<folder>/ and the report take
    grep -h "error:" "$LOGS/$run.log" | tail -n 1
    rm -rf "${RUNS:?}/$run"  # the random-weight checkpoints are not kept
  done
done
tar czf "$OUT/fsdp-logs.tgz" -C "$RUNS" logs
