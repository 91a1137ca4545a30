"""The spot watcher against a real IMDSv2-speaking HTTP server on 127.0.0.1; finding its
Ray node from a raylet's own arguments; and, once, end to end against a real Ray head
with token auth."""

from __future__ import annotations

import json
import logging
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from motoray.cluster.spot_watcher import (
    DRAIN_REASON,
    LocalNode,
    MetadataClient,
    Notice,
    Raylet,
    RayNode,
    deadline_seconds,
    drain_argv,
    local_raylets,
    parse_notice,
    watch,
)
from motoray.commands import installed_command
from motoray.server import free_port
from motoray.waiting import wait_until

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "AQAEAFakeToken=="
NODE = RayNode("a1" * 28, "10.0.1.5:6379")  # Ray node ids are 28 bytes
ACTION_PATH = "/latest/meta-data/spot/instance-action"


class FakeIMDS(ThreadingHTTPServer):
    """Answers the token PUT, then serves `responses` in turn (the last one repeats)."""

    def __init__(self, responses: list[int | bytes]) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.responses = responses
        self.token_puts: list[str | None] = []
        self.action_tokens: list[str | None] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def next_response(self) -> int | bytes:
        return self.responses.pop(0) if len(self.responses) > 1 else self.responses[0]


class _Handler(BaseHTTPRequestHandler):
    server: FakeIMDS

    def do_PUT(self) -> None:
        if self.path != "/latest/api/token":
            return self._reply(404)
        ttl = self.headers.get("X-aws-ec2-metadata-token-ttl-seconds")
        self.server.token_puts.append(ttl)
        self._reply(200, TOKEN.encode()) if ttl else self._reply(400)

    def do_GET(self) -> None:
        if self.path != ACTION_PATH:
            return self._reply(404)
        token = self.headers.get("X-aws-ec2-metadata-token")
        self.server.action_tokens.append(token)
        if token != TOKEN:
            return self._reply(401)
        resp = self.server.next_response()
        self._reply(resp) if isinstance(resp, int) else self._reply(200, resp)

    def _reply(self, code: int, body: bytes = b"") -> None:
        self.send_response(code)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:  # keep pytest output clean
        pass


@pytest.fixture
def imds(request: pytest.FixtureRequest) -> Iterator[FakeIMDS]:
    # Answers may be callables, evaluated now: a notice's deadline is relative to the test run.
    server = FakeIMDS([r() if callable(r) else r for r in request.param])
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


class Recorder:
    def __init__(self, codes: list[int] | None = None) -> None:
        self.calls: list[list[str]] = []
        self.codes = codes or [0]

    def __call__(self, argv: list[str]) -> int:
        self.calls.append(argv)
        return self.codes.pop(0) if len(self.codes) > 1 else self.codes[0]


def notice_in(seconds: int) -> bytes:
    when = datetime.now(UTC) + timedelta(seconds=seconds)
    return f'{{"action": "terminate", "time": "{when:%Y-%m-%dT%H:%M:%SZ}"}}'.encode()


def flag(argv: list[str], name: str) -> str:
    return argv[argv.index(name) + 1]


def test_parse_notice_and_deadline() -> None:
    notice = parse_notice(b'{"action": "terminate", "time": "2026-11-26T10:37:00Z"}')
    assert notice == Notice("terminate", datetime(2026, 11, 26, 10, 37, tzinfo=UTC))
    assert deadline_seconds(notice, datetime(2026, 11, 26, 10, 35, 0, 500, tzinfo=UTC)) == 119
    assert deadline_seconds(notice, datetime(2026, 11, 26, 10, 40, tzinfo=UTC)) == 0


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"<html>",
        b"[]",
        b'{"action": "terminate"}',
        b'{"action": "terminate", "time": "soon"}',
        b'{"action": "terminate", "time": "2026-11-26T10:37:00"}',  # no timezone
        b'{"action": 3, "time": "2026-11-26T10:37:00Z"}',
    ],
)
def test_parse_notice_rejects_malformed(body: bytes) -> None:
    with pytest.raises(ValueError, match="malformed spot notice"):
        parse_notice(body)


def node_is(node: RayNode | None):
    return lambda: node


def test_drain_argv() -> None:
    assert drain_argv(90, "ab12", "10.0.1.5:6379") == [
        "ray", "drain-node",
        "--address", "10.0.1.5:6379",
        "--node-id", "ab12",
        "--reason", "DRAIN_NODE_REASON_PREEMPTION",
        "--reason-message", "spot interruption",
        "--deadline-remaining-seconds", "90",
    ]  # fmt: skip
    assert "--address" not in drain_argv(5, "ab12")
    assert flag(drain_argv(5, "ab12"), "--node-id") == "ab12"  # always named: see below


