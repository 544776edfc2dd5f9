"""`qbench run`: suites through lmms-eval, with lmms-eval's scoring, resumable, data-parallel, and clear errors."""

import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import datasets
import pandas as pd
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

import qbench
from qbench.checkpoints import save_native
from qbench.cli import app
from qbench.engine.answering import AnsweringEngine
from qbench.fingerprint import fingerprint, weights_digest
from qbench.folder import FolderBusy, FolderLock
from qbench import stats
from qbench.presets import get_preset
from qbench.suites import mini, runner
from qbench.suites.lmms_model import reference
from qbench.suites.tasks import cache_for
from qbench.vlm import VLM

MINI_TASKS = ["mini_vqav2", "mini_gqa", "mini_vizwiz", "mini_textvqa", "mini_pope_adv", "mini_pope_pop",
              "mini_pope_random"]
ROW_KEYS = ["task", "doc_id", "question_id", "prompt", "answer", "target", "image", "error", "metric", "score"]


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("data")
    mini.write(root, eval_questions=12, train_questions=4)
    return root


@pytest.fixture(scope="module")
def weights(tmp_path_factory) -> Path:
    """tiny-cobra with its random LLM weights scaled up, so that it answers with words rather than EOS."""
    vlm = qbench.load_model("tiny-cobra", seed=1)  # the same random model every time: the tests compare its answers
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for parameter in vlm.backbone.parameters():
            parameter.add_(0.5 * torch.randn(parameter.shape, generator=generator))
    return save_native(vlm, tmp_path_factory.mktemp("weights") / "noisy")


def qbench_run(*args: str):
    return CliRunner().invoke(app, ["run", *args])


def only_run(output: Path) -> Path:
    (folder,) = [p for p in output.iterdir() if p.is_dir()]
    return folder


def read_rows(folder: Path) -> list[dict]:
    return [json.loads(line) for line in (folder / "samples.jsonl").read_text().splitlines()]


def test_lmms_eval_finds_the_qbench_model_and_its_clean_keeps_it_usable():
    from lmms_eval.models import get_model

    from qbench.suites.lmms_model import QBenchLMM

    model_class = get_model("qbench")  # through the lmms_eval.models entry point
    assert model_class is QBenchLMM
    lm = model_class.create_from_arg_string("preset=tiny-cobra,device=cpu", {"batch_size": 2})
    assert lm.device == torch.device("cpu") and lm.batch_size == 2
    lm.clean()  # what lmms-eval calls after inference
    assert isinstance(lm.vlm, VLM) and isinstance(lm.vlm.answer(Image.new("RGB", (64, 64)), "What color?"), str)


def test_lmms_eval_qbench_model_draws_the_random_weights_qbench_run_draws():
    from lmms_eval.models import get_model

    def weights(lm) -> list[torch.Tensor]:
        return list(lm.vlm.state_dict().values())

    qbench_model = get_model("qbench")
    torch.manual_seed(123)  # the caller's random state does not choose the weights
    default = qbench_model.create_from_arg_string("preset=tiny-cobra,device=cpu", {})
    torch.manual_seed(456)
    again = qbench_model.create_from_arg_string("preset=tiny-cobra,device=cpu,seed=0", {})
    other = qbench_model.create_from_arg_string("preset=tiny-cobra,device=cpu,seed=1", {})
    assert all(torch.equal(a, b) for a, b in zip(weights(default), weights(again)))
    assert not all(torch.equal(a, b) for a, b in zip(weights(default), weights(other)))


