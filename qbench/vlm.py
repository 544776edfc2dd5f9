"""The VLM: vision tower -> projector -> LLM backbone, with each system's own prompt and sequence layout."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence

import torch
from torch import nn
from transformers import PreTrainedTokenizerBase

from qbench.backbones import Backbone, DecodeState
from qbench.backbones.decode import EagerDecoder, greedy_decode
from qbench.projectors import Projector
from qbench.prompts import IMAGE, PROMPTS, PromptFormat
from qbench.spec import VLMSpec
from qbench.vision import VisionTower
from qbench.vision.transforms import ImageLike


def count_parameters(module: nn.Module) -> int:
    """Parameters, each shared (tied) tensor counted once; works on the meta device."""
    return sum(p.numel() for p in module.parameters())


def visual_tokens_of(spec: VLMSpec) -> int:
    """The visual token count a spec's tower and projector give, worked out on the meta device."""
    return build_vlm(spec, device="meta").visual_tokens


class VLM(nn.Module):
    def __init__(self, spec: VLMSpec, vision: VisionTower, projector: Projector, backbone: Backbone,
                 tokenizer: PreTrainedTokenizerBase):
        super().__init__()
        self.spec = spec
        self.vision = vision
        self.projector = projector
        self.backbone = backbone
        self.tokenizer = tokenizer
        self.tokenized: dict[tuple[str, int], list[list[int]]] = {}  # (question, images) -> prompt_segments
        self.tokenized_answers: dict[str, list[int]] = {}  # answer -> answer_ids(answer)

    # --- facts -------------------------------------------------------------------------------------------------
    @property
    def prompt(self) -> PromptFormat:
        return PROMPTS[self.spec.prompt]

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.backbone.parameters()).dtype

    @property
    def visual_tokens(self) -> int:
        return self.projector.tokens_out(self.vision.grid)

    @property
    def eos_id(self) -> int:
        return self.tokenizer.eos_token_id

    @property
    def pad_id(self) -> int:
        return self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else self.eos_id

    def parameter_counts(self) -> dict[str, int]:
        counts = {"vision_params": count_parameters(self.vision), "projector_params": count_parameters(self.projector),
                  "llm_params": count_parameters(self.backbone)}
        counts["total_params"] = count_parameters(self)
        return counts

    # --- stages ------------------------------------------------------------------------------------------------
    def preprocess(self, images: Sequence[ImageLike]) -> torch.Tensor:
        return self.vision.preprocess(list(images))

    def encode_images(self, pixels: torch.Tensor) -> torch.Tensor:
        """Pixels [B, C, H, W] -> visual embeddings [B, T, D_llm] (vision tower, then projector)."""
        features = self.vision(pixels.to(self.device, self.vision_dtype))
        return self.projector(features.to(self.dtype))

    @property
    def vision_dtype(self) -> torch.dtype:
        return next(self.vision.parameters()).dtype

    def prompt_ids(self, question: str) -> tuple[list[int], list[int]]:
        """Token ids before and after the visual tokens, in the system's own template."""
        before, after = self.prompt_segments(question)
        return before, after

    def prompt_segments(self, question: str, images: int = 1) -> list[list[int]]:
        """Token ids around the visual tokens of `images` images (before the first, between, after the last)."""
        if (question, images) not in self.tokenized:
            self.tokenized[question, images] = self.tokenize_prompt(question, images)
        return self.tokenized[question, images]

    def tokenize_prompt(self, question: str, images: int = 1) -> list[list[int]]:
        tokenizer = self.tokenizer
        image_id = tokenizer.convert_tokens_to_ids(IMAGE) if IMAGE in tokenizer.get_vocab() else None
        bos = [tokenizer.bos_token_id] if self.prompt.bos else []
        if image_id is not None:  # tokenise the whole prompt, as llava-hf does, and split at each <image>
            ids = bos + tokenizer(self.prompt.render(question, images), add_special_tokens=False).input_ids
            cuts = [-1] + [at for at, token in enumerate(ids) if token == image_id] + [len(ids)]
            return [ids[start + 1 : end] for start, end in zip(cuts, cuts[1:])]
        encode = lambda text: tokenizer(text, add_special_tokens=False).input_ids if text else []
        first, *rest = self.prompt.split(question, images)
        return [bos + encode(first)] + [encode(text) for text in rest]

    def build_inputs(self, visual: torch.Tensor, questions: Sequence[str], answers: Sequence[str] | None = None,
                     images: int = 1) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Left-padded input embeddings [B, L, D], mask [B, L] and labels [B, L] (-100 except answer tokens).

        `visual` [B * images, T, D]: each prompt's images in order, their tokens placed in the system's layout."""
        rows = []
        for index, question in enumerate(questions):
            *segments, after = self.prompt_segments(question, images)
            answer = self.answer_ids(answers[index]) if answers is not None else []
            rows.append((segments, after + answer, len(answer)))
        count = visual.shape[1]
        length = max(sum(map(len, s)) + images * count + len(a) for s, a, _ in rows)
        ids = torch.full((len(rows), length), self.pad_id, dtype=torch.long)
        mask = torch.zeros(len(rows), length, dtype=torch.long)
        labels = torch.full((len(rows), length), -100, dtype=torch.long)
        is_visual = torch.zeros(len(rows), length, dtype=torch.bool)
        for index, (segments, after, answer_length) in enumerate(rows):
            start = length - sum(map(len, segments)) - images * count - len(after)
            row = []
            for segment in segments:  # text, then one image's visual tokens
                row += segment
                is_visual[index, start + len(row) : start + len(row) + count] = True
                row += [self.pad_id] * count
            ids[index, start:] = torch.tensor(row + after)
            mask[index, start:] = 1
            if answer_length:
                labels[index, length - answer_length :] = torch.tensor(after[len(after) - answer_length :])
        ids, mask, labels, is_visual = (t.to(self.device) for t in (ids, mask, labels, is_visual))
        embeds = self.backbone.embed(ids)
        embeds[is_visual] = visual.reshape(-1, visual.shape[-1]).to(embeds.dtype)  # row by row, in order
        return embeds, mask, labels

    def answer_ids(self, answer: str) -> list[int]:
        """An answer as training targets: its tokens, then the template's end of turn (EOS)."""
        if answer not in self.tokenized_answers:
            self.tokenized_answers[answer] = self.tokenizer(answer, add_special_tokens=False).input_ids + [self.eos_id]
        return self.tokenized_answers[answer]

    def prefill(self, embeds: torch.Tensor, mask: torch.Tensor, max_new_tokens: int) -> tuple[torch.Tensor, DecodeState]:
        state = self.backbone.new_state(embeds.shape[0], embeds.shape[1] + max_new_tokens)
        return self.backbone.prefill(embeds, mask, state), state

    def decode_step(self, ids: torch.Tensor, state: DecodeState) -> torch.Tensor:
        return self.backbone.step(ids, state)

    # --- end to end --------------------------------------------------------------------------------------------
    @torch.inference_mode()
    def generate(self, images: Sequence[ImageLike | Sequence[ImageLike]], questions: Sequence[str],
                 max_new_tokens: int = 16, decoder: type[EagerDecoder] = EagerDecoder) -> list[str]:
        """Greedy answers, one per (image, question), stopping at EOS, decoded by `decoder` (the eager one, or an
        engine's: `qbench.engine.ENGINES[name]`).

        An entry of `images` may be a list of images (the same number for every question): one prompt over all of
        them, in the system's multi-image layout (qbench.prompts)."""
        return [self.decode_answer(row) for row in self.generate_tokens(images, questions, max_new_tokens, decoder)]

    @torch.inference_mode()
    def generate_tokens(self, images: Sequence[ImageLike | Sequence[ImageLike]], questions: Sequence[str],
                        max_new_tokens: int = 16, decoder: type[EagerDecoder] = EagerDecoder) -> list[list[int]]:
        """`generate`'s greedy tokens, before decoding: each row up to its EOS (included) or `max_new_tokens`."""
        flat, per_prompt = images_per_prompt(images)
        visual = self.encode_images(self.preprocess(flat))
        embeds, mask, _ = self.build_inputs(visual, questions, images=per_prompt)
        tokens = greedy_decode(self.backbone, embeds, mask, max_new_tokens, self.eos_id, decoder)
        return [until_eos(row, self.eos_id) for row in tokens.tolist()]

    def decode_answer(self, ids: list[int]) -> str:
        if self.eos_id in ids:
            ids = ids[: ids.index(self.eos_id)]
        return self.tokenizer.decode(ids, skip_special_tokens=True).strip()

    def answer(self, image: ImageLike, question: str, max_new_tokens: int = 16) -> str:
        return self.generate([image], [question], max_new_tokens)[0]


