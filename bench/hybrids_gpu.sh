#!/bin/bash
# The hybrid LLMs (Zamba2, Falcon-H1, Nemotron-H) beside Mamba, Mamba-2 and Llama on one GPU (`make hybrids-gpu
# OUT=dir`), after `source bench/gpu_setup.sh` (mamba_ssm and triton; without causal_conv1d the convolutions run in
# PyTorch). Random weights, bf16. Four parts in the order of what matters most, each given at most what is left of
# BUDGET seconds (a sweep cut short keeps every point it measured; a part that cannot fit is left out):
#   speed     the three hybrid presets, then Cobra, LLaVA-1.5 and ML-Mamba at 256, 576 and 729 visual tokens, batch 1,
#             graph-nocompile engine, 64 new tokens, 2 repeats -> $OUT/speed/;
#   context   the hybrids at 1, 4, 16 and 64 images per prompt, batch 1 (bench/speed_scale.sh's long-context sweep,
#             with 2 repeats so that the one-image points of `speed` are kept, not measured again) -> $OUT/speed/;
#   search    the hybrids' largest batch at 1 and 16 images (speed_scale.sh's search and its options) -> $OUT/speed/;
#   ablation  the ablation lab's GPU half (bench/ablation_gpu.sh): an MLP projector on tiny Mamba, Mamba-2, one hybrid
#             and Llama, 3 seeds, trained at the Makefile's budget, then timed; checkpoints and logs packed into
#             $OUT/checkpoints-*.tgz and $OUT/logs.tgz (name `hybrid`: the shipped ablations are not touched). An
#             unfinished training is lost, so it starts only with ABLATION_MIN seconds left.
# Expected on an H100 with a fresh Triton cache (docs/hybrids.md): speed ~4 min, context ~2 min, search ~4.5 min,
# ablation ~6.5 min (about 4 of them mamba_ssm's Triton kernels compiling before the first Mamba-2 and hybrid training
# step). So a 9-minute call (BUDGET=540) measures the three sweeps, the search cut short at its end; the ablation
# takes a call of its own: PARTS=ablation (another OUT: the report reads every speed.json under results/speed/).
# TRIAL=1 runs every part on the CPU, small: the tiny twins, 16/36/64 visual tokens, eager engine, one seed, e.g.
#     TRIAL=1 OUT=/tmp/trial TRAIN="--steps 2 --batch-size 4 --train-questions 8" bash bench/hybrids_gpu.sh
set -u
OUT=${OUT:?set OUT to the folder that receives the results}
TRAIN=${TRAIN:?set TRAIN to the ablation budget, as the Makefile does}
TRIAL=${TRIAL:-0}
BUDGET=${BUDGET:-$(( TRIAL == 1 ? 3600 : 540 ))}  # seconds for the whole call
PARTS=${PARTS:-speed context search ablation}
ABLATION_MIN=${ABLATION_MIN:-$(( TRIAL == 1 ? 60 : 420 ))}
HYBRIDS=${HYBRIDS:-cobra-zamba2,cobra-falcon-h1,cobra-nemotron-h}
BESIDE=${BESIDE:-cobra,llava,ml-mamba}
ABLATION_HYBRID=${ABLATION_HYBRID:-zamba2}
DEVICE=cuda ENGINE=graph-nocompile DTYPE=bf16 TOKENS=256,576,729 IMAGES=1,4,16,64 SEARCH_IMAGES=1,16 BATCH_LIMIT=4096
SEEDS=0,1,2 SPEED_LIMIT=60
if [ "$TRIAL" = 1 ]; then
  DEVICE=cpu ENGINE=eager DTYPE=fp32 TOKENS=16,36,64 IMAGES=1,2 SEARCH_IMAGES=2 BATCH_LIMIT=2 SEEDS=0 SPEED_LIMIT=300
  tiny() { python3 -c "from qbench.presets import get_preset, tiny_twin
print(','.join(tiny_twin(get_preset(name)).name for name in '$1'.split(',')))"; }
  HYBRIDS=$(tiny "$HYBRIDS") BESIDE=$(tiny "$BESIDE")
fi
export OUT TRAIN HYBRIDS BESIDE ABLATION_HYBRID DEVICE ENGINE DTYPE TOKENS IMAGES SEARCH_IMAGES BATCH_LIMIT SEEDS \
  SPEED_LIMIT TRITON_CACHE_AUTOTUNING=1 HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1 TRANSFORMERS_VERBOSITY=error
mkdir -p "$OUT/speed"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>/dev/null || echo "no nvidia-smi"
started=$(date +%s)

speed() {
  python3 -m qbench.cli speed --model "$HYBRIDS,$BESIDE" --tokens "$TOKENS" --batch-size 1 --engine "$ENGINE" \
    --new-tokens 64 --repeats 2 --device "$DEVICE" --dtype "$DTYPE" --output "$OUT/speed"
}
scale() {  # MODELS SEARCH_MODELS: bench/speed_scale.sh's long-context and largest-batch sweeps, 2 repeats
  OUT=$OUT/speed MODELS=$1 SEARCH_MODELS=$2 RESOLUTION_MODELS="" REPEATS=2 bash bench/speed_scale.sh
}
ablation() {  # the trainings get the part's time but the timing's and the packing's
  NAME=hybrid PROJECTORS=mlp BACKBONES="mamba,mamba2,$ABLATION_HYBRID,llama" \
    TRAIN_LIMIT=$(( PART_LIMIT - SPEED_LIMIT - 40 )) bash bench/ablation_gpu.sh
}
export -f speed scale ablation

part() {  # NAME LEAST MOST COMMAND...: COMMAND with at most MOST seconds and what the budget leaves, if at least LEAST
  local name=$1 least=$2 most=$3 left begun status
  shift 3
  case " $PARTS " in *" $name "*) ;; *) return ;; esac
  left=$(( BUDGET - $(date +%s) + started ))
  export PART_LIMIT=$(( left < most ? left : most ))
  if (( PART_LIMIT < least )); then echo "== $name: left out, $left s of the budget left (it needs $least)"; return; fi
  echo "== $name: at most $PART_LIMIT s"
  begun=$(date +%s)
  timeout -s INT -k 30 "$PART_LIMIT" bash -c "$*"
  status=$?
  echo "== $name: $(( $(date +%s) - begun )) s, exit $status"
}

part speed 30 330 speed
part context 30 180 scale "$HYBRIDS" '""'
part search 30 600 scale '""' "$HYBRIDS"
part ablation "$ABLATION_MIN" 600 ablation
echo "== done in $(( $(date +%s) - started )) s; $OUT holds: $(cd "$OUT" && find . -type f | sort | tr '\n' ' ')"
