"""The Ray Data adapter: items fanned out to tasks running the worker, rows streamed back.

Everything here is about Ray: how work is cut into blocks and shards, how items travel to
tasks, how plugin code reaches the workers. The worker itself never sees Ray. A task's
items (a block's, or a shard's) travel as one pickled value in one binary column, the
Items themselves, nothing rebuilt on the other side. A job of one block's worth of work
runs as plain Ray tasks instead (`_as_tasks`): a dataset's start costs more than such a job.
"""

from __future__ import annotations

import pickle
import time
from collections import defaultdict, deque
from collections.abc import Callable, Iterator

import pyarrow as pa
import ray
from ray import cloudpickle

from motoray.config import OperatorsConfig
from motoray.jobs.board import existing_board
from motoray.ops import load_plugin
from motoray.pipeline import worker
from motoray.pipeline.jobspec import JobSpec
from motoray.pipeline.layout import shard_name
from motoray.pipeline.manifest import rows_table
from motoray.pipeline.source import Item
from motoray.priority import as_batch_work

# Per task: ~1 s of work on one CPU. A CPU idles ~5 ms between two tasks (see _mapped),
# and smaller tasks leave less of one idle at the end, while the last tasks finish.
IMAGES_PER_BLOCK = 100
RANGES_PER_BLOCK = 1  # a video range is seconds of decoding already
WARMED_WORKERS = 16  # at most, by warm_workers
UNREAD_WAIT_S = 60  # a small job that ends early waits this long for its other tasks
ASK_BOARD_EVERY_S = 1.0  # how often a task asks whether its job has ended


def ship_plugins(config: OperatorsConfig) -> None:
    """Plugin modules travel with the tasks by value, so workers need no PYTHONPATH or
    runtime_env for them (only for the plugin's own third-party imports)."""
    for plugin in config.plugins:
        cloudpickle.register_pickle_by_value(load_plugin(plugin)[0])


def warm_workers() -> None:
    """Have worker processes import what tasks need while the driver lists and splits: on
    a fresh local Ray the first task otherwise paid for those imports (~0.6 s: ray.data,
    pyarrow, simplejpeg, the worker) after the driver had done its part. Not awaited; none
    on a cluster with no CPU yet (they would make an autoscaler add a node for nothing)."""
    cpus = int(ray.cluster_resources().get("CPU", 0))
    for _ in range(min(cpus, WARMED_WORKERS)):
        _import_worker.remote()


@ray.remote(num_cpus=1)
def _import_worker() -> None:
    pass  # unpickling this function imported this module, and with it everything a task uses


def process_files(spec: JobSpec, items: list[Item]) -> Iterator[pa.Table]:
    """Format "files": result tables (manifest rows, failures included) in item order."""
    if items:
        rows = [{"items": packed(block)} for block in blocks(spec, items)]
        yield from map_blocks(_write_files, spec, rows, len(items))


