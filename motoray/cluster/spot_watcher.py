"""Drain this Ray node as soon as EC2 announces a spot interruption.

EC2 gives a spot instance about two minutes' notice through instance metadata.
Draining the node at once tells Ray to stop placing work there and to reschedule
what it can, so a job loses only what is in flight instead of failing later on
a dead node. cluster.yaml starts one watcher on every spot worker:

    python -m motoray.cluster.spot_watcher [--metadata-url URL] [--interval S] [--node-id ID]
"""

from __future__ import annotations

import argparse
import http.client
import json
import logging
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

log = logging.getLogger("motoray.spot_watcher")

METADATA_URL = "http://169.254.169.254"
TOKEN_TTL_S = 21600  # the IMDSv2 maximum; one token lasts the instance's whole notice window
POLL_INTERVAL_S = 5.0  # AWS suggests polling every 5 s: the notice comes only 2 min ahead
DRAIN_REASON = "DRAIN_NODE_REASON_PREEMPTION"
DRAIN_MESSAGE = "spot interruption"

Runner = Callable[[list[str]], int]


@dataclass(frozen=True)
class Notice:
    action: str  # terminate, stop or hibernate: the node goes away in every case
    time: datetime


def parse_notice(body: str | bytes) -> Notice:
    """The instance-action document, e.g. {"action": "terminate", "time": "2026-...Z"}."""
    try:
        doc = json.loads(body)
        action, when = doc["action"], datetime.fromisoformat(doc["time"])
    except (ValueError, TypeError, KeyError) as e:
        raise ValueError(f"malformed spot notice {body!r}: {e}") from None
    if not isinstance(action, str) or when.tzinfo is None:
        raise ValueError(f"malformed spot notice {body!r}")
    return Notice(action, when)


def deadline_seconds(notice: Notice, now: datetime) -> int:
    """Whole seconds left before EC2 takes the instance (0 if already past)."""
    return max(0, int((notice.time - now).total_seconds()))


def drain_argv(deadline_s: int, node_id: str | None = None) -> list[str]:
    # Without --node-id, `ray drain-node` drains the node it runs on, which is this one.
    argv = ["ray", "drain-node", "--reason", DRAIN_REASON, "--reason-message", DRAIN_MESSAGE]
    argv += ["--deadline-remaining-seconds", str(deadline_s)]
    return [*argv, "--node-id", node_id] if node_id else argv


def run_command(argv: list[str]) -> int:
    return subprocess.run(argv, check=False, timeout=60).returncode


class MetadataClient:
    """IMDSv2: a session token from PUT /latest/api/token signs every GET."""

    def __init__(self, base_url: str = METADATA_URL, timeout: float = 2.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        # Metadata is link-local: never send it through an HTTP(S)_PROXY from the environment.
        self._opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        self._token: str | None = None
        self._token_expiry = 0.0

    def _open(self, req: urllib.request.Request) -> bytes:
        with self._opener.open(req, timeout=self.timeout) as resp:
            return resp.read()

    def token(self) -> str:
        if self._token is None or time.monotonic() >= self._token_expiry:
            req = urllib.request.Request(
                f"{self.base_url}/latest/api/token",
                method="PUT",
                headers={"X-aws-ec2-metadata-token-ttl-seconds": str(TOKEN_TTL_S)},
            )
            self._token = self._open(req).decode().strip()
            self._token_expiry = time.monotonic() + TOKEN_TTL_S - 60
        return self._token

    def instance_action(self) -> bytes | None:
        """The pending interruption notice, or None while there is none (404)."""
        req = urllib.request.Request(
            f"{self.base_url}/latest/meta-data/spot/instance-action",
            headers={"X-aws-ec2-metadata-token": self.token()},
        )
        try:
            return self._open(req)
        except urllib.error.HTTPError as e:
            if e.code == 404:
                return None
            if e.code == 401:  # token expired or revoked: fetch a new one next time
                self._token = None
            raise


def watch(
    client: MetadataClient,
    *,
    interval: float = POLL_INTERVAL_S,
    node_id: str | None = None,
    runner: Runner = run_command,
    now: Callable[[], datetime] = lambda: datetime.now(UTC),
    sleep: Callable[[float], None] = time.sleep,
    max_polls: int | None = None,
) -> list[str] | None:
    """Poll until a notice arrives and one drain succeeds; return the drain argv.

    A metadata outage, a malformed notice or a failed drain is logged and retried on
    the next poll: the watcher must outlive every transient fault. `max_polls` bounds
    the loop (None in production); it then returns None.
    """
    polls = 0
    while max_polls is None or polls < max_polls:
        polls += 1
        try:
            body = client.instance_action()
            if body is not None:
                notice = parse_notice(body)
                argv = drain_argv(deadline_seconds(notice, now()), node_id)
                log.warning("spot %s at %s: draining this node", notice.action, notice.time)
                code = runner(argv)
                if code == 0:
                    log.warning("drained: %s", " ".join(argv))
                    return argv
                log.error("ray drain-node exited %s; retrying", code)
        except (OSError, http.client.HTTPException, ValueError, subprocess.SubprocessError) as e:
            # URLError, HTTPError and timeouts are OSErrors; ValueError is a bad notice.
            log.warning("spot watcher: %s", e)
        sleep(interval)
    return None


def main(args: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--metadata-url", default=METADATA_URL)
    parser.add_argument("--interval", type=float, default=POLL_INTERVAL_S, help="seconds")
    parser.add_argument("--node-id", help="Ray node to drain (default: the local one)")
    opts = parser.parse_args(args)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    log.info("watching %s every %ss", opts.metadata_url, opts.interval)
    watch(MetadataClient(opts.metadata_url), interval=opts.interval, node_id=opts.node_id)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
