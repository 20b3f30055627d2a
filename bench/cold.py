"""One cold start, in a fresh process, as a Lambda init + first request sees it. Prints one JSON line.

python -m bench.cold serve --bucket B --version V --cache DIR     (our handler's path)
python -m bench.cold floor --bucket B --version V                 (imports + raw S3 bytes + safetensors)
"""

from __future__ import annotations

import json
import sys
import time

started = time.perf_counter()


def mark(timings: dict, name: str, since: float) -> float:
    now = time.perf_counter()
    timings[name] = round(now - since, 4)
    return now


def peak_rss_mb() -> float:
    """VmHWM: this process's own high-water mark (ru_maxrss would carry the parent's over exec)."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return round(int(line.split()[1]) / 1024, 1)
    raise RuntimeError("no VmHWM in /proc/self/status")


def serve(bucket: str, version: str, cache: str, quantize: str) -> dict:
    t: dict = {}
    import torch  # noqa: F401
    import transformers  # noqa: F401

    from newsgen import generation, prompt, s3
    from newsgen.schemas import GenerationParameters
    from newsgen.store import ModelStore

    now = mark(t, "imports_s", started)
    store = ModelStore(s3=s3.client(), bucket=bucket, prefix="models", cache_dir=cache, quantize=quantize)
    loaded = store.get("headline", version)
    t.update({k: round(v, 4) for k, v in loaded.timings.items()})
    now = mark(t, "store_s", now)
    generation.generate(
        loaded, [prompt.headline_prompt("The")], params=GenerationParameters(max_new_tokens=1, do_sample=False)
    )
    now = mark(t, "first_token_s", now)
    t["total_s"] = round(now - started, 4)
    # Then serve like a warm container (batch of 8, 64 tokens) so that the peak RSS covers generation too.
    generation.generate(
        loaded, [prompt.headline_prompt("The")] * 8, params=GenerationParameters(max_new_tokens=64, do_sample=False)
    )
    return t


def floor(bucket: str, version: str) -> dict:
    t: dict = {}
    import torch  # noqa: F401
    import transformers  # noqa: F401

    now = mark(t, "imports_s", started)
    from safetensors.torch import load

    from newsgen import artifacts, s3

    client = s3.client()
    manifest = artifacts.read_manifest(client, bucket=bucket, prefix="models", task="headline", version=version)
    blobs = {
        e.path: client.get_object(Bucket=bucket, Key=artifacts.version_prefix("models", "headline", version) + e.path)[
            "Body"
        ].read()
        for e in manifest.files
    }
    now = mark(t, "s3_read_s", now)
    load(blobs["model.safetensors" if manifest.export == "fp32" else artifacts.INT8_WEIGHTS])
    now = mark(t, "safetensors_load_s", now)
    t["total_s"] = round(now - started, 4)
    return t


if __name__ == "__main__":
    mode, args = sys.argv[1], dict(zip(sys.argv[2::2], sys.argv[3::2], strict=False))
    if mode == "serve":
        out = serve(args["--bucket"], args["--version"], args["--cache"], args.get("--quantize", "int8"))
    else:
        out = floor(args["--bucket"], args["--version"])
    out["peak_rss_mb"] = peak_rss_mb()
    print(json.dumps(out))
