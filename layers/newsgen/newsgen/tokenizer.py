"""The serving tokenizer straight from an artifact's tokenizer.json, with the `tokenizers` library alone.

`transformers.AutoTokenizer` costs about 0.9 s of imports on a cold start; it wraps the same Rust tokenizer
that tokenizer.json describes, so this class calls that tokenizer directly and offers the part of
transformers' interface that serving uses: `tokenizer(texts, padding=True, return_tensors="pt")` with left
padding, `decode`, the special tokens and their ids. transformers' GPT-2 tokenizer (5.x) decodes with the Rust
decoder and never cleans up spaces for a BPE model, as this one does; tests/unit/test_tokenizer.py checks the
two give the same ids and texts. `load` returns transformers' tokenizer for an artifact without tokenizer.json
or with a model other than byte-level BPE.
"""

from __future__ import annotations

import bisect
import json
import threading
from collections.abc import Callable
from functools import cached_property
from pathlib import Path
from typing import Any

SPECIAL_NAMES = ("bos_token", "eos_token", "pad_token", "unk_token")


class Encoding(dict):
    """transformers' BatchEncoding as far as serving uses it: a dict of input_ids and attention_mask."""

    def to(self, device) -> Encoding:
        return Encoding({name: value.to(device) for name, value in self.items()})


def _byte_decoder() -> dict[str, int]:
    """GPT-2's byte-level alphabet (bytes_to_unicode) reversed: a token's characters to its bytes."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    chars, extra = {}, 0
    for byte in range(256):
        if byte in printable:
            chars[chr(byte)] = byte
        else:
            chars[chr(256 + extra)] = byte
            extra += 1
    return chars


class Tokenizer:
    padding_side = "left"  # decoder-only batches pad on the left so every row continues its prompt

    def __init__(self, backend, special_tokens: dict[str, str | None]):
        self.backend = backend
        self.bos_token, self.eos_token, self.pad_token, self.unk_token = (special_tokens.get(n) for n in SPECIAL_NAMES)
        self.bos_token_id, self.eos_token_id, self.pad_token_id, self.unk_token_id = (
            None if token is None else backend.token_to_id(token)
            for token in (self.bos_token, self.eos_token, self.pad_token, self.unk_token)
        )
        self._bytes: dict[int, bytes] = {}
        self._byte_decoder = _byte_decoder()
        self.special_ids = frozenset(
            i for i, added in backend.get_added_tokens_decoder().items() if getattr(added, "special", False)
        )
        self._vocabulary: ByteVocabulary | None = None
        self._vocabulary_lock = threading.Lock()

    def __len__(self) -> int:
        return int(self.backend.get_vocab_size(with_added_tokens=True))

    def get_vocab(self) -> dict[str, int]:
        return self.backend.get_vocab(with_added_tokens=True)

    def convert_tokens_to_ids(self, token: str) -> int | None:
        found = self.backend.token_to_id(token)
        return self.unk_token_id if found is None else found

    def __call__(
        self, text: str | list[str], add_special_tokens: bool = True, padding: bool = False, return_tensors=None
    ) -> Encoding:
        if isinstance(text, str):
            if return_tensors is not None:
                return self([text], add_special_tokens, padding, return_tensors)
            ids = self.backend.encode(text, add_special_tokens=add_special_tokens).ids
            return Encoding(input_ids=ids, attention_mask=[1] * len(ids))
        rows = [e.ids for e in self.backend.encode_batch(text, add_special_tokens=add_special_tokens)]
        masks = [[1] * len(ids) for ids in rows]
        if padding:
            if self.pad_token_id is None:
                raise ValueError("padding needs a pad_token")
            longest = max(map(len, rows), default=0)
            rows = [[self.pad_token_id] * (longest - len(ids)) + ids for ids in rows]
            masks = [[0] * (longest - len(mask)) + mask for mask in masks]
        if return_tensors is None:
            return Encoding(input_ids=rows, attention_mask=masks)
        if return_tensors != "pt":
            raise ValueError(f"return_tensors={return_tensors!r}: only 'pt' is supported")
        import torch

        return Encoding(input_ids=torch.tensor(rows, dtype=torch.long), attention_mask=torch.tensor(masks))

    def decode(self, ids, skip_special_tokens: bool = False) -> str:
        if isinstance(ids, int):
            ids = [ids]
        return self.backend.decode(list(ids), skip_special_tokens=skip_special_tokens)

    def token_bytes(self, token_id: int) -> bytes:
        """The bytes a token stands for, as transformers' StopStringCriteria reads a byte-level vocabulary:
        special tokens as their text."""
        found = self._bytes.get(token_id)
        if found is None:
            token = self.backend.id_to_token(token_id) or ""
            decoder = self._byte_decoder
            if all(char in decoder for char in token):
                found = bytes(decoder[char] for char in token)
            else:
                found = token.encode()
            self._bytes[token_id] = found
        return found

    def byte_vocabulary(self) -> ByteVocabulary:
        """This tokenizer's vocabulary as bytes, for newsgen.processors' constraints; made at no cost, its
        tables when first needed."""
        with self._vocabulary_lock:
            if self._vocabulary is None:
                self._vocabulary = ByteVocabulary(len(self), self.special_ids, self.token_bytes, self._all_token_bytes)
            return self._vocabulary

    def _all_token_bytes(self) -> list[bytes]:
        """Every token's bytes (as token_bytes gives them), in one pass over the vocabulary."""
        to_bytes = str.maketrans({char: chr(byte) for char, byte in self._byte_decoder.items()})
        table = [b""] * len(self)
        for token, token_id in self.get_vocab().items():
            if all(char in self._byte_decoder for char in token):
                table[token_id] = token.translate(to_bytes).encode("latin-1")
            else:
                table[token_id] = token.encode()
        return table


