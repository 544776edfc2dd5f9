#!/bin/bash
# Long visual contexts and full batches of the five full presets in one device call (`make speed-scale OUT=dir`).
# Random weights, bf16, 64 new tokens, every backbone under the graph-nocompile engine (eager prefill, CUDA-graph
# decode; no torch.compile, which costs about 45 s for each Llama batch size and length: dozens of shapes here), one
# timed pass per point after its warm-up pass. Three sweeps into one speed.json, in order of what matters most if
# the call's time runs out:
#   1. visual tokens by images per prompt (IMAGES), batch 1, all five presets;
#   2. the largest batch that fits at SEARCH_IMAGES images per prompt, found by trying up to BATCH_LIMIT, for one
#      preset of each LLM (Llama 7B, Mamba 2.8B, Mamba-2 2.7B; Q-Mamba and Cobra-LDP share Cobra's LLM and state);
#      decode throughput at that batch; beyond MEASURE_TOKENS prompt tokens in all, one group of prompts is
#      prefilled and its state copied to the other rows (TTFT and end to end then not measured);
#   3. visual tokens by resolution (one image of RESOLUTION_TOKENS patches) for RESOLUTION_MODELS, batch 1.
# A sweep whose models are set empty is left out (bench/hybrids_gpu.sh runs the first two for the hybrids).
set -u
OUT=${OUT:?set OUT to the folder that receives speed.json and speed.csv}
MODELS=${MODELS-cobra,ml-mamba,q-mamba,cobra-ldp,llava}
IMAGES=${IMAGES:-1,4,16,64}
SEARCH_MODELS=${SEARCH_MODELS-llava,cobra,ml-mamba}
SEARCH_IMAGES=${SEARCH_IMAGES:-1,16}
BATCH_LIMIT=${BATCH_LIMIT:-4096}
MEASURE_TOKENS=${MEASURE_TOKENS:-524288}
RESOLUTION_MODELS=${RESOLUTION_MODELS-llava,cobra}
RESOLUTION_TOKENS=${RESOLUTION_TOKENS:-2304}
REPEATS=${REPEATS:-1}  # timed passes per point (a point measured before with as many is kept)
DEVICE=${DEVICE:-cuda} ENGINE=${ENGINE:-graph-nocompile} DTYPE=${DTYPE:-bf16}  # a CPU trial: cpu, eager, fp32
export HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1 TRANSFORMERS_VERBOSITY=error
SPEED="python3 -m qbench.cli speed --new-tokens 64 --engine $ENGINE --device $DEVICE --dtype $DTYPE
       --repeats $REPEATS --output $OUT"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>/dev/null || echo "no nvidia-smi"
timed() {
  local started=$(date +%s)
  "$@"
  local status=$?
  echo "[$(( $(date +%s) - started )) s, exit $status]"
}
if [ -n "$MODELS" ]; then timed $SPEED --model "$MODELS" --images "$IMAGES" --batch-size 1; fi
if [ -n "$SEARCH_MODELS" ]; then
  timed $SPEED --model "$SEARCH_MODELS" --images "$SEARCH_IMAGES" --batch-size max --batch-limit "$BATCH_LIMIT" \
    --measure-tokens "$MEASURE_TOKENS"
fi
if [ -n "$RESOLUTION_MODELS" ]; then
  timed $SPEED --model "$RESOLUTION_MODELS" --tokens "$RESOLUTION_TOKENS" --batch-size 1
fi
