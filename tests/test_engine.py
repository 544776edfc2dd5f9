"""The decode engines, for every registered backbone: qbench's greedy decode gives transformers' own greedy tokens;
the graph engine's state copy is exact; a question continues an image's prefix state as if its prompt had run
whole; the graph engine is refused on the CPU."""

import pytest
import torch

from qbench.backbones import BACKBONES, build_backbone
from qbench.backbones.decode import greedy_decode
from qbench.backbones.state import allocated_state, copy_state, load_rows
from qbench.engine import ENGINES, GraphUnavailable, greedy, make_decoder
from qbench.registry import UnknownName

NEW_TOKENS = 12
KINDS = BACKBONES.names()


def tiny_family(kind: str, shaken: bool = False):
    """The tiny twin of a backbone family (random, seed 0); `shaken`: its weights moved off their init, so that
    every decay, skip and bias differs per channel."""
    torch.manual_seed(0)
    backbone = build_backbone(BACKBONES[kind].tiny).eval()
    if shaken:
        with torch.no_grad():
            for parameter in backbone.parameters():
                parameter.add_(0.05 * torch.randn_like(parameter))
    return backbone


def left_padded_prompts(vocab: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Two prompts of 9 and 6 tokens, the shorter one left-padded."""
    generator = torch.Generator().manual_seed(1)
    ids = torch.randint(3, vocab, (2, 9), generator=generator)
    mask = torch.ones_like(ids)
    mask[1, :3] = 0
    ids[1, :3] = 0
    return ids, mask


@pytest.mark.parametrize("kind", KINDS)
def test_eager_decode_matches_transformers_generate(kind):
    backbone = tiny_family(kind)
    ids, mask = left_padded_prompts(backbone.model.config.vocab_size)
    rows = range(2) if backbone.attention_cache else range(1)  # transformers' pure Mamba generate ignores padding
    with torch.inference_mode():
        ours = greedy_decode(backbone, backbone.embed(ids[rows]), mask[rows], NEW_TOKENS)
        theirs = backbone.reference().generate(input_ids=ids[rows], attention_mask=mask[rows],
                                               max_new_tokens=NEW_TOKENS, eos_token_id=None, do_sample=False,
                                               pad_token_id=0)  # EOS neither stops nor is forbidden
    assert ours.shape == (len(rows), NEW_TOKENS)
    assert torch.equal(ours, theirs[:, ids.shape[1]:])


@pytest.mark.parametrize("kind", KINDS)
def test_copied_state_decodes_like_the_original(kind):
    """What the graph engine does per prompt: prefill a fresh state, copy it into the captured one, step there."""
    backbone = tiny_family(kind)
    ids, mask = left_padded_prompts(backbone.model.config.vocab_size)
    with torch.inference_mode():
        embeds = backbone.embed(ids)
        fresh, captured = backbone.new_state(2, 16), backbone.new_state(2, 16)
        backbone.prefill(embeds.flip(0), mask.flip(0), captured)  # another prompt was there before
        logits = backbone.prefill(embeds, mask, fresh)
        copy_state(backbone, fresh, captured)
        token = logits.argmax(-1)
        for _ in range(4):
            expected = backbone.step(token, fresh)
            got = backbone.step(token, captured)
            torch.testing.assert_close(got, expected)
            token = expected.argmax(-1)


@pytest.mark.parametrize("kind", KINDS)
def test_prompts_prefilled_a_group_at_a_time_decode_like_the_batch_prefilled_at_once(kind):
    """What the speed sweep does with a large batch: each group of prompts into its rows of one batch-wide state."""
    backbone = tiny_family(kind)
    ids = torch.randint(3, backbone.model.config.vocab_size, (3, 7), generator=torch.Generator().manual_seed(2))
    mask = torch.ones_like(ids)
    with torch.inference_mode():
        embeds = backbone.embed(ids)
        whole = backbone.new_state(3, 16)
        token = backbone.prefill(embeds, mask, whole).argmax(-1)
        batch = backbone.new_state(3, 16)
        backbone.prefill(backbone.embed(ids[:, :1]), mask[:, :1], batch)  # makes every tensor at the batch's size
        for start, stop in ((0, 1), (1, 3)):
            group = backbone.new_state(stop - start, 16)
            backbone.prefill(embeds[start:stop], mask[start:stop], group)
            copy_state(backbone, group, batch, start)
        for _ in range(4):
            expected = backbone.step(token, whole)
            torch.testing.assert_close(backbone.step(token, batch), expected)
            token = expected.argmax(-1)


@pytest.mark.parametrize("padded", [True, False])
@pytest.mark.parametrize("kind", KINDS)
def test_a_question_continues_an_image_prefix_state_as_if_its_prompt_ran_whole(kind, padded):
    """What the answering engine does: two images' prefix states in a bank, loaded into the rows of a state used
    before, each row continued by a question of its own length (left-padded) or all of one length, then one step: as
    if each prompt had been run whole by transformers' model (a hybrid's recurrent state and KV cache together)."""
    backbone = tiny_family(kind, shaken=True)
    theirs = backbone.reference()
    prefixes = torch.randint(3, 1000, (2, 6), generator=torch.Generator().manual_seed(2))
    questions = torch.randint(3, 1000, (3, 5), generator=torch.Generator().manual_seed(3))
    mask = torch.ones_like(questions)
    if padded:
        mask[0, :2], mask[1, :4] = 0, 0
    sources = torch.tensor([1, 0, 1])
    with torch.inference_mode():
        bank = backbone.new_state(2, 6)
        backbone.prefill(backbone.embed(prefixes), torch.ones_like(prefixes), bank)
        state = allocated_state(backbone, 3, 16)
        backbone.extend(questions.flip(0), mask, state)  # another batch was there before
        load_rows(backbone, bank, sources, state)
        logits = backbone.extend(questions, mask, state)
        after = backbone.step(logits.argmax(-1), state)
        for row in range(3):
            whole = torch.cat([prefixes[sources[row]], questions[row][mask[row].bool()], logits[row].argmax()[None]])
            expected = theirs(input_ids=whole[None]).logits[0]
            torch.testing.assert_close(logits[row], expected[-2], rtol=1e-5, atol=1e-5)
            torch.testing.assert_close(after[row], expected[-1], rtol=1e-5, atol=1e-5)


def test_eos_stops_all_rows_together():
    backbone = tiny_family("llama")
    ids, mask = left_padded_prompts(backbone.model.config.vocab_size)
    with torch.inference_mode():
        free = greedy_decode(backbone, backbone.embed(ids), mask, NEW_TOKENS)
        eos = int(free[0, 2])
        stopped = greedy_decode(backbone, backbone.embed(ids), mask, NEW_TOKENS, eos_id=eos)
    assert stopped[0, 2] == eos and torch.equal(stopped[0, :3], free[0, :3])
    assert stopped.shape[1] <= NEW_TOKENS


def test_a_decoder_is_reused_across_prompts():
    backbone = tiny_family("mamba")
    ids, mask = left_padded_prompts(backbone.model.config.vocab_size)
    decoder = make_decoder("eager", backbone, 1, 20)
    with torch.inference_mode():
        first = greedy(decoder, backbone.embed(ids[:1]), mask[:1], 5)
        greedy(decoder, backbone.embed(ids[:1].flip(1)), mask[:1], 5)
        again = greedy(decoder, backbone.embed(ids[:1]), mask[:1], 5)
    assert torch.equal(first, again)
    with pytest.raises(ValueError, match="does not fit"):
        decoder.prefill(backbone.embed(ids), mask)


@pytest.mark.parametrize("engine", ["graph", "graph-nocompile"])
def test_graph_engine_is_refused_on_the_cpu(engine):
    with pytest.raises(GraphUnavailable, match="needs a CUDA device"):
        make_decoder(engine, tiny_family("mamba"), 1, 16)


def test_engine_registry_names_the_choices():
    assert ENGINES.names() == ["eager", "graph", "graph-nocompile"]
    with pytest.raises(UnknownName, match="choose from: eager, graph, graph-nocompile"):
        make_decoder("beam", tiny_family("mamba"), 1, 16)
