"""`motoray serve` refusing to start: without a token, or with TLS it cannot apply.

(`motoray serve` owning its Ray, over HTTPS, and its clean shutdown: test_serve_alone.py.)
"""

from __future__ import annotations

import subprocess

from tests.api.conftest import motoray_bin, self_signed, write_config


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

    cert, key = self_signed(tmp_path)
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