@pytest.mark.parametrize("address", [None, "10.0.1.5:6379"])
def test_drain_argv_parses_with_rays_own_cli(address: str | None) -> None:
    # Parse (without running) against Ray's click command: catches renamed flags or reasons.
    from ray.scripts.scripts import drain_node

    argv = drain_argv(90, NODE.node_id, address)
    assert argv[:2] == ["ray", "drain-node"]
    params = drain_node.make_context("drain-node", argv[2:]).params
    assert params["reason"] == DRAIN_REASON
    assert params["deadline_remaining_seconds"] == 90
    assert params["address"] == address
    # With a node id, Ray's drain_node never calls ray.get_runtime_context(), which would
    # connect a driver to the cluster first (seconds of the two-minute notice).
    assert params["node_id"] == NODE.node_id


@pytest.mark.parametrize("imds", [[404, 404, lambda: notice_in(120)]], indirect=True)
def test_drains_once_when_notice_appears(imds: FakeIMDS) -> None:
    runner = Recorder()
    argv = watch(
        MetadataClient(imds.url), node_is(NODE), interval=0.01, runner=runner, max_polls=50
    )

    assert runner.calls == [argv]  # exactly once, and the loop stopped after it
    assert argv is not None
    assert flag(argv, "--node-id") == NODE.node_id
    assert flag(argv, "--address") == NODE.gcs_address
    assert flag(argv, "--reason") == DRAIN_REASON
    assert flag(argv, "--reason-message") == "spot interruption"
    assert 110 <= int(flag(argv, "--deadline-remaining-seconds")) <= 120
    assert len(imds.action_tokens) == 3  # polled through both 404s first
    assert imds.token_puts == ["21600"]  # one token, reused
    assert set(imds.action_tokens) == {TOKEN}


@pytest.mark.parametrize("imds", [[lambda: notice_in(60)]], indirect=True)
def test_failed_drain_is_retried(imds: FakeIMDS) -> None:
    runner = Recorder(codes=[1, 0])
    argv = watch(
        MetadataClient(imds.url), node_is(NODE), interval=0.01, runner=runner, max_polls=50
    )
    assert len(runner.calls) == 2
    assert argv is not None and flag(argv, "--node-id") == NODE.node_id


@pytest.mark.parametrize(
    "imds",
    [[404, b"garbage", b'{"action": "terminate"}', 500, lambda: notice_in(100)]],
    indirect=True,
)
def test_bad_answers_are_logged_and_polling_goes_on(
    imds: FakeIMDS, caplog: pytest.LogCaptureFixture
) -> None:
    runner = Recorder()
    with caplog.at_level(logging.WARNING, logger="motoray.spot_watcher"):
        argv = watch(
            MetadataClient(imds.url), node_is(NODE), interval=0.01, runner=runner, max_polls=50
        )
    assert runner.calls == [argv]  # only the well-formed notice drained
    assert caplog.text.count("malformed spot notice") == 2
    assert "HTTP Error 500" in caplog.text


@pytest.mark.parametrize("imds", [[b"{not json"]], indirect=True)
def test_malformed_notice_never_drains(imds: FakeIMDS) -> None:
    runner = Recorder()
    client = MetadataClient(imds.url)
    assert watch(client, node_is(NODE), interval=0, runner=runner, max_polls=3) is None
    assert runner.calls == []
    assert len(imds.action_tokens) == 3


def test_unreachable_metadata_server_keeps_polling(caplog: pytest.LogCaptureFixture) -> None:
    with socket.socket() as s:  # a port that was free a moment ago: connection refused
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    runner = Recorder()
    client = MetadataClient(f"http://127.0.0.1:{port}", timeout=0.5)
    with caplog.at_level(logging.WARNING, logger="motoray.spot_watcher"):
        assert watch(client, node_is(NODE), interval=0, runner=runner, max_polls=3) is None
    assert runner.calls == []
    assert caplog.text.count("spot watcher:") == 3


def test_cli_help_runs_as_module() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "motoray.cluster.spot_watcher", "--help"],
        capture_output=True, text=True, check=True, timeout=60,
    )  # fmt: skip
    for option in ("--metadata-url", "--interval", "--address", "--node-id"):
        assert option in out.stdout


