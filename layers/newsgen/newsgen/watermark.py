"""A statistical watermark on every generated text, and its detection.

The scheme is transformers' green-list watermark (Kirchenbauer et al. 2023, `WatermarkLogitsProcessor`,
"lefthash" seeding, context width 1): at each step a secret key and the previous token choose a quarter of the
vocabulary as "green", and green tokens get a bias (WATERMARK_BIAS, 4.0) on their logits, before temperature,
top-k and top-p (as in the paper's reference code: after them, a nucleus of one token leaves nothing to
bias, and the demo models' texts were not detectable at all). Detection (`Detector`) counts green tokens in
a text and takes a one-sided z-test against the 25 % that unmarked text has; it does not depend on the bias.
Both sides act only where the model had a real choice (`has_choice`: next-token entropy at least
ENTROPY_THRESHOLD): generation biases only there, and the service's detection scores only there, since a
certain token cannot carry the mark and a bias there only pushes the model off its word.

Keys live in a keyring: `{"current": "<key id>", "keys": {"<key id>": <int>, ...}}`. Generation uses the
current key; detection tries every key, so texts marked before a rotation stay detectable. The key id (a
hash of the key) goes into each response's provenance; the key never leaves the keyring. Deployed, it is read at
init from the Secrets Manager secret the stack generates (a seed, `{"scheme": SEED_SCHEME, "seed": "..."}`,
from which one key is derived; a keyring stored there instead is read as it is) or from an SSM SecureString
parameter the deployer made; locally, a file created once.
"""

from __future__ import annotations

import hashlib
import json
import math
import secrets
from collections import OrderedDict
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path
from typing import Any, Final, Literal, get_args

from pydantic import BaseModel, Field

from newsgen.errors import ModelUnavailable

SCHEME = "kgw-lefthash-1"  # green list of 25 % seeded by the previous token
GREENLIST_RATIO = 0.25
BIAS = 4.0  # the demo models are nearly deterministic: at 2.0, applied last, their articles scored z ≈ 1
Z_THRESHOLD = 3.0  # one-sided p ≈ 0.0013 per key: under the 1 % false-positive target even over several keys
P_THRESHOLD = 0.5 * math.erfc(Z_THRESHOLD / math.sqrt(2))  # the same level, for the exact binomial tail
MIN_TOKENS = 10  # fewer scored tokens than this: "too_short" (or "too_predictable"), no verdict
# Next-token entropy (nats) from which detection scores a token: where the model had a real choice
ENTROPY_THRESHOLD = 1.0
MASK_CACHE = 4096  # previous tokens whose green list is kept (as a packed bit mask, 6.3 KB each for GPT-2)
SeedScheme = Literal["newsgen-watermark-seed-1"]  # the secret template.yaml generates: {"scheme": this, "seed": …}
SEED_SCHEME: Final[str] = get_args(SeedScheme)[0]


class WatermarkUnavailable(ModelUnavailable):
    """The watermark is on but its key cannot be read: nothing is generated unmarked (API: 503; batch: the
    chunk is retried)."""

    error_type = "watermark_unavailable"
    status_code = 503
    public_summary = "the watermark key cannot be read, and nothing is generated unmarked"


def key_id(key: int) -> str:
    return hashlib.sha256(f"{SCHEME}:{key}".encode()).hexdigest()[:12]


class Keyring(BaseModel):
    current: str
    keys: dict[str, int] = Field(min_length=1)

    def current_key(self) -> int:
        return self.keys[self.current]


def new_key() -> int:
    return secrets.randbits(62)


def keyring_with_new_key(existing: Keyring | None = None) -> Keyring:
    """A keyring whose current key is new; the old keys stay for detection."""
    key = new_key()
    keys = {**(existing.keys if existing else {}), key_id(key): key}
    return Keyring(current=key_id(key), keys=keys)


