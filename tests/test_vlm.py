"""Every tiny preset answers a question about an image, and its stages compose into `generate`."""

import pytest
import torch
from PIL import Image, ImageDraw

import qbench
from qbench.presets import preset_names
from qbench.tokenizers import builtin_tokenizer

TINY = [name for name in preset_names() if name.startswith("tiny-")]


def scene() -> Image.Image:
    image = Image.new("RGB", (160, 120), "white")
    ImageDraw.Draw(image).ellipse((20, 20, 80, 80), fill="red")
    return image


@pytest.mark.parametrize("preset", TINY)
def test_tiny_preset_answers_a_question_about_an_image(preset):
    vlm = qbench.load_model(preset)
    answers = vlm.generate([scene(), scene()], ["What color is the circle?", "How many circles are there?"], 8)
    assert len(answers) == 2 and all(isinstance(a, str) for a in answers)
    assert vlm.backbone.kernel_path


@pytest.mark.parametrize("preset", ["tiny-cobra", "tiny-llava"])
def test_stages_compose_into_generate(preset):
    """encode_images -> build_inputs -> prefill -> decode_step, by hand, gives generate's tokens."""
    vlm = qbench.load_model(preset, seed=1)
    with torch.inference_mode():
        visual = vlm.encode_images(vlm.preprocess([scene()]))
        assert visual.shape == (1, vlm.visual_tokens, vlm.backbone.hidden_size)
        embeds, mask, _ = vlm.build_inputs(visual, ["Describe the image specifically"])
        logits, state = vlm.prefill(embeds, mask, max_new_tokens=5)
        tokens = []
        for _ in range(5):
            tokens.append(int(logits.argmax(-1)))
            logits = vlm.decode_step(torch.tensor([tokens[-1]]), state)
    expected = vlm.decode_answer(tokens)
    assert vlm.generate([scene()], ["Describe the image specifically"], 5)[0] == expected


def test_kernel_path_is_reported():
    assert qbench.load_model("tiny-cobra").backbone.kernel_path == (
        "pytorch fallback (cpu); layers: qbench on pytorch; decode: transformers' step")
    assert qbench.load_model("tiny-llava").backbone.kernel_path.startswith("pytorch")


def test_builtin_tokenizer_is_deterministic():
    first = builtin_tokenizer.__wrapped__("qbench-tiny-neox").get_vocab()
    assert first == builtin_tokenizer.__wrapped__("qbench-tiny-neox").get_vocab()
    assert len(first) <= 1024  # fits the tiny presets' vocabulary


@pytest.mark.parametrize("name", ["zephyr", "mamba-base"])
def test_cobra_and_ml_mamba_prompts_strip_the_question_and_drop_image_tags_as_prismatic_does(name):
    from qbench.prompts import PROMPTS

    prompt = PROMPTS[name]
    assert prompt.render("  <image>\nWhat colour is the car? \n") == prompt.render("What colour is the car?")
    assert prompt.render(" What?", images=2).count("<image>") == 2
    assert PROMPTS["llava"].render(" What?") == "USER: <image>\n What? ASSISTANT:"  # llava-hf: verbatim
