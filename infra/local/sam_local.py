"""`make sam-local`: `sam build`, `sam local invoke` and `sam local start-api` end to end on this machine, offline.

    python -m infra.local.sam_local     (as root: it may apt-get install docker.io/debootstrap and start dockerd)

Each step (STEPS) logs to .newsgen/sam-local/logs/NN-<step>.log and is timed; a failing one shows its log's tail.
Everything it starts (processes, containers, dockerd) is stopped at exit, on failure too. The Lambda base image
infra/lambda/Dockerfile names is pulled; only when it cannot be (no public registry here) does the stand-in of
infra/lambda/standin/ take its name, as a FALLBACK. The image installs from a wheelhouse (a cache), so that its
build needs no network. Checks: the API and the batch worker invoked (200 with generated headlines, cold; the
harness' example chunk: no batchItemFailures, the job `complete`), start-api cold and warm (and the playground
page at /), the image size, and the image with the demo models baked in, run with --network none.
Settings (environment): SAM_LOCAL_DIR (.newsgen/sam-local), SAM_VENV (.venv-sam), S3_PORT (harness.S3_PORT if
free), API_PORT (a free one), SAM_LOCAL_SKIP_API=1, SAM_LOCAL_REBUILD_BASE=1 (the stand-in and its rootfs).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
import traceback
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

import yaml
from aws_lambda_powertools.utilities.data_classes import S3Event

from handlers.batch import upload_of
from infra.local import harness as h
from newsgen import batch

ROOT = h.ROOT
WORK = Path(os.environ.get("SAM_LOCAL_DIR", ROOT / ".newsgen/sam-local"))
LOGS = WORK / "logs"
SAM_VENV = Path(os.environ.get("SAM_VENV", ROOT / ".venv-sam"))
SAM = SAM_VENV / "bin/sam"
DOCKERFILE = ROOT / "infra/lambda/Dockerfile"
BASE_IMAGE = re.search(r"^ARG BASE_IMAGE=(\S+)", DOCKERFILE.read_text(), re.M)[1]
ROOTFS_IMAGE = "newsgen-local/debian-bookworm-python3.11:rootfs"
AWSLAMBDARIC_VERSION = "4.2.2"
WHEELHOUSE = ROOT / "infra/lambda/wheelhouse"
BAKED = ROOT / "infra/lambda/baked"
OFFLINE_IMAGE = "newsgen-offline:local"
_API = h.functions()["api"].logical_id  # `sam build` tags its image <logical id, lower case>:<DockerTag>
FUNCTION_IMAGE = f"{_API.lower()}:{h.load_template()['Resources'][_API]['Metadata']['DockerTag']}"
LOCAL_TEMPLATE = ROOT / ".aws-sam/build/template.local.yaml"
ENV_VARS = WORK / "env.json"
KEYRING = Path("/tmp/newsgen/watermark-keys.json")  # in the container, made on first use (deployed: SSM)
SAM_BUCKET = "newsgen-sam-local"  # the worker's input: infra.local.run's own pollers watch BATCH_BUCKET
SAM_CONTAINERS = "docker ps -aq --filter label=sam.cli.container.type=lambda --filter status=exited"


class Failed(Exception):
    """A step's check or command failed."""


def expect(condition: object, detail: object) -> None:
    if not condition:
        raise Failed(f"unexpected: {detail}")


def argv(cmd: str, *args: object) -> list[str]:
    """`cmd` split as a shell would, then `args` as they are; docker is docker.io's client (the daemon's)."""
    words = shlex.split(cmd) + [str(a) for a in args]
    if words[0] == "docker" and Path("/usr/bin/docker").exists():
        words[0] = "/usr/bin/docker"
    return words


def quiet(cmd: str, *args: object) -> str | None:
    """The output of a short command, or None if it fails."""
    done = subprocess.run(argv(cmd, *args), capture_output=True, text=True)
    return done.stdout.strip() if done.returncode == 0 else None


