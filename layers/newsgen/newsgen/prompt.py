"""The prompt format: special tokens and the texts built from them, for training and for generation alike.

Headline example:  <|endoftext|>{title}<|EOS|>
Article example:   <|endoftext|>{title}<|SEP|>{article}<|EOS|>

`<|endoftext|>` is already in GPT-2's vocabulary; the other three are added, so a tokenizer grows from
50257 to 50260 entries and the model's embeddings are resized to match.
"""

from __future__ import annotations

from enum import StrEnum

BOS = "<|endoftext|>"
EOS = "<|EOS|>"
PAD = "<|pad|>"
SEP = "<|SEP|>"


class Task(StrEnum):
    """The two models' tasks: each is trained, published (<prefix>/<task>/...) and served on its own."""

    HEADLINE = "headline"
    ARTICLE = "article"


SPECIAL_TOKENS = {
    "bos_token": BOS,
    "eos_token": EOS,
    "pad_token": PAD,
    "additional_special_tokens": [SEP],
}


def add_special_tokens(tokenizer) -> int:
    """Add our special tokens to a GPT-2 tokenizer; returns how many were new."""
    return tokenizer.add_special_tokens(SPECIAL_TOKENS)


def check_tokenizer(tokenizer) -> None:
    """Refuse a tokenizer that does not speak this prompt format (a checkpoint from elsewhere)."""
    for name in ("bos_token", "eos_token", "pad_token"):
        if getattr(tokenizer, name) != SPECIAL_TOKENS[name]:
            raise ValueError(f"tokenizer {name} is {getattr(tokenizer, name)!r}, expected {SPECIAL_TOKENS[name]!r}")
    if tokenizer.convert_tokens_to_ids(SEP) in (None, tokenizer.unk_token_id):
        raise ValueError(f"tokenizer has no {SEP!r} token")


def headline_prompt(prefix: str = "") -> str:
    """The generation prompt for a headline that starts with `prefix` (possibly empty)."""
    return BOS + prefix


def article_prompt(headline: str) -> str:
    """The generation prompt for the opening of an article under `headline`."""
    return BOS + headline.strip() + SEP


def training_text(task: Task | str, title: str, content: str | None = None) -> tuple[str, str]:
    """(prompt part, target part) of one training example. The loss of the article model covers only the
    target part; the headline model learns the whole text, so its prompt part is just BOS."""
    title = title.strip()
    if task == "headline":
        return BOS, title + EOS
    if task == "article":
        if not content:
            raise ValueError("an article example needs content")
        return article_prompt(title), content.strip() + EOS
    raise ValueError(f"unknown task {task!r}; expected one of {', '.join(Task)}")
