"""`motoray serve` alone: starts a local Ray, serves HTTPS, takes it all down on SIGTERM."""

from __future__ import annotations

import datetime
import ipaddress
import json
import secrets
import subprocess
from pathlib import Path

import httpx
import psutil
import pytest

from motoray.pipeline.layout import JOB_FILE
from tests.api.conftest import motoray_bin, start_service, stop_service, wait_for, write_config


def _self_signed(directory: Path) -> tuple[Path, Path]:
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


@pytest.fixture
def tls_service(tmp_path):
    from motoray.sample_data import write_sample_frames

    # 60 x 1000 outputs (LONG_JOB): still running when the service stops, however busy
    # the machine; copies of 6 pictures, cheap to write.
    write_sample_frames(tmp_path / "MotoGP", 60, (320, 180), unique=6)
    cert, key = _self_signed(tmp_path)
    # relative TLS paths: resolved against the config file, like every path in it
    config = write_config(
        tmp_path / "motoray.yaml",
        {"MotoGP": tmp_path / "MotoGP"},
        tls={"certfile": cert.name, "keyfile": key.name},
    )
    token = secrets.token_urlsafe(16)
    # No --address and no RAY_ADDRESS: the service starts (and owns) a local Ray.
    env = {"RAY_AUTH_TOKEN": secrets.token_hex(16)}
    process, url, log = start_service(config, token, env, verify=str(cert))
    yield {"process": process, "url": url, "log": log, "token": token, "cert": str(cert)}
    if process.poll() is None:
        stop_service(process)


LONG_JOB = {
    "name": "MotoGP",
    "augmentations": [{"RANDOM_CROP": {"crop_dimensions": [64, 64], "target_count": 1000}}],
}


@pytest.mark.slow
def test_https_local_ray_and_clean_shutdown(tls_service):
    url, cert, token = tls_service["url"], tls_service["cert"], tls_service["token"]
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    with httpx.Client(base_url=url, headers=headers, verify=cert, timeout=60) as api:
        # Long enough to be still running when the service stops (the warm runner is quick).
        response = api.post("/data_prep", content=json.dumps(LONG_JOB))
        assert response.status_code == 202, response.text
        [job] = response.json()["jobs"]
        assert job["status_url"].startswith("https://127.0.0.1:")
        running = wait_for(api, job["job_id"], states=("RUNNING",), poll_s=0.2)
    with pytest.raises(httpx.HTTPError):  # TLS only: no plain HTTP on the port
        httpx.get(url.replace("https://", "http://") + "/healthz", timeout=10)

    # Without --wait, submit returns once the job is accepted.
    long_job = tls_service["log"].with_name("long.json")
    long_job.write_text(json.dumps(LONG_JOB))
    submitted = subprocess.run(
        [motoray_bin(), "submit", str(long_job), "--url", url,
         "--token", token, "--cacert", cert],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert submitted.returncode == 0, submitted.stderr
    assert submitted.stdout.startswith("job ")

    process = psutil.Process(tls_service["process"].pid)
    started = process.children(recursive=True)  # ray start, GCS, raylet, workers, job drivers
    assert any("gcs_server" in " ".join(p.cmdline()) for p in started)
    assert stop_service(tls_service["process"]) == 0
    log = tls_service["log"].read_text()
    assert "stopped 2 unfinished job(s)" in log, log
    _, alive = psutil.wait_procs(started, timeout=30)
    assert not alive, [p.cmdline() for p in alive]
    assert not (Path(running["output"]) / JOB_FILE).exists()  # stopped: no job.json


def test_no_token_no_service(tmp_path):
    config = write_config(tmp_path / "motoray.yaml", {})
    result = subprocess.run(
        [motoray_bin(), "serve", "--config", str(config)],
        capture_output=True,
        text=True,
        env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)},
        timeout=60,
    )
    assert result.returncode == 2
    assert "MOTORAY_API_TOKEN" in result.stderr
    assert "starting" not in result.stdout  # nothing was started


def test_tls_on_a_cluster_whose_serve_is_plain_http_is_refused(service, tmp_path):
    """Serve already runs there with its own HTTP options: TLS cannot be applied, so the
    service refuses to start (it used to keep plain HTTP and print https://), and leaves
    the running app alone."""
    import os

    cert, key = _self_signed(tmp_path)
    config = write_config(
        tmp_path / "motoray.yaml",
        {"MotoGP": tmp_path},
        tls={"certfile": str(cert), "keyfile": str(key)},
    )
    env = {**os.environ, **service.ray.env, "MOTORAY_API_TOKEN": "t" * 24}
    env.pop("RAY_ADDRESS", None)
    result = subprocess.run(
        [motoray_bin(), "serve", "--config", str(config), "--address", service.ray.address],
        capture_output=True,
        text=True,
        env=env,
        timeout=180,
    )
    assert result.returncode == 2, result.stdout + result.stderr
    assert "server.tls cannot be applied" in result.stderr
    assert "https://" not in result.stdout
    with service.client() as api:  # the app already there still answers
        assert api.get("/healthz").status_code == 200
        assert api.get("/data_sources").status_code == 200
