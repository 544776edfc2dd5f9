"""Offline mini-suites: small datasets in the exact schemas of the five hub datasets, generated from scenes.

`write(out)` (the `qbench data mini` command) writes, deterministically for a seed, five local dataset copies in the
hub layout under `<out>/mini/`:

    VQAv2/       like lmms-lab-encoder/VQAv2      attribute, count and existence questions, ten answers each
    GQA/         like lmms-lab-encoder/GQA        spatial relations, one answer; images in their own config
    VizWiz-VQA/  like lmms-lab-encoder/VizWiz-VQA one object, or unanswerable (blurred, dark, or absent)
    textvqa/     like lmms-lab-encoder/textvqa    words written on signs, with `ocr_tokens`
    POPE/        like lmms-lab-encoder/POPE       object presence with random, popular and adversarial negatives

Each has an eval split (as the lmms-eval task reads it) and, except POPE, a train split. The `mini` suite
(suites/mini.yaml) runs the eval splits through lmms-eval's own VQAv2, GQA, VizWiz, TextVQA and POPE tasks.

`train_records()` gives the train splits as (image, prompt, answer) records for training, generated in memory
(no `datasets` needed), identical to what `write` stores.
"""

from __future__ import annotations

import json
import math
import random
import shutil
import tempfile
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from qbench.inputs import UserError, read_json
from qbench.suites import questions as q
from qbench.suites.scenes import (
    COLOURS,
    SHAPES,
    Scene,
    jpeg,
    sample_shapes,
    sample_signs,
)
from qbench.verbosity import step

# The generator's version, recorded in MINI.json and in every run's data provenance: it changes whenever the generated
# data does (tests/test_mini.py hashes a small generated output against it). /2: VQAv2 and VizWiz changed after /1.
GENERATOR = "qbench.mini/2"
RANDOM_STREAMS = "qbench.mini/1"  # the name the random streams are drawn under: a new version does not redraw them
EVAL_QUESTIONS = 300  # per eval split
TRAIN_QUESTIONS = 4000  # per train split
MANIFEST = "MINI.json"

# The post prompts of lmms-eval's tasks (also LLaVA-1.5's short-answer instruction): training prompts end the same way.
SHORT_ANSWER = "\nAnswer the question using a single word or phrase."
UNANSWERABLE_HINT = "\nWhen the provided information is insufficient, respond with 'Unanswerable'."


@dataclass(frozen=True)
class Example:
    image_id: int  # shared by the questions about one image
    scene: Scene
    image: bytes  # JPEG
    qa: q.QA


@dataclass(frozen=True)
class MiniRecord:
    """One training example: the image (JPEG bytes, which VLM.preprocess accepts), the prompt exactly as the
    lmms-eval task words it, and the answer."""

    task: str  # vqav2, gqa, vizwiz or textvqa
    image: bytes
    question: str
    answer: str


def examples(rng: random.Random, count: int, scene_of: Callable[[random.Random], Scene],
             families: list[q.Family], per_image: int, first_id: int = 0) -> list[Example]:
    """`count` questions, up to `per_image` different ones about each generated scene."""
    found: list[Example] = []
    image_id = first_id
    while len(found) < count:
        scene = scene_of(rng)
        asked: dict[str, q.QA] = {}
        for family in rng.sample(families, len(families)):
            qa = family(rng, scene)
            if qa is not None and qa.question not in asked and len(asked) < per_image:
                asked[qa.question] = qa
        if asked:
            image = jpeg(scene)
            found += [Example(image_id, scene, image, qa) for qa in asked.values()]
            image_id += 1
    return found[:count]


def image_value(data: bytes) -> dict[str, Any]:
    return {"bytes": data, "path": None}


# --- VQAv2 -----------------------------------------------------------------------------------------------------------
def vqav2_examples(rng: random.Random, count: int, first_id: int) -> list[Example]:
    return examples(rng, count, lambda r: sample_shapes(r, r.randint(1, 5)), q.VQAV2_FAMILIES, 3, first_id)


