"""The power-tuning benchmark's arithmetic (the benchmark itself needs root and minutes: `make bench-memory`)."""

import pytest

from bench import power


def test_price_bills_rounded_up_milliseconds_and_the_request_fee():
    # 0.1501 s bills as 151 ms; at 1024 MB that is 0.151 GB-s × $0.0000166667 + $0.0000002 per request.
    assert power.price(0.1501, 1024) == pytest.approx(0.151 * 16.6667 + 0.20, abs=0.01)
    assert power.price(1.0, 2048, "arm64") == pytest.approx(2 * 13.3334 + 0.20, abs=0.01)
    assert power.price(1.0, 3008) > power.price(1.0, 1024)


def test_sizes_beyond_this_machine_are_refused_by_name(monkeypatch):
    monkeypatch.setattr(power.os, "sched_getaffinity", lambda pid: {0})
    with pytest.raises(SystemExit, match=r"1 CPUs: it cannot emulate \[3538\] MB"):
        power.main(["--sizes", "1024,3538"])


def test_table_prices_each_run_and_names_failures():
    row = {
        "memory_mb": 2048,
        "threads": 1,
        "init_s": 8.0,
        "first_request_s": 2.1,
        "headline": {"median_s": 0.2, "tokens": 24},
        "article": {"median_s": 1.3, "tokens": 160},
        "largest": {"s": 2.9, "finish_reasons": ["length"]},
        "peak_rss_mb": 1460,
        "tmp_mb": 700,
    }
    priced = power.priced(row)
    # 8 × 128 tokens in 2.9 s at 2 GB: 5.8 GB-s per 1,024 tokens.
    assert priced["usd_per_million"]["batch_tokens"] == pytest.approx(5.8 * 16.6667 / 1024, abs=0.01)
    text = power.table({"runs": [priced, {"memory_mb": 1024, "threads": 2, "failed": "out of memory"}]})
    assert (
        "| 2048 MB (1.16) | 1 | 8.0 + 2.1 s | 0.20 s | 1.30 s | 2.9 s length | 1460 MB | 6.87 | 43.53 | 0.09 |" in text
    )
    assert "| 1024 MB (0.58) | 2 | out of memory |" in text
