# The GPU machine's set-up, which every GPU command in the READMEs starts from (docs/gpu.md).
#
# Here, before the device call, stage what the run carries into .gpu/ (../shared/gpu/README.md), e.g.
#     bash ../shared/gpu/stage.sh eval      # mamba-ssm + lmms-eval and its packages + the real GPT-NeoX vocabulary
# then, on the GPU machine, from the project's root, with .gpu carried:
#     source bench/gpu_setup.sh && qbench run --model cobra --checkpoint random --suite mini --device cuda
#
# It installs the carried wheels and qbench itself (built from this checkout; no network) into /tmp/site, and exports
# PATH (the qbench and lmms-eval commands), PYTHONPATH, HF_HUB_OFFLINE, PYTHONUNBUFFERED and, where the profile
# carried tokenizers, QBENCH_HUB_DIR. Sourced, so that the environment stays set for the commands after it.

qbench_gpu_setup() {
  local site=/tmp/site root
  root=$(pwd)
  if [ ! -f "$root/pyproject.toml" ] || [ ! -d "$root/.gpu" ]; then
    echo "gpu_setup: run from the project's root with .gpu/ carried (bash ../shared/gpu/stage.sh PROFILE here first)" >&2
    return 2
  fi
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target "$site" "$root"/.gpu/*.whl \
    || return 1
  # qbench itself, with its commands and its lmms-eval entry point, built by the image's setuptools; where that
  # cannot build it (older than pyproject.toml's build requirement), qbench runs from the checkout and a launcher
  # stands in for its command (everything but `lmms-eval --model qbench` works so)
  local path="$site"
  if ! python3 -m pip install -q --no-index --no-deps --no-build-isolation --no-cache-dir --target "$site" \
      --upgrade "$root" 2>/tmp/qbench-build.log; then
    echo "gpu_setup: qbench not built here ($(tail -n 1 /tmp/qbench-build.log)); running it from $root" >&2
    mkdir -p "$site/bin" && printf '#!/bin/sh\nexec python3 -m qbench.cli "$@"\n' > "$site/bin/qbench"
    chmod +x "$site/bin/qbench"
    path="$root:$site"
  fi
  export PATH="$site/bin:$PATH" PYTHONPATH="$path${PYTHONPATH:+:$PYTHONPATH}" HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1
  if [ -d "$root/.gpu/hub" ]; then export QBENCH_HUB_DIR="$root/.gpu/hub"; fi
  python3 - <<'EOF'
import importlib.util

import torch

import qbench

have = {name: importlib.util.find_spec(name) is not None
        for name in ("mamba_ssm", "causal_conv1d", "triton", "lmms_eval", "datasets")}
print(f"gpu_setup: qbench {qbench.__version__} from {qbench.__file__}; torch {torch.__version__}, "
      f"{torch.cuda.get_device_name() if torch.cuda.is_available() else 'no GPU'}; "
      + ", ".join(f"{name} {'yes' if found else 'no'}" for name, found in have.items()))
EOF
}

qbench_gpu_setup
