#!/usr/bin/env bash
# `make sam-local`: `sam build`, `sam local invoke` and `sam local start-api` end to end on this machine, offline.
#
#   bash infra/local/sam_local.sh          (as root: it may apt-get install docker.io/debootstrap and start dockerd)
#
# What it does, each step logged to .newsgen/sam-local/logs/ with its time:
#   1. tools      docker.io + debootstrap (apt), the SAM CLI in .venv-sam (aws-sam-cli==1.170.0)
#   2. dockerd    reuses a running Docker daemon, else starts one (stopped again at exit, by PID)
#   3. base image a stand-in for public.ecr.aws/lambda/python:3.12, because public registries cannot be pulled
#                 from here: a debootstrapped Debian bookworm (from the Debian mirror apt uses) with Python 3.11,
#                 awslambdaric, the Lambda Runtime Interface Emulator shipped in the aws-sam-cli wheel and an
#                 /lambda-entrypoint.sh like AWS's; `docker import`ed and tagged with the name infra/lambda/Dockerfile
#                 uses, so that Dockerfile builds unchanged. NOTE: the stand-in has Python 3.11, not 3.12, because
#                 the only CPU-only torch wheel reachable here is the local cp311 one (download.pytorch.org is not
#                 reachable, and PyPI's Linux torch is the CUDA build). A real image with that name (e.g. pulled
#                 elsewhere and loaded) is used as it is.
#   4. wheelhouse `pip download` of infra/lambda/requirements.txt (cp311, manylinux x86_64) into
#                 infra/lambda/wheelhouse/ (git-ignored; kept as a cache): the Dockerfile then installs with
#                 --no-index, so the image build needs no network and no proxy CA. Checks torch is the +cpu wheel.
#   5. local S3   `python -m infra.local.run` in the background (moto S3/SQS + the demo models, trained the first
#                 time, ~4 min on 2 cores, reused afterwards), bound to the docker0 bridge address: SAM 1.170's
#                 `--docker-network host` does not put the function container in the host's network namespace
#                 (it only skips connecting an extra network), so the container cannot reach the host's loopback.
#                 docker0 exists only on this machine; all traffic stays between this host and the containers
#                 this run creates.
#   6. sam build  the two image functions (the Dockerfile) and the two python3.12 Zip functions + layer (needs a
#                 python3.12 on PATH: pyenv's is made visible through PYENV_VERSION when the shim hides it).
#   7. invoke     `sam local invoke ApiFunction --event events/api-headlines.json` (cold) must answer 200 with
#                 generated headlines. SAM passes only the environment variables a function declares, so the
#                 invoke uses .aws-sam/build/template.local.yaml: the built template plus AWS_ENDPOINT_URL declared
#                 on each function (template.yaml itself is untouched).
#                 Then `sam local invoke BatchWorkerFunction` (the same image, the worker's CMD) on the SQS chunk
#                 message of a small prompts file in the local S3, dispatched as the dispatcher does
#                 (batch.dispatch): no batchItemFailures, and batch/out/sam-local.jsonl/summary.json `complete`.
#   8. start-api  `sam local start-api` on 127.0.0.1 and POST /v1/headlines (cold, then warm) → 200.
#                 sam local does not enforce the API key the deployed API requires.
#   9. size       the built image's size against the 1.5 GB target.
#  10. offline    the demo models mirrored (`python -m training mirror`) into infra/lambda/baked, the same
#                 Dockerfile built with --build-arg BAKED_MODELS, and the API handler run in that image with
#                 `docker run --network none` and MODEL_BUCKET=file:///opt/newsgen/baked → a generated headline.
# Everything it started (start-api, infra.local.run, dockerd) is stopped by PID on exit, on failure too.
# Docker images stay in dockerd's data dir (/var/lib/docker) as a cache. Measured here (2 cores): first run
# ~5 min with the demo models already trained (base image ~1.5 min, sam build ~1.2 min, the offline image
# ~1.5 min); later runs ~1–1.5 min.
#
# Settings (environment): SAM_LOCAL_DIR (default .newsgen/sam-local), S3_PORT (default 5001, else a free port),
# API_PORT (default: a free port), SAM_LOCAL_SKIP_API=1 (skip step 8), SAM_LOCAL_REBUILD_BASE=1 (rebuild step 3).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$ROOT"

