#!/bin/bash
# The tiny ablation's GPU half (`make ablation-gpu OUT=dir`): every combination trained in its own process per seed
# (at once: a tiny model leaves the GPU idle between its small kernels; but 45 processes on 16 CPU cores train over 10x
# slower per example than 6 do, so SHARDS can split them over calls), then each timed under the graph engine (SPEED_LIMIT=0: not
# timed); the trained checkpoints (fp16) and logs packed into $OUT before and after timing.
# Evaluation follows on a machine with lmms-eval: unpack into data/ablation/<name>/ and run `make ablation-tiny`,
# which trains nothing that is already trained.
set -u
OUT=${OUT:?set OUT to the folder that receives the checkpoints and logs}
NAME=${NAME:-tiny}
TRAIN=${TRAIN:?set TRAIN to the training budget, as the Makefile does}
TRAIN_LIMIT=${TRAIN_LIMIT:-400}  # seconds for all trainings; an unfinished one comes back unfinished: retrain it with SHARDS
SEEDS=${SEEDS:-0}  # e.g. 0,1,2: every combination trained once per seed
SPEED_LIMIT=${SPEED_LIMIT:-150}
PROJECTORS=${PROJECTORS:-} BACKBONES=${BACKBONES:-}  # e.g. mlp and mamba,mamba2,zamba2,llama; empty: ablate's grid
DEVICE=${DEVICE:-cuda}  # cpu: a trial of this script's logic
GRID="${PROJECTORS:+--projectors $PROJECTORS} ${BACKBONES:+--backbones $BACKBONES}"
ABLATE="python3 -m qbench.cli ablate --name $NAME $GRID $TRAIN --seeds $SEEDS --save-dtype fp16 --device $DEVICE"
export OMP_NUM_THREADS=1 HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1 TRANSFORMERS_VERBOSITY=error
LOGS=/tmp/ablation-logs && mkdir -p "$LOGS"
UNITS=$(python3 -c "from qbench.ablate import combinations, PROJECTORS, BACKBONES
grid = [asked.split(',') if asked else grid for asked, grid in (('$PROJECTORS', PROJECTORS), ('$BACKBONES', BACKBONES))]
print(len(combinations(*grid)) * len('$SEEDS'.split(',')))")
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader > "$LOGS/gpu.txt" 2>&1
started=$(date +%s)
SHARDS=${SHARDS:-$(seq 0 $((UNITS - 1)))}  # e.g. "3 9": only those (combination, seed)s, in ablate's order
for i in $SHARDS; do
  timeout -s INT "$TRAIN_LIMIT" $ABLATE --phases train --shard "$i/$UNITS" > "$LOGS/train-$i.log" 2>&1 &
done
wait
echo "trained in $(( $(date +%s) - started )) s" | tee "$LOGS/times.txt"
pack_checkpoints() {  # at most 8 files of 16 MiB (64 MiB in all) come back; a tiny fp16 checkpoint packs to ~1 MB
  (cd data/ablation && for part in 0 1 2 3 4; do
    folders=$(ls -d "$NAME"/*/ | sed -n "$((part + 1))~5p")
    [ -n "$folders" ] && tar czf "$OUT/checkpoints-$part.tgz" --exclude=resume $folders
  done)
  tar czf "$OUT/logs.tgz" -C /tmp ablation-logs
}
python3 - "$NAME" "$(echo $SHARDS | wc -w)" <<'PY' | tee -a "$LOGS/times.txt"
import json, pathlib, sys
logs = [json.loads(p.read_text()) for p in pathlib.Path("data/ablation", sys.argv[1]).glob("*/seed*/train.json")]
print(f"{sum(log['finished'] for log in logs)} (combination, seed)s trained, {sys.argv[2]} in this call")
PY
grep -h "step\|Error" "$LOGS"/train-*.log | tail -n 40
pack_checkpoints  # before timing, so that a call cut off while timing still returns every trained checkpoint
started=$(date +%s)
[ "$SPEED_LIMIT" -gt 0 ] && timeout "$SPEED_LIMIT" $ABLATE --phases speed > "$LOGS/speed.log" 2>&1
echo "timed in $(( $(date +%s) - started )) s" | tee -a "$LOGS/times.txt"
pack_checkpoints
