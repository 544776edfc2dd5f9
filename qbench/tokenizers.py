"""Tokenizers: the real ones from the hub (or a local copy), and small built-in ones for the tiny presets."""

from __future__ import annotations

import functools

from transformers import PreTrainedTokenizerBase, PreTrainedTokenizerFast

from qbench.prompts import IMAGE
from qbench.spec import TINY_VOCAB

# Built-in tokenizers: a byte-level BPE learnt from a fixed corpus, with each family's special tokens.
BUILTIN_SPECIALS = {
    "qbench-tiny-neox": {"tokens": ["<|endoftext|>", "<|padding|>"], "eos": "<|endoftext|>", "pad": "<|padding|>",
                         "bos": None},
    "qbench-tiny-llama": {"tokens": ["<unk>", "<s>", "</s>", IMAGE, "<pad>"], "eos": "</s>", "pad": "<pad>",
                          "bos": "<s>"},
}

CORPUS_WORDS = ["the", "a", "an", "is", "are", "of", "in", "on", "to", "what", "which", "how", "many", "where", "there", "this", "that", "it", "image", "picture", "photo", "color", "colour", "shape", "red", "green", "blue", "yellow", "purple", "orange", "white", "black", "gray", "grey", "brown", "pink", "cyan", "circle", "square", "triangle", "star", "cross", "diamond", "ring", "shapes", "circles", "squares", "triangles", "stars", "crosses", "diamonds", "rings", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "zero", "0", "1", "2", "3", "4", "5", "6", "7", "8", "9", "10", "left", "right", "top", "bottom", "middle", "center", "above", "below", "next", "beside", "under", "over", "between", "yes", "no", "unanswerable", "word", "text", "written", "say", "says", "sign", "read", "letters", "answer", "question", "using", "single", "phrase", "provided", "information", "insufficient", "respond", "with", "reference", "ocr", "token", "user", "assistant", "describe", "specifically", "large", "small", "big", "tiny", "object", "objects", "background"]

TEMPLATES = [
    "What color is the {w}?", "How many {w} are there?", "Is there a {w} in the image?",
    "What shape is {w} of the {w}?", "What word is written in the image?", "Answer the question using a single word or phrase.",
    "When the provided information is insufficient, respond with 'Unanswerable'.", "Reference OCR token: {w}, {w}",
    "<|user|>\n{w}\n<|assistant|>\n", "USER: \n{w} ASSISTANT:", "In: {w}\nOut: ",
]


def builtin_corpus() -> list[str]:
    lines = [" ".join(CORPUS_WORDS)] * 4 + [" ".join(reversed(CORPUS_WORDS))]
    for template in TEMPLATES:
        lines += [template.replace("{w}", word) for word in CORPUS_WORDS]
    return lines


@functools.cache
def builtin_tokenizer(name: str, vocab_size: int = TINY_VOCAB) -> PreTrainedTokenizerFast:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    specials = BUILTIN_SPECIALS[name]
    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=specials["tokens"], show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    backend.train_from_iterator(builtin_corpus(), trainer)
    return PreTrainedTokenizerFast(tokenizer_object=backend, eos_token=specials["eos"], pad_token=specials["pad"],
                                   bos_token=specials["bos"], unk_token=None)


TOKENIZER_FILES = ["tokenizer*", "special_tokens_map.json", "added_tokens.json", "vocab.*", "merges.txt", "*.model",
                   "config.json", "chat_template*"]


def tokenizer_files(source: str) -> str:
    """The local folder of a hub id's or path's tokenizer files; WeightsNotFound naming it when there is none. Cheap:
    it only looks for files (the path, $QBENCH_HUB_DIR, the hub cache) or fetches those files alone."""
    from qbench.hub import resolve_repo

    return resolve_repo(source, what="tokenizer", files=TOKENIZER_FILES)


def load_tokenizer(source: str) -> PreTrainedTokenizerBase:
    """A built-in tokenizer by name, or transformers' AutoTokenizer from a hub id or local path."""
    if source in BUILTIN_SPECIALS:
        return builtin_tokenizer(source)
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tokenizer_files(source))
