"""Each system's sequence layout, token by token: where the visual tokens go, the template, BOS, padding."""

import pytest
import torch

import qbench
from qbench.presets import get_preset, preset_names
from qbench.vision.transforms import load_image

QUESTION = "What color is the circle?"
# the first tiny preset on each backbone family (every registered backbone has one: test_presets.py)
ONE_TINY_PRESET_PER_BACKBONE = list({get_preset(name).backbone.kind: name
                                     for name in reversed(preset_names()) if name.startswith("tiny-")}.values())


def visual_and_inputs(vlm, questions):
    visual = torch.randn(len(questions), vlm.visual_tokens, vlm.backbone.hidden_size)
    embeds, mask, labels = vlm.build_inputs(visual, questions)
    return visual, embeds, mask, labels


def test_cobra_puts_the_visual_tokens_first_then_the_zephyr_prompt_without_bos():
    vlm = qbench.load_model("tiny-cobra")
    tokenizer = vlm.tokenizer
    visual, embeds, mask, _ = visual_and_inputs(vlm, [QUESTION])
    expected_text = tokenizer("<|user|>\n" + QUESTION, add_special_tokens=False).input_ids + [tokenizer.eos_token_id] \
        + tokenizer("\n<|assistant|>\n", add_special_tokens=False).input_ids
    tokens = vlm.visual_tokens
    assert embeds.shape[1] == tokens + len(expected_text)
    assert torch.equal(embeds[0, :tokens], visual[0])
    assert torch.equal(embeds[0, tokens:], vlm.backbone.embed(torch.tensor(expected_text)))
    assert mask.all()
    before, after = vlm.prompt_ids(QUESTION)
    assert before == [] and after == expected_text
    assert tokenizer.decode(after) == f"<|user|>\n{QUESTION}<|endoftext|>\n<|assistant|>\n"


def test_llava_starts_with_bos_and_replaces_the_image_token():
    vlm = qbench.load_model("tiny-llava")
    tokenizer = vlm.tokenizer
    before, after = vlm.prompt_ids(QUESTION)
    assert before == [tokenizer.bos_token_id] + tokenizer("USER: ", add_special_tokens=False).input_ids
    assert after == tokenizer(f"\n{QUESTION} ASSISTANT:", add_special_tokens=False).input_ids
    image_id = tokenizer.convert_tokens_to_ids("<image>")
    assert image_id not in before + after
    visual, embeds, _, _ = visual_and_inputs(vlm, [QUESTION])
    start = len(before)
    assert torch.equal(embeds[0, start : start + vlm.visual_tokens], visual[0])
    assert torch.equal(embeds[0, :start], vlm.backbone.embed(torch.tensor(before)))
    assert torch.equal(embeds[0, start + vlm.visual_tokens :], vlm.backbone.embed(torch.tensor(after)))


def test_a_batch_is_left_padded_and_labels_cover_only_the_answer():
    vlm = qbench.load_model("tiny-cobra")
    visual = torch.randn(2, vlm.visual_tokens, vlm.backbone.hidden_size)
    questions = ["Is it red?", "How many circles are there in the picture?"]
    embeds, mask, labels = vlm.build_inputs(visual, questions, answers=["yes", "3"])
    short = len(vlm.prompt_ids(questions[0])[1]) + len(vlm.answer_ids("yes"))
    long = len(vlm.prompt_ids(questions[1])[1]) + len(vlm.answer_ids("3"))
    padding = long - short
    assert mask[0, :padding].eq(0).all() and mask[0, padding:].eq(1).all() and mask[1].eq(1).all()
    answer = vlm.answer_ids("yes")
    assert labels[0, -len(answer):].tolist() == answer and answer[-1] == vlm.eos_id
    assert labels[0, : -len(answer)].eq(-100).all()


@pytest.mark.parametrize("preset", ONE_TINY_PRESET_PER_BACKBONE)
def test_padding_does_not_change_an_answer(preset):
    """A question decoded in a batch next to a longer one gives the logits and tokens it gives alone (fp32), on
    every backbone."""
    from PIL import Image

    from qbench.backbones.decode import greedy_decode

    image = load_image(Image.new("RGB", (64, 48), "green"))
    vlm = qbench.load_model(preset)
    visual = vlm.encode_images(vlm.preprocess([image, image]))
    alone = vlm.build_inputs(visual[:1], ["Is it green?"])
    batch = vlm.build_inputs(visual, ["Is it green?", "How many shapes are in the top left of the image?"])
    assert batch[1][0].eq(0).any(), "the short question must be padded"
    logits_alone, _ = vlm.prefill(alone[0], alone[1], 4)
    logits_batch, _ = vlm.prefill(batch[0], batch[1], 4)
    assert torch.allclose(logits_alone[0], logits_batch[0], atol=1e-4)
    tokens_alone = greedy_decode(vlm.backbone, alone[0], alone[1], 8)
    tokens_batch = greedy_decode(vlm.backbone, batch[0], batch[1], 8)
    assert tokens_alone[0].tolist() == tokens_batch[0].tolist()


def test_a_multi_image_prompt_with_one_image_is_the_single_image_prompt():
    from PIL import Image

    image = Image.new("RGB", (64, 48), "green")
    for preset in ("tiny-cobra", "tiny-llava"):
        vlm = qbench.load_model(preset)
        visual = vlm.encode_images(vlm.preprocess([image]))
        single = vlm.build_inputs(visual, [QUESTION])
        multi = vlm.build_inputs(visual, [QUESTION], images=1)
        assert all(torch.equal(a, b) for a, b in zip(single, multi)), preset
        assert vlm.prompt_segments(QUESTION, 1) == list(vlm.prompt_ids(QUESTION))
        assert vlm.generate([[image]], [QUESTION], 6) == vlm.generate([image], [QUESTION], 6), preset


def test_several_images_go_where_each_system_puts_them():
    """Cobra: the images' visual tokens back to back as the prefix; LLaVA: one `<image>` line per image."""
    cobra = qbench.load_model("tiny-cobra")
    tokens, width = cobra.visual_tokens, cobra.backbone.hidden_size
    visual = torch.randn(3, tokens, width)  # three images of one prompt
    embeds, _, _ = cobra.build_inputs(visual, [QUESTION], images=3)
    assert torch.equal(embeds[0, : 3 * tokens], visual.reshape(-1, width))
    assert torch.equal(embeds[0, 3 * tokens :], cobra.backbone.embed(torch.tensor(cobra.prompt_ids(QUESTION)[1])))

    llava = qbench.load_model("tiny-llava")
    tokens, width = llava.visual_tokens, llava.backbone.hidden_size
    segments = llava.prompt_segments(QUESTION, 2)
    assert llava.tokenizer.decode(segments[0] + [llava.tokenizer.convert_tokens_to_ids("<image>")] + segments[1]
                                  + [llava.tokenizer.convert_tokens_to_ids("<image>")] + segments[2],
                                  skip_special_tokens=False).endswith(f"USER: <image>\n<image>\n{QUESTION} ASSISTANT:")
    visual = torch.randn(2, tokens, width)
    embeds, _, _ = llava.build_inputs(visual, [QUESTION], images=2)
    first = len(segments[0])
    second = first + tokens + len(segments[1])
    assert torch.equal(embeds[0, first : first + tokens], visual[0])
    assert torch.equal(embeds[0, first + tokens : second], llava.backbone.embed(torch.tensor(segments[1])))
    assert torch.equal(embeds[0, second : second + tokens], visual[1])
    assert embeds.shape[1] == second + tokens + len(segments[2])
