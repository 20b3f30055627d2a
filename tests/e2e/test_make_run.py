"""`make run` as a user sees it: the process started as the Makefile starts it (with demo models already
trained in its workdir), its console transcript, a publish from the training CLI showing up, and how it stops."""

from __future__ import annotations

import json
import os
import queue
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from conftest import ROOT, training_cli

REQUEST_LINE = re.compile(r"^(GET|POST) (/\S*) (\d{3}) (\d+) ms$")


class MakeRun:
    """`python -m infra.local.run` in a subprocess, its stdout and stderr read line by line."""

    def __init__(self, workdir: Path, *args: str):
        self.workdir = workdir
        ports = ["--port", "0", "--s3-port", "0"]  # free ones; the banner says which
        keys = ["--watermark-keys", str(workdir / "keys.json")]
        self.state = workdir / "run.json"  # not the checkout's .newsgen/run.json, which a real `make run` owns
        own = ["--workdir", str(workdir), "--state-file", str(self.state)]
        self.process = subprocess.Popen(
            [sys.executable, "-m", "infra.local.run", *ports, *own, *keys, *args],
            cwd=ROOT,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.lines: list[str] = []
        self._queue: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.process.stdout:
            self._queue.put(line.rstrip("\n"))
        self._queue.put(None)

    def wait_for(self, pattern: str, timeout: float = 180) -> re.Match:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self._queue.get(timeout=0.5)
            except queue.Empty:
                continue
            if line is None:
                raise AssertionError(f"exited ({self.process.wait()}) before {pattern!r}:\n" + self.transcript)
            self.lines.append(line)
            if found := re.search(pattern, line):
                return found
        raise AssertionError(f"no {pattern!r} within {timeout}s:\n" + self.transcript)

    def stop(self, signum: int, timeout: float = 60) -> int:
        self.process.send_signal(signum)
        code = self.process.wait(timeout=timeout)
        while (line := self._queue.get(timeout=10)) is not None:
            self.lines.append(line)
        return code

    @property
    def transcript(self) -> str:
        return "\n".join(self.lines)

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()


@pytest.fixture
def workdir(tmp_path, headline_model, article_model) -> Path:
    """A `make run` workdir whose demo models are already trained (the session's tiny ones)."""
    from infra.local.run import source_key

    for task, model in (("headline", headline_model), ("article", article_model)):
        shutil.copytree(model, tmp_path / source_key(None) / task, ignore=shutil.ignore_patterns("checkpoints"))
    return tmp_path


@pytest.fixture
def make_run(workdir):
    started = []

    def start(*args: str) -> MakeRun:
        started.append(MakeRun(workdir, *args))
        return started[-1]

    yield start
    for run in started:
        run.kill()


def call(url: str, data: bytes | None = None) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(urllib.request.Request(url, data=data), timeout=60) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def listening(url: str) -> bool:
    host, port = url.removeprefix("http://").split(":")
    with socket.socket() as sock:
        return sock.connect_ex((host, int(port))) == 0


def test_quiet_console_publish_shows_at_once_and_ctrl_c_stops_everything(make_run, workdir, headline_model):
    run = make_run()
    s3 = run.wait_for(r"^local S3 on (http://\S+)$").group(1)
    # A first start trains nothing: it publishes the shipped demo models through the real publish step.
    run.wait_for(r"^demo models: shipped in infra/local/demo-models \(make demo-models trains them again\)$")
    url = run.wait_for(r"^newsgen is up in \d+s: (http://\S+)").group(1)
    run.wait_for(r"^models: 4-layer, 128-wide GPT-2s .* on the synthetic demo corpus .*: they recombine its phrases")
    export = run.wait_for(r"^  export (AWS_ENDPOINT_URL=.*)$").group(1)
    run.wait_for(r"^logs: ")

    assert call(f"{url}/v1/headlines", json.dumps({"n": 2}).encode())[0] == 200
    assert call(f"{url}/v1/headlines", b'{"n": ')[0] == 400
    assert call(f"{url}/nope")[0] == 404
    status, models = call(f"{url}/v1/models")
    assert status == 200
    first = {m["task"]: m["version"] for m in models["models"]}

    # The banner's environment is all the training CLI needs to publish to this S3; LATEST is re-read in seconds.
    env = {**os.environ, **dict(word.split("=", 1) for word in shlex.split(export))}
    assert env["AWS_ENDPOINT_URL"] == s3
    target = ["--bucket", env["MODEL_BUCKET"], "--prefix", env["MODEL_PREFIX"], "--task", "headline"]
    published = training_cli("publish", "--model", str(headline_model), *target, "--version", "next", env=env)
    assert published.returncode == 0, published.stderr
    published_at = time.monotonic()
    while (seen := {m["task"]: m["version"] for m in call(f"{url}/v1/models")[1]["models"]})["headline"] != "next":
        assert time.monotonic() - published_at < 15, f"/v1/models still says {seen}"
        time.sleep(0.5)
    assert seen == {**first, "headline": "next"}
    listing = training_cli("versions", "--task", "headline", env=env)
    assert listing.returncode == 0, listing.stderr
    assert json.loads(listing.stdout)["latest"] == "next"

    assert run.stop(signal.SIGINT) == 0, run.transcript
    transcript = run.transcript
    requests = [REQUEST_LINE.match(line) for line in run.lines if REQUEST_LINE.match(line)]
    assert [(m[1], m[2], m[3]) for m in requests[:4]] == [
        ("POST", "/v1/headlines", "200"),
        ("POST", "/v1/headlines", "400"),
        ("GET", "/nope", "404"),
        ("GET", "/v1/models", "200"),
    ]
    assert {(m[1], m[2], m[3]) for m in requests[4:]} == {("GET", "/v1/models", "200")}
    assert not [line for line in run.lines if line.lstrip().startswith("{")], transcript  # no JSON log lines
    for noise in ("Warning:", "Traceback", "it/s]", "deprecated"):
        assert noise not in transcript, transcript
    assert run.lines[-2:] == ["stopping…", "stopped"], transcript
    assert not listening(url) and not listening(s3)
    # The Lambda log stream was kept, in the workdir's run.log.
    logged = (workdir / "run.log").read_text().splitlines()
    assert any(json.loads(line).get("message") == "generated" for line in logged if line.startswith("{"))


def test_verbose_shows_the_json_logs_and_sigterm_stops_everything(make_run):
    run = make_run("--verbose")
    s3 = run.wait_for(r"^local S3 on (http://\S+)$").group(1)
    url = run.wait_for(r"^newsgen is up in \d+s: (http://\S+)").group(1)
    assert call(f"{url}/v1/models")[0] == 200
    run.wait_for(r"^GET /v1/models 200 \d+ ms$")
    assert run.stop(signal.SIGTERM) == 0, run.transcript  # not SIGABRT from torch's threads at exit
    assert any(line.startswith('{"_aws"') for line in run.lines), run.transcript  # the metrics, as Lambda logs them
    assert "Traceback" not in run.transcript and run.lines[-1] == "stopped"
    assert not listening(url) and not listening(s3)


def test_make_batch_follows_make_run_to_its_ports_until_it_stops(make_run, tmp_path):
    from infra.local.harness import RunState

    run = make_run()
    s3 = run.wait_for(r"^local S3 on (http://\S+)$").group(1)
    url = run.wait_for(r"^newsgen is up in \d+s: (http://\S+)").group(1)
    assert RunState.read(run.state) == RunState(pid=run.process.pid, api=url, s3=s3)
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text(json.dumps({"id": 1, "task": "headline", "parameters": {"max_new_tokens": 4}}) + "\n")
    batch = [sys.executable, "-m", "infra.local.batch", "--run-state", str(run.state)]
    submit = [*batch, "submit", str(prompts), "--output-dir", str(tmp_path), "--timeout", "120"]
    done = subprocess.run(submit, cwd=ROOT, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0 and '"status": "complete"' in done.stdout, done.stdout + done.stderr
    assert done.stdout.splitlines()[-1] == f"output: {tmp_path / 'prompts.jsonl.results.jsonl'}"
    assert run.stop(signal.SIGINT) == 0, run.transcript
    assert not run.state.exists()
    after = subprocess.run([*batch, "redrive"], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert after.returncode == 2 and after.stderr.startswith("error: no `make run` is up"), after.stderr


def test_ctrl_c_while_starting_stops_the_local_s3(make_run):
    run = make_run()
    s3 = run.wait_for(r"^local S3 on (http://\S+)$").group(1)
    assert run.stop(signal.SIGINT) == 0, run.transcript
    assert "Traceback" not in run.transcript and run.lines[-1] == "stopped", run.transcript
    assert not listening(s3)


@pytest.mark.parametrize("option, variable", [("--port", "PORT"), ("--s3-port", "S3_PORT")])
def test_a_port_in_use_is_named_with_the_make_variable(tmp_path, option, variable):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        other = "--s3-port" if option == "--port" else "--port"
        result = subprocess.run(
            [sys.executable, "-m", "infra.local.run", option, str(port), other, "0", "--workdir", str(tmp_path)],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=120,
        )
    assert result.returncode == 2
    line = result.stderr.strip()
    assert "\n" not in line and f"port {port} on 127.0.0.1" in line, line
    assert f"make run {variable}={port + 1}" in line, line
