"""The GPU training job, end to end: `python -m training pipeline` (the training image's entry point, and
`make train-local` on a CPU with BASE=tiny).

    fetch data -> prepare -> train each task -> distill each task -> publish <VERSION>-distilled -> publish <VERSION>

Settings are environment variables; SETTINGS below lists them with their defaults (an empty value means the
default). The distilled models are published first, without moving LATEST (serve one by pinning
HEADLINE_MODEL_VERSION / ARTICLE_MODEL_VERSION); LATEST moves to the fine-tuned ones last, once every version of
the job is in S3.

Resume-safe: run it again with the same WORKDIR and a step whose final model exists is skipped, a step whose
output has checkpoints continues with --resume, a version already published is not published again. A WORKDIR
remembers its inputs and settings (job.txt) and refuses to resume with others. SIGTERM (`docker stop`, a Spot
interruption) ends the job like a failed step: run it again to resume.
"""

from __future__ import annotations

import difflib
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import NoReturn

from newsgen import artifacts, s3
from newsgen.prompt import Task
from training.train import CHECKPOINTS, checkpoints_in

SETTINGS = {
    "WORKDIR": "newsgen-train",  # where data, runs and markers live (/opt/ml/work in the image)
    "DATA": "",  # local CSV files or directories of CSVs, space-separated
    "DATA_S3_URIS": "",  # s3://bucket/key.csv objects, comma- or space-separated (AWS_ENDPOINT_URL is honoured)
    "BASE": "distilgpt2",  # tiny | distilgpt2 | gpt2 | a local checkpoint
    "EPOCHS": "3",
    "MAX_STEPS": "-1",  # > 0 overrides EPOCHS
    "BATCH_SIZE": "8",  # per device
    "LEARNING_RATE": "",  # `train` only; these four go to `train` and `distill` when set:
    "EVAL_STEPS": "",
    "SAVE_STEPS": "",
    "LOGGING_STEPS": "",
    "MAX_LENGTH": "",
    "NPROC": "1",  # GPUs to train on, or auto (all); > 1 runs `train` under torchrun; `distill` uses one
    "DISTILL": "1",  # 0: no distillation, no -distilled versions
    "DISTILL_EPOCHS": "",  # default EPOCHS
    "DISTILL_MAX_STEPS": "",  # default MAX_STEPS
    "STUDENT_LAYERS": "",  # default: distill's, half the teacher's layers
    "EXTRA_TRAIN_ARGS": "",  # more options for `train`, word-split and appended
    "EXTRA_DISTILL_ARGS": "",  # the same for `distill`
    "MODEL_BUCKET": "",  # unset: the job stops before publishing, the models stay in WORKDIR/runs
    "MODEL_PREFIX": "models",
    "EXPORT": "fp32",  # or int8 (what the Lambda serves, loaded without quantising)
    "VERSION": "",  # default: the UTC time of the job's first run, kept in WORKDIR/VERSION
}
SHARED = ("EVAL_STEPS", "SAVE_STEPS", "LOGGING_STEPS", "MAX_LENGTH")  # passed to `train` and `distill` when set
RECORDED = ("BASE", "EPOCHS", "MAX_STEPS", "BATCH_SIZE", "LEARNING_RATE", "MAX_LENGTH", "DISTILL")
RECORDED += ("DISTILL_EPOCHS", "DISTILL_MAX_STEPS", "STUDENT_LAYERS")  # what job.txt compares


class JobError(ValueError):
    """A setting or input the job cannot run with (exit 2)."""


def log(message: str) -> None:
    print(f"[newsgen-train {time.strftime('%FT%TZ', time.gmtime())}] {message}", file=sys.stderr, flush=True)


def duration(seconds: float) -> str:
    return f"{int(seconds) // 60}m{int(seconds) % 60:02d}s"


def training(*args, launcher: tuple = ()) -> None:
    """One `python -m training` command in its own process (the GPU's memory is free again afterwards)."""
    subprocess.run([sys.executable, *map(str, [*launcher, "-m", "training", *args])], check=True)