def test_run_mini_writes_the_summary_and_one_scored_row_per_sample(data, tmp_path):
    result = qbench_run("--model", "tiny-cobra", "--suite", "mini", "--limit", "2", "--data-dir", str(data),
                        "--output", str(tmp_path))
    assert result.exit_code == 0, result.output
    folder = only_run(tmp_path)
    assert folder.name.startswith("tiny-cobra-random-seed0__mini__")  # random weights, and it says so
    summary = json.loads((folder / "summary.json").read_text())
    assert summary["schema"] == "qbench.run/1"
    assert {"model", "suite", "spec", "checkpoint", "metrics", "variants", "n_samples", "errors", "samples_per_s",
            "device", "dtype", "max_new_tokens", "limit", "versions", "started", "finished"} <= set(summary)
    assert (summary["model"], summary["suite"], summary["limit"], summary["max_new_tokens"]) == ("tiny-cobra", "mini",
                                                                                                 2, 16)
    assert summary["spec"] == get_preset("tiny-cobra").to_dict()
    assert summary["checkpoint"] == {"source": "random", "sha256": None, "seed": 0}
    assert list(summary["metrics"]) == MINI_TASKS
    assert set(summary["metrics"]["mini_vqav2"]) == {"exact_match"}
    pope = set(summary["metrics"]["mini_pope_adv"])
    assert {"pope_accuracy", "pope_f1_score", "pope_precision", "pope_recall"} <= pope
    assert summary["n_samples"] == {task: 2 for task in MINI_TASKS} and summary["errors"] == 0
    assert summary["variants"] == {} and summary["samples_per_s"] > 0
    assert {"torch", "transformers", "lmms_eval", "datasets", "qbench", "python"} <= set(summary["versions"])
    assert summary["engine"] == "answering (eager decode)" and summary["batch_size"] >= 1
    timing = summary["timing"]  # where the evaluation's time went: in the engine, reading, elsewhere
    assert 0 < timing["engine_s"] < timing["wall_s"] and timing["reading_s"] > 0 and timing["waiting_for_data_s"] >= 0
    assert timing["outside_engine_share"] == pytest.approx(1 - timing["engine_s"] / timing["wall_s"])
    assert set(summary["data"]) == set(MINI_TASKS)
    assert summary["qbench_commit"] is None or len(summary["qbench_commit"].split("+")[0]) == 40
    rows = read_rows(folder)
    assert [(r["task"], r["doc_id"]) for r in rows] == [(task, i) for task in MINI_TASKS for i in range(2)]
    assert all(sorted(r) == sorted(ROW_KEYS) and 0 <= r["score"] <= 1 and r["error"] is None for r in rows)
    assert rows[0]["prompt"].endswith("\nAnswer the question using a single word or phrase.")
    assert not list(folder.glob("progress-*.jsonl"))
    top = {"summary.json", "samples.jsonl", "lmms_eval_results.json", "run.json", runner.LMMS_EVAL_FILES}
    assert {path.name for path in folder.iterdir()} == top, "no lock file, lmms-eval's own files in a subfolder"
    assert list((folder / runner.LMMS_EVAL_FILES / "submissions").glob("textvqa_submission_*.json"))
    assert not list(tmp_path.glob(".lock"))
    table = pd.read_json(folder / "samples.jsonl", lines=True, dtype={"question_id": str})  # as docs/results.md loads it
    assert table["target"].map(type).eq(list).all() and table["question_id"].map(type).eq(str).all()
    # the image each question asks about: the dataset's own id, or (VizWiz has none) a digest of its pixels
    images = {r["task"]: r["image"] for r in rows}
    assert images["mini_vqav2"].startswith("image_id:") and images["mini_gqa"].startswith("imageId:")
    assert images["mini_pope_adv"].startswith("image_source:") and images["mini_vizwiz"].startswith("pixels:")
    # POPE: the model's own share of yes answers beside lmms-eval's (the ground truth's)
    answers = [r["answer"].lower().strip() == "yes" for r in rows if r["task"] == "mini_pope_adv"]
    assert summary["metrics"]["mini_pope_adv"]["pope_answer_yes_ratio"] == sum(answers) / len(answers)
    assert summary["intervals"]["mini_pope_adv"]["pope_answer_yes_ratio"]["n"] == 2
    # the table in percent with its intervals, and a line saying the weights are random
    said = " ".join(result.output.split())
    assert "(lmms-eval scoring, %, 95% intervals)" in said and "random weights, seed 0: scores are chance" in said
    lo, hi = summary["intervals"]["mini_gqa"]["exact_match"]["ci"]
    assert f"exact_match {100 * summary['metrics']['mini_gqa']['exact_match']:.1f} [{100 * lo:.1f}, {100 * hi:.1f}]" \
        in said
    assert table.groupby("task", sort=False)["metric"].unique().map(list).to_dict() == {
        task: ["pope_accuracy" if "pope" in task else "exact_match"] for task in MINI_TASKS}


