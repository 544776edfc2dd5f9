"""`qbench models` and the full presets' sizes, counted on the meta device (nothing allocated)."""

import json

import pytest
from typer.testing import CliRunner

from qbench.backbones import BACKBONES
from qbench.cli import app
from qbench.presets import ALIASES, get_preset, preset_names
from qbench.registry import UnknownName
from qbench.vlm import build_vlm


@pytest.fixture(scope="module")
def listed() -> dict[str, dict]:
    result = CliRunner().invoke(app, ["models", "--json"])
    assert result.exit_code == 0, result.output
    return {row["name"]: row for row in json.loads(result.output)}


def test_models_lists_every_preset_with_its_counts(listed):
    assert list(listed) == preset_names()
    for row in listed.values():
        assert row["total_params"] >= row["vision_params"] + row["projector_params"] + row["llm_params"] - 1
        assert row["visual_tokens"] > 0


def test_cobra_matches_the_published_architecture(listed):
    cobra = listed["cobra-3b"]
    assert cobra["llm_params"] == 2_768_345_600  # Mamba-2.8B-Zephyr, tied embeddings
    assert cobra["projector_params"] == 47_789_568  # fused GELU MLP 2176 -> 8704 -> 2560 -> 2560
    assert cobra["visual_tokens"] == 729


def test_llava_matches_the_published_architecture(listed):
    llava = listed["llava-1.5-7b"]
    assert llava["projector_params"] == 20_979_712
    assert llava["visual_tokens"] == 576
    assert round(llava["total_params"] / 1e9, 2) == 7.06


def test_the_other_systems_have_their_published_token_counts(listed):
    assert listed["cobra-ldp-3b"]["visual_tokens"] == 196
    assert listed["ml-mamba-2.7b"]["visual_tokens"] == 729
    assert round(listed["ml-mamba-2.7b"]["projector_params"] / 1e6) == 184  # "about 184M"
    assert listed["q-mamba-3b"]["visual_tokens"] == 256


def test_the_hybrids_have_their_published_sizes(listed):
    """Cobra's tower and projector on each hybrid LLM at its published configuration (presets.py names sources)."""
    published = {"cobra-zamba2-2.7b": 2_662_214_560,  # Zamba2-2.7B: each shared attention block counted once
                 "cobra-falcon-h1-3b": 3_149_387_264,  # a published 3,149.4 M
                 "cobra-nemotron-h-4b": 4_489_223_040}  # NVIDIA: 4.49 B
    for name, params in published.items():
        assert listed[name]["llm_params"] == params
        assert listed[name]["visual_tokens"] == 729
        assert listed[name]["vision_params"] == listed["cobra-3b"]["vision_params"]


def test_every_backbone_has_a_full_preset_and_its_tiny_twin():
    full = {get_preset(name).backbone.kind for name in preset_names() if not name.startswith("tiny-")}
    tiny = {get_preset(name).backbone.kind for name in preset_names() if name.startswith("tiny-")}
    assert full == tiny == set(BACKBONES.names())


def test_models_table_prints():
    result = CliRunner().invoke(app, ["models"])
    assert result.exit_code == 0 and "cobra-3b" in result.output


def test_aliases_and_unknown_names():
    for alias, name in ALIASES.items():
        assert get_preset(alias).name == name
    with pytest.raises(UnknownName, match="tiny-cobra"):
        get_preset("cobra-9b")


def test_full_presets_build_on_meta_without_memory():
    vlm = build_vlm(get_preset("llava"), device="meta")
    assert all(p.is_meta for p in vlm.parameters())
