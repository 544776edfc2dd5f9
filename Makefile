PYTHON ?= python3

.PHONY: install test lock drift

# The lock of this Python: every package, transitive ones too, at the version the tests passed with (`make lock`).
PYTHON_VERSION = $(shell $(PYTHON) -c 'import sys; print("%d.%d" % sys.version_info[:2])')
LOCK = lock/py$(PYTHON_VERSION).txt

# PIP_CONSTRAINT (not -c) so that the lock also pins setuptools in pip's isolated build of qbench.
install:  ## install qbench with everything the tests need (CPU), exactly at the locked versions
	@test -f $(LOCK) || { echo "no lock for Python $(PYTHON_VERSION): lock/ has $$(ls lock/py*.txt); 'make lock' writes one" >&2; exit 1; }
	PIP_CONSTRAINT=$(LOCK) $(PYTHON) -m pip install -e ".[dev]"

test:  ## run the test suite (CPU, offline)
	HF_HUB_OFFLINE=1 $(PYTHON) -m pytest -q

# Locks are resolved for Linux x86_64 by uv, which can resolve for a Python that is not installed: the lock of this
# machine's Python is then installed into a fresh environment and tested by .ci/run; the other is only resolved.
# Both hold the GPU image's versions (lock/gpu-image.txt), and 3.12 takes 3.11's version of every package they share.
UV_VERSION = 0.13.9
LOCK_TOOLS = build/lock-tools
UV_COMPILE = $(LOCK_TOOLS)/bin/uv pip compile pyproject.toml --extra dev -c lock/gpu-image.txt --upgrade --quiet \
	--python-platform x86_64-manylinux_2_28 --custom-compile-command "make lock"

lock:  ## the newest versions pyproject.toml allows into lock/py3.11.txt + lock/py3.12.txt, then CI on this Python's
	rm -rf $(LOCK_TOOLS) && $(PYTHON) -m venv $(LOCK_TOOLS) && $(LOCK_TOOLS)/bin/pip install -q uv==$(UV_VERSION)
	$(UV_COMPILE) --python-version 3.11 -o lock/py3.11.txt
	$(UV_COMPILE) --python-version 3.12 -c lock/py3.11.txt -o lock/py3.12.txt
	bash .ci/run

# What next month's fresh install would get: the newest versions the ranges allow (no lock) in a scratch environment,
# tested; DRIFT/report.txt lists the versions that differ from the lock and pytest's failures and summary.
DRIFT = build/drift

drift:  ## install the newest versions the ranges allow into a scratch venv, run the tests, report against the lock
	rm -rf $(DRIFT) && $(PYTHON) -m venv $(DRIFT)/venv
	$(DRIFT)/venv/bin/python -m pip install -e ".[dev]" > $(DRIFT)/install.log 2>&1 || { tail $(DRIFT)/install.log; exit 1; }
	$(DRIFT)/venv/bin/python -m pip freeze --all --exclude-editable > $(DRIFT)/freeze.txt
	HF_HUB_OFFLINE=1 $(DRIFT)/venv/bin/python -m pytest -q -p no:cacheprovider > $(DRIFT)/pytest.log 2>&1; \
	status=$$?; { echo "make drift, $$(date -u '+%Y-%m-%d %H:%M UTC'), Python $(PYTHON_VERSION)"; \
	  $(PYTHON) lock/compare.py $(LOCK) $(DRIFT)/freeze.txt; \
	  sed -n '/short test summary info/,$$p' $(DRIFT)/pytest.log | grep -E '^(FAILED|ERROR)' | cut -c1-200; \
	  tail -n 1 $(DRIFT)/pytest.log; } | tee $(DRIFT)/report.txt; exit $$status

.PHONY: report
report:  ## tables, figures and results/report/README.md from the result files under results/ that git tracks
	$(PYTHON) -m qbench.cli report --results results --tracked --output results/report

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
		--batch-size $(SPEED_BATCH) --repeats 3
	HF_HUB_OFFLINE=1 $(PYTHON) -m qbench.cli speed $(SPEED_COMMON) --tokens 576 --engine eager --batch-size 1 --repeats 1

# Where backbones really differ: long visual contexts (up to 64 images per prompt, 12k-47k visual tokens) and the
# largest batch that fits, for the five full presets in one device call (bench/speed_scale.sh says what and why).
.PHONY: speed-scale
speed-scale:  ## long-context and full-batch speed sweep on the GPU machine; OUT=dir for speed.json/csv
	OUT=$(OUT) bash bench/speed_scale.sh

# The offline mini-suites (docs/suites.md): their datasets, and a tiny preset evaluated on them.
EVAL_MODEL ?= tiny-cobra

.PHONY: mini eval-mini
mini:  ## the mini-suites' datasets under data/mini (deterministic; qbench data mini --help for sizes and seed)
	$(PYTHON) -m qbench.cli data mini --output data

