"""Batch entry points.

- `dispatch_handler`: S3 ObjectCreated on batch/in/ → chunk objects + one SQS message per chunk. Needs no
  torch (a Zip function on the newsgen layer).
- `worker_handler`: SQS → powertools BatchProcessor; each message is one chunk. A failing message is reported
  in batchItemFailures, retried by SQS, and moved to the DLQ after the queue's maxReceiveCount.
"""

import os
import time
from urllib.parse import unquote_plus

import boto3
from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.data_classes import S3Event, SQSRecord, event_source
from aws_lambda_powertools.utilities.typing import LambdaContext

from newsgen import batch, s3
from newsgen.errors import NewsgenError

logger = Logger(service="newsgen-batch")
metrics = Metrics(namespace="newsgen", service="batch")
tracer = Tracer(service="newsgen-batch")
CHUNK_LINES = int(os.environ.get("BATCH_CHUNK_LINES", "50"))


@logger.inject_lambda_context(log_event=False)
@metrics.log_metrics
@event_source(data_class=S3Event)
def dispatch_handler(event: S3Event, context: LambdaContext) -> dict:
    queue_url = os.environ["BATCH_QUEUE_URL"]
    sqs = boto3.client("sqs")
    jobs = []
    for record in event.records:
        bucket, key = record.s3.bucket.name, unquote_plus(record.s3.get_object.key)
        try:
            job, messages = batch.plan_job(s3.client(), bucket, key, CHUNK_LINES)
        except NewsgenError as exc:  # a file that is no batch input: say so beside it, lose nothing
            logger.warning("not a batch job", extra={"key": key, "error": exc.message})
            continue
        for start in range(0, len(messages), 10):
            entries = [{"Id": str(m.chunk), "MessageBody": m.model_dump_json()} for m in messages[start : start + 10]]
            failed = sqs.send_message_batch(QueueUrl=queue_url, Entries=entries).get("Failed", [])
            if failed:
                raise RuntimeError(f"SQS refused {len(failed)} chunk messages of {job['job']}: {failed[0]}")
        metrics.add_metric(name="batch_lines", unit=MetricUnit.Count, value=job["lines"])
        logger.info("dispatched", extra={"job": job["job"], "lines": job["lines"], "chunks": job["chunks"]})
        jobs.append({"job": job["job"], "lines": job["lines"], "chunks": job["chunks"]})
    return {"jobs": jobs}


_service = None


def service():
    """The news service, created on first use (the worker's init phase when PRELOAD_MODELS=true)."""
    global _service
    if _service is None:
        from newsgen.service import NewsService
        from newsgen.settings import load_settings

        _service = NewsService(load_settings())
    return _service


processor = BatchProcessor(event_type=EventType.SQS)


@tracer.capture_method
def process_message(record: SQSRecord, lambda_context: LambdaContext | None = None) -> None:
    message = batch.ChunkMessage.model_validate_json(record.body)  # a poison message fails here, every time
    remaining = lambda_context.get_remaining_time_in_millis() / 1000 if lambda_context else 600.0
    deadline = time.monotonic() + remaining - 5  # leave time to write the chunk's output
    started = time.perf_counter()
    summary = batch.process_chunk(s3.client(), service(), message, deadline)
    metrics.add_metric(name="batch_chunk_seconds", unit=MetricUnit.Seconds, value=time.perf_counter() - started)
    if summary:
        logger.info("job complete", extra={k: summary[k] for k in ("job", "lines", "results", "errors")})


@logger.inject_lambda_context(log_event=False)
@tracer.capture_lambda_handler(capture_response=False)
@metrics.log_metrics(capture_cold_start_metric=True)
def worker_handler(event: dict, context: LambdaContext) -> dict:
    return process_partial_response(event=event, record_handler=process_message, processor=processor, context=context)


if os.environ.get("PRELOAD_MODELS", "").lower() == "true":  # set on the worker function only
    service().preload_at_init()
