"""Where the papers scored differently from lmms-eval: each variant, opt-in and named in every run's summary.

- textvqa_ocr: lmms-eval's TextVQA prompt has no OCR tokens (`none`). LLaVA-1.5 put "Reference OCR token: ..."
  after the question (`after-question`, lmms-eval's own `ocr: true`); Cobra put it before (`before-question`).
- pope_parsing: lmms-eval counts an answer only if it is exactly "yes" or "no" (`strict`). LLaVA's and Cobra's
  scripts keep the first sentence and read any "no"/"not" as no and everything else as yes (`lenient`).
- llava_prompt: qbench prompts LLaVA-1.5 with llava-hf's template, which has no system prompt (`llava-hf`); the
  LLaVA-1.5 paper evaluated with the Vicuna v1 system prompt in front (`vicuna_v1`). This one changes the model's
  prompt format (`function` "prompt"), not an lmms-eval task, and applies to models prompted with `wraps`.

A variant wraps the lmms-eval task's own function (the prompt builder or the scorer), so everything else is
unchanged, and it applies to every task built on that function (real, Lite and mini alike).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from qbench.registry import Registry

Config = dict[str, Any]  # an lmms-eval task config
MODEL_PROMPT = "prompt"  # the `function` of variants that change the model's prompt format, not a task


@dataclass(frozen=True)
class Variant:
    option: str
    value: str
    scored_by: str  # whose published numbers were scored this way
    function: str  # the lmms-eval config key it changes
    wraps: str  # the name of the lmms-eval function it applies to
    change: Callable[[Config], Any] | None  # the new value of config[function]; None: the default


def ocr_before_question(doc_to_text: Callable, doc: dict, lmms_eval_specific_kwargs: dict | None = None) -> str:
    """lmms-eval's own TextVQA prompt with the OCR line moved in front of the question."""
    kwargs = dict(lmms_eval_specific_kwargs or {})
    ocr = f"Reference OCR token: {', '.join(doc['ocr_tokens'])}\n"
    return doc_to_text(doc, {**kwargs, "pre_prompt": ocr + kwargs.get("pre_prompt", ""), "ocr": False})


def ocr_after_question(doc_to_text: Callable, doc: dict, lmms_eval_specific_kwargs: dict | None = None) -> str:
    """lmms-eval's own TextVQA prompt with its `ocr` switch on."""
    return doc_to_text(doc, {**(lmms_eval_specific_kwargs or {}), "ocr": True})


def lenient_yes_no(text: str) -> str:
    """LLaVA's eval_pope.py: the first sentence, commas dropped; a "No", "no" or "not" makes it no, else yes."""
    words = text.split(".")[0].replace(",", "").split(" ")
    return "no" if {"No", "no", "not"} & set(words) else "yes"


def lenient_pope(process_results: Callable, doc: dict, results: list[str]) -> dict:
    """lmms-eval's own POPE scoring of the leniently parsed answer."""
    return process_results(doc, [lenient_yes_no(results[0])])


VARIANTS: Registry[Variant] = Registry("variant")
for _variant in (
    Variant("textvqa_ocr", "none", "lmms-eval", "doc_to_text", "textvqa_doc_to_text", None),
    Variant("textvqa_ocr", "after-question", "LLaVA-1.5", "doc_to_text", "textvqa_doc_to_text",
            lambda config: functools.partial(ocr_after_question, config["doc_to_text"])),
    Variant("textvqa_ocr", "before-question", "Cobra", "doc_to_text", "textvqa_doc_to_text",
            lambda config: functools.partial(ocr_before_question, config["doc_to_text"])),
    Variant("pope_parsing", "strict", "lmms-eval", "process_results", "pope_process_results", None),
    Variant("pope_parsing", "lenient", "LLaVA-1.5 and Cobra", "process_results", "pope_process_results",
            lambda config: functools.partial(lenient_pope, config["process_results"])),
    Variant("llava_prompt", "llava-hf", "lmms-eval (llava-hf)", MODEL_PROMPT, "llava", None),
    Variant("llava_prompt", "vicuna_v1", "LLaVA-1.5 paper", MODEL_PROMPT, "llava", lambda _: "llava-vicuna-v1"),
):
    VARIANTS.register(f"{_variant.option}={_variant.value}")(_variant)


def parse_variants(items: list[str]) -> list[Variant]:
    """`["textvqa_ocr=before-question", ...]` -> variants; one value per option."""
    chosen = [VARIANTS[item.replace(" ", "")] for item in items]
    options = [variant.option for variant in chosen]
    repeated = sorted({option for option in options if options.count(option) > 1})
    if repeated:
        raise ValueError(f"variant option given twice: {', '.join(repeated)}")
    return [variant for variant in chosen if variant.change is not None]


def prompt_variant(variants: list[Variant], prompt: str) -> str:
    """The prompt format a model prompted with `prompt` uses under these variants; ValueError if one cannot apply."""
    for variant in variants:
        if variant.function == MODEL_PROMPT:
            if variant.wraps != prompt:
                raise ValueError(f"variant {variant.option}={variant.value} applies to models with the {variant.wraps} "
                                 f"prompt, not {prompt}")
            prompt = variant.change({MODEL_PROMPT: prompt})
    return prompt


def applies(variant: Variant, config: Config) -> bool:
    return getattr(config.get(variant.function), "__name__", None) == variant.wraps


def apply_variants(config: Config, variants: list[Variant]) -> Config:
    for variant in variants:
        if applies(variant, config):
            config = {**config, variant.function: variant.change(config)}
    return config