WORK=${SAM_LOCAL_DIR:-.newsgen/sam-local}
LOGS=$WORK/logs
PY=${PY:-.venv/bin/python}
SAM_VENV=.venv-sam
SAM=$SAM_VENV/bin/sam
SAM_CLI_VERSION=1.170.0
AWSLAMBDARIC_VERSION=4.2.2
BASE_IMAGE=public.ecr.aws/lambda/python:3.12      # infra/lambda/Dockerfile's BASE_IMAGE default
ROOTFS_IMAGE=newsgen-local/debian-bookworm-python3.11:rootfs
FUNCTION_IMAGE=apifunction:python3.12-v1          # what `sam build` tags (logical id, lower case : DockerTag)
OFFLINE_IMAGE=newsgen-offline:local               # step 10: the same Dockerfile with the demo models baked in
WHEELHOUSE=infra/lambda/wheelhouse
SIZE_TARGET=1500000000                            # 1.5 GB
BUILT_TEMPLATE=.aws-sam/build/template.yaml
LOCAL_TEMPLATE=.aws-sam/build/template.local.yaml
# sam local hands the function these (fake) credentials; nothing here talks to AWS.
INVOKE_ENV=(-u AWS_PROFILE -u AWS_SESSION_TOKEN -u AWS_ENDPOINT_URL SAM_CLI_TELEMETRY=0 AWS_ACCESS_KEY_ID=local
            AWS_SECRET_ACCESS_KEY=local AWS_DEFAULT_REGION=us-east-1 AWS_REGION=us-east-1 AWS_EC2_METADATA_DISABLED=true)