@pytest.mark.parametrize("imds", [[lambda: notice_in(90)]], indirect=True)
def test_notice_before_ray_is_up_drains_once_the_node_appears(
    imds: FakeIMDS, caplog: pytest.LogCaptureFixture
) -> None:
    # The watcher starts in setup commands, before `ray start`: no node yet for a while.
    answers = [None, None, NODE]
    runner = Recorder()
    with caplog.at_level(logging.WARNING, logger="motoray.spot_watcher"):
        argv = watch(
            MetadataClient(imds.url),
            lambda: answers.pop(0) if len(answers) > 1 else answers[0],
            interval=0.01,
            runner=runner,
            max_polls=50,
        )
    assert caplog.text.count("no Ray node here to drain") == 2
    assert runner.calls == [argv]
    assert argv is not None and flag(argv, "--node-id") == NODE.node_id


# Finding the node: processes that look like raylets to the scan (argv[0] named `raylet`,
# Ray's flags), started for real. A raylet's worker command is one argument holding other
# processes' flags: the decoy in it must not be read.


@contextmanager
def fake_raylet(tmp_path: Path, node_id: str, gcs: str) -> Iterator[subprocess.Popen[bytes]]:
    exe = tmp_path / "bin" / "raylet"
    if not exe.exists():
        exe.parent.mkdir(exist_ok=True)
        exe.symlink_to(sys.executable)
    decoy = f"--python_worker_command={sys.executable} w.py --node_id=decoy --gcs-address=decoy"
    argv = [str(exe), "-c", "import time; time.sleep(60)", f"--node_id={node_id}"]
    proc = subprocess.Popen([*argv, decoy, f"--gcs-address={gcs}"])
    cmdline = Path(f"/proc/{proc.pid}/cmdline")
    # Popen returns after the fork: until the exec, the child shows this process's command.
    wait_until(lambda: f"--node_id={node_id}".encode() in cmdline.read_bytes(), 10, what="exec")
    try:
        yield proc
    finally:
        proc.kill()
        proc.wait()


def unique_gcs() -> str:
    return f"127.0.0.{secrets.randbelow(200) + 2}:{free_port()}"  # no real raylet has it


def test_local_raylets_reads_each_raylets_own_flags(tmp_path: Path) -> None:
    gcs_a, gcs_b = unique_gcs(), unique_gcs()
    with fake_raylet(tmp_path, "a1" * 28, gcs_a) as a, fake_raylet(tmp_path, "b2" * 28, gcs_b):
        found = {r.node.gcs_address: r for r in local_raylets()}
        assert found[gcs_a].node == RayNode("a1" * 28, gcs_a)
        assert found[gcs_b].node == RayNode("b2" * 28, gcs_b)
        assert found[gcs_a].pid == a.pid and found[gcs_a].running()
        assert "decoy" not in {r.node.node_id for r in found.values()}

        ours = {gcs_a, gcs_b}
        node = LocalNode(scan=lambda: [r for r in local_raylets() if r.node.gcs_address in ours])
        with pytest.raises(ValueError, match="2 raylets here"):
            node()  # two clusters on one host: which one is not guessed
        assert LocalNode(gcs_b)() == RayNode("b2" * 28, gcs_b)
    assert not found[gcs_a].running()


def test_node_is_learnt_once_and_again_after_ray_restarts(tmp_path: Path) -> None:
    gcs = unique_gcs()
    scans: list[list[Raylet]] = []

    def scan() -> list[Raylet]:
        scans.append([r for r in local_raylets() if r.node.gcs_address == gcs])
        return scans[-1]

    node = LocalNode(gcs, scan=scan)
    assert node() is None  # before `ray start`
    with fake_raylet(tmp_path, "c3" * 28, gcs):
        assert [node() for _ in range(5)] == [RayNode("c3" * 28, gcs)] * 5
        assert len(scans) == 2  # learnt once; the other polls only saw the raylet still run
    # `ray up` re-runs `ray stop; ray start` on a live node: a new raylet, a new node id.
    with fake_raylet(tmp_path, "d4" * 28, gcs):
        assert node() == RayNode("d4" * 28, gcs)
        assert len(scans) == 3


# End to end: a real Ray head with token auth, the watcher as cluster.yaml starts it (its own
# process, the token from RAY_AUTH_MODE / RAY_AUTH_TOKEN_PATH), the real `ray drain-node`.

