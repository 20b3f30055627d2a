"""The training CLI names the problem in one line instead of a traceback."""

import subprocess
import sys

from conftest import ROOT


def run(*args):
    return subprocess.run(
        [sys.executable, "-m", "training", *args], cwd=ROOT, capture_output=True, text=True, timeout=120
    )


def test_missing_input_file(tmp_path):
    result = run("prepare", "--input", str(tmp_path / "nope.csv"), "--output", str(tmp_path / "out"))
    assert result.returncode == 2
    assert result.stderr.strip() == f"error: {tmp_path / 'nope.csv'}: no such file"


def test_train_without_prepared_data(tmp_path):
    result = run("train", "--task", "headline", "--data", str(tmp_path), "--output", str(tmp_path / "m"))
    assert result.returncode == 2
    assert "run `python -m training prepare` first" in result.stderr
    assert "Traceback" not in result.stderr


def test_bad_choice_is_argparse_usage(tmp_path):
    result = run("train", "--task", "poem", "--data", str(tmp_path), "--output", str(tmp_path / "m"))
    assert result.returncode == 2 and "invalid choice: 'poem'" in result.stderr


def test_set_latest_rolls_back_and_names_what_it_replaced(s3, s3_endpoint, bucket, headline_model):
    import json
    import os

    from training.publish import publish_model

    for version in ("v1", "v2"):
        publish_model(headline_model, bucket=bucket, prefix="models", task="headline", version=version, progress=False)
    env = {**os.environ, "AWS_ENDPOINT_URL": s3_endpoint}

    def set_latest(version):
        return subprocess.run(
            [
                sys.executable,
                "-m",
                "training",
                "set-latest",
                "--bucket",
                bucket,
                "--task",
                "headline",
                "--version",
                version,
            ],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )

    result = set_latest("v1")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {"task": "headline", "latest": "v1", "previous": "v2"}
    assert s3.get_object(Bucket=bucket, Key="models/headline/LATEST")["Body"].read() == b"v1"
    missing = set_latest("v9")
    assert missing.returncode == 2 and "headline version v9 has no manifest" in missing.stderr
    assert "Traceback" not in missing.stderr
    assert s3.get_object(Bucket=bucket, Key="models/headline/LATEST")["Body"].read() == b"v1"


def test_prepare_reads_a_corpus_without_all_the_news_columns(tmp_path):
    """A FakeNewsCorpus-style CSV (no publication column) used to stop with 'missing column(s) publication'."""
    import json

    from corpora import fake_news_corpus_csv, invented_rows

    source = fake_news_corpus_csv(tmp_path / "fake.csv", invented_rows())
    result = run("prepare", "--input", str(source), "--output", str(tmp_path / "out"))
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["rows_out"] == 40 and summary["formats"] == ["csv"]
    assert summary["publication_rule"] == "skipped: no publication column and no --publication-names"


def test_prepare_names_a_bad_columns_option(tmp_path):
    source = tmp_path / "in.jsonl"
    source.write_text('{"headline": "a", "body": "b"}\n')
    result = run("prepare", "--input", str(source), "--output", str(tmp_path / "out"), "--columns", "title:headline")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert (
        result.stderr.strip()
        == "error: --columns: expected ours=theirs pairs separated by commas (title=headline), got 'title:headline'"
    )
    result = run(
        "prepare", "--input", str(source), "--output", str(tmp_path / "out"), "--columns", "title=head,content=body"
    )
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "unknown column 'head' (for title); the file has headline, body" in result.stderr