def test_a_full_size_preset_without_published_weights_is_named_before_it_runs(tmp_path, monkeypatch):
    from qbench.tokenizers import builtin_tokenizer

    monkeypatch.setenv("QBENCH_HUB_DIR", str(tmp_path / "hub"))  # q-mamba's tokenizer, made here
    builtin_tokenizer("qbench-tiny-neox").save_pretrained(tmp_path / "hub" / get_preset("q-mamba").tokenizer)
    monkeypatch.setattr(runner, "prepare", lambda *args: (_ for _ in ()).throw(KeyboardInterrupt))  # stop there
    result = qbench_run("--model", "q-mamba", "--suite", "mini", "--output", str(tmp_path / "runs"))
    said = " ".join(result.output.split())
    assert said.startswith("warning: q-mamba-3b runs on random weights (seed 0) since it has no published weights: "
                           "its answers are chance") and "interrupted: before a run folder was chosen" in said
    assert result.exit_code == 130 and not list((tmp_path / "runs").iterdir())


def test_evaluate_scores_a_model_in_memory_and_leaves_its_training_state_alone(data, tmp_path):
    vlm = qbench.load_model("tiny-cobra").train()
    random_state = torch.get_rng_state()
    summary = runner.evaluate(vlm, "mini", limit=1, output=tmp_path, data_dir=data)
    assert summary["schema"] == "qbench.run/1" and list(summary["metrics"]) == MINI_TASKS
    assert summary["checkpoint"] == {"source": "in-memory", "sha256": weights_digest(vlm), "seed": None}
    assert vlm.training and torch.equal(torch.get_rng_state(), random_state)


# --- scoring: crafted answers, resumed from the run's JSONL, scored by lmms-eval ------------------------------------
def docs_of(data: Path, task: str, limit: int) -> list[dict]:
    from qbench.suites.tasks import base_config

    like = {"mini_vqav2": "vqav2_val", "mini_gqa": "gqa", "mini_vizwiz": "vizwiz_vqa_val",
            "mini_textvqa": "textvqa_val", "mini_pope_adv": "pope_adv", "mini_pope_pop": "pope_pop",
            "mini_pope_random": "pope_random"}[task]
    config = base_config(like)
    folder = {"mini_vqav2": "VQAv2", "mini_gqa": "GQA", "mini_vizwiz": "VizWiz-VQA",
              "mini_textvqa": "textvqa"}.get(task, "POPE")
    docs = datasets.load_dataset(str(data / "mini" / folder), config.get("dataset_name"), split=config["test_split"],
                                 cache_dir=str(data / "test-cache"))
    return docs.remove_columns("image").select(range(limit)).to_list() if "image" in docs.column_names else \
        docs.select(range(limit)).to_list()


def crafted(task: str, index: int, doc: dict) -> str:
    """Right, right but for case, punctuation and articles, a number word, or wrong; POPE: also "Yes." forms."""
    if task.startswith("mini_pope"):
        truth = doc["answer"]
        return [truth, truth.capitalize() + ".", "No, there is not." if truth == "no" else "Yes, there is one.",
                "yes" if truth == "no" else "no"][index % 4]
    answers = [a["answer"] if isinstance(a, dict) else a for a in doc.get("answers") or [doc["answer"]]]
    truth = max(answers, key=answers.count)
    words = {"0": "zero", "1": "one", "2": "two", "3": "three", "4": "four"}
    return [truth, f"The {truth.upper()}.", words.get(truth, f"not {truth}"), "wrong"][index % 4]


def expected_scores(task: str, docs: list[dict], answers: list[str]) -> tuple[list[float], dict[str, float]]:
    """Per-sample scores and metrics from lmms-eval's own task functions."""
    from lmms_eval.api.metrics import exact_match_hf_evaluate
    from lmms_eval.tasks.pope import utils as pope
    from lmms_eval.tasks.textvqa.utils import textvqa_process_results
    from lmms_eval.tasks.vizwiz_vqa.utils import vizwiz_vqa_process_results
    from lmms_eval.tasks.vqav2.utils import vqav2_process_results_val

    if task.startswith("mini_pope"):
        logged = [pope.pope_process_results(doc, [a])["pope_accuracy"] for doc, a in zip(docs, answers)]
        return [x["score"] for x in logged], {"pope_accuracy": pope.pope_aggregate_accuracy(logged),
                                              "pope_f1_score": pope.pope_aggregate_f1_score(logged),
                                              "pope_precision": pope.pope_aggregate_precision(logged),
                                              "pope_recall": pope.pope_aggregate_recall(logged)}
    if task == "mini_gqa":
        scores = [float(exact_match_hf_evaluate([a], [doc["answer"]], ignore_case=True, ignore_punctuation=True)
                        ["exact_match"]) for doc, a in zip(docs, answers)]
    else:
        scorer = {"mini_vqav2": vqav2_process_results_val, "mini_vizwiz": vizwiz_vqa_process_results,
                  "mini_textvqa": textvqa_process_results}[task]
        scores = [scorer(doc, [a])["exact_match"] for doc, a in zip(docs, answers)]
    return scores, {"exact_match": sum(scores) / len(scores)}


