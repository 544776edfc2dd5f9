"""Vision towers: each encoder's preprocessing, second-to-last-layer features, resolution sweeps."""

import dataclasses

import numpy as np
import pytest
import torch
from PIL import Image

from qbench.presets import get_preset
from qbench.spec import VisionSpec, ViTDims
from qbench.vision import TOWERS, ImageError, build_tower
from qbench.vision.transforms import IMAGENET_MEAN, load_image

TINY = get_preset("tiny-cobra").vision


def test_fused_tower_stacks_each_encoders_normalisation():
    tower = build_tower(TINY)
    pixels = tower.preprocess([Image.new("RGB", (30, 90), (255, 0, 0))])  # squashed, not cropped
    assert pixels.shape == (1, 6, 112, 112)
    dino, siglip = pixels[0, :3], pixels[0, 3:]
    assert torch.allclose(dino[0], torch.full((112, 112), (1 - IMAGENET_MEAN[0]) / 0.229), atol=1e-4)
    assert torch.allclose(siglip[1], torch.full((112, 112), -1.0))  # green 0 -> (0 - 0.5) / 0.5


def test_clip_pads_to_a_square_with_the_mean_colour():
    tower = build_tower(get_preset("tiny-llava").vision)
    pixels = tower.preprocess([Image.new("RGB", (40, 20), (255, 255, 255))])[0]
    assert pixels.shape == (3, 112, 112)
    assert abs(pixels[0, 0, 56].item()) < 0.05  # top band is padding, mean colour -> ~0 after normalising
    assert pixels[0, 56, 56].item() > 1.0  # the white image itself


def test_features_come_from_the_second_to_last_block_without_prefix_tokens():
    tower = build_tower(TINY).eval()
    pixels = tower.preprocess([Image.new("RGB", (50, 50), "blue")])
    features = tower(pixels)
    dino = tower.encoders["dinov2"].model
    hidden = dino(pixels[:, :3], output_hidden_states=True).hidden_states
    assert torch.allclose(features[..., :64], hidden[-2][:, 1 + 4 :], atol=1e-5)
    siglip = tower.encoders["siglip"].model
    hidden = siglip(pixels[:, 3:], output_hidden_states=True).hidden_states
    assert torch.allclose(features[..., 64:], hidden[-2], atol=1e-5)
    assert features.shape == (1, 64, tower.feature_dim)


def test_pretrained_towers_are_resampled_to_any_resolution(tmp_path):
    """Weights saved at 112 px (8x8) run at 168 px (12x12): position embeddings are interpolated."""
    tower = build_tower(TINY)
    for name, encoder in tower.encoders.items():
        encoder.model.save_pretrained(tmp_path / name)
    spec = dataclasses.replace(TINY, resolution=168, weights={"dinov2": "dinov2", "siglip": "siglip"})
    resized = build_tower(spec, tower_weights=lambda hub_id: str(tmp_path / hub_id)).eval()
    out = resized(resized.preprocess([Image.new("RGB", (64, 64), "red")]))
    assert out.shape == (1, 144, tower.feature_dim) and torch.isfinite(out).all()


def test_a_corrupt_image_is_a_clear_error(tmp_path):
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    with pytest.raises(ImageError, match="cannot decode"):
        load_image(broken)
    with pytest.raises(ImageError):
        build_tower(TINY).preprocess([np.zeros(3).tobytes()])


@pytest.mark.parametrize("kind", TOWERS.names())
def test_every_tower_kind_gives_second_to_last_block_patch_features(kind):
    dims = {name: ViTDims(32, 3, 2, 64, registers=2 if name == "dinov2" else 0) for name in TOWERS[kind]}
    tower = build_tower(VisionSpec(kind, 56, 14, dims)).eval()
    pixels = tower.preprocess([Image.new("RGB", (40, 30), "yellow")])
    features = tower(pixels)
    assert features.shape == (1, 16, 32 * len(dims))
    for index, (name, encoder) in enumerate(tower.encoders.items()):
        hidden = encoder.model(pixels[:, 3 * index : 3 * index + 3], output_hidden_states=True).hidden_states[-2]
        expected = hidden[:, encoder.prefix_tokens :]
        assert torch.allclose(features[..., 32 * index : 32 * (index + 1)], expected, atol=1e-5), name


def activation_is_exact_gelu(encoder) -> bool:
    x = torch.linspace(-4, 4, 101)
    act = encoder.model.encoder.layers[0].mlp.activation_fn
    return torch.equal(act(x), torch.nn.functional.gelu(x))


@pytest.mark.parametrize("preset", ["tiny-cobra", "tiny-cobra-ldp", "tiny-ml-mamba", "tiny-q-mamba"])
def test_prismatic_family_siglip_uses_exact_gelu_as_timm_does_and_siglip_alone_keeps_tanh(preset, tmp_path):
    vision = get_preset(preset).vision
    assert vision.kind == "dinosiglip" and activation_is_exact_gelu(build_tower(vision).encoders["siglip"])
    alone = dataclasses.replace(vision, kind="siglip", dims={"siglip": vision.dims["siglip"]})
    siglip = build_tower(alone).encoders["siglip"]
    assert not activation_is_exact_gelu(siglip) and siglip.model.config.hidden_act == "gelu_pytorch_tanh"
    siglip.model.save_pretrained(tmp_path / "siglip")  # released SigLIP weights carry the tanh config
    dinov2 = build_tower(vision).encoders["dinov2"].model
    dinov2.save_pretrained(tmp_path / "dinov2")
    loaded = build_tower(vision, lambda hub_id: str(tmp_path / ("siglip" if "siglip" in hub_id else "dinov2")))
    assert activation_is_exact_gelu(loaded.encoders["siglip"])
