"""benchmarks/load.py for a few seconds: no 5xx, no lost job (the real run is a benchmark).

Four clients against a service that takes two pending jobs at a time: most POSTs are
refused with 429 and Retry-After, which the clients honour, and every accepted job is
followed to its end."""

from __future__ import annotations

from benchmarks.load import run_load


def test_load_smoke(service):
    def two_pending(config: dict) -> None:
        config["server"]["max_pending_jobs"] = 2

    with service.edited_config(two_pending):
        report = run_load(service.url, service.token, clients=4, duration=3)
    print("\n" + report.summary())
    assert report.accepted
    assert report.statuses[429] > 0  # the limit was reached, and kept
    assert report.server_errors == 0 and report.transport_errors == 0
    assert report.lost == [], report.summary()
