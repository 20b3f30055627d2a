"""The training CLI names the problem in one line instead of a traceback."""

import argparse
import subprocess
import sys

from conftest import ROOT, training_cli

run = training_cli


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


def subcommands():
    from training.cli import build_parser

    parser = build_parser()
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return parser, action


def test_top_level_help_lists_every_command_with_its_description():
    parser, action = subcommands()
    text = parser.format_help()
    listed = text.split("\ncommands:\n", 1)[1]
    for choice in action._choices_actions:  # every subparser added with a help text, and no other
        line = next((line for line in listed.splitlines() if line.strip().startswith(choice.dest)), None)
        assert line is not None, f"{choice.dest} is missing from --help:\n{text}"
        assert " ".join(listed.split()).count(" ".join(choice.help.split())) == 1, choice.help
    assert {c.dest for c in action._choices_actions} == set(action.choices)  # no command without a help line


def test_every_subcommand_help_shows_its_defaults():
    _, action = subcommands()
    for name, subparser in action.choices.items():
        text = " ".join(subparser.format_help().split())
        for option in subparser._actions:
            if not option.option_strings or option.default in (None, False, argparse.SUPPRESS):
                continue
            if "default" in (option.help or ""):  # described in words, e.g. "default: $MODEL_BUCKET"
                continue
            assert f"(default: {option.default})" in text, f"{name} {option.option_strings[0]}: {text}"


def test_versions_lists_published_versions_and_marks_latest(s3, s3_endpoint, bucket, headline_model):
    import json
    import os

    from training.publish import publish_model

    for version in ("v1", "v2"):
        publish_model(headline_model, bucket=bucket, prefix="models", task="headline", version=version, progress=False)
    s3.put_object(Bucket=bucket, Key="models/headline/v3/claim.json", Body=b"{}")  # an interrupted publish
    s3.put_object(Bucket=bucket, Key="models/headline/LATEST", Body=b"v1")
    env = {**os.environ, "AWS_ENDPOINT_URL": s3_endpoint, "MODEL_BUCKET": bucket}
    result = training_cli("versions", "--task", "headline", env=env)
    assert result.returncode == 0, result.stderr
    listing = json.loads(result.stdout)
    assert listing["latest"] == "v1" and listing["bucket"] == bucket
    by_version = {entry["version"]: entry for entry in listing["versions"]}
    assert list(by_version) == ["v1", "v2", "v3"]
    assert [name for name, entry in by_version.items() if entry["latest"]] == ["v1"]
    assert by_version["v1"]["created_at"] <= by_version["v2"]["created_at"]
    assert by_version["v2"]["metrics"]["val_perplexity"] > 1
    assert by_version["v3"]["status"] == "incomplete (no manifest)"
    none = training_cli("versions", "--task", "headline", env={k: v for k, v in env.items() if k != "MODEL_BUCKET"})
    assert none.returncode == 2 and none.stderr.strip().startswith("error: versions: set --bucket or MODEL_BUCKET")


def train_hub_base(tmp_path, **env_changes):
    import os
    import time

    env = {k: v for k, v in os.environ.items() if k not in ("HF_HUB_OFFLINE", "HF_ENDPOINT")}
    env.update(HF_HOME=str(tmp_path / "hf-home"), **env_changes)  # an empty Hugging Face cache
    started = time.monotonic()
    command = ["train", "--task", "headline", "--base", "distilgpt2", "--data", str(tmp_path)]
    result = training_cli(*command, "--output", str(tmp_path / "m"), env=env, timeout=60)
    return result, time.monotonic() - started


def test_train_from_an_unreachable_hub_says_so_in_seconds(tmp_path):
    # Port 9 (discard) on loopback refuses at once: the hub client would retry, then raise OSError.
    result, seconds = train_hub_base(tmp_path, HF_ENDPOINT="http://127.0.0.1:9")
    assert result.returncode == 2, result.stderr
    line = result.stderr.strip()
    assert "\n" not in line and "Traceback" not in line, line
    assert line.startswith("error: --base distilgpt2: the Hugging Face hub (http://127.0.0.1:9) is unreachable")
    assert "--base tiny" in line and "local checkpoint" in line
    assert seconds < 20, seconds


def test_train_with_the_hub_offline_says_so(tmp_path):
    result, seconds = train_hub_base(tmp_path, HF_HUB_OFFLINE="1")
    assert result.returncode == 2, result.stderr
    line = result.stderr.strip()
    assert "\n" not in line and line.startswith("error: --base distilgpt2: HF_HUB_OFFLINE is set"), line
    assert "--base tiny" in line
    assert seconds < 20, seconds


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
