"""schemathesis against the live /openapi.json with --checks all (bounded: < 2 min)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

CONFIG = Path(__file__).with_name("schemathesis.toml")
HOOKS = Path(__file__).with_name("schemathesis_hooks.py")


def test_openapi_contract_holds(service, tmp_path):
    command = [
        str(Path(sys.executable).with_name("schemathesis")),
        "--config-file", str(CONFIG),
        "--no-color",
        "run", f"{service.url}/openapi.json",
        "--checks", "all",
        "--header", f"Authorization: Bearer {service.token}",
        "--max-examples", "10",
        "--seed", "1",
        "--workers", "1",
        "--request-timeout", "60",
    ]  # fmt: skip
    env = {**os.environ, "SCHEMATHESIS_HOOKS": str(HOOKS)}
    result = subprocess.run(  # in tmp_path: schemathesis keeps a cache in its working directory
        command, capture_output=True, text=True, timeout=300, env=env, cwd=tmp_path
    )
    assert result.returncode == 0, result.stdout[-8000:] + result.stderr[-2000:]
