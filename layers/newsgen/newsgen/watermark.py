"""A statistical watermark on every generated text, and its detection.

The scheme is transformers' green-list watermark (Kirchenbauer et al. 2023, `WatermarkLogitsProcessor`,
"lefthash" seeding, context width 1): at each step a secret key and the previous token choose a quarter of the
vocabulary as "green", and green tokens get a bias (WATERMARK_BIAS, 4.0) on their logits, before temperature,
top-k and top-p (as in the paper's reference code: after them, a nucleus of one token leaves nothing to
bias, and the demo models' texts were not detectable at all). Detection (`WatermarkDetector`) counts green
tokens in a text and takes a one-sided z-test against the 25 % that unmarked text has; it needs the key and the
tokenizer, not the model, and does not depend on the bias.

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
MIN_TOKENS = 16  # fewer scored tokens than this: "too_short", no verdict
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
        return scores + masks.to(scores.dtype) * self.bias


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
        for row, previous in enumerate(input_ids[:, -1].tolist()):
            copies = self.copies[row].get(self._key(previous))
            if copies:
                marked[row, copies] = scores[row, copies] + self.watermark.bias
        return marked


@dataclass
class Detection:
    watermarked: bool | None  # None: too short to judge
    verdict: str  # watermarked | not_watermarked | too_short
    score: float | None  # z-score under the best-matching key
    p_value: float | None  # one-sided, adjusted for the number of keys tried
    tokens_scored: int
    key_id: str | None  # the key that matched, when watermarked


class Detector:
    """Green-list detection over every key of a keyring, with transformers' WatermarkDetector."""

    def __init__(self, keyring: Keyring, tokenizer, vocab_size: int):
        from transformers import GPT2Config
        from transformers.generation.watermarking import WatermarkDetector

        config = GPT2Config(vocab_size=vocab_size, bos_token_id=tokenizer.bos_token_id)
        self.tokenizer = tokenizer
        self.detectors = {
            kid: WatermarkDetector(
                config,
                "cpu",
                {
                    "greenlist_ratio": GREENLIST_RATIO,
                    "hashing_key": key,
                    "seeding_scheme": "lefthash",
                    "context_width": 1,
                },
                ignore_repeated_ngrams=True,
                max_cache_size=MASK_CACHE,
            )
            for kid, key in keyring.keys.items()
        }

    def detect(self, text: str) -> Detection:
        import torch

        ids = self.tokenizer(text, add_special_tokens=False)["input_ids"]
        if len(ids) < MIN_TOKENS + 1:
            return Detection(None, "too_short", None, None, max(0, len(ids) - 1), None)
        best = None
        for kid, detector in self.detectors.items():
            out: Any = detector(torch.LongTensor([ids]), z_threshold=Z_THRESHOLD, return_dict=True)
            z, scored = float(out.z_score[0]), int(out.num_tokens_scored[0])
            if best is None or z > best[0]:
                best = (z, scored, kid)
        assert best is not None  # a keyring has at least one key
        z, scored, kid = best
        if scored < MIN_TOKENS:  # repeated bigrams are scored once
            return Detection(None, "too_short", round(z, 3), None, scored, None)
        p_value = min(1.0, len(self.detectors) * 0.5 * math.erfc(z / math.sqrt(2)))
        marked = z >= Z_THRESHOLD
        return Detection(
            marked,
            "watermarked" if marked else "not_watermarked",
            round(z, 3),
            p_value,
            scored,
            kid if marked else None,
        )


def write_keyring(ring: Keyring) -> str:
    return json.dumps(ring.model_dump(), indent=2)