class Interrupted(KeyboardInterrupt):
    pass


ANSWERING = {(VLM, "generate"): VLM.generate, (AnsweringEngine, "answer"): AnsweringEngine.answer}  # either engine


def interrupt_after(monkeypatch, calls: int) -> list[int]:
    """Stop the run (as Ctrl-C would) when the model is asked for answers the (calls + 1)-th time, by either engine."""
    made = [0]

    def stopping(method):
        def answer(self, *args, **kwargs):
            if made[0] == calls:
                raise Interrupted
            made[0] += 1
            return method(self, *args, **kwargs)
        return answer

    for (owner, name), method in ANSWERING.items():
        monkeypatch.setattr(owner, name, stopping(method))
    return made


def score_crafted(monkeypatch, data: Path, output: Path, suite: str, tasks: list[str], limit: int,
                  variants: tuple[str, ...] = ()) -> tuple[dict, list[dict], dict]:
    """A run stopped before its first answer, given crafted answers in its JSONL, then resumed and scored."""
    interrupt_after(monkeypatch, 0)
    with pytest.raises(runner.RunInterrupted):
        runner.run("tiny-cobra", suite, limit=limit, data_dir=data, output=output, device="cpu", variants=variants)
    folder = only_run(output)
    docs = {task: docs_of(data, task, limit) for task in tasks}
    answers = {task: [crafted(task, i, doc) for i, doc in enumerate(docs[task])] for task in tasks}
    rows = [{"task": task, "doc_id": i, "question_id": None, "prompt": "", "answer": answers[task][i],
             "target": reference(docs[task][i]), "error": None} for task in tasks for i in range(limit)]
    (folder / "progress-rank0.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    summary, _ = runner.run("tiny-cobra", suite, limit=limit, data_dir=data, output=output, device="cpu",
                            variants=variants)  # resumed: the model is not asked again (it would be interrupted)
    return summary, read_rows(folder), {"docs": docs, "answers": answers}


def test_scores_equal_lmms_evals_own_scoring_functions(data, tmp_path, monkeypatch):
    limit = 8
    summary, rows, crafted_ = score_crafted(monkeypatch, data, tmp_path, "mini", MINI_TASKS, limit)
    assert summary["resumed_samples"] == limit * len(MINI_TASKS) and summary["samples_per_s"] is None
    for task in MINI_TASKS:
        scores, metrics = expected_scores(task, crafted_["docs"][task], crafted_["answers"][task])
        assert [r["score"] for r in rows if r["task"] == task] == pytest.approx(scores)
        for name, value in metrics.items():
            assert summary["metrics"][task][name] == pytest.approx(value), (task, name)
            task_rows = [r for r in rows if r["task"] == task]  # the bootstrap's statistic is lmms-eval's metric
            assert stats.statistic_of(name)(task_rows) == pytest.approx(value), (task, name)
            lo, hi = summary["intervals"][task][name]["ci"]
            assert lo <= value <= hi and summary["intervals"][task][name]["n"] == limit
    assert 0 < summary["metrics"]["mini_vqav2"]["exact_match"] < 1  # the crafted answers exercise the scoring


def test_lenient_pope_parsing_is_opt_in_and_named_in_the_summary(data, tmp_path, monkeypatch):
    summary, rows, crafted_ = score_crafted(monkeypatch, data, tmp_path, "mini", MINI_TASKS, 8,
                                            ("pope_parsing=lenient",))
    assert summary["variants"] == {"pope_parsing": "lenient"}
    for task in ["mini_pope_adv", "mini_pope_pop", "mini_pope_random"]:
        # "Yes." and "No, there is not." now count as right (lmms-eval: wrong); the opposite answers stay wrong
        assert [r["score"] for r in rows if r["task"] == task] == [1.0, 1.0, 1.0, 0.0] * 2
    _, vqa = expected_scores("mini_vqav2", crafted_["docs"]["mini_vqav2"], crafted_["answers"]["mini_vqav2"])
    assert summary["metrics"]["mini_vqav2"] == pytest.approx(vqa)  # other tasks keep lmms-eval's scoring


