#!/usr/bin/env bash
# newsgen training job, end to end:
#   fetch data -> prepare -> train headline -> train article -> distill headline -> distill article -> publish
#
# The same script runs in the GPU image (infra/training/Dockerfile, launched by infra/training/template.yaml)
# and on a laptop CPU (`make train-local`, BASE=tiny). Everything is configured by environment variables:
#
#   DATA              local CSV files or directories of CSVs (space-separated)
#   DATA_S3_URIS      s3://bucket/key.csv objects (comma- or space-separated), downloaded with boto3
#                     (AWS_ENDPOINT_URL is honoured); DATA and DATA_S3_URIS may be combined, one is required
#   WORKDIR           where data, runs and markers live (default ./newsgen-train; /opt/ml/work in the image)
#   BASE              tiny | distilgpt2 | gpt2 | a local checkpoint (default distilgpt2)
#   EPOCHS            training epochs (default 3); MAX_STEPS > 0 overrides it (default -1)
#   BATCH_SIZE        per device (default 8); LEARNING_RATE, EVAL_STEPS, SAVE_STEPS, LOGGING_STEPS,
#                     MAX_LENGTH: passed to `train` when set
#   NPROC             GPUs to train on (default 1; auto: all that nvidia-smi lists); > 1 runs `train` under
#                     torchrun (data-parallel, one process per GPU); `distill` runs on one GPU
#   DISTILL           1 (default) distils both models; 0 skips distillation and the -distilled versions
#   DISTILL_EPOCHS, DISTILL_MAX_STEPS   for `distill` (default EPOCHS, MAX_STEPS); STUDENT_LAYERS:
#                     --student-layers (default: distill's, half the teacher's layers)
#   EXTRA_TRAIN_ARGS, EXTRA_DISTILL_ARGS   more options, word-split and appended to each command
#   MODEL_BUCKET      where to publish; unset: the job stops before publishing, with the models in WORKDIR
#   MODEL_PREFIX      key prefix in the bucket (default models)
#   EXPORT            weights to publish: fp32 (default; can be trained further) or int8 (what the Lambda
#                     serves, loaded without quantising: a faster cold start)
#   VERSION           the published version (default: the UTC time of the job's first run, kept in
#                     WORKDIR/VERSION so that a resumed job publishes under the same name)
#   PYTHON            the interpreter that has newsgen installed (default python)
#
# Publishing: the fine-tuned models go out as <task>/<VERSION> and LATEST moves to them; the distilled ones
# as <task>/<VERSION>-distilled without moving LATEST (serve them by pinning HEADLINE_MODEL_VERSION /
# ARTICLE_MODEL_VERSION). The distilled versions are published first, so LATEST moves only once every
# version of this job is in S3.
#
# Resume-safe: run it again with the same WORKDIR and a step whose final model exists is skipped, a step
# whose output already has checkpoints is continued with --resume, and a version already published is not
# published again. A WORKDIR remembers its inputs and settings (job.txt) and refuses to resume with others.
set -euo pipefail

PYTHON=${PYTHON:-python}
WORKDIR=${WORKDIR:-$PWD/newsgen-train}
DATA=${DATA:-}
DATA_S3_URIS=${DATA_S3_URIS:-}
BASE=${BASE:-distilgpt2}
EPOCHS=${EPOCHS:-3}
MAX_STEPS=${MAX_STEPS:--1}
BATCH_SIZE=${BATCH_SIZE:-8}
LEARNING_RATE=${LEARNING_RATE:-}
EVAL_STEPS=${EVAL_STEPS:-}
SAVE_STEPS=${SAVE_STEPS:-}
LOGGING_STEPS=${LOGGING_STEPS:-}
MAX_LENGTH=${MAX_LENGTH:-}
NPROC=${NPROC:-1}
DISTILL=${DISTILL:-1}
DISTILL_EPOCHS=${DISTILL_EPOCHS:-$EPOCHS}
DISTILL_MAX_STEPS=${DISTILL_MAX_STEPS:-$MAX_STEPS}
STUDENT_LAYERS=${STUDENT_LAYERS:-}
EXTRA_TRAIN_ARGS=${EXTRA_TRAIN_ARGS:-}
EXTRA_DISTILL_ARGS=${EXTRA_DISTILL_ARGS:-}
MODEL_BUCKET=${MODEL_BUCKET:-}
MODEL_PREFIX=${MODEL_PREFIX:-models}
EXPORT=${EXPORT:-fp32}
VERSION=${VERSION:-}
TASKS=(headline article)

