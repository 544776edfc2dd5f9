"""qbench's fused Mamba decode step: its math in PyTorch ops decodes like transformers' step (fp32, exactly the same
greedy tokens), and its Triton kernels compute what those PyTorch ops do (in Triton's CPU interpreter here)."""

import os
import subprocess
import sys

import pytest
import torch
from tiny_backbones import tiny_family

from qbench.backbones.decode import greedy_decode
from qbench.backbones.mamba_layers import layer_state
from qbench.backbones.mamba_step import TORCH_OPS, fused_step, layers_of
from qbench.presets import get_preset

PRESETS = ["tiny-cobra", "tiny-ml-mamba"]


def tiny_backbone(preset: str):
    return tiny_family(get_preset(preset).backbone.kind, shaken=True)


def prompts(vocab: int) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(1)
    ids = torch.randint(3, vocab, (5, 7), generator=generator)
    return ids, torch.ones_like(ids)


def states_of(state) -> list[tuple[torch.Tensor, torch.Tensor]]:
    return [layer_state(state.cache, index) for index in range(len(state.cache.layers))]


@pytest.mark.parametrize("preset", PRESETS)
def test_fused_step_in_pytorch_matches_transformers_step(preset):
    backbone = tiny_backbone(preset)
    ids, mask = prompts(backbone.model.config.vocab_size)
    theirs, ours = backbone.new_state(5, 12), backbone.new_state(5, 12)
    with torch.inference_mode():
        token = backbone.prefill(backbone.embed(ids), mask, theirs).argmax(-1)
        backbone.prefill(backbone.embed(ids), mask, ours)
        for _ in range(3):
            expected = backbone.reference()(input_ids=token[:, None], cache_params=theirs.cache,
                                            use_cache=True).logits[:, -1]
            got = fused_step(backbone.model, layers_of(backbone.model), token, states_of(ours), TORCH_OPS)
            torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)
            for (conv, ssm), (their_conv, their_ssm) in zip(states_of(ours), states_of(theirs)):
                torch.testing.assert_close(conv, their_conv, rtol=1e-5, atol=1e-5)
                torch.testing.assert_close(ssm, their_ssm, rtol=1e-5, atol=1e-5)
            token = expected.argmax(-1)


@pytest.mark.parametrize("preset", PRESETS)
def test_fused_step_gives_transformers_greedy_tokens_in_fp32(preset):
    backbone = tiny_backbone(preset)
    ids, mask = prompts(backbone.model.config.vocab_size)
    embeds = backbone.embed(ids).detach()
    tokens = {}
    for path in ("transformers", "qbench-torch"):
        backbone.step_path = path
        tokens[path] = greedy_decode(backbone, embeds, mask, 16)
    assert torch.equal(tokens["qbench-torch"], tokens["transformers"])
    assert "qbench fused step in PyTorch ops" in backbone.kernel_path


def test_fused_step_follows_the_weights_when_they_are_cast():
    backbone = tiny_backbone("tiny-cobra")
    ids, mask = prompts(backbone.model.config.vocab_size)
    embeds = backbone.embed(ids).detach()
    backbone.step_path = "qbench-torch"
    greedy_decode(backbone, embeds, mask, 2)  # the step's views of the weights are made
    backbone.to(torch.float64).to(torch.float32)  # new weight tensors, then changed in place
    with torch.no_grad():
        for parameter in backbone.parameters():
            parameter.add_(0.05 * torch.randn_like(parameter))
    tokens = {}
    for path in ("transformers", "qbench-torch"):
        backbone.step_path = path
        tokens[path] = greedy_decode(backbone, embeds, mask, 16)
    assert torch.equal(tokens["qbench-torch"], tokens["transformers"])


def test_step_path_is_checked():
    backbone = tiny_backbone("tiny-cobra")
    backbone.step_path = "fast"
    with pytest.raises(ValueError, match="unknown step path 'fast'"):
        backbone.decode_path(torch.device("cpu"))
    backbone.step_path = "qbench-triton"
    with pytest.raises(ValueError, match="needs a CUDA device"):
        backbone.decode_path(torch.device("cpu"))
    backbone.step_path = None
    assert backbone.decode_path(torch.device("cpu")) == "transformers"


@pytest.mark.skipif(not (os.environ.get("TRITON_INTERPRET") == "1" or torch.cuda.is_available()),
                    reason="Triton kernels run on a GPU or in Triton's interpreter")
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("preset", PRESETS)
def test_triton_kernels_match_pytorch_ops(preset, dtype):
    from qbench.backbones.mamba_triton import TRITON_OPS

    device = "cuda" if torch.cuda.is_available() else "cpu"
    backbone = tiny_backbone(preset).to(device, dtype)
    ids, mask = prompts(backbone.model.config.vocab_size)
    ids, mask = ids.to(device), mask.to(device)
    reference, fused = backbone.new_state(5, 12), backbone.new_state(5, 12)
    tolerance = {"rtol": 1e-5, "atol": 1e-5} if dtype == torch.float32 else {"rtol": 2e-2, "atol": 4e-2}
    with torch.inference_mode():
        token = backbone.prefill(backbone.embed(ids), mask, reference).argmax(-1)
        backbone.prefill(backbone.embed(ids), mask, fused)
        for _ in range(3):
            expected = fused_step(backbone.model, layers_of(backbone.model), token, states_of(reference), TORCH_OPS)
            got = fused_step(backbone.model, layers_of(backbone.model), token, states_of(fused), TRITON_OPS)
            torch.testing.assert_close(got.float(), expected.float(), **tolerance)
            for ours, theirs in zip(states_of(fused), states_of(reference)):
                for a, b in zip(ours, theirs):
                    torch.testing.assert_close(a.float(), b.float(), **tolerance)
            token = expected.argmax(-1)


@pytest.mark.skipif(os.environ.get("TRITON_INTERPRET") == "1" or torch.cuda.is_available(),
                    reason="the kernels are tested directly here")
def test_triton_kernels_in_the_interpreter():
    env = {**os.environ, "TRITON_INTERPRET": "1", "OMP_NUM_THREADS": "1"}
    result = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", __file__, "-k",
                             "triton_kernels_match"], env=env, capture_output=True, text=True, timeout=600, check=False)
    assert result.returncode == 0, result.stdout[-3000:]
    assert "4 passed" in result.stdout