class Run:
    """Named steps, each with its own log and time, and what they start, stopped at exit."""

    def __init__(self) -> None:
        self.term, self.started, self.summary = sys.stdout, time.monotonic(), []  # term: a step's output is its log
        self.cleanups: list[Callable[[], object]] = []
        self.child: subprocess.Popen | None = None  # the running step's command
        self.log_path = LOGS / "run.log"
        self.local_s3: subprocess.Popen | None = None
        self.endpoint = ""  # the local S3/SQS, as the containers reach it
        self.python = ""  # the base image's Python, X.Y

    def say(self, text: str) -> None:
        print(f"{time.strftime('%H:%M:%S')}  {text}", file=self.term, flush=True)

    def step(self, number: int, fn: Callable[[Run], None]) -> None:
        name = fn.__name__.replace("_", "-")
        self.log_path, started, at = LOGS / f"{number:02d}-{name}.log", time.monotonic(), len(self.summary)
        self.say(f"[{number}] {name} …")
        try:
            with self.log_path.open("w") as log, contextlib.redirect_stdout(log), contextlib.redirect_stderr(log):
                fn(self)
        except BaseException as exc:
            with self.log_path.open("a") as log:
                traceback.print_exc(file=log)
            took = f"{time.monotonic() - started:.1f}s"
            self.say(f"[{number}] {name} FAILED ({exc!r}, {took}); last lines of {self.log_path}:")
            print("\n".join(f"    {line}" for line in self.log_path.read_text().splitlines()[-40:]), file=self.term)
            self.summary.insert(at, f"{name:<14} FAILED  {took:>8}  {self.log_path}")
            raise
        took = f"{time.monotonic() - started:.1f}s"
        self.say(f"[{number}] {name} ok ({took})")
        self.summary.insert(at, f"{name:<14} ok      {took:>8}")  # before its notes

    def note(self, text: str) -> None:
        self.summary.append(f"  {text}")

    def sh(self, cmd: str, *args: object, capture=False, input: str | None = None, stdin=None, env=None) -> str:
        """Run a command with its output in the step's log (stdout returned instead, with capture)."""
        words = argv(cmd, *args)
        print("$", shlex.join(words), flush=True)
        out, stdin = subprocess.PIPE if capture else sys.stdout, subprocess.PIPE if input else stdin
        self.child = subprocess.Popen(words, stdout=out, stderr=sys.stderr, stdin=stdin, text=True, env=env)
        stdout, _ = self.child.communicate(input)
        rc, self.child = self.child.returncode, None
        if rc:
            print(stdout or "")
            raise Failed(f"{shlex.join(words)[:100]} exited {rc}")
        return stdout or ""

    def background(self, label: str, words: list[str], log: Path, grace: float, env=None) -> subprocess.Popen:
        with log.open("w") as out:
            proc = subprocess.Popen(words, stdout=out, stderr=subprocess.STDOUT, env=env)
        print(f"{label}: pid {proc.pid} (log {log})")
        self.cleanups.append(lambda: self.stop(proc, label, grace))
        return proc

    def stop(self, proc: subprocess.Popen, label: str, grace: float) -> None:
        """SIGTERM, then SIGKILL after `grace` seconds; only processes this run started."""
        if proc.poll() is None:
            self.say(f"stopping {label} (pid {proc.pid})")
            proc.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(grace)
        if proc.poll() is None:
            self.say(f"{label} did not stop in {grace:.0f}s; SIGKILL")
            proc.kill()
            proc.wait()

    def close(self, rc: int) -> None:
        if self.child is not None:
            self.stop(self.child, "the running step's command", 30)
        while self.cleanups:
            try:
                self.cleanups.pop()()
            except Exception as exc:
                self.say(f"at exit: {exc!r}")
        status = "ok" if rc == 0 else f"FAILED, exit {rc}"
        print(
            f"\n== sam-local summary ({status}; total {time.monotonic() - self.started:.1f}s; logs in {LOGS}/)",
            file=self.term,
        )
        print("\n".join(f"  {line}" for line in self.summary), file=self.term, flush=True)


