"""Copy published models out of the bucket into a directory laid out like it (`<prefix>/<task>/<version>/`,
manifest, LATEST), verified file by file. Bake the directory into the Lambda image (`--build-arg
BAKED_MODELS=…`) and serve it offline with MODEL_BUCKET=file:///opt/newsgen/baked."""

from __future__ import annotations

from pathlib import Path

from newsgen import artifacts
from newsgen.prompt import Task
from newsgen.store import ModelStore


def mirror(s3, *, bucket: str, prefix: str, dest: Path, versions: dict[str, str] | None = None) -> dict[str, str]:
    """Mirror each task's version (LATEST unless `versions` pins it); returns task → version."""
    mirrored = {}
    store = ModelStore(s3=s3, bucket=bucket, prefix=prefix, cache_dir=Path(dest) / prefix, quantize="none")
    for task in Task:
        version = (versions or {}).get(task) or artifacts.read_latest(s3, bucket=bucket, prefix=prefix, task=task)
        manifest = artifacts.read_manifest(s3, bucket=bucket, prefix=prefix, task=task, version=version)
        path = store.download_verified(manifest)
        (path / artifacts.MANIFEST_NAME).write_text(manifest.model_dump_json(indent=2))
        (Path(dest) / artifacts.latest_key(prefix, task)).write_text(version)
        mirrored[task] = version
    return mirrored
