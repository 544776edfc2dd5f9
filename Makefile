PYTHON ?= python3

.PHONY: install test

# torch/torchvision/transformers pinned to what the lent GPU machine runs, so both sides agree
PINS = torch==2.11.0 torchvision==0.26.0 transformers==5.17.0

install:  ## install qbench with everything the tests need (CPU)
	$(PYTHON) -m pip install -e ".[dev]" $(PINS)

test:  ## run the test suite (CPU, offline)
	HF_HUB_OFFLINE=1 $(PYTHON) -m pytest -q

.PHONY: report
report:  ## tables, figures and results/report/README.md from every result under results/
	$(PYTHON) -m qbench.cli report --results results --out results/report

# The speed sweep of the five full presets on random weights, sized for one device call (424 s on an
# H100): each at 256, 576 and 729 visual tokens under the CUDA-graph engine and, for the Mamba LLMs, mamba_ssm's own
# generate(cg=True), 3 repeats; then the eager engine (a launch per op, about 10 s per pass) once at 576 tokens, into
# the same folder (a sweep adds to the speed.json it finds there). Torch.compile takes about 45 s per Llama shape,
# so `make speed-gpu SPEED_BATCH=1,8` (about 12 minutes) needs two calls: the second resumes what the first wrote.
SPEED_MODELS ?= cobra,ml-mamba,llava,q-mamba,cobra-ldp
SPEED_BATCH ?= 1
SPEED_COMMON = --model $(SPEED_MODELS) --new-tokens 256 --device cuda --dtype bf16 $(if $(SPEED_OUT),--output $(SPEED_OUT))

.PHONY: speed-gpu
speed-gpu:  ## speed sweep on the GPU machine; SPEED_OUT=dir to choose where speed.json/csv go
	HF_HUB_OFFLINE=1 $(PYTHON) -m qbench.cli speed $(SPEED_COMMON) --tokens 256,576,729 --engine graph,mamba_ssm-cg \
		--batch $(SPEED_BATCH) --repeats 3
	HF_HUB_OFFLINE=1 $(PYTHON) -m qbench.cli speed $(SPEED_COMMON) --tokens 576 --engine eager --batch 1 --repeats 1

# Where backbones really differ: long visual contexts (up to 64 images per prompt, 12k-47k visual tokens) and the
# largest batch that fits, for the five full presets in one device call (bench/speed_scale.sh says what and why).
.PHONY: speed-scale
speed-scale:  ## long-context and full-batch speed sweep on the GPU machine; OUT=dir for speed.json/csv
	OUT=$(OUT) bash bench/speed_scale.sh

# The offline mini-suites (see README, "Accuracy"): their datasets, and a tiny preset evaluated on them.
EVAL_MODEL ?= tiny-cobra

.PHONY: mini eval-mini
mini:  ## the mini-suites' datasets under data/mini (deterministic; qbench data mini --help for sizes and seed)
	$(PYTHON) -m qbench.cli data mini --out data

eval-mini:  ## EVAL_MODEL (default tiny-cobra) on the mini suite, offline; writes results/runs/<model>__mini__<time>/
	HF_HUB_OFFLINE=1 $(PYTHON) -m qbench.cli run --model $(EVAL_MODEL) --suite mini

# The ablation lab (README, "Ablation lab"). Trained tiny weights: each tiny preset on the mini train split, one
# stage, 3000 steps x 32 at lr 3e-3 (tiny-llava: about 9 minutes on 2 CPU cores; the Mamba ones are slower on a CPU,
# whose Mamba-1 scan is a Python loop: use a GPU). 400 steps left every tiny model answering from priors alone.
TINY_PRESETS ?= tiny-llava
TINY_TRAIN = --steps 3000 --batch-size 32 --recipe cobra --lr 3e-3 --train-questions 4000

.PHONY: tiny-weights ablation-tiny ablation-gpu
# questions per task the ablation evaluates (the mini eval splits have 300)
ABLATION_LIMIT ?= 300
tiny-weights:  ## train the tiny presets into weights/tiny/<preset>/ (qbench checkpoints stored in fp16)
	for p in $(TINY_PRESETS); do HF_HUB_OFFLINE=1 $(PYTHON) -m qbench.cli train --model $$p \
		--out weights/tiny/$$p $(TINY_TRAIN) --save-dtype fp16 || exit 1; done

ablation-tiny:  ## the tiny ablation: train + time (GPU if there is one), evaluate on the mini suite, tables
	HF_HUB_OFFLINE=1 $(PYTHON) -m qbench.cli ablate --name tiny $(TINY_TRAIN) --limit $(ABLATION_LIMIT)

# Its GPU half in one device call: every combination trained at once, then timed; OUT=dir receives the checkpoints
# (data/ablation/tiny/<combination>/ in four archives), which `make ablation-tiny` then evaluates on the CPU.
ablation-gpu:  ## train + time the tiny ablation on the GPU machine (bench/ablation_gpu.sh); OUT=dir for its files
	OUT=$(OUT) TRAIN="$(TINY_TRAIN)" bash bench/ablation_gpu.sh

# Training the full presets over the GPUs of one machine (bench/fsdp_gpu.sh): 10 steps each of LLaVA-1.5 (Llama 7B),
# Cobra (Mamba 2.8B) and ML-Mamba (Mamba-2 2.7B), sharded (fsdp) and replicated (ddp); peak memory and seconds per
# step in each train.json. About 8 minutes on two H200s (results/train/).
.PHONY: fsdp-gpu
fsdp-gpu:  ## on a machine with several GPUs: FSDP vs DDP training of the full presets; OUT=dir for its logs
	OUT=$(OUT) bash bench/fsdp_gpu.sh
