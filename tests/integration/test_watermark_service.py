"""The watermark end to end: on every text from the API and batch jobs, in the provenance by key id, found
by /v1/detect, the batch `detect` task and `python -m training detect`, and not found in human-written news."""

import csv
import json
import random

import pytest

from infra.local.harness import LambdaContext, api_event

LONG = {"max_new_tokens": 120, "do_sample": True, "no_repeat_ngram_size": 0, "repetition_penalty": 1.0}


@pytest.fixture
def api(published, service_for, monkeypatch):
    from handlers import api as handler

    service = service_for(published["bucket"])
    monkeypatch.setattr(handler, "service", service)

    def call(method: str, path: str, body=None) -> tuple[int, dict]:
        response = handler.lambda_handler(api_event(method, path, body), LambdaContext())
        return response["statusCode"], json.loads(response["body"])

    call.service = service
    return call


HEADLINE = "Harbor ferry line approved after a long debate"


def article(api, seed: int, headline: str = HEADLINE) -> dict:
    status, body = api("POST", "/v1/articles", {"headline": headline, "parameters": {**LONG, "seed": seed}})
    assert status == 200, body
    return body


def long_article(api) -> dict:
    """The first article, over seeds, long enough to judge: the 20-step demo article model may end a text at
    once, depending on the session's random key."""
    from newsgen.watermark import MIN_TOKENS

    for seed in range(12):
        body = article(api, seed)
        if body["results"][0]["generated_tokens"] >= 3 * MIN_TOKENS:
            return body
    raise AssertionError("no article of 12 long enough to judge")


def detect(api, *texts: str) -> list[dict]:
    status, body = api("POST", "/v1/detect", {"texts": list(texts)})
    assert status == 200, body
    return body["results"]


def edit_words(text: str, share: float, seed: int) -> str:
    """Delete a share of the words: what a light copy-edit does to a text."""
    words = text.split()
    rng = random.Random(seed)
    drop = set(rng.sample(range(len(words)), int(len(words) * share)))
    return " ".join(w for i, w in enumerate(words) if i not in drop)


def test_every_generated_text_is_marked_and_detected_even_lightly_edited(api):
    """Every text is judged watermarked, unless it is too short to judge at all (the demo article model may
    stop early, depending on the session's random key); the long ones stay detected after a light edit."""
    from newsgen.watermark import MIN_TOKENS, load_keyring

    key_id = load_keyring(file=api.service.settings.watermark_keys_file).current
    texts = []
    for seed in range(16):
        body = article(api, seed)
        assert body["provenance"]["watermark"] == {
            "scheme": "kgw-lefthash-1",
            "key_id": key_id,
            "detect": "POST /v1/detect",
        }
        texts.append(body["results"][0]["text"])
    results = detect(api, *texts)
    assert all(r["verdict"] == "watermarked" or r["tokens_scored"] < MIN_TOKENS for r in results), results
    judged = [r for r in results if r["verdict"] == "watermarked"]
    assert len(judged) >= 4 and all(r["key_id"] == key_id and r["p_value"] < 1e-4 for r in judged), results
    long = [t for t, r in zip(texts, results, strict=True) if r["tokens_scored"] >= 48]
    assert len(long) >= 3, results
    edited = detect(api, *(edit_words(t, 0.1, i) for i, t in enumerate(long)))
    assert all(r["verdict"] == "watermarked" and r["p_value"] < 1e-4 for r in edited), edited