class Seed(BaseModel):
    scheme: SeedScheme
    seed: str = Field(min_length=32)  # Secrets Manager's 64 alphanumerics: ~380 bits

    def keyring(self) -> Keyring:
        """One key, the same for the same seed in every container: 62 bits, as new_key draws."""
        digest = hashlib.sha256(f"{SEED_SCHEME}:{self.seed}".encode()).digest()
        key = int.from_bytes(digest[:8], "big") >> 2
        return Keyring(current=key_id(key), keys={key_id(key): key})


def parse_keyring(text: str, source: str) -> Keyring:
    """A keyring's JSON, or a generated seed's (a keyring of the one key derived from it)."""
    try:
        document = json.loads(text)
        seeded = isinstance(document, dict) and "seed" in document
        ring = Seed.model_validate(document).keyring() if seeded else Keyring.model_validate(document)
    except ValueError as exc:
        raise WatermarkUnavailable(
            f"the watermark keyring in {source} is not valid", cause=type(exc).__name__
        ) from None
    if ring.current not in ring.keys or any(key_id(k) != i for i, k in ring.keys.items()):
        raise WatermarkUnavailable(
            f"the watermark keyring in {source} names a key it does not hold, or a key under another id"
        )
    return ring


def read_stored(kind: Literal["secret", "parameter"], name: str) -> str:
    """A Secrets Manager secret's or an SSM SecureString parameter's value. The error names neither: it may
    reach a client."""
    import boto3
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        if kind == "secret":
            return boto3.client("secretsmanager").get_secret_value(SecretId=name)["SecretString"]
        return boto3.client("ssm").get_parameter(Name=name, WithDecryption=True)["Parameter"]["Value"]
    except (BotoCoreError, ClientError, KeyError) as exc:  # KeyError: a binary secret has no SecretString
        raise WatermarkUnavailable(f"the watermark keyring {kind} cannot be read", cause=type(exc).__name__) from None


def load_keyring(parameter: str = "", file: Path | None = None, *, secret: str = "") -> Keyring:
    """From a Secrets Manager secret (ARN or name) or an SSM SecureString parameter (deployed), or a local file
    created on first use."""
    if secret:
        return parse_keyring(read_stored("secret", secret), f"secret {secret}")
    if parameter:
        return parse_keyring(read_stored("parameter", parameter), f"SSM parameter {parameter}")
    if file is None:
        raise WatermarkUnavailable(
            "the watermark is on but no keyring is configured: set WATERMARK_KEYS_SECRET (Secrets Manager), "
            "WATERMARK_KEYS_PARAMETER (an SSM SecureString) or WATERMARK_KEYS_FILE, or WATERMARK=false"
        )
    file = Path(file)
    if not file.is_file():
        file.parent.mkdir(parents=True, exist_ok=True)
        ring = keyring_with_new_key()
        temporary = file.with_suffix(".tmp")
        temporary.write_text(ring.model_dump_json(indent=2))
        temporary.chmod(0o600)
        temporary.replace(file)
    return parse_keyring(file.read_text(), str(file))


