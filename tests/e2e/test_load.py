"""A bounded load test on loopback against the local server: concurrent clients for a fixed time, every
answer a 200 or a clean JSON error, and memory flat across the run (`make load` runs the long version)."""

import os

from bench.load import run_load


def test_load_holds_with_no_errors_and_flat_memory(server):
    run_load(server, clients=2, seconds=15, max_requests=60)  # warm-up: caches and the allocator settle
    requests = int(os.environ.get("LOAD_REQUESTS", "150"))
    seconds = float(os.environ.get("LOAD_SECONDS", "20"))
    first = run_load(server, clients=4, seconds=seconds, max_requests=requests)
    second = run_load(server, clients=4, seconds=seconds, max_requests=requests)
    print(first, second)
    for result in (first, second):
        assert result["requests"] >= 50
        assert set(result["statuses"]) <= {200, 429, 503}, result["statuses"]
        assert result["statuses"].get(200, 0) == result["requests"], result["statuses"]
        assert not result["malformed_bodies"]
    # A leak grows with every request; allocator warm-up does not repeat in the second half.
    assert second["rss_mb_after"] - first["rss_mb_after"] < 20, (first, second)
