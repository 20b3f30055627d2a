import csv
import json

import pytest
from corpora import fake_news_corpus_csv, headline_body_jsonl, invented_rows, other_names_parquet

from training.prepare import PrepareError, parse_columns, prepare

HEADER = ["", "id", "title", "publication", "author", "date", "year", "month", "url", "content"]


def write_csv(path, rows):
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(HEADER)
        for i, (title, publication, content) in enumerate(rows):
            writer.writerow([i, i, title, publication, "Staff", "2017-01-01", 2017, 1, "", content])
    return path


LONG = "Harbor town votes to rebuild its old wooden pier before summer"  # 11 words


def read_jsonl(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_rules_each_counted(tmp_path):
    rows = [
        (LONG + " - The Harbor Ledger", "Harbor Ledger", "First   article   text."),
        ("Breitbart: Mayor says the bridge repairs will finish early next spring", "Breitbart", "x " * 300),
        ("Council debates the ferry schedule for a third night in a row | Valley Courier", "Valley Courier", ""),
        ("Officials open inquiry into missing library funds at the county level — NYT", "New York Times", "t"),
        ("", "Harbor Ledger", "no title"),
        ("Too short - The Harbor Ledger", "Harbor Ledger", "short"),
        (LONG.upper() + "  - The Harbor Ledger", "Harbor Ledger", "duplicate after case and spaces"),
        ("  ", "Valley Courier", "blank title"),
    ]
    report = prepare([write_csv(tmp_path / "in.csv", rows)], tmp_path / "out", validation_fraction=0.0, progress=False)
    assert report.rows_in == 8
    assert report.removed == {"empty_title": 2, "short_title": 1, "duplicate_title": 1}
    assert report.rows_out == 4
    assert report.rows_without_article == 1
    kept = read_jsonl(tmp_path / "out" / "train.jsonl")
    titles = [row["title"] for row in kept]
    assert titles == [
        LONG,
        "Mayor says the bridge repairs will finish early next spring",
        "Council debates the ferry schedule for a third night in a row",
        "Officials open inquiry into missing library funds at the county level",
    ]
    assert kept[0]["content"] == "First article text."
    assert len(kept[1]["content"].split()) == 100
    saved = json.loads((tmp_path / "out" / "report.json").read_text())
    assert saved["fingerprint"] == report.fingerprint and len(report.fingerprint) == 64


def test_split_is_deterministic_and_seeded(tmp_path):
    rows = [
        (f"Story number {i} about the harbor and the town council vote", "Harbor Ledger", "text") for i in range(200)
    ]
    source = write_csv(tmp_path / "in.csv", rows)
    a = prepare([source], tmp_path / "a", validation_fraction=0.2, seed=1, progress=False)
    b = prepare([source], tmp_path / "b", validation_fraction=0.2, seed=1, progress=False)
    c = prepare([source], tmp_path / "c", validation_fraction=0.2, seed=2, progress=False)
    assert a.fingerprint == b.fingerprint
    assert a.fingerprint != c.fingerprint
    assert 20 <= a.validation_rows <= 60


def test_non_utf8_bytes_do_not_lose_the_file(tmp_path):
    path = write_csv(tmp_path / "in.csv", [(LONG, "Harbor Ledger", "caf\u00e9 text")])
    data = path.read_bytes().replace("caf\u00e9".encode(), b"caf\xe9")  # a Latin-1 byte inside UTF-8
    path.write_bytes(data)
    report = prepare([path], tmp_path / "out", validation_fraction=0.0, progress=False)
    assert report.rows_out == 1
    assert read_jsonl(tmp_path / "out" / "train.jsonl")[0]["content"].startswith("caf")


def test_bad_input_is_named(tmp_path):
    with pytest.raises(PrepareError, match="no such file"):
        prepare([tmp_path / "missing.csv"], tmp_path / "out", progress=False)
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    with pytest.raises(PrepareError, match="empty.csv: the file is empty"):
        prepare([empty], tmp_path / "out", progress=False)
    wrong = tmp_path / "wrong.csv"
    wrong.write_text("id,headline,body\n1,a,b\n")
    with pytest.raises(PrepareError, match=r"missing column\(s\) title, content; found id, headline, body\. Map yours"):
        prepare([wrong], tmp_path / "out", progress=False)
    short = write_csv(tmp_path / "short.csv", [("Too short", "X", "y")] * 3)
    with pytest.raises(PrepareError, match="rule 'short_title'"):
        prepare([short], tmp_path / "out2", progress=False)
    assert not (tmp_path / "out2" / "train.jsonl").exists()


def test_real_sample(sample_csv, tmp_path):
    report = prepare([sample_csv], tmp_path / "out", progress=False)
    assert report.rows_in == 240
    assert report.titles_with_publication_removed > 200
    rows = read_jsonl(tmp_path / "out" / "train.jsonl") + read_jsonl(tmp_path / "out" / "validation.jsonl")
    assert len(rows) == report.rows_out > 150
    assert not any(row["title"].endswith("New York Times") for row in rows)  # inside a headline it stays
    assert all(len(row["title"].split()) >= 8 for row in rows)
    assert all("  " not in row["content"] and len(row["content"].split()) <= 100 for row in rows)


# --- other corpora: formats, column mappings, publication names (fixtures in tests/corpora.py) ---------------
def test_fake_news_corpus_csv_without_publication_uses_the_names_given(tmp_path):
    rows = invented_rows()
    source = fake_news_corpus_csv(tmp_path / "fake.csv", rows)
    report = prepare(
        [source],
        tmp_path / "out",
        validation_fraction=0.0,
        publication_names=("Harbor Ledger", "Valley Courier"),
        progress=False,
    )
    assert report.rows_out == 40 and report.titles_with_publication_removed == 40
    assert [r["title"] for r in read_jsonl(tmp_path / "out" / "train.jsonl")] == [r["title"] for r in rows]
    saved = json.loads((tmp_path / "out" / "report.json").read_text())
    assert saved["formats"] == ["csv"]
    assert saved["columns"] == {"title": "title", "content": "content", "publication": None}
    assert "--publication-names: Harbor Ledger, Valley Courier" in saved["publication_rule"]

    skipped = prepare([source], tmp_path / "skipped", validation_fraction=0.0, progress=False)
    assert skipped.titles_with_publication_removed == 0
    assert skipped.publication_rule == "skipped: no publication column and no --publication-names"
    assert read_jsonl(tmp_path / "skipped" / "train.jsonl")[0]["title"].endswith("| The Harbor Ledger")


def test_jsonl_with_headline_and_body(tmp_path):
    rows = invented_rows()
    source = headline_body_jsonl(tmp_path / "news.jsonl", rows)
    mapping = parse_columns("title=headline, content=body,publication=source")
    report = prepare([source], tmp_path / "out", validation_fraction=0.0, columns=mapping, chunk_rows=9, progress=False)
    assert report.rows_out == 40 and report.formats == ["jsonl"]
    assert report.columns == {"title": "headline", "content": "body", "publication": "source"}
    assert "column 'source'" in report.publication_rule
    kept = read_jsonl(tmp_path / "out" / "train.jsonl")
    assert kept[1] == {"title": rows[1]["title"], "content": rows[1]["body"], "publication": "Valley Courier"}


def test_parquet_with_its_own_names_and_format_given(tmp_path):
    rows = invented_rows()
    source = other_names_parquet(tmp_path / "news.data", rows)  # no telling extension: --format says it
    mapping = parse_columns("title=heading,content=article_text,publication=outlet_name")
    with pytest.raises(PrepareError, match=r"cannot tell the format from the extension \.data.*--format"):
        prepare([source], tmp_path / "out", columns=mapping, progress=False)
    report = prepare(
        [source], tmp_path / "out", validation_fraction=0.0, columns=mapping, input_format="parquet", progress=False
    )
    assert report.rows_out == 40 and report.titles_with_publication_removed == 40
    assert [r["title"] for r in read_jsonl(tmp_path / "out" / "train.jsonl")] == [r["title"] for r in rows]
    assert json.loads((tmp_path / "out" / "report.json").read_text())["formats"] == ["parquet"]


@pytest.mark.parametrize(
    ("columns", "message"),
    [
        ("title", r"--columns: expected ours=theirs pairs .* got 'title'"),
        ("title=headline,,content=body", r"--columns: expected ours=theirs pairs .* got ''"),
        ("title=", r"--columns: expected ours=theirs pairs"),
        ("headline=title", r"--columns: unknown column 'headline' of ours; ours are title, content, publication"),
        ("title=a,title=b", r"'title' is mapped twice"),
    ],
)
def test_bad_columns_syntax_is_named(columns, message):
    with pytest.raises(PrepareError, match=message):
        parse_columns(columns)


def test_unknown_or_missing_columns_are_named(tmp_path):
    source = headline_body_jsonl(tmp_path / "news.jsonl", invented_rows(3))
    with pytest.raises(
        PrepareError,
        match=r"news.jsonl: unknown column 'headlines' \(for title\); the file has id, headline, body, source, n",
    ):
        prepare([source], tmp_path / "out", columns={"title": "headlines", "content": "body"}, progress=False)
    with pytest.raises(PrepareError, match=r"news.jsonl: missing column\(s\) content; found id, headline.*--columns"):
        prepare([source], tmp_path / "out", columns={"title": "headline"}, progress=False)
    with pytest.raises(PrepareError, match="--format must be one of csv, jsonl, parquet, not 'xml'"):
        prepare([source], tmp_path / "out", input_format="xml", progress=False)


def test_unreadable_files_are_named(tmp_path):
    broken = tmp_path / "broken.jsonl"
    broken.write_text('{"title": "a", "content": "b"}\n{"title": "no closing brace"\n')
    with pytest.raises(PrepareError, match=r"broken.jsonl:2: cannot be read as JSONL: not JSON"):
        prepare([broken], tmp_path / "out", progress=False)
    array = tmp_path / "array.jsonl"
    array.write_text("[1, 2]\n")
    with pytest.raises(PrepareError, match=r"array.jsonl:1: cannot be read as JSONL: a list, not an object"):
        prepare([array], tmp_path / "out", progress=False)
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n\n")
    with pytest.raises(PrepareError, match="empty.jsonl: the file is empty"):
        prepare([empty], tmp_path / "out", progress=False)
    not_parquet = tmp_path / "csv-really.parquet"
    not_parquet.write_text("title,content\na,b\n")
    with pytest.raises(PrepareError, match=r"csv-really.parquet: cannot be read as Parquet"):
        prepare([not_parquet], tmp_path / "out", progress=False)
