"""Load on the HTTP API: N clients post the seed request and poll their jobs for D seconds.

Each client posts, polls its jobs every 0.5 s until they end, and posts again; a
429 makes it wait Retry-After. Afterwards every accepted job is followed to its
end. Prints p50/p99 latency per route and fails (exit 1) on any 5xx, transport
error, or lost job (accepted but unreadable, or not SUCCEEDED).

    .venv/bin/python -m benchmarks.load                    # its own service on sample frames
    .venv/bin/python -m benchmarks.load --url URL --token T [--clients 20] [--duration 30]
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import yaml

REPO = Path(__file__).resolve().parent.parent
SEED = REPO / "examples" / "requests" / "seed_sample.json"
TERMINAL = ("SUCCEEDED", "FAILED", "STOPPED")


@dataclass
class Report:
    latencies: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    statuses: Counter = field(default_factory=Counter)
    transport_errors: int = 0
    accepted: list[str] = field(default_factory=list)
    final: dict[str, str] = field(default_factory=dict)  # job id -> final state
    errors: dict[str, str] = field(default_factory=dict)  # job id -> why it did not succeed
    lock: threading.Lock = field(default_factory=threading.Lock)

    def record(self, route: str, seconds: float, status: int) -> None:
        with self.lock:
            self.latencies[route].append(seconds)
            self.statuses[status] += 1

    @property
    def server_errors(self) -> int:
        return sum(n for status, n in self.statuses.items() if status >= 500)

    @property
    def lost(self) -> list[str]:
        return [job for job in self.accepted if self.final.get(job) != "SUCCEEDED"]

    def summary(self) -> str:
        lines = []
        for route, values in sorted(self.latencies.items()):
            lines.append(f"{route:<22} n={len(values):<5} {_percentiles(values)}")
        everything = [v for values in self.latencies.values() for v in values]
        lines.append(f"{'all requests':<22} n={len(everything):<5} {_percentiles(everything)}")
        lines.append(f"statuses: {dict(sorted(self.statuses.items()))}")
        lines.append(f"transport errors: {self.transport_errors}")
        states = Counter(self.final.values())
        lines.append(f"jobs accepted: {len(self.accepted)}, final states: {dict(states)}")
        lines.append(f"5xx: {self.server_errors}, lost jobs: {len(self.lost)}")
        lines += [f"  {job}: {self.final.get(job)} {self.errors.get(job, '')}" for job in self.lost]
        return "\n".join(lines)

    def record_of(self, clients: int, duration: float) -> dict:
        """What the benchmarks page shows of a run: p50 and p99 per route, in ms."""
        routes = {}
        for route, values in sorted(self.latencies.items()):
            cuts = statistics.quantiles(values, n=100, method="inclusive")
            routes[route] = {"n": len(values), "p50_ms": round(cuts[49] * 1000),
                             "p99_ms": round(cuts[98] * 1000)}  # fmt: skip
        return {
            "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
            "clients": clients,
            "duration_s": duration,
            "routes": routes,
            "server_errors": self.server_errors,
            "transport_errors": self.transport_errors,
            "jobs_accepted": len(self.accepted),
            "jobs_lost": len(self.lost),
        }

    def finished(self, job_id: str, status: dict) -> None:
        with self.lock:
            self.final[job_id] = status["state"]
            if status["state"] != "SUCCEEDED":
                self.errors[job_id] = (status.get("error") or "")[-500:]


def _percentiles(values: list[float]) -> str:
    if len(values) < 2:
        return "p50=- p99=-"
    cuts = statistics.quantiles(values, n=100, method="inclusive")
    p50, p99, top = cuts[49] * 1000, cuts[98] * 1000, max(values) * 1000
    return f"p50={p50:.0f} ms  p99={p99:.0f} ms  max={top:.0f} ms"


def run_load(
    url: str, token: str, clients: int = 20, duration: float = 30, body: bytes | None = None
) -> Report:
    body = body or SEED.read_bytes()
    report = Report()
    end = time.monotonic() + duration
    threads = [
        threading.Thread(target=_client, args=(url, token, body, end, report), daemon=True)
        for _ in range(clients)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    _drain(url, token, report)
    return report


def _client(url: str, token: str, body: bytes, end: float, report: Report) -> None:
    headers = {"Authorization": f"Bearer {token}"}
    active: list[str] = []
    with httpx.Client(base_url=url, headers=headers, timeout=120) as http:
        while time.monotonic() < end:
            if not active:
                response = _timed(http, report, "POST /data_prep", "POST", "/data_prep", body)
                if response is not None and response.status_code == 202:
                    ids = [job["job_id"] for job in response.json()["jobs"]]
                    active += ids
                    with report.lock:
                        report.accepted += ids
                elif response is not None and response.status_code == 429:
                    retry = float(response.headers.get("Retry-After", 1))
                    time.sleep(max(0.0, min(retry, end - time.monotonic())))
                continue
            for job_id in list(active):
                path = f"/data_prep/{job_id}"
                response = _timed(http, report, "GET /data_prep/{id}", "GET", path)
                if response is not None and response.status_code == 200:
                    status = response.json()
                    if status["state"] in TERMINAL:
                        active.remove(job_id)
                        report.finished(job_id, status)
            time.sleep(0.5)


def _timed(http, report, route, method, path, body=None) -> httpx.Response | None:
    headers = {"Content-Type": "application/json"} if body is not None else None
    started = time.perf_counter()
    try:
        response = http.request(method, path, content=body, headers=headers)
    except httpx.TransportError:
        with report.lock:
            report.transport_errors += 1
        return None
    report.record(route, time.perf_counter() - started, response.status_code)
    return response


def _drain(url: str, token: str, report: Report, timeout: float = 600) -> None:
    """Follow every accepted job to its end (not counted in the latencies)."""
    deadline = time.monotonic() + timeout
    headers = {"Authorization": f"Bearer {token}"}
    with httpx.Client(base_url=url, headers=headers, timeout=120) as http:
        pending = [job for job in report.accepted if job not in report.final]
        while pending and time.monotonic() < deadline:
            for job_id in list(pending):
                response = http.get(f"/data_prep/{job_id}")
                if response.status_code >= 500:
                    report.statuses[response.status_code] += 1
                elif response.status_code != 200:
                    report.final[job_id] = f"HTTP {response.status_code}"
                    pending.remove(job_id)
                elif response.json()["state"] in TERMINAL:
                    report.finished(job_id, response.json())
                    pending.remove(job_id)
            time.sleep(1)


def _own_service(workdir: Path, frames: int, max_pending: int) -> tuple[subprocess.Popen, str, str]:
    """`motoray serve` (with its own local Ray) on freshly written sample frames."""
    from motoray.sample_data import write_sample_frames
    from tests.service import spawn_service

    write_sample_frames(workdir / "MotoGP", frames, (320, 180))
    config = workdir / "motoray.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "sources": {"MotoGP": {"uri": "MotoGP"}},
                "output": {"uri": "outputs"},
                "server": {"max_pending_jobs": max_pending},
            }
        )
    )
    token = secrets.token_urlsafe(16)
    process, url = spawn_service(config, token, workdir / "serve.log")
    return process, url, token


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", help="a running service (default: start one)")
    parser.add_argument("--token", default=os.environ.get("MOTORAY_API_TOKEN"))
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--duration", type=float, default=30)
    parser.add_argument("--request", default=str(SEED))
    parser.add_argument("--frames", type=int, default=8, help="sample frames of an own service")
    parser.add_argument("--max-pending", type=int, default=16, help="max_pending_jobs of it")
    parser.add_argument(
        "--record", type=Path, help="a bench result file: this run is added to its `load` list"
    )
    args = parser.parse_args()

    process = None
    with tempfile.TemporaryDirectory(prefix="motoray-load-") as workdir:
        url, token = args.url, args.token
        if url is None:
            print("starting a service on sample frames ...", flush=True)
            process, url, token = _own_service(Path(workdir), args.frames, args.max_pending)
        try:
            print(f"{args.clients} clients for {args.duration:g} s against {url}", flush=True)
            body = Path(args.request).read_bytes()
            report = run_load(url, token, args.clients, args.duration, body)
        finally:
            if process is not None:
                process.terminate()
                process.wait(120)
    print(report.summary())
    if args.record:
        result = json.loads(args.record.read_text())
        result.setdefault("load", []).append(report.record_of(args.clients, args.duration))
        args.record.write_text(json.dumps(result, indent=2) + "\n")
    ok = report.server_errors == 0 and not report.transport_errors and not report.lost
    print("OK" if ok else "FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
