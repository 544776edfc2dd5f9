"""The offline mini-suites: `qbench data mini` writes small datasets in the hub schemas, deterministically."""

import random
from collections import Counter
from pathlib import Path

import datasets
import pytest
from typer.testing import CliRunner

from qbench.cli import app
from qbench.suites import mini
from qbench.suites.questions import (
    gqa_choose_height,
    gqa_choose_side,
    gqa_query_shape,
    vqa_count,
)
from qbench.suites.scenes import CELL, Scene, Shape, render
from qbench.suites.tasks import base_config

EVAL, TRAIN = 24, 12


@pytest.fixture(scope="module")
def written(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("data")
    result = CliRunner().invoke(app, ["data", "mini", "--out", str(out), "--eval", str(EVAL), "--train", str(TRAIN)])
    assert result.exit_code == 0, result.output
    return out / "mini"


def load(folder: Path, config: str, split: str) -> datasets.Dataset:
    return datasets.load_dataset(str(folder), config, split=split, cache_dir=str(folder.parent / "cache"))


def files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_the_same_seed_writes_the_same_bytes_and_another_seed_other_data(written, tmp_path):
    again = mini.write(tmp_path / "again", seed=0, eval_questions=EVAL, train_questions=TRAIN)
    assert files(again) == files(written)
    other = mini.write(tmp_path / "other", seed=1, eval_questions=EVAL, train_questions=TRAIN)
    assert files(other)["VQAv2/data/validation-00000-of-00001.parquet"] != \
        files(written)["VQAv2/data/validation-00000-of-00001.parquet"]


@pytest.mark.parametrize("option", ["--eval", "--train"])
def test_sizes_that_cannot_be_written_are_refused_not_replaced(tmp_path, option):
    result = CliRunner().invoke(app, ["data", "mini", "--out", str(tmp_path), option, "0"])
    assert result.exit_code == 2 and "at least 1 eval and 1 train question" in " ".join(result.output.split())
    assert not (tmp_path / "mini").exists()


def test_every_split_loads_with_the_hub_schema_where_the_lmms_eval_task_looks(written):
    for task, dataset in [("vqav2_val", "VQAv2"), ("gqa", "GQA"), ("vizwiz_vqa_val", "VizWiz-VQA"),
                          ("textvqa_val", "textvqa"), ("pope_adv", "POPE"), ("pope_pop", "POPE"),
                          ("pope_random", "POPE")]:
        config = base_config(task)
        name = config.get("dataset_name") or "default"
        docs = load(written / dataset, name, config["test_split"])
        assert docs.features == mini.features(dataset, name)
        assert len(docs) == EVAL
        for doc in docs.select(range(3)):  # lmms-eval's own prompt and scoring accept the rows
            prompt = config["doc_to_text"](doc, config["lmms_eval_specific_kwargs"]["default"])
            assert doc["question"].lower()[:10] in prompt.lower()
            if config.get("process_docs") is None:  # GQA's images are joined in at evaluation
                assert config["doc_to_visual"](doc)[0].size == (224, 224)
            if "process_results" in config:  # GQA is scored by lmms-eval's exact_match on `answer`
                assert config["process_results"](doc, ["yes"])


def test_vqav2_has_ten_answers_per_question_and_its_question_types(written):
    docs = load(written / "VQAv2", "default", "validation")
    assert all(len(answers) == 10 for answers in docs["answers"])
    assert set(docs["answer_type"]) <= {"other", "number", "yes/no"}
    assert {"how many", "what color is the", "is there a"} <= set(docs["question_type"])


def test_gqa_questions_have_one_answer_and_their_images_in_the_images_config(written):
    questions = load(written / "GQA", "testdev_balanced_instructions", "testdev")
    images = load(written / "GQA", "testdev_balanced_images", "testdev")
    assert "image" not in questions.column_names
    assert set(questions["imageId"]) <= set(images["id"])
    assert all(isinstance(answer, str) and answer for answer in questions["answer"])


def test_vizwiz_has_unanswerable_questions(written):
    docs = load(written / "VizWiz-VQA", "default", "val")
    unanswerable = [doc for doc in docs if doc["category"] == "unanswerable"]
    assert unanswerable and len(unanswerable) < len(docs)
    assert all(Counter(doc["answers"]).most_common(1)[0][0] == "unanswerable" for doc in unanswerable)


def test_textvqa_answers_are_among_the_ocr_tokens(written):
    docs = load(written / "textvqa", "default", "validation")
    for doc in docs:
        answer = Counter(doc["answers"]).most_common(1)[0][0]
        assert answer.upper() in doc["ocr_tokens"]


def test_pope_splits_share_images_and_positives_and_differ_in_negatives(written):
    splits = {split: load(written / "POPE", "Full", split) for split in ("adversarial", "popular", "random")}
    for docs in splits.values():
        assert Counter(docs["answer"]) == {"yes": EVAL // 2, "no": EVAL // 2}
    yes = {split: [q for q, a in zip(d["question"], d["answer"]) if a == "yes"] for split, d in splits.items()}
    assert yes["adversarial"] == yes["popular"] == yes["random"]
    no = {split: Counter(q for q, a in zip(d["question"], d["answer"]) if a == "no") for split, d in splits.items()}
    assert len(no["popular"]) < len(no["random"])  # the popular negatives are the few most frequent objects
    assert len(load(written / "POPE", "default", "test")) == 3 * EVAL


def test_train_records_are_the_written_train_split_with_the_lmms_eval_prompt(written):
    records = mini.train_records(seed=0, count=TRAIN)
    assert Counter(r.task for r in records) == {"vqav2": TRAIN, "gqa": TRAIN, "vizwiz": TRAIN, "textvqa": TRAIN}
    vqa = load(written / "VQAv2", "default", "train").cast_column("image", datasets.Image(decode=False))
    config = base_config("vqav2_val")
    for record, doc in zip([r for r in records if r.task == "vqav2"], vqa):
        assert record.image == doc["image"]["bytes"]
        assert record.question == config["doc_to_text"](doc, config["lmms_eval_specific_kwargs"]["default"])
        assert {record.answer} == {a["answer"] for a in doc["answers"] if a["answer_confidence"] == "yes"}
    vizwiz = load(written / "VizWiz-VQA", "default", "train")
    config = base_config("vizwiz_vqa_val")
    for record, doc in zip([r for r in records if r.task == "vizwiz"], vizwiz):
        assert record.question == config["doc_to_text"](doc, config["lmms_eval_specific_kwargs"]["default"])


def shape(kind: str, colour: str, row: int, column: int) -> Shape:
    return Shape(kind, colour, row, column, (column + 0.5) * CELL, (row + 0.5) * CELL, 50)


def test_questions_read_their_answers_from_the_scene():
    scene = Scene((shape("circle", "red", 0, 0), shape("square", "blue", 2, 2), shape("circle", "green", 2, 0)))
    column = {"red circle": 0, "blue square": 2, "green circle": 0}
    row = {"red circle": 0, "blue square": 2, "green circle": 2}
    for seed in range(10):
        side = gqa_choose_side(random.Random(seed), scene)
        a, b = side.question.removeprefix("Is the ").removesuffix("?").split(" to the left or to the right of the ")
        assert side.answer == ("left" if column[a] < column[b] else "right")
        height = gqa_choose_height(random.Random(seed), scene)
        a, b = height.question.removeprefix("Is the ").removesuffix("?").split(" above or below the ")
        assert height.answer == ("above" if row[a] < row[b] else "below")
        count = vqa_count(random.Random(seed), scene)
        expected = {"How many circles are there?": "2", "How many squares are there?": "1",
                    "How many red shapes are there?": "1", "How many blue shapes are there?": "1",
                    "How many green shapes are there?": "1"}.get(count.question, "0")
        assert count.answer == expected
    assert gqa_query_shape(random.Random(0), scene).answer in {"circle", "square"}
    assert render(scene).getpixel((int(0.5 * CELL), int(0.5 * CELL))) == (220, 40, 40)  # the red circle's centre


def generated_digest() -> str:
    """The sha256 of a small generated output: every dataset's rows (images by their bytes' digest) and the train
    records, as the generator makes them for seed 0."""
    import hashlib
    import json

    def plain(value):
        if isinstance(value, (bytes, bytearray)):
            return hashlib.sha256(value).hexdigest()
        if isinstance(value, dict):
            return {key: plain(item) for key, item in sorted(value.items())}
        if isinstance(value, list):
            return [plain(item) for item in value]
        return value

    made = {name: plain(mini.tables(name, 0, 6, 4)) for name in mini.DATASETS}
    made["train_records"] = [plain(vars(record)) for record in mini.train_records(seed=0, count=4)]
    return hashlib.sha256(json.dumps(made, sort_keys=True).encode()).hexdigest()


# Each generator version and the digest of its output: a change to the output without a new version fails here.
OUTPUTS = {"qbench.mini/2": "40c0eece30d87d2daac50e6fb7a4c48d7cc6f78d19b4bd3a048be0be8911d26c"}


def test_the_generator_version_changes_whenever_its_output_does():
    digest = generated_digest()
    assert OUTPUTS.get(mini.GENERATOR) == digest, (
        f"the mini generator's output changed (digest {digest}) but its version is still {mini.GENERATOR}: bump "
        "qbench.suites.mini.GENERATOR and record the new digest here, so that runs on other data are told apart")


def test_a_mini_json_that_cannot_be_read_is_named(tmp_path):
    (tmp_path / "mini").mkdir()
    (tmp_path / "mini" / mini.MANIFEST).write_text('{"generator": "qbench.mini/1"}')
    with pytest.raises(mini.UserError, match=f"{tmp_path / 'mini' / 'MINI.json'} does not hold the generator"):
        mini.ensure(tmp_path)
