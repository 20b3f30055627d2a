"""The logits processors and stop strings of newsgen.generation's decode loop, on torch alone.

Each computes what its transformers namesake computes, op for op (tests/unit/test_processors.py compares them on
random scores: equal tensors); importing them costs nothing, where `transformers.generation` costs about 0.8 s on
a cold start. Beam search still runs transformers' generate() with its own.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

Processor = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def repetition_penalty(penalty: float) -> Processor:
    """RepetitionPenaltyLogitsProcessor: every token already in the sequence (prompt included) divided by the
    penalty where its score is positive, multiplied where negative."""

    def apply(input_ids, scores):
        vocab_size = scores.shape[-1]
        ids = input_ids.clamp(max=vocab_size)
        padded = torch.nn.functional.pad(scores, (0, 1))
        score = torch.gather(padded, 1, ids)
        score = torch.where(score < 0, score * penalty, score / penalty)
        return padded.scatter(1, ids, score)[..., :vocab_size]

    return apply


def no_repeat_ngram(size: int) -> Processor:
    """NoRepeatNGramLogitsProcessor: a token that would complete an n-gram already in the sequence gets -inf."""

    def apply(input_ids, scores):
        length = input_ids.shape[-1]
        if length < size:
            return scores
        prefix = input_ids[:, length + 1 - size :]
        windows = input_ids.unfold(dimension=1, size=size, step=1)
        matches = (windows[..., :-1] == prefix.unsqueeze(1)).all(dim=-1)
        vocab_size = scores.shape[-1]
        banned = scores.new_zeros((scores.shape[0], vocab_size + 1), dtype=torch.bool)
        banned.scatter_(1, torch.where(matches, windows[..., -1].clamp(max=vocab_size), vocab_size), True)
        return scores.masked_fill(banned[:, :vocab_size], -float("inf"))

    return apply


def temperature(value: float) -> Processor:
    return lambda input_ids, scores: scores / value


def top_k(k: int) -> Processor:
    """TopKLogitsWarper: scores below the k-th largest become -inf."""

    def apply(input_ids, scores):
        kept = min(k, scores.size(-1))
        return scores.masked_fill(scores < torch.topk(scores, kept)[0][..., -1, None], -float("inf"))

    return apply


def top_p(p: float) -> Processor:
    """TopPLogitsWarper: the smallest set of tokens whose probabilities reach p (at least one) is kept."""

    def apply(input_ids, scores):
        sorted_logits, sorted_indices = torch.sort(scores, descending=False)
        cumulative = sorted_logits.softmax(dim=-1).cumsum(dim=-1)
        remove = cumulative <= (1 - p)
        remove[..., -1:] = 0
        return scores.masked_fill(remove.scatter(1, sorted_indices, remove), -float("inf"))

    return apply


class Processors(list):
    """LogitsProcessorList's call: each processor in turn."""

    def __call__(self, input_ids, scores):
        for processor in self:
            scores = processor(input_ids, scores)
        return scores


class StopStrings:
    """transformers' StopStringCriteria for a byte-level tokenizer (newsgen.tokenizer's): a row stops when one of
    the stop strings, as UTF-8 bytes, ends inside the row's last token, wherever it starts (in earlier tokens,
    the prompt included). The library precomputes a table over the whole vocabulary per set of stop strings;
    this reads the few last tokens' bytes per step instead."""

    def __init__(self, tokenizer, stop_strings: Sequence[str]):
        self.token_bytes = tokenizer.token_bytes
        self.stops = [s.encode() for s in stop_strings if s]
        self.longest = max((len(s) for s in self.stops), default=0)

    def __call__(self, input_ids, scores=None) -> torch.Tensor:
        done = [self._row(row) for row in input_ids[:, -max(self.longest, 1) :].tolist()]
        return torch.tensor(done, dtype=torch.bool, device=input_ids.device)

    def _row(self, ids: list[int]) -> bool:
        if not ids:
            return False
        last = self.token_bytes(ids[-1])
        before = b""
        for token in reversed(ids[:-1]):  # enough bytes before the last token for the longest stop string
            if len(before) >= self.longest - 1:
                break
            before = self.token_bytes(token) + before
        for stop in self.stops:
            # Only the stop's length less one byte of what precedes the last token: a match ends inside it.
            window = before[-(len(stop) - 1) :] if len(stop) > 1 else b""
            if stop in window + last:
                return True
        return False
