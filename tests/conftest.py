"""Shared fixtures: one real local Ray per test session, real JPEG frames.

Every test is marked by what it needs, by the rules below, never by hand: `unit` (nothing but
this process and its files), `integration` (FFmpeg on real clips, or a child process), `ray`
(a local Ray), `service` (a live server on 127.0.0.1: motoray's API, moto's S3, a stand-in
metadata service) or `cluster` (Ray nodes of its own). A test that needs one of the
session's clusters is also marked `slow`; the others that start something of their own
carry @pytest.mark.slow or a module-wide `pytestmark`. `make test-fast` runs
`-m "not slow"`; `pytest -m unit` runs the pure units.
"""

from __future__ import annotations

import json
import shutil
from collections import Counter
from pathlib import Path

import pytest

from motoray.config import Config, OutputConfig, SourceConfig

REPO = Path(__file__).resolve().parent.parent
EXAMPLES = REPO / "examples" / "requests"
CLUSTER_FIXTURES = {"ray_local", "api_ray"}  # the service and its clients depend on api_ray
# What a test needs, from the fixtures it uses (their dependencies included).
NEEDS_BY_FIXTURE = {
    "ray_local": "ray",
    "api_ray": "service",  # the API tests' cluster and its `motoray serve`
    "s3_endpoint": "service",  # moto's S3 server
    "s3_https_endpoint": "service",
    "imds": "service",  # a stand-in EC2 instance metadata service
    "ssm": "service",  # moto's SSM
}
# What a module's tests need that no fixture shows: FFmpeg on real clips, or a child process
# (the `motoray` command, a fresh interpreter).
NEEDS_BY_MODULE = {
    "tests/video/": "integration",
    "tests/test_cli.py": "integration",
    "tests/test_architecture.py": "integration",
    "tests/api/test_client.py": "integration",
    "tests/api/test_server.py": "integration",
    "tests/docs/test_examples.py": "integration",
}
# A slow test that starts what it needs itself: a Ray, unless its module says otherwise.
NEEDS_WHEN_SLOW = {
    "tests/api/": "service",
    "tests/test_bench.py": "service",
    "tests/cluster/": "cluster",
}
NEEDS = ("unit", "integration", "ray", "service", "cluster")  # the most a test needs names it
GROUP = pytest.StashKey[str]()
LONGEST_FIRST = (  # seconds in one run (pytest --junitxml), summed per group
    "tests/api/test_resume.py",  # 200 (a service owning its Ray, started twice)
    "api_ray",  # 130
    "ray_local",  # 121
    "tests/test_bench.py",  # 111
    "tests/cluster/test_node_loss.py",  # 67
    "tests/api/test_serve_alone.py",  # 60 (was two services: 50 + 33)
    "tests/docs/test_examples.py",  # 45 (three pages run a job: a Ray each)
    "tests/cluster/test_autoscaling.py",  # 39
    "tests/api/test_server.py",  # 5
    "tests/test_cli.py",  # 21
    "tests/cluster/test_spot_watcher.py",  # 15
    "tests/test_job_limits.py",  # 15
    "tests/storage/test_s3.py",  # 12
    "tests/api/test_schemathesis.py",  # 10
)


@pytest.hookimpl(tryfirst=True)  # before `-m` deselects
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        clusters = CLUSTER_FIXTURES & set(getattr(item, "fixturenames", ()))
        if clusters:
            item.add_marker(pytest.mark.slow)
        item.add_marker(_need(item))
        # `pytest -n 2 --dist loadgroup` (make test): a session cluster's tests on one
        # worker, so no cluster starts twice; any other module's tests together, so its
        # module fixtures are made once.
        group = min(clusters) if clusters else item.nodeid.split("::")[0]
        item.add_marker(pytest.mark.xdist_group(group))
        item.stash[GROUP] = group
    # Longest groups first (`--no-loadscope-reorder` keeps this order): a long one left
    # for last would run alone while the other worker idles.
    items.sort(key=lambda item: _rank(item.stash[GROUP]))


@pytest.hookimpl(optionalhook=True)  # an xdist hook: pytest -p no:xdist still runs
def pytest_xdist_node_collection_finished(node, ids: list[str]) -> None:
    """Under `--dist loadgroup` each test id a worker reports ends in its group. pytest 9.2
    made xdist 3.8 drop it without a word (pytest-xdist#1386): every test was scheduled
    alone and each worker started its own copy of a session cluster. Stop loudly instead."""
    if node.config.getvalue("dist") == "loadgroup" and ids and "@" not in ids[0]:
        pytest.exit(f"xdist lost the test groups ({ids[0]}): see pytest-xdist#1386", 3)