def test_human_news_is_not_flagged(api, sample_csv, service_for, published, monkeypatch, tmp_path):
    """Under a fixed key: at the z > 3 threshold about one human text in a thousand is flagged by chance for a
    given key (make bench-watermark measures that rate over many keys), so 48 texts under the session's random
    key would fail now and then for no fault."""
    from handlers import api as handler
    from newsgen import watermark

    keys = tmp_path / "fixed-keys.json"
    ring = watermark.Keyring(current=watermark.key_id(20261128), keys={watermark.key_id(20261128): 20261128})
    keys.write_text(ring.model_dump_json())
    monkeypatch.setattr(handler, "service", service_for(published["bucket"], watermark_keys_file=keys))
    with open(sample_csv, newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    articles = [" ".join(row["content"].split()[:150]) for row in rows[:48]]
    flagged = [r for chunk in range(0, 48, 16) for r in detect(api, *articles[chunk : chunk + 16]) if r["watermarked"]]
    assert flagged == []
    headline = rows[0]["title"].replace(" - The New York Times", "")
    assert detect(api, headline)[0]["watermarked"] is not True  # a headline alone is never flagged


def test_same_seed_and_key_give_the_same_text_and_the_watermark_changes_it(api, service_for, published, monkeypatch):
    first, again = article(api, 7), article(api, 7)
    assert first["results"] == again["results"]
    from handlers import api as handler

    monkeypatch.setattr(handler, "service", service_for(published["bucket"], watermark=False))
    unmarked = article(api, 7)
    assert unmarked["provenance"]["watermark"] is None
    assert unmarked["results"][0]["text"] != first["results"][0]["text"]
    assert detect(api, unmarked["results"][0]["text"])[0]["watermarked"] is not True


def test_texts_marked_before_a_key_rotation_stay_detectable(api, service_for, published, monkeypatch, tmp_path):
    from handlers import api as handler
    from newsgen import watermark

    keys = tmp_path / "keys.json"
    monkeypatch.setattr(handler, "service", service_for(published["bucket"], watermark_keys_file=keys))
    old_text = long_article(api)["results"][0]["text"]
    old = watermark.load_keyring(file=keys)
    keys.write_text(watermark.keyring_with_new_key(old).model_dump_json())
    monkeypatch.setattr(handler, "service", service_for(published["bucket"], watermark_keys_file=keys))
    new_body = long_article(api)
    assert new_body["provenance"]["watermark"]["key_id"] != old.current
    old_result, new_result = detect(api, old_text, new_body["results"][0]["text"])
    assert old_result["watermarked"] and old_result["key_id"] == old.current
    assert new_result["watermarked"] and new_result["key_id"] == new_body["provenance"]["watermark"]["key_id"]


def test_greedy_and_beam_search_are_marked_too(api, service_for, published, monkeypatch):
    from handlers import api as handler

    requests = [{"do_sample": False, "max_new_tokens": 40}, {"num_beams": 2, "max_new_tokens": 40}]
    marked = [
        api("POST", "/v1/articles", {"headline": "Storm closes the bridge", "parameters": p})[1] for p in requests
    ]
    monkeypatch.setattr(handler, "service", service_for(published["bucket"], watermark=False))
    plain = [api("POST", "/v1/articles", {"headline": "Storm closes the bridge", "parameters": p})[1] for p in requests]
    for with_mark, without in zip(marked, plain, strict=False):
        assert with_mark["provenance"]["watermark"] and without["provenance"]["watermark"] is None
        assert with_mark["results"][0]["text"] != without["results"][0]["text"]


def test_no_generation_without_a_readable_key(api, service_for, published, monkeypatch, tmp_path):
    from handlers import api as handler

    broken = tmp_path / "private" / "keys.json"
    broken.parent.mkdir()
    broken.write_text("{not a keyring")
    monkeypatch.setattr(handler, "service", service_for(published["bucket"], watermark_keys_file=broken))
    status, body = api("POST", "/v1/headlines", {"n": 1})
    assert status == 503 and body["error_type"] == "watermark_unavailable"
    assert "private" not in json.dumps(body)


def test_detect_requests_are_validated(api):
    for bad in ({}, {"text": "a", "texts": ["b"]}, {"texts": []}, {"texts": ["x"] * 17}, {"text": ""}):
        status, body = api("POST", "/v1/detect", bad)
        assert status == 400 and body["error_type"] == "validation_error", (bad, body)


def test_batch_jobs_are_marked_and_detect_lines_check_texts(pipeline, api):
    judged = long_article(api)
    text, seed = judged["results"][0]["text"], judged["provenance"]["parameters"]["article"]["seed"]
    body = "\n".join(
        json.dumps(line)
        for line in [
            {"id": "gen", "task": "article", "headline": HEADLINE, "parameters": {**LONG, "seed": seed}},
            {"id": "check", "task": "detect", "text": text},
            {
                "id": "human",
                "task": "detect",
                "text": "The council met on Tuesday and voted to fund the new library wing.",
            },
            {"id": "bad", "task": "detect", "prompt": "no text"},
        ]
    ).encode()
    out = pipeline.run("marks.jsonl", body)
    gen, check, human, bad = out["lines"]
    assert gen["result"]["provenance"]["watermark"]["key_id"]
    assert check["result"]["verdict"] == "watermarked" and human["result"]["watermarked"] is not True
    assert bad["error"]["error_type"] == "validation_error"
    assert detect(api, gen["result"]["results"][0]["text"])[0]["watermarked"]


def test_the_cli_detects_with_the_keyring(api, capsys, tmp_path):
    from training.cli import main

    text = long_article(api)["results"][0]["text"]
    keys = str(api.service.settings.watermark_keys_file)
    capsys.readouterr()  # the API's own log lines
    main(["detect", "--text", text, "--keys-file", keys])
    result = json.loads(capsys.readouterr().out)[0]
    assert result["verdict"] == "watermarked"
    path = tmp_path / "texts.txt"
    path.write_text(f"{text}\n\nNothing to see here at all today.\n")
    main(["detect", "--file", str(path), "--lines", "--keys-file", keys])
    assert [r["verdict"] for r in json.loads(capsys.readouterr().out)] == ["watermarked", "too_short"]
    with pytest.raises(SystemExit) as missing:
        main(["detect", "--text", text, "--keys-file", str(tmp_path / "absent.json")])
    assert missing.value.code == 2 and "no such file" in capsys.readouterr().err


def test_peaked_sampling_is_marked_too(api):
    """A narrow nucleus (low temperature, small top_p) is how the demo models sample by nature: applied after
    top-p the bias had nothing left to choose between, and such texts scored z ≈ 1. Applied before, they carry
    the mark."""
    peaked = {**LONG, "temperature": 0.3, "top_p": 0.5, "no_repeat_ngram_size": 3}  # as the demo models decode
    verdicts: list[str] = []
    for seed in range(30):  # until 2 texts are long enough to judge: a peaked sample often ends at once
        status, body = api(
            "POST", "/v1/articles", {"headline": "Storm closes the bridge", "parameters": {**peaked, "seed": seed}}
        )
        assert status == 200, body
        verdicts.append(detect(api, body["results"][0]["text"])[0]["verdict"])
        if len([v for v in verdicts if v != "too_short"]) == 2:
            break
    judged = [v for v in verdicts if v != "too_short"]
    assert len(judged) == 2 and set(judged) == {"watermarked"}, verdicts