def vqav2_row(rng: random.Random, index: int, example: Example) -> dict[str, Any]:
    answers = q.annotate(rng, example.qa)
    return {"question_type": example.qa.family, "multiple_choice_answer": Counter(answers).most_common(1)[0][0],
            "answers": [{"answer": a, "answer_confidence": "yes" if a == example.qa.answer else "maybe",
                         "answer_id": i + 1} for i, a in enumerate(answers)],
            "image_id": example.image_id, "answer_type": example.qa.answer_type,
            "question_id": example.image_id * 10 + index % 10, "question": example.qa.question,
            "image": image_value(example.image)}


# --- GQA (questions and images are separate configs, joined on imageId) ------------------------------------------
def gqa_examples(rng: random.Random, count: int, first_id: int) -> list[Example]:
    return examples(rng, count, lambda r: sample_shapes(r, r.randint(2, 5)), q.GQA_FAMILIES, 3, first_id)


def gqa_row(rng: random.Random, index: int, example: Example) -> dict[str, Any]:
    qa = example.qa
    structural = next(kind for kind in ("choose", "query", "verify") if kind in qa.family.lower())
    program = [{"operation": "select", "argument": "shape", "dependencies": []},
               {"operation": structural, "argument": qa.family, "dependencies": [0]}]
    return {"id": f"{example.image_id:07d}{index % 10}", "imageId": f"n{example.image_id}", "question": qa.question,
            "answer": qa.answer, "fullAnswer": qa.full_answer, "isBalanced": True,
            "groups": {"global": None, "local": qa.family}, "entailed": "", "equivalent": "",
            "types": {"structural": structural, "semantic": "rel", "detailed": qa.family},
            "annotations": {"answer": "", "question": "", "fullAnswer": ""}, "semantic": program,
            "semanticStr": " -> ".join(f"{p['operation']}: {p['argument']}" for p in program)}


def gqa_images(batch: list[Example]) -> list[dict[str, Any]]:
    unique = {example.image_id: example.image for example in batch}
    return [{"id": f"n{image_id}", "image": image_value(image)} for image_id, image in unique.items()]


# --- VizWiz -----------------------------------------------------------------------------------------------------------
def vizwiz_scene(rng: random.Random) -> Scene:
    scene = sample_shapes(rng, 1 if rng.random() < 0.7 else rng.randint(2, 3))
    return replace(scene, degraded=rng.choice(["blur", "dark"])) if rng.random() < 0.1 else scene


def vizwiz_family(family: q.Family) -> q.Family:
    """A question about a degraded picture is unanswerable, whatever it asks."""
    def ask(rng: random.Random, scene: Scene) -> q.QA | None:
        qa = family(rng, scene)
        return q.unanswerable(qa) if qa is not None and scene.degraded else qa

    return ask


def vizwiz_examples(rng: random.Random, count: int, first_id: int) -> list[Example]:
    return examples(rng, count, vizwiz_scene, [vizwiz_family(f) for f in q.VIZWIZ_FAMILIES], 1, first_id)


def vizwiz_row(rng: random.Random, index: int, example: Example, split: str) -> dict[str, Any]:
    return {"question_id": f"VizWiz_{split}_{example.image_id:08d}.jpg", "image": image_value(example.image),
            "question": example.qa.question, "answers": q.annotate(rng, example.qa),
            "category": example.qa.answer_type}


# --- TextVQA ----------------------------------------------------------------------------------------------------------
def textvqa_examples(rng: random.Random, count: int, first_id: int) -> list[Example]:
    return examples(rng, count, lambda r: sample_signs(r, r.randint(1, 2)), q.TEXTVQA_FAMILIES, 2, first_id)


def textvqa_row(rng: random.Random, index: int, example: Example, split: str) -> dict[str, Any]:
    question = example.qa.question
    return {"image_id": f"{example.image_id:016x}", "question_id": example.image_id * 10 + index % 10,
            "question": question, "question_tokens": question.lower().rstrip("?").split(),
            "image": image_value(example.image), "image_width": 224, "image_height": 224,
            "flickr_original_url": "", "flickr_300k_url": "", "answers": q.annotate(rng, example.qa),
            "image_classes": ["Street sign"], "set_name": split,
            "ocr_tokens": [sign.word.upper() for sign in example.scene.signs]}


# --- POPE -------------------------------------------------------------------------------------------------------------
POPE_SPLITS = ("adversarial", "popular", "random")
PARTNERS = {"circle": "square", "square": "circle", "triangle": "star", "star": "triangle", "cross": "diamond",
            "diamond": "cross"}  # objects that tend to appear together: what adversarial negatives exploit
