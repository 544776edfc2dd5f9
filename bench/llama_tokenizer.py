"""LLaVA-1.5's tokenizer from the real Llama-2 vocabulary in ../shared/reference (no hub here): a tokenizer folder in
the layout `qbench` loads `llava-hf/llava-1.5-7b-hf`'s from, so that full-size LLaVA runs offline.

    PYTHONPATH=DIR_WITH_gguf python3 bench/llama_tokenizer.py VOCAB_DIR OUT_DIR
    # e.g. bench/llama_tokenizer.py ../shared/reference/tokenizers/llama-2 .gpu/hub/llava-hf/llava-1.5-7b-hf

transformers reads the GGUF vocabulary (32,000 SentencePiece tokens; needs the `gguf` package, here only);
llava-hf adds `<image>` (32000) and `<pad>` (32001) to it. The folder is checked against llama.cpp's reference
encodings that ship beside the vocabulary before it is written; the run stops if one differs.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

VOCAB = "ggml-vocab-llama-spm.gguf"
SEPARATOR = "\n__ggml_vocab_test__\n"


def reference_encodings(folder: Path) -> list[tuple[str, list[int]]]:
    texts = (folder / f"{VOCAB}.inp").read_text().split(SEPARATOR)
    ids = [[int(i) for i in line.split()] for line in (folder / f"{VOCAB}.out").read_text().splitlines()]
    return list(zip(texts, ids))  # the .inp ends with an empty entry that has no line in .out


def main(vocab: Path, out: Path) -> None:
    os.environ.setdefault("TQDM_DISABLE", "1")
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(vocab), gguf_file=VOCAB)
    tokenizer.add_special_tokens({"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>"})
    tokenizer.add_tokens(["<image>"], special_tokens=True)
    tokenizer.add_special_tokens({"pad_token": "<pad>"})
    wrong = [text for text, ids in reference_encodings(vocab) if tokenizer(text, add_special_tokens=False).input_ids != ids]
    found = [tokenizer.convert_tokens_to_ids(t) for t in ("<unk>", "<s>", "</s>", "<image>", "<pad>")]
    if wrong or found != [0, 1, 2, 32000, 32001]:
        sys.exit(f"not written: {len(wrong)} reference encodings differ, special ids {found}")
    tokenizer.save_pretrained(str(out))
    print(f"wrote {out}: {len(tokenizer)} tokens, {len(reference_encodings(vocab))} reference encodings identical")


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))
