"""Mamba-1 LLMs (Cobra's Mamba-2.8B-Zephyr) in transformers MambaForCausalLM's layout, on qbench's own layers."""

from __future__ import annotations

from types import SimpleNamespace

import torch
from torch import nn
from transformers import MambaConfig, MambaForCausalLM, PreTrainedModel

from qbench.backbones.base import Backbone
from qbench.backbones.fused import fused_available, fused_step, mamba_ssm_model
from qbench.backbones.kernels import installed
from qbench.backbones.mamba_layers import Block, Mamba1Block, MambaLM, layer_state, new_cache
from qbench.backbones.mamba_ops import KERNEL_OPS
from qbench.backbones.mamba_ops import TORCH_OPS as LAYER_TORCH_OPS
from qbench.backbones.mamba_step import TORCH_OPS, Layer, check_supported, layers_of
from qbench.backbones.mamba_step import fused_step as qbench_step
from qbench.backbones.state import DecodeState
from qbench.spec import TINY_VOCAB, BackboneSpec

# How a decode step runs: qbench's fused step (Triton kernels, or the same math in PyTorch ops), mamba_ssm's step
# over the same weights, or transformers' own.
STEP_PATHS = ("qbench-triton", "qbench-torch", "mamba_ssm", "transformers")
# How a chunk (a prompt, a question, a training batch) runs through qbench's layers: on mamba_ssm's scan kernels and
# Triton, or in PyTorch ops.
LAYER_PATHS = {"kernels": KERNEL_OPS, "pytorch": LAYER_TORCH_OPS}