def _need(item: pytest.Item) -> pytest.MarkDecorator:
    """What `item` needs to run, by the rules above: the last of NEEDS that applies."""
    path = item.nodeid.split("::")[0]
    needs = {NEEDS_BY_FIXTURE.get(name, "unit") for name in getattr(item, "fixturenames", ())}
    needs |= {need for prefix, need in NEEDS_BY_MODULE.items() if path.startswith(prefix)}
    if item.get_closest_marker("slow"):
        slow = (need for prefix, need in NEEDS_WHEN_SLOW.items() if path.startswith(prefix))
        needs.add(next(slow, "ray"))
    return getattr(pytest.mark, max(needs | {"unit"}, key=NEEDS.index))


def pytest_terminal_summary(terminalreporter) -> None:
    """How many README and docs examples tests/docs/test_examples.py checked, by language."""
    counts: Counter[str] = Counter()
    for report in terminalreporter.stats.get("passed", []):
        for name, value in getattr(report, "user_properties", ()):
            if name == "examples":
                counts.update(json.loads(value))
    if counts:
        kinds = ", ".join(f"{n} {language}" for language, n in sorted(counts.items()))
        terminalreporter.write_line(f"docs examples checked: {counts.total()} ({kinds})")


def _rank(group: str) -> int:
    return LONGEST_FIRST.index(group) if group in LONGEST_FIRST else len(LONGEST_FIRST)


@pytest.fixture(scope="session")
def ray_local():
    """A real local Ray cluster in this process (never `ray stop`)."""
    import ray

    _start_ray_local()
    yield ray
    ray.shutdown()


def _start_ray_local() -> None:
    import ray

    from tests.s3server import fake_aws_env

    # Workers inherit the environment ray.init sees: the S3 fixtures' fake credentials, and
    # none of this machine's AWS settings (AWS_CA_BUNDLE...), whichever fixture starts first.
    options = {
        "num_cpus": 2,
        "include_dashboard": False,
        "logging_level": "WARNING",
        "log_to_driver": False,
        # Metrics reach the Prometheus endpoint within a second (default: every 10 s), so
        # test_metrics waits for an export, not for a clock.
        "_system_config": {"metrics_report_interval_ms": 1000},
    }
    with fake_aws_env():
        try:
            ray.init(**options)
        except Exception as e:
            # Ray gives its raylet 30 s to register (a constant in ray._private.node): once
            # missed in a full run while the other worker's service ran a heavy job. Once more.
            if "timed out during startup" not in str(e):
                raise
            ray.shutdown()
            ray.init(**options)
    ray.data.DataContext.get_current().enable_progress_bars = False


# An idle Ray uses about half a CPU (its agents, GCS, raylet, log monitor: 0.53 of a core
# measured here). ray_local's tests run one after the other (the sort above), so it stops
# after the last of them instead of idling beside the rest of the session; a later test
# that needs it starts it again.
RAY_LOCAL_STOPPED = pytest.StashKey[bool]()


def last_test_using(fixture: str, item: pytest.Item, nextitem: pytest.Item | None) -> bool:
    """Whether `item` is the last test in a row that uses `fixture` (the sort above puts
    a session cluster's tests in one row)."""
    return fixture in item.fixturenames and (
        nextitem is None or fixture not in nextitem.fixturenames
    )


def pytest_runtest_setup(item: pytest.Item) -> None:  # before the fixtures are set up
    if "ray_local" in item.fixturenames and item.session.stash.get(RAY_LOCAL_STOPPED, False):
        item.session.stash[RAY_LOCAL_STOPPED] = False
        _start_ray_local()


@pytest.hookimpl(trylast=True)  # after the test's own fixtures are torn down (they may use Ray)
def pytest_runtest_teardown(item: pytest.Item, nextitem: pytest.Item | None) -> None:
    if last_test_using("ray_local", item, nextitem):
        import ray

        ray.shutdown()
        item.session.stash[RAY_LOCAL_STOPPED] = True


@pytest.fixture(scope="session")
def frames(tmp_path_factory) -> Path:
    """50 synthetic 1280x720 broadcast-like JPEG frames."""
    from motoray.sample_data import write_sample_frames

    directory = tmp_path_factory.mktemp("MotoGP")
    write_sample_frames(directory, 50, (1280, 720))
    return directory


