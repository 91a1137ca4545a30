"""Drain this Ray node as soon as EC2 announces a spot interruption.

EC2 gives a spot instance about two minutes' notice through instance metadata.
Draining the node at once tells Ray to stop placing work there and to reschedule
what it can, so a job loses only what is in flight instead of failing later on
a dead node. cluster.yaml starts one watcher on every spot worker:

    python -m motoray.cluster.spot_watcher [--metadata-url URL] [--interval S]
                                           [--address GCS] [--node-id ID]

The drain names its node. `ray drain-node` without `--node-id` asks
`ray.get_runtime_context()` for it, which connects a whole driver to the cluster
first: seconds of the two minutes. The watcher instead reads the node id (and the
GCS address) from the flags Ray started the local raylet with, the way Ray's own
drivers find their local node: no connection at all. It learns them when the
raylet first shows up (the watcher usually starts before `ray start`) and again
only if that raylet exits, e.g. when `ray up` restarts Ray on the node with a new
node id. The Ray token, when the cluster has token auth, comes from the
environment (RAY_AUTH_MODE, RAY_AUTH_TOKEN_PATH) like for any Ray command.
"""

from __future__ import annotations

import argparse
import http.client
import json
import logging
import os
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial

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


def drain_argv(deadline_s: int, node_id: str, address: str | None = None) -> list[str]:
    # --node-id: without it `ray drain-node` connects a driver just to learn the local node.
    # --address: the GCS this node belongs to (default: the one `ray start` last recorded).
    argv = ["ray", "drain-node", *(["--address", address] if address else [])]
    argv += ["--node-id", node_id, "--reason", DRAIN_REASON, "--reason-message", DRAIN_MESSAGE]
    return [*argv, "--deadline-remaining-seconds", str(deadline_s)]


@dataclass(frozen=True)
class RayNode:
    node_id: str  # hex
    gcs_address: str | None = None  # None: the cluster `ray start` last recorded here


@dataclass(frozen=True)
class Raylet:
    node: RayNode
    pid: int
    started: float  # the process's create time: tells a reused pid from this raylet

    def running(self) -> bool:
        import psutil

        try:
            return psutil.Process(self.pid).create_time() == self.started
        except psutil.Error:
            return False


def local_raylets() -> list[Raylet]:
    """The raylets running on this host, each with the node id and GCS address Ray
    started it with (its own `--node_id=` and `--gcs-address=` arguments)."""
    import psutil

    found = []
    for proc in psutil.process_iter(["cmdline", "create_time"]):
        cmdline = proc.info["cmdline"] or []
        if not cmdline or os.path.basename(cmdline[0]) != "raylet":
            continue
        # Whole arguments only: the worker command the raylet is given is one argument
        # holding other processes' flags.
        flags = dict(
            arg.split("=", 1) for arg in cmdline[1:] if arg.startswith("--") and "=" in arg
        )
        if flags.get("--node_id") and flags.get("--gcs-address"):
            node = RayNode(flags["--node_id"], flags["--gcs-address"])
            found.append(Raylet(node, proc.pid, proc.info["create_time"]))
    return found


class LocalNode:
    """This host's Ray node: found from its raylet, kept while that raylet runs.

    Called on every poll; costs one /proc read while the raylet is known. `address`
    picks one cluster's raylet where a host runs several (tests); a spot worker runs one.
    """

    def __init__(
        self, address: str | None = None, scan: Callable[[], list[Raylet]] = local_raylets
    ) -> None:
        self.address = address
        self._scan = scan
        self._raylet: Raylet | None = None

    def __call__(self) -> RayNode | None:
        if self._raylet is not None and self._raylet.running():
            return self._raylet.node
        raylets = [r for r in self._scan() if self.address in (None, r.node.gcs_address)]
        if len(raylets) > 1:
            self._raylet = None
            addresses = sorted({r.node.gcs_address or "" for r in raylets})
            raise ValueError(f"{len(raylets)} raylets here (GCS {addresses}): pass --address")
        raylet = raylets[0] if raylets else None
        if raylet != self._raylet:
            if raylet is None:
                log.warning("no Ray node on this host (any more)")
            else:
                log.info("Ray node %s (GCS %s)", raylet.node.node_id, raylet.node.gcs_address)
        self._raylet = raylet
        return raylet.node if raylet else None


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
    node: Callable[[], RayNode | None],
    *,
    interval: float = POLL_INTERVAL_S,
    runner: Runner = run_command,
    now: Callable[[], datetime] = lambda: datetime.now(UTC),
    sleep: Callable[[float], None] = time.sleep,
    max_polls: int | None = None,
) -> list[str] | None:
    """Poll until a notice arrives and one drain succeeds; return the drain argv.

    `node()` says which Ray node to drain (None while none runs here); it is asked on
    every poll, so the node is known before a notice comes. A metadata outage, a
    malformed notice or a failed drain is logged and retried on the next poll: the
    watcher must outlive every transient fault. `max_polls` bounds the loop (None in
    production); it then returns None.
    """
    polls = 0
    target = None
    while max_polls is None or polls < max_polls:
        polls += 1
        try:
            target = node()
        except (OSError, ValueError) as e:  # e.g. two raylets here: keep the node known last
            log.warning("spot watcher: %s", e)
        try:
            body = client.instance_action()
            if body is not None and (argv := _drain(parse_notice(body), target, now(), runner)):
                return argv
        except (OSError, http.client.HTTPException, ValueError, subprocess.SubprocessError) as e:
            # URLError, HTTPError and timeouts are OSErrors; ValueError is a bad notice.
            log.warning("spot watcher: %s", e)
        sleep(interval)
    return None


def _drain(
    notice: Notice, target: RayNode | None, now: datetime, runner: Runner
) -> list[str] | None:
    """The drain argv once `ray drain-node` succeeded, else None (the next poll retries)."""
    if target is None:
        log.error("spot %s at %s: no Ray node here to drain", notice.action, notice.time)
        return None
    argv = drain_argv(deadline_seconds(notice, now), target.node_id, target.gcs_address)
    log.warning("spot %s at %s: draining this node", notice.action, notice.time)
    code = runner(argv)
    if code != 0:
        log.error("ray drain-node exited %s; retrying", code)
        return None
    log.warning("drained: %s", " ".join(argv))
    return argv


def main(args: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--metadata-url", default=METADATA_URL)
    parser.add_argument("--interval", type=float, default=POLL_INTERVAL_S, help="seconds")
    parser.add_argument(
        "--address", help="GCS address of the cluster (default: the one this host's raylet is in)"
    )
    parser.add_argument("--node-id", help="Ray node to drain (default: this host's, found once)")
    opts = parser.parse_args(args)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    log.info("watching %s every %ss", opts.metadata_url, opts.interval)
    # An explicit --node-id is trusted as given; otherwise the local raylet tells.
    node = partial(RayNode, opts.node_id, opts.address) if opts.node_id else LocalNode(opts.address)
    watch(MetadataClient(opts.metadata_url), node, interval=opts.interval)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
