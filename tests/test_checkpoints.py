"""Published checkpoints load into qbench with the weights they hold.

For each system, a tiny preset with random weights is written in its published format and key layout (Cobra:
config.json + prismatic .pt; ML-Mamba: the four-group .pt; LLaVA: llava-hf sharded safetensors), the vision towers
of Cobra and ML-Mamba into a $QBENCH_HUB_DIR mirror under their hub ids; then `qbench.load_model` must give the
same logits as the model whose weights were written.
"""

import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw
from safetensors import safe_open
from safetensors.torch import save_file
from transformers import (
    CLIPVisionConfig,
    LlamaConfig,
    LlavaConfig,
    LlavaForConditionalGeneration,
    Mamba2Config,
)
from transformers.models.mamba2.modeling_mamba2 import Mamba2Mixer

import qbench
from qbench.checkpoints import CheckpointMismatch, WeightsNotFound, save_native
from qbench.checkpoints.base import check_fit, shared_keys
from qbench.checkpoints.cobra import RULES as COBRA_RULES
from qbench.checkpoints.convert import rename
from qbench.checkpoints.llava_hf import RULES as LLAVA_RULES
from qbench.checkpoints.mlmamba import RULES as MLMAMBA_RULES
from qbench.checkpoints.prismatic import flatten
from qbench.presets import get_preset, preset_names
from qbench.vlm import VLM, build_vlm

COBRA_CONFIG = {  # the "model" section of han1997/cobra's cobra+3b/config.json
    "type": "cobra+3b", "model_id": "cobra+3b", "arch_specifier": "no-align+fused-gelu-mlp",
    "vision_backbone_id": "dinosiglip-vit-so-384px", "llm_backbone_id": "mamba-2.8b-zephyr",
    "image_resize_strategy": "resize-naive", "llm_max_length": 2048,
}
QUESTION = "What color is the circle?"


def scene() -> Image.Image:
    image = Image.new("RGB", (150, 110), "white")
    draw = ImageDraw.Draw(image)
    draw.ellipse((20, 20, 80, 80), fill="red")
    draw.rectangle((90, 30, 140, 100), fill="blue")
    return image


def random_model(preset: str) -> VLM:
    """A tiny preset whose every weight is random (no zero biases or unit norms that a wrong mapping could hide in)."""
    vlm = qbench.load_model(preset)
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for parameter in vlm.parameters():
            parameter.add_(0.05 * torch.randn(parameter.shape, generator=generator, dtype=parameter.dtype))
    return vlm


@torch.no_grad()
def logits(vlm) -> torch.Tensor:
    embeds, mask, _ = vlm.build_inputs(vlm.encode_images(vlm.preprocess([scene()])), [QUESTION])
    return vlm.backbone.logits(embeds, mask)


def save_towers(vlm, hub: Path) -> None:
    """Each vision encoder as transformers saves it, under the hub id the preset loads it from."""
    for name, encoder in vlm.vision.encoders.items():
        encoder.model.save_pretrained(hub / vlm.spec.vision.weights[name])


def qbench_state(vlm, prefix: str) -> dict[str, torch.Tensor]:
    return {k[len(prefix):]: v.clone() for k, v in vlm.state_dict().items() if k.startswith(prefix)}


def mamba_ssm_keys(state: dict[str, torch.Tensor], prefix: str = "") -> dict[str, torch.Tensor]:
    """transformers' Mamba(2)ForCausalLM keys as mamba_ssm's MambaLMHeadModel names them."""
    return {prefix + k.replace("backbone.embeddings.", "backbone.embedding."): v for k, v in state.items()}


# --- Cobra ----------------------------------------------------------------------------------------------------------
def cobra_groups(vlm) -> dict[str, dict[str, torch.Tensor]]:
    projector = {"projector." + k: v for k, v in qbench_state(vlm, "projector.mlp.").items()}
    return {"projector": projector, "llm_backbone": mamba_ssm_keys(qbench_state(vlm, "backbone.model."), "llm.")}


def write_cobra(repo: Path, groups, config=COBRA_CONFIG) -> Path:
    """han1997/cobra's layout: cobra+3b/config.json and cobra+3b/checkpoints/latest-checkpoint.pt."""
    run = repo / "cobra+3b"
    (run / "checkpoints").mkdir(parents=True, exist_ok=True)
    (run / "config.json").write_text(json.dumps({"model": config, "dataset": {"type": "llava-lvis4v-lrv"}}))
    torch.save({"model": groups}, run / "checkpoints" / "latest-checkpoint.pt")
    return repo


