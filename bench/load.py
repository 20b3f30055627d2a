"""A bounded load test on loopback: N concurrent clients for a fixed time (and a request cap) against the
local server; reports requests/s, latency percentiles, status counts and the server's memory growth.

    make load            (8 clients, 60 s, up to 2,000 requests, against models `make run` trained)
"""

from __future__ import annotations

import json
import resource
import statistics
import threading
import time
import urllib.error
import urllib.request
from collections import Counter

BODIES = [
    {"n": 1, "parameters": {"max_new_tokens": 8}},
    {"prompt": "City council", "n": 2, "parameters": {"max_new_tokens": 8, "seed": 3}},
    {"n": 1, "parameters": {"max_new_tokens": 8, "do_sample": False}},
]


def rss_mb() -> float:
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * resource.getpagesize() / 2**20


def run_load(base_url: str, *, clients: int, seconds: float, max_requests: int) -> dict:
    latencies: list[float] = []
    statuses: Counter = Counter()
    bad_bodies: list[str] = []
    lock = threading.Lock()
    deadline = time.monotonic() + seconds
    issued = iter(range(max_requests))

    def client(index: int) -> None:
        while time.monotonic() < deadline:
            with lock:
                number = next(issued, None)
            if number is None:
                return
            body = json.dumps(BODIES[number % len(BODIES)]).encode()
            request = urllib.request.Request(f"{base_url}/v1/headlines", data=body, method="POST")
            started = time.perf_counter()
            try:
                with urllib.request.urlopen(request, timeout=60) as response:
                    status, payload = response.status, response.read()
            except urllib.error.HTTPError as error:
                status, payload = error.code, error.read()
            elapsed = time.perf_counter() - started
            with lock:
                latencies.append(elapsed)
                statuses[status] += 1
                try:
                    parsed = json.loads(payload)
                    ok = ("results" in parsed) if status == 200 else ("error_type" in parsed)
                except json.JSONDecodeError:
                    ok = False
                if not ok:
                    bad_bodies.append(payload[:200].decode(errors="replace"))

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    started = time.perf_counter()
    rss_before = rss_mb()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - started
    ordered = sorted(latencies)

    def pct(p: float) -> float:
        return round(ordered[min(len(ordered) - 1, int(p * len(ordered)))] * 1000, 1) if ordered else 0.0

    return {
        "clients": clients,
        "requests": len(latencies),
        "seconds": round(wall, 2),
        "requests_per_s": round(len(latencies) / wall, 2),
        "latency_ms": {
            "p50": pct(0.50),
            "p90": pct(0.90),
            "p99": pct(0.99),
            "max": pct(1.0),
            "mean": round(statistics.mean(latencies) * 1000, 1) if latencies else 0.0,
        },
        "statuses": dict(statuses),
        "malformed_bodies": bad_bodies[:5],
        "rss_mb_before": round(rss_before, 1),
        "rss_mb_after": round(rss_mb(), 1),
    }


def main() -> None:
    import argparse
    import os
    from pathlib import Path

    parser = argparse.ArgumentParser(prog="make load", description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--max-requests", type=int, default=2000)
    parser.add_argument("--output", type=Path, default=Path("bench/load.json"))
    args = parser.parse_args()
    from infra.local.harness import MODEL_BUCKET, start_s3
    from infra.local.run import DEFAULT_WORKDIR, ensure_models, publish

    server, _ = start_s3()
    try:
        publish(ensure_models(DEFAULT_WORKDIR, None))  # the models `make run` serves
        os.environ.update(
            MODEL_BUCKET=MODEL_BUCKET, MODEL_CACHE_DIR=str(DEFAULT_WORKDIR / "cache-load"), PRELOAD_MODELS="true"
        )
        from infra.local.server import serve

        httpd = serve("127.0.0.1", 0)
        base = f"http://127.0.0.1:{httpd.server_address[1]}"
        run_load(base, clients=2, seconds=5, max_requests=20)  # warm-up: allocator and caches settle
        result = run_load(base, clients=args.clients, seconds=args.seconds, max_requests=args.max_requests)
        httpd.shutdown()
    finally:
        server.stop()
    args.output.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