# --- helpers ---------------------------------------------------------------------------------------------
def apt_install(run: Run, package: str) -> None:
    expect(os.geteuid() == 0, f"apt-get install {package} needs root")
    run.sh("bash -c", f"apt-get install -y -q {package} || (apt-get update -q && apt-get install -y -q {package})")


def free_port(host: str, preferred: int = 0) -> int:
    for port in (preferred, 0) if preferred else (0,):
        with socket.socket() as sock, contextlib.suppress(OSError):
            sock.bind((host, port))
            return sock.getsockname()[1]
    raise Failed(f"no free port on {host}")


def wait_for(ready: Callable[[], bool], proc: subprocess.Popen, seconds: float, log: Path) -> None:
    deadline = time.monotonic() + seconds
    while not ready():
        if proc.poll() is not None or time.monotonic() > deadline:
            print(log.read_text(errors="replace")[-8000:])
            raise Failed(f"{proc.args[0]} exited {proc.returncode}" if proc.poll() is not None else "not up in time")
        time.sleep(0.5)


def request(url: str, body: str | None = None, method: str = "GET", timeout: float = 60) -> tuple[int, str]:
    """HTTP status and body; status 0 when nothing answers."""
    req = urllib.request.Request(url, body and body.encode(), {"content-type": "application/json"}, method=method)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()
    except OSError as exc:
        return 0, repr(exc)


def size_of(image: str) -> int:
    return int(quiet("docker image inspect --format {{.Size}}", image) or 0)