@pytest.fixture(scope="module")
def cobra(tmp_path_factory):
    vlm, hub = random_model("tiny-cobra"), tmp_path_factory.mktemp("hub")
    groups = cobra_groups(vlm)
    assert {"llm.backbone.embedding.weight", "llm.backbone.layers.1.mixer.x_proj.weight", "llm.lm_head.weight",
            "llm.backbone.norm_f.weight"} <= set(groups["llm_backbone"])
    assert sorted(groups["projector"]) == [f"projector.{i}.{p}" for i in (0, 2, 4) for p in ("bias", "weight")]
    write_cobra(hub / "han1997/cobra", groups)
    save_towers(vlm, hub)
    return vlm, hub


@pytest.mark.parametrize("checkpoint", ["cobra:han1997/cobra", "{hub}/han1997/cobra",
                                        "{hub}/han1997/cobra/cobra+3b/checkpoints/latest-checkpoint.pt"])
def test_cobra_checkpoint_gives_the_same_logits(cobra, monkeypatch, checkpoint):
    """By hub id through a local mirror, as a local copy of the repo (its format recognised), or as the .pt."""
    original, hub = cobra
    monkeypatch.setenv("QBENCH_HUB_DIR", str(hub))
    loaded = qbench.load_model("tiny-cobra", checkpoint=checkpoint.format(hub=hub))
    assert torch.equal(logits(loaded), logits(original))
    assert loaded.answer(scene(), QUESTION, 4) == original.answer(scene(), QUESTION, 4)


def test_cobra_variant_with_other_parts_is_refused(cobra, tmp_path, monkeypatch):
    original, hub = cobra
    monkeypatch.setenv("QBENCH_HUB_DIR", str(hub))
    repo = write_cobra(tmp_path / "cobra-ldpnet", cobra_groups(original),
                       {**COBRA_CONFIG, "model_id": "cobra-ldpnet+3b", "arch_specifier": "no-align+fused-ldpnet"})
    with pytest.raises(CheckpointMismatch, match="arch_specifier 'no-align\\+fused-ldpnet'"):
        qbench.load_model("tiny-cobra", checkpoint=str(repo))


# --- ML-Mamba -------------------------------------------------------------------------------------------------------
def mlmamba_groups(vlm) -> dict[str, dict[str, torch.Tensor]]:
    """The released MLMambaVLM's groups; bidirectional_mamba as its mamba_ssm fork's Bidirectional_Mamba names it."""
    bidirectional = {}
    for key, value in qbench_state(vlm, "projector.").items():
        if key.startswith("blocks."):
            key = (key.replace("blocks.", "layers.", 1).replace(".ffn.", ".mlp.")
                   .replace("backward_scan.conv1d.", "conv1d_b.").replace("forward_scan.", ""))
            if ".backward_scan." in key:  # dt_bias, A_log, D of the backward scan
                key = key.replace("backward_scan.", "") + "_b"
            bidirectional[key] = value
        elif key.startswith("norm."):
            bidirectional[key.replace("norm.", "norm_f.")] = value
    return {
        "llm_backbone": mamba_ssm_keys(qbench_state(vlm, "backbone.model.")),
        "mlp": qbench_state(vlm, "projector.mlp."),
        "bidirectional_mamba": bidirectional,
        "projector": {"projector." + k: v for k, v in qbench_state(vlm, "projector.projector.").items()},
    }


@pytest.fixture(scope="module")
def mlmamba(tmp_path_factory):
    vlm, hub = random_model("tiny-ml-mamba"), tmp_path_factory.mktemp("hub")
    groups = mlmamba_groups(vlm)
    assert {"layers.0.mixer.conv1d_b.weight", "layers.1.mixer.dt_bias_b", "layers.0.mixer.A_log", "layers.1.mlp.w3.bias",
            "layers.0.norm.bias", "norm_f.weight"} <= set(groups["bidirectional_mamba"])
    assert {"backbone.embedding.weight", "backbone.layers.0.mixer.dt_bias", "lm_head.weight"} <= set(groups["llm_backbone"])
    (hub / "huangwenjun1994/ML-Mamba").mkdir(parents=True)
    torch.save({"model": groups}, hub / "huangwenjun1994/ML-Mamba/latest-checkpoint.pt")
    save_towers(vlm, hub)
    return vlm, hub, groups


