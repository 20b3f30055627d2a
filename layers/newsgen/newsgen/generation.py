"""Generation with Hugging Face `generate`: batched prompts with left padding, `n` results per prompt in one
call, defaults from the artifact's generation_config, a time budget, stop sequences and finish reasons."""

from __future__ import annotations

import secrets
import threading
from dataclasses import dataclass

from newsgen.errors import InvalidRequest
from newsgen.schemas import GeneratedText, GenerationParameters, TokenDetail
from newsgen.store import LoadedModel

# One generate at a time per process: torch already uses every core, and the global RNG that `seed`
# sets must not be shared by two requests.
_generate_lock = threading.Lock()

DECODING_FIELDS = (
    "max_new_tokens",
    "do_sample",
    "temperature",
    "top_k",
    "top_p",
    "repetition_penalty",
    "no_repeat_ngram_size",
    "num_beams",
)


@dataclass
class Generation:
    results: list[list[GeneratedText]]  # one list of n results per prompt
    parameters: dict  # the effective decoding parameters
    seed: int | None


def effective_parameters(loaded: LoadedModel, params: GenerationParameters) -> dict:
    """The request's parameters over the model's generation_config defaults."""
    defaults = loaded.model.generation_config
    merged = {name: getattr(defaults, name, None) for name in DECODING_FIELDS}
    merged.update({k: v for k, v in params.model_dump(include=set(DECODING_FIELDS)).items() if v is not None})
    merged["num_beams"] = merged.get("num_beams") or 1
    merged["max_new_tokens"] = merged.get("max_new_tokens") or 32
    if not merged.get("do_sample"):
        # Greedy or beam search ignore these; dropping them keeps transformers from warning per call.
        for name in ("temperature", "top_k", "top_p"):
            merged.pop(name, None)
    return {k: v for k, v in merged.items() if v is not None}


def generate(
    loaded: LoadedModel,
    prompts: list[str],
    *,
    n: int = 1,
    params: GenerationParameters | None = None,
    time_budget_s: float | None = None,
) -> Generation:
    import torch

    params = params or GenerationParameters()
    tokenizer, model = loaded.tokenizer, loaded.model
    decoding = effective_parameters(loaded, params)
    if decoding["num_beams"] > 1 and n > decoding["num_beams"]:
        raise InvalidRequest(f"n={n} needs num_beams >= n with beam search (num_beams={decoding['num_beams']})")
    if n > 1 and decoding["num_beams"] == 1 and not decoding.get("do_sample"):
        raise InvalidRequest(f"n={n} with greedy decoding would repeat one text; set do_sample=true or num_beams >= n")

    encoded = tokenizer(prompts, return_tensors="pt", padding=True, add_special_tokens=False)
    lengths = encoded["attention_mask"].sum(dim=1).tolist()
    longest = max(lengths)
    if longest + decoding["max_new_tokens"] > loaded.context_length:
        raise InvalidRequest(
            f"prompt of {longest} tokens + max_new_tokens {decoding['max_new_tokens']} exceeds the model's "
            f"context of {loaded.context_length} tokens",
            prompt_tokens=longest,
            context_length=loaded.context_length,
        )

    seed = None
    if decoding.get("do_sample"):
        seed = params.seed if params.seed is not None else secrets.randbelow(2**31)
    extra = {}
    if params.stop:
        extra.update(stop_strings=params.stop, tokenizer=tokenizer)
    if time_budget_s is not None:
        extra["max_time"] = max(time_budget_s, 0.0)

    with _generate_lock, torch.inference_mode():
        if seed is not None:
            torch.manual_seed(seed)
        try:
            output = model.generate(
                **encoded,
                **decoding,
                **extra,
                num_return_sequences=n,
                pad_token_id=tokenizer.pad_token_id,
                eos_token_id=tokenizer.eos_token_id,
                return_dict_in_generate=True,
                output_scores=params.details,
            )
        except RuntimeError as exc:
            if "probability tensor" not in str(exc):
                raise
            # Extreme but valid-looking settings (a huge penalty with a tiny top_p …) can leave no token.
            raise InvalidRequest(f"these decoding parameters leave no token to sample: {decoding}") from None
    new_tokens = output.sequences[:, encoded["input_ids"].shape[1] :]
    logprobs = None
    if params.details:
        logprobs = model.compute_transition_scores(
            output.sequences, output.scores, getattr(output, "beam_indices", None), normalize_logits=True
        )
    results = [
        _result(tokenizer, new_tokens[row].tolist(), decoding["max_new_tokens"], params, logprobs, row)
        for row in range(new_tokens.shape[0])
    ]
    grouped = [results[i * n : (i + 1) * n] for i in range(len(prompts))]
    return Generation(results=grouped, parameters=decoding, seed=seed)


def _result(tokenizer, ids: list[int], max_new_tokens: int, params, logprobs, row: int) -> GeneratedText:
    eos, pad = tokenizer.eos_token_id, tokenizer.pad_token_id
    finish_reason = None
    if eos in ids:
        ids = ids[: ids.index(eos) + 1]
        finish_reason = "eos_token"
    else:
        while ids and ids[-1] == pad:  # rows that finished earlier are padded to the batch's length
            ids.pop()
    text = tokenizer.decode(ids, skip_special_tokens=True)
    if finish_reason is None:
        cut = min((text.find(s) for s in params.stop if s in text), default=-1)
        if cut >= 0:
            text, finish_reason = text[:cut], "stop_sequence"
        elif len(ids) >= max_new_tokens:
            finish_reason = "length"
        else:
            finish_reason = "time"
    tokens = None
    if params.details:
        tokens = [
            TokenDetail(id=tid, text=tokenizer.decode([tid]), logprob=_finite(logprobs[row, i].item()))
            for i, tid in enumerate(ids)
        ]
    return GeneratedText(text=text, finish_reason=finish_reason, generated_tokens=len(ids), tokens=tokens)


def _finite(value: float) -> float | None:
    return value if value == value and abs(value) != float("inf") else None
