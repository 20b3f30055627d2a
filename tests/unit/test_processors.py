"""newsgen.processors computes what transformers' logits processors and StopStringCriteria compute: equal
tensors on random scores and sequences, equal stop decisions on a byte-level vocabulary."""

import pytest
import torch
from transformers import (
    NoRepeatNGramLogitsProcessor,
    RepetitionPenaltyLogitsProcessor,
    StopStringCriteria,
    TemperatureLogitsWarper,
    TopKLogitsWarper,
    TopPLogitsWarper,
)

from newsgen import processors
from newsgen.tokenizer import Tokenizer

VOCAB = 50260


def batches(rounds=6, rows=4):
    generator = torch.Generator().manual_seed(0)
    for length in range(1, rounds + 1):
        ids = torch.randint(0, 40, (rows, 3 * length), generator=generator)  # few ids: n-grams repeat
        ids[0, -1] = VOCAB - 1
        scores = torch.randn(rows, VOCAB, generator=generator) * 4
        scores[1, :30] = float("-inf")
        yield ids, scores


@pytest.mark.parametrize(
    ("ours", "theirs"),
    [
        (processors.repetition_penalty(1.1), RepetitionPenaltyLogitsProcessor(1.1)),
        (processors.repetition_penalty(0.7), RepetitionPenaltyLogitsProcessor(0.7)),
        (processors.no_repeat_ngram(2), NoRepeatNGramLogitsProcessor(2)),
        (processors.no_repeat_ngram(3), NoRepeatNGramLogitsProcessor(3)),
        (processors.temperature(0.8), TemperatureLogitsWarper(0.8)),
        (processors.top_k(50), TopKLogitsWarper(50)),
        (processors.top_k(VOCAB + 5), TopKLogitsWarper(VOCAB + 5)),
        (processors.top_p(0.95), TopPLogitsWarper(0.95)),
        (processors.top_p(0.01), TopPLogitsWarper(0.01)),
    ],
)
def test_processors_equal_transformers(ours, theirs):
    for ids, scores in batches():
        assert torch.equal(ours(ids, scores.clone()), theirs(ids, scores.clone()))


def test_stop_strings_equal_transformers(headline_model):
    from transformers import AutoTokenizer

    from newsgen import tokenizer as tokenizers

    ours = tokenizers.lightweight(headline_model)
    assert isinstance(ours, Tokenizer)
    theirs = AutoTokenizer.from_pretrained(headline_model)
    texts = [
        "The city council. Votes\n\nagain",
        "Harbor ferry line approved<|EOS|> and more",
        "naïve café — 東京 votes; stop-gap",
        "stopped at the stop sign: stop",
        "a  b\tc\n",
    ]
    stops = ["\n\n", ".", "stop", "<|EOS|>", "東京", "é", " votes", "c\n"]
    for stop_strings in ([s] for s in stops):
        mine = processors.StopStrings(ours, stop_strings)
        library = StopStringCriteria(theirs, stop_strings)
        for text in texts:
            ids = torch.tensor([ours(text, add_special_tokens=False)["input_ids"]])
            for end in range(1, ids.shape[1] + 1):  # after every token, as the decode loop asks
                assert mine(ids[:, :end]).tolist() == library(ids[:, :end], None).tolist(), (stop_strings, text, end)
