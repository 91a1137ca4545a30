"""motoray run | serve | submit | logs | preview | plan | sample-data | operators | sources.
Exit status: 0 done, 1 a job failed, 2 bad input (request, config, flags)."""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import os
import sys
from pathlib import Path

import click

from motoray.config import Config, load_config

CONFIG_HELP = "config file (default: $MOTORAY_CONFIG or ./motoray.yaml)"


class BadInput(click.ClickException):
    exit_code = 2


def _bad_input(command):
    """Errors a user can fix become one clear message and exit status 2, not a traceback."""

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        from motoray.spec import RequestError

        try:
            return command(*args, **kwargs)
        except RequestError as e:
            lines = [
                f"{'.'.join(map(str, err['loc'])) or 'body'}: {err['msg']}" for err in e.errors
            ]
            raise BadInput("invalid request:\n  " + "\n  ".join(lines)) from None
        except (FileNotFoundError, ValueError) as e:
            raise BadInput(str(e)) from None

    return wrapper


def config_option(command):
    return click.option("--config", "config_path", help=CONFIG_HELP)(command)


def address_option(command):
    return click.option(
        "--address", envvar="RAY_ADDRESS", help="Ray cluster (default: $RAY_ADDRESS, else local)"
    )(command)


def read_requests(path: str, config: Config) -> list:
    """The requests in a JSON file (an object or a list), validated against the config."""
    from motoray.spec import parse_for, parse_json

    return parse_for(config, parse_json(Path(path).read_bytes()))


def read_one_request(path: str, config: Config):
    """Preview and plan take one request, over HTTP and here alike: a list of one is fine."""
    from motoray.spec import parse_json, parse_one_for

    return parse_one_for(config, parse_json(Path(path).read_bytes()))


@click.group(help=__doc__)
def cli() -> None:
    pass


@cli.command(help="Run request(s) from a JSON file on Ray, without HTTP.")
@click.argument("request")
@config_option
@click.option("--seed", type=int, help="override the request's seed")
@click.option("--job-id", help="job id (default: generated); a list gets -0, -1, ...")
@address_option
@click.option("--quiet", is_flag=True, help="no progress bar")
@_bad_input
def run(request, config_path, seed, job_id, address, quiet) -> int:
    from motoray.jobs.record import job_ids, new_job_id

    config = load_config(config_path)
    requests = read_requests(request, config)
    if seed is not None:
        requests = [r.model_copy(update={"seed": seed}) for r in requests]
    ids = job_ids(len(requests), job_id or new_job_id())
    _init_ray(address)
    _refuse_output_in_upload(config)
    return _run_jobs(config, list(zip(requests, ids)), address, quiet)


def _refuse_output_in_upload(config: Config) -> None:
    """`ray job submit --working-dir .` runs the job in an uploaded copy of that directory,
    per node and deleted by Ray later: a config read from the copy (./motoray.yaml, when the
    cluster sets no $MOTORAY_CONFIG) whose output folder is inside it would lose the results."""
    import ray

    if not ray.get_runtime_context().runtime_env.has_working_dir():
        return
    copy = Path.cwd().resolve()

    def shown(path: str) -> str:
        path = Path(path).resolve()
        return f"./{path.relative_to(copy)}" if path.is_relative_to(copy) else str(path)

    output = config.output.uri
    if "://" not in output and Path(output).resolve().is_relative_to(copy):
        raise BadInput(
            f"{shown(config.path)}: output folder {shown(output)} is inside the job's copy of "
            "--working-dir, which Ray deletes; run on the cluster's config (--config, "
            "$MOTORAY_CONFIG) or write to s3://"
        )