eval-mini:  ## EVAL_MODEL (default tiny-cobra) on the mini suite, offline; writes results/runs/<model>__mini__<time>/
	HF_HUB_OFFLINE=1 $(PYTHON) -m qbench.cli run --model $(EVAL_MODEL) --suite mini

# The ablation lab (docs/ablation.md). Trained tiny weights: each tiny preset on the mini train split, one
# stage, 3000 steps x 32 at lr 3e-3 (tiny-llava: about 9 minutes on 2 CPU cores; the Mamba ones are slower on a CPU,
# whose Mamba-1 scan is a Python loop: use a GPU). 400 steps left every tiny model answering from priors alone.
TINY_PRESETS ?= tiny-llava
TINY_TRAIN = --steps 3000 --batch-size 32 --recipe cobra --lr 3e-3 --train-questions 4000

.PHONY: tiny-weights ablation-tiny ablation-gpu
# questions per task the ablation evaluates (the mini eval splits have 300)
ABLATION_LIMIT ?= 300
tiny-weights:  ## train the tiny presets into weights/tiny/<preset>/ (qbench checkpoints stored in fp16)
	for p in $(TINY_PRESETS); do HF_HUB_OFFLINE=1 $(PYTHON) -m qbench.cli train --model $$p \
		--output weights/tiny/$$p $(TINY_TRAIN) --save-dtype fp16 || exit 1; done

# the ablation's seeds and budget (results/ablation/tiny; the 3000-step budget with 3 seeds: results/ablation/tiny-3000)
ABLATION_SEEDS ?= 0,1,2
ABLATION_TRAIN ?= --steps 500 --batch-size 64 --recipe cobra --lr 3e-3 --train-questions 4000
ablation-tiny:  ## the tiny ablation: train + time (GPU if there is one), evaluate on the mini suite, tables
	HF_HUB_OFFLINE=1 $(PYTHON) -m qbench.cli ablate --name tiny $(ABLATION_TRAIN) --seeds $(ABLATION_SEEDS) \
		--limit $(ABLATION_LIMIT)

# Its GPU half: every combination and seed trained at once, then timed; OUT=dir receives the checkpoints
# (data/ablation/tiny/<combination>/seed<N>/ in five archives), which `make ablation-tiny` then evaluates on the CPU.
# On one H200 the 45 trainings take two 10-minute calls: the second retrains the Mamba-2 ones,
# SHARDS="21 22 23 24 25 26 27 28 29 30 31 32" (results/ablation/tiny/README.md).
ablation-gpu:  ## train + time the tiny ablation on the GPU machine (bench/ablation_gpu.sh); OUT=dir for its files
	OUT=$(OUT) TRAIN="$(ABLATION_TRAIN)" SEEDS=$(ABLATION_SEEDS) bash bench/ablation_gpu.sh

# The hybrid LLMs beside Mamba, Mamba-2 and Llama (bench/hybrids_gpu.sh, docs/hybrids.md): their speed at full size,
# long contexts and largest batch, then the ablation lab's GPU half with one hybrid (name `hybrid`), each part given
# what is left of BUDGET seconds (540); PARTS=ablation for a call of its own. OUT=dir receives everything.
.PHONY: hybrids-gpu
hybrids-gpu:  ## hybrid backbones on the GPU machine: speed sweeps + ablation training (bench/hybrids_gpu.sh)
	OUT=$(OUT) TRAIN="$(ABLATION_TRAIN)" bash bench/hybrids_gpu.sh

# Training the full presets over the GPUs of one machine (bench/fsdp_gpu.sh): 10 steps each of LLaVA-1.5 (Llama 7B),
# Cobra (Mamba 2.8B) and ML-Mamba (Mamba-2 2.7B), sharded (fsdp) and replicated (ddp); peak memory and seconds per
# step in each train.json. About 8 minutes on two H200s (results/train/).
.PHONY: fsdp-gpu
fsdp-gpu:  ## on a machine with several GPUs: FSDP vs DDP training of the full presets; OUT=dir for its logs
	OUT=$(OUT) bash bench/fsdp_gpu.sh

# The answering engine beside today's path (VLM.generate, batch 32) on vqa-shaped and VizWiz-like request streams, the
# four full presets on random weights in bf16, in one device call (docs/speed.md, docs/measurements.md); OUT=dir.
WORKLOAD_OUT ?= results/speed/nvidia-h200_2026-12-03_answering
.PHONY: workload-gpu
workload-gpu:  ## answers/s of the answering engine and of VLM.generate on the GPU machine, into WORKLOAD_OUT
	HF_HUB_OFFLINE=1 $(PYTHON) -m qbench.cli workload --model cobra,ml-mamba,q-mamba,llava --stream vqa,vizwiz \
		--questions 1500 --plain-questions 128 --device cuda --dtype bf16 --output $(WORKLOAD_OUT)
