"""``python -m bench.broker_probe`` at a tiny size, so the probe cannot rot."""

from __future__ import annotations

import argparse

from bench.broker_probe import probe


async def test_probe_reports_both_phases() -> None:
    a = argparse.Namespace(rate=200.0, seconds=1.5, linger_ms=5, partitions=1,
                           fetch_wait_ms=10, fetch_min_bytes=1, window=0.5)
    got = await probe(a)
    assert set(got) == {"producer alone", "producer + consumer"}
    for windows in got.values():
        assert len(windows) >= 2 and all(w >= 0 for w in windows), got
    # tansu does some work for a producer at 200/s: an all-zero sample means the
    # probe measured the wrong process
    assert max(got["producer alone"]) > 0, got