def sam_env() -> dict[str, str]:
    """The sam process's environment: fake credentials (nothing here talks to AWS), no telemetry."""
    env = {k: v for k, v in os.environ.items() if k not in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL")}
    local = {"AWS_REGION": h.REGION, "AWS_EC2_METADATA_DISABLED": "true", "SAM_CLI_TELEMETRY": "0"}
    return {**env, **h.CREDENTIALS, **local}


def sam_env_vars(endpoint: str, queue_url: str) -> dict[str, dict[str, str]]:
    """sam's --env-vars: each function's local environment from the harness, by logical id."""
    paths = {"cache_dir": Path("/tmp/newsgen/models"), "watermark_keys_file": KEYRING}
    local = {"queue_url": queue_url, "results_bucket": h.BATCH_BUCKET, **paths}
    keyring = {"WATERMARK_KEYS_PARAMETER": "", "WATERMARK_KEYS_SECRET": ""}  # no AWS: the keyring file
    return {f.logical_id: {**h.function_env(name, endpoint, **local), **keyring} for name, f in h.functions().items()}


def generated(response: dict) -> str:
    """Checks an API answer (200, generated texts marked synthetic); its first text, for the summary."""
    expect(response.get("statusCode") == 200, response)
    body = json.loads(response["body"])
    expect(body.get("results") and all(r["text"] for r in body["results"]) and body["synthetic"] is True, body)
    for r in body["results"]:
        print(f"  [synthetic] {r['text']!r}  ({r['finish_reason']}, {r['generated_tokens']} tokens)")
    return f"{body['results'][0]['text']!r} ({body['model']['task']} {body['model']['version']})"


def sam_invoke(run: Run, function: str, event: dict) -> tuple[dict, float]:
    """`sam local invoke` of a function (harness name) on one event; its answer and the wall time."""
    clear_stale_sam_locks()
    path = WORK / f"event-{function}.json"
    path.write_text(json.dumps(event, indent=2))
    started = time.monotonic()
    cmd = f"{SAM} local invoke {h.functions()[function].logical_id} --skip-pull-image --region {h.REGION} --event"
    out = run.sh(cmd, path, "--template", LOCAL_TEMPLATE, "--env-vars", ENV_VARS, capture=True, env=sam_env())
    print(f"--- response:\n{out}")
    return json.loads(out.strip().splitlines()[-1]), time.monotonic() - started


def clear_stale_sam_locks() -> None:
    """SAM serialises building an image's "rapid" variant with lock files; a sam killed while building leaves
    its lock behind and every later invoke waits 5 minutes for it. Removes those of dead PIDs."""
    for lock in Path(os.environ.get("TMPDIR", "/tmp")).glob("*_rapid-*.building.lock"):
        pid = lock.read_text().split("\n", 1)[0].strip()
        if pid.isdigit() and not Path(f"/proc/{pid}").exists():
            print(f"removing stale SAM lock {lock} (pid {pid} is gone)")
            lock.unlink(missing_ok=True)
            lock.with_suffix(".status").unlink(missing_ok=True)


def pip_download(run: Run, dest: Path, python: str, *requirements: object) -> None:
    """Linux x86_64 wheels for CPython `python` (X.Y), as the image's pip would pick them."""
    target = f"--python-version {python} --implementation cp --abi cp{python.replace('.', '')} --only-binary=:all:"
    platforms = "--platform manylinux_2_28_x86_64 --platform manylinux2014_x86_64"
    run.sh(f"{sys.executable} -m pip download -q {target} {platforms} -d", dest, *requirements)


# --- steps -----------------------------------------------------------------------------------------------
def dockerd(run: Run) -> None:
    expect(SAM.exists(), f"{SAM} missing: run `make sam-venv`")
    if not shutil.which("dockerd"):
        apt_install(run, "docker.io")
    run.sh(f"{SAM} --version")
    if quiet("docker info") is not None:
        print("reusing the running Docker daemon (not stopped at exit)")
        return
    expect(os.geteuid() == 0, "no Docker daemon answers, and starting one needs root")
    log = LOGS / "dockerd.log"
    proc = run.background("dockerd", ["dockerd", "--host", "unix:///var/run/docker.sock"], log, grace=60)
    wait_for(lambda: quiet("docker info") is not None, proc, 60, log)
    run.sh("docker version")
    # Lambda containers an earlier, interrupted run left on this daemon (SAM labels its containers).
    if exited := (quiet(SAM_CONTAINERS) or "").split():
        run.sh("docker rm", *exited)


def local_s3(run: Run) -> None:
    """infra.local.run (moto S3/SQS + the demo models) on the docker0 bridge: SAM's containers cannot reach the
    host's loopback (its `--docker-network host` does not put them in the host's network)."""
    bind = (quiet("ip -4 -o addr show dev docker0") or "").partition(" inet ")[2].split("/")[0]
    expect(bind, "docker0 has no IPv4 address")
    s3_port = free_port(bind, int(os.environ.get("S3_PORT", h.S3_PORT)))
    cmd = argv(f"{sys.executable} -m infra.local.run --host {bind} --port {free_port(bind)} --s3-port {s3_port}")
    run.local_s3 = run.background("infra.local.run (local S3)", cmd, LOGS / "local-s3.log", grace=30)
    run.endpoint = h.endpoint(s3_port, bind)
    os.environ.update(h.CREDENTIALS, AWS_ENDPOINT_URL=run.endpoint)  # for `training mirror`


def base_image(run: Run) -> None:
    """The Lambda base image the Dockerfile names: pulled (or a real one here); the stand-in only if it cannot be."""
    label = quiet("docker image inspect --format", '{{index .Config.Labels "newsgen.standin"}}', BASE_IMAGE)
    if label in ("", "<no value>"):
        kind = "the real one, already here"
    else:
        try:
            run.sh("docker pull", BASE_IMAGE)
            kind = "the real one, pulled"
        except Failed:
            run.say(f"    {BASE_IMAGE} cannot be pulled: FALLBACK to the stand-in (infra/lambda/standin/)")
            standin(run, label)
            kind = "the STAND-IN (fallback: the real one cannot be pulled)"
    version = "import sys; print('%d.%d' % sys.version_info[:2])"
    run.python = run.sh("docker run --rm --entrypoint python", BASE_IMAGE, "-c", version, capture=True).strip()
    run.note(f"base image {BASE_IMAGE}: {kind}, Python {run.python}")


def standin(run: Run, label: str | None) -> None:
    """FALLBACK ONLY, for a machine that cannot pull the AWS Lambda base image: a stand-in under its name, from
    a debootstrapped Debian bookworm (Python 3.11, not 3.12: the only CPU-only torch wheel reachable here is
    cp311), with awslambdaric, the Runtime Interface Emulator of the aws-sam-cli wheel and an entrypoint like
    AWS's (infra/lambda/standin/). Rebuilt when its recipe changes or SAM_LOCAL_REBUILD_BASE=1."""
    context = WORK / "standin"
    shutil.rmtree(context, ignore_errors=True)
    shutil.copytree(ROOT / "infra/lambda/standin", context)
    rie = sorted(SAM_VENV.glob("lib/python3*/site-packages/samcli/local/rapid/aws-lambda-rie-x86_64"))
    expect(rie, f"no aws-lambda-rie in {SAM_VENV}")
    shutil.copy(rie[-1], context / "aws-lambda-rie")
    pip_download(run, context / "wheels", "3.11", f"awslambdaric=={AWSLAMBDARIC_VERSION}")
    recipe = hashlib.sha256(f"{ROOTFS_IMAGE} {AWSLAMBDARIC_VERSION}".encode())
    for path in sorted(p for p in context.rglob("*") if p.is_file()):
        recipe.update(path.name.encode() + (b"" if path.suffix == ".whl" else path.read_bytes()))
    digest, rebuild = recipe.hexdigest()[:16], os.environ.get("SAM_LOCAL_REBUILD_BASE") == "1"
    if label == digest and not rebuild:
        print(f"the stand-in {BASE_IMAGE} is up to date (recipe {digest})")
        return
    if rebuild or quiet("docker image inspect", ROOTFS_IMAGE) is None:
        rootfs(run)
    args = f"--build-arg ROOTFS_IMAGE={ROOTFS_IMAGE} --build-arg AWSLAMBDARIC_VERSION={AWSLAMBDARIC_VERSION}"
    run.sh(f"docker build --label newsgen.standin={digest} {args} -t", BASE_IMAGE, context)


def rootfs(run: Run) -> None:
    """Debian bookworm (minbase + python3) from the Debian mirror apt uses, imported as ROOTFS_IMAGE."""
    if not shutil.which("debootstrap"):
        apt_install(run, "debootstrap")
    expect(os.geteuid() == 0, "debootstrap needs root")
    mirrors = []
    for path, pattern in (("/etc/apt/sources.list.d/debian.sources", r"^URIs:\s*(\S+)"), ("/etc/apt/sources.list", r"^deb\s+(?:\[.*?\]\s+)?(\S+)")):  # fmt: skip
        mirrors += re.findall(pattern, Path(path).read_text(), re.M) if Path(path).is_file() else []
    mirror = next((m for m in mirrors if "security" not in m), "http://deb.debian.org/debian")
    target = WORK / "rootfs"
    shutil.rmtree(target, ignore_errors=True)
    run.sh("debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates bookworm", target, mirror)
    # Smaller: package caches, apt lists, docs, man pages and translations are not needed in an image.
    unneeded = "var/cache/apt/archives/*.deb var/lib/apt/lists/* usr/share/{doc,man,info,locale}/* var/log/*.log"
    run.sh("bash -c", f"cd {target} && rm -rf {unneeded}")
    tar = subprocess.Popen(argv("tar --numeric-owner -C", target, "-c", "."), stdout=subprocess.PIPE)
    run.sh("docker import --change", 'CMD ["/bin/bash"]', "-", ROOTFS_IMAGE, stdin=tar.stdout)
    expect(tar.wait() == 0, "tar of the rootfs failed")
    shutil.rmtree(target)


def wheelhouse(run: Run) -> None:
    requirements, stamp = ROOT / "infra/lambda/requirements.txt", WHEELHOUSE / ".requirements.sha256"
    want = hashlib.sha256(requirements.read_bytes() + run.python.encode()).hexdigest()
    if stamp.exists() and stamp.read_text().strip() == want:
        print(f"the wheelhouse is up to date for requirements.txt and Python {run.python}")
    else:
        pip_download(run, WHEELHOUSE, run.python, "-r", requirements)
        stamp.write_text(want)
    wheels = sorted(WHEELHOUSE.glob("*.whl"))
    torch = [w.name for w in wheels if w.name.startswith("torch-")]
    expect(len(torch) == 1 and "+cpu" in torch[0], f"expected one torch wheel, the +cpu one: {torch}")
    expect(not [w for w in wheels if w.name.startswith(("nvidia_", "triton-"))], f"CUDA wheels in {WHEELHOUSE}")
    print(f"{len(wheels)} wheels, {sum(w.stat().st_size for w in wheels) / 1e6:.0f} MB; {torch[0]}")


def sam_build(run: Run) -> None:
    env = dict(os.environ, SAM_CLI_TELEMETRY="0")
    if quiet("python3.12 --version") is None and shutil.which("pyenv"):  # pyenv's shim hides it unless selected
        found = [v for v in (quiet("pyenv versions --bare") or "").split() if re.match(r"3\.12(\.|$)", v)]
        env["PYENV_VERSION"] = f"{quiet('pyenv version-name')}:{found[-1]}" if found else ""
        print(f"PYENV_VERSION={env['PYENV_VERSION']}")
    run.sh("python3.12 --version", env=env)
    run.sh(f"{SAM} build --template template.yaml", env=env)  # the Dockerfile checks its torch is the CPU one
    # sam local passes a function only the variables it declares (--env-vars cannot add others): the local
    # template is the built one with each function declaring its whole local environment (template.yaml is untouched).
    built, local = h.load_template(ROOT / ".aws-sam/build/template.yaml"), sam_env_vars("", "")
    for logical_id, variables in local.items():
        props = built["Resources"][logical_id].setdefault("Properties", {})
        declared = props.setdefault("Environment", {}).setdefault("Variables", {})
        declared.update({name: "" for name in variables if name not in declared})
    header = "# Generated by infra/local/sam_local.py for sam local only: the built template + the local variables.\n"
    LOCAL_TEMPLATE.write_text(header + yaml.safe_dump(built, sort_keys=False))
    print(f"{LOCAL_TEMPLATE}: {', '.join(f'{k}: {len(v)} variables' for k, v in local.items())}")


def models(run: Run) -> None:
    """Waits for local-s3; then each function's local environment (harness) as sam's --env-vars file."""
    log = LOGS / "local-s3.log"
    wait_for(lambda: "newsgen is up" in log.read_text(errors="replace"), run.local_s3, 1800, log)
    print(log.read_text())
    queue_url = h.clients(run.endpoint).sqs.get_queue_url(QueueName=h.BATCH_QUEUE)["QueueUrl"]
    ENV_VARS.write_text(json.dumps(sam_env_vars(run.endpoint, queue_url), indent=2))
    print(ENV_VARS.read_text())


def invoke_api(run: Run) -> None:
    response, wall = sam_invoke(run, "api", h.event("api-headlines"))
    first = generated(response)
    # The emulator runs the init phase inside the first invoke: its REPORT Duration includes init.
    report = (re.findall(r"\tDuration: ([0-9.]+ ms)", run.log_path.read_text()) or ["?"])[-1]
    run.note(f"ApiFunction: 200, cold {wall:.1f}s wall (emulator REPORT {report}, init included); {first}")


def invoke_worker(run: Run) -> None:
    """The harness' example upload in a bucket of its own, dispatched as the dispatcher does (the job record,
    the `running` summary), then its chunk event (harness.example_chunk_event) to the worker."""
    s3 = h.clients(run.endpoint).s3
    s3.create_bucket(Bucket=SAM_BUCKET)
    s3.put_object(Bucket=SAM_BUCKET, Key=h.EXAMPLE_KEY, Body=h.EXAMPLE_INPUT)
    upload = upload_of(next(S3Event(h.example_upload_event(SAM_BUCKET)).records))
    chunking, sent = h.functions()["batch-dispatch"].environment, []
    chunks = {"chunk_lines": int(chunking["BATCH_CHUNK_LINES"]), "chunk_tokens": int(chunking["BATCH_CHUNK_TOKENS"])}
    summary = batch.dispatch(s3, upload, send=sent.extend, **chunks)
    event = h.example_chunk_event(SAM_BUCKET)
    expect(summary and summary["status"] == "running", summary)
    expect([json.loads(r["body"]) for r in event["Records"]] == [m.model_dump(mode="json") for m in sent], sent)
    print(f"dispatched {summary['lines']} lines in {summary['chunks']} chunk(s) as job {summary['job']}")
    response, wall = sam_invoke(run, "batch-worker", event)
    expect(response == {"batchItemFailures": []}, response)
    summary = json.loads(s3.get_object(Bucket=SAM_BUCKET, Key=batch.summary_key(upload.name))["Body"].read())
    ids = [json.loads(line)["id"] for line in h.EXAMPLE_INPUT.splitlines()]
    expect(summary["status"] == "complete" and summary["results"] == summary["lines"] == len(ids), summary)
    expect(summary["errors"] == 0 and summary["synthetic"], summary)
    out = s3.get_object(Bucket=SAM_BUCKET, Key=batch.results_key(upload.name))["Body"].read().decode()
    entries = [json.loads(line) for line in out.splitlines()]
    expect([e["id"] for e in entries] == ids and all("result" in e for e in entries), entries)
    print(f"first: {json.dumps(entries[0])[:160]}")
    run.note(f"BatchWorkerFunction: {wall:.1f}s wall; {len(ids)} lines, 0 errors, {summary['model_versions']}")


def start_api(run: Run) -> None:
    clear_stale_sam_locks()
    port = free_port(h.HOST, int(os.environ.get("API_PORT", 0)))
    # Stopped by SIGTERM, sam removes its warm containers itself (killed, they stop with dockerd: see dockerd).
    cmd = f"{SAM} local start-api --skip-pull-image --region {h.REGION} --host {h.HOST} --port {port} --template"
    cmd = argv(cmd, LOCAL_TEMPLATE, "--env-vars", ENV_VARS, "--warm-containers", "LAZY")
    api = run.background("sam local start-api", cmd, LOGS / "start-api.log", grace=30, env=sam_env())
    url, event, took = f"http://{h.HOST}:{port}", h.event("api-headlines"), {}
    wait_for(lambda: request(url, timeout=5)[0] != 0, api, 120, LOGS / "start-api.log")
    for attempt in ("cold", "warm"):
        started = time.monotonic()
        status, body = request(url + event["path"], event["body"], event["httpMethod"], timeout=180)
        took[attempt] = time.monotonic() - started
        print(f"{event['httpMethod']} {event['path']} ({attempt}): HTTP {status} in {took[attempt]:.1f}s")
        generated({"statusCode": status, "body": body})
    status, body = request(url + "/health")
    print(f"GET /health: HTTP {status} {body}")
    expect(status == 200, f"{status} {body}")
    status, body = request(url + "/")  # the playground: the root is its own route (template.yaml's Root event)
    print(f"GET /: HTTP {status}, {len(body)} characters")
    expect(status == 200 and 'src="playground/app.js"' in body, f"{status} {body[:300]}")
    run.stop(api, "sam local start-api", 30)
    run.note(f"start-api {event['httpMethod']} {event['path']}: 200 cold {took['cold']:.1f}s, warm {took['warm']:.1f}s")


def image_size(run: Run) -> None:
    size, base = size_of(FUNCTION_IMAGE), size_of(BASE_IMAGE)
    run.sh("docker history --format", "{{.Size}}\t{{.CreatedBy}}", FUNCTION_IMAGE)
    verdict = f"{size / 1e9:.2f} GB ({size / 2**30:.2f} GiB), {'under' if size <= 1.5e9 else 'OVER'} the 1.5 GB target"
    run.note(f"image {FUNCTION_IMAGE}: {verdict}; base image {base / 1e6:.0f} MB")


def offline(run: Run) -> None:
    """The demo models baked into the image, served with no S3 and no network."""
    clear_baked = f"find {BAKED} -mindepth 1 -maxdepth 1 ! -name README.md -exec rm -rf {{}} +"
    run.sh(clear_baked)
    try:
        run.sh(f"{sys.executable} -m training mirror --bucket {h.MODEL_BUCKET} --prefix {h.MODEL_PREFIX} --output {BAKED}")  # fmt: skip
        baked = f"BAKED_MODELS={BAKED.relative_to(ROOT)}"
        run.sh("docker build -q -f", DOCKERFILE, "--build-arg", baked, "-t", OFFLINE_IMAGE, ROOT)
    finally:
        run.sh(clear_baked)
    started = time.monotonic()
    harness = f"{ROOT / 'infra/local/harness.py'}:/var/task/local_harness.py:ro"  # for its LambdaContext only
    handler = "import json, sys; from handlers.api import lambda_handler as f; from local_harness import LambdaContext as C; print(json.dumps(f(json.load(sys.stdin), C('offline'))))"
    env = (
        f"-e MODEL_BUCKET=file:///opt/newsgen/baked -e WATERMARK_KEYS_FILE={KEYRING} -e POWERTOOLS_TRACE_DISABLED=true"
    )
    cmd = f"docker run --rm -i --network none {env} -e AWS_DEFAULT_REGION={h.REGION} --entrypoint python -v"
    out = run.sh(cmd, harness, OFFLINE_IMAGE, "-c", handler, input=json.dumps(h.event("api-headlines")), capture=True)
    first = generated(json.loads(out.strip().splitlines()[-1]))
    took, size = time.monotonic() - started, size_of(OFFLINE_IMAGE) / 1e9
    run.note(f"{OFFLINE_IMAGE} (BAKED_MODELS, --network none): 200 in {took:.1f}s wall, {size:.2f} GB; {first}")


STEPS = [dockerd, local_s3, base_image, wheelhouse, sam_build, models]
STEPS += [invoke_api, invoke_worker, start_api, image_size, offline]


def main(steps: list[Callable[[Run], None]] | None = None) -> int:
    os.chdir(ROOT)
    LOGS.mkdir(parents=True, exist_ok=True)
    for old in LOGS.glob("*.log"):
        old.unlink()
    previous = signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    skip = [start_api] if os.environ.get("SAM_LOCAL_SKIP_API") == "1" else []
    run, rc = Run(), 0
    try:
        for number, fn in enumerate([s for s in steps or STEPS if s not in skip], 1):
            run.step(number, fn)
    except BaseException as exc:  # the step said what failed
        rc = 130 if isinstance(exc, KeyboardInterrupt) else exc.code if isinstance(exc, SystemExit) else 1
    finally:
        run.close(rc)
        signal.signal(signal.SIGTERM, previous)
    return rc


if __name__ == "__main__":
    sys.exit(main())
