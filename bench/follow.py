"""`python -m bench.follow`: does the demo article model follow its headline?

For each held-out headline (bench/follow_headlines.tsv: news-like headlines written for this check, none of
them in the demo corpus, each with its main noun marked by hand: the head noun of the headline's subject),
the article model writes article openings through the served path (newsgen.generation.generate with the
model's own decoding defaults and the watermark on, as the API answers), and we count the articles whose
first sentence carries the headline's main noun. Reported overall and split by whether the noun occurs in
the demo corpus at all (a noun the model never saw can only be copied), and, apart from the target, for a
second set of headlines whose nouns the corpus never uses (bench/follow_unseen_headlines.tsv). Writes
bench/follow.json.

A noun is carried when the first sentence (up to the first '.', '!' or '?' followed by a space, or the whole
text) holds it as a whole word, case-insensitively, in the marked form or with/without a plural 's'/'es'.
"""

from __future__ import annotations

import argparse
import json
import platform
import re
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
HEADLINES = ROOT / "bench" / "follow_headlines.tsv"
# Headlines whose main noun the demo corpus never uses: the target is not for these (a 2-layer model trained
# for minutes copies only words whose tokens it has learned), but their share says how far copying carries.
UNSEEN_HEADLINES = ROOT / "bench" / "follow_unseen_headlines.tsv"
OUTPUT = ROOT / "bench" / "follow.json"
SAMPLE_CSV = ROOT.parent / "shared" / "data" / "all-the-news-sample.csv"
TARGET = 0.8
WATERMARK_KEY = 20240612  # a fixed key, so that a rerun on the same model writes the same articles
SENTENCE_END = re.compile(r"[.!?](?=\s|$)")
WORD = re.compile(r"[a-z0-9]+")  # "senate's" holds the word "senate"
LETTERS = re.compile(r"[a-z]+")
TARGETS = {
    "follow": TARGET,
    "with_repeated_sentence": 0.05,
    "with_non_word": 0.05,
    "detected": 0.9,
    "false_positives": 0.01,
}


class FollowError(Exception):
    """Bad input to the check (the headlines file, the model), named for the user."""


@dataclass(frozen=True)
class HeldOut:
    headline: str
    noun: str


def read_headlines(path: Path) -> list[HeldOut]:
    """main noun<TAB>headline per line; '#' lines and blank lines are comments. The noun must be in the
    headline: a typo there would count as a miss forever."""
    if not path.is_file():
        raise FollowError(f"{path}: no such file")
    items = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip() or line.startswith("#"):
            continue
        noun, sep, headline = line.partition("\t")
        noun, headline = noun.strip(), headline.strip()
        if not sep or not noun or not headline:
            raise FollowError(f"{path}:{number}: expected 'main noun<TAB>headline', got {line!r}")
        if not carries(headline, noun):
            raise FollowError(f"{path}:{number}: the main noun {noun!r} is not a word of the headline")
        items.append(HeldOut(headline, noun))
    if not items:
        raise FollowError(f"{path}: no headlines")
    return items


def first_sentence(text: str) -> str:
    text = text.strip()
    end = SENTENCE_END.search(text)
    return text[: end.end()] if end else text


def noun_forms(noun: str) -> set[str]:
    """The marked form, its plural and its singular: 'storm' -> storm, storms, stormes; 'nurses' -> nurse…"""
    word = noun.casefold()
    forms = {word, word + "s", word + "es"}
    if word.endswith("es"):
        forms.add(word[:-2])
    if word.endswith("s"):
        forms.add(word[:-1])
    return forms


def carries(text: str, noun: str) -> bool:
    return not noun_forms(noun).isdisjoint(WORD.findall(text.casefold()))


def corpus_words() -> set[str]:
    """Every word of the demo corpus `make run` trains on (titles and articles)."""
    from training.demo_corpus import demo_rows

    rows = demo_rows()
    header = next(rows)
    title, content = header.index("title"), header.index("content")
    words: set[str] = set()
    for row in rows:
        words.update(WORD.findall(f"{row[title]} {row[content]}".casefold()))
    return words