mkdir -p "$LOGS"
rm -f "$LOGS"/*.log
exec 3>&1 4>&2   # the terminal, for the EXIT trap: a failure inside a step happens with output in the step's log

DOCKERD_PID="" LOCAL_PID="" API_PID="" CHILD_PID="" CONTAINERS_BEFORE="" INVOKE_TIME="" REPORT_DURATION="" IMAGE_SIZE_LINE=""
WORKER_TIME="" WORKER_SUMMARY=""
declare -A API_TIMES=()
SUMMARY=()
RUN_STARTED=$EPOCHREALTIME

now() { echo "$EPOCHREALTIME"; }
elapsed() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1fs", b - a }'; }
log() { printf '%s  %s\n' "$(date +%H:%M:%S)" "$*"; }
note() { SUMMARY+=("$*"); }

# step NAME CMD...: runs CMD (a function of this script, in this shell, under set -e) with its output in
# $LOGS/NN-NAME.log and prints its time. A failure exits the script; the EXIT trap then shows the log's tail.
STEP_NO=0 STEP_NAME="" STEP_LOG="" STEP_STARTED=""
step() {
  STEP_NAME=$1; shift
  STEP_NO=$((STEP_NO + 1))
  STEP_LOG=$(printf '%s/%02d-%s.log' "$LOGS" "$STEP_NO" "$STEP_NAME")
  STEP_STARTED=$(now)
  log "[$STEP_NO] $STEP_NAME …"
  "$@" >"$STEP_LOG" 2>&1
  log "[$STEP_NO] $STEP_NAME ok ($(elapsed "$STEP_STARTED"))"
  note "$(printf '%-11s ok      %8s' "$STEP_NAME" "$(elapsed "$STEP_STARTED")")"
  STEP_NAME=""
}

# run_fg CMD...: a long foreground command, run as `CMD & wait` so that a TERM/INT to this script is handled
# at once (bash defers traps until a foreground command ends, but not a `wait`); the trap then stops it.
run_fg() {
  "$@" 3>&- 4>&- &
  CHILD_PID=$!
  local rc=0
  wait "$CHILD_PID" || rc=$?
  CHILD_PID=""
  return "$rc"
}

# stop_pid PID LABEL SECONDS: SIGTERM, wait, then SIGKILL. Only ever PIDs this script started.
stop_pid() {
  local pid=$1 label=$2 grace=$3
  [ -n "$pid" ] || return 0
  kill -0 "$pid" 2>/dev/null || { wait "$pid" 2>/dev/null || true; return 0; }
  log "stopping $label (pid $pid)"
  kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq $((grace * 5))); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
  if kill -0 "$pid" 2>/dev/null; then
    log "$label did not stop in ${grace}s; SIGKILL"
    kill -KILL "$pid" 2>/dev/null || true
  fi
  wait "$pid" 2>/dev/null || true
}

DOCKER=docker
[ -x /usr/bin/docker ] && DOCKER=/usr/bin/docker   # docker.io's client, the daemon's own version

remove_new_sam_containers() {  # only on a daemon this script started (no one else's containers there)
  [ -n "$DOCKERD_PID" ] && [ -n "$API_PID$CONTAINERS_BEFORE" ] || return 0
  $DOCKER info >/dev/null 2>&1 || return 0
  local id
  for id in $($DOCKER ps -aq --no-trunc --filter label=sam.cli.container.type=lambda 2>/dev/null); do
    case " $CONTAINERS_BEFORE " in *" $id "*) ;; *) $DOCKER rm -f "$id" >/dev/null 2>&1 || true ;; esac
  done
}

cleanup() {
  local rc=$?
  set +e
  trap - EXIT INT TERM
  exec 1>&3 2>&4
  stop_pid "$CHILD_PID" "the running step's command" 30
  if [ -n "$STEP_NAME" ]; then
    log "[$STEP_NO] $STEP_NAME FAILED (exit $rc, $(elapsed "$STEP_STARTED")); last lines of $STEP_LOG:"
    tail -n 40 "$STEP_LOG" | sed 's/^/    /'
    note "$(printf '%-11s FAILED  %8s  %s' "$STEP_NAME" "$(elapsed "$STEP_STARTED")" "$STEP_LOG")"
  fi
  stop_pid "$API_PID" "sam local start-api" 30
  remove_new_sam_containers
  stop_pid "$LOCAL_PID" "infra.local.run (local S3)" 30
  stop_pid "$DOCKERD_PID" "dockerd" 60
  echo
  echo "== sam-local summary ($( [ "$rc" -eq 0 ] && echo ok || echo "FAILED, exit $rc"); total $(elapsed "$RUN_STARTED"); logs in $LOGS/)"
  printf '  %s\n' "${SUMMARY[@]}"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

free_port() {  # free_port HOST [PREFERRED]
  "$PY" - "$@" <<'EOF'
import socket, sys
host = sys.argv[1]
for port in ([int(sys.argv[2])] if len(sys.argv) > 2 and sys.argv[2] else []) + [0]:
    with socket.socket() as s:
        try:
            s.bind((host, port))
        except OSError:
            continue
        print(s.getsockname()[1])
        break
EOF
}

# ---------------------------------------------------------------------------------------------------------
# 1. tools
# ---------------------------------------------------------------------------------------------------------
tools() {
  local missing=()
  command -v dockerd >/dev/null || missing+=(docker.io)
  command -v debootstrap >/dev/null || missing+=(debootstrap)
  if [ ${#missing[@]} -gt 0 ]; then
    [ "$(id -u)" -eq 0 ] || { echo "need root to apt-get install ${missing[*]}"; return 2; }
    apt-get install -y -q "${missing[@]}" || { apt-get update -q && apt-get install -y -q "${missing[@]}"; }
  fi
  [ -x "$PY" ] || { echo "$PY missing: run make venv first"; return 2; }
  if ! "$SAM" --version 2>/dev/null | grep -q "$SAM_CLI_VERSION"; then
    # The Makefile may be creating it concurrently (.venv-sam/.installed); reuse a working one.
    [ -x "$SAM_VENV/bin/python" ] || python3.11 -m venv "$SAM_VENV"
    "$SAM_VENV/bin/pip" install -q "aws-sam-cli==$SAM_CLI_VERSION"
  fi
  "$SAM" --version
  dockerd --version
  debootstrap --version
}

# ---------------------------------------------------------------------------------------------------------
# 2. dockerd
# ---------------------------------------------------------------------------------------------------------
start_dockerd() {
  if $DOCKER info >/dev/null 2>&1; then
    echo "reusing the running Docker daemon (not stopped at exit)"
    return 0
  fi
  [ "$(id -u)" -eq 0 ] || { echo "no Docker daemon answers and starting one needs root"; return 2; }
  dockerd --host unix:///var/run/docker.sock >"$LOGS/dockerd.log" 2>&1 3>&- 4>&- &
  DOCKERD_PID=$!
  echo "started dockerd, pid $DOCKERD_PID (log $LOGS/dockerd.log)"
  for _ in $(seq 120); do
    $DOCKER info >/dev/null 2>&1 && { $DOCKER version; return 0; }
    kill -0 "$DOCKERD_PID" 2>/dev/null || { tail -20 "$LOGS/dockerd.log"; return 1; }
    sleep 0.5
  done
  echo "dockerd did not answer in 60s"; tail -20 "$LOGS/dockerd.log"; return 1
}

# ---------------------------------------------------------------------------------------------------------
# 3. the stand-in base image
# ---------------------------------------------------------------------------------------------------------
debian_mirror() {  # the first Debian mirror apt uses here (deb822 sources or sources.list)
  local url=""
  if [ -f /etc/apt/sources.list.d/debian.sources ]; then
    url=$(awk '/^URIs:/ && $2 !~ /security/ {print $2; exit}' /etc/apt/sources.list.d/debian.sources)
  fi
  if [ -z "$url" ] && [ -f /etc/apt/sources.list ]; then
    url=$(awk '$1 == "deb" && $0 !~ /security/ {for (i = 2; i <= NF; i++) if ($i ~ /^https?:/) {print $i; exit}}' /etc/apt/sources.list)
  fi
  echo "${url:-http://deb.debian.org/debian}"
}

standin_context() {  # writes the stand-in's build context into $1
  local ctx=$1
  rm -rf "$ctx" && mkdir -p "$ctx/wheels"
  cp "$SAM_VENV"/lib/python3*/site-packages/samcli/local/rapid/aws-lambda-rie-x86_64 "$ctx/aws-lambda-rie"
  cat >"$ctx/lambda-entrypoint.sh" <<'EOF'
