"""bench/load.py for a few seconds: no 5xx, no lost job (the real run is a benchmark)."""

from __future__ import annotations

from bench.load import run_load


def test_load_smoke(service):
    report = run_load(service.url, service.token, clients=4, duration=3)
    print("\n" + report.summary())
    assert report.accepted
    assert report.server_errors == 0 and report.transport_errors == 0
    assert report.lost == [], report.summary()