def corpus_titles() -> set[str]:
    from training.demo_corpus import demo_rows

    rows = demo_rows()
    title = next(rows).index("title")
    return {" ".join(str(row[title]).casefold().split()) for row in rows}


def score(items: list[HeldOut], articles: list[list[str]], vocabulary: set[str]) -> dict:
    """The figures from the articles written for each held-out headline (same order)."""
    per_headline, hits, total = [], {"in_corpus": [0, 0], "not_in_corpus": [0, 0]}, [0, 0]
    flawed = {"repeated_sentence": 0, "non_word": 0}
    for item, texts in zip(items, articles, strict=True):
        known = not noun_forms(item.noun).isdisjoint(vocabulary)
        group = hits["in_corpus" if known else "not_in_corpus"]
        results = []
        for text in texts:
            sentence = first_sentence(text)
            carried = carries(sentence, item.noun)
            group[0] += carried
            group[1] += 1
            total[0] += carried
            total[1] += 1
            strange = non_words(text, vocabulary)
            repeated = repeats_a_sentence(text)
            flawed["repeated_sentence"] += repeated
            flawed["non_word"] += bool(strange)
            results.append(
                {
                    "first_sentence": sentence,
                    "carries_noun": carried,
                    "repeated_sentence": repeated,
                    "non_words": strange,
                }
            )
        per_headline.append(
            {"headline": item.headline, "noun": item.noun, "noun_in_corpus": known, "articles": results}
        )
    return {
        "articles": total[1],
        "carrying_main_noun": total[0],
        "share": round(total[0] / total[1], 4) if total[1] else None,
        "by_noun": {
            name: {"articles": n, "carrying_main_noun": k, "share": round(k / n, 4) if n else None}
            for name, (k, n) in hits.items()
        },
        # Clean text: articles with a sentence written twice, and with a word the corpus never uses (glued pieces).
        **{
            f"with_{flaw}": {"articles": k, "share": round(k / total[1], 4) if total[1] else None}
            for flaw, k in flawed.items()
        },
        "per_headline": per_headline,
    }


def non_words(text: str, vocabulary: set[str]) -> list[str]:
    """The text's words (letters only) that the corpus never uses: pieces glued into words that do not exist."""
    return sorted({word for word in LETTERS.findall(text.casefold()) if word not in vocabulary})


def repeats_a_sentence(text: str) -> bool:
    sentences = [" ".join(WORD.findall(s.casefold())) for s in SENTENCE_END.split(text)]
    sentences = [s for s in sentences if len(s.split()) >= 3]
    return len(sentences) != len(set(sentences))


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def default_model() -> Path:
    """The demo article model `make run` serves (shipped in the repository)."""
    from infra.local.demo_models import SHIPPED

    return SHIPPED / "article"


def generate_articles(
    model: Path,
    headlines: list[str],
    samples: int,
    seed: int,
    max_new_tokens: int | None = None,
    greedy: bool = False,
    watermark: bool = True,
) -> tuple[list[list[str]], dict]:
    """`samples` article openings per headline, through the served path (defaults, watermark on); with
    `greedy`, one per headline by greedy decoding without the watermark: what the model itself prefers; without
    `watermark`, sampled as served but unmarked (what the watermark's bias costs)."""
    from newsgen import generation
    from newsgen.prompt import article_prompt
    from newsgen.schemas import GenerationParameters
    from newsgen.watermark import GreenlistWatermark
    from training.sample import load_local

    loaded = load_local(model)
    marker = GreenlistWatermark(int(loaded.model.config.vocab_size), WATERMARK_KEY) if watermark else None
    articles = []
    for index, headline in enumerate(headlines):
        if greedy:
            params = GenerationParameters(do_sample=False, max_new_tokens=max_new_tokens)
            out = generation.generate(loaded, [article_prompt(headline, loaded.manifest.prompt_format)], params=params)
        else:
            params = GenerationParameters(seed=seed + index, max_new_tokens=max_new_tokens)
            out = generation.generate(
                loaded,
                [article_prompt(headline, loaded.manifest.prompt_format)],
                n=samples,
                params=params,
                watermark=marker,
            )
        articles.append([result.text for result in out.results[0]])
    report = json.loads((model / "training_report.json").read_text())
    described = {
        "path": str(model),
        "base_model": report.get("base_model"),
        "global_step": report.get("global_step"),
        "data_fingerprint": report.get("data_fingerprint"),
        "decoding": generation.effective_parameters(loaded, GenerationParameters(max_new_tokens=max_new_tokens)),
    }
    return articles, described


