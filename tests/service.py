"""A `motoray serve` in a child process, for the benchmark and the tests: one way to start a
service and wait until it answers."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import httpx

from motoray.commands import installed_command
from motoray.config import TOKEN_ENV
from motoray.server import free_port
from motoray.waiting import wait_until


def spawn_service(
    config_path: Path,
    token: str,
    log_path: Path,
    *args: str,
    env: dict[str, str] | None = None,
    verify: str | bool = True,
    timeout: float = 300,
) -> tuple[subprocess.Popen, str]:
    """`motoray serve` on 127.0.0.1 (its own local Ray unless `args` has --address),
    returned once /healthz answers: (process, base URL). `verify`: a CA file for a service
    with TLS. SIGTERM to the process stops what it started."""
    port = free_port()
    env = {**os.environ, **(env or {}), TOKEN_ENV: token}
    env.pop("RAY_ADDRESS", None)  # the cluster is --address, or a new local one
    command = [*installed_command("motoray"), "serve", "--config", str(config_path)]
    command += ["--host", "127.0.0.1", "--port", str(port), *args]
    with log_path.open("wb") as log:
        process = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"{'http' if verify is True else 'https'}://127.0.0.1:{port}"

    def healthy() -> bool:
        if process.poll() is not None:
            raise RuntimeError(f"motoray serve exited:\n{_telling_part(log_path.read_text())}")
        try:
            return httpx.get(f"{url}/healthz", verify=verify, timeout=5).status_code == 200
        except httpx.HTTPError:
            return False

    try:
        wait_until(healthy, timeout, interval=0.5, what="motoray serve to answer /healthz")
    except TimeoutError:
        process.kill()
        process.wait(120)
        log = _telling_part(log_path.read_text())
        raise RuntimeError(f"motoray serve did not become healthy:\n{log}") from None
    return process, url


def _telling_part(log: str) -> str:
    """The log's head and tail: a crash's reason ("Check failed: ...") comes before its stack
    trace, which alone fills a tail."""
    return log if len(log) <= 6000 else f"{log[:3000]}\n[...]\n{log[-3000:]}"