def _init_ray(address: str | None) -> None:
    import ray

    if not ray.is_initialized():
        # A Ray this command starts lives only as long as it does: no dashboard (a bare
        # start and stop took 4.7 s without it, 6.0 to 6.8 s with it). Joining, ignored.
        ray.init(
            address=address, include_dashboard=False, logging_level="WARNING", log_to_driver=False
        )
    # Our own progress bar and summary replace Ray Data's per-operator chatter: its bars are
    # off per dataset (ray_data), its log lines below ERROR here. Ray Data sets its loggers'
    # level when it is imported, from RAY_DATA_LOG_LEVEL; it is not imported yet (that cost
    # a small job ~0.35 s), unless a plugin did.
    os.environ.setdefault("RAY_DATA_LOG_LEVEL", "ERROR")
    logging.getLogger("ray.data").setLevel(os.environ["RAY_DATA_LOG_LEVEL"])


def _run_jobs(config: Config, jobs: list, address: str | None, quiet: bool) -> int:
    """Each job in this driver; or, on a cluster where a motoray service keeps a warm
    runner, in the runner (the same bytes, without starting workers and imports again).
    Either way the job's life goes through `jobs.status.advance`. Each is accepted as it
    starts: its time limit counts from there, not from Ray's start or an earlier job's."""
    from motoray.jobs.record import JobStatus, accept
    from motoray.jobs.runner import existing_runner
    from motoray.pipeline.ray_data import warm_workers

    _init_ray(address)
    runner = existing_runner()
    if runner is None:
        warm_workers()
    exit_code = 0
    for request, job_id in jobs:
        [inputs] = accept([request], config, job_id)
        progress = _progress(inputs.job_id, quiet)
        info = _in_runner(runner, inputs, progress) if runner else _here(inputs, progress)
        if info.status is not JobStatus.SUCCEEDED:
            exit_code = 1
        click.echo("\n".join(info.summary_lines()))
    return exit_code


def _here(inputs, progress):
    """The job in this process, its life through `advance` as in the runner; past its
    give-up time, whatever it is stuck in, the process ends (exit status 3)."""
    from motoray.jobs.folder import JobFolder
    from motoray.jobs.record import JobStatus
    from motoray.jobs.status import JobInfo, advance
    from motoray.pipeline.job import hard_deadline, reason, run_job

    info = advance(JobInfo.accepted(inputs), JobStatus.RUNNING)
    try:
        with hard_deadline(inputs):
            record = run_job(inputs, on_progress=progress)
    except Exception as e:
        error = reason(e)
        click.echo(f"\njob {inputs.job_id} FAILED: {error}", err=True)
        record = None
        with contextlib.suppress(Exception):  # job.json FAILED, with its counts, if it got one
            record = JobFolder.of(inputs).record()
        if record is None:
            return advance(info, JobStatus.FAILED, error=error)
        return advance(info, JobStatus.FAILED, error=record.error or error,
                       counts=record.counts, outcome=record.summary())  # fmt: skip
    return advance(info, record.state, counts=record.counts, outcome=record.summary())


def _in_runner(runner, inputs, progress):
    """The job accepted by the cluster's service and run by its warm runner, followed from
    here; SIGTERM (`ray job stop`) stops it."""
    import signal

    from motoray.jobs.service import JobService

    service = JobService(runner)
    service.submit([inputs])

    def stop(signum, frame) -> None:
        service.stop(inputs.job_id, inputs.config, wait_s=0)
        click.echo(f"job {inputs.job_id}: stopping", err=True)
        sys.exit(1)

    signal.signal(signal.SIGTERM, stop)
    return service.follow(inputs.job_id, lambda info: info.counts and progress(info.counts))


def _progress(job_id: str, quiet: bool):
    """A progress bar on stderr."""
    from tqdm import tqdm

    bar = None

    def update(counts) -> None:
        nonlocal bar
        if quiet:
            return
        if bar is None:
            bar = tqdm(total=counts.images_total, desc=job_id, unit="img", file=sys.stderr)
        bar.n = counts.images_done
        bar.set_postfix(failed=counts.images_failed, outputs=counts.outputs, refresh=False)
        bar.refresh()
        if counts.images_done >= counts.images_total:
            bar.close()

    return update


