"""Batch entry points.

- `dispatch_handler`: S3 ObjectCreated on batch/in/ → a job per upload, one SQS message per chunk. Needs no
  torch (a Zip function on the newsgen layer). An upload that cannot be a job gets a `failed` summary.
- `worker_handler`: SQS → powertools BatchProcessor, one chunk per message (the event source's BatchSize is
  1, so each chunk has the whole timeout). A failing chunk is reported in batchItemFailures, retried by SQS,
  and moved to the dead-letter queue after the queue's maxReceiveCount.
- `dead_letter_handler`: the dead-letter queue → each dead chunk's lines answered as errors, the job assembled
  (`partial`, or `failed` when no line has a result), the message kept in S3 for redrive.
"""

import functools
import time
from typing import TYPE_CHECKING
from urllib.parse import unquote_plus

import boto3
from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.batch.types import PartialItemFailureResponse
from aws_lambda_powertools.utilities.data_classes import S3Event, SQSRecord, event_source
from aws_lambda_powertools.utilities.data_classes.s3_event import S3EventRecord
from aws_lambda_powertools.utilities.typing import LambdaContext

from newsgen import batch, s3
from newsgen.settings import load_settings

if TYPE_CHECKING:
    from newsgen.service import NewsService

settings = load_settings()
logger = Logger(service="newsgen-batch")
metrics = Metrics(namespace="newsgen", service="batch")
tracer = Tracer(service="newsgen-batch")


def send(messages: list[batch.ChunkMessage]) -> None:
    batch.send_chunks(boto3.client("sqs"), settings.batch_queue_url, messages)


def upload_of(record: S3EventRecord) -> batch.Upload:
    obj = record.s3.get_object
    return batch.Upload(
        bucket=record.s3.bucket.name,
        key=unquote_plus(obj.key),
        etag=(obj.etag or "").strip('"') or None,
        version_id=obj.version_id or None,
        sequencer=obj.sequencer or None,
        size=obj.size,
    )


@logger.inject_lambda_context(log_event=False)
@metrics.log_metrics
@event_source(data_class=S3Event)
def dispatch_handler(event: S3Event, context: LambdaContext) -> dict:
    jobs = []
    for record in event.records:
        upload = upload_of(record)
        if upload.key.endswith("/"):  # a "folder" made in the console
            continue
        try:
            summary = batch.dispatch(
                s3.client(),
                upload,
                send,
                chunk_lines=settings.batch_chunk_lines,
                chunk_tokens=settings.batch_chunk_tokens,
            )
        except Exception:
            # Say so beside the input, then fail the invocation: Lambda retries it, then sends it to the
            # on-failure destination. A retry that succeeds replaces this summary.
            logger.exception("dispatch failed", extra={"key": upload.key})
            batch.fail(
                s3.client(),
                upload,
                "internal_error",
                "the job could not be dispatched; it is retried "
                "automatically, and the operators were notified if retries fail",
            )
            raise
        if summary is None:
            continue
        metrics.add_metric(name=f"batch_jobs_{summary['status']}", unit=MetricUnit.Count, value=1)
        logger.info("dispatched", extra={k: summary.get(k) for k in ("job", "status", "lines", "chunks", "reason")})
        jobs.append({k: summary.get(k) for k in ("job", "status", "lines", "chunks")})
    return {"jobs": jobs}


@functools.cache
def service() -> "NewsService":
    """The worker's news service, created as the API's is: in the init phase when PRELOAD_MODELS=true (set on
    the worker only), else on first use. Imported here: the dispatcher and the recorder run without torch (a
    Zip function whose code is this folder, without the handlers package)."""
    from handlers.runtime import create_service

    return create_service(settings)


processor = BatchProcessor(event_type=EventType.SQS)


@tracer.capture_method(capture_response=False, capture_error=False)
def process_message(record: SQSRecord, lambda_context: LambdaContext | None = None) -> None:
    message = batch.ChunkMessage.model_validate_json(record.body)  # a poison message fails here, every time
    remaining = lambda_context.get_remaining_time_in_millis() / 1000 if lambda_context else 900.0
    deadline = time.monotonic() + remaining - settings.batch_worker_margin_s
    started = time.perf_counter()
    try:
        summary = batch.process_chunk(s3.client(), service(), message, deadline)
    except Exception as exc:
        batch.note_attempt(s3.client(), message, exc, int(record.attributes.approximate_receive_count or 1))
        metrics.add_metric(name="batch_chunk_failures", unit=MetricUnit.Count, value=1)
        raise
    metrics.add_metric(name="batch_chunk_seconds", unit=MetricUnit.Seconds, value=time.perf_counter() - started)
    if summary:
        logger.info("job finished", extra={k: summary[k] for k in ("job", "status", "lines", "results", "errors")})


@logger.inject_lambda_context(log_event=False)
@tracer.capture_lambda_handler(capture_response=False, capture_error=False)
@metrics.log_metrics(capture_cold_start_metric=True)
def worker_handler(event: dict, context: LambdaContext) -> PartialItemFailureResponse:
    return process_partial_response(event=event, record_handler=process_message, processor=processor, context=context)


dead_letters = BatchProcessor(event_type=EventType.SQS)


def record_dead_letter(record: SQSRecord) -> None:
    summary = batch.record_dead_letter(s3.client(), record.body, record.message_id, settings.results_bucket)
    metrics.add_metric(name="batch_chunks_dead", unit=MetricUnit.Count, value=1)
    logger.error(
        "chunk moved to the dead-letter queue",
        extra={"message_id": record.message_id, "status": summary and summary["status"]},
    )


@logger.inject_lambda_context(log_event=False)
@metrics.log_metrics
def dead_letter_handler(event: dict, context: LambdaContext) -> PartialItemFailureResponse:
    return process_partial_response(
        event=event, record_handler=record_dead_letter, processor=dead_letters, context=context
    )


if settings.preload_models:  # set on the worker function only
    service()
