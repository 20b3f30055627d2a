"""`python -m training detect`: the watermark check of /v1/detect, offline, for whoever holds the keyring."""

from __future__ import annotations

from pathlib import Path

from newsgen import prompt, watermark


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
    if model is None:  # no model: every token scored
        from training.tokenizer import TINY, base_tokenizer

        tokenizer = base_tokenizer(TINY)
        detector = watermark.Detector(ring, len(tokenizer), tokenizer)
        return [vars(detector.detect_text(text)) for text in texts]
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model, local_files_only=True, trust_remote_code=False)
    article_model = AutoModelForCausalLM.from_pretrained(model, local_files_only=True).eval()
    detector = watermark.Detector(ring, article_model.config.vocab_size)
    prompt_format = getattr(article_model.config, "prompt_format", 1)
    results = []
    for text in texts:  # as /v1/detect judges: the tokens where the article model had a choice
        ids, text_start = prompt.as_written(tokenizer, text, prompt_format)
        with torch.inference_mode():
            logits = article_model(input_ids=torch.tensor([ids[: article_model.config.n_positions]])).logits[0]
        results.append(vars(detector.detect(ids[: len(logits)], watermark.choices(logits), text_start)))
    return results
