"""One real Ray cluster and one real `motoray serve` per session, on 127.0.0.1.

The cluster is a `ray start --head --block` child (motoray.server.start_local_ray:
own temp dir, free ports, its own Ray token), so it coexists with the in-process
`ray_local` cluster of other tests. The service joins it with --address, like a
service on a real cluster; the pytest process talks to it over HTTP only.
"""

from __future__ import annotations

import contextlib
import secrets
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import psutil
import pytest
import yaml

from motoray.bench.service import spawn_service
from motoray.server import LocalRay, start_local_ray

FRAMES = 6
FRAME_SIZE = (320, 180)  # small: API tests are about the service, not pixels
TERMINAL = ("SUCCEEDED", "FAILED", "STOPPED")


@dataclass
class Service:
    url: str
    token: str
    config_path: Path
    ray: LocalRay
    process: subprocess.Popen
    log_path: Path

    def client(self, token: str | None = "default") -> httpx.Client:
        token = self.token if token == "default" else token
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=60)

    def replica_pids(self) -> list[int]:
        """The API replica's process (a descendant of this session's `ray start`)."""
        pids = []
        for process in psutil.Process(self.ray.process.pid).children(recursive=True):
            with contextlib.suppress(psutil.Error):
                if "ServeReplica:motoray:MotorayAPI" in " ".join(process.cmdline()):
                    pids.append(process.pid)
        return pids

    @contextlib.contextmanager
    def edited_config(self, edit: Callable[[dict], None]) -> Iterator[None]:
        """Change the running service's config file; put the original back afterwards."""
        original = self.config_path.read_text()
        config = yaml.safe_load(original)
        edit(config)
        self.config_path.write_text(yaml.safe_dump(config))
        try:
            yield
        finally:
            self.config_path.write_text(original)


def motoray_bin() -> str:
    return str(Path(sys.executable).with_name("motoray"))


def write_config(path: Path, sources: dict[str, Path], **server) -> Path:
    config = {
        "sources": {name: {"uri": str(uri)} for name, uri in sources.items()},
        "output": {"uri": str(path.parent / "outputs")},
        "server": {"max_pending_jobs": 8, **server},
    }
    path.write_text(yaml.safe_dump(config))
    return path


def start_service(
    config_path: Path,
    token: str,
    env: dict[str, str],
    *args: str,
    verify: str | bool = True,
    timeout: float = 240,
) -> tuple[subprocess.Popen, str, Path]:
    """motoray.bench.service.spawn_service for a test: a service that does not come up fails it."""
    log_path = config_path.with_suffix(".serve.log")
    try:
        process, url = spawn_service(
            config_path, token, log_path, *args, env=env, verify=verify, timeout=timeout
        )
    except RuntimeError as e:
        pytest.fail(str(e))
    return process, url, log_path


def stop_service(process: subprocess.Popen, timeout: float = 120) -> int:
    process.send_signal(signal.SIGTERM)
    try:
        return process.wait(timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        raise


@contextlib.contextmanager
def own_ray() -> Iterator[LocalRay]:
    """A `ray start` cluster with its own Ray token: nothing depends on ~/.ray/auth_token."""
    env = {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(16)}
    local = start_local_ray(num_cpus=4, env=env)
    local.env.update(env)
    try:
        yield local
    finally:
        local.stop()
        shutil.rmtree(local.temp_dir, ignore_errors=True)


@pytest.fixture(scope="session")
def api_ray() -> Iterator[LocalRay]:
    with own_ray() as local:
        yield local


@pytest.fixture(scope="session")
def service(api_ray, tmp_path_factory) -> Iterator[Service]:
    from motoray.sample_data import write_sample_frames

    root = tmp_path_factory.mktemp("api")
    write_sample_frames(root / "MotoGP", FRAMES, FRAME_SIZE)
    config_path = write_config(root / "motoray.yaml", {"MotoGP": root / "MotoGP"})
    token = secrets.token_urlsafe(24)
    process, url, log_path = start_service(
        config_path, token, api_ray.env, "--address", api_ray.address
    )
    yield Service(url, token, config_path, api_ray, process, log_path)
    assert stop_service(process) == 0, log_path.read_text()


@pytest.fixture
def api(service) -> Iterator[httpx.Client]:
    with service.client() as client:
        yield client


def post_json(client: httpx.Client, body) -> httpx.Response:
    import json

    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    return client.post("/data_prep", content=content, headers={"Content-Type": "application/json"})


def wait_for(
    client: httpx.Client, job_id: str, states=TERMINAL, timeout: float = 240, poll_s: float = 0.5
) -> dict:
    """Poll a job until it is in one of `states`; tolerates a restarting API (5xx, refused)."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            response = client.get(f"/data_prep/{job_id}")
        except httpx.TransportError:
            response = None
        if response is not None and response.status_code == 200:
            last = response.json()
            if last["state"] in states:
                return last
        elif response is not None and response.status_code < 500:
            raise AssertionError(f"GET {job_id}: {response.status_code} {response.text}")
        time.sleep(poll_s)
    raise AssertionError(f"job {job_id} not in {states} after {timeout} s; last: {last}")
