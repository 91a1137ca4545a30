"""A client that polls a job's status every 0.25 s against one that waits with `?wait_s=`.

Both post the seed request to the same warm service (the bench's), interleaved with the
turbo floor, so each round gives both ratios side by side; also prints the CPU seconds
that Serve's proxy and the API replica spent during each job (the polls' cost).

    .venv/bin/python -m benchmarks.poll_vs_wait [--images 6000] [--rounds 3]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import psutil

from benchmarks import measures, variants

VARIANTS = ("turbo_floor", "service_poll", "service")  # `service` waits with wait_s


def serve_cpu_s() -> float:
    """CPU seconds so far of every Serve proxy and replica process on this machine."""
    total = 0.0
    for process in psutil.process_iter(["cmdline"]):
        command = " ".join(process.info["cmdline"] or [])
        if "ProxyActor" in command or "ServeReplica" in command:
            try:
                times = process.cpu_times()
            except psutil.Error:
                continue
            total += times.user + times.system
    return total


class PollingBench(variants.Bench):
    def service_poll(self, paths: list[Path]) -> None:
        """`service` as a client that polls: what every client did before wait_s."""
        self._source_for(paths)
        response = self.http.post("/data_prep", json=variants.REQUEST)
        response.raise_for_status()
        [job_id] = [job["job_id"] for job in response.json()["jobs"]]
        while self._status(job_id)["state"] not in variants.TERMINAL:
            time.sleep(0.25)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=Path, default=Path("data/bench/frames"))
    parser.add_argument("--images", type=int, default=6000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    paths = sorted(args.frames.glob("*.jpg"))[: args.images]  # `make bench` writes them
    work = Path(tempfile.mkdtemp(prefix="motoray-poll-"))
    runs = PollingBench(args.frames, work, 2, print)
    rates: dict[str, list[float]] = {name: [] for name in VARIANTS}
    serve_s: dict[str, list[float]] = {name: [] for name in VARIANTS[1:]}
    try:
        for name in VARIANTS:  # warm-up
            runs.clear()
            getattr(runs, name)(paths[:100])
        for round_ in range(args.rounds):
            # The two clients swap places every round: neither always follows the floor.
            order = VARIANTS if round_ % 2 == 0 else (VARIANTS[0], *VARIANTS[:0:-1])
            for name in order:
                before = serve_cpu_s()
                rate, _ = measures._timed(runs, getattr(runs, name), paths)
                rates[name].append(rate)
                if name in serve_s:
                    serve_s[name].append(serve_cpu_s() - before)
            floor = rates["turbo_floor"][-1]
            print(f"round {round_ + 1}: floor {floor:.1f} img/s, "
                  + ", ".join(f"{n} / floor {rates[n][-1] / floor:.3f} "
                              f"(proxy+replica {serve_s[n][-1]:.1f} CPU-s)" for n in serve_s),
                  flush=True)  # fmt: skip
    finally:
        runs.close()
        shutil.rmtree(work, ignore_errors=True)
    for name, cpu in serve_s.items():
        ratios = [rate / floor for rate, floor in zip(rates[name], rates["turbo_floor"])]
        print(f"{name:12} / floor: median {statistics.median(ratios):.3f}, per round "
              f"{[round(r, 3) for r in ratios]}; proxy+replica CPU-s per job "
              f"{[round(c, 1) for c in cpu]}")  # fmt: skip


if __name__ == "__main__":
    main()
