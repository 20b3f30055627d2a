"""`make sam-local`'s own parts, without Docker: its invoke environment comes from the harness, and each step
is logged, timed and cleaned up after."""

from infra.local import harness as h
from infra.local import sam_local


def test_env_vars_are_the_harness_environment_of_each_function():
    env = sam_local.sam_env_vars("http://172.17.0.1:5001", "http://queue")
    assert set(env) == {f.logical_id for f in h.functions().values()}
    for f in h.functions().values():
        assert set(env[f.logical_id]) >= set(f.environment)  # the template's variables, some set for here
        assert env[f.logical_id]["AWS_ENDPOINT_URL"] == "http://172.17.0.1:5001"
        assert env[f.logical_id]["MODEL_BUCKET"] == h.MODEL_BUCKET
        for variable in ("WATERMARK_KEYS_PARAMETER", "WATERMARK_KEYS_SECRET"):  # a keyring made in the container
            assert env[f.logical_id][variable] == "", variable
    assert env[h.functions()["batch-dispatch"].logical_id]["BATCH_QUEUE_URL"] == "http://queue"


def test_sam_gets_the_harness_credentials_and_nothing_of_a_real_account(monkeypatch):
    monkeypatch.setenv("AWS_PROFILE", "someone")
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://elsewhere")
    env = sam_local.sam_env()
    assert env.items() >= h.CREDENTIALS.items() and env["AWS_REGION"] == h.REGION
    assert "AWS_PROFILE" not in env and "AWS_ENDPOINT_URL" not in env


def test_each_step_is_logged_and_what_it_started_is_stopped_on_failure(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(sam_local, "LOGS", tmp_path)
    stopped = []

    def first_step(run):
        print("inside the first step")
        run.cleanups.append(lambda: stopped.append("first"))

    def failing_step(run):
        run.sh("sh -c", "echo from a command; exit 3")

    def never_run(run):
        raise AssertionError("a step after a failure ran")

    assert sam_local.main([first_step, failing_step, never_run]) == 1
    out = capsys.readouterr().out
    assert "[1] first-step …" in out and "[1] first-step ok (" in out
    assert "[2] failing-step FAILED" in out and "    from a command" in out  # the log's tail
    assert "never-run" not in out and stopped == ["first"]
    assert "inside the first step" in (tmp_path / "01-first-step.log").read_text()
    assert "== sam-local summary (FAILED, exit 1" in out


def test_skip_api(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(sam_local, "LOGS", tmp_path)
    monkeypatch.setenv("SAM_LOCAL_SKIP_API", "1")
    assert sam_local.main([lambda run: None, sam_local.start_api]) == 0
    assert "start-api" not in capsys.readouterr().out
