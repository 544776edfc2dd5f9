"""The answering engine gives `VLM.generate`'s answers for every tiny preset (fp32, CPU), whatever its batch size,
window and grouping: several questions per image, of different lengths, about images repeated out of order."""

import copy

import pytest
import torch
from PIL import Image, ImageDraw

import qbench
from qbench.backbones.decode import greedy_decode
from qbench.engine.answering import AnsweringEngine, AnsweringSettings, image_key
from qbench.presets import preset_names

TINY = [name for name in preset_names() if name.startswith("tiny-")]
NEW_TOKENS = 6


def talkative(preset: str):
    """A tiny preset whose weights are shaken (seeded) until its answers depend on the image and the question (the
    tiny random init says one token to everything), with a token it often says made its EOS, so that answers end
    at different lengths."""
    vlm = qbench.load_model(preset)  # random weights drawn with seed 0, whatever ran before
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for parameter in vlm.parameters():
            parameter.add_(torch.randn(parameter.shape, generator=generator) * 0.2)
    images, questions = requests()
    embeds, mask, _ = vlm.build_inputs(vlm.encode_images(vlm.preprocess(images)), questions)
    said = greedy_decode(vlm.backbone, embeds, mask, 4)[:, 1:]  # the second to fourth tokens of each answer
    vlm.tokenizer = copy.deepcopy(vlm.tokenizer)  # its own: the loaded tokenizer is shared by every model of the preset
    vlm.tokenizer.eos_token = vlm.tokenizer.convert_ids_to_tokens(int(said.flatten().mode().values))
    return vlm


def picture(colour: str, box: tuple[int, int, int, int]) -> Image.Image:
    image = Image.new("RGB", (160, 120), "white")
    ImageDraw.Draw(image).ellipse(box, fill=colour)
    return image


def requests() -> tuple[list[Image.Image], list[str]]:
    """Ten questions about three pictures (each a fresh PIL object, as a dataset gives them), out of order."""
    make = [lambda: picture("red", (20, 20, 80, 80)), lambda: picture("blue", (60, 10, 150, 100)),
            lambda: picture("green", (5, 40, 50, 110))]
    order = [0, 1, 0, 2, 1, 0, 2, 0, 1, 0]
    questions = ["What color is the circle?", "Is there a circle?", "How many circles are there in the picture?",
                 "Where?", "What is the shape in the middle of the white picture, and what colour is it?",
                 "Is it red?", "Describe the image.", "Count.", "Is the background white or black?",
                 "What color is the circle?"]
    return [make[index]() for index in order], questions


@pytest.mark.parametrize("preset", TINY)
def test_answers_are_generates_for_any_batch_window_and_grouping(preset):
    vlm = talkative(preset)
    images, questions = requests()
    expected = [vlm.generate([image], [question], NEW_TOKENS)[0] for image, question in zip(images, questions)]
    assert len(set(expected)) > 5 and len({len(answer) for answer in expected}) > 2  # the comparison can fail
    assert vlm.generate(images, questions, NEW_TOKENS) == expected  # today's path, all at once, left-padded
    for settings in (AnsweringSettings(batch=3, window=2, encode_batch=1, workers=2),
                     AnsweringSettings(batch=16, window=8, encode_batch=4, workers=1)):
        engine = AnsweringEngine(vlm, settings)
        assert engine.answer(images, questions, NEW_TOKENS) == expected
        reordered = list(reversed(range(len(questions))))  # another order, the same engine (reused states)
        assert engine.answer([images[i] for i in reordered], [questions[i] for i in reordered], NEW_TOKENS) == \
            [expected[i] for i in reordered]
    assert all(seconds > 0 for name, seconds in engine.seconds.items())


def test_images_are_grouped_by_their_pixels():
    images, _ = requests()
    assert len({image_key(image) for image in images}) == 3
    assert image_key(images[0]) == image_key(images[0].copy()) != image_key(images[1])


def test_bad_requests_are_refused_clearly():
    engine = AnsweringEngine(qbench.load_model("tiny-cobra"))
    images, questions = requests()
    with pytest.raises(ValueError, match="10 images for 9 questions"):
        engine.answer(images, questions[:9])
    with pytest.raises(ValueError, match="one image per question"):
        engine.answer([images[:2]], questions[:1])
    assert engine.answer([], []) == []