class GreenlistWatermark:
    """transformers' WatermarkLogitsProcessor with each previous token's green list cached as a packed bit
    mask. The library draws a 50,257-entry permutation per row and step (about 1 ms on one CPU core: 14 % of a
    7 ms decode step); the cache makes a repeated previous token cost a few microseconds. The draw is the
    library's own (`draw`: the same seed, the same torch.randperm), written out so that generation does not
    import transformers' generation package (0.8 s of a cold start); scores are identical to the library's
    (tested against `library`, built on first use)."""

    def __init__(self, vocab_size: int, key: int, bias: float = BIAS, cache_size: int = MASK_CACHE):
        self.vocab_size, self.key, self.cache_size, self.bias = vocab_size, key, cache_size, bias
        self.greenlist_size = int(vocab_size * GREENLIST_RATIO)
        self._masks: OrderedDict[int, Any] = OrderedDict()  # packed numpy bit masks
        self._library: Any = None

    @property
    def library(self):
        """transformers' processor with this key: the reference (tests, benches), never used to generate."""
        if self._library is None:
            from transformers.generation.logits_process import WatermarkLogitsProcessor

            self._library = WatermarkLogitsProcessor(
                self.vocab_size,
                "cpu",
                greenlist_ratio=GREENLIST_RATIO,
                bias=self.bias,
                hashing_key=self.key,
                seeding_scheme="lefthash",
                context_width=1,
            )
        return self._library

    def draw(self, previous: int):
        """The green list after `previous`: WatermarkLogitsProcessor._get_greenlist_ids with lefthash seeding and
        a context of one token."""
        import torch

        generator = torch.Generator().manual_seed((self.key * previous) % (2**64 - 1))
        return torch.randperm(self.vocab_size, generator=generator)[: self.greenlist_size]

    def green_mask(self, previous: int):
        import numpy as np
        import torch

        packed = self._masks.get(previous)
        if packed is None:
            mask = np.zeros(self.vocab_size, dtype=bool)
            mask[self.draw(previous).numpy()] = True
            packed = self._masks[previous] = np.packbits(mask)
            if len(self._masks) > self.cache_size:
                self._masks.popitem(last=False)
        else:
            self._masks.move_to_end(previous)
        return torch.from_numpy(np.unpackbits(packed, count=self.vocab_size).view(bool))

    def __call__(self, input_ids, scores):
        import torch

        masks = torch.stack([self.green_mask(token) for token in input_ids[:, -1].tolist()])
        return scores + masks.to(scores.dtype) * self.bias * has_choice(scores).unsqueeze(-1)


class PromptCopies:
    """The watermark for one generate() call, which never biases against copying from the prompt.

    A token that continues a run of the prompt (it follows, somewhere in the prompt, the token generated last)
    gets the green bias whatever its colour, and so does the prompt's first token right after a separator (an
    article opens by restating its headline: a special token starts a text, like the prompt's own start).
    Without this, a copied word is red three times in four and loses to green words by the whole bias: the
    demo article model carried its headline's main noun into 36 of 100 sampled articles unmarked and 9 of 100
    marked (bench/follow.json). Detection does not change: the few copied tokens are scored like any other.

    The first call's `input_ids` are the prompts (one row per returned sequence or beam); later calls keep the
    rows' order, so each row's copy table is built once."""

    def __init__(self, watermark: GreenlistWatermark, special_ids):
        self.watermark, self.special_ids = watermark, frozenset(special_ids)
        self.copies: list[dict[int, list[int]]] | None = None

    def _key(self, token: int) -> int:
        return -1 if token in self.special_ids else token  # every special token is a text boundary

    def _continuations(self, prompt: list[int]) -> dict[int, list[int]]:
        table: dict[int, set[int]] = {}
        for previous, token in pairwise(prompt):
            if token not in self.special_ids:
                table.setdefault(self._key(previous), set()).add(token)
        return {key: sorted(tokens) for key, tokens in table.items()}

    def __call__(self, input_ids, scores):
        if self.copies is None:
            self.copies = [self._continuations(row) for row in input_ids.tolist()]
        marked = self.watermark(input_ids, scores)
        chosen = has_choice(scores).tolist()
        for row, previous in enumerate(input_ids[:, -1].tolist()):
            copies = self.copies[row].get(self._key(previous))
            if copies and chosen[row]:
                marked[row, copies] = scores[row, copies] + self.watermark.bias
        return marked


@dataclass
class Detection:
    watermarked: bool | None  # None: too short or too predictable to judge
    verdict: str  # watermarked | not_watermarked | too_short | too_predictable
    score: float | None  # z-score under the best-matching key
    p_value: float | None  # one-sided, adjusted for the number of keys tried
    tokens_scored: int
    key_id: str | None  # the key that matched, when watermarked