POPE_COLOURS = {c: w for c, w in zip(COLOURS, (6, 5, 4, 3, 2, 2, 1))}  # some objects are far more common
POPE_SHAPES = {s: w for s, w in zip(SHAPES, (6, 5, 4, 3, 2, 1))}


def pope_object(rng: random.Random) -> tuple[str, str]:
    return (rng.choices(list(POPE_COLOURS), list(POPE_COLOURS.values()))[0],
            rng.choices(list(POPE_SHAPES), list(POPE_SHAPES.values()))[0])


def pope_scene(rng: random.Random) -> Scene:
    """3 or 4 different objects; each object's partner shape often comes along in the same colour."""
    objects: list[tuple[str, str]] = []
    while len(objects) < 3:
        colour, shape = pope_object(rng)
        pair = [(colour, shape), (colour, PARTNERS[shape])] if rng.random() < 0.6 else [(colour, shape)]
        objects += [obj for obj in pair if obj not in objects]
    return sample_shapes(rng, len(objects), objects)


def pope_rows(rng: random.Random, count: int) -> dict[str, list[dict[str, Any]]]:
    """Per split, `count` questions: 3 present objects and 3 absent ones per image, the absent ones sampled at
    random, among the most frequent objects, or among those that most often co-occur with the present ones."""
    scenes = [pope_scene(rng) for _ in range(math.ceil(count / 6))]
    present = [sorted({s.name for s in scene.shapes}) for scene in scenes]
    frequency = Counter(name for names in present for name in names)
    together = Counter((a, b) for names in present for a in names for b in names if a != b)
    everything = [f"{c} {s}" for c in COLOURS for s in SHAPES]
    negatives = {
        "random": lambda names, absent: rng.sample(absent, 3),
        "popular": lambda names, absent: sorted(absent, key=lambda o: (-frequency[o], o))[:3],
        "adversarial": lambda names, absent: sorted(absent, key=lambda o: (-sum(together[p, o] for p in names), o))[:3],
    }
    rows: dict[str, list[dict[str, Any]]] = {split: [] for split in POPE_SPLITS}
    for image_id, (scene, names) in enumerate(zip(scenes, present)):
        image = jpeg(scene)
        positives = rng.sample(names, 3)
        absent = [o for o in everything if o not in names]
        for split in POPE_SPLITS:
            pairs = [p for pair in zip(positives, negatives[split](names, absent)) for p in pair]
            for obj, answer in zip(pairs, ["yes", "no"] * 3):
                number = len(rows[split]) + 1 + POPE_SPLITS.index(split) * 100_000
                rows[split].append({"id": str(number), "question_id": str(number),
                                    "question": f"Is there {q.article(obj)} in the image?", "answer": answer,
                                    "image_source": f"mini_{image_id:06d}", "image": image_value(image),
                                    "category": split})
    return {split: split_rows[:count] for split, split_rows in rows.items()}


# --- the datasets, in the hub layout --------------------------------------------------------------------------------
def rng_for(seed: int, dataset: str, split: str) -> random.Random:
    return random.Random(f"{RANDOM_STREAMS}/{seed}/{dataset}/{split}")


FIRST_ID = {"eval": 0, "train": 1_000_000}

# name -> (eval split, train split): the splits each lmms-eval task and the trainer read
SPLITS = {"VQAv2": ("validation", "train"), "GQA": ("testdev", "train"), "VizWiz-VQA": ("val", "train"),
          "textvqa": ("validation", "train")}
EXAMPLES = {"VQAv2": vqav2_examples, "GQA": gqa_examples, "VizWiz-VQA": vizwiz_examples,
            "textvqa": textvqa_examples}


def dataset_examples(name: str, seed: int, stage: str, count: int) -> list[Example]:
    split = SPLITS[name][stage == "train"]
    return EXAMPLES[name](rng_for(seed, name, split), count, FIRST_ID[stage])


