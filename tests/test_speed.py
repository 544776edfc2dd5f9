"""`qbench speed` as a user runs it on a CPU: tiny presets, small token counts, eager engine."""

import json
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from qbench.backbones import BACKBONES
from qbench.cli import app
from qbench.speed import ROW_FIELDS, SCHEMA

runner = CliRunner()
TIMES = ["vision_ms", "projector_ms", "prefill_ms", "ttft_ms", "decode_tokens_per_s", "e2e_tokens_per_s",
         "weights_gib", "state_gib", "bytes_per_token", "roofline_tokens_per_s", "roofline_share"]
COMMON = ["--new-tokens", "3", "--repeats", "1", "--dtype", "fp32", "--device", "cpu", "--engine", "eager"]


def speed(tmp_path, *args: str):
    result = runner.invoke(app, ["speed", *args, *COMMON, "--output", str(tmp_path)])
    document = json.loads((tmp_path / "speed.json").read_text()) if (tmp_path / "speed.json").exists() else None
    return result, document


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    out = tmp_path_factory.mktemp("speed")
    return speed(out, "--model", "tiny-cobra,tiny-llava,tiny-q-mamba", "--tokens", "16,36", "--batch", "1,2") + (out,)


def test_one_row_per_point_in_the_schema(sweep):
    result, document, out = sweep
    assert result.exit_code == 0, result.output
    assert document["schema"] == SCHEMA
    assert document["commands"][0].startswith("qbench speed --model tiny-cobra")
    assert document["environment"]["torch"] and document["environment"]["device"] == "cpu"
    assert document["copy_bandwidth_gbs"] > 0
    rows = document["rows"]
    assert [list(row) for row in rows] == [ROW_FIELDS] * len(rows)
    points = {(r["model"], r["visual_tokens"], r["batch"], r["engine"]) for r in rows}
    assert len(rows) == len(points) == 3 * 2 * 2
    assert {r["visual_tokens"] for r in rows} == {16, 36}  # by resolution, and by queries for Q-Mamba
    assert pd.read_csv(out / "speed.csv").shape == (len(rows), len(ROW_FIELDS))


def test_every_measure_is_positive(sweep):
    _, document, _ = sweep
    for row in document["rows"]:
        assert row["status"] == "ok", row["error"]
        for field in TIMES:
            assert row[field] > 0, (row["model"], field)
        assert row["ttft_ms"] >= row["vision_ms"] + row["projector_ms"] + row["prefill_ms"]
        assert row["kernel_path"].startswith("pytorch")
        assert row["peak_mem_gib"] is None  # CPU: no device allocator to ask


def test_the_kv_cache_grows_with_the_prompt_and_the_mamba_state_does_not(sweep):
    _, document, _ = sweep
    state = {(r["model"], r["visual_tokens"]): r["state_gib"] for r in document["rows"] if r["batch"] == 1}
    assert state["tiny-llava", 36] > state["tiny-llava", 16]
    assert state["tiny-cobra", 36] == state["tiny-cobra", 16]


def test_an_out_of_memory_point_is_a_row_and_the_sweep_goes_on(tmp_path):
    result, document = speed(tmp_path, "--model", "tiny-cobra", "--batch", str(10**13) + ",1")
    assert result.exit_code == 0, result.output
    oom, ok = document["rows"]
    assert oom["status"] == "oom" and "memory" in oom["error"] and oom["decode_tokens_per_s"] is None
    assert ok["status"] == "ok" and ok["decode_tokens_per_s"] > 0


def test_a_second_sweep_into_the_same_folder_keeps_what_was_measured(tmp_path):
    _, first = speed(tmp_path, "--model", "tiny-cobra", "--tokens", "16")
    result, second = speed(tmp_path, "--model", "tiny-cobra", "--tokens", "16", "--batch", "1,2")
    assert result.exit_code == 0, result.output
    assert second["rows"][0] == first["rows"][0]  # kept, not measured again
    assert [row["batch"] for row in second["rows"]] == [1, 2]
    assert len(second["commands"]) == 2 and "--batch-size 1,2" in second["commands"][1]


def test_a_point_asked_with_other_repeats_is_measured_again_and_its_row_replaced(tmp_path):
    speed(tmp_path, "--model", "tiny-cobra", "--tokens", "16,36")
    again = runner.invoke(app, ["speed", "--model", "tiny-cobra", "--tokens", "16", *COMMON, "--repeats", "2",
                                "--output", str(tmp_path)])
    assert again.exit_code == 0, again.output
    document = json.loads((tmp_path / "speed.json").read_text())
    assert [(row["visual_tokens"], row["repeats"]) for row in document["rows"]] == [(16, 2), (36, 1)]
    assert len(document["commands"]) == 2 and "--repeats 2" in document["commands"][1]


def test_trained_weights_are_timed_beside_random_ones_and_their_rows_name_the_checkpoint(tmp_path):
    trained = str(Path(__file__).parents[1] / "weights" / "tiny" / "tiny-llava")  # shipped in the repository
    speed(tmp_path, "--model", "tiny-llava")
    result, document = speed(tmp_path, "--model", "tiny-llava", "--checkpoint", trained)
    assert result.exit_code == 0, result.output
    assert [row["checkpoint"] for row in document["rows"]] == [None, trained]  # measured, not taken for the first


