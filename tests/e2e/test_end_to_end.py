"""The whole thread in one test: prepare the real sample → train a tiny headline model → publish to S3 over
HTTP → the API handler answers an API Gateway event with a generated headline."""

import json
import time

from infra.local.harness import LambdaContext, api_event
from training.cli import main as training


def test_prepare_train_publish_serve(sample_csv, tmp_path, s3, bucket, service_for, monkeypatch, capsys):
    started = time.perf_counter()
    training(["prepare", "--input", str(sample_csv), "--output", str(tmp_path / "data")])
    training(
        [
            "train",
            "--task",
            "headline",
            "--data",
            str(tmp_path / "data"),
            "--output",
            str(tmp_path / "model"),
            "--max-steps",
            "12",
            "--eval-steps",
            "6",
            "--save-steps",
            "6",
            "--batch-size",
            "8",
            "--max-length",
            "48",
        ]
    )
    training(
        ["publish", "--model", str(tmp_path / "model"), "--bucket", bucket, "--prefix", "models", "--task", "headline"]
    )
    version = s3.get_object(Bucket=bucket, Key="models/headline/LATEST")["Body"].read().decode()

    from handlers import api

    monkeypatch.setattr(api, "service", service_for(bucket))
    response = api.lambda_handler(
        api_event("POST", "/v1/headlines", {"n": 2, "parameters": {"max_new_tokens": 12}}), LambdaContext()
    )
    body = json.loads(response["body"])
    assert response["statusCode"] == 200, body
    assert len(body["results"]) == 2 and all(r["generated_tokens"] >= 1 for r in body["results"])
    assert body["model"] == [{"task": "headline", "version": version}]
    assert time.perf_counter() - started < 60