GCS_STATE = """
import json, sys
from ray._raylet import GcsClient
from ray.core.generated.common_pb2 import NodeDeathInfo
from ray.core.generated.gcs_pb2 import GcsNodeInfo
gcs = GcsClient(address=sys.argv[1])
nodes = {
    node_id.hex(): {
        "state": GcsNodeInfo.GcsNodeState.Name(info.state),
        "death": NodeDeathInfo.Reason.Name(info.death_info.reason),
        "message": info.death_info.reason_message,
    }
    for node_id, info in gcs.get_all_node_info(timeout=30).items()
}
print(json.dumps({"nodes": nodes, "jobs": len(gcs.get_all_job_info(timeout=30))}))
"""


def gcs_state(address: str, env: dict[str, str]) -> dict:
    # Its own process: Ray keeps one token per process, and pytest's may hold another.
    out = subprocess.run(
        [sys.executable, "-c", GCS_STATE, address],
        env=env, capture_output=True, text=True, check=True, timeout=120,
    )  # fmt: skip
    return json.loads(out.stdout.splitlines()[-1])


@contextmanager
def ray_head_with_token_auth(tmp_path: Path) -> Iterator[tuple[str, dict[str, str]]]:
    """`ray start --head --block` with RAY_AUTH_MODE=token and a token file; (GCS, env)."""
    token = tmp_path / "ray_auth_token"
    token.touch(mode=0o600)
    token.write_text(secrets.token_hex(32) + "\n")  # what `openssl rand -hex 32 >` writes
    ray_tmp = tempfile.mkdtemp(prefix="mr-spot-", dir="/tmp")  # socket paths: 107 bytes max
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RAY_ADDRESS", "RAY_AUTH"))}
    env.update(
        HOME=str(tmp_path),  # no ~/.ray/auth_token but the one named below
        PATH=f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}",
        RAY_TMPDIR=ray_tmp,
        RAY_AUTH_MODE="token",
        RAY_AUTH_TOKEN_PATH=str(token),
    )
    ports = {name: free_port() for name in ("gcs", "client", "agent")}
    command = [
        *installed_command("ray"), "start", "--head", "--block", "--disable-usage-stats",
        "--num-cpus=0", "--include-dashboard=false", f"--port={ports['gcs']}",
        f"--ray-client-server-port={ports['client']}",
        f"--dashboard-agent-listen-port={ports['agent']}", f"--temp-dir={ray_tmp}/ray",
    ]  # fmt: skip
    with (tmp_path / "head.log").open("wb") as log:
        head = subprocess.Popen(
            command, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        address_file = Path(ray_tmp) / "ray" / "ray_current_cluster"

        def started() -> bool:
            assert head.poll() is None, (tmp_path / "head.log").read_text()[-3000:]
            return address_file.exists() and bool(address_file.read_text().strip())

        wait_until(started, 180, interval=0.5, what="the Ray head to start")
        yield address_file.read_text().strip(), env
    finally:
        head.terminate()  # `ray start --block` stops its own processes on SIGTERM
        with suppress(subprocess.TimeoutExpired):
            head.wait(timeout=30)
        with suppress(ProcessLookupError):
            os.killpg(head.pid, signal.SIGKILL)  # whatever of its group is left
        head.wait()
        shutil.rmtree(ray_tmp, ignore_errors=True)


@pytest.mark.slow
@pytest.mark.parametrize("imds", [[404, lambda: notice_in(100)]], indirect=True)
def test_drains_a_real_ray_node_with_token_auth_and_no_driver(
    imds: FakeIMDS, tmp_path: Path
) -> None:
    with ray_head_with_token_auth(tmp_path) as (gcs, env):
        (node_id,) = [r.node.node_id for r in local_raylets() if r.node.gcs_address == gcs]
        assert gcs_state(gcs, env)["nodes"][node_id]["state"] == "ALIVE"

        watcher = subprocess.run(
            [sys.executable, "-m", "motoray.cluster.spot_watcher", "--metadata-url", imds.url,
             "--interval", "0.2", "--address", gcs],
            env=env, cwd=ROOT, capture_output=True, text=True, timeout=180,
        )  # fmt: skip
        assert watcher.returncode == 0, watcher.stderr[-3000:]
        assert f"Ray node {node_id} (GCS {gcs})" in watcher.stderr
        assert f"--node-id {node_id}" in watcher.stderr  # the "drained: ray drain-node ..." line

        state = gcs_state(gcs, env)
        # Drained for preemption: an idle node's raylet then leaves at once.
        assert state["nodes"][node_id] == {
            "state": "DEAD",
            "death": "AUTOSCALER_DRAIN_PREEMPTED",
            "message": "spot interruption",
        }
        # No driver ever connected: `ray drain-node` without --node-id would have made one
        # (ray.get_runtime_context() starts a job), and the GCS would list its job.
        assert state["jobs"] == 0
