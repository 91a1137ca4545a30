"""`motoray serve`: the HTTP API on Ray Serve, in the foreground until Ctrl-C or SIGTERM.

It joins the Ray cluster at --address / $RAY_ADDRESS, or starts a local one.
A local Ray is a `ray start --head --block` child with its own temp dir and free
ports, so it neither collides with nor gets joined by other Ray instances on the
machine (a notebook's `ray.init()`, tests). On exit it takes down only what it
started: a local Ray, whose unended jobs resume when a service starts again on the
same config and output root; on a joined cluster, its Serve application (and Serve,
if it started it), leaving the jobs running in the cluster's runner.
"""

from __future__ import annotations

import logging
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from motoray.commands import bin_dir, installed_command, shell_name
from motoray.config import TOKEN_ENV, load_config
from motoray.priority import RAY_WORKER_NICENESS
from motoray.waiting import wait_until

DEFAULT_DASHBOARD_PORT = 8265
CONFIG_ENV = "MOTORAY_CONFIG"
EXAMPLE_REQUEST = "examples/requests/seed_sample.json"
SERVE_LOGGER = "ray.serve"


class _Stop(BaseException):
    """Raised by the signal handler: unwinds whatever is running into the cleanup."""


@dataclass
class LocalRay:
    """A single-node Ray cluster in a child process."""

    process: subprocess.Popen
    address: str  # GCS host:port, for ray.init and RAY_ADDRESS
    dashboard_url: str
    temp_dir: str
    env: dict[str, str] = field(default_factory=dict)  # what a client needs to connect

    def stop(self, timeout: float = 60) -> None:
        """SIGTERM makes `ray start --block` stop every process it started."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()


def start_local_ray(
    num_cpus: int | None = None, env: dict[str, str] | None = None, timeout: float = 120
) -> LocalRay:
    """A fresh single-node Ray; the dashboard on 8265 when that port is free."""
    env = {**os.environ, **(env or {})}
    env.pop("RAY_ADDRESS", None)
    env.pop(TOKEN_ENV, None)  # the replicas get it from `serve`; jobs need not see it
    # This installation's scripts first: `ray job submit -- motoray run ...` finds our motoray.
    env["PATH"] = os.pathsep.join([bin_dir(), env.get("PATH", "")])
    # Ray 2.60 enables token auth for a new `ray.init()` cluster; do the same here.
    env.setdefault("RAY_AUTH_MODE", "token")
    # `serve` stops its jobs and Serve before Ray: no need for Ray's own drain on SIGTERM.
    env.setdefault("RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S", "0")
    # Ray keeps as many idle worker processes as CPUs, of any job: one other job (a
    # notebook, `motoray run`) evicts the warm runner's workers, and the next service job
    # starts them again with their imports. Keep twice as many.
    cpus = num_cpus or os.cpu_count() or 1
    env.setdefault("RAY_num_workers_soft_limit", str(2 * cpus))
    # Workers at 0, not Ray's 15, so that the API outranks the pipeline (motoray/priority.py).
    env.setdefault(RAY_WORKER_NICENESS, "0")
    # Idle costs little (docs/lifecycle.md has the per-process table): Serve's controller
    # looks at its deployments every second, not ten times a second, and its proxy and
    # replica hand their metrics to Ray's every second, not ten times (Ray exports them
    # every 10 s anyway). A replica that dies is replaced up to a second later.
    env.setdefault("RAY_SERVE_CONTROL_LOOP_INTERVAL_S", "1")
    env.setdefault("RAY_SERVE_METRICS_EXPORT_INTERVAL_MS", "1000")
    ray_cli = installed_command("ray")
    if env["RAY_AUTH_MODE"] == "token" and not _has_ray_token(env):
        subprocess.run(
            [*ray_cli, "get-auth-token", "--generate"], env=env, check=True, capture_output=True
        )
    dashboard = DEFAULT_DASHBOARD_PORT if _port_free(DEFAULT_DASHBOARD_PORT) else free_port()
    for _ in range(3):
        try:
            return _ray_start(ray_cli, env, num_cpus, dashboard, timeout)
        except _PortTaken:
            # Free when we looked, taken when Ray bound it (another Ray starting alongside).
            dashboard = free_port()
    return _ray_start(ray_cli, env, num_cpus, dashboard, timeout)


class _PortTaken(RuntimeError):
    pass


def _ray_start(ray_cli, env, num_cpus, dashboard, timeout) -> LocalRay:
    temp_dir = tempfile.mkdtemp(prefix="motoray-ray-")
    gcs, client = free_port(), free_port()
    # The job agent's port: 0, the agent binds whatever is free. A port picked here can be
    # taken before the agent binds it (by any connection's local port), and then the agent
    # stays up without its HTTP server: every job submission fails (seen once in CI, every
    # POST a 503). A GCS port taken makes `ray start` fail, and it is tried again.
    # Workers and drivers on ports the system picks, as `ray.init()` does: `ray start` hands
    # out 10002, 10003, ... in every Ray on the machine, and a second Ray's driver or worker
    # that binds one already taken dies in its gRPC server (seen in CI: the service exited).
    command = [
        *ray_cli, "start", "--head", "--block", "--disable-usage-stats",
        f"--port={gcs}", f"--dashboard-port={dashboard}", "--include-dashboard=true",
        "--dashboard-agent-listen-port=0", f"--ray-client-server-port={client}",
        "--min-worker-port=0", "--max-worker-port=0", f"--temp-dir={temp_dir}",
    ]  # fmt: skip
    if num_cpus is not None:
        command.append(f"--num-cpus={num_cpus}")
    # Without Ray's log monitor: it tails every worker's log files to push their lines to
    # drivers that ask (log_to_driver). No motoray driver asks, and its polling grows with
    # the files a day of jobs leaves (the largest idle cost after jobs). The files stay, for
    # the dashboard's logs.
    command.append("--include-log-monitor=false")
    log_path = Path(temp_dir, "ray-start.log")
    with log_path.open("wb") as log:
        # Own session: a Ctrl-C in the terminal reaches us, and we stop Ray in order.
        process = subprocess.Popen(
            command, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
    address_file = Path(temp_dir, "ray_current_cluster")  # written once the head is up

    def started() -> bool:
        if process.poll() is not None:
            raise RuntimeError("ray start exited")
        return address_file.is_file() and bool(address_file.read_text().strip())

    try:
        wait_until(started, timeout, what="ray start")
    except (RuntimeError, TimeoutError):
        if process.poll() is None:
            process.terminate()
        output = log_path.read_text()
        shutil.rmtree(temp_dir, ignore_errors=True)
        taken = "already occupied" in output or "already in use" in output
        error = _PortTaken if taken else RuntimeError
        raise error(f"ray start failed:\n{output[-3000:]}") from None
    return LocalRay(
        process=process,
        address=address_file.read_text().strip(),
        dashboard_url=f"http://127.0.0.1:{dashboard}",
        temp_dir=temp_dir,
        env={"RAY_AUTH_MODE": env["RAY_AUTH_MODE"]},
    )


def job_submit_line(local: LocalRay, request: str = EXAMPLE_REQUEST) -> str:
    """The `ray job submit` command that runs `request` as a Ray Job on `local`.

    Where a job's entrypoint runs: without --working-dir, in the directory `ray start` ran in
    (for this Ray, wherever `serve` was started; on a real cluster, somewhere on the head);
    with `--working-dir .`, in a copy of the submitter's directory uploaded with the job
    (.gitignore'd data/, outputs/, .venv left out). Hence --working-dir: a request path means
    what it means where the user types it, here and on a real cluster alike. The config is
    not the copy's (its relative paths would point at data and outputs inside it): `serve`
    sets MOTORAY_CONFIG, which wins over ./motoray.yaml, on the Ray it starts. On a cluster
    it joins, that is the cluster's to set (or --config); else `motoray run` refuses to write
    into the copy.
    """
    auth = "RAY_AUTH_MODE=token " if local.env.get("RAY_AUTH_MODE") == "token" else ""
    command = ["job", "submit", "--address", local.dashboard_url, "--working-dir", "."]
    return auth + shlex.join([shell_name("ray"), *command, "--", "motoray", "run", request])


def serve(
    config_path: str | None = None,
    host: str | None = None,
    port: int | None = None,
    address: str | None = None,
) -> int:
    config = load_config(config_path)
    config.api_token()  # none: refuse to start, the API is never open
    host = host or config.server.host
    port = port or config.server.port
    http_options: dict = {"host": host, "port": port, "request_timeout_s": 60}
    if config.server.tls:
        http_options["ssl_certfile"] = _config_file(config, config.server.tls.certfile)
        http_options["ssl_keyfile"] = _config_file(config, config.server.tls.keyfile)
    scheme = "https" if config.server.tls else "http"

    def stop(signum, frame):
        raise _Stop

    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, stop)

    local: LocalRay | None = None
    serve_was_running, deployed = True, False
    try:
        if not address:
            print("starting a local Ray ...", flush=True)
            # Ray Jobs on this Ray (`ray job submit -- motoray run ...`) default to the
            # service's config, wherever they run: see job_submit_line.
            local = start_local_ray(env={CONFIG_ENV: config.path})
            os.environ.update(local.env)
            address = local.address
        # Imported only now: Ray reads RAY_AUTH_MODE once, when it loads.
        import ray
        from ray import serve as ray_serve

        from motoray.api.deployment import APP_NAME, build_app

        # Serve's own INFO lines ("Started Serve", "Deleting app") say less than ours below.
        logging.getLogger(SERVE_LOGGER).setLevel(logging.WARNING)
        app = build_app(config.path)
        ray.init(address=address, logging_level="WARNING", log_to_driver=False)
        for signum in (signal.SIGINT, signal.SIGTERM):  # ray.init installed its own
            signal.signal(signum, stop)
        serve_was_running = bool(ray_serve.status().proxies)
        if serve_was_running:
            if config.server.tls:  # never print https:// over a plain HTTP port
                raise ValueError(
                    "Serve already runs on this cluster with its own HTTP options, so "
                    "server.tls cannot be applied: start motoray on a cluster without Serve"
                )
            print("Serve already runs on this cluster: its HTTP options are kept", flush=True)
        ray_serve.start(http_options=http_options)
        ray_serve.run(app, name=APP_NAME, route_prefix="/")
        deployed = True
        print(
            f"motoray API on {scheme}://{host}:{port} (docs: /docs); Ray at {address}", flush=True
        )
        if local:
            print(f"Ray dashboard {local.dashboard_url}; logs in {local.temp_dir}", flush=True)
            print(f"a Ray Job, from the repository root: {job_submit_line(local)}", flush=True)
        while True:
            time.sleep(3600)
    except _Stop:
        print("stopping ...", flush=True)
    finally:
        for signum in (signal.SIGINT, signal.SIGTERM):  # finish the cleanup once started
            signal.signal(signum, signal.SIG_IGN)
        _teardown(local, address, serve_was_running, deployed)
    print("stopped", flush=True)
    return 0


def _teardown(
    local: LocalRay | None, address: str | None, serve_was_running: bool, deployed: bool
) -> None:
    """Undo what `serve` did, step by step: one failing step must not skip the others."""
    try:
        if "ray" in sys.modules:
            import ray

            if ray.is_initialized():
                _leave_ray(ray, local, address, serve_was_running, deployed)
    finally:
        if local:
            local.stop()


def _leave_ray(
    ray, local: LocalRay | None, address: str | None, serve_was_running: bool, deployed: bool
) -> None:
    from ray import serve as ray_serve

    from motoray.api.deployment import APP_NAME

    if local:  # its Ray goes away, and with it the runs of its jobs: they resume next time

        def report_unended() -> None:
            from motoray.jobs.board import existing_board
            from motoray.jobs.runner import existing_runner

            # The runner first: no run ends (and writes job.json) after the report says
            # its job resumes.
            runner = existing_runner()
            if runner is not None:
                ray.kill(runner, no_restart=True)
            board = existing_board()
            if board is not None:
                unended = ray.get(board.unended.remote(), timeout=10)
                _report_unended([info.job_id for info in unended])

        _attempt(report_unended)
    if serve_was_running or local:
        # Others' apps may be on a joined cluster: remove only ours. On our own Ray, Serve
        # goes with it: `serve.shutdown()` there only made noise (its controller kills
        # itself while the call waits on it, which Ray prints as "(raylet) Task
        # ServeController.graceful_shutdown failed ... killed by ray.kill").
        if deployed:
            _attempt(lambda: ray_serve.delete(APP_NAME))
    else:
        _attempt(ray_serve.shutdown)
    _attempt(ray.shutdown)


def _attempt(step) -> None:
    try:
        step()
    except Exception as e:
        print(f"cleanup: {type(e).__name__}: {e}", file=sys.stderr)


def _report_unended(job_ids: list[str]) -> None:
    if job_ids:
        print(
            f"{len(job_ids)} unfinished job(s) resume when motoray serve starts again on this "
            f"config: {', '.join(sorted(job_ids))}",
            flush=True,
        )


def _config_file(config, path: str) -> str:
    """TLS files, like every path in the config, are relative to the config file."""
    base = Path(config.path).parent if config.path else Path.cwd()
    return str((base / Path(path).expanduser()).resolve())


def _has_ray_token(env: dict[str, str]) -> bool:
    return bool(
        env.get("RAY_AUTH_TOKEN")
        or env.get("RAY_AUTH_TOKEN_PATH")
        or Path("~/.ray/auth_token").expanduser().is_file()
    )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _port_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("0.0.0.0", port))
        except OSError:
            return False
        return True
