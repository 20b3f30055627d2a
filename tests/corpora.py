"""Invented news corpora in three schemas unlike All-the-News, for `prepare` and training tests: a
FakeNewsCorpus-style CSV, a JSONL with headline/body, a Parquet with its own names. Small, invented text."""

from __future__ import annotations

import csv
import json


def invented_rows(count: int = 40) -> list[dict]:
    subjects = ["Harbor council", "Pine Hollow farmers", "Westmere nurses", "The Larkspur ferry board"]
    verbs = ["approves", "questions", "rejects", "celebrates"]
    things = ["a new footbridge", "the winter market", "longer library hours", "the old lighthouse"]
    rows = []
    for i in range(count):
        title = f"{subjects[i % 4]} {verbs[i // 4 % 4]} {things[i // 16 % 4]} after meeting number {i}"
        body = f"{subjects[i % 4]} {verbs[i // 4 % 4]} {things[i // 16 % 4]} on Monday. Residents had asked for it."
        rows.append({"title": title, "body": body, "outlet": ["Harbor Ledger", "Valley Courier"][i % 2]})
    return rows


def fake_news_corpus_csv(path, rows):
    """The FakeNewsCorpus columns: no publication, a domain; titles end with the outlet's name."""
    columns = ["id", "domain", "type", "url", "content", "scraped_at", "title", "authors", "keywords"]
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, columns)
        writer.writeheader()
        for i, row in enumerate(rows):
            writer.writerow(
                {
                    "id": i,
                    "domain": "harbor.example",
                    "type": "reliable",
                    "url": f"https://harbor.example/{i}",
                    "content": row["body"],
                    "scraped_at": "2026-01-01",
                    "title": f"{row['title']} | The {row['outlet']}",
                    "authors": "",
                    "keywords": "",
                }
            )
    return path


def headline_body_jsonl(path, rows):
    with open(path, "w", encoding="utf-8") as handle:
        for i, row in enumerate(rows):
            record = {"id": i, "headline": row["title"], "body": row["body"], "source": row["outlet"], "n": 3}
            handle.write(json.dumps(record) + "\n")
    return path


def other_names_parquet(path, rows):
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.table(
        {
            "heading": [f"{r['outlet']}: {r['title']}" for r in rows],
            "article_text": [r["body"] for r in rows],
            "outlet_name": [r["outlet"] for r in rows],
            "words": [len(r["body"].split()) for r in rows],
        }
    )
    pq.write_table(table, path, row_group_size=7)  # several row groups: read in batches
    return path