def until_eos(ids: list[int], eos_id: int) -> list[int]:
    """Greedy tokens up to the first EOS, included (a finished row repeats EOS to the batch's end)."""
    return ids[: ids.index(eos_id) + 1] if eos_id in ids else ids


def images_per_prompt(images: Sequence[ImageLike | Sequence[ImageLike]]) -> tuple[list[ImageLike], int]:
    """All images in prompt order, and how many each prompt has (one image, or a list of them, per prompt)."""
    groups = [list(entry) if isinstance(entry, (list, tuple)) else [entry] for entry in images]
    counts = {len(group) for group in groups}
    if len(counts) > 1 or 0 in counts:
        raise ValueError(f"every prompt needs the same number of images (at least one); got {sorted(counts)}")
    return [image for group in groups for image in group], counts.pop() if counts else 1


@contextlib.contextmanager
def default_dtype(dtype: torch.dtype):
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        yield
    finally:
        torch.set_default_dtype(previous)


def build_vlm(spec: VLMSpec, device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32,
              init: bool = True, tower_weights: Callable[[str], str] | None = None, tokenizer: bool = True) -> VLM:
    """Modules from a spec, made directly on `device` in `dtype` (no full-precision copy on the way).

    `init=False` leaves parameters uninitialised, for weights about to be loaded; `device="meta"` allocates nothing.
    `tower_weights` (hub id -> local path) loads each vision encoder's own pretrained weights.
    `tokenizer=False` skips the tokenizer (timing runs that feed token ids directly need none).
    """
    from transformers.initialization import no_init_weights

    from qbench.backbones import build_backbone
    from qbench.projectors import build_projector
    from qbench.tokenizers import load_tokenizer
    from qbench.vision import build_tower

    text = load_tokenizer(spec.tokenizer) if tokenizer and device != "meta" else None  # first: a missing one fails fast
    skip = contextlib.nullcontext() if init else no_init_weights()
    with torch.device(device), default_dtype(dtype), skip:
        vision = build_tower(spec.vision, tower_weights)
        backbone = build_backbone(spec.backbone)
        projector = build_projector(spec.projector, vision.feature_dim, backbone.hidden_size)
    backbone.model.tie_weights()
    vlm = VLM(spec, vision, projector, backbone, text)
    return vlm.to(device=device, dtype=dtype) if device != "meta" else vlm