#!/bin/sh
# Like the AWS Lambda base images' entrypoint: under Lambda (AWS_LAMBDA_RUNTIME_API set, as the emulator
# `sam local` mounts at /var/rapid also sets it) run the runtime client; elsewhere wrap it in the emulator.
if [ $# -lt 1 ]; then
  echo "entrypoint requires the handler name to be the first argument" 1>&2
  exit 142
fi
export _HANDLER="$1"
if [ -z "${AWS_LAMBDA_RUNTIME_API:-}" ]; then
  exec /usr/local/bin/aws-lambda-rie python -m awslambdaric "$@"
else
  exec python -m awslambdaric "$@"
fi
EOF
  cat >"$ctx/Dockerfile" <<EOF
# Stand-in for ${BASE_IMAGE}, built by infra/local/sam_local.sh: public registries cannot be pulled here.
# Python 3.11 (Debian bookworm's), not 3.12: the only CPU-only torch wheel reachable here is cp311.
FROM ${ROOTFS_IMAGE}
ENV LANG=C.UTF-8 \\
    TZ=:/etc/localtime \\
    PATH=/var/lang/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \\
    LAMBDA_TASK_ROOT=/var/task \\
    LAMBDA_RUNTIME_DIR=/var/runtime
COPY wheels/ /tmp/ric/
COPY aws-lambda-rie /usr/local/bin/aws-lambda-rie
COPY lambda-entrypoint.sh /lambda-entrypoint.sh
# /var/lang is a venv over the system python, so \`python\` and \`pip\` on PATH are that python's (and pip may
# install into it: Debian marks the system python externally managed).
RUN set -eu; \\
    python3 -m venv /var/lang; \\
    /var/lang/bin/pip install --no-cache-dir --disable-pip-version-check --no-index --find-links /tmp/ric \\
        awslambdaric==${AWSLAMBDARIC_VERSION}; \\
    rm -rf /tmp/ric; \\
    mkdir -p /var/task /var/runtime; \\
    chmod 0755 /lambda-entrypoint.sh /usr/local/bin/aws-lambda-rie; \\
    python -c "import awslambdaric, sys; print(sys.version)"
WORKDIR /var/task
ENTRYPOINT ["/lambda-entrypoint.sh"]
EOF
  "$PY" -m pip download -q --disable-pip-version-check -d "$ctx/wheels" "awslambdaric==$AWSLAMBDARIC_VERSION" \
    --only-binary=:all: --platform manylinux_2_28_x86_64 --platform manylinux2014_x86_64 \
    --python-version 3.11 --implementation cp --abi cp311 2>&1 | grep -v 'is ignored: it is neither' || true
  ls "$ctx"/wheels/awslambdaric-*.whl >/dev/null
}