@pytest.mark.parametrize("checkpoint", ["mlmamba:huangwenjun1994/ML-Mamba", "{hub}/huangwenjun1994/ML-Mamba",
                                        "{hub}/huangwenjun1994/ML-Mamba/latest-checkpoint.pt"])
def test_mlmamba_checkpoint_gives_the_same_logits(mlmamba, monkeypatch, checkpoint):
    original, hub, _ = mlmamba
    monkeypatch.setenv("QBENCH_HUB_DIR", str(hub))
    loaded = qbench.load_model("tiny-ml-mamba", checkpoint=checkpoint.format(hub=hub))
    assert torch.equal(logits(loaded), logits(original))


def released_connector(groups, features: torch.Tensor) -> torch.Tensor:
    """ML-Mamba's connector as the released code computes it from the checkpoint's groups: mlp, then each
    bimamba "v2" block (h + mixer(h); h + SwiGLU(LayerNorm(h))), norm_f, projector. The bidirectional mixer is
    two transformers Mamba2Mixers sharing in_proj, norm and out_proj: (forward(h) + flip(backward(flip(h)))) / 2."""
    mlp, bi, projector = groups["mlp"], groups["bidirectional_mamba"], groups["projector"]
    width, heads = mlp["0.weight"].shape[0], bi["layers.0.mixer.D"].shape[0]
    state = (bi["layers.0.mixer.in_proj.weight"].shape[0] - 4 * width - heads) // 2  # in_proj: z, x, B, C, dt
    config = Mamba2Config(hidden_size=width, state_size=state, head_dim=2 * width // heads, num_heads=heads, expand=2,
                          n_groups=1, conv_kernel=4, chunk_size=256, layer_norm_epsilon=1e-5)

    def mixer(layer: int, suffix: str) -> Mamba2Mixer:
        module = Mamba2Mixer(config, layer_idx=0)
        own = {name: bi[f"layers.{layer}.mixer.{name}"] for name in ("in_proj.weight", "norm.weight", "out_proj.weight")}
        own |= {"conv1d.weight": bi[f"layers.{layer}.mixer.conv1d{suffix}.weight"],
                "conv1d.bias": bi[f"layers.{layer}.mixer.conv1d{suffix}.bias"]}
        own |= {name: bi[f"layers.{layer}.mixer.{name}{suffix}"] for name in ("dt_bias", "A_log", "D")}
        module.load_state_dict(own)
        return module.eval()

    hidden = F.gelu(F.linear(features, mlp["0.weight"], mlp["0.bias"]))
    for layer in range(2):
        forward, backward = mixer(layer, ""), mixer(layer, "_b")
        hidden = hidden + (forward(hidden) + backward(hidden.flip(1)).flip(1)) / 2
        normed = F.layer_norm(hidden, (width,), bi[f"layers.{layer}.norm.weight"], bi[f"layers.{layer}.norm.bias"])
        w = {n: (bi[f"layers.{layer}.mlp.{n}.weight"], bi[f"layers.{layer}.mlp.{n}.bias"]) for n in ("w1", "w2", "w3")}
        hidden = hidden + F.linear(F.silu(F.linear(normed, *w["w1"])) * F.linear(normed, *w["w2"]), *w["w3"])
    hidden = F.layer_norm(hidden, (width,), bi["norm_f.weight"], bi["norm_f.bias"])
    for index in (0, 2, 4):
        hidden = F.linear(hidden, projector[f"projector.{index}.weight"], projector[f"projector.{index}.bias"])
        hidden = F.gelu(hidden) if index < 4 else hidden
    return hidden


@torch.no_grad()
def test_mlmamba_connector_computes_what_the_released_code_does(mlmamba, monkeypatch):
    _, hub, groups = mlmamba
    monkeypatch.setenv("QBENCH_HUB_DIR", str(hub))
    loaded = qbench.load_model("tiny-ml-mamba", checkpoint="mlmamba:huangwenjun1994/ML-Mamba")
    features = loaded.vision(loaded.preprocess([scene()]))
    assert torch.allclose(loaded.projector(features), released_connector(groups, features), atol=1e-5)