class Detector:
    """Green-list detection over every key of a keyring: the share of green tokens in a text against the 25 %
    that unmarked text has (a one-sided z-test), each (previous, token) pair counted once, as transformers'
    WatermarkDetector counts with ignore_repeated_ngrams.

    Where the caller knows at which tokens the model had a real choice (`choices`: the next-token entropy of
    the serving model at or above ENTROPY_THRESHOLD), only those are scored (Lee et al. 2023, "SWEET"). A token
    the model was all but certain of stays its colour whatever the bias, so it only dilutes the count: a
    template-like text is mostly such tokens. Which tokens are scored depends on the text, never on the key,
    so unmarked text still scores a z-score of mean 0, variance 1."""

    def __init__(self, keyring: Keyring, vocab_size: int, tokenizer=None):
        self.marks = {kid: GreenlistWatermark(vocab_size, key) for kid, key in keyring.keys.items()}
        self.tokenizer = tokenizer

    def detect_text(self, text: str) -> Detection:
        """Every token of a text scored, without a model (offline checks, benches)."""
        return self.detect(self.tokenizer(text, add_special_tokens=False)["input_ids"], text_start=1)

    def detect(self, ids: list[int], choices: list[bool] | None = None, text_start: int = 1) -> Detection:
        """`ids`: a context's tokens (never scored), then the text's from `text_start` on; `choices[i]`: whether
        token i is scored (None: all of the text's). Too few tokens to score: too_short, or too_predictable when
        the text was long enough but the model had too few choices in it."""
        positions = range(max(1, text_start), len(ids))
        candidates = unique_pairs(ids, positions)
        pairs = candidates if choices is None else unique_pairs(ids, [i for i in positions if choices[i]])
        scored = len(pairs)
        if scored < MIN_TOKENS:
            verdict = "too_predictable" if len(candidates) >= MIN_TOKENS else "too_short"
            return Detection(None, verdict, None, None, scored, None)
        spread = math.sqrt(scored * GREENLIST_RATIO * (1 - GREENLIST_RATIO))
        best_green, best_key = -1, None
        for kid, mark in self.marks.items():
            green = sum(bool(mark.green_mask(previous)[token]) for previous, token in pairs)
            if green > best_green:
                best_green, best_key = green, kid
        best_z = (best_green - GREENLIST_RATIO * scored) / spread
        # The exact binomial tail, not the z-score's normal one: with few scored tokens the normal tail is
        # several times too small.
        p_single = binomial_tail(best_green, scored, GREENLIST_RATIO)
        p_value = min(1.0, len(self.marks) * p_single)
        marked = p_single <= P_THRESHOLD
        return Detection(
            marked,
            "watermarked" if marked else "not_watermarked",
            round(best_z, 3),
            p_value,
            scored,
            best_key if marked else None,
        )


def binomial_tail(successes: int, trials: int, rate: float) -> float:
    """P(X >= successes) for X ~ Binomial(trials, rate)."""
    return sum(math.comb(trials, k) * rate**k * (1 - rate) ** (trials - k) for k in range(successes, trials + 1))


def unique_pairs(ids: list[int], positions) -> list[tuple[int, int]]:
    """The (previous, token) pairs at `positions`, each once, in order."""
    return list(dict.fromkeys((ids[i - 1], ids[i]) for i in positions))


def has_choice(scores, threshold: float = ENTROPY_THRESHOLD):
    """Per row of next-token scores [rows, vocab]: whether their entropy (nats) reaches `threshold`. Only there
    does generation bias and detection count: where the model is all but certain, a bias can only push it off
    its word (a tiny model then glues pieces of two names into one), and the token carries no mark anyway."""
    import torch

    logprobs = torch.log_softmax(scores.float(), dim=-1)
    entropy = -torch.where(logprobs.isfinite(), logprobs.exp() * logprobs, 0.0).sum(-1)
    return entropy >= threshold


def choices(logits, threshold: float = ENTROPY_THRESHOLD) -> list[bool]:
    """For logits [tokens, vocab] (position i predicting token i + 1): whether the model had a real choice of
    each token. The first token has no prediction and is never a choice."""
    return [False, *has_choice(logits[:-1], threshold).tolist()]


def write_keyring(ring: Keyring) -> str:
    return json.dumps(ring.model_dump(), indent=2)
