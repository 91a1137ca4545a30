"""The spot watcher against a real IMDSv2-speaking HTTP server on 127.0.0.1."""

from __future__ import annotations

import logging
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from motoray.cluster.spot_watcher import (
    DRAIN_REASON,
    MetadataClient,
    Notice,
    deadline_seconds,
    drain_argv,
    parse_notice,
    watch,
)

TOKEN = "AQAEAFakeToken=="
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


def test_drain_argv() -> None:
    assert drain_argv(90) == [
        "ray", "drain-node",
        "--reason", "DRAIN_NODE_REASON_PREEMPTION",
        "--reason-message", "spot interruption",
        "--deadline-remaining-seconds", "90",
    ]  # fmt: skip
    assert flag(drain_argv(5, node_id="ab12"), "--node-id") == "ab12"


@pytest.mark.parametrize("node_id", [None, "ab12"])
def test_drain_argv_parses_with_rays_own_cli(node_id: str | None) -> None:
    # Parse (without running) against Ray's click command: catches renamed flags or reasons.
    from ray.scripts.scripts import drain_node

    argv = drain_argv(90, node_id)
    assert argv[:2] == ["ray", "drain-node"]
    params = drain_node.make_context("drain-node", argv[2:]).params
    assert params["reason"] == DRAIN_REASON
    assert params["deadline_remaining_seconds"] == 90
    assert params["node_id"] == node_id


@pytest.mark.parametrize("imds", [[404, 404, lambda: notice_in(120)]], indirect=True)
def test_drains_once_when_notice_appears(imds: FakeIMDS) -> None:
    runner = Recorder()
    argv = watch(MetadataClient(imds.url), interval=0.01, runner=runner, max_polls=50)

    assert runner.calls == [argv]  # exactly once, and the loop stopped after it
    assert argv is not None
    assert flag(argv, "--reason") == DRAIN_REASON
    assert flag(argv, "--reason-message") == "spot interruption"
    assert 110 <= int(flag(argv, "--deadline-remaining-seconds")) <= 120
    assert "--node-id" not in argv
    assert len(imds.action_tokens) == 3  # polled through both 404s first
    assert imds.token_puts == ["21600"]  # one token, reused
    assert set(imds.action_tokens) == {TOKEN}


@pytest.mark.parametrize("imds", [[lambda: notice_in(60)]], indirect=True)
def test_failed_drain_is_retried(imds: FakeIMDS) -> None:
    runner = Recorder(codes=[1, 0])
    argv = watch(
        MetadataClient(imds.url), interval=0.01, node_id="ab12", runner=runner, max_polls=50
    )
    assert len(runner.calls) == 2
    assert argv is not None and flag(argv, "--node-id") == "ab12"


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
        argv = watch(MetadataClient(imds.url), interval=0.01, runner=runner, max_polls=50)
    assert runner.calls == [argv]  # only the well-formed notice drained
    assert caplog.text.count("malformed spot notice") == 2
    assert "HTTP Error 500" in caplog.text


@pytest.mark.parametrize("imds", [[b"{not json"]], indirect=True)
def test_malformed_notice_never_drains(imds: FakeIMDS) -> None:
    runner = Recorder()
    assert watch(MetadataClient(imds.url), interval=0, runner=runner, max_polls=3) is None
    assert runner.calls == []
    assert len(imds.action_tokens) == 3


def test_unreachable_metadata_server_keeps_polling(caplog: pytest.LogCaptureFixture) -> None:
    with socket.socket() as s:  # a port that was free a moment ago: connection refused
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    runner = Recorder()
    client = MetadataClient(f"http://127.0.0.1:{port}", timeout=0.5)
    with caplog.at_level(logging.WARNING, logger="motoray.spot_watcher"):
        assert watch(client, interval=0, runner=runner, max_polls=3) is None
    assert runner.calls == []
    assert caplog.text.count("spot watcher:") == 3


def test_cli_help_runs_as_module() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "motoray.cluster.spot_watcher", "--help"],
        capture_output=True, text=True, check=True, timeout=60,
    )  # fmt: skip
    for option in ("--metadata-url", "--interval", "--node-id"):
        assert option in out.stdout