def test_mlmamba_connector_keeps_its_published_size():
    vlm = build_vlm(get_preset("ml-mamba-2.7b"), device="meta")
    assert 183e6 < vlm.parameter_counts()["projector_params"] < 186e6


# --- LLaVA (llava-hf) -----------------------------------------------------------------------------------------------
def llava_config(vlm) -> LlavaConfig:
    """tiny-llava as a transformers LlavaConfig, as llava-hf's config.json describes LLaVA-1.5."""
    vision, backbone = vlm.vision.encoders["clip"].model.config, vlm.backbone.model.config
    return LlavaConfig(
        vision_config=CLIPVisionConfig(**{k: getattr(vision, k) for k in (
            "hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size", "image_size", "patch_size",
            "hidden_act", "layer_norm_eps")}),
        text_config=LlamaConfig(**{k: getattr(backbone, k) for k in (
            "vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads", "num_key_value_heads",
            "intermediate_size", "max_position_embeddings", "rms_norm_eps", "bos_token_id", "eos_token_id",
            "pad_token_id")}),
        image_token_index=vlm.tokenizer.convert_tokens_to_ids("<image>"), image_seq_length=vlm.visual_tokens,
        vision_feature_layer=-2, vision_feature_select_strategy="default", projector_hidden_act="gelu",
        tie_word_embeddings=False,
    )


def llava_hub_state(vlm) -> dict[str, torch.Tensor]:
    """The key layout of the llava-hf hub files (transformers 4)."""
    state = {"vision_tower.vision_model." + k: v for k, v in qbench_state(vlm, "vision.encoders.clip.model.").items()}
    for index, name in ((0, "linear_1"), (2, "linear_2")):
        state |= {f"multi_modal_projector.{name}.{k}": v for k, v in qbench_state(vlm, f"projector.mlp.{index}.").items()}
    state |= {"language_model." + k: v for k, v in qbench_state(vlm, "backbone.model.").items()}
    return state