def test_a_sweep_refuses_to_join_results_from_another_machine(tmp_path):
    speed(tmp_path, "--model", "tiny-cobra", "--tokens", "16")
    document = json.loads((tmp_path / "speed.json").read_text())
    document["environment"]["torch"] = "1.0"
    (tmp_path / "speed.json").write_text(json.dumps(document))
    result, _ = speed(tmp_path, "--model", "tiny-cobra", "--tokens", "16", "--batch", "2")
    assert result.exit_code == 2
    assert "was measured with another torch" in " ".join(result.output.split())


@pytest.mark.parametrize("args, message", [
    (["--engine", "graph"], "need --device cuda"),
    (["--model", "gpt-5"], "unknown model 'gpt-5'"),
    (["--engine", "beam"], "unknown engine 'beam'"),
    (["--engine", "eager", "--tokens", "50"], "not a square grid"),
])
def test_bad_requests_are_refused_before_anything_runs(tmp_path, args, message):
    base = ["speed", "--model", "tiny-cobra", "--device", "cpu", "--output", str(tmp_path)]
    result = runner.invoke(app, base + args)
    assert result.exit_code == 2
    assert message in " ".join(result.output.split())
    assert not (tmp_path / "speed.json").exists()


def test_on_the_cpu_without_engine_the_sweep_takes_the_engines_that_run_there(tmp_path):
    result = runner.invoke(app, ["speed", "--model", "tiny-cobra", "--tokens", "16", "--new-tokens", "2", "--repeats",
                                 "1", "--dtype", "fp32", "--device", "cpu", "--output", str(tmp_path)])
    assert result.exit_code == 0, result.output
    rows = json.loads((tmp_path / "speed.json").read_text())["rows"]
    assert [(row["engine"], row["status"]) for row in rows] == [("eager", "ok")]


def test_several_images_per_prompt_multiply_the_visual_tokens(tmp_path):
    result, document = speed(tmp_path, "--model", "tiny-cobra,tiny-llava", "--tokens", "16", "--images", "1,4")
    assert result.exit_code == 0, result.output
    rows = {(r["model"], r["images"]): r for r in document["rows"]}
    assert {key: row["visual_tokens"] for key, row in rows.items()} == {
        ("tiny-cobra", 1): 16, ("tiny-cobra", 4): 64, ("tiny-llava", 1): 16, ("tiny-llava", 4): 64}
    assert all(row["status"] == "ok" for row in rows.values())
    assert rows["tiny-llava", 4]["state_gib"] > rows["tiny-llava", 1]["state_gib"]  # the KV cache grows
    assert rows["tiny-cobra", 4]["state_gib"] == rows["tiny-cobra", 1]["state_gib"]  # the Mamba state does not
    assert "--images 1,4" in document["commands"][0]


@pytest.fixture
def memory_for(monkeypatch):
    """A device with room for `slots` state positions (batch x length): a batch state beyond it runs out of memory."""
    import torch

    from qbench.speed import point

    def cap(slots: int) -> None:
        real = point.batch_state

        def batch_state(vlm, decoder):
            if decoder.batch * decoder.max_len > slots:
                raise torch.OutOfMemoryError(f"CUDA out of memory (simulated: room for {slots} positions)")
            return real(vlm, decoder)

        monkeypatch.setattr(point, "batch_state", batch_state)

    return cap


def test_the_largest_batch_is_searched_each_out_of_memory_try_recorded(tmp_path, memory_for):
    # tiny-llava at 16 visual tokens: 16 + 16 text + 3 new = 35 positions a sequence; room for 5 sequences
    memory_for(5 * 35 + 10)
    result, document = speed(tmp_path, "--model", "tiny-llava", "--tokens", "16", "--batch", "1,max")
    assert result.exit_code == 0, result.output
    one, largest = document["rows"]
    assert (one["batch"], one["batch_search"], one["largest_batch"], one["status"]) == (1, None, None, "ok")
    assert (largest["batch"], largest["batch_search"], largest["largest_batch"], largest["status"]) == (
        5, "largest", 5, "ok")
    assert largest["decode_tokens_per_s"] > 0  # a rate, not a race: timings on a shared CPU prove nothing
    search, = document["searches"]
    assert [(t["batch"], t["status"]) for t in search["tries"]] == [
        (1, "ok"), (2, "ok"), (4, "ok"), (8, "oom"), (6, "oom"), (5, "ok")]
    assert "simulated" in search["tries"][3]["error"]
    assert (search["largest"], search["at_limit"], search["prefilled"], search["visual_tokens"]) == (5, False, 5, 16)
    # the same command again keeps the searched row and does not search again
    result, again = speed(tmp_path, "--model", "tiny-llava", "--tokens", "16", "--batch", "1,max")
    assert result.exit_code == 0 and again["rows"] == document["rows"] and len(again["searches"]) == 1


