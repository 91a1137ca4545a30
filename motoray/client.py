"""`motoray submit`: send a request file to a running service; with --wait, follow its jobs.

Exit status: 0 when every job succeeded (or was accepted, without --wait), 1 when
one failed or was stopped, 2 when the service refused the request or was unreachable.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import httpx

from motoray.waiting import wait_until

BUSY_RETRY_S = 300  # keep retrying a busy (429) service this long
TRANSIENT_S = 120  # tolerate an unreachable or restarting service this long while following


class ClientError(Exception):
    pass


def submit(
    request_path: str,
    url: str,
    token: str | None = None,
    wait: bool = False,
    cacert: str | None = None,
    ready_timeout: float = 0,
    poll_s: float = 1.0,
) -> int:
    body = Path(request_path).read_bytes()
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    with httpx.Client(
        base_url=url.rstrip("/"), headers=headers, verify=cacert or True, timeout=60
    ) as http:
        try:
            if ready_timeout:
                _wait_ready(http, ready_timeout)
            jobs = _post(http, body)
        except ClientError as e:
            print(f"motoray submit: {e}", file=sys.stderr)
            return 2
        for job in jobs:
            print(f"job {job['job_id']}: {job['status_url']}", flush=True)
        if not wait:
            return 0
        states = [_follow(http, job["job_id"], poll_s) for job in jobs]
    return 0 if all(state == "SUCCEEDED" for state in states) else 1


def _wait_ready(http: httpx.Client, timeout: float) -> None:
    """Right after `motoray serve` starts, the port opens before the app is deployed."""

    def healthy() -> bool:
        try:
            return http.get("/healthz").status_code == 200
        except httpx.TransportError:
            return False

    try:
        wait_until(healthy, timeout, interval=0.5, what=f"a healthy service at {http.base_url}")
    except TimeoutError as e:
        raise ClientError(str(e)) from None


def _post(http: httpx.Client, body: bytes) -> list[dict]:
    deadline = time.monotonic() + BUSY_RETRY_S
    while True:
        try:
            response = http.post(
                "/data_prep", content=body, headers={"Content-Type": "application/json"}
            )
        except httpx.TransportError as e:
            raise ClientError(f"cannot reach {http.base_url}: {e}") from None
        if response.status_code == 202:
            return response.json()["jobs"]
        if response.status_code == 429 and time.monotonic() < deadline:
            retry = float(response.headers.get("Retry-After", 5))
            print(f"service busy; retrying in {retry:g} s", file=sys.stderr, flush=True)
            time.sleep(retry)
            continue
        raise ClientError(_describe(response))


def _describe(response: httpx.Response) -> str:
    try:
        data = response.json()
    except ValueError:
        return f"HTTP {response.status_code}: {response.text[:500]}"
    lines = [f"HTTP {response.status_code}: {data.get('error', data)}"]
    for error in data.get("errors", []):
        path = ".".join(map(str, error["loc"])) or "body"
        lines.append(f"  {path}: {error['msg']}")
    return "\n".join(lines)


def _follow(http: httpx.Client, job_id: str, poll_s: float) -> str:
    """A progress bar until the job ends, then its summary; returns the final state."""
    from tqdm import tqdm

    from motoray.jobs.record import JobStatus, Outcome, summary_lines

    bar = tqdm(desc=job_id, unit="img", file=sys.stderr, total=None)
    last_ok = time.monotonic()
    status: dict = {}
    next_at = 0.0
    try:
        while not (status and JobStatus(status["state"]).is_terminal()):
            time.sleep(max(0.0, next_at - time.monotonic()))  # a busy service answers at once
            next_at = time.monotonic() + poll_s
            try:
                # Answered when the job ends or after poll_s: the bar moves every poll_s,
                # and the end shows at once.
                response = http.get(f"/data_prep/{job_id}", params={"wait_s": poll_s})
            except httpx.TransportError:
                response = None
            if response is None or response.status_code >= 500:
                if time.monotonic() - last_ok > TRANSIENT_S:
                    print(f"job {job_id}: service unreachable", file=sys.stderr)
                    return "UNKNOWN"
                continue  # a restarting replica or Ray: the job itself goes on
            if response.status_code != 200:
                print(f"job {job_id}: {_describe(response)}", file=sys.stderr)
                return "UNKNOWN"
            last_ok = time.monotonic()
            status = response.json()
            progress = status.get("progress") or {}
            if progress:
                bar.total = progress["images_total"]
                bar.n = progress["images_done"]
                bar.set_postfix(
                    state=status["state"],
                    failed=progress["images_failed"],
                    outputs=progress["outputs"],
                    refresh=False,
                )
            else:
                bar.set_postfix(state=status["state"], refresh=False)
            bar.refresh()
    finally:
        bar.close()
    outcome = Outcome.model_validate(status["summary"]) if status.get("summary") else None
    lines = summary_lines(
        job_id,
        status["state"],
        status["output"],
        outcome,
        status.get("error"),
        status.get("resumed", 0),
    )
    print("\n".join(lines))
    return status["state"]
