"""`make bench-memory`: Lambda power tuning for the API function, emulated on this machine.

Lambda gives a function CPU time in proportion to its memory (one vCPU at 1,769 MB), whatever number of CPUs
the process sees. This runs the real API handler (`handlers.api.lambda_handler`, init with PRELOAD_MODELS as Lambda
runs it) in a child process inside a cgroup whose CPU quota and memory limit match each memory size, with both
models of the distilgpt2 shape published to a local S3, and reports init, first request, warm latency per
request kind, peak RSS, /tmp use and the price per million requests. Needs root (cgroups). Writes
bench/power.json and prints the table README.md shows.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from handlers.runtime import MB_PER_VCPU
from infra.local.harness import LOCAL_SETTINGS, functions
from newsgen.artifacts import EXPORTS
from newsgen.prompt import Task

ROOT = Path(__file__).resolve().parents[1]
MEMORY_SIZES = [1024, 1536, 1769, 2048, 3008, 3538]
PRICE_PER_GB_S = {"x86_64": 0.0000166667, "arm64": 0.0000133334}  # us-east-1, on demand
PRICE_PER_REQUEST = 0.20 / 1e6
BUCKET = "power-models"
# What each request kind asks for. The weights are random, so every request runs to max_new_tokens: the
# durations are the upper bound of a real model's, which stops at <|EOS|>.
REQUESTS = {
    "headline": (
        "/v1/headlines",
        {"prompt": "The city council", "parameters": {"max_new_tokens": 24, "do_sample": False}},
    ),
    "article": (
        "/v1/articles",
        {"headline": "City council approves the new budget", "parameters": {"max_new_tokens": 160, "do_sample": False}},
    ),
    "largest": ("/v1/headlines", {"n": 8, "parameters": {"max_new_tokens": 128, "do_sample": True, "seed": 1}}),
}


# --- the child: one Lambda execution environment ------------------------------------------------------
def child(reps: int) -> dict:
    started = time.perf_counter()
    import handlers.api as api  # Lambda's init phase: imports + PRELOAD_MODELS
    from infra.local.harness import LambdaContext, api_event

    out: dict = {"init_s": round(time.perf_counter() - started, 3)}

    def invoke(kind: str) -> tuple[float, dict]:
        path, body = REQUESTS[kind]
        event = api_event("POST", path, body)
        context = LambdaContext.of("api", memory_limit_in_mb=int(os.environ["AWS_LAMBDA_FUNCTION_MEMORY_SIZE"]))
        began = time.perf_counter()
        response = api.lambda_handler(event, context)
        elapsed = time.perf_counter() - began
        if response["statusCode"] != 200:
            raise RuntimeError(f"{kind}: HTTP {response['statusCode']} {response['body'][:500]}")
        return elapsed, json.loads(response["body"])

    out["first_request_s"] = round(invoke("headline")[0], 3)
    for kind in Task:
        runs = [invoke(kind) for _ in range(reps)]
        tokens = sum(r.get("generated_tokens", 0) for r in runs[0][1]["results"])
        out[kind] = {"median_s": round(statistics.median(t for t, _ in runs), 3), "tokens": tokens}
    elapsed, body = invoke("largest")
    out["largest"] = {"s": round(elapsed, 3), "finish_reasons": sorted({r["finish_reason"] for r in body["results"]})}
    with open("/proc/self/status") as status:
        out["peak_rss_mb"] = next(round(int(line.split()[1]) / 1024) for line in status if line.startswith("VmHWM:"))
    cache = Path(os.environ["MODEL_CACHE_DIR"])
    out["tmp_mb"] = round(sum(f.stat().st_size for f in cache.rglob("*") if f.is_file()) / 1e6)
    return out


# --- cgroups: the CPU quota and memory limit of one memory size -----------------------------------------
class Cgroup:
    """A cgroup (v2 if mounted as such, else the v1 cpu and memory hierarchies) that the child joins."""

    def __init__(self, name: str, memory_mb: int):
        vcpus = memory_mb / MB_PER_VCPU
        period = 100_000
        quota, limit = int(period * vcpus), memory_mb * 1024 * 1024
        if Path("/sys/fs/cgroup/cgroup.controllers").exists():
            self.dirs = [Path("/sys/fs/cgroup") / name]
            settings = {"cpu.max": f"{quota} {period}", "memory.max": str(limit), "memory.swap.max": "0"}
        else:
            self.dirs = [Path("/sys/fs/cgroup/cpu") / name, Path("/sys/fs/cgroup/memory") / name]
            settings = {
                "cpu.cfs_period_us": str(period),
                "cpu.cfs_quota_us": str(quota),
                "memory.limit_in_bytes": str(limit),
            }
        try:
            for directory in self.dirs:
                directory.mkdir(exist_ok=True)
            for file, value in settings.items():
                for directory in self.dirs:
                    if (directory / file).exists():
                        (directory / file).write_text(value)
        except OSError as exc:
            self.remove()
            raise SystemExit(f"make bench-memory needs root and writable cgroups (cpu, memory): {exc}") from None

    def join(self) -> None:  # runs in the child before exec
        for directory in self.dirs:
            (directory / "cgroup.procs").write_text(str(os.getpid()))

    def remove(self) -> None:
        for directory in self.dirs:
            if directory.exists():
                directory.rmdir()


def run_size(memory_mb: int, threads: int, reps: int, workdir: Path) -> dict:
    group = Cgroup(f"newsgen-power-{os.getpid()}-{memory_mb}-{threads}", memory_mb)
    env = {
        **os.environ,
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(memory_mb),
        "TORCH_THREADS": str(threads),
        "MODEL_CACHE_DIR": str(workdir / f"cache-{memory_mb}-{threads}"),
        "PRELOAD_MODELS": "true",
    }
    try:
        out = subprocess.run(
            [sys.executable, "-m", "bench.power", "--child", "--reps", str(reps)],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            preexec_fn=group.join,
            timeout=900,
        )
    finally:
        group.remove()
    if out.returncode:
        killed = out.returncode in (-9, 137)
        return {"failed": "out of memory" if killed else out.stderr[-1500:]}
    return json.loads(out.stdout.strip().splitlines()[-1])


def price(seconds: float, memory_mb: int, architecture: str = "x86_64") -> float:
    """Dollars per million requests: billed duration (rounded up to the ms) × GB × price, plus the request fee."""
    billed_s = math.ceil(seconds * 1000) / 1000
    return round((billed_s * memory_mb / 1024 * PRICE_PER_GB_S[architecture] + PRICE_PER_REQUEST) * 1e6, 2)


def priced(row: dict) -> dict:
    """The row with its prices: per million headline and article requests, and per million tokens generated
    in batches of eight (the 8×128 request, as the batch worker generates)."""
    memory_mb, largest = row["memory_mb"], row["largest"]["s"]
    batch_tokens = REQUESTS["largest"][1]["n"] * REQUESTS["largest"][1]["parameters"]["max_new_tokens"]
    return {
        **row,
        "usd_per_million": {
            "headline": price(row["headline"]["median_s"], memory_mb),
            "article": price(row["article"]["median_s"], memory_mb),
            "batch_tokens": round(largest * memory_mb / 1024 * PRICE_PER_GB_S["x86_64"] / batch_tokens * 1e6, 2),
        },
    }


def table(results: dict) -> str:
    lines = [
        "| memory (vCPU) | torch threads | init + 1st request | headline (24 tok) | article (160 tok) | 8×128 tok | "
        "peak RSS | $/M headlines | $/M articles | $/M batch tokens |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in results["runs"]:
        size = f"{row['memory_mb']} MB ({row['memory_mb'] / MB_PER_VCPU:.2f})"
        if "failed" in row:
            lines.append(f"| {size} | {row['threads']} | {row['failed'][:60]} | | | | | | | |")
            continue
        largest = f"{row['largest']['s']:.1f} s {'/'.join(row['largest']['finish_reasons'])}"
        usd = row["usd_per_million"]
        lines.append(
            f"| {size} | {row['threads']} | {row['init_s']:.1f} + {row['first_request_s']:.1f} s | "
            f"{row['headline']['median_s']:.2f} s | {row['article']['median_s']:.2f} s | {largest} | "
            f"{row['peak_rss_mb']} MB | {usd['headline']} | {usd['article']} | {usd['batch_tokens']} |"
        )
    return "\n".join(lines)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="make bench-memory", description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--sizes", default=",".join(map(str, MEMORY_SIZES)))
    parser.add_argument("--threads", default="1,2", help="torch threads to try at each size")
    parser.add_argument("--export", choices=EXPORTS, default="fp32", help="the weights published (publish --export)")
    parser.add_argument(
        "--output", type=Path, default=None, help="default: bench/power.json (power-int8.json for int8)"
    )
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(child(args.reps)))
        return
    args.output = args.output or ROOT / "bench" / (
        "power.json" if args.export == "fp32" else f"power-{args.export}.json"
    )
    cpus = len(os.sched_getaffinity(0))
    sizes = [int(s) for s in args.sizes.split(",")]
    too_big = [s for s in sizes if s / MB_PER_VCPU > cpus + 1e-9]
    if too_big:
        raise SystemExit(f"this machine has {cpus} CPUs: it cannot emulate {too_big} MB (> {cpus} vCPUs)")
    os.environ.update(
        LOCAL_SETTINGS,
        MODEL_BUCKET=BUCKET,
        MODEL_PREFIX="models",
        POWERTOOLS_LOG_LEVEL="WARNING",
    )
    from bench.run import build_checkpoint
    from infra.local.harness import start_s3

    server, _ = start_s3()
    started = time.perf_counter()
    results: dict = {
        "command": "make bench-memory" + (f" EXPORT={args.export}" if args.export != "fp32" else ""),
        "export": args.export,
        "cpus": cpus,
        "mb_per_vcpu": MB_PER_VCPU,
        "api_timeout_ms": functions()["api"].timeout_s * 1000,
        "requests": {k: v[1] for k, v in REQUESTS.items()},
        "runs": [],
    }
    try:
        import boto3

        from training.publish import publish_model

        boto3.client("s3").create_bucket(Bucket=BUCKET)
        with tempfile.TemporaryDirectory(prefix="newsgen-power-") as tmp:
            workdir = Path(tmp)
            model_dir = build_checkpoint(workdir / "distilgpt2", 6)
            report = model_dir / "training_report.json"
            for task in Task:  # one checkpoint serves both: only the shape matters here
                report.write_text(json.dumps({**json.loads(report.read_text()), "task": task}))
                publish_model(
                    model_dir,
                    bucket=BUCKET,
                    prefix="models",
                    task=task,
                    version="power",
                    export=args.export,
                    progress=False,
                )
            for memory_mb in sizes:
                for threads in (int(t) for t in args.threads.split(",")):
                    print(
                        f"[{time.perf_counter() - started:5.0f}s] {memory_mb} MB, {threads} torch thread(s)", flush=True
                    )
                    row = {
                        "memory_mb": memory_mb,
                        "threads": threads,
                        **run_size(memory_mb, threads, args.reps, workdir),
                    }
                    results["runs"].append(row if "failed" in row else priced(row))
    finally:
        server.stop()
    results["runtime_s"] = round(time.perf_counter() - started, 1)
    args.output.write_text(json.dumps(results, indent=2) + "\n")
    print(table(results))
    print(f"\nwrote {args.output} in {results['runtime_s']:.0f}s")


if __name__ == "__main__":
    main()
