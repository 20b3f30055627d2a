"""The prompt format: special tokens and the texts built from them, for training and for generation alike.

Headline example:  <|endoftext|> {title}<|EOS|>
Article example:   <|endoftext|> {title}<|SEP|> {article}<|EOS|>

`<|endoftext|>` is already in GPT-2's vocabulary; the other three are added, so a tokenizer grows from
50257 to 50260 entries and the model's embeddings are resized to match.

The space before each text is prompt format 2. Format 1 had none, so a text's first word was another token than
the same word anywhere else ("Senate" is "Sen" + "ate" at the start, " Senate" elsewhere): a model had to learn
each word twice, and the demo article model, which copies its headline's first word, carried the main noun of
66 of 100 held-out headlines in format 1 and 83 of 100 in format 2 (bench/follow.py). A model's format is in
its config.json (`prompt_format`, written by training) and its manifest; a model without one is format 1, and
is served in format 1.
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


PROMPT_FORMAT = 2  # what training writes
PROMPT_FORMATS = (1, 2)  # what this build serves


def _lead(prompt_format: int) -> str:
    if prompt_format not in PROMPT_FORMATS:
        raise ValueError(f"prompt format {prompt_format!r} is not one this build speaks ({PROMPT_FORMATS})")
    return " " if prompt_format >= 2 else ""


def headline_prompt(prefix: str = "", prompt_format: int = PROMPT_FORMAT) -> str:
    """The generation prompt for a headline that starts with `prefix` (possibly empty: then the model's first
    token brings its own space)."""
    return BOS + (_lead(prompt_format) + prefix if prefix else "")


def article_prompt(headline: str, prompt_format: int = PROMPT_FORMAT) -> str:
    """The generation prompt for the opening of an article under `headline`."""
    return BOS + _lead(prompt_format) + headline.strip() + SEP


def prompts_for(task: Task | str, inputs: list[str], prompt_format: int = PROMPT_FORMAT) -> list[str]:
    """The generation prompts of a task's model: from headline prefixes for the headline model, from headlines
    for the article model; serving passes the model's own format (its manifest's prompt_format)."""
    if task == "headline":
        return [headline_prompt(text, prompt_format) for text in inputs]
    return [article_prompt(text, prompt_format) for text in inputs]


def training_text(
    task: Task | str, title: str, content: str | None = None, prompt_format: int = PROMPT_FORMAT
) -> tuple[str, str]:
    """(prompt part, target part) of one training example. The loss of the article model covers only the
    target part; the headline model learns the whole text, so its prompt part is just BOS."""
    title = title.strip()
    if task == "headline":
        return BOS, _lead(prompt_format) + title + EOS
    if task == "article":
        if not content:
            raise ValueError("an article example needs content")
        return article_prompt(title, prompt_format), _lead(prompt_format) + content.strip() + EOS
    raise ValueError(f"unknown task {task!r}; expected one of {', '.join(Task)}")


def as_written(tokenizer, text: str, prompt_format: int = PROMPT_FORMAT) -> tuple[list[int], int]:
    """A text's tokens as the article model wrote it, after the context it wrote it in, and where the text
    starts: a first line followed by more is the headline (the context), a single paragraph an article under
    an unknown headline."""
    headline, _, article = text.strip().partition("\n")
    if not article.strip():
        headline, article = "", headline
    context, body = training_text(Task.ARTICLE, headline, article.strip(), prompt_format)
    context_ids = tokenizer(context, add_special_tokens=False)["input_ids"]
    body_ids = tokenizer(body.removesuffix(EOS), add_special_tokens=False)["input_ids"]
    return context_ids + body_ids, len(context_ids)
