"""`python -m training sample`: local generation through the serving code, and its one-line errors."""

from __future__ import annotations

import re

import pytest

from training.cli import main
from training.sample import DECODINGS, NOTICE

ITEM = re.compile(r"^(\d+)\. ")


def sample(capsys, *args) -> str:
    main(["sample", *map(str, args)])
    return capsys.readouterr().out


def test_headlines_start_with_the_prompt_and_repeat_with_the_seed(headline_model, capsys):
    out = sample(
        capsys, "--model", headline_model, "--prompt", "City council", "--n", 2, "--seed", 7, "--max-new-tokens", 12
    )
    lines = out.splitlines()
    assert NOTICE in lines[0] and "headline model" in lines[0] and lines[0].endswith("seed 7")
    items = [line for line in lines if ITEM.match(line)]
    assert [ITEM.match(line).group(1) for line in items] == ["1", "2"]
    assert all(line.startswith(f"{i}. City council") for i, line in enumerate(items, 1))
    assert len(re.findall(r"\[(eos_token|length), \d+ tokens\]", out)) == 2
    assert (
        sample(
            capsys, "--model", headline_model, "--prompt", "City council", "--n", 2, "--seed", 7, "--max-new-tokens", 12
        )
        == out
    )


def test_article_openings_for_a_headline(article_model, capsys):
    out = sample(
        capsys,
        "--model",
        article_model,
        "--headline",
        "Harbor town votes to rebuild its pier",
        "--seed",
        1,
        "--max-new-tokens",
        16,
    )
    assert "article openings for 'Harbor town votes to rebuild its pier'" in out.splitlines()[0]
    assert len([line for line in out.splitlines() if ITEM.match(line)]) == 3  # --n defaults to 3


@pytest.mark.parametrize(
    "model, extra",
    [("headline_model", ["--prompt", "Mayor"]), ("article_model", ["--headline", "Mayor opens the new bridge"])],
)
def test_compare_decoding_table(model, extra, request, capsys):
    path = request.getfixturevalue(model)
    out = sample(capsys, "--model", path, *extra, "--compare-decoding", "--max-new-tokens", 12)
    lines = out.splitlines()
    assert "seed 1234 for every sampled row" in lines[0] and NOTICE in lines[0]
    table = lines[lines.index("") + 1 :]
    assert [cell.strip() for cell in table[0].split("|")] == ["decoding", "tokens, finish", "text"]
    rows = [line.split(" | ") for line in table[2:]]
    assert [row[0].strip() for row in rows if row[0].strip()] == [label for label, _ in DECODINGS]
    assert all(len(row) == 3 for row in rows)
    if model == "headline_model":
        assert all(row[2].startswith("Mayor") for row in rows if row[0].strip())


@pytest.mark.parametrize(
    "args, message",
    [
        (["--model", "{tmp}/nope"], "no such directory"),
        (["--model", "{tmp}"], "no training_report.json"),
        (["--model", "{headline}", "--headline", "A headline"], "--headline needs an article model"),
        (["--model", "{article}"], "give it --headline"),
        (["--model", "{headline}", "--max-new-tokens", "0"], "--max-new-tokens"),
    ],
)
def test_errors_are_one_line(args, message, tmp_path, headline_model, article_model, capsys):
    argv = [a.format(tmp=tmp_path, headline=headline_model, article=article_model) for a in args]
    with pytest.raises(SystemExit) as exit_:
        main(["sample", *argv])
    assert exit_.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("error: ") and message in err[-1]
    assert not any("Traceback" in line for line in err)


def test_not_a_checkpoint(tmp_path, capsys):
    (tmp_path / "training_report.json").write_text('{"task": "headline"}')
    with pytest.raises(SystemExit) as exit_:
        main(["sample", "--model", str(tmp_path)])
    assert exit_.value.code == 2
    assert "lacks config.json" in capsys.readouterr().err