def blocks(
    spec: JobSpec, items: list[Item], images_per_block: int = IMAGES_PER_BLOCK
) -> list[list[Item]]:
    """`items` cut in blocks: enough to keep every CPU busy, each big enough to amortise task
    overhead (`images_per_block`: for a lighter pass than processing, more). Block boundaries
    change no output byte: seeds and names come from keys alone."""
    cpus = int(ray.cluster_resources().get("CPU", 1))
    per_block = RANGES_PER_BLOCK if spec.frames else images_per_block
    count = max(-(-len(items) // per_block), min(len(items), 2 * cpus))
    return list(_cut(items, count))


def map_blocks(
    task: Callable[..., pa.Table], spec: JobSpec, rows: list[dict], items: int
) -> Iterator[pa.Table]:
    """`task(row, spec)` over one row per block of `items` items (`packed` in column
    "items"), result tables in row order: one block's worth of work as plain tasks."""
    small = items <= (RANGES_PER_BLOCK if spec.frames else IMAGES_PER_BLOCK)
    yield from (_as_tasks if small else _mapped)(task, spec, rows)


def process_shards(spec: JobSpec, tasks: list[dict]) -> Iterator[pa.Table]:
    """Format "webdataset": the same for the tasks of `shards`, one shard per call, so what
    a shard holds never depends on blocks."""
    if not tasks:
        return
    if len(tasks) == 1:
        yield from _as_tasks(_write_shard, spec, tasks)
        return
    yield from _mapped(_write_shard, spec, tasks)


def _cut(items: list[Item], blocks: int) -> Iterator[list[Item]]:
    """`items` in `blocks` runs of sizes differing by one at most, in order."""
    size, extra = divmod(len(items), blocks)
    start = 0
    for block in range(blocks):
        end = start + size + (block < extra)
        yield items[start:end]
        start = end


def packed(items: list[Item]) -> bytes:
    return pickle.dumps(items, protocol=pickle.HIGHEST_PROTOCOL)


def _mapped(task: Callable[..., pa.Table], spec: JobSpec, rows: list[dict]) -> Iterator[pa.Table]:
    """`task(row, spec)` over `rows`, one row per block and per call, as a Ray Data dataset
    named after the job (so it shows in Ray's dashboard): its result tables in row order.

    Four settings differ from Ray Data's defaults, on this dataset's own context (each
    dataset carries a copy; the process's stays as it is for other Ray Data pipelines, a
    notebook's or the bench's baseline):
    - results in row order, whatever order tasks finish in: the manifest's bytes depend on it;
    - no resources reserved per operator: with one map there is nothing to share them with,
      and the reservation held back every task but the first until one had finished, then
      left a CPU idle ~0.2 s between tasks (10 one-second tasks on 2 CPUs: 7.6 s with it,
      5.5 s without);
    - a task's error arrives as itself (RayTaskError(PermissionError), say, with `.cause`),
      not wrapped in UserCodeException: job.reason reports it;
    - no progress bars: the job's own progress and summary say what happens."""
    dataset = ray.data.from_items(rows, override_num_blocks=len(rows))
    context = dataset.context
    context.execution_options.preserve_order = True
    context.op_resource_reservation_enabled = False
    context.raise_original_map_exception = True
    context.enable_progress_bars = False
    dataset.set_name(spec.job_id or None)
    dataset = dataset.map_batches(
        task, fn_kwargs={"spec": spec}, batch_size=1, batch_format="pyarrow"
    )
    yield from dataset.iter_batches(batch_size=None, batch_format="pyarrow")


def _as_tasks(task: Callable[..., pa.Table], spec: JobSpec, rows: list[dict]) -> Iterator[pa.Table]:
    """What `_mapped` does, for a job of one block's worth of work: a plain Ray task per
    row, results in row order. A dataset costs its first execution on a fresh Ray
    ~1.2 s more than a plain task (a one-image `motoray run` is mostly Ray's start-up), and
    a few actor calls per job on a warm one; its streaming only pays for many blocks.
    Retried as Ray Data retries its own tasks: whatever a lost node or worker took.

    A job that stops or fails before reading every result ends once its other tasks have
    (at most UNREAD_WAIT_S): none of them writes into its folder after it has ended. Not
    `ray.cancel`: in Ray 2.60 cancelling a task as it finishes can abort the caller's
    process ("Tried to complete task that was not pending"; it killed a test's driver)."""
    pending = deque(_one_block.remote(task, row, spec) for row in rows)
    try:
        while pending:
            yield ray.get(pending[0])
            pending.popleft()
    finally:
        if pending:
            ray.wait(list(pending), num_returns=len(pending), timeout=UNREAD_WAIT_S)


@ray.remote(num_cpus=1, max_retries=-1, retry_exceptions=[ray.exceptions.RaySystemError])
def _one_block(task: Callable[..., pa.Table], row: dict, spec: JobSpec) -> pa.Table:
    """`task` on one row, given as Ray Data gives it: a table of one row."""
    return task(pa.Table.from_pylist([row]), spec)


def shards(spec: JobSpec, items: list[Item]) -> list[dict]:
    """One task per shard: each split's images in key order, cut every N images, N sized
    from a fixed sample (in a task: the driver touches no pixels). Shards are numbered per
    split from 0."""
    per_shard = ray.get(_images_per_shard.remote(spec, worker.shard_sample(items)))
    by_split: dict[str, list[Item]] = defaultdict(list)
    for item in items:
        by_split[item.split].append(item)
    return [
        {"shard": shard_name(split, n), "items": packed(placed[start : start + per_shard])}
        for split, placed in sorted(by_split.items())
        for n, start in enumerate(range(0, len(placed), per_shard))
    ]


@ray.remote(num_cpus=1)
def _images_per_shard(spec: JobSpec, sample: list[Item]) -> int:
    as_batch_work()
    return worker.images_per_shard(spec, sample)


def unpacked(batch: pa.Table) -> list[Item]:
    [items] = batch["items"].to_pylist()
    return pickle.loads(items)


def _write_files(batch: pa.Table, spec: JobSpec) -> pa.Table:
    as_batch_work()
    items = unpacked(batch)
    return rows_table(worker.write_files(spec, items, _board_says_ended(spec.job_id)))


def _write_shard(batch: pa.Table, spec: JobSpec) -> pa.Table:
    as_batch_work()
    [name], items = batch["shard"].to_pylist(), unpacked(batch)
    return rows_table(worker.write_shard(spec, name, items, _board_says_ended(spec.job_id)))


def _board_says_ended(job_id: str) -> Callable[[], bool]:
    """Whether the job board says the job has ended (stopped, or given up on past its time
    limit), asked at most every ASK_BOARD_EVERY_S. A service's jobs run in the runner, which
    outlives them: their tasks would run on to the end of their work. Never true where no
    board holds the job (`motoray run` on its own Ray: its tasks die with its driver), nor
    while the board cannot answer (restarting): the job's own end still stops it."""
    board, asked, asking = None, time.monotonic(), bool(job_id)

    def ended() -> bool:
        nonlocal board, asked, asking
        if not asking or time.monotonic() - asked < ASK_BOARD_EVERY_S:
            return False  # most tasks end before their first look: they never ask
        asked = time.monotonic()
        try:
            board = board or existing_board()
            if board is None:  # no board on this cluster
                asking = False
                return False
            return ray.get(board.ended.remote(job_id), timeout=ASK_BOARD_EVERY_S)
        except ray.exceptions.RayError:  # it did not answer in time: ask again later
            pass
        return False

    return ended