class ByteVocabulary:
    """A byte-level vocabulary as byte strings, for constraints on what the next token's bytes may be
    (newsgen.processors' token healing and CompleteCharacters). Special tokens never satisfy a constraint.

    Cold start matters, so nothing is built up front: one token's bytes are looked up when asked for, and the
    tables over the whole vocabulary (every token's bytes, their byte order, which tokens continue a character)
    are made the first time a request needs one and kept, the tokenizer's lifetime being the container's."""

    def __init__(
        self,
        size: int,
        special_ids: frozenset[int] | set[int],
        token_bytes: Callable[[int], bytes],
        all_token_bytes: Callable[[], list[bytes]],
    ):
        self.size = size
        self.special_ids = frozenset(special_ids)
        self._token_bytes = token_bytes
        self._all_token_bytes = all_token_bytes
        self._lock = threading.Lock()
        self._continuations: dict[int, Any] = {}
        self._word_starts: Any = None

    @classmethod
    def of(cls, table: list[bytes], special_ids: frozenset[int] | set[int] = frozenset()) -> ByteVocabulary:
        return cls(len(table), special_ids, table.__getitem__, lambda: list(table))

    def __len__(self) -> int:
        return self.size

    def bytes_of(self, token_id: int) -> bytes:
        """A token's bytes; b"" for an id past the tokenizer's vocabulary (a model's may be wider)."""
        return self._token_bytes(token_id) if 0 <= token_id < self.size else b""

    @cached_property
    def table(self) -> list[bytes]:
        """Every token's bytes: made once, about 50 ms for GPT-2's 50,260 tokens."""
        return self._all_token_bytes()

    @cached_property
    def _sorted(self) -> tuple[list[bytes], list[int]]:
        """The ordinary tokens' bytes in byte order and their ids: the tokens starting with some bytes are one
        run of it. About 20 ms for GPT-2's vocabulary."""
        table = self.table
        order = sorted((i for i in range(len(table)) if i not in self.special_ids and table[i]), key=table.__getitem__)
        return [table[i] for i in order], order

    def compatible(self, text: bytes) -> list[int]:
        """The ordinary tokens whose bytes start with `text` (they finish it, maybe with more after) or are a
        shorter prefix of it (the rest of `text` is then left for the next tokens)."""
        with self._lock:
            keys, ids = self._sorted
        if not text:
            return list(ids)
        found = self.starting_with(text)
        for length in range(1, len(text)):
            prefix = text[:length]
            at = bisect.bisect_left(keys, prefix)
            while at < len(keys) and keys[at] == prefix:
                found.append(ids[at])
                at += 1
        return found

    def starting_with(self, text: bytes) -> list[int]:
        """The ordinary tokens whose bytes start with `text` (non-empty), in byte order: `text` itself first."""
        with self._lock:
            keys, ids = self._sorted
        start = bisect.bisect_left(keys, text)
        end = bisect.bisect_right(keys, text, lo=start, key=lambda key: key[: len(text)])
        return ids[start:end]

    def word_starts(self):
        """A boolean tensor over the vocabulary: the ordinary tokens whose first byte is a letter, a digit or
        non-ASCII, which glue onto a word before them (token healing's word ends, newsgen.processors)."""
        with self._lock:
            if self._word_starts is None:
                import torch

                starts = [i not in self.special_ids and starts_word(token) for i, token in enumerate(self.table)]
                self._word_starts = torch.tensor(starts, dtype=torch.bool)
            return self._word_starts

    def continuations(self, pending: int):
        """A boolean tensor over the vocabulary: the ordinary tokens that can follow a character still missing
        `pending` (1-3) UTF-8 continuation bytes: they start with `pending` continuation bytes (or consist of
        fewer, all continuation bytes) and do not start another continuation byte after them."""
        with self._lock:
            found = self._continuations.get(pending)
            if found is None:
                import torch

                allowed = [
                    i not in self.special_ids
                    and bool(token)
                    and all(0x80 <= byte < 0xC0 for byte in token[:pending])
                    and (len(token) <= pending or not 0x80 <= token[pending] < 0xC0)
                    for i, token in enumerate(self.table)
                ]
                found = self._continuations[pending] = torch.tensor(allowed, dtype=torch.bool)
            return found


