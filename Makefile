# newsgen — every entry point. `make run` and `make test` work on a fresh machine (Python 3.11+, offline
# except for the package registry).
SHELL := /bin/bash
PYTHON ?= python3.11
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
DATA ?=
# Ports, buckets and queue names of the local runs live in infra/local/harness.py; PORT/S3_PORT override them.
PORT ?=
S3_PORT ?=
# batch, redrive and invoke: S3_PORT= names a local S3; without it batch and redrive follow the running `make run`
# (the ports it names in .newsgen/run.json while it is up).
LOCAL_S3 = $(if $(S3_PORT),--endpoint http://127.0.0.1:$(S3_PORT))
PYTEST_ARGS ?=
VERBOSE ?=

.PHONY: help venv run lint test clean openapi batch redrive fuzz sam-local bench bench-memory bench-batch load

help:  ## list the targets
	@grep -E '^[a-z-]+:.*##' $(MAKEFILE_LIST) | sed -E 's/:.*## /\t/' | column -t -s $$'\t'

$(STAMP): pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "error: $(PYTHON) not found; set PYTHON=python3.x (3.11 or newer)"; exit 2; }
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# torch is pinned to the CPU build (2.13.0); an unpinned torch would pull a multi-GB CUDA build.
	$(PY) -m pip install -q -e '.[dev]'
	touch $(STAMP)

venv: $(STAMP)  ## create the virtualenv with training, serving and test dependencies

run: $(STAMP)  ## local S3 + demo models + local API on 127.0.0.1:3000 (DATA=some.csv to train on it; PORT=, S3_PORT=; VERBOSE=1: JSON logs)
	$(PY) -m infra.local.run $(if $(PORT),--port $(PORT)) $(if $(S3_PORT),--s3-port $(S3_PORT)) $(if $(DATA),--data $(DATA)) $(if $(VERBOSE),--verbose)

lint: $(STAMP)  ## ruff (lint + format check) over the tree, mypy over layers/ and handlers/
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

test: lint  ## lint, then the test suite (pytest: tests/unit, integration, e2e, infra)
	$(PY) -m pytest $(PYTEST_ARGS)

clean:  ## remove the demo models and caches (keeps the venv)
	rm -rf .newsgen .pytest_cache

openapi: $(STAMP)  ## regenerate docs/openapi.json from the API routes
	$(PY) -c "from handlers.api import app; open('docs/openapi.json','w').write(app.get_openapi_json_schema() + '\n')"

