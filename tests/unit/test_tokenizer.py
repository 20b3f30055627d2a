"""newsgen.tokenizer (tokenizer.json through the `tokenizers` library alone) gives the ids, padding, texts and
special tokens that transformers' tokenizer gives for the same artifact, and imports no transformers."""

import subprocess
import sys

import torch
from transformers import AutoTokenizer

from newsgen import prompt
from newsgen import tokenizer as tokenizers

TEXTS = [
    prompt.headline_prompt("City council approves"),
    prompt.article_prompt("Harbor ferry line approved"),
    "",
    "  leading spaces,\ttabs\nand newlines\n\n",
    "naïve café — 東京 🚢 déjà vu",
    "<|EOS|><|pad|><|SEP|> specials inside <|endoftext|> text",
    "It's 5 o'clock: \"quotes\", (brackets) & 1,000.5%",
]


def test_encoding_and_decoding_equal_transformers(headline_model):
    ours = tokenizers.load(headline_model)
    assert isinstance(ours, tokenizers.Tokenizer)
    theirs = AutoTokenizer.from_pretrained(headline_model)
    theirs.padding_side = "left"
    for name in ("bos_token", "eos_token", "pad_token", "unk_token"):
        assert getattr(ours, name) == getattr(theirs, name), name
        assert getattr(ours, f"{name}_id") == getattr(theirs, f"{name}_id"), name
    assert ours.convert_tokens_to_ids(prompt.SEP) == theirs.convert_tokens_to_ids(prompt.SEP)
    assert ours.convert_tokens_to_ids("no such token") == theirs.convert_tokens_to_ids("no such token")
    assert len(ours) == len(theirs)
    prompt.check_tokenizer(ours)
    for text in TEXTS:
        assert ours(text, add_special_tokens=False)["input_ids"] == theirs(text, add_special_tokens=False)["input_ids"]
    a = ours(TEXTS, return_tensors="pt", padding=True, add_special_tokens=False)
    b = theirs(TEXTS, return_tensors="pt", padding=True, add_special_tokens=False)
    for key in ("input_ids", "attention_mask"):
        assert torch.equal(a[key], b[key]), key
    generator = torch.Generator().manual_seed(0)
    samples = [torch.randint(0, len(ours), (n,), generator=generator).tolist() for n in (1, 2, 5, 40, 200)]
    for ids in [*a["input_ids"].tolist(), *samples, [50257, 50258], [188, 189]]:  # a UTF-8 byte cut in two
        for skip in (True, False):
            assert ours.decode(ids, skip_special_tokens=skip) == theirs.decode(ids, skip_special_tokens=skip)


def test_loading_it_imports_no_transformers(headline_model):
    code = f"""
import sys
from newsgen import tokenizer
t = tokenizer.load({str(headline_model)!r})
t(["<|endoftext|>Rain"], return_tensors="pt", padding=True, add_special_tokens=False)
print(type(t).__module__, sorted(m for m in sys.modules if m.split(".")[0] == "transformers"))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "newsgen.tokenizer []"
