"""Generation: batched prompts with left padding, `n` results per prompt in one call, defaults from the
artifact's generation_config, a time budget, stop sequences and finish reasons. Greedy and sampling run in
a decode loop over the KV cache with newsgen.processors (transformers' logits processors written out on torch);
beam search uses transformers' `generate()` on a transformers model (LoadedModel.transformers_model)."""

from __future__ import annotations

import secrets
import threading
from dataclasses import dataclass, field
from typing import Any

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
    stop: list[str] = field(default_factory=list)

    def effective(self) -> dict:
        """What produced these texts, as provenance states it: the decoding parameters, the seed where
        sampled, and the stop sequences where given."""
        return {
            **self.parameters,
            **({"seed": self.seed} if self.seed is not None else {}),
            **({"stop": self.stop} if self.stop else {}),
        }


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
    watermark=None,
) -> Generation:
    """`watermark`: a logits processor (newsgen.watermark) applied at every step before the sampling warpers."""
    import torch

    params = params or GenerationParameters()
    tokenizer, model = loaded.tokenizer, loaded.model
    decoding = effective_parameters(loaded, params)
    if decoding["num_beams"] > 1 and n > decoding["num_beams"]:
        raise InvalidRequest(f"n={n} needs num_beams >= n with beam search (num_beams={decoding['num_beams']})")
    if n > 1 and decoding["num_beams"] == 1 and not decoding.get("do_sample"):
        raise InvalidRequest(f"n={n} with greedy decoding would repeat one text; set do_sample=true or num_beams >= n")

    # On the model's device: the CPU in Lambda; a GPU where one serves (bench/gpu.py).
    encoded = tokenizer(prompts, return_tensors="pt", padding=True, add_special_tokens=False).to(model.device)
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
    extra: dict[str, Any] = {}
    if params.stop:
        extra.update(stop_strings=params.stop, tokenizer=tokenizer)
    if time_budget_s is not None:
        extra["max_time"] = max(time_budget_s, 0.0)

    if decoding["num_beams"] > 1:  # outside inference mode: a model loaded inside could not be quantised
        beam_model, beam_tokenizer = loaded.transformers_model()
        if params.stop:
            extra["tokenizer"] = beam_tokenizer
    with _generate_lock, torch.inference_mode():
        if seed is not None:
            torch.manual_seed(seed)
        try:
            if decoding["num_beams"] == 1:
                new_tokens, logprobs = _decode(model, tokenizer, encoded, decoding, n, params, time_budget_s, watermark)
            else:
                new_tokens, logprobs = _beam_search(
                    beam_model, tokenizer, encoded, decoding, n, params, extra, watermark
                )
        except RuntimeError as exc:
            if "probability tensor" not in str(exc):
                raise
            # Extreme but valid-looking settings (a huge penalty with a tiny top_p …) can leave no token.
            raise InvalidRequest(f"these decoding parameters leave no token to sample: {decoding}") from None
    results = [
        _result(tokenizer, new_tokens[row].tolist(), decoding["max_new_tokens"], params, logprobs, row)
        for row in range(new_tokens.shape[0])
    ]
    grouped = [results[i * n : (i + 1) * n] for i in range(len(prompts))]
    return Generation(results=grouped, parameters=decoding, seed=seed, stop=list(params.stop))


def _processors(decoding: dict, watermark=None):
    """transformers' logits processors (newsgen.processors), in generate()'s order, with the watermark before
    the warpers."""
    from newsgen import processors as p

    processors = p.Processors()
    if decoding.get("repetition_penalty", 1.0) != 1.0:
        processors.append(p.repetition_penalty(decoding["repetition_penalty"]))
    if decoding.get("no_repeat_ngram_size"):
        processors.append(p.no_repeat_ngram(decoding["no_repeat_ngram_size"]))
    if watermark is not None:  # before the sampling warpers: a top-p nucleus of one token leaves nothing to bias
        processors.append(watermark)
    if decoding.get("do_sample"):
        if decoding.get("temperature", 1.0) != 1.0:
            processors.append(p.temperature(decoding["temperature"]))
        if decoding.get("top_k"):
            processors.append(p.top_k(decoding["top_k"]))
        if decoding.get("top_p", 1.0) < 1.0:
            processors.append(p.top_p(decoding["top_p"]))
    return processors