def write_llava(directory: Path, vlm, state: dict[str, torch.Tensor], shards: int = 3) -> Path:
    """config.json, the tokenizer, and the weights in `shards` safetensors files behind model.safetensors.index.json."""
    directory.mkdir(parents=True)
    llava_config(vlm).save_pretrained(directory)
    vlm.tokenizer.save_pretrained(directory)
    keys, weight_map = sorted(state), {}
    for shard in range(shards):
        name = f"model-{shard + 1:05d}-of-{shards:05d}.safetensors"
        part = {k: state[k].contiguous() for k in keys[shard::shards]}
        save_file(part, directory / name, metadata={"format": "pt"})
        weight_map |= dict.fromkeys(part, name)
    (directory / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
    return directory


@pytest.fixture(scope="module")
def llava(tmp_path_factory):
    vlm = random_model("tiny-llava")
    return vlm, write_llava(tmp_path_factory.mktemp("hub") / "llava-hf/llava-1.5-7b-hf", vlm, llava_hub_state(vlm))


def test_llava_hf_checkpoint_gives_the_same_logits(llava, monkeypatch):
    original, repo = llava
    loaded = qbench.load_model("tiny-llava", checkpoint=str(repo))
    assert torch.equal(logits(loaded), logits(original))
    monkeypatch.setenv("QBENCH_HUB_DIR", str(repo.parents[1]))
    assert torch.equal(logits(qbench.load_model("tiny-llava", checkpoint="llava-hf:llava-hf/llava-1.5-7b-hf")),
                       logits(original))


@torch.no_grad()
def test_llava_hf_files_are_what_transformers_reads_and_it_computes_the_same(llava):
    """transformers' own LlavaForConditionalGeneration loads the written files and gives qbench's logits."""
    original, repo = llava
    reference = LlavaForConditionalGeneration.from_pretrained(repo).eval()
    before, after = original.prompt_ids(QUESTION)
    image_id = reference.config.image_token_index
    ids = torch.tensor([before + [image_id] * original.visual_tokens + after])
    expected = reference(input_ids=ids, pixel_values=original.preprocess([scene()])).logits
    assert torch.allclose(logits(original), expected, atol=1e-4)


@pytest.mark.parametrize("layout", ["transformers-5 modules", "transformers-5 save_pretrained"])
def test_llava_hf_also_reads_transformers_5_layouts(llava, tmp_path, layout):
    original, repo = llava
    reference = LlavaForConditionalGeneration.from_pretrained(repo)
    directory = tmp_path / "llava"
    if layout == "transformers-5 modules":  # model.vision_tower.*, model.language_model.*, lm_head.weight
        assert "model.vision_tower.encoder.layers.0.mlp.fc1.weight" in reference.state_dict()
        directory.mkdir()
        save_file({k: v.contiguous() for k, v in reference.state_dict().items()}, directory / "model.safetensors")
        reference.config.save_pretrained(directory)
    else:
        reference.save_pretrained(directory, max_shard_size="100KB")
    loaded = qbench.load_model("tiny-llava", checkpoint=f"llava-hf:{directory}")
    assert torch.equal(logits(loaded), logits(original))


# --- the full presets take the published checkpoints' key names and shapes ----------------------------------------
def layers(count: int, prefix: str, shapes: dict[str, tuple[int, ...]]) -> dict[str, tuple[int, ...]]:
    return {f"{prefix}{i}.{name}": shape for i in range(count) for name, shape in shapes.items()}


def mamba2_mixer(d: int = 2560, inner: int = 5120, state: int = 128, heads: int = 80, suffix: str = "") -> dict:
    conv = inner + 2 * state
    return {f"mixer.conv1d{suffix}.weight": (conv, 1, 4), f"mixer.conv1d{suffix}.bias": (conv,),
            f"mixer.dt_bias{suffix}": (heads,), f"mixer.A_log{suffix}": (heads,), f"mixer.D{suffix}": (heads,)}


def mamba2_shared(d: int = 2560, inner: int = 5120, state: int = 128, heads: int = 80) -> dict:
    return {"mixer.in_proj.weight": (2 * inner + 2 * state + heads, d), "mixer.norm.weight": (inner,),
            "mixer.out_proj.weight": (d, inner)}


def linear(name: str, out: int, into: int) -> dict:
    return {f"{name}.weight": (out, into), f"{name}.bias": (out,)}


def published_cobra() -> dict:
    """han1997/cobra's latest-checkpoint.pt: Mamba-2.8B-Zephyr (mamba_ssm) and the fused-gelu-mlp projector."""
    mixer = {"norm.weight": (2560,), "mixer.in_proj.weight": (10240, 2560), "mixer.conv1d.weight": (5120, 1, 4),
             "mixer.conv1d.bias": (5120,), "mixer.x_proj.weight": (192, 5120), "mixer.dt_proj.weight": (5120, 160),
             "mixer.dt_proj.bias": (5120,), "mixer.A_log": (5120, 16), "mixer.D": (5120,),
             "mixer.out_proj.weight": (2560, 5120)}
    llm = {"llm.backbone.embedding.weight": (50280, 2560), "llm.backbone.norm_f.weight": (2560,),
           "llm.lm_head.weight": (50280, 2560)} | layers(64, "llm.backbone.layers.", mixer)
    projector = linear("projector.0", 8704, 2176) | linear("projector.2", 2560, 8704) | linear("projector.4", 2560, 2560)
    return {"projector": projector, "llm_backbone": llm}


def published_mlmamba() -> dict:
    """huangwenjun1994/ML-Mamba's latest-checkpoint.pt: Mamba-2 2.7B, the connector's four groups."""
    llm = {"backbone.embedding.weight": (50288, 2560), "backbone.norm_f.weight": (2560,),
           "lm_head.weight": (50288, 2560)}
    llm |= layers(64, "backbone.layers.", {"norm.weight": (2560,)} | mamba2_shared() | mamba2_mixer())
    block = mamba2_shared() | mamba2_mixer() | mamba2_mixer(suffix="_b") | {"norm.weight": (2560,), "norm.bias": (2560,)}
    block |= linear("mlp.w1", 2560, 2560) | linear("mlp.w2", 2560, 2560) | linear("mlp.w3", 2560, 2560)
    bidirectional = layers(2, "layers.", block) | {"norm_f.weight": (2560,), "norm_f.bias": (2560,)}
    projector = (linear("projector.0", 10240, 2560) | linear("projector.2", 2560, 10240)
                 | linear("projector.4", 2560, 2560))
    return {"llm_backbone": llm, "mlp": linear("0", 2560, 2176), "bidirectional_mamba": bidirectional,
            "projector": projector}


def published_llava() -> dict:
    """llava-hf/llava-1.5-7b-hf's safetensors: CLIP ViT-L/14-336, mlp2x_gelu, Vicuna-7B (vocab 32064)."""
    norm = {"weight": (1024,), "bias": (1024,)}
    clip = {f"self_attn.{p}_proj.{w}": (1024, 1024) if w == "weight" else (1024,) for p in "qkv" for w in norm}
    clip |= {f"self_attn.out_proj.{w}": (1024, 1024) if w == "weight" else (1024,) for w in norm}
    clip |= {f"layer_norm{i}.{w}": s for i in (1, 2) for w, s in norm.items()}
    clip |= linear("mlp.fc1", 4096, 1024) | linear("mlp.fc2", 1024, 4096)
    tower = "vision_tower.vision_model."
    state = {tower + "embeddings.class_embedding": (1024,), tower + "embeddings.patch_embedding.weight": (1024, 3, 14, 14),
             tower + "embeddings.position_embedding.weight": (577, 1024)}
    state |= {f"{tower}{n}.{w}": s for n in ("pre_layrnorm", "post_layernorm") for w, s in norm.items()}
    state |= layers(24, tower + "encoder.layers.", clip)
    state |= linear("multi_modal_projector.linear_1", 4096, 1024) | linear("multi_modal_projector.linear_2", 4096, 4096)
    llama = {f"self_attn.{p}_proj.weight": (4096, 4096) for p in "qkvo"}
    llama |= {"mlp.gate_proj.weight": (11008, 4096), "mlp.up_proj.weight": (11008, 4096),
              "mlp.down_proj.weight": (4096, 11008), "input_layernorm.weight": (4096,),
              "post_attention_layernorm.weight": (4096,)}
    state |= layers(32, "language_model.model.layers.", llama)
    return state | {"language_model.model.embed_tokens.weight": (32064, 4096),
                    "language_model.model.norm.weight": (4096,), "language_model.lm_head.weight": (32064, 4096)}


def test_full_presets_take_the_published_key_names_and_shapes():
    """Each full preset, built without memory, fits its published checkpoint key for key and shape (towers aside
    for Cobra and ML-Mamba, which load them from their own repos)."""
    check_fit(build_vlm(get_preset("cobra-3b"), device="meta"), flatten(published_cobra(), COBRA_RULES),
              skip_prefixes=("vision.",))
    check_fit(build_vlm(get_preset("ml-mamba-2.7b"), device="meta"), flatten(published_mlmamba(), MLMAMBA_RULES),
              skip_prefixes=("vision.",))
    check_fit(build_vlm(get_preset("llava-1.5-7b"), device="meta"), rename(published_llava(), LLAVA_RULES))


# --- what does not fit ----------------------------------------------------------------------------------------------
def test_renamed_key_is_named(cobra, tmp_path, monkeypatch):
    original, hub = cobra
    monkeypatch.setenv("QBENCH_HUB_DIR", str(hub))
    groups = cobra_groups(original)
    groups["llm_backbone"]["llm.backbone.layers.0.mixer.D_skip"] = groups["llm_backbone"].pop(
        "llm.backbone.layers.0.mixer.D")
    repo = write_cobra(tmp_path / "cobra", groups)
    with pytest.raises(CheckpointMismatch) as error:
        qbench.load_model("tiny-cobra", checkpoint=str(repo))
    assert "missing keys: backbone.model.backbone.layers.0.mixer.D" in str(error.value)
    assert "unexpected keys: backbone.model.backbone.layers.0.mixer.D_skip" in str(error.value)


def test_key_outside_the_layout_is_named_as_in_the_file(llava, tmp_path):
    original, _ = llava
    state = llava_hub_state(original)
    state["multi_modal_projector.linear_3.weight"] = state.pop("multi_modal_projector.linear_2.weight")
    repo = write_llava(tmp_path / "llava", original, state, shards=2)
    with pytest.raises(CheckpointMismatch, match="unexpected keys: multi_modal_projector.linear_3.weight"):
        qbench.load_model("tiny-llava", checkpoint=str(repo))


def test_wrong_shape_is_named(mlmamba, tmp_path, monkeypatch):
    _, hub, groups = mlmamba
    monkeypatch.setenv("QBENCH_HUB_DIR", str(hub))
    wrong = {**groups, "projector": {**groups["projector"], "projector.4.weight": torch.zeros(64, 32)}}
    torch.save({"model": wrong}, tmp_path / "latest-checkpoint.pt")
    with pytest.raises(CheckpointMismatch, match=r"wrong shapes: projector.projector.4.weight \(64, 32\) != \(64, 64\)"):
        qbench.load_model("tiny-ml-mamba", checkpoint=str(tmp_path / "latest-checkpoint.pt"))


def test_checkpoint_of_another_system_is_refused(cobra, llava):
    with pytest.raises(CheckpointMismatch, match="a LLaVA checkpoint does not fit tiny-cobra"):
        qbench.load_model("tiny-cobra", checkpoint=f"llava-hf:{llava[1]}")
    with pytest.raises(CheckpointMismatch, match="a Cobra checkpoint does not fit tiny-llava"):
        qbench.load_model("tiny-llava", checkpoint=f"cobra:{cobra[1] / 'han1997/cobra'}")


def test_unrecognised_directory_asks_for_the_format(tmp_path):
    (tmp_path / "weights.bin").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointMismatch, match="name its format as FORMAT:PATH"):
        qbench.load_model("tiny-cobra", checkpoint=str(tmp_path))