def gpus() -> list[str]:
    query = ["nvidia-smi", "--query-gpu=index,name,memory.total", "--format=csv,noheader"]
    listed = subprocess.run(query, capture_output=True, text=True) if shutil.which("nvidia-smi") else None
    return listed.stdout.splitlines() if listed and listed.returncode == 0 else []


def settings(env) -> dict:
    """SETTINGS from the environment, checked; NPROC resolved to a number, the version chosen and kept."""
    job = {name: env.get(name) or default for name, default in SETTINGS.items()}
    job["DISTILL_EPOCHS"] = job["DISTILL_EPOCHS"] or job["EPOCHS"]
    job["DISTILL_MAX_STEPS"] = job["DISTILL_MAX_STEPS"] or job["MAX_STEPS"]
    job["GPUS"] = gpus()
    if job["NPROC"] == "auto":
        job["NPROC"] = str(max(len(job["GPUS"]), 1))
    if not job["NPROC"].isdigit() or int(job["NPROC"]) < 1:
        raise JobError(f"NPROC must be a positive integer or auto, not {job['NPROC']!r}")
    # Data-parallel training is for GPUs (NCCL): on CPU the ranks would each train alone and write the same output.
    if int(job["NPROC"]) > max(len(job["GPUS"]), 1):
        raise JobError(f"NPROC={job['NPROC']} needs {job['NPROC']} GPUs; nvidia-smi sees {len(job['GPUS'])}")
    for name in ("MAX_STEPS", "DISTILL_MAX_STEPS"):
        if not re.fullmatch(r"-?[0-9]+", job[name]):
            raise JobError(f"{name} must be an integer, not {job[name]!r}")
    if job["DISTILL"] not in ("0", "1"):
        raise JobError(f"DISTILL must be 0 or 1, not {job['DISTILL']!r}")
    if not job["DATA"] and not job["DATA_S3_URIS"]:
        raise JobError("no training data: set DATA (local CSV files) and/or DATA_S3_URIS (s3://bucket/key.csv, ...)")
    workdir = job["WORKDIR"] = Path(job["WORKDIR"]).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    kept = workdir / "VERSION"
    version = job["VERSION"] or (kept.is_file() and kept.read_text().strip()) or artifacts.new_version_name()
    # newsgen.artifacts' version names, leaving room for the "-distilled" suffix.
    if not artifacts.VERSION_PATTERN.match(version + "-distilled") or version == artifacts.LATEST_NAME:
        raise JobError(f"VERSION {version!r} must be letters, digits, '.', '_' or '-' (at most 118, not LATEST)")
    kept.write_text(version + "\n")
    job["VERSION"] = version
    return job


# ------------------------------------------------------------------------------------------------ the steps
def fetch_data(job: dict) -> str:
    """The CSVs: DATA as they are, DATA_S3_URIS downloaded to WORKDIR/raw (not again when already there whole)."""
    inputs = []
    for item in map(Path, job["DATA"].split()):
        found = sorted(item.glob("*.csv")) if item.is_dir() else [item] if item.is_file() else None
        if not found:
            what = "a directory with no .csv files" if found == [] else "neither a file nor a directory"
            raise JobError(f"DATA: {item} is {what}")
        inputs += found
    raw = job["WORKDIR"] / "raw"
    for index, uri in enumerate(job["DATA_S3_URIS"].replace(",", " ").split()):
        if not uri.startswith("s3://") or "/" not in uri[5:] or uri.endswith("/"):
            raise JobError(f"DATA_S3_URIS: {uri!r} is not an s3://bucket/key object URI")
        bucket, key = uri[5:].split("/", 1)
        target = raw / f"{index:02d}-{Path(key).name}"
        size = s3.client().head_object(Bucket=bucket, Key=key)["ContentLength"]
        if target.is_file() and target.stat().st_size == size:
            log(f"[fetch] {uri}: already here ({size} bytes)")
        else:
            log(f"[fetch] {uri} -> {target} ({size} bytes)")
            raw.mkdir(exist_ok=True)
            partial = target.with_name(target.name + ".partial")
            s3.client().download_file(bucket, key, str(partial), Config=s3.TRANSFER_CONFIG)
            partial.replace(target)
        inputs.append(target)
    # What this WORKDIR was started with: resuming it with other data or other settings would mix two jobs.
    record = [f"input {path.name} {path.stat().st_size}\n" for path in inputs]
    record += [f"setting {name}={job[name]}\n" for name in RECORDED]
    recorded = job["WORKDIR"] / "job.txt"
    if recorded.is_file() and recorded.read_text() != "".join(record):
        sys.stderr.writelines(difflib.unified_diff(recorded.read_text().splitlines(True), record, "that job", "this"))
        raise JobError(
            f"WORKDIR {job['WORKDIR']} holds a job with other inputs or settings (above: - that job, + this one); "
            "use another WORKDIR, or delete it to start over"
        )
    recorded.write_text("".join(record))
    job["INPUTS"] = inputs
    return f"{len(inputs)} CSV file(s)"