def tables(name: str, seed: int, eval_questions: int, train_questions: int) -> dict[str, dict[str, list[dict]]]:
    """config -> split -> rows of one dataset, in its hub schema."""
    if name == "POPE":
        full = pope_rows(rng_for(seed, name, "test"), eval_questions)
        return {"Full": full, "default": {"test": [row for split in POPE_SPLITS for row in full[split]]}}
    out: dict[str, dict[str, list[dict]]] = {}
    for stage, count in (("eval", eval_questions), ("train", train_questions)):
        split = SPLITS[name][stage == "train"]
        batch = dataset_examples(name, seed, stage, count)
        row_rng = rng_for(seed, name, split + "/annotators")
        if name == "VQAv2":
            out.setdefault("default", {})[split] = [vqav2_row(row_rng, i, e) for i, e in enumerate(batch)]
        elif name == "GQA":
            prefix = "testdev" if stage == "eval" else "train"
            out[f"{prefix}_balanced_instructions"] = {split: [gqa_row(row_rng, i, e) for i, e in enumerate(batch)]}
            out[f"{prefix}_balanced_images"] = {split: gqa_images(batch)}
        elif name == "VizWiz-VQA":
            out.setdefault("default", {})[split] = [vizwiz_row(row_rng, i, e, split) for i, e in enumerate(batch)]
        else:
            out.setdefault("default", {})[split] = [textvqa_row(row_rng, i, e, split) for i, e in enumerate(batch)]
    return out


DATASETS = ("VQAv2", "GQA", "VizWiz-VQA", "textvqa", "POPE")
HUB = {name: f"lmms-lab-encoder/{name}" for name in DATASETS}


def features(name: str, config: str):
    """The hub dataset's column types (datasets.Features) for one config."""
    from datasets import Features, Image, List, Value

    text = Value("string")
    if name == "VQAv2":
        return Features({"question_type": text, "multiple_choice_answer": text,
                         "answers": List({"answer": text, "answer_confidence": text, "answer_id": Value("int64")}),
                         "image_id": Value("int64"), "answer_type": text, "question_id": Value("int64"),
                         "question": text, "image": Image()})
    if name == "GQA" and config.endswith("_images"):
        return Features({"id": text, "image": Image()})
    if name == "GQA":
        return Features({"id": text, "imageId": text, "question": text, "answer": text, "fullAnswer": text,
                         "isBalanced": Value("bool"), "groups": {"global": text, "local": text},
                         "entailed": text, "equivalent": text,
                         "types": {"structural": text, "semantic": text, "detailed": text},
                         "annotations": {"answer": text, "question": text, "fullAnswer": text},
                         "semantic": List({"operation": text, "argument": text, "dependencies": List(Value("int64"))}),
                         "semanticStr": text})
    if name == "VizWiz-VQA":
        return Features({"question_id": text, "image": Image(), "question": text, "answers": List(text),
                         "category": text})
    if name == "textvqa":
        return Features({"image_id": text, "question_id": Value("int64"), "question": text,
                         "question_tokens": List(text), "image": Image(), "image_width": Value("int64"),
                         "image_height": Value("int64"), "flickr_original_url": text, "flickr_300k_url": text,
                         "answers": List(text), "image_classes": List(text), "set_name": text,
                         "ocr_tokens": List(text)})
    return Features({"id": text, "question_id": text, "question": text, "answer": text, "image_source": text,
                     "image": Image(), "category": text})


def data_path(config: str, split: str) -> str:
    return f"{'data' if config == 'default' else config}/{split}-00000-of-00001.parquet"


def card(name: str, configs: dict[str, dict[str, list[dict]]], seed: int) -> str:
    """README.md with the `configs:` metadata through which `datasets.load_dataset(dir, config)` finds the files."""
    lines = ["---", "configs:"]
    for config, splits in configs.items():
        lines += [f"- config_name: {config}", "  data_files:"]
        lines += [f"  - split: {split}\n    path: {data_path(config, split)}" for split in splits]
    lines += ["---", "", f"# mini {name}", "",
              f"Generated by `qbench data mini --seed {seed}` ({GENERATOR}): scenes of coloured shapes and signs, "
              f"in the schema and layout of the hub dataset {HUB[name]}.", ""]
    return "\n".join(lines)


def write_dataset(directory: Path, name: str, seed: int, eval_questions: int, train_questions: int) -> None:
    from datasets import Dataset

    configs = tables(name, seed, eval_questions, train_questions)
    for config, splits in configs.items():
        for split, rows in splits.items():
            path = directory / data_path(config, split)
            path.parent.mkdir(parents=True, exist_ok=True)
            Dataset.from_list(rows, features=features(name, config)).to_parquet(str(path))
    (directory / "README.md").write_text(card(name, configs, seed))


