"""`make batch` and `make redrive` (infra/local/batch.py) against the local S3/SQS, with the batch functions
running on the same background pollers that `make run` uses."""

import json

import pytest

from infra.local import batch as cli
from infra.local.triggers import Pollers


@pytest.fixture
def running(echo_pipeline, s3_endpoint):
    pollers = Pollers(echo_pipeline.s3_trigger, echo_pipeline.worker, echo_pipeline.recorder, interval_s=0.1).start()
    yield echo_pipeline
    pollers.stop()


def submit(pipeline, endpoint, path, tmp_path):
    cli.main(
        [
            "--endpoint",
            endpoint,
            "--bucket",
            pipeline.bucket,
            "submit",
            str(path),
            "--timeout",
            "60",
            "--output-dir",
            str(tmp_path / "out"),
        ]
    )


def test_results_are_named_after_the_whole_input_name(running, s3_endpoint, tmp_path, capsys):
    jsonl, csv = tmp_path / "mine.jsonl", tmp_path / "mine.csv"
    jsonl.write_text(json.dumps({"id": "j", "task": "headline", "prompt": "from jsonl"}) + "\n")
    csv.write_text("id,task,prompt\nc,headline,from csv\n")
    submit(running, s3_endpoint, jsonl, tmp_path)
    submit(running, s3_endpoint, csv, tmp_path)
    out = tmp_path / "out"
    assert sorted(p.name for p in out.iterdir()) == ["mine.csv.results.jsonl", "mine.jsonl.results.jsonl"]
    assert json.loads((out / "mine.jsonl.results.jsonl").read_text())["id"] == "j"
    assert json.loads((out / "mine.csv.results.jsonl").read_text())["id"] == "c"
    assert '"status": "complete"' in capsys.readouterr().out


def test_a_resubmission_waits_for_its_own_answer(running, s3_endpoint, tmp_path):
    path = tmp_path / "again.jsonl"
    path.write_text(json.dumps({"id": "first", "task": "headline"}) + "\n")
    submit(running, s3_endpoint, path, tmp_path)
    path.write_text(json.dumps({"id": "second", "task": "headline"}) + "\n")
    submit(running, s3_endpoint, path, tmp_path)  # the first run's complete summary is not this upload's answer
    assert json.loads((tmp_path / "out" / "again.jsonl.results.jsonl").read_text())["id"] == "second"


def test_a_failed_job_exits_with_its_reason(running, s3_endpoint, tmp_path):
    path = tmp_path / "bad.csv"
    path.write_text("colour\nred\n")
    with pytest.raises(SystemExit, match="the job failed: .*task"):
        submit(running, s3_endpoint, path, tmp_path)


def test_redrive_sends_dead_chunks_back(echo_pipeline, s3_endpoint, capsys):
    from conftest import EchoService

    echo_pipeline.handlers.service = lambda: EchoService(finish_reason="time")
    out = echo_pipeline.run("dead.jsonl", json.dumps({"task": "headline"}).encode())
    assert out["summary"]["status"] == "partial"
    echo_pipeline.handlers.service = lambda: EchoService()
    cli.main(
        [
            "--endpoint",
            s3_endpoint,
            "--bucket",
            echo_pipeline.bucket,
            "redrive",
            "--job",
            out["summary"]["job"],
            "--queue-url",
            echo_pipeline.queue_url,
        ]
    )
    assert "sent 1 dead chunk(s)" in capsys.readouterr().out
    echo_pipeline.drain()
    assert echo_pipeline.output("dead.jsonl")["summary"]["status"] == "complete"
