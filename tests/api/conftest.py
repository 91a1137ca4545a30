"""The API two ways: a live service, and the same FastAPI app in this process.

Live: one real Ray cluster and one real `motoray serve` for the API tests, on 127.0.0.1.
The cluster is a `ray start --head --block` child (motoray.server.start_local_ray: own temp
dir, free ports, its own Ray token), so it coexists with the in-process `ray_local` cluster
of other tests. The service joins it with --address, like a service on a real cluster; the
pytest process talks to it over HTTP only. Both are package-scoped: they start with the first
test that needs them and stop once the tests of tests/api are done. Every test that reaches
a job (or a Ray task: preview, plan) uses them, and is slow.

In process: `create_app` on a config of the same shape, its real request model and error
handlers, behind Starlette's TestClient: for the requests that never reach a job (401,
400/413/415/422, 404 of an id that cannot be a job's, the catalog, the OpenAPI document).
Its job service is a tripwire: a request that does reach a job fails the test at once,
naming the route, instead of passing by accident (a JobService would first start a Ray in
this process, to reserve room on the job board). No cluster: these tests are fast.
"""

from __future__ import annotations

import contextlib
import datetime
import ipaddress
import secrets
import shutil
import signal
import subprocess
import sys
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import psutil
import pytest
import yaml

from motoray.server import LocalRay, start_local_ray
from motoray.waiting import wait_until
from tests.conftest import last_test_using
from tests.service import spawn_service

FRAMES = 6
FRAME_SIZE = (320, 180)  # small: API tests are about the service, not pixels
TERMINAL = ("SUCCEEDED", "FAILED", "STOPPED")


class _EditableConfig:
    config_path: Path

    @contextlib.contextmanager
    def edited_config(self, edit: Callable[[dict], None]) -> Iterator[None]:
        """Change the app's config file; put the original back afterwards."""
        original = self.config_path.read_text()
        config = yaml.safe_load(original)
        edit(config)
        self.config_path.write_text(yaml.safe_dump(config))
        try:
            yield
        finally:
            self.config_path.write_text(original)

    def motogp_from(self, folder: str):
        """The MotoGP source read from `folder` (e.g. the long source) for the duration."""
        return self.edited_config(lambda config: config["sources"]["MotoGP"].update(uri=folder))


@dataclass
class Service(_EditableConfig):
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
        return self.processes_with("ServeReplica:motoray:MotorayAPI")

    def processes_with(self, text: str) -> list[int]:
        """PIDs of the cluster's processes whose command line holds `text`."""
        pids = []
        for process in psutil.Process(self.ray.process.pid).children(recursive=True):
            with contextlib.suppress(psutil.Error):
                if text in " ".join(process.cmdline()):
                    pids.append(process.pid)
        return pids


@dataclass
class InProcessApp(_EditableConfig):
    """The service's FastAPI app in this process; see the module docstring."""

    app: object
    token: str
    config_path: Path

    def client(self, token: str | None = "default"):
        with warnings.catch_warnings():  # "use httpx2": the httpx it takes is what we have
            warnings.filterwarnings("ignore", "Using `httpx` with `starlette.testclient`")
            from starlette.testclient import TestClient

        token = self.token if token == "default" else token
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return TestClient(self.app, headers=headers)


class JobsTripwire:
    """The in-process app's job service: these requests must never reach a job."""

    def __getattr__(self, name: str):
        def reached(*args, **kwargs):
            raise AssertionError(
                f"JobService.{name}{args!r} called: this request reaches a job, so it belongs "
                "on the live service (the `service` / `api` fixtures)"
            )

        return reached


def ray_job_ids(ray: LocalRay) -> set[str]:
    """Every job Ray's job API knows on the cluster, by submission id."""
    headers = {"Authorization": f"Bearer {ray.env['RAY_AUTH_TOKEN']}"}
    response = httpx.get(f"{ray.dashboard_url}/api/jobs/", headers=headers, timeout=60)
    return {job["submission_id"] for job in response.raise_for_status().json()}


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


