"""Hostile requests against the live service: each answers within 10 s with a 4xx naming the
field, or is done within its budget; never a 5xx; /healthz answers in under a second while
each one is in flight."""

from __future__ import annotations

import contextlib
import json
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from motoray.sample_data import write_sample_frames
from motoray.waiting import wait_until

pytestmark = pytest.mark.slow

SEED = {
    "name": "MotoGP",
    "input_image_size": [480, 270],
    "augmentations": [{"CROP": {"crop_dimensions": [[270, 270]]}}],
}
BAIT = "a" * 30  # keys on which `^(a|a)*#` backtracks for minutes in Python's re
BIG = 20_000  # files in the big source


@dataclass(frozen=True)
class Case:
    id: str
    path: str
    body: object
    status: int
    loc: list | None = None  # the field a 4xx names (the first error's path)
    limits: dict | None = None  # config limits for this case only


CASES = [
    Case(
        "outputs explode across steps",
        "/data_prep",
        {
            **SEED,
            "augmentations": [{"RANDOM_CROP": {"crop_dimensions": [8, 8], "target_count": 1000}}]
            * 64,
        },
        422,
        ["augmentations"],
    ),
    Case(
        "outputs explode inside a CHAIN",
        "/data_prep",
        {
            **SEED,
            "augmentations": [
                {
                    "CHAIN": [
                        {"RANDOM_CROP": {"crop_dimensions": [8, 8], "target_count": 1000}},
                        {"COLOR_JITTER": {"brightness": [0.5, 1.5], "target_count": 1000}},
                    ]
                }
            ],
        },
        422,
        ["augmentations"],
    ),
    Case(
        "upscale bomb",
        "/data_prep",
        {**SEED, "input_image_size": [16384, 16384]},
        422,
        ["input_image_size"],
    ),
    Case(
        "upscale by area",
        "/data_prep",
        {**SEED, "input_image_size": [8000, 8000]},
        422,
        ["input_image_size"],
    ),
    Case(
        "preview bomb",
        "/data_prep/preview?count=32",
        {
            **SEED,
            "augmentations": [{"RANDOM_CROP": {"crop_dimensions": [8, 8], "target_count": 1000}}],
        },
        422,
        ["query", "count"],
    ),
    Case(
        "heavy preview inside the count budget: cut at its memory or time limit",
        "/data_prep/preview?count=32",
        {
            **SEED,
            "augmentations": [{"RANDOM_RESIZED_CROP": {"size": [4096, 4096], "target_count": 60}}],
        },
        422,
        [],
    ),
    # Its own time limit: on a loaded machine, a plan of 20,000 files may take more than the
    # 3 s that cut the heavy preview above (the answer must still come within 10 s).
    Case(
        "plan on a big source",
        "/data_prep/plan",
        {"name": "big"},
        200,
        limits={"preview_timeout_s": 10},
    ),
    Case(
        "catastrophic regex",
        "/data_prep/plan",
        {
            "name": "bait",
            "train_test_split": {"train_ratio": 80, "test_ratio": 20, "group_by": "regex:^(a|a)*#"},
        },
        200,
    ),
    Case(
        "regex RE2 cannot run",
        "/data_prep/plan",
        {
            "name": "bait",
            "train_test_split": {"train_ratio": 80, "test_ratio": 20, "group_by": r"regex:(a)\1"},
        },
        422,
        ["train_test_split", "group_by"],
    ),
    Case("a body longer than the pending limit", "/data_prep", [SEED] * 9, 422, []),
    Case(
        "a request that writes nothing",
        "/data_prep",
        {"name": "MotoGP", "include_original": False},
        422,
        [],
    ),
]


@pytest.fixture(scope="module")
def hostile_service(service, tmp_path_factory):
    """The session service with two more sources: a big one, and keys that bait a regex."""
    root = tmp_path_factory.mktemp("hostile-sources")
    big, bait = root / "big", root / "bait"
    big.mkdir()
    frame = next(Path(service.config_path.parent, "MotoGP").glob("*.jpg")).read_bytes()
    for i in range(BIG):
        (big / f"f{i:05d}.jpg").write_bytes(frame if i % 1000 == 0 else b"")
    write_sample_frames(bait, 3, (64, 36))
    for path in bait.iterdir():
        path.rename(bait / f"{BAIT}_{path.name}")

    def add_sources(config: dict) -> None:
        config["sources"]["big"] = {"uri": str(big)}
        config["sources"]["bait"] = {"uri": str(bait)}
        config["server"]["max_pending_jobs"] = 8
        config["limits"] = {"preview_timeout_s": 3}

    with service.edited_config(add_sources):
        yield service


class HealthWatch:
    """Polls /healthz on its own connection while a hostile request is in flight. Its
    thread only records; what went wrong there (an answer other than 200, no answer) is
    raised in the test's thread when the watch ends, so that it fails the test."""

    def __init__(self, url: str, path: str = "/healthz") -> None:
        self.latencies: list[float] = []
        self.error: BaseException | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(url, path), daemon=True)

    def _run(self, url: str, path: str) -> None:
        try:
            with httpx.Client(base_url=url, timeout=10) as client:
                while not self._stop.is_set():
                    start = time.perf_counter()
                    response = client.get(path)
                    if response.status_code != 200:
                        raise AssertionError(f"{path}: {response.status_code} {response.text}")
                    self.latencies.append(time.perf_counter() - start)
                    self._stop.wait(0.1)
        except BaseException as e:  # re-raised in the test's thread
            self.error = e

    def _raise(self) -> None:
        if self.error is not None:
            raise AssertionError(f"the /healthz watcher failed: {self.error!r}") from self.error

    def __enter__(self) -> HealthWatch:
        self._thread.start()
        # One answer before the hostile request goes out.
        wait_until(
            lambda: self._raise() or self.latencies, 30, interval=0.01, what="/healthz to answer"
        )
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self._raise()


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_hostile_request(case: Case, hostile_service):
    with (
        hostile_service.edited_config(lambda config: config["limits"].update(case.limits))
        if case.limits
        else contextlib.nullcontext(),
        hostile_service.client() as api,
        HealthWatch(hostile_service.url) as health,
    ):
        start = time.perf_counter()
        response = api.post(
            case.path,
            content=json.dumps(case.body),
            headers={"Content-Type": "application/json"},
            timeout=30,
        )
        took = time.perf_counter() - start
    assert response.status_code == case.status, response.text[:500]
    assert took <= 10, f"answered after {took:.1f} s"
    assert health.latencies and max(health.latencies) < 1, health.latencies
    if case.loc is not None:
        assert response.json()["errors"][0]["loc"] == case.loc, response.text[:500]
    if case.path == "/data_prep/plan" and case.status == 200:
        total = response.json()["counts"]["images_total"]
        assert total == (BIG if case.body["name"] == "big" else 3)