# --- resuming -------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("engine, kept, calls_left", [("answering", 6, 4), ("plain", 3, 11)])
def test_an_interrupted_run_resumes_and_scores_every_sample_exactly_once(data, tmp_path, monkeypatch, engine, kept,
                                                                         calls_left):
    # the answering engine is asked once per task (2 samples here), plain generate once per sample (batch size 1)
    made = interrupt_after(monkeypatch, 3)
    args = {"limit": 2, "data_dir": data, "output": tmp_path, "device": "cpu", "batch_size": 1, "engine": engine}
    with pytest.raises(runner.RunInterrupted):
        runner.run("tiny-cobra", "mini", **args)
    folder = only_run(tmp_path)
    progress = folder / "progress-rank0.jsonl"
    assert len(progress.read_text().splitlines()) == kept and not (folder / "summary.json").exists()
    with progress.open("a") as handle:
        handle.write('{"task": "mini_gqa", "doc_id": 0, "answ')  # a line cut short by the interruption
    made = interrupt_after(monkeypatch, 100)
    summary, again = runner.run("tiny-cobra", "mini", **args)
    assert again == folder and made[0] == calls_left  # only the samples not yet answered
    rows = read_rows(folder)
    keys = [(r["task"], r["doc_id"]) for r in rows]
    assert len(keys) == len(set(keys)) == 14 and summary["resumed_samples"] == kept
    assert summary["n_samples"] == {task: 2 for task in MINI_TASKS}


# --- one writer, one identity: what answered is recorded, and a resume must match it ----------------------------------
RUN = ["--model", "tiny-cobra", "--suite", "mini", "--limit", "2", "--device", "cpu", "--batch-size", "1"]


def says(result, text: str) -> bool:
    """Whether the command's output has `text` (the console wraps long lines where it likes)."""
    return "".join(text.split()) in "".join(result.output.split())


def interrupted_run(monkeypatch, data: Path, output: Path, *args: str) -> Path:
    """`qbench run` stopped by Ctrl-C after the answering engine answered its first task (2 samples); its run folder."""
    interrupt_after(monkeypatch, 1)
    result = qbench_run(*RUN, "--data-dir", str(data), "--output", str(output), *args)
    folder = only_run(output)
    assert result.exit_code == 130, result.output
    assert says(result, f"interrupted: 2 answers kept in {folder}; `qbench ") and says(result, "` resumes")
    interrupt_after(monkeypatch, 100)  # the model answers again
    return folder


def test_a_run_records_the_fingerprint_of_each_tasks_data(data, tmp_path):
    summary, folder = runner.run("tiny-cobra", "mini", limit=1, data_dir=data, output=tmp_path, device="cpu")
    vqav2 = data / "mini" / "VQAv2"
    assert summary["data"]["mini_vqav2"] == {"source": "local", "hub_id": "mini/VQAv2", "revision": None,
                                             "path": str(vqav2.resolve()), "fingerprint": fingerprint(vqav2),
                                             "generator": mini.GENERATOR}
    assert set(summary["data"]) == set(MINI_TASKS) and summary["checkpoint"]["seed"] == runner.SEED
    identity = json.loads((folder / "run.json").read_text())
    assert identity["data"] == summary["data"] and identity["checkpoint"] == summary["checkpoint"]


