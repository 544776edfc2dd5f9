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

# The speed sweep of the five full presets on random weights, sized for one device call (about 6 minutes on an
# H100): every LLM under both qbench engines and, for the Mamba LLMs, mamba_ssm's own generate(cg=True).
# Add batch sizes with e.g. `make speed-gpu SPEED_BATCH=1,8` (about 9 minutes).
SPEED_BATCH ?= 1
SPEED_ARGS = --model cobra,ml-mamba,llava,q-mamba,cobra-ldp --tokens 256,729 --batch $(SPEED_BATCH) \
	--engine graph,mamba_ssm-cg,eager --new-tokens 256 --repeats 1 --device cuda --dtype bf16

.PHONY: speed-gpu
speed-gpu:  ## speed sweep on the GPU machine; SPEED_OUT=dir to choose where speed.json/csv go
	HF_HUB_OFFLINE=1 $(PYTHON) -m qbench.cli speed $(SPEED_ARGS) $(if $(SPEED_OUT),--output $(SPEED_OUT))

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

.PHONY: tiny-weights ablation-tiny
tiny-weights:  ## train the tiny presets into weights/tiny/<preset>/ (qbench checkpoints stored in fp16)
	for p in $(TINY_PRESETS); do HF_HUB_OFFLINE=1 $(PYTHON) -m qbench.cli train --model $$p \
		--out weights/tiny/$$p $(TINY_TRAIN) --save-dtype fp16 || exit 1; done

ablation-tiny:  ## the tiny ablation: train + time (GPU if there is one), evaluate on the mini suite, tables
	HF_HUB_OFFLINE=1 $(PYTHON) -m qbench.cli ablate --name tiny $(TINY_TRAIN) --limit 40
