"""`make batch` and `make redrive` (infra/local/batch.py) against the local S3/SQS, with the batch functions
running on the same background pollers that `make run` uses."""

import json
import os
import subprocess
import sys

import pytest
from conftest import ROOT

from infra.local import batch as cli
from infra.local.harness import RunState
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
    assert out["summary"]["status"] == "failed"  # its one line's chunk failed every attempt
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


# --- `make batch` as a user runs it: a process of its own, following the running `make run` ----------------------
@pytest.fixture
def make_run_state(s3_endpoint, tmp_path):
    """The state file a running `make run` leaves (this process plays it: alive, its S3 on a free port)."""
    path = tmp_path / "run.json"
    RunState(pid=os.getpid(), api="http://127.0.0.1:1", s3=s3_endpoint).write(path)
    return path


def make_batch(state, *args: str) -> subprocess.CompletedProcess:
    """`make batch`'s command, its console captured."""
    command = [sys.executable, "-m", "infra.local.batch", "--run-state", str(state), *args]
    return subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=120)


def submit_lines(running, state, tmp_path, name: str, *lines: dict) -> subprocess.CompletedProcess:
    path = tmp_path / name
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    return make_batch(
        state, "--bucket", running.bucket, "submit", str(path), "--timeout", "60", "--output-dir", str(tmp_path)
    )


def summary_of(stdout: str) -> dict:
    return json.loads(stdout[stdout.index("{") : stdout.rindex("}") + 1])


def test_make_batch_follows_the_running_make_run(running, make_run_state, s3_endpoint, tmp_path):
    assert not s3_endpoint.endswith(":5001")  # not the default port: only the state file can name it
    done = submit_lines(running, make_run_state, tmp_path, "follow.jsonl", {"id": "a", "task": "headline"})
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert (
        lines[0]
        == f"uploaded s3://{running.bucket}/batch/in/follow.jsonl; waiting for batch/out/follow.jsonl/summary.json …"
    )
    assert summary_of(done.stdout)["status"] == "complete"
    assert lines[-1] == f"output: {tmp_path / 'follow.jsonl.results.jsonl'}" and done.stderr == ""


@pytest.mark.parametrize("left", ["nothing", "a killed run's file"])
def test_make_batch_without_make_run_says_so_in_one_line(tmp_path, left):
    state = tmp_path / "run.json"
    if left != "nothing":
        dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
        RunState(pid=int(dead.stdout), api="http://127.0.0.1:1", s3="http://127.0.0.1:1").write(state)
    (tmp_path / "p.jsonl").write_text("{}\n")
    for command in (["submit", str(tmp_path / "p.jsonl")], ["redrive"]):
        done = make_batch(state, *command)
        assert (done.returncode, done.stdout) == (2, ""), done
        assert done.stderr == (
            f"error: no `make run` is up ({state} names none): start `make run` first, or name its local S3 with "
            "S3_PORT=<port>\n"
        )


def test_a_job_whose_every_line_failed_is_failed_and_make_batch_exits_1(running, make_run_state, tmp_path):
    done = submit_lines(running, make_run_state, tmp_path, "bad.jsonl", {"id": 1, "task": "poem"}, {"id": 2})
    summary = summary_of(done.stdout)
    assert summary["status"] == "failed" and summary["results"] == 0 and summary["errors"] == 2
    assert summary["error_type"] == "no_results"
    local = tmp_path / "bad.jsonl.results.jsonl"
    assert done.stdout.splitlines()[-1] == f"output: {local}"  # each line's error, saved
    assert (done.returncode, done.stderr) == (
        1,
        f"error: the job failed: no line has a result: 2 failed (validation_error: 2); each line's error is in {local}\n",
    )


def test_a_job_with_some_errors_is_partial_and_make_batch_exits_1(running, make_run_state, tmp_path):
    done = submit_lines(
        running, make_run_state, tmp_path, "some.jsonl", {"id": 1, "task": "headline"}, {"id": 2, "task": "poem"}
    )
    summary = summary_of(done.stdout)
    assert summary["status"] == "partial" and summary["results"] == 1 and summary["errors"] == 1
    local = tmp_path / "some.jsonl.results.jsonl"
    assert (done.returncode, done.stderr) == (
        1,
        f"error: the job is partial: 1 of 2 lines failed (validation_error: 1); each line's error is in {local}\n",
    )
    assert [("result" in json.loads(line)) for line in local.read_text().splitlines()] == [True, False]