def self_signed(directory: Path) -> tuple[Path, Path]:
    """A throwaway certificate for 127.0.0.1 (its own CA): (cert.pem, key.pem) in `directory`."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


def start_service(
    config_path: Path,
    token: str,
    env: dict[str, str],
    *args: str,
    verify: str | bool = True,
    timeout: float = 240,
) -> tuple[subprocess.Popen, str, Path]:
    """tests.service.spawn_service for a test: a service that does not come up fails it."""
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
        # Its whole tree: a `motoray serve` killed alone leaves the Ray it started running
        # (seen: an orphaned cluster idling through the rest of the session and after).
        tree = []
        with contextlib.suppress(psutil.Error):
            tree = psutil.Process(process.pid).children(recursive=True)
        for child in tree:
            with contextlib.suppress(psutil.Error):
                child.kill()
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


# The package's cluster and service. Their tests run one after the other (tests/conftest.py
# sorts them first), so both stop after the last of them, not when this worker leaves
# tests/api: an idle cluster and service take ~0.6 of a core beside the next modules' own.
_cluster_and_service = contextlib.ExitStack()


@pytest.hookimpl(trylast=True)  # after the tests' own fixtures are torn down
def pytest_runtest_teardown(item: pytest.Item, nextitem: pytest.Item | None) -> None:
    if last_test_using("api_ray", item, nextitem):
        _cluster_and_service.close()


@pytest.fixture(scope="package")
def api_ray() -> Iterator[LocalRay]:
    yield _cluster_and_service.enter_context(own_ray())
    _cluster_and_service.close()  # if the hook above did not already


@pytest.fixture(scope="package")
def service(api_ray, tmp_path_factory) -> Iterator[Service]:
    from motoray.sample_data import write_sample_frames

    root = tmp_path_factory.mktemp("api")
    write_sample_frames(root / "MotoGP", FRAMES, FRAME_SIZE)
    config_path = write_config(root / "motoray.yaml", {"MotoGP": root / "MotoGP"})
    token = secrets.token_urlsafe(24)
    process, url, log_path = start_service(
        config_path, token, api_ray.env, "--address", api_ray.address
    )
    _cluster_and_service.callback(_stopped_cleanly, process, log_path)
    yield Service(url, token, config_path, api_ray, process, log_path)
    _cluster_and_service.close()


def _stopped_cleanly(process: subprocess.Popen, log_path: Path) -> None:
    assert stop_service(process) == 0, log_path.read_text()


LONG_FRAMES = 1200


@pytest.fixture(scope="package")
def long_source(tmp_path_factory) -> str:
    """A job long enough (seconds, on 2 cores) to be caught running; the shared 6 frames take
    well under a second. Copies of 10 pictures: cheap to write."""
    from motoray.sample_data import write_sample_frames

    folder = tmp_path_factory.mktemp("long")
    write_sample_frames(folder, LONG_FRAMES, (1280, 720), unique=10)
    return str(folder)


@pytest.fixture
def api(service) -> Iterator[httpx.Client]:
    with service.client() as client:
        yield client


def in_process_app(root: Path) -> InProcessApp:
    """The app on a config like the live service's (source MotoGP, max_pending_jobs 8)."""
    from motoray.api.app import create_app
    from motoray.sample_data import write_sample_frames

    write_sample_frames(root / "MotoGP", FRAMES, FRAME_SIZE)
    config_path = write_config(root / "motoray.yaml", {"MotoGP": root / "MotoGP"})
    token = secrets.token_urlsafe(24)
    app = create_app(str(config_path), token, jobs=JobsTripwire())  # type: ignore[arg-type]
    return InProcessApp(app, token, config_path)


@pytest.fixture(scope="package")
def app(tmp_path_factory) -> InProcessApp:
    return in_process_app(tmp_path_factory.mktemp("app"))


@pytest.fixture
def app_api(app):
    """A client of the in-process app with the right token."""
    with app.client() as client:
        yield client


def post_json(client: httpx.Client, body, path: str = "/data_prep") -> httpx.Response:
    import json

    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    return client.post(path, content=content, headers={"Content-Type": "application/json"})


def job_status(client: httpx.Client, job_id: str) -> dict | None:
    """GET a job's status; None while the API cannot answer (restarting: 5xx, refused)."""
    try:
        response = client.get(f"/data_prep/{job_id}")
    except httpx.TransportError:
        return None
    if response.status_code >= 500:
        return None
    if response.status_code != 200:
        raise AssertionError(f"GET {job_id}: {response.status_code} {response.text}")
    return response.json()


def wait_for(
    client: httpx.Client,
    job_id: str,
    states=TERMINAL,
    timeout: float = 240,
    poll_s: float = 0.2,
    seen: list[str] | None = None,
) -> dict:
    """Poll a job until it is in one of `states` (motoray.waiting.wait_until); tolerates a
    restarting API. `seen`, if given, collects every state observed on the way."""
    last: dict | None = None

    def arrived() -> dict | None:
        nonlocal last
        status = job_status(client, job_id)
        if status is None:
            return None
        last = status
        if seen is not None and (not seen or seen[-1] != status["state"]):
            seen.append(status["state"])
        return status if status["state"] in states else None

    try:
        return wait_until(arrived, timeout, interval=poll_s, what=f"job {job_id} in {states}")
    except TimeoutError as e:
        raise AssertionError(f"{e}; last: {last}") from None
