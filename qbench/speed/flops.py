"""Model FLOPs of each stage, the numerator of model-FLOP utilisation (MFU = model FLOPs / time / the card's peak).

Every matrix multiply counts 2 FLOPs per weight per token; a ViT's attention scores count too (4 x depth x tokens^2 x
width per image: about 12% of a ViT-L's at 729 patches). An LLM's attention scores and the Mamba scan are left out:
at a few hundred tokens of context they are under 3% of the weights' FLOPs, so MFU reads slightly low there. Only
useful work counts: real tokens, not padding, not the rows a batch is padded with.
"""

from __future__ import annotations

from torch import nn

from qbench.backbones.base import Backbone
from qbench.vlm import VLM, count_parameters

# Dense tensor-core peaks as NVIDIA publishes them (TFLOP/s), by the start of torch's device name; fp32 without TF32
# is the CUDA cores' peak (torch's default for matmuls).
PEAK_TFLOPS = {
    "NVIDIA H100 PCIe": {"bf16": 756.0, "fp16": 756.0, "fp32": 51.2},
    "NVIDIA H100": {"bf16": 989.4, "fp16": 989.4, "fp32": 66.9},  # SXM5 (H100 80GB HBM3)
    "NVIDIA H200": {"bf16": 989.4, "fp16": 989.4, "fp32": 66.9},
}


def peak_flops(gpu: str | None, dtype: str) -> float | None:
    """The card's dense peak in FLOP/s for `dtype` (bf16, fp16, fp32); None for a CPU or an unlisted card."""
    for name, peaks in PEAK_TFLOPS.items():  # the longer, more specific names first
        if gpu and gpu.startswith(name) and dtype in peaks:
            return peaks[dtype] * 1e12
    return None


def matmul_flops(module: nn.Module) -> float:
    """2 FLOPs per weight: one token through every matrix of `module`."""
    return 2.0 * count_parameters(module)


def image_flops(vlm: VLM) -> float:
    """One image through the tower (its blocks up to the second-to-last, whose features it hands on) and the
    projector (its weights once per patch: an upper bound for Q-Mamba's query projector)."""
    total = 0.0
    for encoder in vlm.vision.encoders.values():
        blocks = list(encoder.blocks())[:-1]
        tokens = vlm.vision.num_patches + encoder.prefix_tokens
        total += tokens * sum(matmul_flops(block) for block in blocks) + 4 * len(blocks) * tokens**2 * encoder.width
    return total + vlm.vision.num_patches * matmul_flops(vlm.projector)


def token_flops(backbone: Backbone) -> float:
    """One token through every LLM block (embedding lookups and the head not included)."""
    return sum(matmul_flops(block) for block in backbone.blocks())


def head_flops(vlm: VLM) -> float:
    """One row of logits."""
    return 2.0 * vlm.backbone.hidden_size * vlm.spec.backbone.vocab
