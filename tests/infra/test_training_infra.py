"""The GPU training job's infrastructure (infra/training/): the CloudFormation template lints clean and its IAM
is scoped to the model bucket/prefix, the data objects, the image's repository and the job's log group; the
bootstrap script is valid bash that runs the image and always shuts down; the image pins the project's torch;
the job (`python -m training pipeline`) checks its settings, runs `train` under torchrun for NPROC > 1, and runs the
whole job on CPU (tiny model) against a local S3, stops before publishing without a bucket, resumes, and
publishes the fine-tuned versions (LATEST) and the distilled ones (<version>-distilled, LATEST untouched).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from cfn import as_list, conditions, resolve
from conftest import ROOT

INFRA = ROOT / "infra" / "training"
TEMPLATE = INFRA / "template.yaml"
DOCKERFILE = INFRA / "Dockerfile"

BUCKET = "my-models"
PREFIX = "newsgen/models"
DATA_URIS = ["s3://raw-news/all-the-news-1.csv", "s3://raw-news/2026/all-the-news-2.csv"]


# ------------------------------------------------------------------------------------ template helpers
def load_template() -> dict:
    from cfnlint.decode import decode

    template, matches = decode(str(TEMPLATE))
    assert not matches, matches
    return template


def parameters(template: dict, **overrides) -> dict:
    values = {name: spec.get("Default") for name, spec in template["Parameters"].items()}
    values.update(
        ModelBucket=BUCKET,
        ModelPrefix=PREFIX,
        DataUris=DATA_URIS,
        VpcId="vpc-0abc",
        SubnetId="subnet-0abc",
        AmiId="ami-0123456789abcdef0",
        TrainingImageUri="123456789012.dkr.ecr.eu-west-1.amazonaws.com/newsgen-train:20261128",
    )
    values.update(overrides)
    return values


def policy_statements(template: dict, params: dict) -> list[dict]:
    conds = conditions(template, params)
    statements = []
    for _name, resource in template["Resources"].items():
        if resource["Type"] in ("AWS::IAM::Role", "AWS::IAM::Policy", "AWS::IAM::ManagedPolicy"):
            props = resolve(resource["Properties"], params, conds)
            documents = [p["PolicyDocument"] for p in props.get("Policies", [])]
            if "PolicyDocument" in props:
                documents.append(props["PolicyDocument"])
            for document in documents:
                statements.extend(document["Statement"])
    assert statements, "the template grants nothing?"
    return statements


# ------------------------------------------------------------------------------------ template tests
def test_template_passes_cfn_lint():
    cfn_lint = Path(sys.executable).with_name("cfn-lint")
    command = [str(cfn_lint)] if cfn_lint.exists() else [sys.executable, "-m", "cfnlint"]
    result = subprocess.run([*command, "--", str(TEMPLATE)], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, f"cfn-lint found problems:\n{result.stdout}{result.stderr}"
    assert result.stdout.strip() == ""


@pytest.mark.parametrize("spot", ["false", "true"])
def test_iam_is_scoped_to_the_bucket_prefix_data_image_and_log_group(spot):
    template = load_template()
    params = parameters(template, UseSpot=spot)
    statements = policy_statements(template, params)
    bucket_arn = f"arn:aws:s3:::{BUCKET}"
    prefix_arn = f"{bucket_arn}/{PREFIX}/"
    data_arns = {uri.replace("s3://", "arn:aws:s3:::", 1) for uri in DATA_URIS}
    write_actions = {"s3:PutObject", "s3:AbortMultipartUpload", "s3:ListMultipartUploadParts"}
    granted: dict[str, set[str]] = {}

    for statement in statements:
        assert statement["Effect"] == "Allow"
        assert "NotAction" not in statement and "NotResource" not in statement
        actions = as_list(statement["Action"])
        resources = as_list(statement["Resource"])
        for action in actions:
            assert "*" not in action, f"wildcard action {action!r}"
            assert action.lower() != "s3:*"
            granted.setdefault(action, set()).update(resources)
        if "*" in resources:
            # The one documented exception: GetAuthorizationToken has no resource-level permissions.
            assert actions == ["ecr:GetAuthorizationToken"] and resources == ["*"], statement
            continue
        for resource in resources:
            assert isinstance(resource, str) and resource.startswith("arn:aws:"), resource
        s3_actions = [a for a in actions if a.startswith("s3:")]
        if not s3_actions:
            continue
        assert len(s3_actions) == len(actions), f"S3 mixed with other services: {statement}"
        for resource in resources:
            if resource == bucket_arn:
                assert actions == ["s3:ListBucket"], statement
                prefixes = as_list(statement["Condition"]["StringLike"]["s3:prefix"])
                assert prefixes and all(p == PREFIX or p.startswith(PREFIX + "/") for p in prefixes), prefixes
            elif resource.startswith(prefix_arn):
                assert resource == prefix_arn + "*"
            else:
                assert resource in data_arns and actions == ["s3:GetObject"], f"S3 outside the scope: {statement}"

    # Writes only under the prefix; the data exactly, read-only; nothing that deletes.
    for action in write_actions:
        assert granted[action] == {prefix_arn + "*"}, (action, granted[action])
    assert granted["s3:GetObject"] == {prefix_arn + "*"} | data_arns
    assert granted["s3:ListBucket"] == {bucket_arn}
    assert not any(a.startswith("s3:Delete") or (a.startswith("s3:Put") and a != "s3:PutObject") for a in granted)
    # The image's repository only, and this stack's log group only.
    repo = "arn:aws:ecr:eu-west-1:123456789012:repository/newsgen-train"
    for action in ("ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer", "ecr:BatchCheckLayerAvailability"):
        assert granted[action] == {repo}
    log_group = "arn:aws:logs:eu-west-1:123456789012:log-group:<JobLogGroup>"
    assert granted["logs:PutLogEvents"] == {log_group, log_group + ":log-stream:*"}
    assert set(granted) == write_actions | {
        "s3:GetObject",
        "s3:ListBucket",
        "ecr:GetAuthorizationToken",
        "ecr:BatchGetImage",
        "ecr:GetDownloadUrlForLayer",
        "ecr:BatchCheckLayerAvailability",
        "logs:CreateLogStream",
        "logs:PutLogEvents",
    }


@pytest.mark.parametrize(
    ("image", "repository"),
    [
        (
            "210987654321.dkr.ecr.us-east-1.amazonaws.com/ml/newsgen-train:v1.2",
            "arn:aws:ecr:us-east-1:210987654321:repository/ml/newsgen-train",
        ),
        (
            "210987654321.dkr.ecr.us-east-1.amazonaws.com/newsgen-train@sha256:" + "a" * 64,
            "arn:aws:ecr:us-east-1:210987654321:repository/newsgen-train",
        ),
        (
            "210987654321.dkr.ecr.us-west-2.amazonaws.com/newsgen-train",
            "arn:aws:ecr:us-west-2:210987654321:repository/newsgen-train",
        ),
    ],
)
def test_image_uri_becomes_its_repository_arn(image, repository):
    template = load_template()
    pattern = template["Parameters"]["TrainingImageUri"]["AllowedPattern"]
    assert re.fullmatch(pattern, image)
    statements = policy_statements(template, parameters(template, TrainingImageUri=image))
    pulls = [s for s in statements if "ecr:BatchGetImage" in as_list(s["Action"])]
    assert [s["Resource"] for s in pulls] == [repository]


def test_parameter_patterns_refuse_wildcards_and_other_registries():
    template = load_template()
    data = template["Parameters"]["DataUris"]["AllowedPattern"]
    assert all(re.fullmatch(data, uri) for uri in DATA_URIS)
    for bad in ("s3://raw-news/*", "s3://raw-news/dir/", "https://x/y.csv", "s3://raw-news"):
        assert not re.fullmatch(data, bad), bad
    image = template["Parameters"]["TrainingImageUri"]["AllowedPattern"]
    assert not re.fullmatch(image, "docker.io/library/python:3.12")
    prefix = template["Parameters"]["ModelPrefix"]["AllowedPattern"]
    for bad in ("", "models/", "/models", "*"):
        assert not re.fullmatch(prefix, bad), bad


@pytest.mark.parametrize("spot", ["false", "true"])
def test_launch_template_and_bootstrap(spot, tmp_path):
    template = load_template()
    params = parameters(template, UseSpot=spot, ModelVersion="v7")
    conds = conditions(template, params)
    resources = template["Resources"]
    data = resolve(resources["JobLaunchTemplate"]["Properties"], params, conds)["LaunchTemplateData"]
    assert data["InstanceInitiatedShutdownBehavior"] == "terminate"
    assert data["MetadataOptions"]["HttpTokens"] == "required"
    assert data["ImageId"] == "ami-0123456789abcdef0"
    assert template["Parameters"]["AmiId"]["Type"] == "AWS::SSM::Parameter::Value<AWS::EC2::Image::Id>"
    assert template["Parameters"]["AmiId"]["Default"].startswith("/aws/service/deeplearning/ami/x86_64/")
    (root,) = data["BlockDeviceMappings"]
    assert root["Ebs"]["Encrypted"] is True and int(root["Ebs"]["VolumeSize"]) >= 100
    if spot == "true":
        assert data["InstanceMarketOptions"]["MarketType"] == "spot"
    else:
        assert "InstanceMarketOptions" not in data
    assert "KeyName" not in data  # optional: absent unless given
    egress = resolve(resources["JobSecurityGroup"]["Properties"], params, conds)
    assert "SecurityGroupIngress" not in egress
    assert [(r["FromPort"], r["ToPort"]) for r in egress["SecurityGroupEgress"]] == [(443, 443)]
    instance = resources["JobInstance"]["Properties"]["LaunchTemplate"]
    assert instance["LaunchTemplateId"] == {"Ref": "JobLaunchTemplate"}

    # The bootstrap, substituted as CloudFormation would: valid bash that logs in to ECR, runs the image on
    # the GPUs with the job's settings, ships the log and always shuts the instance down.
    script = data["UserData"]
    assert script.startswith("#!/bin/bash\n")
    assert "${" not in script.replace("${!", ""), "an unsubstituted ${...} in UserData"
    path = tmp_path / "user-data.sh"
    path.write_text(script)
    check = subprocess.run(["bash", "-n", str(path)], capture_output=True, text=True)
    assert check.returncode == 0, check.stderr
    assert re.search(r"^trap finish EXIT$", script, re.M)
    finish = script[script.index("finish() {") : script.index("trap finish EXIT")]
    assert "shutdown -h now" in finish and "set +e" in finish
    assert "aws ecr get-login-password --region" in script
    assert "docker run --rm --name newsgen-train --gpus all" in script
    assert "--log-driver awslogs" in script and "awslogs-group=<JobLogGroup>" in script
    for setting in (
        f"DATA_S3_URIS={','.join(DATA_URIS)}",
        f"MODEL_BUCKET={BUCKET}",
        f"MODEL_PREFIX={PREFIX}",
        "VERSION=v7",
        "BASE=distilgpt2",
        "DISTILL=1",
    ):
        assert f'-e "{setting}"' in script, setting
    assert "-e NPROC=auto" in script
    assert f'"{params["TrainingImageUri"]}"' in script


STUBS = {
    # Every command the bootstrap runs on the instance, recorded in $CALLS; FAIL=<docker verb> makes it fail.
    "aws": 'echo "aws $*" >>"$CALLS"; if [[ "$*" == *" cp - "* ]]; then echo "stdin $(cat)" >>"$CALLS"; fi\n'
    "if [[ $2 == get-login-password ]]; then echo token; fi",
    "docker": 'echo "docker $*" >>"$CALLS"; [[ $1 == login ]] && cat >/dev/null; [[ $1 != "${FAIL:-}" ]]',
    "cloud-init": '[[ "$*" == "query v1.instance_id" ]] && echo i-0123',
    "mountpoint": "exit 1",
    "shutdown": 'echo "shutdown $*" >>"$CALLS"',
    "systemctl": 'echo "systemctl $*" >>"$CALLS"',
    "install": 'echo "install $*" >>"$CALLS"',
    "sleep": 'echo "sleep $*" >>"$CALLS"',
}


def run_bootstrap(tmp_path: Path, fail: str = "") -> tuple[int, list[str]]:
    template = load_template()
    params = parameters(template)
    data = resolve(template["Resources"]["JobLaunchTemplate"]["Properties"], params, conditions(template, params))
    script = data["LaunchTemplateData"]["UserData"].replace("<JobLogGroup>", "/newsgen/training/newsgen-train")
    stubs = tmp_path / "bin"
    stubs.mkdir()
    for name, body in STUBS.items():
        (stubs / name).write_text("#!/bin/bash\n" + body + "\n")
        (stubs / name).chmod(0o755)
    (tmp_path / "user-data.sh").write_text(script)
    calls = tmp_path / "calls"
    calls.touch()
    env = {"PATH": f"{stubs}:{os.environ['PATH']}", "CALLS": str(calls), "FAIL": fail, "HOME": str(tmp_path)}
    result = subprocess.run(
        ["bash", str(tmp_path / "user-data.sh")], env=env, capture_output=True, text=True, timeout=60
    )
    return result.returncode, calls.read_text().splitlines()


def test_bootstrap_runs_the_image_on_all_gpus_then_shuts_down(tmp_path):
    rc, calls = run_bootstrap(tmp_path)
    assert rc == 0, calls
    assert calls[0] == "shutdown -h +720 newsgen training job: MaxHours reached"  # the watchdog comes first
    assert "aws ecr get-login-password --region eu-west-1" in calls
    assert "docker login --username AWS --password-stdin 123456789012.dkr.ecr.eu-west-1.amazonaws.com" in calls
    assert f"docker pull {parameters(load_template())['TrainingImageUri']}" in calls
    (run,) = [c for c in calls if c.startswith("docker run")]
    assert "--gpus all" in run and "-e NPROC=auto" in run and "awslogs-stream=i-0123/job" in run
    assert f"-e MODEL_BUCKET={BUCKET}" in run and f"-e DATA_S3_URIS={','.join(DATA_URIS)}" in run
    job_s3 = f"s3://{BUCKET}/{PREFIX}/training-jobs/newsgen-train/i-0123"
    assert f"aws s3 cp - {job_s3}/exit-code --only-show-errors" in calls
    assert calls[calls.index(f"aws s3 cp - {job_s3}/exit-code --only-show-errors") + 1] == "stdin 0"
    assert f"aws s3 cp /var/log/cloud-init-output.log {job_s3}/bootstrap.log --only-show-errors" in calls
    reports = "--recursive --exclude * --include */training_report.json --include */loss.png"
    assert f"aws s3 cp /opt/newsgen/work/runs {job_s3} {reports} --only-show-errors" in calls
    assert calls[-1] == "shutdown -h now"


@pytest.mark.parametrize("fail", ["pull", "run"])
def test_bootstrap_shuts_down_when_the_job_fails(tmp_path, fail):
    rc, calls = run_bootstrap(tmp_path, fail=fail)
    assert rc != 0
    assert calls[-1] == "shutdown -h now"
    exit_code = calls[calls.index(next(c for c in calls if c.startswith("aws s3 cp - "))) + 1]
    assert exit_code != "stdin 0" and exit_code.startswith("stdin ")
    if fail == "pull":
        assert sum(c.startswith("docker pull") for c in calls) == 6  # retried, then given up
        assert not any(c.startswith("docker run") for c in calls)


def test_outputs_name_the_instance_and_the_log_group():
    outputs = load_template()["Outputs"]
    assert outputs["InstanceId"]["Value"] == {"Ref": "JobInstance"}
    assert outputs["LogGroupName"]["Value"] == {"Ref": "JobLogGroup"}


# ------------------------------------------------------------------------------------ image
def test_dockerfile_pins_the_projects_torch_on_a_cuda_12_base():
    text = DOCKERFILE.read_text()
    pin = re.search(r'"torch==([0-9.]+)"', (ROOT / "pyproject.toml").read_text()).group(1)
    assert re.search(rf"^ARG TORCH_VERSION={re.escape(pin)}$", text, re.M), (
        "the image's torch must match pyproject.toml"
    )
    assert re.search(r"^ARG TORCH_INDEX_URL=https://download\.pytorch\.org/whl/cu12\d$", text, re.M)
    assert re.search(r"^ARG CUDA_IMAGE=nvidia/cuda:12\.\d+\.\d+-\S+$", text, re.M)
    assert 'pip install ".[train]"' in text
    assert 'ENTRYPOINT ["python", "-m", "training", "pipeline"]' in text
    assert "HF_HOME=/opt/ml/" in text
    copies = {
        source
        for line in text.splitlines()
        if line.startswith("COPY ")
        for source in [word for word in line.split()[1:] if not word.startswith("--")][:-1]
    }
    assert {"pyproject.toml", "layers/", "handlers/", "training/"} <= copies, copies
    # The build context is the repository root: the Dockerfile's own ignore file lets in only what is copied.
    ignore = [
        line
        for line in (INFRA / "Dockerfile.dockerignore").read_text().splitlines()
        if line and not line.startswith("#")
    ]
    assert ignore[0] == "*"
    assert {"!" + source for source in copies} <= set(ignore)


# ------------------------------------------------------------------------------------ the job
def test_settings_are_checked_and_nproc_trains_under_torchrun(tmp_path, monkeypatch):
    from training import pipeline

    monkeypatch.setattr(pipeline, "gpus", lambda: ["0, NVIDIA A10G, 23028 MiB", "1, NVIDIA A10G, 23028 MiB"])
    env = {"WORKDIR": str(tmp_path), "DATA": str(tmp_path)}
    for bad, error in [
        ({"NPROC": "0"}, "NPROC must be a positive integer or auto"),
        ({"NPROC": "3"}, "NPROC=3 needs 3 GPUs; nvidia-smi sees 2"),
        ({"MAX_STEPS": "ten"}, "MAX_STEPS must be an integer"),
        ({"DISTILL": "yes"}, "DISTILL must be 0 or 1"),
        ({"VERSION": "LATEST"}, "VERSION 'LATEST'"),
    ]:
        with pytest.raises(pipeline.JobError, match=re.escape(error)):
            pipeline.settings({**env, **bad})
    job = pipeline.settings({**env, "NPROC": "auto", "EVAL_STEPS": "5", "EXTRA_TRAIN_ARGS": "--seed 7"})
    assert job["NPROC"] == "2" and job["DISTILL_MAX_STEPS"] == "-1"
    assert (tmp_path / "VERSION").read_text().strip() == job["VERSION"]  # kept for a resumed job
    commands = []
    monkeypatch.setattr(pipeline.subprocess, "run", lambda command, check: commands.append(command))
    assert pipeline.fit(job, "headline", distilled=False) == "done"
    assert pipeline.fit(job, "headline", distilled=True) == "done"
    train, distill = commands
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2"]
    assert train[: len(torchrun) + 3] == [*torchrun, "-m", "training", "train"]
    assert "--eval-steps=5" in train and train[-2:] == ["--seed", "7"]
    assert distill[:4] == [sys.executable, "-m", "training", "distill"] and "--eval-steps=5" in distill


def pipeline(env: dict, timeout: int = 300) -> subprocess.CompletedProcess:
    full = {k: v for k, v in os.environ.items() if k not in ("MODEL_BUCKET", "DATA", "DATA_S3_URIS", "VERSION")}
    full.update(HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false", **env)
    command = [sys.executable, "-m", "training", "pipeline"]
    return subprocess.run(command, cwd=ROOT, env=full, capture_output=True, text=True, timeout=timeout)


def test_pipeline_refuses_to_start_without_data(tmp_path):
    result = pipeline({"WORKDIR": str(tmp_path / "work")}, timeout=60)
    assert result.returncode == 2
    assert "no training data: set DATA" in result.stderr
    result = pipeline({"WORKDIR": str(tmp_path / "work"), "DATA": str(tmp_path), "VERSION": "no spaces"}, timeout=60)
    assert result.returncode == 2 and "VERSION 'no spaces'" in result.stderr


@pytest.mark.slow
def test_pipeline_runs_the_whole_job_on_cpu_and_publishes(tmp_path, s3, bucket, s3_endpoint, service_for, monkeypatch):
    from newsgen import artifacts
    from training.demo_corpus import write_demo_csv

    # The data comes from S3, like on the GPU instance.
    csv = write_demo_csv(tmp_path / "demo.csv", rows=120)
    s3.upload_file(str(csv), bucket, "raw/demo.csv")
    work = tmp_path / "work"
    job = {
        "WORKDIR": str(work),
        "DATA_S3_URIS": f"s3://{bucket}/raw/demo.csv",
        "BASE": "tiny",
        "MAX_STEPS": "2",
        "EVAL_STEPS": "2",
        "SAVE_STEPS": "2",
        "LOGGING_STEPS": "1",
        "BATCH_SIZE": "4",
        "MAX_LENGTH": "32",
        "MODEL_PREFIX": "models",
        "VERSION": "t1",
        "AWS_ENDPOINT_URL": s3_endpoint,
    }

    # 1. No MODEL_BUCKET: everything is trained and distilled, then the job stops before publishing.
    first = pipeline(job)
    assert first.returncode == 0, first.stderr[-4000:]
    assert "MODEL_BUCKET is not set: stopping before publish" in first.stderr
    for step in ("fetch data", "prepare", "train headline", "train article", "distill headline", "distill article"):
        assert re.search(rf"<== {step}: .* in \d+m\d\ds", first.stderr), step
    for run in ("headline", "article", "headline-distilled", "article-distilled"):
        assert (work / "runs" / run / "model.safetensors").is_file(), run
    assert s3.list_objects_v2(Bucket=bucket, Prefix="models/").get("KeyCount") == 0
    teacher = json.loads((work / "runs" / "headline" / "training_report.json").read_text())
    student = json.loads((work / "runs" / "headline-distilled" / "training_report.json").read_text())
    assert student["parameters"] < teacher["parameters"]

    # 2. An interrupted distillation (checkpoints, no final model) is resumed; finished steps are skipped.
    distilled = work / "runs" / "article-distilled"
    for name in ("model.safetensors", "training_report.json"):
        (distilled / name).unlink(missing_ok=True)
    assert list((distilled / "checkpoints").glob("checkpoint-*"))
    second = pipeline({**job, "MODEL_BUCKET": bucket})
    assert second.returncode == 0, second.stderr[-4000:]
    for step in ("prepare", "train headline", "train article", "distill headline"):
        assert re.search(rf"<== {step}: skipped", second.stderr), step
    assert re.search(r"<== distill article: resumed from a checkpoint", second.stderr)
    assert (distilled / "model.safetensors").is_file()

    # 3. Published: the fine-tuned versions with LATEST moved, the distilled ones beside them, LATEST untouched.
    for task in ("headline", "article"):
        assert artifacts.read_latest(s3, bucket=bucket, prefix="models", task=task) == "t1"
        full = artifacts.read_manifest(s3, bucket=bucket, prefix="models", task=task, version="t1")
        small = artifacts.read_manifest(s3, bucket=bucket, prefix="models", task=task, version="t1-distilled")
        assert full.task == small.task == task
        size = {m.version: next(f.size for f in m.files if f.path == "model.safetensors") for m in (full, small)}
        assert size["t1-distilled"] < size["t1"]
    assert "published version t1 (LATEST)" in second.stderr

    # 4. Once more: nothing left to do, nothing published twice.
    third = pipeline({**job, "MODEL_BUCKET": bucket}, timeout=120)
    assert third.returncode == 0, third.stderr[-4000:]
    assert len(re.findall(r"<== publish \S+ \S+: skipped", third.stderr)) == 4

    # 5. The same WORKDIR with other settings is refused, not silently mixed.
    other = pipeline({**job, "MAX_STEPS": "3"}, timeout=60)
    assert other.returncode == 2 and "holds a job with other inputs or settings" in other.stderr

    # 6. The API serves what the job published: LATEST for both tasks, and a pinned distilled version.
    from handlers import api
    from infra.local.harness import LambdaContext, api_event

    monkeypatch.setattr(api, "service", service_for(bucket))
    response = api.lambda_handler(
        api_event("POST", "/v1/news", {"n": 1, "headline_parameters": {"max_new_tokens": 4}}), LambdaContext()
    )
    assert response["statusCode"] == 200, response["body"]
    assert [m["version"] for m in json.loads(response["body"])["model"]] == ["t1", "t1"]
    monkeypatch.setattr(api, "service", service_for(bucket, headline_model_version="t1-distilled"))
    response = api.lambda_handler(
        api_event("POST", "/v1/headlines", {"parameters": {"max_new_tokens": 4}}), LambdaContext()
    )
    assert response["statusCode"] == 200 and json.loads(response["body"])["model"][0]["version"] == "t1-distilled"
