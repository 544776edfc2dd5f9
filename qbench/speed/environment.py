"""What a speed or training result was measured on: the device, its driver, and the library versions."""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
from importlib import metadata

import torch

PACKAGES = ("torch", "transformers", "accelerate", "mamba_ssm", "causal_conv1d", "triton")
DISTRIBUTIONS = {"mamba_ssm": "mamba-ssm", "causal_conv1d": "causal-conv1d"}


def package_version(name: str) -> str | None:
    try:
        return metadata.version(DISTRIBUTIONS.get(name, name))
    except metadata.PackageNotFoundError:
        return None


def driver_version() -> str | None:
    if shutil.which("nvidia-smi") is None:
        return None
    result = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                            capture_output=True, text=True, check=False)
    return result.stdout.strip().splitlines()[0] if result.returncode == 0 and result.stdout.strip() else None


def environment(device: torch.device) -> dict:
    env = {"device": device.type, "python": platform.python_version(), "platform": platform.platform(),
           "cpu_count": os.cpu_count(), "cuda": torch.version.cuda,
           **{name: package_version(name) for name in PACKAGES}}
    if device.type == "cuda":
        properties = torch.cuda.get_device_properties(device)
        env |= {"gpu": properties.name, "gpu_memory_gib": round(properties.total_memory / 2**30, 1),
                "compute_capability": f"{properties.major}.{properties.minor}", "driver": driver_version()}
    else:
        env |= {"gpu": None, "processor": platform.processor() or platform.machine()}
    return env


def device_slug(env: dict) -> str:
    """'nvidia-h100-80gb-hbm3' or 'cpu': for naming result folders."""
    name = (env.get("gpu") or "cpu").lower()
    return "-".join("".join(c if c.isalnum() else " " for c in name).split())
