"""`make invoke` (infra.local.rie's CLI) refuses in one line, before starting the emulator, what would end in a
traceback inside the function: an old events/*.json path, a named event for another function, a batch event
naming objects the local S3 does not have (a deployed bucket)."""

import json
import os
import subprocess
import sys

from conftest import ROOT

from infra.local import harness


def invoke(*args, endpoint="http://127.0.0.1:9"):
    env = {**os.environ, "AWS_LAMBDA_RIE": "/nonexistent/aws-lambda-rie"}  # never reached
    return subprocess.run(
        [sys.executable, "-m", "infra.local.rie", "--endpoint", endpoint, *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def one_line(result) -> str:
    line = result.stderr.strip()
    assert result.returncode != 0 and "\n" not in line and "Traceback" not in line, result.stderr
    return line


def test_an_old_events_path_names_the_event_to_use():
    line = one_line(invoke("--event", "events/s3-batch-in.json", "--function", "batch-dispatch"))
    assert line.startswith("error: EVENT=events/s3-batch-in.json: no such file; use EVENT=s3-batch-in"), line
    assert all(name in line for name in harness.EVENTS), line
    line = one_line(invoke("--event", "nope.json", "--function", "api"))
    assert "not a named event" in line and all(name in line for name in harness.EVENTS), line


def test_a_named_event_knows_its_function(tmp_path):
    line = one_line(invoke("--event", "s3-batch-in", "--function", "api"))
    assert line == "error: EVENT=s3-batch-in is an event for FUNCTION=batch-dispatch, not api"
    (tmp_path / "event.json").write_text(json.dumps(harness.event("api-health")))
    line = one_line(invoke("--event", str(tmp_path / "event.json")))
    assert "say which function it is for, FUNCTION=<" in line


def test_a_batch_event_naming_a_deployed_bucket_is_refused_before_invoking(s3, s3_endpoint, tmp_path):
    s3.create_bucket(Bucket=harness.BATCH_BUCKET)  # what `make run` creates
    event = harness.event("s3-batch-in")
    event["Records"][0]["s3"]["bucket"]["name"] = "newsgen-batch-123456789012-us-east-1"
    path = tmp_path / "deployed.json"
    path.write_text(json.dumps(event))
    line = one_line(invoke("--event", str(path), "--function", "batch-dispatch", endpoint=s3_endpoint))
    assert line.startswith(
        f"error: EVENT={path} names s3://newsgen-batch-123456789012-us-east-1/{harness.EXAMPLE_KEY}, which the "
        f"local S3 at {s3_endpoint} does not have"
    ), line
    assert "use EVENT=s3-batch-in" in line


def test_without_make_run_it_says_what_to_start_first():
    line = one_line(invoke("--event", "s3-batch-in"))
    assert line.startswith("error: the local S3/SQS at http://127.0.0.1:9 is not ready") and "make run" in line
