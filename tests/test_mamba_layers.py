"""qbench's own Mamba layers equal transformers' (fp32, CPU): every position of a left-padded batch, the state a
prompt leaves, and the gradients training takes (a question continuing an image's prefix state: test_engine.py, for
every backbone); the Triton scan from a state computes what the PyTorch scan does (in Triton's interpreter here)."""

import os
import subprocess
import sys

import pytest
import torch

from qbench.backbones import build_backbone
from qbench.backbones.mamba_layers import layer_state
from qbench.backbones.mamba_ops import selective_scan
from qbench.presets import get_preset

PRESETS = ["tiny-cobra", "tiny-ml-mamba"]
TOLERANCE = {"rtol": 1e-5, "atol": 1e-5}


def tiny_backbone(preset: str):
    """A tiny random backbone whose weights are perturbed off their init (A, D, dt bias all differ per channel)."""
    torch.manual_seed(0)
    backbone = build_backbone(get_preset(preset).backbone).eval()
    with torch.no_grad():
        for parameter in backbone.parameters():
            parameter.add_(0.05 * torch.randn_like(parameter))
    return backbone


def left_padded(rows: int, length: int, pads: list[int], seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    ids = torch.randint(3, 1000, (rows, length), generator=torch.Generator().manual_seed(seed))
    mask = torch.ones_like(ids)
    for row, count in enumerate(pads):
        mask[row, :count] = 0
    return ids, mask


@pytest.mark.parametrize("preset", PRESETS)
def test_every_position_and_the_prompts_state_equal_transformers(preset):
    backbone = tiny_backbone(preset)
    theirs = backbone.reference()
    ids, mask = left_padded(3, 11, [0, 4, 7])
    with torch.inference_mode():
        ours = backbone.logits(backbone.embed(ids), mask)
        cache = backbone.new_state(3, 16).cache
        expected = theirs(input_ids=ids, attention_mask=mask, cache_params=cache, use_cache=True).logits
        state = backbone.new_state(3, 16)
        last = backbone.prefill(backbone.embed(ids), mask, state)
    real = mask.bool()
    torch.testing.assert_close(ours[real], expected[real], **TOLERANCE)
    torch.testing.assert_close(last, expected[:, -1], **TOLERANCE)
    for index in range(len(backbone.blocks())):
        for got, want in zip(layer_state(state.cache, index), layer_state(cache, index), strict=True):
            torch.testing.assert_close(got, want, **TOLERANCE)


@pytest.mark.parametrize("preset", PRESETS)
def test_training_gradients_equal_transformers(preset):
    backbone = tiny_backbone(preset).train()
    theirs = backbone.reference().train()
    ids, mask = left_padded(2, 9, [0, 3])
    real = mask.bool()
    backbone.logits(backbone.embed(ids), mask)[real].logsumexp(-1).sum().backward()
    theirs(input_ids=ids, attention_mask=mask).logits[real].logsumexp(-1).sum().backward()
    expected = dict(theirs.named_parameters())  # the same values, each in a Parameter of its own
    for name, parameter in backbone.model.named_parameters():
        torch.testing.assert_close(parameter.grad, expected[name].grad, rtol=1e-4, atol=1e-5, msg=name)


def scan_inputs(dtype: torch.dtype, device: str):
    generator = torch.Generator().manual_seed(4)
    batch, inner, n, length = 3, 40, 8, 6  # 40 channels: a partial second block of 32

    def draw(*shape: int) -> torch.Tensor:
        return torch.randn(*shape, generator=generator)

    mask = torch.ones(batch, length, dtype=torch.long)
    mask[1, :2] = 0
    x, z, dt = draw(batch, inner, length), draw(batch, inner, length), draw(batch, inner, length)
    a, b, c = -torch.rand(inner, n, generator=generator) - 0.1, draw(batch, n, length), draw(batch, n, length)
    d, bias, state = draw(inner), draw(inner), draw(batch, inner, n)
    cast = [t.to(device, dtype) for t in (x, dt, b, c, z)]
    return (*cast, a.to(device), d.to(device), bias.to(device), mask.to(device), state.to(device))


@pytest.mark.skipif(not (os.environ.get("TRITON_INTERPRET") == "1" or torch.cuda.is_available()),
                    reason="Triton kernels run on a GPU or in Triton's interpreter")
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_triton_scan_from_a_state_matches_the_pytorch_scan(dtype):
    from qbench.backbones.mamba_ops import kernel_selective_scan

    device = "cuda" if torch.cuda.is_available() else "cpu"
    x, dt, b, c, z, a, d, bias, mask, state = scan_inputs(dtype, device)
    expected, expected_state = selective_scan(x, dt, a, b, c, d, z, bias, mask, state)
    got, got_state = kernel_selective_scan(x, dt, a, b, c, d, z, bias, mask, state)
    tolerance = TOLERANCE if dtype == torch.float32 else {"rtol": 2e-2, "atol": 2e-2}
    torch.testing.assert_close(got.float(), expected.float(), **tolerance)
    torch.testing.assert_close(got_state, expected_state, **tolerance)


@pytest.mark.skipif(os.environ.get("TRITON_INTERPRET") == "1" or torch.cuda.is_available(),
                    reason="the kernel is tested directly here")
def test_triton_scan_in_the_interpreter():
    env = {**os.environ, "TRITON_INTERPRET": "1", "OMP_NUM_THREADS": "1"}
    result = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", __file__, "-k",
                             "triton_scan_from_a_state"], env=env, capture_output=True, text=True, timeout=600,
                            check=False)
    assert result.returncode == 0, result.stdout[-3000:]
    assert "2 passed" in result.stdout
