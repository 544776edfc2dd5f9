"""The my_vqa task's functions (lmms-eval imports them through `!function utils.NAME` in my_vqa.yaml)."""

from pathlib import Path

from PIL import Image

HERE = Path(__file__).resolve().parent  # questions.jsonl names its images relative to this folder


def doc_to_visual(doc: dict) -> list:
    """The question's picture, as lmms-eval gives it to a model: a list of PIL images."""
    return [Image.open(HERE / doc["image"]).convert("RGB")]


def doc_to_text(doc: dict, lmms_eval_specific_kwargs: dict | None = None) -> str:
    """The question between the task's pre- and post-prompt."""
    kwargs = lmms_eval_specific_kwargs or {}
    return f"{kwargs.get('pre_prompt', '')}{doc['question']}{kwargs.get('post_prompt', '')}"
