"""Which compute path serves a backbone: its packages' CUDA and Triton kernels, or PyTorch."""

from __future__ import annotations

import importlib.util

import torch


def installed(package: str) -> bool:
    return importlib.util.find_spec(package) is not None


def kernel_path(packages: tuple[str, ...], device: torch.device) -> str:
    """A short description such as 'mamba_ssm+causal_conv1d kernels' or 'pytorch fallback (no mamba_ssm)'."""
    if not packages:
        return f"pytorch ({'sdpa' if device.type == 'cuda' else 'cpu'})"
    present = [p for p in packages if installed(p)]
    if device.type != "cuda":
        return "pytorch fallback (cpu)"
    if not present:
        return f"pytorch fallback (no {', '.join(packages)})"
    missing = sorted(set(packages) - set(present))
    suffix = f"; pytorch conv (no {', '.join(missing)})" if missing else ""
    return f"{'+'.join(present)} kernels{suffix}"
