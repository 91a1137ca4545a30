"""motoray run | serve | submit | preview | plan | bench | sample-data | operators | sources."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
import uuid
from pathlib import Path

from motoray.config import Config, load_config

# Subcommands that parse their own flags (motoray preview -h, ...).
DELEGATED = {
    "preview": ("motoray.preview", "contact sheet PNG of what a request will produce"),
    "plan": ("motoray.plan", "dry run: counts, bytes, duration and cost estimates"),
    "bench": ("motoray.bench", "motoray against its floor and the usual ways, side by side"),
}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] and argv[0] in DELEGATED:
        import importlib

        return importlib.import_module(DELEGATED[argv[0]][0]).main(argv[1:])
    parser = argparse.ArgumentParser(prog="motoray", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    for name, (_, help_text) in DELEGATED.items():
        commands.add_parser(name, help=help_text, add_help=False)

    run = commands.add_parser("run", help="run request(s) from a JSON file on Ray, no HTTP")
    run.add_argument("request", help="JSON file: one request object or a list of them")
    _config_flag(run)
    run.add_argument("--seed", type=int, help="override the request's seed")
    run.add_argument("--job-id", help="job id (default: generated); a list gets -0, -1, ...")
    run.add_argument("--address", default=os.environ.get("RAY_ADDRESS"), help="Ray cluster")
    run.add_argument("--quiet", action="store_true", help="no progress bar")

    sample = commands.add_parser("sample-data", help="write synthetic broadcast-like JPEG frames")
    sample.add_argument("directory")
    sample.add_argument("--count", type=int, default=60)
    sample.add_argument("--size", default="1280x720", help="WIDTHxHEIGHT")
    sample.add_argument("--seed", type=int, default=0)

    operators = commands.add_parser("operators", help="list operators and their parameters")
    _config_flag(operators)
    sources = commands.add_parser("sources", help="list the configured data sources")
    _config_flag(sources)

    serve = commands.add_parser("serve", help="the HTTP API on Ray Serve, until Ctrl-C")
    _config_flag(serve)
    serve.add_argument("--host", help="default: the config's server.host")
    serve.add_argument("--port", type=int, help="default: the config's server.port (5000)")
    serve.add_argument(
        "--address",
        default=os.environ.get("RAY_ADDRESS"),
        help="Ray cluster to join (default: $RAY_ADDRESS; none: start a local Ray)",
    )

    submit = commands.add_parser("submit", help="send request(s) to a running service")
    submit.add_argument("request", help="JSON file: one request object or a list of them")
    submit.add_argument("--url", default=os.environ.get("MOTORAY_URL", "http://127.0.0.1:5000"))
    submit.add_argument(
        "--token", default=os.environ.get("MOTORAY_API_TOKEN"), help="default: $MOTORAY_API_TOKEN"
    )
    submit.add_argument("--wait", action="store_true", help="follow the jobs to the end")
    submit.add_argument("--cacert", help="CA bundle to verify an HTTPS service with")
    submit.add_argument(
        "--ready-timeout", type=float, default=0, help="wait this long for the service to be up"
    )

    args = parser.parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except (FileNotFoundError, ValueError) as e:
        print(f"motoray {args.command}: {e}", file=sys.stderr)
        return 2


def _config_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", help="config file (default: $MOTORAY_CONFIG or ./motoray.yaml)")


def cmd_run(args: argparse.Namespace) -> int:
    from motoray.spec import RequestError, parse_json, parse_requests

    config = load_config(args.config)
    try:
        requests = parse_requests(
            parse_json(Path(args.request).read_bytes()), _operators(config), list(config.sources)
        )
    except RequestError as e:
        print(f"motoray run: invalid request {args.request}:", file=sys.stderr)
        for error in e.errors:
            print(
                f"  {'.'.join(map(str, error['loc'])) or 'body'}: {error['msg']}", file=sys.stderr
            )
        return 2
    if args.seed is not None:
        requests = [r.model_copy(update={"seed": args.seed}) for r in requests]
    base_id = args.job_id or new_job_id()
    job_ids = [base_id] if len(requests) == 1 else [f"{base_id}-{i}" for i in range(len(requests))]

    import ray

    from motoray.pipeline import run_job

    ray.init(address=args.address, logging_level="WARNING", log_to_driver=False)
    # Our own progress bar and summary replace Ray Data's per-operator chatter.
    ray.data.DataContext.get_current().enable_progress_bars = False
    logging.getLogger("ray.data").setLevel(logging.ERROR)
    exit_code = 0
    for request, job_id in zip(requests, job_ids):
        try:
            progress = _with_service_progress(job_id, _progress_bar(job_id, args.quiet))
            record = run_job(request, config, job_id, on_progress=progress)
        except Exception as e:
            print(f"\njob {job_id} FAILED: {type(e).__name__}: {e}", file=sys.stderr)
            exit_code = 1
            continue
        print_summary(record)
    return exit_code


def _progress_bar(job_id: str, quiet: bool):
    from tqdm import tqdm

    bar = None

    def update(counts: dict) -> None:
        nonlocal bar
        if quiet:
            return
        if bar is None:
            bar = tqdm(total=counts["images_total"], desc=job_id, unit="img", file=sys.stderr)
        bar.n = counts["images_done"]
        bar.set_postfix(failed=counts["images_failed"], outputs=counts["outputs"], refresh=False)
        bar.refresh()
        if counts["images_done"] >= counts["images_total"]:
            bar.close()

    return update


def _with_service_progress(job_id: str, on_progress):
    """In a job started by the service, also report progress where its API can read it."""
    if not os.environ.get("MOTORAY_PROGRESS"):  # motoray.jobs.PROGRESS_ENV
        return on_progress
    from motoray.jobs import progress_reporter

    report = progress_reporter(job_id)

    def both(counts: dict) -> None:
        on_progress(counts)
        report(counts)

    return both


def print_summary(record: dict) -> None:
    counts = record.get("counts", {})
    print(f"job {record['job_id']}: {record['state']}")
    print(f"  results:  {record['output']}")
    for split, c in counts.get("splits", {}).items():
        print(f"  {split:>6}:   {c['images']} images -> {c['outputs']} outputs")
    print(f"  failed:   {counts.get('images_failed', 0)} of {counts.get('images_total', 0)} images")
    for failure in record.get("failures", [])[:10]:
        print(f"            {failure['source_path']}: {failure['reason']}")
    if "timings" in record:
        print(f"  duration: {record['timings']['duration_s']} s")


def new_job_id() -> str:
    """Sortable by start time, unique without coordination."""
    return time.strftime("%Y%m%d-%H%M%S", time.gmtime()) + "-" + uuid.uuid4().hex[:6]


def _operators(config: Config):
    from motoray.ops import enabled

    return enabled(config.operators.disabled, config.operators.plugins)


def cmd_sample_data(args: argparse.Namespace) -> int:
    from motoray.sample_data import write_sample_frames

    width, _, height = args.size.lower().partition("x")
    paths = write_sample_frames(
        args.directory, args.count, (int(width), int(height)), seed=args.seed
    )
    print(f"wrote {len(paths)} frames ({args.size}) to {args.directory}")
    return 0


def cmd_operators(args: argparse.Namespace) -> int:
    config = _maybe_config(args.config)
    ops = _operators(config) if config else _operators(Config())
    for name, op in ops.items():
        print(f"{name}: {op.description}")
        print(json.dumps(op.params.model_json_schema()["properties"], indent=2))
    return 0


def cmd_sources(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    for name, source in config.sources.items():
        print(f"{name}\t{source.uri}\t{source.description}")
    return 0


def _maybe_config(path: str | None) -> Config | None:
    try:
        return load_config(path)
    except FileNotFoundError:
        return None


def cmd_serve(args: argparse.Namespace) -> int:
    from motoray.server import serve

    return serve(args.config, args.host, args.port, args.address)


def cmd_submit(args: argparse.Namespace) -> int:
    from motoray.client import submit

    return submit(args.request, args.url, args.token, args.wait, args.cacert, args.ready_timeout)


COMMANDS = {
    "run": cmd_run,
    "serve": cmd_serve,
    "submit": cmd_submit,
    "sample-data": cmd_sample_data,
    "operators": cmd_operators,
    "sources": cmd_sources,
}

if __name__ == "__main__":
    sys.exit(main())