base_image() {
  local ctx=$WORK/standin recipe label
  standin_context "$ctx"
  recipe=$( (cat "$ctx/Dockerfile" "$ctx/lambda-entrypoint.sh" "$ctx/aws-lambda-rie"; ls "$ctx/wheels") | sha256sum | cut -c1-16)
  label=$($DOCKER image inspect "$BASE_IMAGE" --format '{{index .Config.Labels "newsgen.standin"}}' 2>/dev/null || echo absent)
  if [ "$label" = absent ]; then
    :
  elif [ -z "$label" ] || [ "$label" = "<no value>" ]; then
    echo "$BASE_IMAGE exists and is not our stand-in: using it as it is"; return 0
  elif [ "$label" = "$recipe" ] && [ "${SAM_LOCAL_REBUILD_BASE:-0}" != 1 ]; then
    echo "stand-in $BASE_IMAGE is up to date (recipe $recipe)"; return 0
  fi
  if [ "${SAM_LOCAL_REBUILD_BASE:-0}" = 1 ] || ! $DOCKER image inspect "$ROOTFS_IMAGE" >/dev/null 2>&1; then
    [ "$(id -u)" -eq 0 ] || { echo "debootstrap needs root"; return 2; }
    local rootfs=$WORK/rootfs mirror
    mirror=$(debian_mirror)
    echo "debootstrap bookworm from $mirror"
    rm -rf "$rootfs"
    run_fg debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates bookworm "$rootfs" "$mirror"
    # Smaller: package caches, apt lists, docs, man pages and translations are not needed in an image.
    rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/* "$rootfs"/usr/share/doc/* \
      "$rootfs"/usr/share/man/* "$rootfs"/usr/share/info/* "$rootfs"/usr/share/locale/* "$rootfs"/var/log/*.log
    tar --numeric-owner -C "$rootfs" -c . | $DOCKER import --change 'CMD ["/bin/bash"]' - "$ROOTFS_IMAGE"
    rm -rf "$rootfs"
  fi
  run_fg $DOCKER build --label "newsgen.standin=$recipe" -t "$BASE_IMAGE" "$ctx"
  $DOCKER run --rm --entrypoint sh "$BASE_IMAGE" -c 'python --version; pip --version; ls -l /lambda-entrypoint.sh /usr/local/bin/aws-lambda-rie'
}

# ---------------------------------------------------------------------------------------------------------
# 4. wheelhouse
# ---------------------------------------------------------------------------------------------------------
wheelhouse() {
  local stamp=$WHEELHOUSE/.requirements.sha256 want
  want=$(sha256sum infra/lambda/requirements.txt | cut -d' ' -f1)
  if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
    "$PY" -m pip download --disable-pip-version-check -r infra/lambda/requirements.txt -d "$WHEELHOUSE" \
      --only-binary=:all: --platform manylinux_2_28_x86_64 --platform manylinux2014_x86_64 \
      --python-version 3.11 --implementation cp --abi cp311 2>&1 | grep -v 'is ignored: it is neither' || true
    echo "$want" >"$stamp"
  else
    echo "wheelhouse is up to date for requirements.txt ($want)"
  fi
  local torch_count
  torch_count=$(find "$WHEELHOUSE" -maxdepth 1 -name 'torch-*.whl' | wc -l)
  ls "$WHEELHOUSE"/torch-*+cpu-*.whl
  [ "$torch_count" -eq 1 ] || { echo "expected exactly one torch wheel (the +cpu one) in $WHEELHOUSE"; return 1; }
  if ls "$WHEELHOUSE" | grep -E '^nvidia_|^triton-'; then echo "CUDA wheels in $WHEELHOUSE"; return 1; fi
  du -sh "$WHEELHOUSE"
}

# ---------------------------------------------------------------------------------------------------------
# 5. local S3 with the demo models (background; waited for before the first invoke)
# ---------------------------------------------------------------------------------------------------------
bridge_ip() { ip -4 -o addr show dev docker0 | awk '{split($4, a, "/"); print a[1]; exit}'; }

start_local_s3() {
  BIND=$(bridge_ip)
  [ -n "$BIND" ] || { echo "docker0 has no IPv4 address"; return 1; }
  S3_PORT=$(free_port "$BIND" "${S3_PORT:-5001}")
  LOCAL_API_PORT=$(free_port "$BIND")
  ENDPOINT=http://$BIND:$S3_PORT
  "$PY" -m infra.local.run --host "$BIND" --port "$LOCAL_API_PORT" --s3-port "$S3_PORT" >"$LOGS/local-s3.log" 2>&1 3>&- 4>&- &
  LOCAL_PID=$!
  echo "infra.local.run pid $LOCAL_PID: S3 on $ENDPOINT (log $LOGS/local-s3.log)"
}

wait_local_s3() {
  for _ in $(seq 1800); do   # up to 30 min: the first run trains the demo models
    grep -q "newsgen is up" "$LOGS/local-s3.log" && { cat "$LOGS/local-s3.log"; return 0; }
    kill -0 "$LOCAL_PID" 2>/dev/null || { cat "$LOGS/local-s3.log"; return 1; }
    sleep 1
  done
  echo "infra.local.run was not up in 30 min"; return 1
}

env_file() {
  local queue_url
  queue_url=$(AWS_ENDPOINT_URL=$ENDPOINT AWS_ACCESS_KEY_ID=local AWS_SECRET_ACCESS_KEY=local AWS_DEFAULT_REGION=us-east-1 \
    "$PY" -c "import boto3; print(boto3.client('sqs').get_queue_url(QueueName='newsgen-batch-chunks')['QueueUrl'])")
  "$PY" - "$WORK/env.json" "$ENDPOINT" "$queue_url" <<'EOF'
import json, sys
path, endpoint, queue = sys.argv[1:]
common = {"AWS_ENDPOINT_URL": endpoint, "MODEL_BUCKET": "newsgen-models", "MODEL_PREFIX": "models",
          "POWERTOOLS_METRICS_NAMESPACE": "newsgen-local",
          # a keyring made in the container on first use (deployed: the WatermarkKeysParameter SSM parameter)
          "WATERMARK_KEYS_PARAMETER": "", "WATERMARK_KEYS_FILE": "/tmp/newsgen/watermark-keys.json"}
json.dump({"Parameters": common, "BatchDispatchFunction": {**common, "BATCH_QUEUE_URL": queue},
           "BatchWorkerFunction": common,
           "BatchDeadLetterRecorderFunction": {**common, "RESULTS_BUCKET": "newsgen-batch"}}, open(path, "w"), indent=2)
EOF
  cat "$WORK/env.json"
}

# ---------------------------------------------------------------------------------------------------------
# 6. sam build
# ---------------------------------------------------------------------------------------------------------
sam_build() {
  # The python3.12 Zip functions and layer need python3.12 on PATH; pyenv's shim hides it unless selected.
  if ! python3.12 -c '' 2>/dev/null && command -v pyenv >/dev/null; then
    local v312 current
    v312=$(pyenv versions --bare | grep -E '^3\.12(\.|$)' | tail -1)
    current=$(pyenv version-name)
    [ -n "$v312" ] && export PYENV_VERSION="$current:$v312"
    echo "PYENV_VERSION=${PYENV_VERSION:-}"
  fi
  python3.12 --version
  run_fg env SAM_CLI_TELEMETRY=0 "$SAM" build --template template.yaml
  $DOCKER image inspect "$FUNCTION_IMAGE" --format '{{.Id}} {{.Size}}'
  $DOCKER run --rm --entrypoint python "$FUNCTION_IMAGE" -c \
    "import torch, transformers, sys; print(sys.version.split()[0], 'torch', torch.__version__, 'cuda', torch.version.cuda, 'transformers', transformers.__version__)"
}

# The local template: the built one plus AWS_ENDPOINT_URL declared on each function (sam local passes a
# function only the variables it declares; --env-vars cannot add others).
local_template() {
  "$SAM_VENV/bin/python" - "$BUILT_TEMPLATE" "$LOCAL_TEMPLATE" <<'EOF'
import sys
from samcli.yamlhelper import yaml_dump, yaml_parse
src, dst = sys.argv[1:]
template = yaml_parse(open(src).read())
for resource in template["Resources"].values():
    if resource.get("Type") == "AWS::Serverless::Function":
        props = resource.setdefault("Properties", {})
        variables = props.setdefault("Environment", {}).setdefault("Variables", {})
        variables.setdefault("AWS_ENDPOINT_URL", "")
open(dst, "w").write("# Generated by infra/local/sam_local.sh for sam local only: the built template + AWS_ENDPOINT_URL.\n"
                     + yaml_dump(template))
EOF
  grep -c AWS_ENDPOINT_URL "$LOCAL_TEMPLATE"
}

# SAM serialises building an image's "rapid" variant with lock files in the temp dir; a sam killed while
# building leaves its lock behind and every later invoke waits 5 minutes for it. Remove those of dead PIDs.
clear_stale_sam_locks() {
  local lock pid
  for lock in "${TMPDIR:-/tmp}"/*_rapid-*.building.lock; do
    [ -f "$lock" ] || continue
    pid=$(head -n 1 "$lock" 2>/dev/null || true)
    if [[ "$pid" =~ ^[0-9]+$ ]] && ! kill -0 "$pid" 2>/dev/null; then
      echo "removing stale SAM lock $lock (pid $pid is gone)"
      rm -f "$lock" "${lock%.lock}.status"
    fi
  done
}

# ---------------------------------------------------------------------------------------------------------
# 7. sam local invoke
# ---------------------------------------------------------------------------------------------------------
check_response() {  # check_response FILE KIND: FILE holds a Lambda proxy response (invoke) or a body (api)
  "$PY" - "$@" <<'EOF'
import json, sys
path, kind = sys.argv[1:]
text = open(path).read().strip()
if kind == "invoke":
    response = json.loads(text.splitlines()[-1])
    assert response["statusCode"] == 200, response
    body = json.loads(response["body"])
else:
    body = json.loads(text)
results = body["results"]
assert results and all(r["text"] for r in results), body
assert body["synthetic"] is True, body
for r in results:
    print(f"  [synthetic] {r['text']!r}  ({r['finish_reason']}, {r['generated_tokens']} tokens)")
print(f"  model {body['model']}")
EOF
}

sam_invoke() {
  local out=$WORK/invoke-api.json started
  clear_stale_sam_locks
  started=$(now)
  run_fg env "${INVOKE_ENV[@]}" "$SAM" local invoke ApiFunction --template "$LOCAL_TEMPLATE" \
    --event events/api-headlines.json --env-vars "$WORK/env.json" --skip-pull-image --region us-east-1 \
    >"$out" 2>"$WORK/invoke-api.stderr" || { cat "$WORK/invoke-api.stderr"; cat "$out"; return 1; }
  INVOKE_TIME=$(elapsed "$started")
  cat "$WORK/invoke-api.stderr"
  echo "--- response:"; cat "$out"; echo
  check_response "$out" invoke | tee "$WORK/invoke-api.results"
  # The emulator runs the init phase inside the first invoke, so its REPORT Duration includes init (imports,
  # model download and load) and its "Init Duration" does not mean what it means on Lambda.
  REPORT_DURATION=$(grep -Eo $'\tDuration: [0-9.]+ ms' "$WORK/invoke-api.stderr" | tail -1 | tr -d '\t' || true)
  echo "cold invoke: ${INVOKE_TIME} wall (sam + container start + init + generation); emulator REPORT ${REPORT_DURATION:-none} (init + handler)"
}

# BatchWorkerFunction on one chunk: a 3-line prompts file in a bucket of its own (the local pollers of
# infra.local.run watch newsgen-batch only), dispatched as the dispatcher does (batch.dispatch: the job file,
# the `running` summary, the chunk messages, collected here instead of sent), and the chunk messages as the
# SQS event. The upload's ETag is the object's (the worker re-reads its byte range with If-Match).
worker_event() {
  AWS_ENDPOINT_URL=$ENDPOINT AWS_ACCESS_KEY_ID=local AWS_SECRET_ACCESS_KEY=local AWS_DEFAULT_REGION=us-east-1 \
    "$PY" - "$WORK/sqs-event.json" <<'EOF'
import hashlib, json, sys
import boto3
from newsgen import batch
s3, bucket, key = boto3.client("s3"), "newsgen-sam-local", "batch/in/sam-local.jsonl"
s3.create_bucket(Bucket=bucket)
lines = [{"id": 1, "task": "headline", "n": 2, "parameters": {"seed": 1}},
         {"id": 2, "task": "headline", "prompt": "Harbor", "parameters": {"seed": 2}},
         {"id": 3, "task": "article", "headline": "City council approves a new harbor ferry line",
          "parameters": {"seed": 3, "max_new_tokens": 40}}]
s3.put_object(Bucket=bucket, Key=key, Body="".join(json.dumps(l) + "\n" for l in lines).encode())
etag = s3.head_object(Bucket=bucket, Key=key)["ETag"].strip('"')
upload = batch.Upload(bucket=bucket, key=key, etag=etag, sequencer="1")
messages = []
summary = batch.dispatch(s3, upload, send=messages.extend, chunk_lines=50, chunk_tokens=16384)
assert summary and summary["status"] == "running" and len(messages) == summary["chunks"], (summary, messages)
event = json.load(open("events/sqs-batch-chunk.json"))
record = event["Records"][0]
event["Records"] = [{**record, "messageId": f"sam-local-{m.chunk}", "body": m.model_dump_json(),
                     "md5OfBody": hashlib.md5(m.model_dump_json().encode()).hexdigest()} for m in messages]
json.dump(event, open(sys.argv[1], "w"), indent=2)
print(f"dispatched {summary['lines']} lines in {summary['chunks']} chunk(s) as job {summary['job']}: s3://{bucket}/{key}")
EOF
}

# check_worker_output FILE: FILE holds the worker's response; the job's answer must be complete.
check_worker_output() {
  AWS_ENDPOINT_URL=$ENDPOINT AWS_ACCESS_KEY_ID=local AWS_SECRET_ACCESS_KEY=local AWS_DEFAULT_REGION=us-east-1 \
    "$PY" - "$1" <<'EOF'
import json, sys
import boto3
from newsgen import batch
response = json.loads(open(sys.argv[1]).read().strip().splitlines()[-1])
assert response == {"batchItemFailures": []}, response
s3, bucket, name = boto3.client("s3"), "newsgen-sam-local", "sam-local.jsonl"
summary = json.loads(s3.get_object(Bucket=bucket, Key=batch.summary_key(name))["Body"].read())
assert summary["status"] == "complete", summary
assert summary["results"] == summary["lines"] == 3 and summary["errors"] == 0 and summary["synthetic"], summary
out = s3.get_object(Bucket=bucket, Key=batch.results_key(name))["Body"].read().decode()
entries = [json.loads(line) for line in out.splitlines()]
assert [e["id"] for e in entries] == [1, 2, 3] and all("result" in e for e in entries), entries
print(f"{summary['results']}/{summary['lines']} lines, 0 errors, {summary['model_versions']}; first: {json.dumps(entries[0])[:160]}")
EOF
}

sam_invoke_worker() {
  worker_event
  local out=$WORK/invoke-worker.json started
  clear_stale_sam_locks
  started=$(now)
  run_fg env "${INVOKE_ENV[@]}" "$SAM" local invoke BatchWorkerFunction --template "$LOCAL_TEMPLATE" \
    --event "$WORK/sqs-event.json" --env-vars "$WORK/env.json" --skip-pull-image --region us-east-1 \
    >"$out" 2>"$WORK/invoke-worker.stderr" || { cat "$WORK/invoke-worker.stderr"; cat "$out"; return 1; }
  WORKER_TIME=$(elapsed "$started")
  cat "$WORK/invoke-worker.stderr"
  echo "--- response:"; cat "$out"; echo
  WORKER_SUMMARY=$(check_worker_output "$out")
  echo "worker: ${WORKER_TIME} wall; $WORKER_SUMMARY"
}

# ---------------------------------------------------------------------------------------------------------
# 8. sam local start-api
# ---------------------------------------------------------------------------------------------------------
start_api() {
  clear_stale_sam_locks
  API_PORT=$(free_port 127.0.0.1 "${API_PORT:-}")
  CONTAINERS_BEFORE=$($DOCKER ps -aq --no-trunc --filter label=sam.cli.container.type=lambda | tr '\n' ' ')
  env "${INVOKE_ENV[@]}" "$SAM" local start-api --template "$LOCAL_TEMPLATE" --env-vars "$WORK/env.json" \
    --skip-pull-image --region us-east-1 --host 127.0.0.1 --port "$API_PORT" --warm-containers LAZY \
    >"$LOGS/start-api.log" 2>&1 3>&- 4>&- &
  API_PID=$!
  echo "sam local start-api pid $API_PID on http://127.0.0.1:$API_PORT (log $LOGS/start-api.log)"
  for _ in $(seq 240); do
    curl -s -o /dev/null "http://127.0.0.1:$API_PORT/" 2>/dev/null && break
    kill -0 "$API_PID" 2>/dev/null || { cat "$LOGS/start-api.log"; return 1; }
    sleep 0.5
  done
  local url=http://127.0.0.1:$API_PORT code started
  for attempt in cold warm; do
    started=$(now)
    code=$(curl -s -o "$WORK/api-$attempt.json" -w '%{http_code}' --max-time 180 -XPOST "$url/v1/headlines" \
      -H 'content-type: application/json' -d '{"prompt": "Local officials", "n": 2, "parameters": {"seed": 7}}')
    echo "POST /v1/headlines ($attempt): HTTP $code in $(elapsed "$started")"
    [ "$code" = 200 ] || { cat "$WORK/api-$attempt.json"; echo; tail -40 "$LOGS/start-api.log"; return 1; }
    API_TIMES[$attempt]=$(elapsed "$started")
    check_response "$WORK/api-$attempt.json" api
  done
  code=$(curl -s -o "$WORK/api-health.json" -w '%{http_code}' --max-time 60 "$url/health")
  echo "GET /health: HTTP $code $(cat "$WORK/api-health.json")"
  [ "$code" = 200 ]
}

# ---------------------------------------------------------------------------------------------------------
# 9. image size
# ---------------------------------------------------------------------------------------------------------
image_size() {
  local size base
  size=$($DOCKER image inspect "$FUNCTION_IMAGE" --format '{{.Size}}')
  base=$($DOCKER image inspect "$BASE_IMAGE" --format '{{.Size}}')
  $DOCKER history --format '{{.Size}}\t{{.CreatedBy}}' "$FUNCTION_IMAGE" | cut -c1-160
  IMAGE_SIZE_LINE=$("$PY" -c "
size, base, target = $size, $base, $SIZE_TARGET
verdict = 'under' if size <= target else 'OVER'
print(f'{size} bytes = {size / 1e9:.2f} GB ({size / 2**30:.2f} GiB), {verdict} the 1.5 GB target; '
      f'stand-in base {base / 1e6:.0f} MB')")
  echo "$FUNCTION_IMAGE: $IMAGE_SIZE_LINE"
}

# ---------------------------------------------------------------------------------------------------------
# 10. offline image: the demo models mirrored into infra/lambda/baked, built in with --build-arg
#     BAKED_MODELS, and the API handler run in a container without any network (MODEL_BUCKET=file://…)
# ---------------------------------------------------------------------------------------------------------
offline_image() {
  local baked=infra/lambda/baked started
  find "$baked" -mindepth 1 -maxdepth 1 ! -name README.md -exec rm -rf {} +
  AWS_ENDPOINT_URL=$ENDPOINT AWS_ACCESS_KEY_ID=local AWS_SECRET_ACCESS_KEY=local AWS_DEFAULT_REGION=us-east-1 \
    "$PY" -m training mirror --bucket newsgen-models --output "$baked"
  run_fg $DOCKER build -q -f infra/lambda/Dockerfile --build-arg BAKED_MODELS="$baked" -t "$OFFLINE_IMAGE" .
  find "$baked" -mindepth 1 -maxdepth 1 ! -name README.md -exec rm -rf {} +
  started=$(now)
  $DOCKER run --rm -i --network none -e MODEL_BUCKET=file:///opt/newsgen/baked -e POWERTOOLS_TRACE_DISABLED=true \
    -e AWS_DEFAULT_REGION=us-east-1 --entrypoint python "$OFFLINE_IMAGE" -c '
import json, sys
from handlers.api import lambda_handler
class Context:
    function_name, function_version, memory_limit_in_mb = "offline", "$LATEST", 2048
    invoked_function_arn, aws_request_id = "arn:aws:lambda:local:000000000000:function:offline", "offline"
    def get_remaining_time_in_millis(self): return 28000
print(json.dumps(lambda_handler(json.load(sys.stdin), Context())))' <events/api-headlines.json >"$WORK/offline.json"
  OFFLINE_TIME=$(elapsed "$started")
  check_response "$WORK/offline.json" invoke | tee "$WORK/offline.results"
  OFFLINE_SIZE=$($DOCKER image inspect "$OFFLINE_IMAGE" --format '{{.Size}}')
  echo "offline container (--network none): ${OFFLINE_TIME} wall, image $OFFLINE_SIZE bytes"
}

# ---------------------------------------------------------------------------------------------------------
step tools tools
step dockerd start_dockerd
if [ -n "$DOCKERD_PID" ]; then
  # Exited Lambda containers of an earlier, interrupted run on this daemon (SAM labels its containers).
  $DOCKER ps -aq --filter label=sam.cli.container.type=lambda --filter status=exited | xargs -r $DOCKER rm >/dev/null || true
fi
step local-s3 start_local_s3   # in the background: trains the demo models (first run) while the images build
step base-image base_image
step wheelhouse wheelhouse
step sam-build sam_build
step template local_template
step models wait_local_s3
step env-vars env_file
step invoke sam_invoke
note "  ApiFunction: 200, cold ${INVOKE_TIME} wall (emulator REPORT ${REPORT_DURATION:-?}, init included)"
note "    $(sed -n '1s/^ *//p' "$WORK/invoke-api.results")"
step invoke-worker sam_invoke_worker
note "  BatchWorkerFunction: ${WORKER_TIME} wall; ${WORKER_SUMMARY%%; first:*}"
if [ "${SAM_LOCAL_SKIP_API:-0}" != 1 ]; then
  step start-api start_api
  note "  start-api POST /v1/headlines: 200 cold ${API_TIMES[cold]}, warm ${API_TIMES[warm]}"
  stop_pid "$API_PID" "sam local start-api" 30; API_PID=""
  remove_new_sam_containers
fi
step image-size image_size
note "  image $FUNCTION_IMAGE: $IMAGE_SIZE_LINE"
step offline offline_image
note "  $OFFLINE_IMAGE (BAKED_MODELS, --network none): 200 in ${OFFLINE_TIME} wall; $(sed -n '1s/^ *//p' "$WORK/offline.results")"