@pytest.mark.parametrize("preset, checkpoint", [("cobra-3b", None), ("ml-mamba-2.7b", None), ("llava-1.5-7b", None),
                                                ("tiny-cobra", "cobra:nobody/no-such-repo"),
                                                ("tiny-ml-mamba", "mlmamba:nobody/no-such-repo"),
                                                ("tiny-llava", "llava-hf:nobody/no-such-repo")])
def test_missing_weights_name_the_hub_id_and_how_to_point_at_a_copy(preset, checkpoint, tmp_path, monkeypatch):
    monkeypatch.setenv("QBENCH_HUB_DIR", str(tmp_path))
    repo = (checkpoint or get_preset(preset).weights).partition(":")[2]
    with pytest.raises(WeightsNotFound) as error:
        qbench.load_model(preset, checkpoint=checkpoint)
    assert repo in str(error.value) and "QBENCH_HUB_DIR" in str(error.value)


def test_missing_vision_tower_is_named(cobra, tmp_path, monkeypatch):
    _, hub = cobra
    monkeypatch.setenv("QBENCH_HUB_DIR", str(tmp_path))  # the checkpoint is here, its towers are not
    with pytest.raises(WeightsNotFound, match="facebook/dinov2-with-registers-large"):
        qbench.load_model("tiny-cobra", checkpoint=str(hub / "han1997/cobra"))


