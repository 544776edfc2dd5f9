#!/bin/bash
# Long visual contexts and full batches of the five full presets in one device call (`make speed-scale OUT=dir`;
# about 6 minutes on one H200). Random weights, bf16, 64 new tokens, every backbone under the graph-nocompile engine
# (eager prefill, CUDA-graph decode; no torch.compile, which costs about 45 s for each Llama batch size and length:
# dozens of shapes here). Three sweeps into one speed.json, in order of what matters most if time runs out:
#   1. visual tokens by images per prompt (IMAGES), batch 1, 3 repeats;
#   2. the largest batch that fits at SEARCH_IMAGES images per prompt, found by trying; throughput at that batch
#      (or at fewer prompts of MEASURE_TOKENS tokens in all, where thousands of Mamba prompts fit), 1 repeat;
#   3. visual tokens by resolution (one image of RESOLUTION_TOKENS patches) for RESOLUTION_MODELS, batch 1.
set -u
OUT=${OUT:?set OUT to the folder that receives speed.json, speed.csv and the log}
MODELS=${MODELS:-cobra,ml-mamba,q-mamba,cobra-ldp,llava}
IMAGES=${IMAGES:-1,4,16,64}
SEARCH_IMAGES=${SEARCH_IMAGES:-1,16}
MEASURE_TOKENS=${MEASURE_TOKENS:-524288}  # throughput at the largest batch, or at fewer prompts of this many tokens
RESOLUTION_MODELS=${RESOLUTION_MODELS:-llava,cobra}
RESOLUTION_TOKENS=${RESOLUTION_TOKENS:-2304,9216}
export HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1 TRANSFORMERS_VERBOSITY=error
SPEED="python3 -m qbench.cli speed --new-tokens 64 --engine graph-nocompile --device cuda --dtype bf16 --output $OUT"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
timed() {
  local started=$(date +%s)
  "$@"
  local status=$?
  echo "[$(( $(date +%s) - started )) s, exit $status] ${*:2}"
}
timed $SPEED --model "$MODELS" --images "$IMAGES" --batch 1 --repeats 3
timed $SPEED --model "$MODELS" --images "$SEARCH_IMAGES" --batch max --measure-tokens "$MEASURE_TOKENS" \
  --repeats 1
timed $SPEED --model "$RESOLUTION_MODELS" --tokens "$RESOLUTION_TOKENS" --batch 1 --repeats 3