def copy_frames(frames: Path, folder: Path, count: int) -> list[Path]:
    """The first `count` session frames copied into a new `folder`: a source a test may spoil."""
    folder.mkdir(parents=True)
    return [Path(shutil.copy(path, folder)) for path in sorted(frames.glob("*.jpg"))[:count]]


def full_hd_jitter(outputs_per_image: int, name: str = "MotoGP") -> dict:
    """A request whose every image makes `outputs_per_image` jittered full-HD outputs: about
    30 ms each here, so a few frames hold a task for many seconds (stop and timeout tests)."""
    jitter = {"brightness": [0.5, 1.5], "target_count": outputs_per_image}
    return {
        "name": name,
        "input_image_size": [1920, 1080],
        "augmentations": [{"COLOR_JITTER": jitter}],
    }


def parse_one(body: dict, config: Config | None = None):
    """A request body validated as the service would, against `config`'s operators."""
    from motoray.ops import operators_for
    from motoray.spec import parse_requests

    config = config or Config()
    sources = list(config.sources) or None
    annotated = config.annotated_sources()
    [request] = parse_requests(body, operators_for(config.operators), sources, annotated=annotated)
    return request


def run_job(request, config: Config, job_id: str, on_progress=None) -> dict:
    """A request (a body or a parsed request) accepted and run as a job on the current Ray,
    as the service would: the record it returns, as job.json holds it."""
    from motoray.jobs.record import accept
    from motoray.pipeline import job

    request = parse_one(request, config) if isinstance(request, dict) else request
    [inputs] = accept([request], config, job_id)
    return json.loads(job.run_job(inputs, on_progress).to_json())


def outputs_in_memory(
    config: Config, body: dict, keys: list[str] | None = None
) -> tuple[list[dict], dict[str, bytes]]:
    """What a job would make of `keys` (default: the whole source), by the job's own worker in
    this process: (manifest rows in manifest order, every column, with `shard` and `error`,
    and `skipped` for a source with annotations; output bytes by path)."""
    from motoray.pipeline import source, worker
    from motoray.pipeline.jobspec import job_spec
    from motoray.pipeline.manifest import manifest_columns
    from motoray.storage import MemoryStorage

    request = parse_one(body, config)
    storage, versions = source.list_versions(request, config)
    listed = list(versions)
    boxes = source.read_annotations(request, config, storage, listed)
    videos = source.probe(request, config, storage, listed, versions)  # None: an image source
    placed = source.place(request, config, listed, boxes=boxes, videos=videos)
    chosen = listed if keys is None else keys
    items = source.items(chosen, placed, boxes=boxes, videos=videos, versions=versions)
    spec = job_spec(request, config, storage, MemoryStorage(), boxes)
    made = list(worker.outputs(spec, items))
    boxed = spec.boxes is not None  # a source with annotations: box columns, skipped outputs
    columns = [
        *manifest_columns(False, boxed, video=videos is not None),
        "shard",
        "error",
        *(["skipped"] if boxed else []),
    ]
    rows = [{column: row.get(column) for column in columns} for row, _ in made]
    return worker.in_manifest_order(rows), {r["output_path"]: d for r, d in made if d}


def manifest_rows(table) -> list[dict]:
    """A manifest's rows by output_path, an optional column (notes, duplicate_of) left out
    where no row has a value: a spread job's parts always have them, a manifest.parquet
    only once a row has a value."""
    from motoray.pipeline.manifest import OPTIONAL_COLUMNS

    empty = [
        c for c in OPTIONAL_COLUMNS if c in table.column_names and table[c].null_count == len(table)
    ]
    rows = table.drop_columns(empty).to_pylist()
    return sorted(rows, key=lambda row: (row["output_path"] or "", row["source_path"]))


def run_request(config: Config, body: dict, job_id: str) -> tuple[dict, Path]:
    """One request through a job on the current Ray: (job.json as written, job folder)."""
    record = run_job(body, config, job_id)
    job_dir = Path(record["output"])
    assert json.loads((job_dir / "job.json").read_text()) == record
    return record, job_dir


@pytest.fixture
def make_config(tmp_path):
    """Config(sources={name: folder}) writing under a fresh output root."""

    def make(**sources: Path | str) -> Config:
        return Config(
            sources={name: SourceConfig(uri=str(uri)) for name, uri in sources.items()},
            output=OutputConfig(uri=str(tmp_path / "outputs")),
        )

    return make


@pytest.fixture
def seed_request() -> dict:
    return json.loads((EXAMPLES / "seed_sample.json").read_text())[0]