# --- the GPU training job (training/pipeline.py; infra/training/: Dockerfile, template.yaml) -----------------
TRAIN_LOCAL_DIR ?= .newsgen/train-local
TRAIN_LOCAL_STEPS ?= 20
TRAIN_LOCAL_MAX_LENGTH ?= 128
TRAIN_STACK ?= newsgen-train
TRAIN_IMAGE ?=
TRAIN_DATA_URIS ?=
TRAIN_VPC ?=
TRAIN_SUBNET ?=
TRAIN_INSTANCE_TYPE ?= g5.xlarge
TRAIN_SPOT ?= false
TRAIN_BASE ?= distilgpt2
TRAIN_EPOCHS ?= 3
TRAIN_EXTRA_PARAMS ?=
TRAIN_DEPLOY = aws cloudformation deploy --template-file infra/training/template.yaml --stack-name $(TRAIN_STACK) \
  --capabilities CAPABILITY_IAM --no-fail-on-empty-changeset --parameter-overrides \
  ModelBucket=$(or $(MODEL_BUCKET),<bucket>) ModelPrefix=$(or $(MODEL_PREFIX),models) \
  DataUris=$(or $(TRAIN_DATA_URIS),<s3://data-bucket/news-1.csv$(,)...>) \
  TrainingImageUri=$(or $(TRAIN_IMAGE),<account>.dkr.ecr.<region>.amazonaws.com/newsgen-train:<tag>) \
  VpcId=$(or $(TRAIN_VPC),<vpc-id>) SubnetId=$(or $(TRAIN_SUBNET),<subnet-id>) \
  InstanceType=$(TRAIN_INSTANCE_TYPE) UseSpot=$(TRAIN_SPOT) Base=$(TRAIN_BASE) Epochs=$(TRAIN_EPOCHS) $(TRAIN_EXTRA_PARAMS)
, := ,

.PHONY: train-local train-remote

train-local: $(STAMP)  ## the GPU training job on CPU, tiny model: DATA=some.csv (publishes only with MODEL_BUCKET + AWS_ENDPOINT_URL)
	@if [ -z "$(DATA)" ]; then echo "error: train-local needs DATA=path/to/news.csv (an All-the-News CSV; or make one with $(PY) -m training demo-data --output .newsgen/demo.csv)" >&2; exit 2; fi
	@if [ -n "$(MODEL_BUCKET)" ] && [ -z "$(AWS_ENDPOINT_URL)" ]; then echo "note: train-local publishes only to a local S3; MODEL_BUCKET is ignored without AWS_ENDPOINT_URL (e.g. http://127.0.0.1:$(S3_PORT) while make run is up)" >&2; fi
	WORKDIR=$(TRAIN_LOCAL_DIR) DATA="$(DATA)" BASE=tiny MAX_STEPS=$(TRAIN_LOCAL_STEPS) \
	  EVAL_STEPS=10 SAVE_STEPS=10 LOGGING_STEPS=5 BATCH_SIZE=8 MAX_LENGTH=$(TRAIN_LOCAL_MAX_LENGTH) NPROC=1 HF_HUB_OFFLINE=1 \
	  MODEL_BUCKET="$(if $(AWS_ENDPOINT_URL),$(MODEL_BUCKET))" MODEL_PREFIX="$(or $(MODEL_PREFIX),models)" \
	  $(if $(AWS_ENDPOINT_URL),AWS_ACCESS_KEY_ID=$${AWS_ACCESS_KEY_ID:-local} AWS_SECRET_ACCESS_KEY=$${AWS_SECRET_ACCESS_KEY:-local} AWS_DEFAULT_REGION=$${AWS_DEFAULT_REGION:-us-east-1}) \
	  $(PY) -m training pipeline

train-remote:  ## print the `aws cloudformation deploy` that runs the GPU training job on EC2; CONFIRM=1 runs it
	@echo "# 1. the image: docker build -f infra/training/Dockerfile -t newsgen-train . ; push it to ECR (see infra/training/Dockerfile)"
	@echo "# 2. the job (one GPU instance that terminates itself; set MODEL_BUCKET TRAIN_IMAGE TRAIN_DATA_URIS TRAIN_VPC TRAIN_SUBNET,"
	@echo "#    optionally TRAIN_INSTANCE_TYPE TRAIN_SPOT=true TRAIN_BASE TRAIN_EPOCHS TRAIN_EXTRA_PARAMS='MaxSteps=500 ModelVersion=v7'):"
	@echo '$(TRAIN_DEPLOY)'
	@echo "# 3. follow it: aws logs tail /newsgen/training/$(TRAIN_STACK) --follow"
	@echo "#    afterwards: aws cloudformation delete-stack --stack-name $(TRAIN_STACK)   (before the next job)"
	@if [ "$(CONFIRM)" != 1 ]; then echo "# (printed only: add CONFIRM=1 to deploy it; that needs AWS credentials)"; exit 0; fi; \
	  case '$(TRAIN_DEPLOY)' in *'<'*) echo "error: set MODEL_BUCKET, TRAIN_IMAGE, TRAIN_DATA_URIS, TRAIN_VPC and TRAIN_SUBNET first (the <...> above)" >&2; exit 2;; esac; \
	  command -v aws >/dev/null || { echo "error: the aws CLI is not installed" >&2; exit 2; }; \
	  $(TRAIN_DEPLOY)

batch: $(STAMP)  ## drop FILE=prompts.jsonl|csv into the local S3 of the running `make run` and wait for its answer (exit 1 unless complete)
	@test -n "$(FILE)" || { echo "usage: make batch FILE=prompts.jsonl (one request per line: {id, task, prompt|headline, n, parameters})"; exit 2; }
	$(PY) -m infra.local.batch $(LOCAL_S3) submit $(FILE)

redrive: $(STAMP)  ## send the dead chunks of `make run`'s batch jobs back to the chunk queue (JOB=<id> for one job)
	$(PY) -m infra.local.batch $(LOCAL_S3) redrive $(if $(JOB),--job $(JOB))

# --- the real Lambda runtime path, without Docker: RIE + awslambdaric (infra/local/rie.py) -------------------
# The Lambda Runtime Interface Emulator comes in the aws-sam-cli wheel; the SAM CLI pins boto3, click and
# cfn-lint, so it lives in its own venv.
SAM_VENV ?= .venv-sam
SAM_CLI_VERSION ?= 1.170.0
SAM_STAMP := $(SAM_VENV)/.installed
EVENT ?= api-headlines
FUNCTION ?=

.PHONY: sam-venv invoke