# --- qbench's own format --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("system", ["cobra", "mlmamba", "llava"])
def test_native_format_round_trips(system, request, tmp_path):
    original = request.getfixturevalue(system)[0]
    directory = save_native(original, tmp_path / "native")
    assert torch.equal(logits(qbench.load_model(str(directory))), logits(original))
    assert torch.equal(logits(qbench.load_model(original.spec.name, checkpoint=str(directory))), logits(original))


@pytest.mark.parametrize("preset", [name for name in preset_names() if name.startswith("tiny-")])
def test_every_tiny_preset_round_trips_its_tensors_stored_once(preset, tmp_path):
    """A tensor that several keys name (a tied LM head, Zamba2's shared attention blocks) is written once, under its
    first key, and loaded back into all of them."""
    original = qbench.load_model(preset, seed=3)
    with torch.no_grad():  # away from any init the loader could redraw
        for parameter in original.parameters():
            parameter.add_(0.01)
    directory = save_native(original, tmp_path / "native")
    with safe_open(directory / "model.safetensors", framework="pt") as stored:
        keys = set(stored.keys())
    assert keys == set(original.state_dict()) - {key for keys in shared_keys(original) for key in keys[1:]}
    loaded = qbench.load_model(str(directory))
    assert all(torch.equal(a, b) for a, b in zip(loaded.state_dict().values(), original.state_dict().values()))
    assert shared_keys(loaded) == shared_keys(original)  # still one tensor, not copies
    assert torch.equal(logits(loaded), logits(original))
