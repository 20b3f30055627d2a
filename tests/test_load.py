"""A bounded load test on loopback against the local server: concurrent clients for a fixed time, every
answer a 200 or a clean JSON error, and memory flat across the run (`make load` runs the long version)."""

import os

from bench.load import run_load


def test_load_holds_with_no_errors_and_flat_memory(server):
    run_load(server, clients=2, seconds=10, max_requests=30)  # warm-up: caches and allocator settle
    result = run_load(server, clients=4, seconds=float(os.environ.get("LOAD_SECONDS", "20")),
                      max_requests=int(os.environ.get("LOAD_REQUESTS", "300")))
    print(result)
    assert result["requests"] >= 50
    assert set(result["statuses"]) <= {200, 429, 503}, result["statuses"]
    assert result["statuses"].get(200, 0) == result["requests"], result["statuses"]
    assert not result["malformed_bodies"]
    assert result["rss_mb_after"] - result["rss_mb_before"] < 50, result  # no leak across the run
