"""`qbench ablate`: the grid of combinations, and the command end to end on one tiny combination."""

import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from qbench.ablate import answer_score, combinations
from qbench.backbones import BACKBONES as BACKBONE_CLASSES
from qbench.cli import app


def test_every_projector_backbone_pair_and_the_query_sweep():
    combos = combinations(["mlp", "ldp", "msc", "qmamba"], ["mamba", "mamba2", "llama"])
    assert len(combos) == 12 + 3  # Q-Mamba's query sweep (4, 9, 64 besides its own 16) on Mamba
    first = next(iter(combos.values()))
    assert all(spec.vision == first.vision for spec in combos.values())  # only projector x backbone vary
    assert combos["tiny-qmamba-mamba-q64"].projector.options["queries"] == 64
    assert combos["tiny-mlp-llama"].prompt == "llava" and combos["tiny-mlp-mamba2"].prompt == "zephyr"


# Llama, and every hybrid backbone (trained, timed and evaluated as the others)
END_TO_END = ["llama", *(kind for kind in BACKBONE_CLASSES.names() if BACKBONE_CLASSES[kind].state_kind() == "hybrid")]


@pytest.mark.parametrize("backbone", END_TO_END)
def test_ablate_writes_a_table_per_task_with_chance_and_speed(backbone, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(app, ["ablate", "--projectors", "mlp", "--backbones", backbone, "--name", "t",
                                      "--steps", "3", "--batch-size", "4", "--train-questions", "8", "--limit", "3",
                                      "--device", "cpu"])
    assert result.exit_code == 0, result.output
    combo = f"tiny-mlp-{backbone}"
    table = (tmp_path / "results/ablation/t/mini_vqav2.md").read_text()
    assert "chance level" in table and combo in table and "decode_tokens_per_s" in table
    meta = json.loads((tmp_path / "results/ablation/t/ablation.json").read_text())
    assert meta["schema"] == "qbench.ablation/1" and meta["budget"]["steps"] == 3
    assert list(meta["combos"]) == [combo]
    assert {row["task"] for row in meta["rows"]} >= {"mini_vqav2", "mini_pope_adv"}
    assert all(0 <= row["value"] <= 1 and row["chance"] is not None for row in meta["rows"])
    run = next((tmp_path / f"data/ablation/t/{combo}/seed0/runs").glob("*/samples.jsonl"))
    for sample in map(json.loads, run.read_text().splitlines()):  # chance levels score answers as lmms-eval does
        if sample["answer"].isalnum():
            assert answer_score(sample["answer"].lower(), sample["target"]) == pytest.approx(sample["score"])


def test_unknown_names_fail_clearly():
    result = CliRunner().invoke(app, ["ablate", "--projectors", "nope", "--backbones", "llama"])
    assert result.exit_code == 2 and "unknown projector 'nope'" in result.output


def test_seeds_give_mean_spread_interval_and_the_differences_that_survive(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(app, ["ablate", "--projectors", "mlp,qmamba", "--backbones", "llama", "--name", "s",
                                      "--seeds", "0,1", "--steps", "2", "--batch-size", "4", "--train-questions", "8",
                                      "--limit", "4", "--device", "cpu", "--phases", "train,eval"])
    assert result.exit_code == 0, result.output
    meta = json.loads((tmp_path / "results/ablation/s/ablation.json").read_text())
    assert meta["seeds"] == [0, 1]
    for row in meta["rows"]:
        assert row["seeds"] == 2 and row["value"] == pytest.approx(sum(row["seed_values"]) / 2)
        assert row["spread"] == pytest.approx(abs(row["seed_values"][0] - row["seed_values"][1]) / 2 ** 0.5)
        assert row["ci_lo"] <= row["value"] <= row["ci_hi"]
    # one pair (mlp vs qmamba on llama) per task, compared as qbench compare does, with each seed's difference
    assert {(d["a"], d["b"], d["factor"]) for d in meta["differences"]} == {
        ("tiny-mlp-llama", "tiny-qmamba-llama", "projector")}
    assert len(meta["differences"]) == len({row["task"] for row in meta["rows"]})
    for found in meta["differences"]:
        assert len(found["seed_differences"]) == 2 and found["n"] == 4
        same_sign = all(d > 0 for d in found["seed_differences"]) or all(d < 0 for d in found["seed_differences"])
        assert found["survives"] == (same_sign and (found["ci_lo"] > 0 or found["ci_hi"] < 0))
    assert "mean over 2 seed(s)" in (tmp_path / "results/ablation/s/mini_gqa.md").read_text()
    assert "(exact_match, %;" in (tmp_path / "results/ablation/s/mini_gqa.md").read_text()
    assert (tmp_path / "data/ablation/s/tiny-mlp-llama/seed1/eval.json").is_file()


@pytest.mark.parametrize("seeds", ["", "0,x", "1,1"])
def test_bad_seeds_fail_clearly(seeds):
    result = CliRunner().invoke(app, ["ablate", "--projectors", "mlp", "--backbones", "llama", "--seeds", seeds])
    assert result.exit_code == 2 and "seeds" in result.output


def test_the_readmes_first_ablation_does_not_overwrite_the_shipped_one(tmp_path, monkeypatch):
    """`qbench ablate --projectors mlp --backbones llama --steps 5 --limit 10` used to replace the shipped 45-training
    ablation in results/ablation/tiny/ (--name defaults to tiny): it is refused before any work, saying why."""
    shipped = Path(__file__).parents[1] / "results" / "ablation" / "tiny"
    copy = tmp_path / "results" / "ablation" / "tiny"
    shutil.copytree(shipped, copy)
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(app, ["ablate", "--projectors", "mlp", "--backbones", "llama", "--steps", "5",
                                      "--limit", "10", "--device", "cpu"])
    assert result.exit_code == 2
    said = " ".join(result.output.split())
    assert said.startswith("error: results/ablation/tiny holds the results of ablation 'tiny' of another "
                           "configuration (steps 500 vs 5; batch_size 64 vs 32;")
    assert "seeds 0,1,2 vs 0" in said and "15 combinations vs 1 (tiny-mlp-llama)" in said
    assert "give another --name to write this ablation elsewhere" in said
    assert not (tmp_path / "data").exists()
    assert all((copy / p.name).read_bytes() == p.read_bytes() for p in shipped.iterdir())


def test_tables_are_not_written_for_checkpoints_trained_otherwise(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    args = ["ablate", "--projectors", "mlp", "--backbones", "llama", "--name", "t", "--batch-size", "4",
            "--train-questions", "8", "--device", "cpu", "--recipe", "cobra"]
    assert CliRunner().invoke(app, [*args, "--steps", "2", "--phases", "train"]).exit_code == 0
    result = CliRunner().invoke(app, [*args, "--steps", "3", "--phases", "eval", "--limit", "2"])
    assert result.exit_code == 2
    assert "data/ablation/t/tiny-mlp-llama/seed0 was trained with another budget than this ablation asks" in \
        " ".join(result.output.split())
    assert not (tmp_path / "results").exists()
