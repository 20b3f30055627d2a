"""Training a small GPT-2 from scratch over only the tokens its corpus uses, served with GPT-2's whole vocabulary.

A 128-wide model spends almost all of its compute in the 50k-token softmax, on tokens a small corpus never
contains: the demo corpus uses about 2,000. The Trainer trains a model whose vocabulary is just those tokens
(the collator maps GPT-2 ids to compact ones); `expand` then writes an ordinary GPT-2 checkpoint with the full
vocabulary, in which every token the corpus never used gets one fixed logit, far below any other, whatever the
input: with the final layer norm's scale folded into the head, its output row is a constant c, and since the
norm's normalised output sums to zero over the width, the logit is c * sum(ln_f.bias), a constant. Input rows
of unused tokens are zero: the model has learned nothing about them.
"""

from __future__ import annotations

from pathlib import Path

from training.dataset import IGNORE_INDEX

# The logit of every token the corpus never used: with top-k and top-p, such a token is never sampled.
UNUSED_LOGIT = -50.0


def used_token_ids(tokenizer, *datasets: list[dict]) -> list[int]:
    """Every id in the examples, and every special token, sorted."""
    used = set(tokenizer.all_special_ids)
    for dataset in datasets:
        for example in dataset:
            used.update(example["input_ids"])
    return sorted(used)


class CompactCollator:
    """Pads a batch with `collator` (GPT-2 ids), then maps its input ids and labels to the compact vocabulary."""

    def __init__(self, collator, used_ids: list[int], vocab_size: int):
        import torch

        self.collator = collator
        self.lookup = torch.full((vocab_size,), -1, dtype=torch.long)
        self.lookup[torch.tensor(used_ids)] = torch.arange(len(used_ids))

    def __call__(self, features):
        import torch

        batch = self.collator(features)
        batch["input_ids"] = self.lookup[batch["input_ids"]]
        labels = batch["labels"]
        batch["labels"] = torch.where(labels == IGNORE_INDEX, labels, self.lookup[labels.clamp(min=0)])
        return batch


def compact_model(full_config, used_ids: list[int], seed: int):
    """A freshly initialised model of `full_config`'s shape over the compact vocabulary (tied, as GPT-2 is)."""
    from transformers import GPT2Config, GPT2LMHeadModel, set_seed

    set_seed(seed)
    special = dict.fromkeys(("bos_token_id", "eos_token_id", "pad_token_id", "sep_token_id"))  # GPT-2 ids: not here
    config = GPT2Config(
        **{**full_config.to_dict(), **special, "vocab_size": len(used_ids), "tie_word_embeddings": True}
    )
    return GPT2LMHeadModel(config)


def expand(compact, full_config, used_ids: list[int]):
    """The compact model as a GPT-2 over the full vocabulary (untied lm_head; see the module's docstring)."""
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    config = GPT2Config(**{**full_config.to_dict(), "tie_word_embeddings": False})
    with torch.no_grad():
        model = GPT2LMHeadModel(config)
        state = compact.state_dict()
        trained = state.pop("transformer.wte.weight")
        state.pop("lm_head.weight", None)
        model.load_state_dict(state, strict=False)
        model.transformer.wte.weight.zero_()
        model.transformer.wte.weight[used_ids] = trained
        model.lm_head.weight = torch.nn.Parameter(torch.zeros(config.vocab_size, config.n_embd))
        model.lm_head.weight[used_ids] = trained
        floor_unused(model, used_ids)
    model.generation_config = compact.generation_config
    suppress_unused(model, used_ids)
    return model.eval()


def suppress_unused(model, used_ids: list[int]) -> None:
    """List the unused tokens in the generation config, so that no decoding writes them. The fixed logit alone
    does not hold in int8: activations quantised per tensor move it by tens of nats."""
    used = set(used_ids)
    model.generation_config.suppress_tokens = [t for t in range(model.config.vocab_size) if t not in used]


def floor_unused(model, used_ids: list[int]) -> None:
    """Give every token outside `used_ids` the logit UNUSED_LOGIT, whatever the input (see the module's
    docstring). The final layer norm's scale is folded into the lm_head first (exact: the norm feeds only the
    head), so that the unused rows are one constant: per-row int8 quantisation keeps such a row exact, where
    rows of c / ln_f.weight lost the floor to rounding."""
    import torch

    norm, head = model.transformer.ln_f, model.lm_head.weight
    with torch.no_grad():
        gamma = norm.weight.clone()
        if gamma.abs().min() < 1e-3:
            raise ValueError("the final layer norm has a scale near zero: it cannot be folded into the head")
        head.mul_(gamma)
        norm.bias.div_(gamma)
        norm.weight.fill_(1.0)
        constant = float(norm.bias.sum())
        if abs(constant) < 1e-6:  # no constant row gives a fixed logit; every trained layer norm has one
            raise ValueError("the final layer norm leaves no fixed logit for unused tokens")
        unused = torch.ones(head.shape[0], dtype=torch.bool)
        unused[used_ids] = False
        head[unused] = UNUSED_LOGIT / constant


def expand_saved(output: Path, full_config, used_ids: list[int]) -> None:
    """Replace the compact checkpoint the Trainer saved in `output` by its full-vocabulary form."""
    from transformers import GPT2LMHeadModel

    compact = GPT2LMHeadModel.from_pretrained(output, local_files_only=True)
    expand(compact, full_config, used_ids).save_pretrained(output)
