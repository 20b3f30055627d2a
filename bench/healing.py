"""`python -m bench.healing --model DIR --label NAME`: does token healing glue letters onto a complete word?

Headlines of the demo corpus (outlet names stripped as `prepare` strips them) are cut at a random word end
("Bakery workers"), at the end of a word the corpus never uses put in its place ("Satellite", the issue's case),
and inside a random word ("Bakery wor"); each prefix goes through the served headline path
(newsgen.generation.generate with its healing), greedy and sampled (the model's own decoding defaults, a fixed
seed). The word at the cut in prompt + text is the prompt's last word as the model finished it; it is a non-word
when the corpus never uses it ("workerss", "Satellitect"; an unseen word left as typed is none). At a word end
healing should leave the word as typed unless the model reads a longer one; inside a word it should finish it
("Gov" → "Governor"). Writes the figures under --label in bench/healing.json, beside those of other labels
(before and after a change).
"""

from __future__ import annotations

import argparse
import csv
import json
import random
import re
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUTPUT = ROOT / "bench" / "healing.json"
WORD = re.compile(r"[A-Za-z0-9]+")
# Words a user may well type that the demo corpus never uses, as the "Satellite" and "Bakery" (any the
# corpus does use are left out when the bench runs).
UNSEEN = (
    "Satellite", "Bakery", "Glacier", "Vaccine", "Drone", "Pipeline", "Orchestra", "Volcano", "Startup", "Airline",
    "Refinery", "Lottery", "Telescope", "Brewery", "Pharmacy", "Submarine", "Cathedral", "Tsunami", "Robot",
    "Vineyard", "Astronaut", "Casino", "Stadium", "Laboratory", "Carpenter", "Surgeon", "Festival", "Tunnel",
)  # fmt: skip


def corpus(path: Path | None = None) -> tuple[list[str], set[str]]:
    """The headlines of the demo corpus (or of the CSV it was written to at `path`) as the headline model learns
    them, and every word the corpus uses (casefolded)."""
    from training.demo_corpus import demo_rows
    from training.prepare import TitleCleaner

    rows = iter(csv.reader(path.open(newline="", encoding="utf-8"))) if path else demo_rows()
    header = next(rows)
    title, content, outlet = (header.index(name) for name in ("title", "content", "publication"))
    cleaner, titles, words = TitleCleaner(), [], set()
    for row in rows:
        titles.append(cleaner.strip(str(row[title]), str(row[outlet])))
        words.update(WORD.findall(f"{row[title]} {row[content]}".casefold()))
    return titles, words


def cuts(titles: list[str], count: int, seed: int, inside: bool) -> list[str]:
    """`count` headline prefixes ending at a word's end, or (`inside`) at least one letter short of it."""
    rng, found = random.Random(seed), []
    while len(found) < count:
        title = rng.choice(titles)
        words = [m for m in WORD.finditer(title) if m.end() - m.start() >= (3 if inside else 1)]
        if words:
            word = rng.choice(words)
            found.append(title[: rng.randrange(word.start() + 1, word.end()) if inside else word.end()])
    return found


def unseen_cuts(titles: list[str], count: int, seed: int, words: set[str]) -> list[str]:
    """Prefixes cut at a word end whose last word is replaced by one the corpus never uses."""
    rng, unseen = random.Random(seed), [w for w in UNSEEN if w.casefold() not in words]
    found = []
    for prefix in cuts(titles, count, seed, inside=False):
        head = prefix[: len(prefix) - len(WORD.findall(prefix)[-1])]
        word = rng.choice(unseen)
        found.append(head + (word.lower() if head.strip() else word))
    return found


def word_at_cut(prefix: str, text: str) -> str:
    """The word that the prefix's last word became in prefix + text."""
    start = len(prefix) - len(WORD.findall(prefix)[-1])
    found = WORD.match(prefix + text, start)
    return found.group() if found else ""


def measure(loaded, prefixes: list[str], words: set[str], params) -> dict:
    from newsgen import generation
    from newsgen.prompt import headline_prompt

    started = time.perf_counter()
    prompts = [headline_prompt(p, loaded.manifest.prompt_format) for p in prefixes]
    out = generation.generate(loaded, prompts, params=params)
    finished = [word_at_cut(p, rows[0].text) for p, rows in zip(prefixes, out.results, strict=True)]
    typed = [WORD.findall(p)[-1] for p in prefixes]
    non_words = [(p, t, w) for p, t, w in zip(prefixes, typed, finished, strict=True) if w.casefold() not in words]
    return {
        "prompts": len(prefixes),
        "non_word_share": round(len(non_words) / len(prefixes), 4),
        # A plural of the word as typed is a word, if one the corpus never uses ("satellites").
        "non_words_adding_s": sum(w.casefold() in (t.casefold() + "s", t.casefold() + "es") for _, t, w in non_words),
        "extended_share": round(sum(w != t for w, t in zip(finished, typed, strict=True)) / len(prefixes), 4),
        "non_word_examples": [f"{p!r} → {w!r}" for p, _, w in non_words[:8]],
        "generation_s": round(time.perf_counter() - started, 1),
    }


def run(model: Path, count: int, seed: int, corpus_csv: Path | None = None) -> dict:
    from bench.follow import cpu_model
    from newsgen.schemas import GenerationParameters
    from training.sample import load_local

    loaded = load_local(model)
    titles, words = corpus(corpus_csv)
    decodings = {
        "greedy": GenerationParameters(do_sample=False, max_new_tokens=12),
        "sampled": GenerationParameters(seed=seed, max_new_tokens=12),
    }
    unseen = unseen_cuts(titles, count, seed, words)
    kinds = {  # the prefixes, and the words that are no non-words for them: an unseen word as typed is none
        "at_a_word_end": (cuts(titles, count, seed, inside=False), words),
        "at_the_end_of_a_word_the_corpus_never_uses": (
            unseen,
            words | {WORD.findall(p)[-1].casefold() for p in unseen},
        ),
        "inside_a_word": (cuts(titles, count, seed, inside=True), words),
    }
    figures = {
        kind: {name: measure(loaded, prefixes, known, params) for name, params in decodings.items()}
        for kind, (prefixes, known) in kinds.items()
    }
    report = json.loads((model / "training_report.json").read_text())
    described = {
        "path": str(model),
        "global_step": report.get("global_step"),
        "corpus": str(corpus_csv) if corpus_csv else "training.demo_corpus.demo_rows()",
        "seed": seed,
        "cpu": cpu_model(),
    }
    return {"model": described, **figures}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.healing", description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, required=True, help="a headline model trained on the demo corpus")
    parser.add_argument("--label", required=True, help="the key to write the figures under (before, after …)")
    parser.add_argument("--prompts", type=int, default=200, help="prefixes per kind of cut")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--corpus", type=Path, default=None, help="the demo corpus CSV the model was trained on")
    parser.add_argument("--output", type=Path, default=OUTPUT)
    args = parser.parse_args(argv)
    result = run(args.model, args.prompts, args.seed, args.corpus)
    previous = json.loads(args.output.read_text()) if args.output.is_file() else {}
    what = "share of healed headline prefixes whose last word comes back as a word the demo corpus never uses"
    report = {**previous, "what": what, args.label: result}
    args.output.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n")
    for kind, decodings in result.items():
        if kind != "model":
            shares = ", ".join(f"{name} {figures['non_word_share']}" for name, figures in decodings.items())
            print(f"{args.label}, cut {kind.replace('_', ' ')}: non-words {shares} → {args.output}")


if __name__ == "__main__":
    main()
