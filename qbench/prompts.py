"""Each system's own prompt: the chat template, and where the visual tokens go in the sequence."""

from __future__ import annotations

from dataclasses import dataclass

from qbench.registry import Registry

IMAGE = "<image>"  # where the visual embeddings go


@dataclass(frozen=True)
class PromptFormat:
    template: str  # contains {question} and IMAGE exactly once
    bos: bool  # whether the tokenizer's BOS starts the sequence
    answer_suffix: str  # what ends an answer in training data (the EOS text)

    def render(self, question: str) -> str:
        return self.template.replace("{question}", question)

    def split(self, question: str) -> tuple[str, str]:
        """The prompt's text before and after the visual tokens."""
        before, after = self.render(question).split(IMAGE)
        return before, after


PROMPTS: Registry[PromptFormat] = Registry("prompt format")
# Cobra, ML-Mamba, Q-Mamba: Mamba-Zephyr chat; visual tokens are a pure prefix, no BOS.
PROMPTS.register("zephyr")(PromptFormat(IMAGE + "<|user|>\n{question}<|endoftext|>\n<|assistant|>\n", False, "<|endoftext|>"))
# Base (non-chat) Mamba LLMs.
PROMPTS.register("mamba-base")(PromptFormat(IMAGE + "In: {question}\nOut: ", False, "<|endoftext|>"))
# LLaVA-1.5 as llava-hf: BOS, then the visual tokens replace <image>.
PROMPTS.register("llava")(PromptFormat("USER: " + IMAGE + "\n{question} ASSISTANT:", True, "</s>"))
