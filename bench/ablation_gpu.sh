#!/bin/bash
# The tiny ablation's GPU half in one device call (`make ablation-gpu OUT=dir`): every combination trained in its
# own process per seed (all at once: a tiny model leaves the GPU idle between its small kernels), then each timed
# under the graph engine (SPEED_LIMIT=0: not timed); the trained checkpoints (fp16) and logs packed into $OUT.
# Evaluation follows on a machine with lmms-eval: unpack into data/ablation/<name>/ and run `make ablation-tiny`, which trains nothing that is already trained.
set -u
OUT=${OUT:?set OUT to the folder that receives the checkpoints and logs}
NAME=${NAME:-tiny}
TRAIN=${TRAIN:?set TRAIN to the training budget, as the Makefile does}
TRAIN_LIMIT=${TRAIN_LIMIT:-400}  # seconds for all trainings; an unfinished one is not packed: retrain it with SHARDS
SEEDS=${SEEDS:-0}  # e.g. 0,1,2: every combination trained once per seed
SPEED_LIMIT=${SPEED_LIMIT:-150}
ABLATE="python3 -m qbench.cli ablate --name $NAME $TRAIN --seeds $SEEDS --save-dtype fp16 --device cuda"
export OMP_NUM_THREADS=1 HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1 TRANSFORMERS_VERBOSITY=error
LOGS=/tmp/ablation-logs && mkdir -p "$LOGS"
UNITS=$(python3 -c "from qbench.ablate import combinations, PROJECTORS, BACKBONES
print(len(combinations(PROJECTORS, BACKBONES)) * len('$SEEDS'.split(',')))")
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader > "$LOGS/gpu.txt"
started=$(date +%s)
for i in ${SHARDS:-$(seq 0 $((UNITS - 1)))}; do  # SHARDS="3 9": only those (combination, seed)s (ablate's order)
  timeout -s INT "$TRAIN_LIMIT" $ABLATE --phases train --shard "$i/$UNITS" > "$LOGS/train-$i.log" 2>&1 &
done
wait
echo "trained in $(( $(date +%s) - started )) s" | tee "$LOGS/times.txt"
started=$(date +%s)
[ "$SPEED_LIMIT" -gt 0 ] && timeout "$SPEED_LIMIT" $ABLATE --phases speed > "$LOGS/speed.log" 2>&1
echo "timed in $(( $(date +%s) - started )) s" | tee -a "$LOGS/times.txt"
grep -h "step\|Error" "$LOGS"/train-*.log | tail -n 40
tar czf "$OUT/logs.tgz" -C /tmp ablation-logs
# what comes back from a device call: at most 8 files of 16 MiB, 64 MiB in all; a tiny fp16 checkpoint is about
# 1.4 MB (1 MB packed)
cd data/ablation && for part in 0 1 2 3 4; do
  tar czf "$OUT/checkpoints-$part.tgz" --exclude=resume $(ls -d "$NAME"/*/ | sed -n "$((part + 1))~5p")
done