def prepare(job: dict) -> str:
    data = job["WORKDIR"] / "data"
    if all((data / name).is_file() for name in ("report.json", "train.jsonl", "validation.jsonl")):
        return f"skipped: {data} is prepared"
    training("prepare", "--input", *job["INPUTS"], "--output", data)
    return "done"


def fit(job: dict, task: str, distilled: bool) -> str:
    """`train` (under torchrun when NPROC > 1) or `distill` one task's model; skipped when its final model is
    there, continued with --resume when its output has checkpoints."""
    runs = job["WORKDIR"] / "runs"
    out = runs / f"{task}-distilled" if distilled else runs / task
    if all((out / name).is_file() for name in ("model.safetensors", "config.json", "training_report.json")):
        return f"skipped: {out} has the final model"
    args = ["--data", job["WORKDIR"] / "data", "--output", out, "--batch-size", job["BATCH_SIZE"]]
    args += [f"--{name.lower().replace('_', '-')}={job[name]}" for name in SHARED if job[name]]
    if distilled:
        args = ["distill", "--teacher", runs / task, "--task", task, *args]
        args += ["--epochs", job["DISTILL_EPOCHS"], "--max-steps", job["DISTILL_MAX_STEPS"]]
        args += ["--student-layers", job["STUDENT_LAYERS"]] if job["STUDENT_LAYERS"] else []
    else:
        args = ["train", "--task", task, "--base", job["BASE"], *args]
        args += ["--epochs", job["EPOCHS"], "--max-steps", job["MAX_STEPS"]]
        args += ["--learning-rate", job["LEARNING_RATE"]] if job["LEARNING_RATE"] else []
    resume = bool(checkpoints_in(out / CHECKPOINTS))
    if resume:
        log(f"{out} has checkpoints: resuming")
    args += ["--resume"] * resume + shlex.split(job["EXTRA_DISTILL_ARGS" if distilled else "EXTRA_TRAIN_ARGS"])
    nproc = 1 if distilled else int(job["NPROC"])
    torchrun = ("-m", "torch.distributed.run", "--standalone", "--nproc-per-node", nproc)  # from this interpreter
    training(*args, launcher=torchrun if nproc > 1 else ())
    return "resumed from a checkpoint" if resume else "done"


