"""Tasks as lmms-eval users have them: any task by name (`qbench run --tasks`), tasks of one's own from an include
path (the example in examples/my_vqa, on a folder of images and a JSONL made here), suites of one's own, and qbench's
mini tasks through lmms-eval's own CLI. All offline."""

import json
import os
import re
import shutil
import string
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image, ImageDraw
from typer.testing import CliRunner

import qbench
from qbench.cli import app
from qbench.fingerprint import fingerprint
from qbench.suites import mini, runner
from qbench.suites.catalog import TASKS_DIR, tasks_name
from qbench.suites.registry import load_suite

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "my_vqa"
TINY_LLAVA = str(ROOT / "weights" / "tiny" / "tiny-llava")  # trained: it answers colour questions about shapes
PHOTO = Path(__import__("matplotlib").get_data_path()) / "sample_data" / "grace_hopper.jpg"
SHAPES = [("red", "circle"), ("blue", "square"), ("green", "square"), ("yellow", "circle"), ("purple", "square")]


def shape_image(colour: str, shape: str) -> Image.Image:
    image = Image.new("RGB", (224, 224), "white")
    draw = ImageDraw.Draw(image)
    (draw.ellipse if shape == "circle" else draw.rectangle)((60, 60, 160, 160), fill=colour)
    return image


