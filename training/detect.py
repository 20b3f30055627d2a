"""`python -m training detect`: the watermark check of /v1/detect, offline, for whoever holds the keyring."""

from __future__ import annotations

import json
from pathlib import Path

from newsgen import watermark


def detect(
    texts: list[str],
    *,
    keys_file: Path | None = None,
    keys_parameter: str | None = None,
    keys_secret: str | None = None,
    model: Path | None = None,
) -> list[dict]:
    if keys_file is not None and not Path(keys_file).is_file():
        raise FileNotFoundError(
            f"--keys-file {keys_file}: no such file (make run creates .newsgen/watermark-keys.json)"
        )
    ring = watermark.load_keyring(keys_parameter or "", keys_file, secret=keys_secret or "")
    if model is not None:
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(model, local_files_only=True, trust_remote_code=False)
        vocab_size = json.loads((Path(model) / "config.json").read_text())["vocab_size"]
    else:
        from training.tokenizer import TINY, base_tokenizer

        tokenizer = base_tokenizer(TINY)
        vocab_size = len(tokenizer)
    detector = watermark.Detector(ring, tokenizer, vocab_size)
    return [vars(detector.detect(text)) for text in texts]
