"""Models baked into the image: `python -m training mirror` copies published versions into a directory laid out
like the bucket, and the service reads it through the same store (MODEL_BUCKET=file:///…), offline."""

import json
import os
import subprocess

import pytest
from conftest import training_cli

from newsgen import s3 as s3_module
from newsgen.errors import ModelUnavailable
from newsgen.schemas import ArticleRequest, PromptRequest
from training.mirror import mirror


@pytest.fixture
def mirrored(published, s3, tmp_path):
    dest = tmp_path / "baked"
    versions = mirror(s3, bucket=published["bucket"], prefix="models", dest=dest)
    return dest, versions


def test_mirror_copies_latest_in_the_bucket_layout(mirrored, published):
    dest, versions = mirrored
    assert versions == {"headline": published["versions"]["headline"], "article": published["versions"]["article"]}
    for task, version in versions.items():
        assert (dest / f"models/{task}/LATEST").read_text() == version
        manifest = json.loads((dest / f"models/{task}/{version}/manifest.json").read_text())
        assert manifest["task"] == task and manifest["version"] == version
        assert {f["path"] for f in manifest["files"]} <= {p.name for p in (dest / f"models/{task}/{version}").iterdir()}


def test_service_reads_a_mirror_without_s3(mirrored, service_for, monkeypatch):
    dest, versions = mirrored
    # No S3 anywhere: an endpoint nothing listens on, and boto3 must not even be asked.
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
    monkeypatch.setattr(s3_module, "client", lambda *a, **k: pytest.fail("the mirror must not touch S3"))
    service = service_for(f"file://{dest}")
    headline = service.headlines(PromptRequest(n=1, parameters={"max_new_tokens": 6, "do_sample": False}))
    article = service.articles(
        ArticleRequest(headline="Harbor town votes on a new ferry", parameters={"max_new_tokens": 6})
    )
    assert headline.results[0].generated_tokens >= 1 and article.results[0].generated_tokens >= 1
    assert headline.model[0].version == versions["headline"]


def test_a_tampered_mirror_is_refused_like_a_tampered_bucket(mirrored, service_for):
    dest, versions = mirrored
    weights = dest / f"models/headline/{versions['headline']}/model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF
    weights.write_bytes(bytes(data))
    with pytest.raises(ModelUnavailable, match="sha256"):
        service_for(f"file://{dest}").headlines(PromptRequest())


def test_a_missing_mirror_is_a_clear_unavailable(tmp_path, service_for):
    with pytest.raises(ModelUnavailable, match="no headline model is published"):
        service_for(f"file://{tmp_path / 'nothing-here'}").headlines(PromptRequest())


def test_local_bucket_refuses_keys_outside_it(tmp_path):
    (tmp_path / "secret").write_text("x")
    bucket = s3_module.LocalBucket(tmp_path / "root")
    with pytest.raises(bucket.exceptions.NoSuchKey):
        bucket.get_object(Bucket="ignored", Key="../secret")


def test_mirror_cli(published, s3_endpoint, tmp_path):
    def mirror(output: str, headline_version: str) -> subprocess.CompletedProcess:
        command = ["mirror", "--bucket", published["bucket"], "--output", str(tmp_path / output)]
        env = {**os.environ, "AWS_ENDPOINT_URL": s3_endpoint}
        return training_cli(*command, "--headline-version", headline_version, env=env)

    out = mirror("baked", published["versions"]["headline"])
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["versions"]["headline"] == published["versions"]["headline"]
    missing = mirror("b2", "no-such-version")
    assert missing.returncode == 2 and "headline version no-such-version is not published" in missing.stderr
    assert "Traceback" not in missing.stderr
