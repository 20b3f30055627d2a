"""Local stand-ins for Lambda's event sources, so the batch functions run here as they do in AWS:

- S3Trigger: new objects under batch/in/ → the dispatcher, with an S3 ObjectCreated event;
- SqsTrigger: a queue → a function, with SQS events of up to `batch_size` records (1 for the worker, as in
  the template); messages the function reports in batchItemFailures stay on the queue, reappear after the
  visibility timeout, and SQS's redrive policy moves them to the DLQ after maxReceiveCount, as the real
  event source mapping does. The DLQ has its own trigger (the dead-letter recorder).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable

from infra.local.harness import LambdaContext, s3_event, sqs_event


def create_queues(sqs, name: str, *, max_receive_count: int = 3, visibility_timeout: int = 30) -> tuple[str, str]:
    """The chunk queue and its dead-letter queue; returns (queue_url, dlq_url)."""
    dlq_url = sqs.create_queue(QueueName=f"{name}-dlq")["QueueUrl"]
    dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    queue_url = sqs.create_queue(
        QueueName=name,
        Attributes={
            "VisibilityTimeout": str(visibility_timeout),
            "RedrivePolicy": json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": str(max_receive_count)}),
        },
    )["QueueUrl"]
    return queue_url, dlq_url


class S3Trigger:
    def __init__(self, s3, bucket: str, handler: Callable, prefix: str = "batch/in/"):
        self.s3, self.bucket, self.handler, self.prefix = s3, bucket, handler, prefix
        self.seen: set[tuple] = set()

    def poll_once(self) -> int:
        """Fire once per upload (a re-upload of the same bytes is a new upload, as S3 notifies it)."""
        fired = 0
        for page in self.s3.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=self.prefix):
            for obj in page.get("Contents", []):
                upload = (obj["Key"], obj["ETag"], obj["LastModified"])
                if upload in self.seen:
                    continue
                self.seen.add(upload)
                self.handler(
                    s3_event(self.bucket, obj["Key"], obj["Size"], obj["ETag"]),
                    LambdaContext.of("batch-dispatch"),
                )
                fired += 1
        return fired


class SqsTrigger:
    def __init__(
        self,
        sqs,
        queue_url: str,
        handler: Callable,
        *,
        batch_size: int = 1,
        function: str = "batch-worker",
    ):
        self.sqs, self.queue_url, self.handler = sqs, queue_url, handler
        self.batch_size, self.function = batch_size, function
        self.queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"][
            "QueueArn"
        ]

    def poll_once(self, wait_s: int = 0) -> int:
        """Deliver one batch of messages to the worker; returns how many were received."""
        messages = self.sqs.receive_message(
            QueueUrl=self.queue_url,
            MaxNumberOfMessages=self.batch_size,
            WaitTimeSeconds=wait_s,
            AttributeNames=["All"],
        ).get("Messages", [])
        if not messages:
            return 0
        context = LambdaContext.of(self.function)
        try:
            response = self.handler(sqs_event(messages, self.queue_arn), context)
            failed = {f["itemIdentifier"] for f in (response or {}).get("batchItemFailures", [])}
        except Exception as exc:  # the whole invocation failed: every message returns to the queue
            print(f"worker invocation failed: {type(exc).__name__}: {exc}", flush=True)
            failed = {m["MessageId"] for m in messages}
        done = [m for m in messages if m["MessageId"] not in failed]
        if done:
            self.sqs.delete_message_batch(
                QueueUrl=self.queue_url,
                Entries=[{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(done)],
            )
        return len(messages)


class Pollers:
    """Runs triggers on a background thread until stopped."""

    def __init__(self, s3_trigger: S3Trigger, *sqs_triggers: SqsTrigger, interval_s: float = 1.0):
        self.s3_trigger, self.sqs_triggers, self.interval_s = s3_trigger, sqs_triggers, interval_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="newsgen-local-triggers", daemon=True)

    def start(self) -> Pollers:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=30)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                busy = self.s3_trigger.poll_once() + sum(t.poll_once() for t in self.sqs_triggers)
            except Exception as exc:  # keep the local service up; the error is printed
                print(f"local trigger error: {type(exc).__name__}: {exc}", flush=True)
                busy = 0
            if not busy:
                self._stop.wait(self.interval_s)
