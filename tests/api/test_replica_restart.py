"""The API replica killed mid-job: the job goes on, and the new replica reports it."""

from __future__ import annotations

import os
import signal

from motoray.waiting import wait_until
from tests.api.conftest import LONG_FRAMES, post_json, wait_for

REQUEST = {
    "name": "MotoGP",
    "augmentations": [{"RANDOM_CROP": {"crop_dimensions": [64, 64], "target_count": 2}}],
}


def test_job_survives_its_api_replica(service, api, long_source):
    # A source long enough for the job to be running when the replica dies (the shared 6
    # frames can finish between two polls).
    with service.motogp_from(long_source):
        response = post_json(api, REQUEST)
    assert response.status_code == 202, response.text
    [job] = response.json()["jobs"]
    wait_for(api, job["job_id"], states=("RUNNING",), poll_s=0.2)

    [old_pid] = service.replica_pids()
    os.kill(old_pid, signal.SIGKILL)  # a crash, not a graceful stop

    # The proxy answers 5xx (or holds the request) until Serve has a new replica.
    seen_after = wait_for(api, job["job_id"], states=("RUNNING", "SUCCEEDED"), timeout=120)
    final = wait_for(api, job["job_id"])
    assert final["state"] == "SUCCEEDED", final["error"]
    assert final["progress"] == {
        "images_total": LONG_FRAMES,
        "images_done": LONG_FRAMES,
        "images_failed": 0,
        "outputs": 2 * LONG_FRAMES,
    }
    new_pids = wait_until(service.replica_pids, 60, interval=0.5, what="a new API replica")
    assert old_pid not in new_pids
    print(f"\nafter the kill, the new replica reported {seen_after['state']}")
