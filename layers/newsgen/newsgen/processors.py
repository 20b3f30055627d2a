"""The logits processors and stop strings of newsgen.generation's decode loop, on torch alone.

Each computes what its transformers namesake computes, op for op (tests/unit/test_processors.py compares them on
random scores: equal tensors); importing them costs nothing, where `transformers.generation` costs about 0.8 s on
a cold start. Beam search still runs transformers' generate() with its own.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from newsgen.tokenizer import starts_word

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


def suppress(token_ids: Sequence[int]) -> Processor:
    """SuppressTokensLogitsProcessor: these tokens never come (a model trained over a compact vocabulary lists
    the rest of GPT-2's in its generation_config); a row the constraints left only such tokens keeps them."""
    banned = torch.tensor(list(token_ids), dtype=torch.long)

    def apply(input_ids, scores):
        kept = scores.index_fill(-1, banned.to(scores.device), -float("inf"))
        return torch.where(torch.isinf(kept).all(-1, keepdim=True), scores, kept)

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


class TokenHealing:
    """Token healing (as the `guidance` project does it): generation's prompts were backed up by their last
    token(s) (newsgen.generation.heal_prompt), and each row's first generated tokens must spell the removed
    bytes again: a token that starts with what is left of them (it may go on: "Storm" → "Storms"), or one that is
    a shorter prefix of it (the rest is then asked of the next token). So the model, not the cut of the prompt,
    decides where the prompt's last word ends, and a prompt ending in a space continues with a word that the
    tokenizer would have put after it (" say"), not a second space (tokens of spaces alone are not offered then).

    Stateless over the rows' tokens since `prompt_width`, so beam search's reordering of its beams is no matter.
    `removed[row]`: the bytes backed up from that row's prompt (b"" for none)."""

    def __init__(self, vocabulary, removed: Sequence[bytes], prompt_width: int):
        self.vocabulary = vocabulary
        self.removed = list(removed)
        self.prompt_width = prompt_width
        self.longest = max((len(r) for r in self.removed), default=0)
        self._allowed: dict[bytes, torch.Tensor] = {}

    def left(self, removed: bytes, generated: list[int]) -> bytes:
        """What of `removed` the tokens generated so far have not yet spelled (b"" once done)."""
        for token in generated:
            if not removed:
                break
            spelled = self.vocabulary.bytes_of(token)
            if spelled.startswith(removed):
                return b""
            if not spelled or not removed.startswith(spelled):
                return b""  # not a constrained choice (a padded, finished row): nothing left to heal
            removed = removed[len(spelled) :]
        return removed

    def __call__(self, input_ids, scores):
        steps = input_ids.shape[1] - self.prompt_width
        if steps >= self.longest:  # each token spells at least one byte: every row is healed by now
            return scores
        generated = input_ids[:, self.prompt_width :].tolist()
        blocked = None
        for row, removed in enumerate(self.removed):
            left = self.left(removed, generated[row]) if removed else b""
            if not left:
                continue
            allowed = self._allowed.get(left)
            if allowed is None:
                compatible = self.vocabulary.compatible(left)
                if left.isspace():
                    # A prompt that ends in a space asks for the next word: a token of spaces alone (" " itself,
                    # then " say") would bring back the double space that healing is for.
                    compatible = [t for t in compatible if not self.vocabulary.bytes_of(t).isspace()] or compatible
                allowed = self._allowed[left] = torch.tensor(compatible, dtype=torch.long)
            if blocked is None:
                blocked = torch.zeros_like(scores, dtype=torch.bool)
            blocked[row] = True
            blocked[row, allowed.to(scores.device)] = False
        return scores if blocked is None else scores.masked_fill(blocked, -float("inf"))


# A reading of a prompt's last word as going on counts only its likeliest continuations, this many; each one's
# tokenization is checked (one batched tokenizer call), and the rest of its probability is too little to matter.
WORD_CANDIDATES = 64


@dataclass(frozen=True)
class WordReading:
    """How the model reads a prompt's last word (read_words): `typed`, the tokens that spelled it, backed up from
    the prompt; whether it `goes_on` into a longer word; and at each point s of the typed tokens (0 … len(typed))
    the tokens by which the reading leaves them (`leaving[s]`): a token that covers typed[s:] and goes on or ends
    the word, or after all of them the next token; None there: any token that starts no word."""

    typed: tuple[int, ...]
    goes_on: bool
    leaving: tuple[tuple[int, ...] | None, ...]


def covering(vocabulary, rest: Sequence[int], goes_on: bool) -> list[int]:
    """The tokens that cover the typed tokens `rest` (some) and more, after which the word goes on (a letter,
    digit or non-ASCII byte follows in the token) or ends (anything else follows)."""
    typed, found = b"".join(vocabulary.bytes_of(token) for token in rest), []
    for token in vocabulary.starting_with(typed):
        after = vocabulary.bytes_of(token)[len(typed) :]
        if after and starts_word(after) == goes_on:
            found.append(token)
    return found


def word_start_mask(vocabulary, width: int, device) -> torch.Tensor:
    """The tokens that start a word (ByteVocabulary.word_starts) over a model's `width` ids (wider than the
    tokenizer's: those start none)."""
    starts = vocabulary.word_starts()[:width]
    return torch.nn.functional.pad(starts, (0, width - len(starts))).to(device)


def read_words(vocabulary, typed: list[tuple[int, ...]], logprobs: torch.Tensor, spells: Callable) -> list[WordReading]:
    """Whether the model reads each prompt, ending in the word tokens typed[row], as ending inside a longer word.
    `logprobs[row, -1]`: the model's log-probabilities of the token after the whole prompt; logprobs[row, -1 - j]
    those after the prompt less its last j tokens. Each reading sums the paths that follow the typed tokens up to
    a point and leave them there (WordReading.leaving). A longer word counts only in the tokenization the model
    learned it in: `spells(ids_list)` says for each whether the tokenizer spells its text so (" Satellite" +
    "ment" is not how "Satellitement" is tokenized, so a model that puts "ment" after a " Satellite" it never
    learned does not extend it; " Storm" + "s" is how "Storms" is)."""
    glue = word_start_mask(vocabulary, logprobs.shape[-1], logprobs.device)
    final = logprobs[:, -1]
    endings = final.masked_fill(glue, -float("inf")).logsumexp(-1).tolist()
    starts = final.masked_fill(~glue, -float("inf")).topk(min(WORD_CANDIDATES, int(glue.sum())), dim=-1)
    words = [
        _Word(
            vocabulary, tokens, logprobs[row, -len(tokens) - 1 :], endings[row], starts.values[row], starts.indices[row]
        )
        for row, tokens in enumerate(typed)
    ]
    spelled = iter(spells([[*w.typed[:s], token] for w in words for _, s, token in w.candidates]))
    return [w.reading([next(spelled) for _ in w.candidates]) for w in words]


class _Word:
    """One prompt's last word for read_words: `path[s]`, the log-probability of its first s typed tokens; the
    log-probability that it ends as typed; and the likeliest paths into a longer word, (log-probability, point,
    token), the likeliest first."""

    def __init__(self, vocabulary, typed: tuple[int, ...], logprobs, ending: float, starts, start_ids):
        k = len(typed)
        self.typed = typed
        self.path = torch.cat([logprobs.new_zeros(1), logprobs[list(range(k)), list(typed)].cumsum(0)]).tolist()
        # It ends: after all typed tokens a token that starts no word, or earlier one covering the rest that ends it.
        self.ends = [covering(vocabulary, typed[s:], False) for s in range(k)]
        ended = [self.path[s] + logprobs[s, ids].logsumexp(0).item() for s, ids in enumerate(self.ends) if ids]
        self.ending = _logsumexp([self.path[k] + ending, *ended])
        # It goes on: after all typed tokens a token that starts a word, or earlier one covering the rest and more.
        found = [(self.path[k] + v, k, t) for v, t in zip(starts.tolist(), start_ids.tolist(), strict=True)]
        for s in range(k):
            ids = covering(vocabulary, typed[s:], True)
            found += [(self.path[s] + v, s, t) for v, t in zip(logprobs[s, ids].tolist(), ids, strict=True)]
        self.candidates = sorted(found, reverse=True)[:WORD_CANDIDATES]

    def reading(self, spelled: list[bool]) -> WordReading:
        """The likelier reading, counting only the longer words that the tokenizer spells as their paths do."""
        longer = [c for c, ok in zip(self.candidates, spelled, strict=True) if ok]
        if not longer or _logsumexp([c[0] for c in longer]) <= self.ending:
            return WordReading(self.typed, False, (*(tuple(ids) for ids in self.ends), None))
        points = range(len(self.typed) + 1)
        return WordReading(self.typed, True, tuple(tuple(t for _, p, t in longer if p == s) for s in points))


def _logsumexp(values: list[float]) -> float:
    return torch.tensor(values, dtype=torch.float64).logsumexp(0).item()


class WordEnds:
    """Token healing for a prompt that ends in a word ("Bakery workers", "Gov"): the model has read the word
    beforehand (read_words), and the first generated tokens keep to its reading: the typed tokens again until a
    token of the reading leaves them. Offered every token that starts with the typed text or a prefix of it
    (TokenHealing), a small model finds spellings that its training text never had and glues letters on
    ("Satell" + "itect" for "Satellite", "workers" + "s"); a word as typed is now extended only where the model
    finds a longer word likelier, spelled as its tokenizer spells it.

    `readings[row]`: that row's WordReading, None for a row not healed at a word end. Stateless over the rows'
    tokens since `prompt_width`, as TokenHealing."""

    def __init__(self, vocabulary, readings: Sequence[WordReading | None], prompt_width: int):
        self.vocabulary = vocabulary
        self.readings = list(readings)
        self.prompt_width = prompt_width
        self.longest = max((len(r.typed) for r in self.readings if r), default=-1)
        self._starts: torch.Tensor | None = None

    def allowed(self, reading: WordReading, step: int) -> list[int] | None:
        """The reading's tokens at this point and the next typed token while the reading leaves them later; None:
        any token that starts no word."""
        leaving = reading.leaving[step]
        if leaving is None:
            return None
        later = any(tokens is None or tokens for tokens in reading.leaving[step + 1 :])
        return [*leaving, reading.typed[step]] if later else list(leaving)

    def __call__(self, input_ids, scores):
        steps = input_ids.shape[1] - self.prompt_width
        if steps > self.longest:
            return scores
        generated = input_ids[:, self.prompt_width :].tolist()
        blocked = None
        for row, reading in enumerate(self.readings):
            if reading is None or tuple(generated[row]) != reading.typed[:steps]:
                continue  # not a word end, or the reading has left the typed tokens: it is spelled
            if blocked is None:
                blocked = torch.zeros_like(scores, dtype=torch.bool)
            allowed = self.allowed(reading, steps)
            if allowed is None:
                if self._starts is None:
                    self._starts = word_start_mask(self.vocabulary, scores.shape[1], scores.device)
                blocked[row] = self._starts
            else:
                blocked[row] = True
                blocked[row, allowed] = False
        return scores if blocked is None else scores.masked_fill(blocked, -float("inf"))


def pending_continuations(tail: bytes) -> int:
    """How many UTF-8 continuation bytes the character at the end of `tail` still needs (0 when it is complete,
    or when the bytes are no valid start of one: those are dropped when the text is decoded)."""
    for back in range(1, min(len(tail), 3) + 1):
        byte = tail[-back]
        if byte < 0x80:
            return 0
        if byte >= 0xC0:  # a lead byte: 110xxxxx needs 1 continuation, 1110xxxx 2, 11110xxx 3
            needed = 1 if byte < 0xE0 else 2 if byte < 0xF0 else 3 if byte < 0xF8 else 0
            return max(needed - (back - 1), 0)
    return 0


class CompleteCharacters:
    """Byte-level BPE splits some characters over several tokens (’ or 東 as a lead byte, then continuation
    bytes); a model may start one and then choose a token that does not finish it, and the text would show U+FFFD.
    This keeps the byte stream valid: a row whose bytes end inside a character may only choose a token that
    continues it. Per step it reads each row's last token (a dict look-up); only a row ending in a non-ASCII byte
    costs more, and the vocabulary's tables are made the first time one does."""

    def __init__(self, vocabulary):
        self.vocabulary = vocabulary
        self._blocked: dict[tuple[int, int], torch.Tensor] = {}

    def blocked(self, pending: int, width: int, device) -> torch.Tensor:
        """The tokens a row `pending` continuation bytes short of a character may not choose, over a model's
        `width` ids (wider than the tokenizer's: those too); all allowed for 0."""
        key = (pending, width)
        found = self._blocked.get(key)
        if found is None:
            found = torch.zeros(width, dtype=torch.bool)
            if pending:
                allowed = self.vocabulary.continuations(pending)[:width]
                found[:] = True
                found[: len(allowed)] = ~allowed
            self._blocked[key] = found
        return found.to(device)

    def __call__(self, input_ids, scores):
        pending = [0] * scores.shape[0]
        for row, token in enumerate(input_ids[:, -1].tolist()):
            end = self.vocabulary.bytes_of(token)[-1:]
            if end and end[0] >= 0x80:
                tail = b"".join(self.vocabulary.bytes_of(t) for t in input_ids[row, -3:].tolist())
                pending[row] = pending_continuations(tail)
        if not any(pending):
            return scores
        width = scores.shape[-1]
        blocked = torch.stack([self.blocked(p, width, scores.device) for p in pending])
        return scores.masked_fill(blocked, -float("inf"))