def make_task_folder(folder: Path) -> Path:
    """The example task beside its data: drawn shapes and a photo in images/, their questions in questions.jsonl."""
    (folder / "images").mkdir(parents=True)
    for name in ("my_vqa.yaml", "utils.py"):
        shutil.copy(EXAMPLE / name, folder / name)
    rows = []
    for index, (colour, shape) in enumerate(SHAPES):
        shape_image(colour, shape).save(folder / "images" / f"{shape}{index}.png")
        rows.append({"question_id": f"q{index}", "image": f"images/{shape}{index}.png",
                     "question": f"What color is the {shape}?", "answer": colour})
    shutil.copy(PHOTO, folder / "images" / "photo.jpg")
    rows.append({"question_id": "photo", "image": "images/photo.jpg", "question": "Is there a circle in the image?",
                 "answer": "no"})
    (folder / "questions.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    return folder


@pytest.fixture(scope="module")
def task_folder(tmp_path_factory) -> Path:
    return make_task_folder(tmp_path_factory.mktemp("my_tasks") / "my_vqa")


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("data")
    mini.write(root, eval_questions=6, train_questions=2)
    return root


def qbench_cli(*args) -> object:
    return CliRunner().invoke(app, [str(arg) for arg in args])


def only_run(output: Path) -> Path:
    (folder,) = [p for p in output.iterdir() if p.is_dir()]
    return folder


def refused(result, *phrases: str) -> str:
    """The one error line of a refused command (after the line saying its data had started loading, if it had)."""
    assert result.exit_code == 2, (result.output, result.exception)
    *steps, error = result.output.strip().splitlines()
    assert error.startswith("error: ") and all(line.startswith("loading the data of") for line in steps), \
        result.output
    for phrase in phrases:
        assert phrase in error, error
    return error


def normalised(text: str) -> str:
    """As lmms-eval's exact_match with ignore_case and ignore_punctuation compares."""
    return text.lower().translate(str.maketrans("", "", string.punctuation)).strip()


def test_a_task_of_ones_own_runs_from_an_include_path_scored_by_exact_match(task_folder, tmp_path):
    result = qbench_cli("run", "--model", TINY_LLAVA, "--tasks", "my_vqa", "--include-path", task_folder.parent,
                        "--output", tmp_path / "runs", "--data-dir", tmp_path / "data")
    assert result.exit_code == 0, result.output
    folder = only_run(tmp_path / "runs")
    assert folder.name.startswith("tiny-llava__my_vqa__")
    summary = json.loads((folder / "summary.json").read_text())
    rows = [json.loads(line) for line in (folder / "samples.jsonl").read_text().splitlines()]
    questions = [json.loads(line) for line in (task_folder / "questions.jsonl").read_text().splitlines()]
    assert summary["suite"] == "my_vqa" and summary["n_samples"] == {"my_vqa": len(questions)}
    assert [row["question_id"] for row in rows] == [q["question_id"] for q in questions]
    vlm = qbench.load_model(TINY_LLAVA)
    for row, question in zip(rows, questions):
        image = Image.open(task_folder / question["image"])
        assert row["prompt"] == question["question"] + "\nAnswer the question using a single word or phrase."
        assert row["answer"] == vlm.answer(image, row["prompt"])  # the model's own answer, through lmms-eval
        assert row["target"] == [question["answer"]] and row["metric"] == "exact_match"
        assert row["score"] == float(normalised(row["answer"]) == normalised(question["answer"]))
    scores = [row["score"] for row in rows]
    assert 0 < sum(scores) < len(scores), "the trained model gets some colours right, and not the photo"
    assert summary["metrics"]["my_vqa"]["exact_match"] == pytest.approx(sum(scores) / len(scores))
    assert summary["data"]["my_vqa"] == {"source": "local", "hub_id": None, "revision": None,
                                         "path": str(task_folder.resolve()), "fingerprint": fingerprint(task_folder)}
    assert not (tmp_path / "data").exists(), "a task on its own files needs nothing under --data-dir"


def test_the_data_of_a_task_of_ones_own_is_part_of_a_runs_identity(tmp_path):
    folder = make_task_folder(tmp_path / "tasks" / "my_vqa")
    before = runner.prepare(None, tmp_path / "data", tasks=["my_vqa"], include_paths=[folder.parent]).data
    shape_image("orange", "circle").save(folder / "images" / "circle0.png")  # the same file name, another picture
    after = runner.prepare(None, tmp_path / "data", tasks=["my_vqa"], include_paths=[folder.parent]).data
    assert before["my_vqa"]["fingerprint"] != after["my_vqa"]["fingerprint"] == fingerprint(folder)
    assert runner.changes({"checkpoint": None, "data": before}, {"checkpoint": None, "data": after}) == [
        f"the data of my_vqa ({folder.resolve()} {before['my_vqa']['fingerprint'][:12]} -> {folder.resolve()} "
        f"{after['my_vqa']['fingerprint'][:12]})"]


def test_an_interrupted_run_of_a_task_of_ones_own_resumes_where_it_stopped(task_folder, tmp_path, monkeypatch):
    from qbench.suites.lmms_model import QBenchLMM

    answered, answer = [], QBenchLMM.answer

    def stopping(self, batch, *args, **kwargs):
        if len(answered) == 2:
            raise KeyboardInterrupt
        answered.append(len(batch))
        return answer(self, batch, *args, **kwargs)

    monkeypatch.setattr(QBenchLMM, "answer", stopping)
    run = {"tasks": ["my_vqa"], "include_paths": [task_folder.parent], "output": tmp_path, "device": "cpu",
           "data_dir": tmp_path / "data", "batch_size": 1, "engine": "plain"}
    with pytest.raises(runner.RunInterrupted):
        runner.run(TINY_LLAVA, None, **run)
    monkeypatch.setattr(QBenchLMM, "answer", answer)
    summary, folder = runner.run(TINY_LLAVA, None, **run)  # the same request: the same folder, resumed
    assert only_run(tmp_path) == folder and summary["resumed_samples"] == 2
    assert summary["n_samples"] == {"my_vqa": len(SHAPES) + 1} and summary["errors"] == 0


def test_a_suite_file_of_ones_own_runs_its_groups_and_qbenchs_tasks(task_folder, data, tmp_path):
    (task_folder.parent / "groups").mkdir(exist_ok=True)
    (task_folder.parent / "groups" / "my_group.yaml").write_text("group: my_group\ntask:\n  - my_vqa\n")
    suite = tmp_path / "mine.yaml"
    suite.write_text("description: my questions and a mini task\ntasks:\n  - my_group\n  - mini_pope_adv\n")
    result = qbench_cli("run", "--model", "tiny-llava", "--suite", suite, "--include-path", task_folder.parent,
                        "--limit", "2", "--output", tmp_path / "runs", "--data-dir", data)
    assert result.exit_code == 0, result.output
    summary = json.loads((only_run(tmp_path / "runs") / "summary.json").read_text())
    assert summary["suite"] == "mine" and list(summary["metrics"]) == ["my_vqa", "mini_pope_adv"]
    assert summary["data"]["mini_pope_adv"]["path"] == str((data / "mini" / "POPE").resolve())


def test_a_tasks_list_is_run_under_its_names_and_long_lists_under_a_short_unique_one():
    assert tasks_name(["mini_vqav2", "mini_gqa"]) == "mini_vqav2+mini_gqa"
    many = [f"task_number_{i}" for i in range(12)]
    assert tasks_name(many).startswith("task_number_0+task_number_1+10-more-") and len(tasks_name(many)) < 60
    assert tasks_name(many) != tasks_name(many[::-1])


def test_mistakes_in_tasks_and_suites_are_named(task_folder, tmp_path):
    run = ["run", "--model", "tiny-llava", "--output", tmp_path / "runs", "--data-dir", tmp_path / "data"]
    refused(qbench_cli(*run), "give --suite NAME_OR_FILE or --tasks")
    refused(qbench_cli(*run, "--suite", "mini", "--tasks", "mini_gqa"), "(one of them)")
    refused(qbench_cli(*run, "--tasks", "no_such_task", "--include-path", task_folder.parent),
            "unknown task 'no_such_task'", str(task_folder.parent), "lmms-eval --tasks list")
    refused(qbench_cli(*run, "--tasks", "my_vqa", "--include-path", tmp_path / "nowhere"),
            f"--include-path {tmp_path / 'nowhere'}: no such folder")
    refused(qbench_cli(*run, "--suite", tmp_path / "nothing.yaml"), "no such file")
    (tmp_path / "mini.yaml").write_text("tasks: [mini_gqa]\n")
    refused(qbench_cli(*run, "--suite", tmp_path / "mini.yaml"), "qbench has its own suite 'mini'")
    clash = tmp_path / "clash"
    clash.mkdir()
    (clash / "gqa.yaml").write_text((EXAMPLE / "my_vqa.yaml").read_text().replace("task: my_vqa", "task: gqa"))
    refused(qbench_cli(*run, "--tasks", "gqa", "--include-path", clash), "has the name of a task qbench or lmms-eval")
    lost = make_task_folder(tmp_path / "lost" / "my_vqa")
    (lost / "questions.jsonl").unlink()
    refused(qbench_cli(*run, "--tasks", "my_vqa", "--include-path", lost.parent), "task my_vqa: no data file",
            "questions.jsonl", "beside the task's YAML")
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


def test_qbench_ships_an_lmms_eval_task_for_every_mini_task():
    assert sorted(path.stem for path in TASKS_DIR.glob("*.yaml")) == sorted(t.task for t in load_suite("mini").tasks)


def test_lmms_evals_own_cli_runs_a_mini_task_offline_as_qbench_run_scores_it(data, tmp_path):
    """`lmms-eval --model qbench` (the real CLI, in its own process) on a mini task through qbench's include path
    and local data gives the score `qbench run --tasks` gives."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "QBENCH_DATA_DIR": str(data), "PYTHONPATH": str(ROOT)}
    command = ["lmms-eval", "--model", "qbench", "--model_args", f"preset={TINY_LLAVA},device=cpu",
               "--tasks", "mini_vqav2", "--include_path", str(TASKS_DIR), "--limit", "6", "--batch_size", "2",
               "--output_path", str(tmp_path / "lmms-eval")]
    done = subprocess.run([str(Path(sys.executable).with_name("lmms-eval")), *command[1:]], env=env,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    (results,) = (tmp_path / "lmms-eval").rglob("*_results.json")  # lmms-eval exits 0 even when it failed
    theirs = json.loads(results.read_text())["results"]["mini_vqav2"]["exact_match,none"]
    ours = qbench_cli("run", "--model", TINY_LLAVA, "--tasks", "mini_vqav2", "--limit", "6", "--data-dir", data,
                      "--output", tmp_path / "runs")
    assert ours.exit_code == 0, ours.output
    summary = json.loads((only_run(tmp_path / "runs") / "summary.json").read_text())
    assert theirs == pytest.approx(summary["metrics"]["mini_vqav2"]["exact_match"]) and theirs > 0
    assert re.search(r"mini_vqav2\s*\|", done.stdout), done.stdout[-2000:]