@cli.command(help="The HTTP API on Ray Serve, until Ctrl-C.")
@config_option
@click.option("--host", help="default: the config's server.host")
@click.option("--port", type=int, help="default: the config's server.port (5000)")
@click.option(
    "--address",
    envvar="RAY_ADDRESS",
    help="Ray cluster to join (default: $RAY_ADDRESS; none: start a local Ray)",
)
@_bad_input
def serve(config_path, host, port, address) -> int:
    from motoray.server import serve as run_service

    return run_service(config_path, host, port, address)


@cli.command(help="Send request(s) to a running service.")
@click.argument("request")
@click.option(
    "--url",
    envvar="MOTORAY_URL",
    default="http://127.0.0.1:5000",
    show_default=True,
    help="the service (default: $MOTORAY_URL, else this)",
)
@click.option("--token", envvar="MOTORAY_API_TOKEN", help="default: $MOTORAY_API_TOKEN")
@click.option("--wait", is_flag=True, help="follow the jobs to the end")
@click.option("--cacert", help="CA bundle to verify an HTTPS service with")
@click.option("--ready-timeout", type=float, default=0, help="wait this long for the service")
@_bad_input
def submit(request, url, token, wait, cacert, ready_timeout) -> int:
    from motoray.client import submit as send

    return send(request, url, token, wait, cacert, ready_timeout)


@cli.command(help="A job's log lines, every run's (a job the service accepted).")
@click.argument("job_id")
@config_option
@click.option("--json", "as_json", is_flag=True, help="one JSON object per line, as stored")
@_bad_input
def logs(job_id, config_path, as_json) -> int:
    from motoray.jobs.folder import find

    config = load_config(config_path)
    folder = find(config, job_id)
    if folder is None:
        sources = ", ".join(config.sources) or "none"
        raise BadInput(f"no job {job_id!r} under {config.output.uri} (sources: {sources})")
    for line in folder.log_lines():
        click.echo(json.dumps(line) if as_json else _log_text(line))
    return 0


def _log_text(line: dict) -> str:
    """`time LEVEL message key=value ...`, as the console's text format writes it."""
    fields = {k: v for k, v in line.items() if k not in ("time", "level", "logger", "message")}
    pairs = " ".join(f"{k}={v if isinstance(v, str) else json.dumps(v)}" for k, v in fields.items())
    return f"{line.get('time', '')} {line.get('level', '')} {line.get('message', '')} {pairs}"


@cli.command(help="Contact sheet PNG of what a request will produce.")
@click.argument("request")
@config_option
@click.option("-o", "--output", default="preview.png", show_default=True, help="PNG to write")
@click.option("--count", type=int, default=4, show_default=True, help="source images shown")
@_bad_input
def preview(request, config_path, output, count) -> int:
    from motoray.preview import contact_sheet

    config = load_config(config_path)
    Path(output).write_bytes(contact_sheet(read_one_request(request, config), config, count))
    click.echo(f"wrote {output}")
    return 0


@cli.command(help="Dry run: counts, bytes, duration and cost estimates.")
@click.argument("request")
@config_option
@click.option("--cpus", type=int, help="estimate for this many CPUs (default: here)")
@_bad_input
def plan(request, config_path, cpus) -> int:
    from motoray.dry_run import dry_run

    config = load_config(config_path)
    click.echo(json.dumps(dry_run(read_one_request(request, config), config, cpus), indent=2))
    return 0