def starts_word(spelled: bytes) -> bool:
    """Whether bytes start with a letter, a digit or a non-ASCII byte: what a word is made of, for healing."""
    return bool(spelled) and (spelled[0] >= 0x80 or chr(spelled[0]).isalnum())


def special_ids(tokenizer) -> frozenset[int]:
    """The ids of a tokenizer's special tokens, newsgen's or transformers'."""
    own = getattr(tokenizer, "special_ids", None)
    return own if own is not None else frozenset(tokenizer.all_special_ids)


def byte_vocabulary(tokenizer) -> ByteVocabulary | None:
    """The byte vocabulary of a byte-level BPE tokenizer, newsgen's or transformers' fast one (the same Rust
    tokenizer underneath, cached on it); None for any other kind, which then gets neither token healing nor the
    UTF-8 constraint (its texts are still cleaned of U+FFFD, newsgen.generation)."""
    own = getattr(tokenizer, "byte_vocabulary", None)
    if own is not None:  # this module's tokenizer (or one that offers the same)
        return own()
    wrapped = getattr(tokenizer, "_newsgen_bytes", None)
    if wrapped is None:
        backend = getattr(tokenizer, "backend_tokenizer", None)
        if backend is None or (type(backend.model).__name__, type(backend.decoder).__name__) != ("BPE", "ByteLevel"):
            return None
        wrapped = Tokenizer(backend, {})
        tokenizer._newsgen_bytes = wrapped
    return wrapped.byte_vocabulary()


def _content(value: Any) -> str | None:
    return value.get("content") if isinstance(value, dict) else value


def special_tokens(path: Path) -> dict[str, str | None]:
    """The special tokens' texts as transformers reads them: tokenizer_config.json, then special_tokens_map.json."""
    tokens: dict[str, str | None] = {}
    for name in ("tokenizer_config.json", "special_tokens_map.json"):
        file = path / name
        if file.is_file():
            data = json.loads(file.read_text())
            tokens.update({k: _content(data[k]) for k in SPECIAL_NAMES if k in data})
    return tokens


def lightweight(path: Path) -> Tokenizer | None:
    """This module's tokenizer when the artifact ships a byte-level BPE tokenizer.json; None otherwise."""
    path = Path(path)
    file = path / "tokenizer.json"
    if not file.is_file():
        return None
    config_file = path / "tokenizer_config.json"
    config = json.loads(config_file.read_text()) if config_file.is_file() else {}
    if config.get("clean_up_tokenization_spaces_for_bpe_even_though_it_will_corrupt_output"):
        return None  # transformers would clean up spaces after decoding: leave that to it
    from tokenizers import Tokenizer as Backend

    backend = Backend.from_file(str(file))
    kinds = (type(backend.model).__name__, type(backend.decoder).__name__)
    if kinds != ("BPE", "ByteLevel") or backend.padding is not None:
        return None
    return Tokenizer(backend, special_tokens(path))


def load(path: Path):
    """The tokenizer of a verified artifact: this module's, else transformers' (no remote code, no network)."""
    found = lightweight(path)
    if found is not None:
        return found
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True, trust_remote_code=False)
    tokenizer.padding_side = "left"
    return tokenizer
