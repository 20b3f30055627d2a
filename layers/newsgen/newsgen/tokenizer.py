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

import json
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