def settings(seed: int, eval_questions: int, train_questions: int) -> dict[str, Any]:
    return {"generator": GENERATOR, "seed": seed, "eval_questions": eval_questions, "train_questions": train_questions}


def write(out: str | Path = "data", seed: int = 0, eval_questions: int = EVAL_QUESTIONS,
          train_questions: int = TRAIN_QUESTIONS) -> Path:
    """Write the five mini datasets under `<out>/mini/` (replacing what was there) and return that folder."""
    import datasets

    if eval_questions < 1 or train_questions < 1:
        raise ValueError(f"the mini datasets need at least 1 eval and 1 train question per dataset; asked for "
                         f"--eval {eval_questions} --train {train_questions}")

    target = Path(out) / "mini"
    target.parent.mkdir(parents=True, exist_ok=True)
    datasets.disable_progress_bars()
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=".mini-") as tmp:
        staging = Path(tmp) / "mini"
        for name in DATASETS:
            write_dataset(staging / name, name, seed, eval_questions, train_questions)
        (staging / MANIFEST).write_text(json.dumps(settings(seed, eval_questions, train_questions), indent=2) + "\n")
        if target.exists():
            shutil.rmtree(target)
        staging.rename(target)  # readers never see a half-written copy
    return target


def ensure(out: str | Path = "data") -> dict[str, Any]:
    """The settings of the mini datasets under `<out>/mini/`: written now with the defaults if there are none, and
    rewritten with the same seed and sizes if an older generator made them; a MINI.json that cannot be read is a
    UserError naming it."""
    manifest = Path(out) / "mini" / MANIFEST
    if manifest.parent.exists() and not manifest.parent.is_dir():
        raise UserError(f"{manifest.parent} is a file, where the mini datasets go: move it, or give another "
                        "--data-dir")
    if not manifest.is_file():
        step(f"writing the mini datasets under {Path(out) / 'mini'} (first use: about 30 s)")
        write(out)
    found = read_settings(manifest)
    if found["generator"] != GENERATOR:
        step(f"rewriting the mini datasets under {Path(out) / 'mini'}: an older qbench wrote them")
        write(out, found["seed"], found["eval_questions"], found["train_questions"])
    return read_settings(manifest)


def read_settings(manifest: Path) -> dict[str, Any]:
    """MINI.json, checked: the generator, seed and sizes the mini datasets were written with."""
    remedy = f"delete {manifest.parent} to generate the mini datasets again (`qbench data mini`)"
    found = read_json(manifest, remedy)
    if not isinstance(found, dict) or not isinstance(found.get("generator"), str) or not all(
            isinstance(found.get(key), int) and not isinstance(found.get(key), bool) and found[key] >= (key != "seed")
            for key in ("seed", "eval_questions", "train_questions")):
        raise UserError(f"{manifest} does not hold the generator, seed and sizes of the mini datasets: {remedy}")
    return found


PROMPT_SUFFIX = {"VQAv2": SHORT_ANSWER, "GQA": SHORT_ANSWER, "VizWiz-VQA": UNANSWERABLE_HINT + SHORT_ANSWER,
                 "textvqa": SHORT_ANSWER}
RECORD_TASK = {"VQAv2": "vqav2", "GQA": "gqa", "VizWiz-VQA": "vizwiz", "textvqa": "textvqa"}


def train_records(*, seed: int = 0, count: int = TRAIN_QUESTIONS) -> list[MiniRecord]:
    """The train splits of VQAv2, GQA, VizWiz and TextVQA (`count` questions each, in that order) as records whose
    `question` is the prompt the lmms-eval task gives at evaluation (question + post prompt) and whose `answer` is
    the ground truth. The same questions and images that `write(seed=seed, train_questions=count)` stores; made in
    memory, so training needs neither `datasets` nor lmms-eval. POPE has no train split: VQAv2's existence
    questions teach the same skill."""
    return [MiniRecord(RECORD_TASK[name], e.image, e.qa.question + PROMPT_SUFFIX[name], e.qa.answer)
            for name in SPLITS for e in dataset_examples(name, seed, "train", count)]