def publish(job: dict, task: str, version: str, latest: bool) -> str:
    """The fine-tuned model, moving LATEST (latest=True), or the distilled one beside it; once."""
    marker = job["WORKDIR"] / "published" / f"{task}-{version}"
    if marker.is_file():
        return "skipped: published by an earlier run"
    bucket, prefix = job["MODEL_BUCKET"], job["MODEL_PREFIX"]
    where = f"s3://{bucket}/{prefix}/{task}/{version}/"
    # A run that stopped between the manifest and the marker: the version is there (immutable); only make sure
    # LATEST points at it when it should.
    manifest = artifacts.version_prefix(prefix, task, version) + artifacts.MANIFEST_NAME
    if artifacts.object_exists(s3.client(), bucket, manifest):
        if latest:
            artifacts.set_latest(s3.client(), bucket=bucket, prefix=prefix, task=task, version=version)
        note = f"already in {where}"
    else:
        model = job["WORKDIR"] / "runs" / (task if latest else f"{task}-distilled")
        args = ["--bucket", bucket, "--prefix", prefix, "--task", task, "--version", version, "--export", job["EXPORT"]]
        training("publish", "--model", model, *args, *([] if latest else ["--no-latest"]))
        note = where + (" (LATEST)" if latest else "")
    marker.parent.mkdir(exist_ok=True)
    marker.touch()
    return note


# ------------------------------------------------------------------------------------------------- the job
def run_job(env=os.environ) -> dict:
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # docker stop, a Spot interruption: resumable
    started, summary = time.monotonic(), []
    try:
        job = settings(env)
    except JobError as exc:
        log(f"error: {exc}")
        raise SystemExit(2) from None
    version, bucket, distill = job["VERSION"], job["MODEL_BUCKET"], job["DISTILL"] == "1"
    shown = ("BASE", "EPOCHS", "MAX_STEPS", "BATCH_SIZE", "NPROC", "DISTILL", "VERSION")
    log("job: " + " ".join(f"{name.lower()}={job[name]}" for name in shown))
    destination = f"s3://{bucket}/{job['MODEL_PREFIX']}/" if bucket else "(nowhere: MODEL_BUCKET is unset)"
    log(f"workdir: {job['WORKDIR']}; publish to: {destination}")
    for gpu in job["GPUS"]:
        log(f"[gpu] {gpu}")

    def failed(code: int) -> NoReturn:
        took = duration(time.monotonic() - started)
        log(f"job failed (exit {code}) after {took}; run it again with the same WORKDIR to resume")
        raise SystemExit(code)

    def step(name: str, action, *args) -> None:
        log(f"==> {name}")
        began = time.monotonic()
        try:
            note = action(job, *args)
        except BaseException:
            log(f"!!! {name} failed after {duration(time.monotonic() - began)}")
            raise
        took = duration(time.monotonic() - began)
        log(f"<== {name}: {note} in {took}")
        summary.append(f"{name:<44} {took:<7} {note}")

    try:
        step("fetch data", fetch_data)
        step("prepare", prepare)
        for task in Task:
            step(f"train {task}", fit, task, False)
        for task in Task if distill else ():
            step(f"distill {task}", fit, task, True)
        for task in Task if distill and bucket else ():
            step(f"publish {task} {version}-distilled", publish, task, f"{version}-distilled", False)
        for task in Task if bucket else ():
            step(f"publish {task} {version}", publish, task, version, True)
    except subprocess.CalledProcessError as exc:  # the command has said why
        failed(exc.returncode)
    except SystemExit as exc:  # SIGTERM
        failed(exc.code if isinstance(exc.code, int) else 1)
    except KeyboardInterrupt:
        failed(130)
    except Exception as exc:
        log(f"error: {exc}")
        failed(2 if isinstance(exc, JobError) else 1)
    log(f"summary (total {duration(time.monotonic() - started)}):")
    for line in summary:
        log(f"    {line}")
    if not bucket:
        log(f"MODEL_BUCKET is not set: stopping before publish. The models are in {job['WORKDIR'] / 'runs'};")
        log("set MODEL_BUCKET (MODEL_PREFIX, AWS_ENDPOINT_URL for a local S3) and run again with the same WORKDIR.")
    else:
        distilled = f"; distilled: {version}-distilled (pin it to serve it)" if distill else ""
        log(f"published version {version} (LATEST) for {', '.join(Task)}{distilled}")
    return {"version": version, "workdir": str(job["WORKDIR"]), "published": bool(bucket)}