def test_a_search_stops_at_its_limit_and_copies_states_beyond_the_tokens_to_prefill(tmp_path, monkeypatch):
    from qbench.speed import point

    monkeypatch.setattr(point, "PREFILL_TOKENS", 64)  # 32-token prompts: prefilled two at a time
    result, document = speed(tmp_path, "--model", "tiny-cobra", "--tokens", "16", "--batch", "max",
                             "--batch-limit", "5", "--measure-tokens", "100")  # 5 x 32 tokens > 100: copies
    assert result.exit_code == 0, result.output
    row, = document["rows"]
    assert (row["batch"], row["batch_search"], row["largest_batch"], row["status"]) == (
        5, "limit, states copied", 5, "ok")
    assert row["decode_tokens_per_s"] > 0 and row["ttft_ms"] is None and row["e2e_tokens_per_s"] is None
    search, = document["searches"]
    assert [t["batch"] for t in search["tries"]] == [1, 2, 4, 5] and search["at_limit"] and search["prefilled"] == 2


@pytest.mark.parametrize("kind", BACKBONES.names())
def test_rows_copied_from_a_prefilled_prompt_decode_like_it(kind):
    import torch

    from qbench.backbones import build_backbone
    from qbench.backbones.state import copy_state, repeat_rows

    torch.manual_seed(0)
    backbone = build_backbone(BACKBONES[kind].tiny).eval()
    ids = torch.randint(3, 1000, (1, 6))
    with torch.inference_mode():
        alone = backbone.new_state(1, 12)
        token = backbone.prefill(backbone.embed(ids), torch.ones_like(ids), alone).argmax(-1)
        batch = backbone.new_state(5, 12)
        backbone.prefill(backbone.embed(ids[:, :1].expand(5, 1)), torch.ones(5, 1, dtype=torch.long), batch)
        copy_state(backbone, alone, batch, 0)
        repeat_rows(backbone, batch, 1)
        for _ in range(3):
            expected = backbone.step(token, alone)
            torch.testing.assert_close(backbone.step(token.expand(5), batch), expected.expand(5, -1))
            token = expected.argmax(-1)


def test_a_context_that_does_not_fit_is_an_oom_row_and_the_sweep_goes_on(tmp_path, memory_for):
    memory_for(200)  # tiny-llava's 16-token images: one fits (35 positions), 16 do not (275)
    result, document = speed(tmp_path, "--model", "tiny-llava", "--tokens", "16", "--images", "16,1",
                             "--batch", "1,max")
    assert result.exit_code == 0, result.output
    rows = [(r["images"], r["batch"], r["largest_batch"], r["status"]) for r in document["rows"]]
    assert rows == [(16, 1, None, "oom"), (16, 1, 0, "oom"), (1, 1, None, "ok"), (1, 5, 5, "ok")]
    assert document["searches"][0]["largest"] == 0 and document["searches"][0]["tries"][0]["status"] == "oom"


def test_a_largest_batch_whose_whole_pass_runs_out_of_memory_is_measured_at_the_next_batch_that_fit(
        tmp_path, memory_for, monkeypatch):
    import torch

    from qbench.speed import point

    memory_for(5 * 35 + 10)  # the search finds 5
    real = point.timed_pass

    def timed_pass(vlm, decoder, measured, new_tokens, groups=None):
        if groups is None and decoder.batch == 5:  # the warm-up fits, the whole pass does not
            raise torch.OutOfMemoryError("CUDA out of memory (simulated: the whole pass)")
        return real(vlm, decoder, measured, new_tokens, groups)

    monkeypatch.setattr(point, "timed_pass", timed_pass)
    result, document = speed(tmp_path, "--model", "tiny-llava", "--tokens", "16", "--batch", "max")
    assert result.exit_code == 0, result.output
    row, = document["rows"]
    assert (row["batch"], row["largest_batch"], row["batch_search"], row["status"]) == (4, 5, "largest", "ok")
    assert document["searches"][0]["measured_at"] == 4


def test_hybrids_are_swept_over_images_and_to_their_largest_batch(tmp_path):
    """Every hybrid's tiny twin: its state holds a fixed Mamba part and a KV part that grows with the prompt."""
    from qbench.presets import get_preset, preset_names

    hybrids = [name for name in preset_names() if name.startswith("tiny-")
               and BACKBONES[get_preset(name).backbone.kind].state_kind() == "hybrid"]
    result, document = speed(tmp_path, "--model", ",".join(hybrids), "--tokens", "16", "--images", "1,2",
                             "--batch", "max", "--batch-limit", "2")
    assert result.exit_code == 0, result.output
    rows = {(r["model"], r["images"]): r for r in document["rows"]}
    assert len(rows) == 2 * len(hybrids) and all(row["status"] == "ok" for row in rows.values())
    for name in hybrids:
        one, two = rows[name, 1], rows[name, 2]
        assert one["largest_batch"] == two["largest_batch"] == two["batch"] == 2 and two["decode_tokens_per_s"] > 0
        assert two["state_gib"] > one["state_gib"] > 0  # the KV part grows with the prompt
