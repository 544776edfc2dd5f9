"""Each system's sequence layout, token by token: where the visual tokens go, the template, BOS, padding."""

import torch

import qbench
from qbench.vision.transforms import load_image

QUESTION = "What color is the circle?"


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


def test_padding_does_not_change_an_answer():
    """A question decoded in a batch next to a longer one gives the logits and tokens it gives alone."""
    from PIL import Image

    from qbench.engine import greedy_decode

    image = load_image(Image.new("RGB", (64, 48), "green"))
    for preset in ("tiny-cobra", "tiny-ml-mamba", "tiny-llava"):
        torch.manual_seed(0)
        vlm = qbench.load_model(preset)
        visual = vlm.encode_images(vlm.preprocess([image, image]))
        alone = vlm.build_inputs(visual[:1], ["Is it green?"])
        batch = vlm.build_inputs(visual, ["Is it green?", "How many shapes are in the top left of the image?"])
        assert batch[1][0].eq(0).any(), "the short question must be padded"
        logits_alone, _ = vlm.prefill(alone[0], alone[1], 4)
        logits_batch, _ = vlm.prefill(batch[0], batch[1], 4)
        assert torch.allclose(logits_alone[0], logits_batch[0], atol=1e-4), preset
        tokens_alone = greedy_decode(vlm.backbone, alone[0], alone[1], 8)
        tokens_batch = greedy_decode(vlm.backbone, batch[0], batch[1], 8)
        assert tokens_alone[0].tolist() == tokens_batch[0].tolist(), preset