def _stop_criteria(tokenizer, stop: list[str]):
    """Stop strings: newsgen.processors' for newsgen.tokenizer's byte-level tokenizer, else transformers'."""
    if hasattr(tokenizer, "token_bytes"):
        from newsgen.processors import StopStrings

        return StopStrings(tokenizer, stop)
    from transformers import StopStringCriteria

    return StopStringCriteria(tokenizer, stop)


def _decode(
    model, tokenizer, encoded, decoding: dict, n: int, params: GenerationParameters, time_budget_s, watermark=None
):
    """Greedy or sampled decoding over the KV cache with newsgen.processors.

    Written out rather than calling generate(): per token it skips generate's general-purpose bookkeeping,
    measured 149 vs 128 tok/s (distilgpt2 shape, int8, batch 1, 2 CPU cores). Beam search still uses generate().
    Returns (new tokens [rows, steps] padded after each row's end, logprobs [rows, steps] or None).
    """
    import time

    import torch

    input_ids = encoded["input_ids"].repeat_interleave(n, dim=0)
    attention = encoded["attention_mask"].repeat_interleave(n, dim=0)
    positions = (attention.cumsum(-1) - 1).clamp(min=0)  # left padding: real tokens count from 0
    rows, eos, pad = input_ids.shape[0], tokenizer.eos_token_id, tokenizer.pad_token_id
    processors = _processors(decoding, watermark)
    stop = _stop_criteria(tokenizer, params.stop) if params.stop else None
    deadline = time.monotonic() + time_budget_s if time_budget_s is not None else None
    unfinished = torch.ones(rows, dtype=torch.bool, device=input_ids.device)
    sequences, chosen, logprobs = input_ids, [], []
    prefill: dict[str, Any] = {"input_ids": input_ids, "attention_mask": attention, "position_ids": positions}
    if hasattr(model, "new_cache"):  # newsgen.gpt2: a cache of exactly the positions this call will fill
        prefill["cache"] = model.new_cache(rows, input_ids.shape[1] + decoding["max_new_tokens"])
    out = model(**prefill, use_cache=True, logits_to_keep=1)
    for step in range(decoding["max_new_tokens"]):
        scores = processors(sequences, out.logits[:, -1, :].float())
        if step == 0:
            scores[:, eos] = float("-inf")  # an empty headline or article is no answer: at least one token
        if decoding.get("do_sample"):
            token = torch.multinomial(torch.softmax(scores, dim=-1), num_samples=1).squeeze(1)
        else:
            token = scores.argmax(dim=-1)
        token = torch.where(unfinished, token, pad)
        if params.details:
            logprobs.append(torch.log_softmax(scores, dim=-1).gather(1, token[:, None]).squeeze(1))
        chosen.append(token)
        sequences = torch.cat([sequences, token[:, None]], dim=1)
        unfinished &= token != eos
        if stop is not None:
            unfinished &= ~stop(sequences, None)
        if not unfinished.any() or step + 1 == decoding["max_new_tokens"]:
            break
        if deadline is not None and time.monotonic() >= deadline:
            break
        attention = torch.cat([attention, attention.new_ones((rows, 1))], dim=1)
        positions = positions[:, -1:] + 1
        out = model(
            input_ids=token[:, None], attention_mask=attention, position_ids=positions, use_cache=True, **_cache_of(out)
        )
    new_tokens = torch.stack(chosen, dim=1)
    return new_tokens, (torch.stack(logprobs, dim=1) if params.details else None)


def _cache_of(out) -> dict:
    """The KV cache to pass back: transformers names it `cache` (in and out) from 5.2x on, `past_key_values`
    before, and a model given the other name ignores it silently."""
    if hasattr(out, "cache"):
        return {"cache": out.cache}
    return {"past_key_values": out.past_key_values}


def _beam_search(
    model, tokenizer, encoded, decoding: dict, n: int, params: GenerationParameters, extra: dict, watermark=None
):
    from transformers import LogitsProcessorList

    output = model.generate(
        **encoded,
        **decoding,
        **extra,
        logits_processor=LogitsProcessorList([watermark] if watermark is not None else []),
        num_return_sequences=n,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        return_dict_in_generate=True,
        output_scores=params.details,
    )
    new_tokens = output.sequences[:, encoded["input_ids"].shape[1] :]
    logprobs = None
    if params.details:
        logprobs = model.compute_transition_scores(
            output.sequences, output.scores, getattr(output, "beam_indices", None), normalize_logits=True
        )
    return new_tokens, logprobs


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