class RecurrentBackbone(Backbone):
    """Shared by Mamba-1 and Mamba-2: a fixed-size conv + SSM state, continued by any chunk of tokens.

    Chunks (prefill, a question from a prefix state, training) run through qbench's layers (`layer_path`: mamba_ssm's
    scan kernels on a GPU, PyTorch ops elsewhere); decode steps run `step_path` over the same weights and state
    tensors: by default on a GPU qbench's fused Triton step (with triton; mamba_ssm's step without it), elsewhere
    transformers'. transformers' model over the same weights (`reference`) is what the tests compare against.
    """

    prompt = "zephyr"
    tiny_tokenizer = "qbench-tiny-neox"
    kernel_packages = ("mamba_ssm",)
    recurrent_state = True
    step_paths = STEP_PATHS
    block: type[Block]  # qbench's block over the family's transformers parameters (mamba_layers)
    # The largest batch for which the fused Triton step is the default (None: any)
    triton_batch_limit: int | None = None

    _fused: list[nn.Module]  # in a list, so the shared-weight models are not registered as submodules
    _reference: list[PreTrainedModel]
    _layers: list[Layer]  # the fused step's views of the weights
    step_path: str | None = None  # one of STEP_PATHS; None: the default for the device
    layer_path: str | None = None  # one of LAYER_PATHS; None: the default for the device

    @classmethod
    def random(cls, spec: BackboneSpec) -> RecurrentBackbone:
        return cls(MambaLM(cls.reference_class(cls.config(spec)), cls.block))

    def new_state(self, batch: int, max_len: int) -> DecodeState:
        device = self.model.device
        return DecodeState(
            cache=new_cache(self.model, batch),
            mask=torch.ones(batch, max_len, dtype=torch.long, device=device),
            positions=torch.zeros(batch, dtype=torch.long, device=device),
        )

    def layer_ops(self, device: torch.device) -> SimpleNamespace:
        """The ops of `layer_path` (checked), or the device's default: kernels on a GPU where mamba_ssm is."""
        kernels = fused_available(self.mamba_ssm_mixer, device)
        path = self.layer_path or ("kernels" if kernels else "pytorch")
        if path not in LAYER_PATHS:
            raise ValueError(f"unknown layer path {path!r}; choose from: {', '.join(LAYER_PATHS)}")
        if path == "kernels" and not kernels:
            raise ValueError("layer path 'kernels' needs a CUDA device and mamba_ssm")
        return LAYER_PATHS[path]

    def logits(self, embeds: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        if mask is None:
            mask = torch.ones(embeds.shape[:2], dtype=torch.long, device=embeds.device)
        return self.model(embeds, mask, None, self.layer_ops(embeds.device))

    def prefill(self, embeds: torch.Tensor, mask: torch.Tensor, state: DecodeState) -> torch.Tensor:
        return self.model(embeds, mask, state.cache, self.layer_ops(embeds.device), keep=1)[:, -1]

    def extend(self, ids: torch.Tensor, mask: torch.Tensor, state: DecodeState) -> torch.Tensor:
        """The whole chunk at once from each row's state: padding neither moves the state nor enters the conv."""
        return self.model(self.embed(ids), mask, state.cache, self.layer_ops(ids.device), keep=1, fresh=False)[:, -1]

    def reference(self) -> PreTrainedModel:
        """transformers' model of the family over this backbone's parameter tensors (shared), made on first use."""
        if not getattr(self, "_reference", None):
            with torch.device("meta"):
                model = self.reference_class(self.model.config)
            model.load_state_dict(self.model.state_dict(), strict=True, assign=True)
            model.tie_weights()
            self._reference = [model.eval()]
        return self._reference[0]

    def step(self, ids: torch.Tensor, state: DecodeState) -> torch.Tensor:
        path = self.decode_path(ids.device, ids.shape[0])
        states = [layer_state(state.cache, index) for index in range(len(state.cache.layers))]
        if path == "qbench-triton":
            from qbench.backbones.mamba_triton import TRITON_OPS

            return qbench_step(self.model, self.fused_layers(), ids, states, TRITON_OPS)
        if path == "qbench-torch":
            return qbench_step(self.model, self.fused_layers(), ids, states, TORCH_OPS)
        if path == "mamba_ssm":
            return fused_step(self.fused_model(), ids, dict(enumerate(states)), state.mask.shape[1])
        out = self.reference()(input_ids=ids[:, None], cache_params=state.cache, use_cache=True)
        return out.logits[:, -1]

    def decode_path(self, device: torch.device, batch: int = 1) -> str:
        """The step path in use: `step_path` if set (checked), else the default for the device and batch size."""
        path = self.step_path
        if path is None:
            limit = self.triton_batch_limit
            if (device.type == "cuda" and installed("triton") and supports_qbench_step(self.model)
                    and (limit is None or batch <= limit)):
                return "qbench-triton"
            return "mamba_ssm" if fused_available(self.mamba_ssm_mixer, device) else "transformers"
        if path not in STEP_PATHS:
            raise ValueError(f"unknown step path {path!r}; choose from: {', '.join(STEP_PATHS)}")
        if path.startswith("qbench"):
            check_supported(self.model)
        if (path == "qbench-triton" and device.type != "cuda") or (path == "mamba_ssm" and not fused_available(
                self.mamba_ssm_mixer, device)):
            raise ValueError(f"step path {path!r} needs a CUDA device{' and mamba_ssm' * (path == 'mamba_ssm')}")
        return path

    def fused_layers(self) -> list[Layer]:
        """The fused step's views of the weights (`layers_of`: ~1.4 ms for 64 layers), made on first use."""
        if not getattr(self, "_layers", None):
            self._layers = layers_of(self.model)
        return self._layers

    def _apply(self, fn, recurse: bool = True):
        """Moving or casting the weights (`.to`, `.half`, ...) gives them new tensors: the views of the old ones that
        the fused step and mamba_ssm's model hold are dropped, to be made again on next use."""
        self._fused, self._layers, self._reference = [], [], []
        return super()._apply(fn, recurse)

    def fused_model(self) -> nn.Module:
        """mamba_ssm's model sharing this backbone's parameters, made on first use."""
        if not getattr(self, "_fused", None):
            self._fused = [mamba_ssm_model(self.mamba_ssm_mixer, self.model)]
        return self._fused[0]

    @property
    def kernel_path(self) -> str:
        device = self.model.device
        notes = {"qbench-triton": "qbench fused Triton step", "qbench-torch": "qbench fused step in PyTorch ops",
                 "mamba_ssm": "mamba_ssm fused step", "transformers": "transformers' step"}
        return (f"{super().kernel_path}; layers: qbench on {self.layer_ops(device).name}; "
                f"decode: {notes[self.decode_path(device)]}")


def supports_qbench_step(model: nn.Module) -> bool:
    try:
        check_supported(model)
    except ValueError:
        return False
    return True


class MambaBackbone(RecurrentBackbone):
    """Mamba-1: a selective scan over a [D_inner, N] state per channel."""

    kind = "mamba"
    reference_class = MambaForCausalLM
    block = Mamba1Block
    tiny = BackboneSpec("mamba", 64, 2, TINY_VOCAB, {"state_size": 8, "expand": 2, "conv_kernel": 4})
    mamba_ssm_mixer = "Mamba1"
    # above batch 16 Mamba-1's x_proj atomics and per-program dt_proj tiles cost more than they save (measured on an
    # H200, batch 64: 0.61x mamba_ssm's step), so mamba_ssm's step serves
    triton_batch_limit = 16

    @classmethod
    def config(cls, spec: BackboneSpec) -> MambaConfig:
        options = spec.options
        return MambaConfig(
            vocab_size=spec.vocab,
            hidden_size=spec.hidden,
            num_hidden_layers=spec.layers,
            state_size=options.get("state_size", 16),
            expand=options.get("expand", 2),
            conv_kernel=options.get("conv_kernel", 4),
            time_step_rank=options.get("time_step_rank", "auto"),
            residual_in_fp32=True,
            tie_word_embeddings=spec.tie_embeddings,
            layer_norm_epsilon=1e-5,
            eos_token_id=0, bos_token_id=0, pad_token_id=0,
        )
