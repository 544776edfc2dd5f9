"""The hostile audit of issue 25, case by case (each test names its case): every one ends in a correct result or
one `error:` line naming the file or option, exit status 2, nothing lost, nothing written outside its folder."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

import qbench
from qbench.checkpoints import CheckpointMismatch, load_vlm, save_native
from qbench.cli import app
from qbench.suites import runner


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
    assert list(tmp_path.iterdir()) == [tmp_path / ".lock"]


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
    request = {"model": "tiny[x]", "suite": "mini", "limit": 1}
    folder, lock = runner.claim_folder(tmp_path / "runs", request, {"checkpoint": None, "data": {}})
    lock.release()
    assert runner.unfinished(tmp_path / "runs", request) == folder  # found again: its answers are not orphaned
    done = qbench_cli("data", "mini", "--out", tmp_path / "d[x]", "--eval", "1", "--train", "1")
    assert done.exit_code == 0 and f"wrote {tmp_path / 'd[x]' / 'mini'}" in " ".join(done.output.split())
    assert named.is_dir()