def human_texts(limit: int = 240) -> list[str]:
    """Headline and first 100 words of the All-the-News sample's articles (when ../shared/data is there)."""
    import csv

    if not SAMPLE_CSV.is_file():
        return []
    with open(SAMPLE_CSV, newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))[:limit]
    return [f"{row['title'].strip()}\n{' '.join(row['content'].split()[:100])}" for row in rows if row.get("content")]


def detection(model: Path, marked: list[str], unmarked: list[str], human: list[str]) -> dict:
    """/v1/detect's verdicts (the tokens where the model had a choice) on served articles (headline, then
    article) and on texts without the mark; beside them, the count over every token."""
    from newsgen import generation, prompt, watermark
    from training.sample import load_local

    loaded = load_local(model)
    kid = watermark.key_id(WATERMARK_KEY)
    detector = watermark.Detector(
        watermark.Keyring(current=kid, keys={kid: WATERMARK_KEY}), int(loaded.model.config.vocab_size), loaded.tokenizer
    )

    def judged(texts: list[str], every_token: bool = False) -> dict:
        verdicts = []
        for text in texts:
            if every_token:
                verdicts.append(detector.detect_text(text))
                continue
            ids, start = prompt.as_written(loaded.tokenizer, text, loaded.manifest.prompt_format)
            verdicts.append(detector.detect(ids, watermark.choices(generation.token_logits(loaded, ids)), start))
        counts = {v: sum(d.verdict == v for d in verdicts) for v in ("watermarked", "too_predictable", "too_short")}
        scored = sorted(d.tokens_scored for d in verdicts)
        return {
            "texts": len(texts),
            **counts,
            "share_watermarked": round(counts["watermarked"] / len(texts), 4) if texts else None,
            "tokens_scored_median": scored[len(scored) // 2] if scored else None,
        }

    return {
        "threshold_z": watermark.Z_THRESHOLD,
        "entropy_threshold_nats": watermark.ENTROPY_THRESHOLD,
        "served_articles": judged(marked),
        "unmarked_articles": judged(unmarked),
        "human_articles": judged(human),
        "served_articles_every_token_scored": judged(marked, every_token=True),
    }


def run(
    model: Path,
    headlines_file: Path,
    samples: int,
    seed: int,
    max_new_tokens: int | None = None,
    unseen_file: Path | None = None,
) -> dict:
    import torch

    if not (model / "training_report.json").is_file():
        raise FollowError(f"--model {model}: no trained model there (run `make run` once, or pass --model)")
    items = read_headlines(headlines_file)
    in_corpus = corpus_titles().intersection(" ".join(i.headline.casefold().split()) for i in items)
    if in_corpus:
        raise FollowError(f"{headlines_file}: not held out, the demo corpus has {sorted(in_corpus)}")
    started = time.perf_counter()
    headlines, vocabulary = [i.headline for i in items], corpus_words()
    articles, described = generate_articles(model, headlines, samples, seed, max_new_tokens)
    figures = score(items, articles, vocabulary)
    greedy, _ = generate_articles(model, headlines, 1, seed, max_new_tokens, greedy=True)
    greedy_figures = score(items, greedy, vocabulary)
    unmarked, _ = generate_articles(model, headlines, samples, seed, max_new_tokens, watermark=False)
    unmarked_figures = score(items, unmarked, vocabulary)

    def headed(texts: list[list[str]]) -> list[str]:
        return [f"{h}\n{text}" for h, row in zip(headlines, texts, strict=True) for text in row]

    watermark_figures = detection(model, headed(articles), headed(unmarked), human_texts())
    unseen_figures = None
    if unseen_file is not None:
        unseen = read_headlines(unseen_file)
        known = [i.noun for i in unseen if not noun_forms(i.noun).isdisjoint(vocabulary)]
        if known:
            raise FollowError(f"{unseen_file}: the demo corpus uses {known}; these headlines are for unseen nouns")
        texts, _ = generate_articles(model, [i.headline for i in unseen], samples, seed, max_new_tokens)
        unseen_figures = score(unseen, texts, vocabulary)
    return {
        "what": "share of demo articles whose first sentence carries the held-out headline's main noun",
        "target": TARGET,
        "met": figures["share"] is not None and figures["share"] >= TARGET,
        "headlines": len(items),
        "samples_per_headline": samples,
        "seed": seed,
        "model": described,
        "machine": {
            "cpu": cpu_model(),
            "cpu_capability": torch.backends.cpu.get_cpu_capability(),
            "threads": torch.get_num_threads(),
            "torch": torch.__version__,
        },
        "generation_s": round(time.perf_counter() - started, 1),
        **figures,
        "watermark": watermark_figures,
        "targets": TARGETS,
        # The model's own preference, without sampling or the watermark's bias (both served by default).
        "greedy_unwatermarked": {k: v for k, v in greedy_figures.items() if k != "per_headline"}
        | {"first_sentences": [h["articles"][0]["first_sentence"] for h in greedy_figures["per_headline"]]},
        "sampled_unwatermarked": {k: v for k, v in unmarked_figures.items() if k != "per_headline"},
        # Served as above, for headlines about subjects the corpus never names (no target).
        "unseen_nouns": unseen_figures
        and {k: v for k, v in unseen_figures.items() if k != "by_noun"} | {"headlines_file": str(unseen_file)},
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.follow", description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=None, help="an article model (default: make run's demo one)")
    parser.add_argument("--headlines", type=Path, default=HEADLINES)
    parser.add_argument("--unseen-headlines", type=Path, default=UNSEEN_HEADLINES, help="'' to skip")
    parser.add_argument("--samples", type=int, default=2, help="articles per headline")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--max-new-tokens", type=int, default=None, help="default: the model's, as served")
    parser.add_argument("--output", type=Path, default=OUTPUT)
    args = parser.parse_args(argv)
    from newsgen.errors import NewsgenError

    try:
        result = run(
            args.model or default_model(),
            args.headlines,
            args.samples,
            args.seed,
            args.max_new_tokens,
            args.unseen_headlines if str(args.unseen_headlines) else None,
        )
    except (FollowError, NewsgenError) as exc:  # a bad headlines file, a model the serving code refuses
        raise SystemExit(f"error: {getattr(exc, 'message', None) or exc}") from None
    args.output.write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n")
    by_noun = ", ".join(f"{k} {v['share']} of {v['articles']}" for k, v in result["by_noun"].items())
    greedy, unmarked, unseen = (result[k] for k in ("greedy_unwatermarked", "sampled_unwatermarked", "unseen_nouns"))
    print(
        f"{result['share']} of {result['articles']} served articles carry the main noun ({by_noun}); without the "
        f"watermark {unmarked['share']} of {unmarked['articles']}; greedy without it {greedy['share']} of "
        f"{greedy['articles']}"
        + (f"; nouns the corpus never uses {unseen['share']} of {unseen['articles']}" if unseen else "")
        + f"; with a repeated sentence {result['with_repeated_sentence']['share']}, with a non-word "
        f"{result['with_non_word']['share']}; watermark detected in "
        f"{result['watermark']['served_articles']['share_watermarked']} of served articles, false positives "
        f"{result['watermark']['unmarked_articles']['share_watermarked']} unmarked, "
        f"{result['watermark']['human_articles']['share_watermarked']} human" + f" → {args.output}"
    )


if __name__ == "__main__":
    main()
