"""The artifact contract and the model store, against a real S3 API (moto server over HTTP)."""

import json
import shutil

import pytest

from newsgen import artifacts
from newsgen.errors import ModelUnavailable, UnsafeArtifact, UnsupportedArtifact, VersionExists
from newsgen.store import ModelStore
from training.publish import publish_model


def make_store(s3, bucket, tmp_path, **kwargs):
    return ModelStore(s3=s3, bucket=bucket, prefix="models", cache_dir=tmp_path / "cache", **kwargs)


def read(s3, bucket, key):
    return s3.get_object(Bucket=bucket, Key=key)["Body"].read()


def test_publish_writes_layout_manifest_and_latest(s3, bucket, headline_model):
    manifest = publish_model(
        headline_model, bucket=bucket, prefix="models", task="headline", version="v1", progress=False
    )
    keys = {o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"]}
    assert "models/headline/LATEST" in keys
    assert read(s3, bucket, "models/headline/LATEST") == b"v1"
    stored = artifacts.parse_manifest(read(s3, bucket, "models/headline/v1/manifest.json"))
    assert stored == manifest
    names = {f.path for f in stored.files}
    assert {"config.json", "model.safetensors", "tokenizer.json", "generation_config.json", "README.md"} <= names
    assert not any(n.startswith("checkpoints/") or n.endswith(".bin") or n == "loss.png" for n in names)
    assert {f"models/headline/v1/{n}" for n in names} | {
        "models/headline/v1/manifest.json",
        "models/headline/v1/claim.json",
        "models/headline/LATEST",
    } == keys
    claim = json.loads(read(s3, bucket, "models/headline/v1/claim.json"))
    assert claim["files_sha256"] == artifacts.files_fingerprint(stored)
    assert stored.format_version == artifacts.FORMAT_VERSION and stored.task == "headline"
    assert stored.special_tokens["eos_token"] == "<|EOS|>"
    assert stored.metrics["val_perplexity"] > 1 and stored.data_fingerprint
    for entry in stored.files:
        assert entry.sha256 == artifacts.sha256_file(headline_model / entry.path)
    with pytest.raises(VersionExists):
        publish_model(headline_model, bucket=bucket, prefix="models", task="headline", version="v1", progress=False)


def test_store_downloads_verifies_loads_and_caches(s3, bucket, headline_model, tmp_path):
    publish_model(headline_model, bucket=bucket, prefix="models", task="headline", version="v1", progress=False)
    store = make_store(s3, bucket, tmp_path)
    loaded = store.get("headline")
    assert loaded.version == "v1"
    assert loaded.tokenizer.padding_side == "left"
    assert loaded.model.config.vocab_size == 50260
    assert store.get("headline") is loaded  # warm: no second download
    assert store.get("headline", "v1") is loaded


def test_sha256_mismatch_is_refused(s3, bucket, headline_model, tmp_path):
    publish_model(headline_model, bucket=bucket, prefix="models", task="headline", version="v1", progress=False)
    key = "models/headline/v1/config.json"
    s3.put_object(Bucket=bucket, Key=key, Body=read(s3, bucket, key).replace(b"gpt2", b"gpt3"))
    store = make_store(s3, bucket, tmp_path)
    with pytest.raises(ModelUnavailable, match="config.json has .* sha256 .* refusing") as info:
        store.get("headline")
    assert info.value.details["cause"] == "checksum_mismatch"
    assert not (tmp_path / "cache" / "headline" / "v1").exists()  # nothing unverified stays in the cache


def publish_dropped_midway(s3, model, bucket: str, monkeypatch) -> None:
    """Publish v2 over a network that drops on the third upload."""
    real_upload = s3.upload_file
    calls = []

    def failing_upload(filename, bucket_name, key, **kwargs):
        calls.append(key)
        if len(calls) == 3:
            raise ConnectionError("network dropped mid-publish")
        return real_upload(filename, bucket_name, key, **kwargs)

    monkeypatch.setattr(s3, "upload_file", failing_upload)
    with pytest.raises(ConnectionError):
        publish_model(model, bucket=bucket, prefix="models", task="headline", version="v2", progress=False)


def test_latest_moves_only_after_a_complete_upload(s3, bucket, headline_model, monkeypatch):
    publish_model(headline_model, bucket=bucket, prefix="models", task="headline", version="v1", progress=False)
    publish_dropped_midway(s3, headline_model, bucket, monkeypatch)
    assert read(s3, bucket, "models/headline/LATEST") == b"v1"
    assert not artifacts.object_exists(s3, bucket, "models/headline/v2/manifest.json")
    # A reader following LATEST still gets the complete v1.
    manifest = artifacts.read_manifest(s3, bucket=bucket, prefix="models", task="headline", version="v1")
    assert manifest.version == "v1"


def snapshot(s3, bucket) -> dict:
    return {o["Key"]: read(s3, bucket, o["Key"]) for o in s3.list_objects_v2(Bucket=bucket)["Contents"]}


def test_racing_publishers_of_one_version_cannot_both_succeed(s3, bucket, headline_model, tmp_path, monkeypatch):
    """Both check that v1 is not published before either has written its manifest; the conditional write of
    the manifest lets only one of them publish it. (Two machines with the same files: two copies.)"""
    import threading

    both_checked = threading.Barrier(2, timeout=30)
    real_exists = artifacts.object_exists
    checked = set()

    def raced_check(client, bucket_name, key):
        found = real_exists(client, bucket_name, key)
        if key.endswith(artifacts.MANIFEST_NAME) and threading.get_ident() not in checked:
            checked.add(threading.get_ident())
            both_checked.wait()  # neither goes on before the other has looked
        return found

    monkeypatch.setattr(artifacts, "object_exists", raced_check)
    outcomes = []

    def publish(model_dir):
        try:
            outcomes.append(
                publish_model(model_dir, bucket=bucket, prefix="models", task="headline", version="v1", progress=False)
            )
        except Exception as exc:
            outcomes.append(exc)

    copies = [
        shutil.copytree(headline_model, tmp_path / f"copy{i}", ignore=shutil.ignore_patterns("checkpoints"))
        for i in range(2)
    ]
    threads = [threading.Thread(target=publish, args=(copy,)) for copy in copies]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    errors = [o for o in outcomes if isinstance(o, Exception)]
    assert len(outcomes) == 2 and len(errors) == 1, outcomes
    assert isinstance(errors[0], VersionExists) and errors[0].status_code == 409
    assert read(s3, bucket, "models/headline/LATEST") == b"v1"
    assert make_store(s3, bucket, tmp_path).get("headline", "v1").version == "v1"  # whole and verified


def test_a_publisher_of_other_files_never_overwrites_a_version(s3, bucket, headline_model, tmp_path, monkeypatch):
    """The second publisher's existence check ran before the first's manifest landed (simulated: it sees none),
    and it has other files: it is refused before it overwrites any of the first one's."""
    publish_model(headline_model, bucket=bucket, prefix="models", task="headline", version="v1", progress=False)
    before = snapshot(s3, bucket)
    other = tmp_path / "other"
    shutil.copytree(headline_model, other, ignore=shutil.ignore_patterns("checkpoints"))
    config = json.loads((other / "generation_config.json").read_text())
    (other / "generation_config.json").write_text(json.dumps({**config, "temperature": 0.5}))
    monkeypatch.setattr(artifacts, "object_exists", lambda *args: False)
    with pytest.raises(VersionExists, match="claimed by a publish of other files") as info:
        publish_model(other, bucket=bucket, prefix="models", task="headline", version="v1", progress=False)
    assert info.value.status_code == 409
    assert snapshot(s3, bucket) == before  # not one byte overwritten
    monkeypatch.undo()
    assert make_store(s3, bucket, tmp_path).get("headline", "v1").version == "v1"


def test_an_interrupted_publish_can_be_run_again(s3, bucket, headline_model, tmp_path, monkeypatch):
    """Its claim is its own (the same files): the publish goes on where the first attempt stopped."""
    publish_dropped_midway(s3, headline_model, bucket, monkeypatch)
    monkeypatch.undo()
    publish_model(headline_model, bucket=bucket, prefix="models", task="headline", version="v2", progress=False)
    assert read(s3, bucket, "models/headline/LATEST") == b"v2"
    assert make_store(s3, bucket, tmp_path).get("headline").version == "v2"


def test_publish_refuses_pickle_weights(headline_model, tmp_path, s3, bucket):
    unsafe = tmp_path / "unsafe"
    shutil.copytree(headline_model, unsafe, ignore=shutil.ignore_patterns("checkpoints"))
    (unsafe / "pytorch_model.bin").write_bytes(b"pickle")
    with pytest.raises(UnsafeArtifact, match="pickle"):
        publish_model(unsafe, bucket=bucket, prefix="models", task="headline", version="v1", progress=False)


def test_manifest_of_unknown_format_or_unsafe_paths_is_refused():
    good = {
        "format_version": 1,
        "task": "headline",
        "version": "v1",
        "base_model": "tiny",
        "special_tokens": {},
        "files": [{"path": "model.safetensors", "size": 1, "sha256": "0" * 64}],
        "created_at": "now",
    }
    assert artifacts.parse_manifest(json.dumps(good)).version == "v1"
    with pytest.raises(UnsupportedArtifact, match="format_version 2 is not supported"):
        artifacts.parse_manifest(json.dumps({**good, "format_version": 2}))
    with pytest.raises(UnsafeArtifact):
        artifacts.parse_manifest(
            json.dumps({**good, "files": [{"path": "../etc/passwd", "size": 1, "sha256": "0" * 64}]})
        )
    with pytest.raises(UnsafeArtifact):
        artifacts.parse_manifest(
            json.dumps({**good, "files": [{"path": "pytorch_model.bin", "size": 1, "sha256": "0" * 64}]})
        )
    with pytest.raises(UnsupportedArtifact, match="not valid JSON"):
        artifacts.parse_manifest(b"{nope")
    assert artifacts.parse_manifest(json.dumps(good)).prompt_format == 1  # written before format 2 existed
    assert artifacts.parse_manifest(json.dumps({**good, "prompt_format": 2})).prompt_format == 2
    with pytest.raises(UnsupportedArtifact, match="prompt_format 3 is not one this build speaks"):
        artifacts.parse_manifest(json.dumps({**good, "prompt_format": 3}))


def test_a_model_is_served_in_the_prompt_format_it_was_trained_in(
    s3, bucket, headline_model, tmp_path, service_for, monkeypatch
):
    """Training writes the format into config.json, publish into the manifest; a model from before (no format
    in its config) is format 1 and gets format-1 prompts; a format this build does not know is refused."""
    from newsgen import generation
    from newsgen.schemas import PromptRequest

    assert json.loads((headline_model / "config.json").read_text())["prompt_format"] == 2
    old = tmp_path / "old"
    shutil.copytree(headline_model, old)
    config = json.loads((old / "config.json").read_text())
    del config["prompt_format"]
    (old / "config.json").write_text(json.dumps(config))
    for version, path in (("v1", headline_model), ("v2", old)):
        manifest = publish_model(path, bucket=bucket, prefix="models", task="headline", version=version, progress=False)
        assert manifest.prompt_format == (2 if path == headline_model else 1)
    prompts = []
    generate = generation.generate
    monkeypatch.setattr(
        generation, "generate", lambda loaded, texts, **kw: prompts.append(texts) or generate(loaded, texts, **kw)
    )
    for version in ("v1", "v2"):
        service = service_for(bucket, headline_model_version=version)
        service.headlines(PromptRequest(prompt="Senate", n=1))
    assert prompts == [["<|endoftext|> Senate"], ["<|endoftext|>Senate"]]
    config["prompt_format"] = 3
    (old / "config.json").write_text(json.dumps(config))
    with pytest.raises(UnsupportedArtifact, match="prompt_format 3 is not one this build speaks"):
        publish_model(old, bucket=bucket, prefix="models", task="headline", version="v3", progress=False)


def test_missing_model_or_dangling_latest_is_a_clear_503(s3, bucket, tmp_path, headline_model):
    store = make_store(s3, bucket, tmp_path)
    with pytest.raises(ModelUnavailable, match="no headline model is published"):
        store.get("headline")
    s3.put_object(Bucket=bucket, Key="models/headline/LATEST", Body=b"v9")
    with pytest.raises(ModelUnavailable, match="v9 is not published"):
        store.get("headline")
    publish_model(headline_model, bucket=bucket, prefix="models", task="headline", version="v1", progress=False)
    s3.delete_object(Bucket=bucket, Key="models/headline/v1/tokenizer.json")
    with pytest.raises(ModelUnavailable, match="tokenizer.json is listed in the manifest but missing"):
        store.get("headline")


def test_broken_new_version_does_not_replace_a_loaded_one(s3, bucket, headline_model, tmp_path):
    publish_model(headline_model, bucket=bucket, prefix="models", task="headline", version="v1", progress=False)
    store = make_store(s3, bucket, tmp_path, latest_ttl_seconds=0)
    assert store.get("headline").version == "v1"
    publish_model(headline_model, bucket=bucket, prefix="models", task="headline", version="v2", progress=False)
    s3.put_object(Bucket=bucket, Key="models/headline/v2/model.safetensors", Body=b"truncated")
    assert store.get("headline").version == "v1"  # v2 fails verification; v1 keeps serving
    publish_model(headline_model, bucket=bucket, prefix="models", task="headline", version="v3", progress=False)
    assert store.get("headline").version == "v3"  # a good version replaces it
    assert not (tmp_path / "cache" / "headline" / "v1").exists()


def test_set_latest_rolls_back_only_to_published_versions(s3, bucket, headline_model):
    for version in ("v1", "v2"):
        publish_model(headline_model, bucket=bucket, prefix="models", task="headline", version=version, progress=False)
    artifacts.set_latest(s3, bucket=bucket, prefix="models", task="headline", version="v1")
    assert artifacts.read_latest(s3, bucket=bucket, prefix="models", task="headline") == "v1"
    with pytest.raises(artifacts.ArtifactNotFound):
        artifacts.set_latest(s3, bucket=bucket, prefix="models", task="headline", version="v7")


def test_two_stores_sharing_a_cache_download_the_same_version_at_once(
    s3, bucket, headline_model, tmp_path, monkeypatch
):
    """Two processes (or an init thread and a request) fetching one version into one cache: both serve it."""
    import threading

    publish_model(headline_model, bucket=bucket, prefix="models", task="headline", version="v1", progress=False)
    both_fetching = threading.Barrier(2, timeout=30)
    original = ModelStore._fetch_file

    def fetch_in_step(self, key, target, entry, manifest, attempts=3):
        if entry.path == "config.json":
            both_fetching.wait()  # neither renames before the other has started downloading
        return original(self, key, target, entry, manifest, attempts)

    monkeypatch.setattr(ModelStore, "_fetch_file", fetch_in_step)
    results, errors = [], []

    def load():
        try:
            results.append(make_store(s3, bucket, tmp_path).get("headline", "v1"))
        except Exception as exc:
            errors.append(exc)

    threads = [threading.Thread(target=load) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not errors, errors
    assert [r.path for r in results] == [tmp_path / "cache/headline/v1"] * 2
    assert sorted(p.name for p in (tmp_path / "cache/headline").iterdir()) == ["v1"]  # no partial left behind


@pytest.mark.parametrize("forward", ["newsgen", "transformers"])
def test_int8_export_publishes_and_serves_like_quantising_at_load(
    forward, s3, bucket, headline_model, tmp_path, monkeypatch
):
    """(Its size and load time against fp32 are measured by `make bench`: the tiny test model is mostly its
    tied embedding, which stays fp32.) newsgen.gpt2 quantises an fp32 export while loading it; transformers'
    model goes through newsgen.optimize.optimize_for_cpu after loading."""
    from newsgen import generation, gpt2, prompt
    from newsgen import store as store_module
    from newsgen.schemas import GenerationParameters

    publish_model(headline_model, bucket=bucket, prefix="models", task="headline", version="fp32", progress=False)
    manifest = publish_model(
        headline_model, bucket=bucket, prefix="models", task="headline", version="int8", export="int8", progress=False
    )
    names = {f.path for f in manifest.files}
    assert manifest.export == "int8" and artifacts.INT8_WEIGHTS in names and "model.safetensors" not in names
    assert {"config.json", "tokenizer.json", "generation_config.json", "README.md"} <= names
    quantized = []
    real_optimize, real_quantize = store_module.optimize_for_cpu, gpt2.quantize_int8
    monkeypatch.setattr(
        store_module, "optimize_for_cpu", lambda model, mode: quantized.append(mode) or real_optimize(model, mode)
    )
    monkeypatch.setattr(
        gpt2, "quantize_int8", lambda tensors, config: quantized.append("gpt2") or real_quantize(tensors, config)
    )
    store = make_store(s3, bucket, tmp_path, forward=forward)
    exported = store.get("headline", "int8")
    assert quantized == []  # loaded as published: no quantisation pass
    quantized_at_load = store.get("headline", "fp32")
    assert quantized == (["gpt2"] if forward == "newsgen" else ["int8"])
    assert store_module.is_transformers_model(exported.model) == (forward == "transformers")
    params = GenerationParameters(max_new_tokens=12, do_sample=False)
    texts = [
        generation.generate(m, [prompt.headline_prompt("City")] * 2, params=params).results
        for m in (exported, quantized_at_load)
    ]
    assert [[r.text for r in rows] for rows in texts[0]] == [[r.text for r in rows] for rows in texts[1]]


def test_both_forwards_serve_the_same_texts(s3, bucket, headline_model, tmp_path):
    """The transformers fallback (SERVING_FORWARD=transformers) still serves, and as newsgen's forward does:
    greedy, seeded sampling with the tuned defaults, stop strings and beam search (transformers' generate()
    on a model loaded for it once, on the first beam request)."""
    from newsgen import generation, prompt
    from newsgen.schemas import GenerationParameters

    publish_model(headline_model, bucket=bucket, prefix="models", task="headline", version="v1", progress=False)
    stores = {f: make_store(s3, bucket, tmp_path / f, forward=f) for f in ("newsgen", "transformers")}
    loaded = {f: store.get("headline") for f, store in stores.items()}
    assert type(loaded["newsgen"].tokenizer).__module__ == "newsgen.tokenizer"
    assert type(loaded["transformers"].tokenizer).__module__.startswith("transformers.")
    prompts = [prompt.headline_prompt(p) for p in ("City", "Harbor ferry", "")]
    cases = [
        (1, GenerationParameters(max_new_tokens=10, do_sample=False, details=True)),
        (2, GenerationParameters(max_new_tokens=10, seed=11, details=True)),
        (1, GenerationParameters(max_new_tokens=10, seed=3, stop=[" the", "e"])),
        (2, GenerationParameters(max_new_tokens=6, num_beams=2, do_sample=False, stop=["e"], details=True)),
    ]
    for n, params in cases:
        outs = [generation.generate(loaded[f], prompts, n=n, params=params) for f in stores]
        rows = [[r for prompt_rows in out.results for r in prompt_rows] for out in outs]
        assert [(r.text, r.finish_reason) for r in rows[0]] == [(r.text, r.finish_reason) for r in rows[1]], params
        if params.details:
            ours, theirs = ([t.logprob for r in rs for t in r.tokens] for rs in rows)
            assert ours == pytest.approx(theirs, abs=1e-3), params
    beam_model, _ = loaded["newsgen"].transformers_model()
    assert loaded["newsgen"].transformers_model()[0] is beam_model  # loaded once
    assert loaded["transformers"].transformers_model()[0] is loaded["transformers"].model


def test_a_gpt2_variant_newsgen_does_not_compute_is_served_by_transformers(
    s3, bucket, headline_model, tmp_path, caplog
):
    """The choice for a config newsgen.gpt2 refuses (here a ReLU MLP): fall back to transformers, logged,
    rather than refuse a checkpoint transformers serves. Weights that do not fit stay an UnsupportedArtifact."""
    import shutil

    from newsgen import generation, prompt
    from newsgen.schemas import GenerationParameters

    variant = tmp_path / "variant"
    shutil.copytree(headline_model, variant)
    config = json.loads((variant / "config.json").read_text())
    (variant / "config.json").write_text(json.dumps({**config, "activation_function": "relu"}))
    publish_model(variant, bucket=bucket, prefix="models", task="headline", version="relu", progress=False)
    store = make_store(s3, bucket, tmp_path)
    with caplog.at_level("WARNING", logger="newsgen.store"):
        loaded = store.get("headline", "relu")
    assert "serving with transformers" in caplog.text and "relu" in caplog.text
    assert store.get("headline", "relu").model is loaded.model
    from newsgen.store import is_transformers_model

    assert is_transformers_model(loaded.model)
    out = generation.generate(loaded, [prompt.headline_prompt("City")], params=GenerationParameters(max_new_tokens=4))
    assert out.results[0][0].generated_tokens >= 1


def test_weights_that_do_not_fit_the_config_are_unsupported(s3, bucket, headline_model, tmp_path):
    import shutil

    variant = tmp_path / "variant"
    shutil.copytree(headline_model, variant)
    config = json.loads((variant / "config.json").read_text())
    (variant / "config.json").write_text(json.dumps({**config, "n_layer": config["n_layer"] + 1}))
    publish_model(variant, bucket=bucket, prefix="models", task="headline", version="deeper", progress=False)
    with pytest.raises(ModelUnavailable, match="weights do not fit the config") as info:
        make_store(s3, bucket, tmp_path).get("headline", "deeper")
    assert info.value.details["cause"] == "unsupported_artifact"


def test_unknown_export_is_refused_by_name():
    raw = json.dumps(
        {
            "format_version": artifacts.FORMAT_VERSION,
            "task": "headline",
            "version": "v1",
            "base_model": "x",
            "special_tokens": {},
            "files": [],
            "export": "int4",
            "created_at": "2026-11-28T00:00:00+00:00",
        }
    )
    with pytest.raises(UnsupportedArtifact, match="export 'int4' is not one this build loads"):
        artifacts.parse_manifest(raw)


BAD_NAMES = ["../x", "../../../../tmp/evil", "a/b", ".hidden", "", "v1 ", "x" * 200]


@pytest.mark.parametrize("version", BAD_NAMES)
def test_a_pinned_version_is_checked_like_a_latest_one_before_s3_is_asked(
    s3, bucket, headline_model, tmp_path, version
):
    """The name becomes an S3 key and a directory under the cache: one that is not a version name is refused
    as LATEST naming it would be, without a request to S3 and without a file written."""
    publish_model(headline_model, bucket=bucket, prefix="models", task="headline", version="v1", progress=False)
    store = make_store(s3, bucket, tmp_path)
    gets = []
    s3.meta.events.register("before-send.s3.GetObject", lambda request, **kwargs: gets.append(request.url))
    try:
        with pytest.raises(ModelUnavailable, match="is not a version name") as info:
            store.get("headline", version)
    finally:
        s3.meta.events.unregister("before-send.s3.GetObject")
    assert info.value.details["cause"] == "invalid_version_name" and gets == []
    assert not (tmp_path / "cache").exists() and not (tmp_path / "evil").exists()


@pytest.mark.parametrize("version", BAD_NAMES[:3])
def test_latest_naming_something_that_is_not_a_version_is_refused_alike(s3, bucket, tmp_path, version):
    s3.put_object(Bucket=bucket, Key="models/headline/LATEST", Body=version.encode())
    with pytest.raises(ModelUnavailable, match="is not a version name") as info:
        make_store(s3, bucket, tmp_path).get("headline")
    assert info.value.details["cause"] == "invalid_version_name"


@pytest.mark.parametrize("copied_from", ["models/article/v1/manifest.json", "models/headline/v1/manifest.json"])
def test_a_pinned_version_whose_manifest_describes_another_is_refused(
    s3, bucket, headline_model, article_model, tmp_path, copied_from
):
    """A manifest copied under another task's or version's name is not served as that one."""
    for task, model in (("headline", headline_model), ("article", article_model)):
        publish_model(model, bucket=bucket, prefix="models", task=task, version="v1", progress=False)
    s3.put_object(Bucket=bucket, Key="models/headline/v2/manifest.json", Body=read(s3, bucket, copied_from))
    with pytest.raises(ModelUnavailable, match="describes .* not headline v2") as info:
        make_store(s3, bucket, tmp_path).get("headline", "v2")
    assert info.value.details["cause"] == "unsupported_artifact"


def test_a_manifest_must_name_a_version():
    raw = json.dumps(
        {
            "format_version": artifacts.FORMAT_VERSION,
            "task": "headline",
            "version": "../x",
            "base_model": "x",
            "special_tokens": {},
            "files": [],
            "created_at": "2026-11-28T00:00:00+00:00",
        }
    )
    with pytest.raises(UnsupportedArtifact, match="version"):
        artifacts.parse_manifest(raw)


def test_api_with_a_pinned_version_that_is_no_version_name_is_503(published, service_for, monkeypatch):
    from handlers import api
    from infra.local.harness import LambdaContext, api_event

    monkeypatch.setattr(api, "service", service_for(published["bucket"], headline_model_version="../article/v1"))
    response = api.lambda_handler(api_event("POST", "/v1/headlines", {"n": 1}), LambdaContext())
    body = json.loads(response["body"])
    assert response["statusCode"] == 503 and body["error_type"] == "model_unavailable"
    assert body["details"]["cause"] == "invalid_version_name" and "../" not in response["body"]
