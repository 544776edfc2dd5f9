"""The hostile audit of issue 25, case by case (each test names its case): every one ends in a correct result or
one `error:` line naming the file or option, exit status 2, nothing lost, nothing written outside its folder."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

import qbench
from qbench.checkpoints import CheckpointMismatch, load_vlm, save_native
from qbench.cli import app
from qbench.suites import runner
from qbench.train import loop


def qbench_cli(*args):
    return CliRunner().invoke(app, [str(arg) for arg in args])


def refused(result, *phrases: str) -> str:
    """The one error line of a refused command (exit 2), checked for each phrase."""
    assert result.exit_code == 2, (result.output, result.exception)
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.output
    said = " ".join(lines[0].split())
    for phrase in phrases:
        assert phrase in said, said
    return said


def failed_after_work(result, *phrases: str) -> str:
    """A command that stopped after doing some work (its progress printed): exit 2 and one `error:` line, checked
    for each phrase."""
    assert result.exit_code == 2, (result.output, result.exception)
    errors = [line for line in result.output.strip().splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, result.output
    said = " ".join(errors[0].split())
    for phrase in phrases:
        assert phrase in said, said
    return said


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    """A qbench checkpoint folder of tiny-llava."""
    return save_native(qbench.load_model("tiny-llava"), tmp_path_factory.mktemp("weights") / "tiny-llava")


def altered(checkpoint: Path, where: Path, **fields) -> Path:
    """A copy of the checkpoint whose spec.json has `fields` changed (dotted keys for nested ones)."""
    where.mkdir(parents=True)
    (where / "model.safetensors").write_bytes((checkpoint / "model.safetensors").read_bytes())
    spec = json.loads((checkpoint / "spec.json").read_text())
    for dotted, value in fields.items():
        *parents, last = dotted.split("__")
        node = spec
        for key in parents:
            node = node[key]
        node[last] = value
    (where / "spec.json").write_text(json.dumps(spec))
    return where


def files_under(folder: Path) -> set[Path]:
    return {path for path in folder.rglob("*")} if folder.exists() else set()


# --- case 2: a name that becomes a path stays inside its folder ------------------------------------------------------
@pytest.mark.parametrize("name,problem", [("../../ESCAPED", "it holds a path separator"),
                                          ("/tmp/ESCAPED-ABSOLUTE", "it holds a path separator"),
                                          ("..", "it starts with '.'")])
def test_case2_a_checkpoint_name_cannot_lead_out_of_the_output_folder(checkpoint, tmp_path, name, problem):
    hostile = altered(checkpoint, tmp_path / "ckpt", name=name)
    before = files_under(tmp_path)
    refused(qbench_cli("run", "--model", hostile, "--suite", "mini", "--output", tmp_path / "X" / "runs",
                       "--data-dir", tmp_path / "data"),
            f"{hostile / 'spec.json'} is not a usable qbench model spec", f"name {name!r} cannot name a run folder",
            problem)
    assert files_under(tmp_path) == before and not Path("/tmp/ESCAPED-ABSOLUTE").exists()


def test_case2_the_run_folder_itself_is_made_only_inside_the_output(tmp_path):
    with pytest.raises(qbench.inputs.UserError, match="cannot name a folder inside"):
        runner.claim_folder(tmp_path, {"model": "../x", "suite": "mini"}, {})
    assert list(tmp_path.iterdir()) == []  # nothing made (the lock file goes with its lock)


@pytest.mark.parametrize("name", ["../../../X", "/abs", "a/b", ""])
def test_case2_ablate_name_stays_inside_data_and_results(tmp_path, monkeypatch, name):
    monkeypatch.chdir(tmp_path)
    refused(qbench_cli("ablate", "--projectors", "mlp", "--backbones", "llama", "--name", name, "--steps", "2"),
            f"--name {name!r} cannot name a folder inside data/ablation")
    assert list(tmp_path.iterdir()) == []


# --- case 9: hostile spec.json, a relabelled tensor, a name with glob and markup characters -------------------------
@pytest.mark.parametrize("field,value,said", [
    ("backbone__hidden", "64", "backbone.hidden is '64': it must be a whole number from 1 to 32,768"),
    ("backbone__vocab", 10 ** 12, "backbone.vocab is 1000000000000: it must be a whole number from 1 to 524,288"),
    ("vision__resolution", 70000, "vision.resolution is 70000: it must be a whole number from 1 to 4,096"),
    ("vision__dims__clip__width", -3, "vision.dims.clip.width is -3"),
    ("backbone__options__heads", 10 ** 30, "backbone.options.heads is 100000000000000000000000000..."),
    ("prompt", "nope", "unknown prompt format 'nope'; choose from:"),
    ("projector__kind", "nope", "unknown projector 'nope'"),
])
def test_case9_a_hostile_spec_is_refused_naming_the_field_before_anything_is_built(checkpoint, tmp_path, monkeypatch,
                                                                                   field, value, said):
    hostile = altered(checkpoint, tmp_path / "ckpt", **{field: value})
    built = []
    monkeypatch.setattr(qbench.vlm.VLM, "__init__", lambda *args, **kwargs: built.append(1))
    refused(qbench_cli("run", "--model", hostile, "--suite", "mini", "--output", tmp_path / "runs",
                       "--data-dir", tmp_path / "data"), f"{hostile / 'spec.json'} is not a usable qbench model spec",
            said)
    assert not built and not (tmp_path / "runs").exists() and not (tmp_path / "data").exists()


def test_case9_float16_weights_relabelled_as_int16_are_refused(checkpoint, tmp_path):
    half = save_native(qbench.load_model("tiny-llava"), tmp_path / "half",
                       state={k: v.half() for k, v in qbench.load_model("tiny-llava").state_dict().items()})
    data = (half / "model.safetensors").read_bytes()
    (half / "model.safetensors").write_bytes(data.replace(b'"dtype":"F16"', b'"dtype":"I16"', 1))
    with pytest.raises(CheckpointMismatch, match=r"model.safetensors stores .* \(I16\) as non-floating-point"):
        load_vlm(str(half))


def test_case9_a_model_name_with_glob_and_markup_characters_resumes_and_prints_whole(checkpoint, tmp_path):
    named = altered(checkpoint, tmp_path / "ckpt", name="tiny[x]")
    request, identity = {"model": "tiny[x]", "suite": "mini", "limit": 1}, {"checkpoint": None, "data": {}}
    folder, lock = runner.claim_folder(tmp_path / "runs", request, identity)
    lock.release()
    assert runner.unfinished(tmp_path / "runs", request, runner.folder_prefix(request, identity)) == folder
    # found again: its answers are not orphaned
    done = qbench_cli("data", "mini", "--output", tmp_path / "d[x]", "--eval", "1", "--train", "1")
    assert done.exit_code == 0 and f"wrote {tmp_path / 'd[x]' / 'mini'}" in " ".join(done.output.split())
    assert named.is_dir()


def test_case9_a_model_name_with_markup_characters_prints_whole_while_it_loads_and_trains(checkpoint, tmp_path,
                                                                                         monkeypatch, capsys):
    from qbench import verbosity

    monkeypatch.setitem(verbosity.COMMAND, "running", True)
    verbosity.step("loading tiny[x] (d[x]/ckpt) on cpu in fp32")  # as `qbench run` says it
    assert "loading tiny[x] (d[x]/ckpt) on cpu" in capsys.readouterr().out
    named = altered(checkpoint, tmp_path / "ckpt", name="tiny[x]")
    trained = qbench_cli("train", "--model", named, "--steps", "1", "--batch-size", "2", "--recipe", "cobra",
                         "--device", "cpu", *conversations(tmp_path / "data", ["red", "green", "blue", "yellow"]),
                         "--output", tmp_path / "out")
    assert trained.exit_code == 0, trained.output
    assert "tiny[x] finetune step 1/1" in trained.output


# --- case 3: speed and workload rows are never lost -------------------------------------------------------------------
SPEED = ["speed", "--engine", "eager", "--new-tokens", "2", "--repeats", "1", "--dtype", "fp32", "--device", "cpu"]
WORKLOAD = ["workload", "--stream", "vizwiz", "--questions", "3", "--plain-questions", "2", "--plain-batch-size", "2",
            "--device", "cpu", "--dtype", "fp32"]


def test_case3_a_second_sweep_into_a_folder_being_written_is_refused_and_sweeps_add_up(tmp_path):
    from qbench.folder import FolderLock

    first = qbench_cli(*SPEED, "--model", "tiny-cobra", "--tokens", "16,36", "--output", tmp_path)
    assert first.exit_code == 0, first.output
    with FolderLock(tmp_path):  # another sweep is writing the folder
        refused(qbench_cli(*SPEED, "--model", "tiny-llava", "--tokens", "16,36", "--output", tmp_path),
                f"{tmp_path} is being written by pid", "wait for it to finish, or give another --output")
    second = qbench_cli(*SPEED, "--model", "tiny-llava", "--tokens", "16,36", "--output", tmp_path)
    assert second.exit_code == 0, second.output
    rows = json.loads((tmp_path / "speed.json").read_text())["rows"]
    assert [(r["model"], r["visual_tokens"]) for r in rows] == [(m, t) for m in ("tiny-cobra", "tiny-llava")
                                                                for t in (16, 36)]
    assert (tmp_path / "speed.csv").read_text().count("\n") == 1 + 4


def test_case3_a_second_workload_into_a_folder_keeps_the_first_ones_rows(tmp_path):
    for model in ("tiny-cobra", "tiny-llava"):
        result = qbench_cli(*WORKLOAD, "--model", model, "--output", tmp_path)
        assert result.exit_code == 0, result.output
    document = json.loads((tmp_path / "workload.json").read_text())
    assert [row["model"] for row in document["rows"]] == ["tiny-cobra", "tiny-llava"]
    assert len(document["commands"]) == 2 and len(document["configs"]) == 2
    again = qbench_cli(*WORKLOAD, "--model", "tiny-cobra", "--output", tmp_path)  # the same configuration again
    assert again.exit_code == 0, again.output
    assert [row["model"] for row in json.loads((tmp_path / "workload.json").read_text())["rows"]] == \
        ["tiny-cobra", "tiny-llava"]  # its row replaced, the other kept


def test_case3_the_workloads_default_folder_keeps_an_earlier_workloads_rows(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for model in ("tiny-cobra", "tiny-llava"):
        assert qbench_cli(*WORKLOAD, "--model", model).exit_code == 0
    (folder,) = (tmp_path / "results" / "speed").iterdir()
    assert folder.name.startswith("cpu_") and folder.name.endswith("_answering")
    assert len(json.loads((folder / "workload.json").read_text())["rows"]) == 2


@pytest.mark.parametrize("command", [[*SPEED, "--model", "tiny-cobra", "--tokens", "16,36"],
                                     [*WORKLOAD, "--model", "tiny-cobra,tiny-llava"]])
def test_case9_ctrl_c_in_speed_and_workload_says_what_was_kept(tmp_path, monkeypatch, command):
    from qbench.speed import sweep, workload

    calls = []

    def stop_second(original):
        def measured(*args, **kwargs):
            if calls:
                raise KeyboardInterrupt
            calls.append(1)
            return original(*args, **kwargs)
        return measured

    monkeypatch.setattr(sweep, "run_point", stop_second(sweep.run_point))
    monkeypatch.setattr(workload, "measure", stop_second(workload.measure))
    result = qbench_cli(*command, "--output", tmp_path)
    assert result.exit_code == 130
    file = "speed.json" if command[0] == "speed" else "workload.json"
    said = " ".join(result.output.split())
    assert f"interrupted: 1 rows kept in {tmp_path / file}; `qbench" in said and said.endswith("` resumes")
    assert len(json.loads((tmp_path / file).read_text())["rows"]) == 1


def test_case9_an_empty_stream_or_model_list_is_refused_without_claiming_a_file(tmp_path):
    refused(qbench_cli(*WORKLOAD, "--stream", "", "--output", tmp_path), "--stream takes one or more names", "got ''")
    refused(qbench_cli(*SPEED, "--model", ",", "--output", tmp_path), "--model takes one or more names")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("command,said", [
    (["run", "--model", "tiny-llava", "--suite", "mini", "--seed", str(10 ** 22)], "Invalid value for '--seed'"),
    (["train", "--model", "tiny-llava", "--output", "{tmp}/t", "--seed", str(10 ** 22)], "Invalid value for '--seed'"),
    ([*SPEED, "--model", "tiny-cobra", "--tokens", "²"], "--tokens takes whole numbers of 1 or more"),
    ([*SPEED, "--model", "tiny-cobra", "--batch-size", "²"], "--batch-size takes whole numbers of 1 or more"),
    (["ablate", "--seeds", "²"], "--seeds takes whole numbers of 0 or more"),
    (["ablate", "--seeds", str(10 ** 22)], "--seeds takes whole numbers from 0 to 2147483647"),
    (["ablate", "--shard", "²/3"], "--shard takes i/n"),
])
def test_case9_messages_name_the_option(tmp_path, command, said):
    refused(qbench_cli(*(arg.replace("{tmp}", str(tmp_path)) for arg in command)), said)
    assert not (tmp_path / "t").exists()


# --- case 7: training refuses what cannot train ---------------------------------------------------------------------
@pytest.mark.parametrize("command", ["train", "ablate"])
@pytest.mark.parametrize("value", ["inf", "nan", "-1", "0"])
def test_case7_a_learning_rate_that_cannot_train_is_refused_up_front_naming_the_option(tmp_path, monkeypatch,
                                                                                      command, value):
    monkeypatch.chdir(tmp_path)
    built = []
    monkeypatch.setattr(qbench.vlm.VLM, "__init__", lambda *args, **kwargs: built.append(1))
    given = ["--model", "tiny-llava", "--output", "t"] if command == "train" else []
    refused(qbench_cli(command, "--lr", value, *given), "--lr takes a finite number above 0, e.g. --lr 1e-3")
    assert not built and list(tmp_path.iterdir()) == []


# --- cases 1, 4, 7: training resumes only what it began, and recovery never deletes the good checkpoint --------------
def conversations(root: Path, answers: list[str], question: str = "What color is the image?") -> list[str]:
    """A 4-conversation LLaVA JSON (one image each) and the options that train on it."""
    from PIL import Image

    root.mkdir(parents=True, exist_ok=True)
    entries = []
    for index, (colour, answer) in enumerate(zip(["red", "green", "blue", "yellow"], answers)):
        Image.new("RGB", (64, 64), colour).save(root / f"{index}.png")
        entries.append({"id": str(index), "image": f"{index}.png", "conversations": [
            {"from": "human", "value": f"<image>\n{question}"}, {"from": "gpt", "value": answer}]})
    (root / "llava.json").write_text(json.dumps(entries))
    return ["--data", root / "llava.json", "--image-dir", root]


TRAIN = ["train", "--model", "tiny-llava", "--steps", "4", "--batch-size", "2", "--recipe", "cobra", "--device", "cpu",
         "--save-every", "1"]


def test_case1_training_refuses_to_resume_on_changed_data(tmp_path):
    data = conversations(tmp_path / "data", ["red", "green", "blue", "yellow"])
    first = qbench_cli(*TRAIN, *data, "--output", tmp_path / "run", "--stop-after", "2")
    assert first.exit_code == 0, first.output
    changed = conversations(tmp_path / "data", ["rot", "grun", "blau", "gelb"], "Welche Farbe hat das Bild?")
    refused(qbench_cli(*TRAIN, *changed, "--output", tmp_path / "run", "--stop-after", "2"),  # the same command
            f"{tmp_path / 'run' / 'resume'} was written by a run with a different data",
            "or train into another --out")
    assert loop.sealed_step(tmp_path / "run" / "resume") == 2  # kept for the original data
    again = qbench_cli(*TRAIN, *conversations(tmp_path / "data", ["red", "green", "blue", "yellow"]), "--output",
                       tmp_path / "run")
    assert again.exit_code == 0, again.output  # the same data resumes
    assert json.loads((tmp_path / "run" / "train.json").read_text())["steps_done"] == 4


def test_case4_a_lying_seal_does_not_delete_the_good_checkpoint(tmp_path):
    data = conversations(tmp_path / "data", ["red", "green", "blue", "yellow"])
    out = tmp_path / "run"
    assert qbench_cli(*TRAIN, *data, "--output", out, "--stop-after", "2").exit_code == 0
    lying = out / "resume.new"
    shutil.copytree(out / "resume", lying)
    weights = (lying / "model.safetensors").read_bytes()
    (lying / "model.safetensors").write_bytes(weights[: len(weights) // 2])  # truncated
    (lying / "complete.json").write_text(json.dumps({"global_step": 999}))  # but claims to be complete
    result = qbench_cli(*TRAIN, *data, "--output", out)
    assert result.exit_code == 0, result.output
    record = json.loads((out / "train.json").read_text())
    assert record["finished"] and record["steps_done"] == 4 and [s for s, _ in record["log"]] == [1, 2, 3, 4]
    assert not lying.exists()


def test_case7_a_resume_folder_linking_out_of_out_is_refused_and_nothing_outside_is_touched(tmp_path):
    data = conversations(tmp_path / "data", ["red", "green", "blue", "yellow"])
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "complete.json").write_text('{"global_step": 1}')
    (outside / "precious.txt").write_text("keep me")
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "resume").symlink_to(outside)
    refused(qbench_cli(*TRAIN, *data, "--output", tmp_path / "run"),
            f"{tmp_path / 'run' / 'resume'} is a symbolic link (to {outside})", "remove the link")
    assert sorted(p.name for p in outside.iterdir()) == ["complete.json", "precious.txt"]


def test_case7_a_resume_state_claiming_an_absurd_step_is_refused(tmp_path):
    data = conversations(tmp_path / "data", ["red", "green", "blue", "yellow"])
    out = tmp_path / "run"
    assert qbench_cli(*TRAIN, *data, "--output", out, "--stop-after", "2").exit_code == 0
    state = torch.load(out / "resume" / loop.TRAINER_FILE, weights_only=True)
    torch.save({**state, "step": 10 ** 6}, out / "resume" / loop.TRAINER_FILE)
    loop.seal(out / "resume", 10 ** 6)
    refused(qbench_cli(*TRAIN, *data, "--output", out),
            f"{out / 'resume' / 'trainer.pt'} claims step 1000000 of stage 0, which this run (4 steps per stage) "
            "does not have", f"delete {out / 'resume'} to start this training afresh")


# --- case 8: an ablation evaluated with one --limit is not reported as another ----------------------------------------
ABLATE = ["ablate", "--projectors", "mlp", "--backbones", "llama", "--name", "t", "--steps", "2", "--batch-size", "4",
          "--train-questions", "8", "--device", "cpu", "--recipe", "cobra"]


def test_case8_a_later_eval_with_another_limit_is_refused_and_the_limit_is_recorded(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    first = qbench_cli(*ABLATE, "--limit", "4")
    assert first.exit_code == 0, first.output
    record = json.loads((tmp_path / "results/ablation/t/ablation.json").read_text())
    assert (record["suite"], record["limit"], record["train_questions"]) == ("mini", 4, 8)
    tables = {p: p.read_bytes() for p in (tmp_path / "results/ablation/t").iterdir()}
    refused(qbench_cli(*ABLATE, "--phases", "eval", "--limit", "8"),
            "results/ablation/t holds the results of ablation 't' of another configuration (limit 4 vs 8)")
    assert {p: p.read_bytes() for p in (tmp_path / "results/ablation/t").iterdir()} == tables
    (tmp_path / "results/ablation/t").rename(tmp_path / "elsewhere")  # the tables gone, the evaluations are not
    refused(qbench_cli(*ABLATE, "--phases", "eval", "--limit", "8"),
            "data/ablation/t/tiny-mlp-llama/seed0/eval.json holds an evaluation on suite mini with --limit 4, and "
            "this asks suite mini with --limit 8", "remove data/ablation/t/tiny-mlp-llama/seed0/eval.json")
    again = qbench_cli(*ABLATE, "--phases", "eval", "--limit", "4")  # the same evaluation: its tables again
    assert again.exit_code == 0, again.output
    refused(qbench_cli(*ABLATE[:-4], "--steps", "3", "--phases", "eval", "--limit", "4"),
            "results/ablation/t holds the results of ablation 't' of another configuration (steps 2 vs 3")


# --- case 6: the report skips what it cannot read, naming it, and shows no infinity ----------------------------------
def report_of(results: Path, out: Path):
    return qbench_cli("report", "--results", results, "--output", out)


def comparable_runs(root: Path) -> None:
    from run_folders import write_run

    write_run(root / "runs" / "a", {"mini_gqa": [1, 0, 1, 1]}, model="tiny-llava")
    write_run(root / "runs" / "b", {"mini_gqa": [0, 0, 1, 0]}, model="tiny-cobra")


@pytest.mark.parametrize("damage,said", [
    (lambda run: (run / "samples.jsonl").write_text((run / "samples.jsonl").read_text()[:-30]),
     "runs/c/samples.jsonl: line 4 is not JSON"),
    (lambda run: (run / "summary.json").write_text((run / "summary.json").read_text().replace(
        '"exact_match": 0.5', '"exact_match": ' + "9" * 5000)), "runs/c/summary.json: cannot be read as JSON"),
    (lambda run: (run / "summary.json").write_text((run / "summary.json").read_text().replace(
        '"exact_match": 0.5', '"exact_match": ' + "9" * 401)), "runs/c/summary.json: has metrics.mini_gqa.exact_match"),
    (lambda run: (run / "summary.json").write_text((run / "summary.json").read_text().replace(
        '"exact_match": 0.5', '"exact_match": 1e999')), "runs/c/summary.json: has metrics.mini_gqa.exact_match = inf"),
    (lambda run: ((run / "samples.jsonl").unlink(), (run / "samples.jsonl").mkdir()),
     "runs/c/samples.jsonl: cannot be read"),
])
def test_case6_a_bad_run_among_comparable_ones_is_skipped_with_a_warning_naming_it(tmp_path, damage, said):
    from run_folders import write_run

    root = tmp_path / "results"
    comparable_runs(root)
    damage(write_run(root / "runs" / "c", {"mini_gqa": [1, 0, 1, 0]}, model="tiny-ml-mamba"))
    result = report_of(root, tmp_path / "report")
    assert result.exit_code == 0, result.output
    assert f"warning: skipped {said}" in " ".join(result.output.split())
    compared = (tmp_path / "report" / "tables" / "comparisons.csv").read_text()
    assert "tiny-llava" in compared and "tiny-ml-mamba" not in compared
    assert "inf" not in (tmp_path / "report" / "tables" / "accuracy.md").read_text()


def test_case6_a_folder_name_that_is_not_utf8_is_skipped_by_name(tmp_path):
    import os

    from run_folders import write_run

    root = tmp_path / "results"
    comparable_runs(root)
    write_run(Path(os.fsdecode(bytes(root / "runs") + b"/bad\xff")), {"mini_gqa": [1, 0]})
    result = report_of(root, tmp_path / "report")
    assert result.exit_code == 0, result.output
    assert "warning: skipped runs/bad\\xff/summary.json: its name is not valid UTF-8; rename it" in \
        " ".join(result.output.split())
    assert "bad" not in (tmp_path / "report" / "README.md").read_text().split("Skipped")[0]


def test_case6_a_speed_row_of_infinity_is_skipped_not_shown_as_inf_plus_minus_zero(tmp_path):
    root = tmp_path / "results" / "speed" / "x"
    root.mkdir(parents=True)
    (root / "speed.json").write_text(json.dumps({"schema": "qbench.speed/1", "environment": {"gpu": "G"}, "rows": [
        {"model": "tiny-cobra", "engine": "eager", "status": "ok", "visual_tokens": 16, "batch": 1,
         "e2e_tokens_per_s": float("inf")}]}))
    result = report_of(tmp_path / "results", tmp_path / "report")
    assert result.exit_code == 0, result.output
    assert "skipped speed/x/speed.json: rows[0].e2e_tokens_per_s is inf, not a finite number" in \
        " ".join(result.output.split())


def test_case6_a_bad_out_is_one_error_line(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    (tmp_path / "results").mkdir()
    refused(report_of(tmp_path / "results", blocker / "report"), f"--output {blocker / 'report'}: cannot write there")


# --- case 9: the environment's folders and a full disk ---------------------------------------------------------------
@pytest.mark.parametrize("variable,option", [("QBENCH_CACHE", None), ("HF_DATASETS_CACHE", None),
                                             ("QBENCH_HUB_DIR", None), (None, "--data-dir")])
def test_case9_a_file_where_a_folder_belongs_is_named_before_anything_is_made(tmp_path, monkeypatch, variable, option):
    import datasets

    blocker = tmp_path / "a-file"
    blocker.write_text("")
    if variable == "HF_DATASETS_CACHE":
        monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", blocker)  # read when datasets is imported
    elif variable:
        monkeypatch.setenv(variable, str(blocker))
    model = "cobra" if variable == "QBENCH_HUB_DIR" else "tiny-cobra"  # the hub mirror is where cobra is looked for
    refused(qbench_cli("run", "--model", model, "--suite", "mini", "--output", tmp_path / "runs", "--data-dir",
                       blocker if option else tmp_path / "data"),
            f"{variable or option} {blocker} is a file, not a folder")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a-file"]


def no_space(path) -> OSError:
    import errno

    return OSError(errno.ENOSPC, "No space left on device", str(path))


def test_case9_a_disk_filling_mid_run_is_one_line_and_the_run_resumes(tmp_path, monkeypatch):
    from qbench.suites import journal, mini

    mini.write(tmp_path / "data", eval_questions=2, train_questions=1)
    add = journal.Journal.add
    monkeypatch.setattr(journal.Journal, "add", lambda self, rows: (_ for _ in ()).throw(no_space(self.path)))
    args = ["run", "--model", "tiny-llava", "--suite", "mini", "--limit", "1", "--output", tmp_path / "runs",
            "--data-dir", tmp_path / "data", "--device", "cpu"]
    said = failed_after_work(qbench_cli(*args), "no space left on the device while writing", "progress-rank0.jsonl",
                             "run the same command again")
    monkeypatch.setattr(journal.Journal, "add", add)
    again = qbench_cli(*args)
    assert again.exit_code == 0, again.output
    (folder,) = [path for path in (tmp_path / "runs").iterdir() if path.is_dir()]
    assert f"{folder}" in said and (folder / "summary.json").is_file()


def test_case9_a_disk_filling_mid_save_keeps_the_last_checkpoint_and_training_resumes(tmp_path, monkeypatch):
    def half_written(vlm, directory, *args, **kwargs):
        Path(directory).mkdir(parents=True, exist_ok=True)
        (Path(directory) / "model.safetensors").write_bytes(b"half")
        raise no_space(Path(directory) / "model.safetensors")

    out = the_second_save_fills_the_disk(tmp_path, monkeypatch, loop, "save_native", half_written,
                                         "resume.new/model.safetensors")
    record = json.loads((out / "train.json").read_text())
    assert record["finished"] and [step for step, _ in record["log"]] == [1, 2, 3, 4]


def test_case9_a_full_disk_in_the_weights_writer_is_one_line_naming_the_file_and_training_resumes(tmp_path,
                                                                                                   monkeypatch):
    import safetensors

    from qbench.checkpoints import native

    def full(state, filename, *args, **kwargs):  # what safetensors raises when the device fills up
        raise safetensors.SafetensorError("Error while serializing: I/O error: No space left on device (os error 28)")

    the_second_save_fills_the_disk(tmp_path, monkeypatch, native, "save_file", full,
                                   "resume.new/model.safetensors.tmp")


def the_second_save_fills_the_disk(tmp_path, monkeypatch, owner, name: str, fill, written: str) -> Path:
    """Train with `owner.name` replaced by `fill` on its second call (the first checkpoint is saved): one error line
    naming `written` (under the output), the first checkpoint kept; the same command then finishes. The output."""
    data = conversations(tmp_path / "data", ["red", "green", "blue", "yellow"])
    calls, real = [], getattr(owner, name)

    def second_fills(*args, **kwargs):
        calls.append(args)
        return (fill if len(calls) == 2 else real)(*args, **kwargs)

    monkeypatch.setattr(owner, name, second_fills)
    out = tmp_path / "run"
    failed_after_work(qbench_cli(*TRAIN, *data, "--output", out), "no space left on the device while writing",
                      f"{out / written}")
    assert loop.sealed_step(out / "resume") == 1
    monkeypatch.setattr(owner, name, real)
    again = qbench_cli(*TRAIN, *data, "--output", out)
    assert again.exit_code == 0, again.output
    return out


@pytest.mark.parametrize("raised,free,named", [
    (OSError(28, "No space left on device"), 10 ** 9, True),  # a buffered write's error names no file
    (RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 576 vs 534"), 0, True),  # torch.save
    (RuntimeError("unexpected pos 576 vs 534"), 10 ** 9, False),  # not the disk: kept as it was
    (OSError(5, "Input/output error"), 0, False),
])
def test_case9_a_full_disk_is_named_whichever_library_was_writing(tmp_path, monkeypatch, raised, free, named):
    import errno
    import shutil as shutil_module

    from qbench import folder

    monkeypatch.setattr(folder.shutil, "disk_usage",
                        lambda path: shutil_module._ntuple_diskusage(10 ** 10, 10 ** 10 - free, free))
    with pytest.raises(type(raised) if not named else OSError) as caught:
        with folder.naming_full_disk(tmp_path / "trainer.pt"):
            raise raised
    if named:
        assert caught.value.errno == errno.ENOSPC and caught.value.filename == str(tmp_path / "trainer.pt")
    else:
        assert caught.value is raised