$(SAM_STAMP):
	@command -v $(PYTHON) >/dev/null || { echo "error: $(PYTHON) not found; set PYTHON=python3.x (3.11 or newer)"; exit 2; }
	[ -x $(SAM_VENV)/bin/python ] || $(PYTHON) -m venv $(SAM_VENV)
	$(SAM_VENV)/bin/python -m pip install -q --disable-pip-version-check 'aws-sam-cli==$(SAM_CLI_VERSION)'
	touch $(SAM_STAMP)

sam-venv: $(SAM_STAMP)  ## the SAM CLI (and the Lambda Runtime Interface Emulator it ships) in .venv-sam

invoke: $(STAMP) $(SAM_STAMP)  ## EVENT=api-headlines|api-articles|api-news|api-models|api-health|s3-batch-in|sqs-batch-chunk (or a JSON file with FUNCTION=api|batch-dispatch|batch-worker|batch-dead-letters) under the Lambda RIE + awslambdaric, against a running `make run`
	$(PY) -m infra.local.rie --event $(EVENT) $(if $(FUNCTION),--function $(FUNCTION)) $(LOCAL_S3)

fuzz: $(STAMP)  ## fuzz the API from its OpenAPI spec with schemathesis (> 2,000 requests; make test runs fewer)
	FUZZ_EXAMPLES=500 $(PY) -m pytest -q -s -p no:cacheprovider tests/e2e/test_fuzz.py

sam-local: $(STAMP) $(SAM_STAMP)  ## sam build + sam local invoke + sam local start-api with Docker, offline (root; see infra/local/sam_local.py)
	SAM_VENV=$(SAM_VENV) $(PY) -m infra.local.sam_local

# --- after `sam deploy` ---------------------------------------------------------------------------------------
.PHONY: smoke
smoke:  ## every API route once, each answer's shape checked; one FAIL line per problem (URL=<ApiUrl output> KEY=<x-api-key>)
	@test -n "$(URL)" || { echo "usage: make smoke URL=https://<api-id>.execute-api.<region>.amazonaws.com/prod KEY=<api key> (or URL=http://127.0.0.1:3000 for make run)"; exit 2; }
	@NEWSGEN_API_KEY='$(KEY)' $(if $(wildcard $(PY)),$(PY),python3) -m infra.smoke '$(URL)'

bench: $(STAMP)  ## CPU serving benchmark, each engine in fresh processes, interleaved rounds (ARGS=--rounds/--reps/--shapes/--threads) → bench/results.json + README
	$(PY) -m pip install -q 'ctranslate2==4.8.5' || echo "ctranslate2 unavailable: the benchmark reports it as skipped"
	$(PY) -m bench.run $(ARGS)

.PHONY: bench-avx2
bench-avx2: $(STAMP)  ## make bench with every engine's kernels held to AVX2 on this CPU: does the lead need AVX-512? → bench/results-avx2.json + README
	$(MAKE) bench ARGS="--isa avx2 $(ARGS)"

.PHONY: bench-cold
bench-cold: $(STAMP)  ## cold start (fresh process → first token, int8 export in a local S3) against its floor, ≥5 rounds (FORWARD=transformers for the fallback) → bench/cold.json
	$(PY) -m bench.cold run $(if $(FORWARD),--forward $(FORWARD))

.PHONY: bench-gpu
bench-gpu: $(STAMP)  ## training (bf16, checkpoint, resume) and serving figures on a GPU, CPU fallback with tiny sizes (OUTPUT=) → bench/gpu.json
	$(PY) -m bench.gpu --output $(or $(OUTPUT),bench/gpu.json)

bench-memory: $(STAMP)  ## Lambda power tuning emulated with cgroups (root; EXPORT=int8 for int8 artifacts) → bench/power*.json
	$(PY) -m bench.power $(if $(EXPORT),--export $(EXPORT))

bench-batch: $(STAMP)  ## peak memory of batch dispatch and assembly for a 100 MB input (local S3/SQS) → bench/batch-memory.json
	$(PY) -m bench.batch_memory

.PHONY: bench-watermark
bench-watermark: $(STAMP)  ## watermark detection (TPR/FPR, edits), quality and speed cost, SynthID beside it (~15 min) → bench/watermark.json
	$(PY) -m bench.watermark

.PHONY: demo-models
demo-models: $(STAMP)  ## train the shipped demo models again from the demo corpus (minutes on 2 cores) → infra/local/demo-models/
	$(PY) -m infra.local.demo_models

.PHONY: bench-follow
bench-follow: $(STAMP)  ## does the demo article model follow its headline? 50 held-out headlines (after one `make run`) → bench/follow.json
	$(PY) -m bench.follow $(ARGS)

load: $(STAMP)  ## bounded load test on loopback against the local server (after one `make run`) → bench/load.json
	$(PY) -m bench.load