JOB_STARTED=$SECONDS
CURRENT_STEP=""
STEP_STARTED=$SECONDS
SUMMARY=()
JOB_RUNNING=0

log() { printf '[newsgen-train %s] %s\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$*" >&2; }
die() { log "error: $*"; exit 2; }
duration() { local s=$1; printf '%dm%02ds' $((s / 60)) $((s % 60)); }

step_begin() {
    CURRENT_STEP=$1
    STEP_STARTED=$SECONDS
    log "==> $CURRENT_STEP"
}
step_end() {  # step_end [note]
    local took=$((SECONDS - STEP_STARTED))
    log "<== $CURRENT_STEP: ${1:-done} in $(duration "$took")"
    SUMMARY+=("$(printf '%-44s %-7s %s' "$CURRENT_STEP" "$(duration "$took")" "${1:-done}")")
    CURRENT_STEP=""
}
on_exit() {
    local rc=$?
    if ((rc != 0 && JOB_RUNNING)); then
        [[ -n $CURRENT_STEP ]] && log "!!! $CURRENT_STEP failed (exit $rc) after $(duration $((SECONDS - STEP_STARTED)))"
        log "job failed (exit $rc) after $(duration $((SECONDS - JOB_STARTED))); run it again with the same WORKDIR to resume"
    fi
}
trap on_exit EXIT

training() { "$PYTHON" -m training "$@"; }

# A step's final model: what `train` (and `distill`) write last beside the weights.
model_done() { [[ -f $1/model.safetensors && -f $1/config.json && ( -f $1/training_report.json || -f $1/.pipeline-done ) ]]; }
has_checkpoints() { compgen -G "$1/checkpoints/checkpoint-*" >/dev/null || compgen -G "$1/checkpoint-*" >/dev/null; }
is_int() { [[ $1 =~ ^-?[0-9]+$ ]]; }

# ---------------------------------------------------------------------------------------------- preflight
GPUS=0
if command -v nvidia-smi >/dev/null; then
    GPUS=$(nvidia-smi -L 2>/dev/null | grep -c '^GPU ' || true)
fi
[[ $NPROC == auto ]] && NPROC=$((GPUS > 1 ? GPUS : 1))
{ is_int "$NPROC" && ((NPROC >= 1)); } || die "NPROC must be a positive integer or auto, not '$NPROC'"
# Data-parallel training is for GPUs (NCCL): on CPU the ranks would each train alone and write the same output.
((NPROC == 1 || NPROC <= GPUS)) || die "NPROC=$NPROC needs $NPROC GPUs; nvidia-smi sees $GPUS"
is_int "$MAX_STEPS" || die "MAX_STEPS must be an integer, not '$MAX_STEPS'"
is_int "$DISTILL_MAX_STEPS" || die "DISTILL_MAX_STEPS must be an integer, not '$DISTILL_MAX_STEPS'"
[[ $DISTILL == 0 || $DISTILL == 1 ]] || die "DISTILL must be 0 or 1, not '$DISTILL'"
[[ -n $DATA || -n $DATA_S3_URIS ]] || die "no training data: set DATA (local CSV files) and/or DATA_S3_URIS (s3://bucket/key.csv, ...)"
command -v "$PYTHON" >/dev/null || die "PYTHON=$PYTHON not found"
import_error=$("$PYTHON" -c 'import training.cli, newsgen' 2>&1) \
    || die "$PYTHON cannot import the training package (${import_error##*$'\n'}); install the project with its train extra: pip install '.[train]'"

mkdir -p "$WORKDIR"
WORKDIR=$(cd "$WORKDIR" && pwd)
RAW=$WORKDIR/raw
DATA_DIR=$WORKDIR/data
RUNS=$WORKDIR/runs
PUBLISHED=$WORKDIR/published

if [[ -z $VERSION ]]; then
    if [[ -s $WORKDIR/VERSION ]]; then
        VERSION=$(<"$WORKDIR/VERSION")
    else
        VERSION=$(date -u +%Y%m%dT%H%M%SZ)
    fi
fi
# newsgen.artifacts.VERSION_PATTERN, leaving room for the "-distilled" suffix.
[[ $VERSION =~ ^[A-Za-z0-9][A-Za-z0-9._-]{0,117}$ && $VERSION != LATEST ]] \
    || die "VERSION '$VERSION' must be letters, digits, '.', '_' or '-' (at most 118, not LATEST)"
echo "$VERSION" >"$WORKDIR/VERSION"

DISTILL_HELP=""
if ((DISTILL)); then
    DISTILL_HELP=$(training distill --help 2>&1) \
        || die "this build's training CLI has no working 'distill' command (set DISTILL=0 to skip distillation): ${DISTILL_HELP##*$'\n'}"
fi
distill_has() { grep -q -- "$1" <<<"$DISTILL_HELP"; }

log "job: base=$BASE epochs=$EPOCHS max_steps=$MAX_STEPS batch_size=$BATCH_SIZE nproc=$NPROC distill=$DISTILL version=$VERSION"
log "workdir: $WORKDIR; publish to: ${MODEL_BUCKET:+s3://$MODEL_BUCKET/$MODEL_PREFIX/}${MODEL_BUCKET:-(nowhere: MODEL_BUCKET is unset)}"
if ((GPUS > 0)); then
    nvidia-smi --query-gpu=index,name,memory.total --format=csv,noheader 2>/dev/null | sed 's/^/[gpu] /' >&2 || true
fi

# ------------------------------------------------------------------------------------------- 1. data in
JOB_RUNNING=1
step_begin "fetch data"
INPUTS=()
for item in $DATA; do
    if [[ -d $item ]]; then
        shopt -s nullglob
        found=("$item"/*.csv)
        shopt -u nullglob
        ((${#found[@]})) || die "DATA directory $item has no .csv files"
        INPUTS+=("${found[@]}")
    elif [[ -f $item ]]; then
        INPUTS+=("$item")
    else
        die "DATA: $item is neither a file nor a directory"
    fi
done
if [[ -n $DATA_S3_URIS ]]; then
    read -r -a URIS <<<"${DATA_S3_URIS//,/ }"
    # One boto3 process for all objects; an object already downloaded whole (same size) is not fetched again.
    fetched=$("$PYTHON" - "$RAW" "${URIS[@]}" <<'PY'
import sys
from pathlib import Path

from newsgen import s3

dest = Path(sys.argv[1])
dest.mkdir(parents=True, exist_ok=True)
client = s3.client()
for index, uri in enumerate(sys.argv[2:]):
    if not uri.startswith("s3://") or "/" not in uri[5:] or uri.endswith("/"):
        sys.exit(f"error: DATA_S3_URIS: {uri!r} is not an s3://bucket/key object URI")
    bucket, key = uri[5:].split("/", 1)
    target = dest / f"{index:02d}-{Path(key).name}"
    size = client.head_object(Bucket=bucket, Key=key)["ContentLength"]
    if target.is_file() and target.stat().st_size == size:
        print(f"[fetch] {uri}: already here ({size} bytes)", file=sys.stderr)
    else:
        print(f"[fetch] {uri} -> {target} ({size} bytes)", file=sys.stderr)
        partial = target.with_name(target.name + ".partial")
        client.download_file(bucket, key, str(partial), Config=s3.TRANSFER_CONFIG)
        partial.replace(target)
    print(target)
PY
    ) || die "could not download DATA_S3_URIS (${URIS[*]})"
    mapfile -t FETCHED <<<"$fetched"
    ((${#FETCHED[@]} == ${#URIS[@]})) || die "could not download every object of DATA_S3_URIS"
    INPUTS+=("${FETCHED[@]}")
fi
# What this WORKDIR was started with: resuming it with other data or other settings would mix two jobs.
{
    for input in "${INPUTS[@]}"; do
        printf 'input %s %s\n' "$(basename "$input")" "$(wc -c <"$input" | tr -d ' ')"
    done
    printf 'setting %s\n' "BASE=$BASE" "EPOCHS=$EPOCHS" "MAX_STEPS=$MAX_STEPS" "BATCH_SIZE=$BATCH_SIZE" \
        "LEARNING_RATE=$LEARNING_RATE" "MAX_LENGTH=$MAX_LENGTH" "DISTILL=$DISTILL" "DISTILL_EPOCHS=$DISTILL_EPOCHS" \
        "DISTILL_MAX_STEPS=$DISTILL_MAX_STEPS" "STUDENT_LAYERS=$STUDENT_LAYERS"
} >"$WORKDIR/job.txt.new"
if [[ -f $WORKDIR/job.txt ]] && ! cmp -s "$WORKDIR/job.txt" "$WORKDIR/job.txt.new"; then
    diff "$WORKDIR/job.txt" "$WORKDIR/job.txt.new" >&2 || true
    rm -f "$WORKDIR/job.txt.new"
    die "WORKDIR $WORKDIR holds a job with other inputs or settings (above: < that job, > this one); use another WORKDIR, or delete it to start over"
fi
mv "$WORKDIR/job.txt.new" "$WORKDIR/job.txt"
step_end "${#INPUTS[@]} CSV file(s)"

# ------------------------------------------------------------------------------------------- 2. prepare
step_begin "prepare"
if [[ -f $DATA_DIR/report.json && -f $DATA_DIR/train.jsonl && -f $DATA_DIR/validation.jsonl ]]; then
    step_end "skipped: $DATA_DIR is prepared"
else
    training prepare --input "${INPUTS[@]}" --output "$DATA_DIR"
    step_end
fi

# ------------------------------------------------------------------------------------------- 3. train
train_task() {
    local task=$1 out=$RUNS/$1
    step_begin "train $task"
    if model_done "$out"; then
        step_end "skipped: $out has the final model"
        return
    fi
    local args=(train --task "$task" --data "$DATA_DIR" --base "$BASE" --output "$out"
        --epochs "$EPOCHS" --max-steps "$MAX_STEPS" --batch-size "$BATCH_SIZE")
    [[ -n $LEARNING_RATE ]] && args+=(--learning-rate "$LEARNING_RATE")
    [[ -n $EVAL_STEPS ]] && args+=(--eval-steps "$EVAL_STEPS")
    [[ -n $SAVE_STEPS ]] && args+=(--save-steps "$SAVE_STEPS")
    [[ -n $LOGGING_STEPS ]] && args+=(--logging-steps "$LOGGING_STEPS")
    [[ -n $MAX_LENGTH ]] && args+=(--max-length "$MAX_LENGTH")
    local note="done"
    if has_checkpoints "$out"; then
        args+=(--resume)
        note="resumed from a checkpoint"
        log "$out has checkpoints: resuming"
    fi
    # shellcheck disable=SC2206  # EXTRA_TRAIN_ARGS is meant to be word-split
    args+=($EXTRA_TRAIN_ARGS)
    if ((NPROC > 1)); then
        # `python -m torch.distributed.run` is torchrun, from the same interpreter as $PYTHON.
        "$PYTHON" -m torch.distributed.run --standalone --nproc-per-node "$NPROC" -m training "${args[@]}"
    else
        training "${args[@]}"
    fi
    touch "$out/.pipeline-done"
    step_end "$note"
}
for task in "${TASKS[@]}"; do
    train_task "$task"
done

# ------------------------------------------------------------------------------------------- 4. distill
distill_task() {
    local task=$1 teacher=$RUNS/$1 out=$RUNS/$1-distilled
    step_begin "distill $task"
    if model_done "$out"; then
        step_end "skipped: $out has the final model"
        return
    fi
    local args=(distill --teacher "$teacher" --data "$DATA_DIR" --output "$out")
    distill_has --task && args+=(--task "$task")
    distill_has --epochs && args+=(--epochs "$DISTILL_EPOCHS")
    ((DISTILL_MAX_STEPS > 0)) && args+=(--max-steps "$DISTILL_MAX_STEPS")
    [[ -n $STUDENT_LAYERS ]] && args+=(--student-layers "$STUDENT_LAYERS")
    # Options that `distill` shares with `train`, passed where this build's distill has them.
    distill_has --batch-size && args+=(--batch-size "$BATCH_SIZE")
    [[ -n $EVAL_STEPS ]] && distill_has --eval-steps && args+=(--eval-steps "$EVAL_STEPS")
    [[ -n $SAVE_STEPS ]] && distill_has --save-steps && args+=(--save-steps "$SAVE_STEPS")
    [[ -n $LOGGING_STEPS ]] && distill_has --logging-steps && args+=(--logging-steps "$LOGGING_STEPS")
    [[ -n $MAX_LENGTH ]] && distill_has --max-length && args+=(--max-length "$MAX_LENGTH")
    local note="done"
    if has_checkpoints "$out"; then
        if distill_has --resume; then
            args+=(--resume)
            note="resumed from a checkpoint"
            log "$out has checkpoints: resuming"
        else
            log "$out has checkpoints but distill has no --resume: starting over"
            rm -rf "$out"
        fi
    fi
    # shellcheck disable=SC2206
    args+=($EXTRA_DISTILL_ARGS)
    training "${args[@]}"
    touch "$out/.pipeline-done"
    step_end "$note"
}
if ((DISTILL)); then
    for task in "${TASKS[@]}"; do
        distill_task "$task"
    done
fi

# ------------------------------------------------------------------------------------------- 5. publish
print_summary() {
    log "summary (total $(duration $((SECONDS - JOB_STARTED)))):"
    local line
    for line in "${SUMMARY[@]}"; do
        log "    $line"
    done
}

if [[ -z $MODEL_BUCKET ]]; then
    print_summary
    log "MODEL_BUCKET is not set: stopping before publish. The models are in $RUNS;"
    log "set MODEL_BUCKET (and MODEL_PREFIX, AWS_ENDPOINT_URL for a local S3) and run again with the same WORKDIR to publish them."
    exit 0
fi

# publish_one TASK DIR VERSION latest|no-latest
publish_one() {
    local task=$1 dir=$2 version=$3 latest=$4
    local marker=$PUBLISHED/$task-$version
    step_begin "publish $task $version"
    if [[ -f $marker ]]; then
        step_end "skipped: published by an earlier run"
        return
    fi
    # A run that stopped between the manifest and the marker: the version is there (immutable); only
    # make sure LATEST points at it when it should.
    local state
    state=$("$PYTHON" - "$MODEL_BUCKET" "$MODEL_PREFIX" "$task" "$version" "$latest" <<'PY'
import sys

from newsgen import artifacts, s3

bucket, prefix, task, version, latest = sys.argv[1:]
client = s3.client()
if not artifacts.object_exists(client, bucket, artifacts.version_prefix(prefix, task, version) + artifacts.MANIFEST_NAME):
    print("absent")
else:
    if latest == "latest":
        artifacts.set_latest(client, bucket=bucket, prefix=prefix, task=task, version=version)
    print("present")
PY
    )
    if [[ $state == present ]]; then
        mkdir -p "$PUBLISHED" && touch "$marker"
        step_end "already in s3://$MODEL_BUCKET/$MODEL_PREFIX/$task/$version/"
        return
    fi
    local args=(publish --model "$dir" --bucket "$MODEL_BUCKET" --prefix "$MODEL_PREFIX" --task "$task" --version "$version" --export "$EXPORT")
    [[ $latest == no-latest ]] && args+=(--no-latest)
    training "${args[@]}"
    mkdir -p "$PUBLISHED" && touch "$marker"
    step_end "s3://$MODEL_BUCKET/$MODEL_PREFIX/$task/$version/$([[ $latest == latest ]] && echo ' (LATEST)')"
}
if ((DISTILL)); then
    for task in "${TASKS[@]}"; do
        publish_one "$task" "$RUNS/$task-distilled" "$VERSION-distilled" no-latest
    done
fi
for task in "${TASKS[@]}"; do
    publish_one "$task" "$RUNS/$task" "$VERSION" latest
done

print_summary
log "published version $VERSION (LATEST) for ${TASKS[*]}$( ((DISTILL)) && echo "; distilled: $VERSION-distilled (pin it to serve it)")"