def test_the_same_data_maps_to_the_same_cache_wherever_it_lies_and_changed_data_to_another(data, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(data / "mini" / "POPE", copy)
    assert fingerprint(copy) == fingerprint(data / "mini" / "POPE")
    assert cache_for(copy) == cache_for(data / "mini" / "POPE")
    parquet = copy / "data" / "test-00000-of-00001.parquet"
    stat, body = parquet.stat(), bytearray(parquet.read_bytes())
    body[-100] ^= 1  # one bit, same size, same modification time
    parquet.write_bytes(bytes(body))
    os.utime(parquet, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert fingerprint(copy) != fingerprint(data / "mini" / "POPE")
    assert cache_for(copy) != cache_for(data / "mini" / "POPE")


def test_a_second_process_is_refused_while_the_first_writes_the_run(data, tmp_path, monkeypatch):
    folder = interrupted_run(monkeypatch, data, tmp_path)
    hold = "import sys; from pathlib import Path; from qbench.folder import FolderLock; lock = FolderLock(Path(sys.argv[1])); print('held', flush=True); sys.stdin.read()"
    holder = subprocess.Popen([sys.executable, "-c", hold, str(folder)], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        busy = qbench_run(*RUN, "--data-dir", str(data), "--output", str(tmp_path))
        assert busy.exit_code == 2
        assert says(busy, f"{folder} is being written by pid {holder.pid} on ") and says(busy, "another --output")
    finally:
        holder.kill()  # however a process ends, the kernel lets go of its lock
        holder.wait()
    resumed = qbench_run(*RUN, "--data-dir", str(data), "--output", str(tmp_path))
    assert resumed.exit_code == 0, resumed.output
    summary = json.loads((folder / "summary.json").read_text())
    assert only_run(tmp_path) == folder and summary["resumed_samples"] == 2 and len(read_rows(folder)) == 14


def test_two_runs_started_together_never_share_a_folder(tmp_path):
    request = {"model": "tiny-cobra", "suite": "mini", "limit": 2, "variants": {}, "max_new_tokens": 16,
               "dtype": "float32"}
    identity = {"checkpoint": {"source": "random", "sha256": None, "seed": 0}, "data": {}}
    first, lock = runner.claim_folder(tmp_path, request, identity)
    with pytest.raises(FolderBusy, match=f"{first} is being written by pid {os.getpid()}"):
        runner.claim_folder(tmp_path, request, identity)  # the second finds the first's folder, and its lock
    lock.release()
    again, lock = runner.claim_folder(tmp_path, request, identity)
    lock.release()
    assert again == first and [p for p in tmp_path.iterdir() if p.is_dir()] == [first]


def test_a_lock_file_is_gone_once_released_and_a_waiter_locks_the_path_afresh(tmp_path):
    first = FolderLock(tmp_path)
    locked = []
    waiter = threading.Thread(target=lambda: locked.append(FolderLock(tmp_path, wait=True)))
    waiter.start()
    time.sleep(0.2)  # the waiter has opened the lock file and waits on it
    first.release()  # removes the file the waiter waits on
    waiter.join(timeout=10)
    (second,) = locked
    assert (tmp_path / ".lock").is_file()
    with pytest.raises(FolderBusy):  # the waiter holds the file now at the path, not the removed one
        FolderLock(tmp_path)
    second.release()
    assert not (tmp_path / ".lock").exists()


def test_a_resume_on_changed_data_is_refused_saying_what_changed(data, tmp_path, monkeypatch):
    copy = tmp_path / "data"
    shutil.copytree(data, copy)
    folder = interrupted_run(monkeypatch, copy, tmp_path / "runs")
    mini.write(copy, seed=1, eval_questions=12, train_questions=4)  # other questions under the same path
    refused = qbench_run(*RUN, "--data-dir", str(copy), "--output", str(tmp_path / "runs"))
    assert refused.exit_code == 2
    assert says(refused, f"{folder} holds an unfinished run") and says(refused, "the data of mini_gqa,")
    assert says(refused, f"mini_vqav2 ({copy.resolve()}/mini/GQA {fingerprint(data / 'mini' / 'GQA')[:12]} -> ")
    assert not says(refused, "the weights") and says(refused, f"to start fresh, remove or move {folder}")
    assert not (folder / "summary.json").exists() and len((folder / "progress-rank0.jsonl").read_text().split()) > 0


def test_random_weights_are_seeded_and_each_seed_runs_in_its_own_folder(data, tmp_path, monkeypatch):
    digests, execute = [], runner.execute
    monkeypatch.setattr(runner, "execute", lambda vlm, *args: digests.append(weights_digest(vlm)) or execute(vlm, *args))
    folder = interrupted_run(monkeypatch, data, tmp_path)
    assert folder.name.startswith("tiny-cobra-random-seed0__mini__")
    torch.manual_seed(123)  # the caller's random state does not choose the weights: the seed does
    other = qbench_run(*RUN, "--data-dir", str(data), "--output", str(tmp_path), "--seed", "1")
    assert other.exit_code == 0, other.output  # other random weights: another run, never the seed-0 run resumed
    assert sorted(p.name.split("__")[0] for p in tmp_path.iterdir() if p.is_dir()) == [
        "tiny-cobra-random-seed0", "tiny-cobra-random-seed1"]
    resumed = qbench_run(*RUN, "--data-dir", str(data), "--output", str(tmp_path))
    assert resumed.exit_code == 0, resumed.output
    summary = json.loads((folder / "summary.json").read_text())
    assert summary["checkpoint"] == {"source": "random", "sha256": None, "seed": 0} and summary["resumed_samples"] == 2
    assert digests[0] == digests[2] != digests[1]


def test_a_resume_with_changed_weights_at_the_same_path_is_refused(data, weights, tmp_path, monkeypatch):
    changed = tmp_path / "weights"
    shutil.copytree(weights, changed)
    folder = interrupted_run(monkeypatch, data, tmp_path / "runs", "--checkpoint", str(changed))
    save_native(qbench.load_model("tiny-cobra", seed=5), changed)  # other weights under the same path
    refused = qbench_run(*RUN, "--data-dir", str(data), "--output", str(tmp_path / "runs"), "--checkpoint",
                         str(changed))
    assert refused.exit_code == 2 and says(refused, f"{folder} holds an unfinished run") and says(refused,
                                                                                                 "the weights (then")


def test_the_answering_engine_and_plain_generate_write_the_same_answers(data, weights, tmp_path):
    args = ["--model", "tiny-cobra", "--checkpoint", str(weights), "--suite", "mini", "--limit", "4", "--data-dir",
            str(data), "--device", "cpu", "--batch-size", "3"]
    for engine in ("answering", "plain"):
        result = qbench_run(*args, "--engine", engine, "--output", str(tmp_path / engine))
        assert result.exit_code == 0, result.output
    folders = {engine: only_run(tmp_path / engine) for engine in ("answering", "plain")}
    answers = {engine: {(r["task"], r["doc_id"]): r["answer"] for r in read_rows(folder)}
               for engine, folder in folders.items()}
    assert answers["answering"] == answers["plain"] and len(answers["plain"]) == 4 * len(MINI_TASKS)
    assert len(set(answers["plain"].values())) > 1  # real, varied answers
    engines = {engine: json.loads((folder / "summary.json").read_text())["engine"] for engine, folder in folders.items()}
    assert engines == {"answering": "answering (eager decode)", "plain": "generate"}


# --- two processes ----------------------------------------------------------------------------------------------------
def test_two_processes_give_the_same_answers_as_one(data, weights, tmp_path):
    args = ["run", "--model", "tiny-cobra", "--checkpoint", str(weights), "--suite", "mini", "--limit", "3",
            "--data-dir", str(data), "--device", "cpu", "--batch-size", "2"]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    two = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                          "-m", "qbench.cli", *args, "--output", str(tmp_path / "two")],
                         env=env, capture_output=True, text=True, timeout=400)
    assert two.returncode == 0, two.stdout[-3000:] + two.stderr[-3000:]
    one = CliRunner().invoke(app, [*args, "--output", str(tmp_path / "one")])
    assert one.exit_code == 0, one.output
    answers = [{(r["task"], r["doc_id"]): r["answer"] for r in read_rows(only_run(tmp_path / name))}
               for name in ("one", "two")]
    assert answers[0] == answers[1] and len(answers[0]) == 21
    assert len(set(answers[0].values())) > 1  # real, varied answers
    summary = json.loads((only_run(tmp_path / "two") / "summary.json").read_text())
    assert summary["world_size"] == 2 and summary["checkpoint"]["sha256"]


# --- bad input --------------------------------------------------------------------------------------------------------
def test_an_unknown_suite_model_or_variant_is_named_with_the_valid_ones(data, tmp_path):
    common = ["--data-dir", str(data), "--output", str(tmp_path), "--limit", "1"]
    result = qbench_run("--model", "tiny-cobra", "--suite", "nope", *common)
    assert result.exit_code == 2 and "unknown suite 'nope'" in result.output and "mini" in result.output
    result = qbench_run("--model", "nope", "--suite", "mini", *common)
    assert result.exit_code == 2 and "unknown model 'nope'" in result.output and "tiny-cobra" in result.output
    result = qbench_run("--model", "tiny-cobra", "--suite", "mini", "--variant", "pope_parsing=loose", *common)
    assert result.exit_code == 2 and "pope_parsing=lenient" in result.output
    result = qbench_run("--model", "tiny-cobra", "--suite", "gqa", "--variant", "pope_parsing=lenient", *common)
    assert result.exit_code == 2 and "applies to no task of suite gqa" in result.output
    assert not list(tmp_path.iterdir())  # nothing was started


def test_missing_data_names_the_hub_dataset_and_how_to_copy_it(tmp_path):
    result = qbench_run("--model", "tiny-cobra", "--suite", "vqa", "--data-dir", str(tmp_path / "data"),
                        "--output", str(tmp_path / "runs"))
    assert result.exit_code == 2
    message = " ".join(result.output.split())
    assert "lmms-lab-encoder/VQAv2" in message and "hf download lmms-lab-encoder/VQAv2 --repo-type dataset" in message
    assert f"--data-dir {tmp_path / 'data'}" in message


def test_a_corrupt_image_is_recorded_as_an_error_and_the_run_goes_on(data, tmp_path):
    copy = tmp_path / "data"
    shutil.copytree(data / "mini", copy / "mini")
    path = copy / "mini" / "VQAv2" / "data" / "validation-00000-of-00001.parquet"
    table = datasets.Dataset.from_parquet(str(path)).cast_column("image", datasets.Image(decode=False))
    rows = table.to_list()
    rows[1]["image"] = {"bytes": b"this is not a picture", "path": None}
    datasets.Dataset.from_list(rows, features=table.features).cast_column("image", datasets.Image()).to_parquet(path)
    result = qbench_run("--model", "tiny-cobra", "--suite", "mini", "--limit", "2", "--data-dir", str(copy),
                        "--output", str(tmp_path / "runs"))
    assert result.exit_code == 0, result.output
    folder = only_run(tmp_path / "runs")
    summary = json.loads((folder / "summary.json").read_text())
    assert summary["errors"] == 1 and summary["n_samples"]["mini_vqav2"] == 2
    errors = {(r["task"], r["doc_id"]): r["error"] for r in read_rows(folder) if r["error"]}
    assert list(errors) == [("mini_vqav2", 1)] and "UnidentifiedImageError" in errors["mini_vqav2", 1]


def test_the_textvqa_ocr_variants_put_the_ocr_tokens_where_each_paper_did(data):
    from qbench.suites.registry import load_suite
    from qbench.suites.tasks import task_config
    from qbench.suites.variants import parse_variants

    (textvqa,) = [task for task in load_suite("mini").tasks if task.task == "mini_textvqa"]
    doc = docs_of(data, "mini_textvqa", 1)[0]
    ocr = "Reference OCR token: " + ", ".join(doc["ocr_tokens"])
    question, short = doc["question"], "\nAnswer the question using a single word or phrase."
    for variants, prompt in [([], question + short), (["textvqa_ocr=before-question"], f"{ocr}\n{question}{short}"),
                             (["textvqa_ocr=after-question"], f"{question}\n{ocr}{short}")]:
        config = task_config(textvqa, data, parse_variants(variants), 16)
        assert config["doc_to_text"](doc, config["lmms_eval_specific_kwargs"]["default"]) == prompt


def test_llava_prompt_variant_puts_the_papers_vicuna_v1_system_prompt_first_and_is_named_in_the_summary(data, tmp_path):
    from qbench.prompts import PROMPTS

    assert PROMPTS["llava-vicuna-v1"].render("Q?") == ("A chat between a curious user and an artificial intelligence "
                                                       "assistant. The assistant gives helpful, detailed, and polite "
                                                       "answers to the user's questions. USER: <image>\nQ? ASSISTANT:")
    common = ["--suite", "mini", "--data-dir", str(data), "--output", str(tmp_path), "--limit", "1",
              "--variant", "llava_prompt=vicuna_v1"]
    refused = qbench_run("--model", "tiny-cobra", *common)
    assert refused.exit_code == 2 and "applies to models with the llava prompt, not zephyr" in refused.output
    result = qbench_run("--model", "tiny-llava", *common)
    assert result.exit_code == 0, result.output
    summary = json.loads((only_run(tmp_path) / "summary.json").read_text())
    assert summary["variants"] == {"llava_prompt": "vicuna_v1"} and summary["spec"]["prompt"] == "llava-vicuna-v1"


def test_a_source_checkout_that_was_not_installed_records_qbench_s_own_version(monkeypatch):
    import qbench
    from qbench.suites import runner

    monkeypatch.setattr(runner, "package_version", lambda name: None if name == "qbench" else "1.0")
    assert runner.versions()["qbench"] == qbench.__version__