@cli.command(help="Write synthetic broadcast-like JPEG frames (or, with --video, clips).")
@click.argument("directory")
@click.option("--count", type=int, default=60, show_default=True, help="frames, or clips")
@click.option("--size", default="1280x720", show_default=True, help="WIDTHxHEIGHT")
@click.option("--seed", type=int, default=0, show_default=True, help="same seed, same files")
@click.option(
    "--annotations",
    type=click.Choice(["coco", "yolo"]),
    help="objects as solid rectangles, with their true boxes: annotations.json (coco) or a "
    ".txt beside each frame (yolo)",
)
@click.option("--video", is_flag=True, help="H.264 MP4 clips: bikes, a ticker, a scene cut")
@click.option("--seconds", type=float, default=10, show_default=True, help="per clip (--video)")
@click.option("--fps", type=int, default=25, show_default=True, help="frame rate (--video)")
@click.option(
    "--interlaced",
    is_flag=True,
    help="1080i-style MPEG-TS clips: two fields per frame, top field first (--video)",
)
@click.option(
    "--replays",
    type=click.IntRange(1, 1000),
    help="also this many replays: live shots under live/, the same shots again under "
    "replays/ (a wipe, another scale, another quality, a ticker), each frame's shot id "
    "burned into its top-left corner; --count is the live clips",
)
@_bad_input
def sample_data(
    directory, count, size, seed, annotations, video, seconds, fps, interlaced, replays
) -> int:
    width, _, height = size.lower().partition("x")
    if replays:
        return _sample_replays(
            directory, count, (int(width), int(height)), seed, replays, video, seconds, fps
        )
    if video:
        from motoray.video.sample import write_sample_videos

        suffix = ".ts" if interlaced else ".mp4"
        paths = write_sample_videos(
            directory,
            count,
            (int(width), int(height)),
            seconds=seconds,
            fps=fps,
            seed=seed,
            suffix=suffix,
            interlaced=interlaced,
        )
        kind = "interlaced " if interlaced else ""
        click.echo(
            f"wrote {len(paths)} {kind}clips ({size}, {seconds:g} s at {fps} fps) to {directory}"
        )
        return 0
    from motoray.sample_data import CLASSES, write_sample_frames

    paths = write_sample_frames(
        directory, count, (int(width), int(height)), seed=seed, annotations=annotations
    )
    click.echo(f"wrote {len(paths)} frames ({size}) to {directory}")
    if annotations:
        declared = {"format": "coco"} if annotations == "coco" else {"format": "yolo"}
        if annotations == "yolo":
            declared["classes"] = list(CLASSES)
        click.echo(f"with boxes; declare the source with  annotations: {json.dumps(declared)}")
    return 0


def _sample_replays(directory, clips, size, seed, replays, video, seconds, fps) -> int:
    from motoray import sample_replays

    if video:
        paths = sample_replays.write_replay_videos(
            directory, clips, replays, size, seconds=round(seconds), fps=fps, seed=seed
        )
    else:
        paths = sample_replays.write_replay_frames(directory, clips, replays, size=size, seed=seed)
    click.echo(f"wrote {len(paths)} {'clips' if video else 'frames'} with replays to {directory}")
    return 0


@cli.command(help="List the enabled operators and their parameters.")
@config_option
@_bad_input
def operators(config_path) -> int:
    from motoray.ops import operators_for

    try:
        config = load_config(config_path)
    except FileNotFoundError:
        config = Config()  # the built-ins, for a look before any config exists
    for name, op in operators_for(config.operators).items():
        click.echo(f"{name}: {op.description}")
        click.echo(json.dumps(op.params.model_json_schema()["properties"], indent=2))
    return 0


@cli.command(help="List the configured data sources.")
@config_option
@_bad_input
def sources(config_path) -> int:
    for name, source in load_config(config_path).sources.items():
        click.echo(f"{name}\t{source.uri}\t{source.description}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """The `motoray` script: a command's return value is the exit status."""
    try:
        return cli.main(args=argv, prog_name="motoray", standalone_mode=False) or 0
    except click.ClickException as e:
        e.show()
        return e.exit_code
    except click.exceptions.Exit as e:
        return e.exit_code
    except click.Abort:
        click.echo("aborted", err=True)
        return 1


if __name__ == "__main__":
    sys.exit(main())
