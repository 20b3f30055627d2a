"""The model to fine-tune: a tiny GPT-2 from scratch, or a pretrained GPT-2 (hub name or local path)."""

from __future__ import annotations

import urllib.error
import urllib.request
from pathlib import Path

from newsgen.prompt import PROMPT_FORMAT, SEP
from training.tokenizer import TINY

# Small enough to train in minutes on a laptop CPU; big enough to learn the prompt format.
TINY_CONFIG = {"n_layer": 4, "n_head": 4, "n_embd": 128, "n_positions": 256}
# How long to wait for the hub before saying it is unreachable: an offline machine otherwise spends most of a
# minute in the hub client's retries before a raw OSError.
HUB_PROBE_TIMEOUT_S = 5.0
OFFLINE_ALTERNATIVES = "use --base tiny (a small GPT-2 trained from scratch, offline) or a local checkpoint directory"


class BaseUnavailable(Exception):
    """--base names a hub model that cannot be had here (offline, hub unreachable, not cached)."""


def check_base_available(base: str) -> None:
    """Fail in seconds, with one line, when --base is a hub name that cannot be loaded here; otherwise do
    nothing, and from_pretrained loads it as usual (from the hub, or from the local cache)."""
    if base == TINY or Path(base).expanduser().exists():
        return
    if base.startswith((".", "/", "~")):
        raise BaseUnavailable(f"--base {base}: no such directory")
    from huggingface_hub import constants, try_to_load_from_cache

    if isinstance(try_to_load_from_cache(base, "config.json"), str):
        return  # cached: loads without the hub
    if constants.HF_HUB_OFFLINE:
        raise BaseUnavailable(
            f"--base {base}: HF_HUB_OFFLINE is set and {base} is not in the Hugging Face cache "
            f"({constants.HF_HUB_CACHE}); {OFFLINE_ALTERNATIVES}"
        )
    url = f"{constants.ENDPOINT}/api/models/{base}"
    try:
        with urllib.request.urlopen(urllib.request.Request(url, method="HEAD"), timeout=HUB_PROBE_TIMEOUT_S):
            pass
    except urllib.error.HTTPError:
        return  # the hub answered (a name it does not know is from_pretrained's to explain)
    except (OSError, ValueError) as exc:  # URLError, timeouts, refused connections, a malformed HF_ENDPOINT
        reason = getattr(exc, "reason", None) or exc
        raise BaseUnavailable(
            f"--base {base}: the Hugging Face hub ({constants.ENDPOINT}) is unreachable ({reason}) and {base} is "
            f"not in the local cache; {OFFLINE_ALTERNATIVES}"
        ) from None


def build_model(base: str, tokenizer, *, seed: int = 42):
    from transformers import AutoModelForCausalLM, GPT2Config, GPT2LMHeadModel, set_seed

    if base == TINY:
        set_seed(seed)  # the random init is part of the run's reproducibility
        model = GPT2LMHeadModel(GPT2Config(vocab_size=len(tokenizer), **TINY_CONFIG))
    else:
        model = AutoModelForCausalLM.from_pretrained(base, trust_remote_code=False, use_safetensors=None)
        if model.config.model_type != "gpt2":
            raise ValueError(f"--base {base} is a {model.config.model_type} model; newsgen fine-tunes GPT-2")
    if model.get_input_embeddings().num_embeddings != len(tokenizer):
        model.resize_token_embeddings(len(tokenizer))
    model.config.bos_token_id = tokenizer.bos_token_id
    model.config.eos_token_id = tokenizer.eos_token_id
    model.config.pad_token_id = tokenizer.pad_token_id
    model.config.sep_token_id = tokenizer.convert_tokens_to_ids(SEP)
    model.config.prompt_format = PROMPT_FORMAT  # the format training writes (newsgen.prompt); serving reads it
    return model


def tuned_generation_config(task: str, tokenizer):
    """The decoding defaults that serving starts from (a request may override each)."""
    from transformers import GenerationConfig

    return GenerationConfig(
        do_sample=True,
        temperature=0.8,
        top_k=50,
        top_p=0.95,
        # The penalty covers the prompt too, and an article restates its headline: at 1.1 the demo article
        # model carried its headline's main noun into 72 of 100 articles, at 1.0 into 83 (bench/follow.py).
        # no_repeat_ngram_size still keeps an article from looping.
        repetition_penalty=1.1 if task == "headline" else 1.0,
        no_repeat_ngram_size=3,
        max_new_tokens=32 if task == "headline" else 160,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
