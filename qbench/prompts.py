"""Each system's own prompt: the chat template, and where the visual tokens go in the sequence.

Several images in one prompt (multi-image, video frames): each image goes through the tower and projector on its own,
and the IMAGE slot of the template becomes one slot per image, joined by the format's `image_separator`. The papers
describe one image only, so how each layout extends is qbench's choice, stated here: Cobra, ML-Mamba and Q-Mamba keep
the visual tokens a pure prefix, the images' tokens back to back in order (nothing between them, as nothing stands
between visual and text tokens); LLaVA-1.5 takes llava-hf's chat template for several images, an `<image>` line per
image ("USER: <image>\n<image>\n{question} ASSISTANT:"). With one image both are exactly the single-image prompt.
"""

from __future__ import annotations

from dataclasses import dataclass

from qbench.registry import Registry

IMAGE = "<image>"  # where the visual embeddings go


@dataclass(frozen=True)
class PromptFormat:
    template: str  # contains {question} and IMAGE exactly once
    bos: bool  # whether the tokenizer's BOS starts the sequence
    answer_suffix: str  # what ends an answer in training data (the EOS text)
    image_separator: str = ""  # what stands between the slots of several images
    strip_question: bool = False  # prismatic's builders: `message.replace("<image>", "").strip()` before templating

    def render(self, question: str, images: int = 1) -> str:
        slots = self.image_separator.join([IMAGE] * images)
        if self.strip_question:
            question = question.replace(IMAGE, "").strip()
        return self.template.replace(IMAGE, slots).replace("{question}", question)

    def split(self, question: str, images: int = 1) -> list[str]:
        """The prompt's text around the visual tokens: before the first image, between images, after the last."""
        return self.render(question, images).split(IMAGE)


PROMPTS: Registry[PromptFormat] = Registry("prompt format")
# Cobra, ML-Mamba, Q-Mamba: Mamba-Zephyr chat; visual tokens are a pure prefix, no BOS; the question stripped.
PROMPTS.register("zephyr")(PromptFormat(IMAGE + "<|user|>\n{question}<|endoftext|>\n<|assistant|>\n", False,
                                        "<|endoftext|>", strip_question=True))
# Base (non-chat) Mamba LLMs.
PROMPTS.register("mamba-base")(PromptFormat(IMAGE + "In: {question}\nOut: ", False, "<|endoftext|>",
                                            strip_question=True))
# LLaVA-1.5 as llava-hf: BOS, then the visual tokens replace <image>.
PROMPTS.register("llava")(PromptFormat("USER: " + IMAGE + "\n{question} ASSISTANT:", True, "</s>", "\n"))
# LLaVA-1.5 as its paper evaluated it: the Vicuna v1 system prompt first (`--variant llava_prompt=vicuna_v1`).
VICUNA_V1 = ("A chat between a curious user and an artificial intelligence assistant. The assistant gives helpful, "
             "detailed, and polite answers to the user's questions.")
PROMPTS.register("llava-vicuna-v1")(PromptFormat(VICUNA_V1 + " USER: " + IMAGE + "\n{question} ASSISTANT:", True,
                                                 "</s>", "\n"))
