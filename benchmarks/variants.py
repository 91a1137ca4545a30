"""The bench's variants: the same request on the same frames, each the way one path runs
it, on one warm cluster that the bench starts (and a `motoray serve` on it).

  turbo_floor     libjpeg-turbo decode at reduced scale + 4 crops + 4 encodes + 4 writes in a
                  bare multiprocessing.Pool: the fastest bare path known (the floor)
  pillow_floor    the same through Pillow (for reference)
  naive           a Pillow loop in one process: full decode, resize, crop, save
  service         POST /data_prep -> SUCCEEDED on a warm `motoray serve` (what users do)
  ray_job_submit  `ray job submit -- motoray run` on the same warm cluster
  in_process      run_job called from this process, a driver on the same cluster
  boxes           in_process on the same frames annotated with 5 boxes each (COCO): box
                  kernels, sanitising, the manifest's boxes and annotations/<split>.json
  ray_data        Ray Data the obvious way: read_images + map_batches with defaults
  video floor     a bare PyAV loop per clip (decode, sample, resize, encode, write) in a
                  multiprocessing.Pool, with motoray's FFmpeg threads
  video motoray   a motoray job on a `kind: video` source of the same clips
"""

from __future__ import annotations

import contextlib
import json
import logging
import multiprocessing
import os
import secrets
import shutil
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import numpy as np
import yaml
from PIL import Image

from benchmarks import floors
from motoray.commands import installed_command
from motoray.spec import SEED_REQUEST
from tests.service import spawn_service

REQUEST = {**SEED_REQUEST, "name": "bench"}
BOXES_PER_FRAME = 5
FAKE_AWS = {"AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench",
            "AWS_DEFAULT_REGION": "us-east-1", "AWS_EC2_METADATA_DISABLED": "true"}  # fmt: skip
TERMINAL = ("SUCCEEDED", "FAILED", "STOPPED")


class Bench:
    """The variants, on one warm cluster that the bench starts (and a service on it)."""

    def __init__(self, frames: Path, work: Path, workers: int, log: Callable[[str], None]):
        from motoray.server import start_local_ray

        self.work, self.workers, self.log = work, workers, log
        self.paths = sorted(frames.glob("*.jpg"))
        # Whatever was started is stopped again, also when a later step of starting fails
        # (a Ray left running would slow every later measurement on this machine).
        with contextlib.ExitStack() as started:
            self.pool = multiprocessing.get_context("spawn").Pool(workers)  # never fork Ray
            started.callback(self.pool.terminate)
            self.cluster = start_local_ray(num_cpus=workers, env=FAKE_AWS)
            started.callback(self.cluster.stop)
            os.environ.update(self.cluster.env)  # RAY_AUTH_MODE, before this process imports ray
            self.config = work / "bench.yaml"
            self._write_config(self._linked(self.paths, "all"))
            self.token = secrets.token_urlsafe(16)
            self.service_process, self.url = spawn_service(
                self.config, self.token, work / "serve.log", "--address", self.cluster.address
            )
            started.callback(self._stop_service)
            self.http = httpx.Client(
                base_url=self.url, headers={"Authorization": f"Bearer {self.token}"}, timeout=120
            )
            started.callback(self.http.close)
            import ray

            ray.init(address=self.cluster.address, logging_level="WARNING", log_to_driver=False)
            started.callback(ray.shutdown)
            ray.data.DataContext.get_current().enable_progress_bars = False
            logging.getLogger("ray.data").setLevel(logging.ERROR)
            self._started = started.pop_all()
        self.runs = 0
        self.last_service_job: dict = {}
        self.video_pool = None  # made on first use

    def close(self) -> None:
        self._started.close()

    def _stop_service(self) -> None:
        self.service_process.terminate()
        self.service_process.wait(120)

    # --- helpers ---------------------------------------------------------------------------

    def _linked(self, paths: list[Path], name: str) -> Path:
        """A source folder holding exactly `paths`: hard links, no copying gigabytes (a
        symlink out of the folder is refused, as it should be), copies across devices."""
        folder = self.work / "sources" / name
        if not folder.exists():
            folder.mkdir(parents=True)
            for path in paths:
                try:
                    os.link(path, folder / path.name)
                except OSError:
                    shutil.copyfile(path, folder / path.name)
        return folder

    def _write_config(self, source: Path, **extra) -> None:
        config = {
            "sources": {"bench": {"uri": str(source)}},
            "output": {"uri": str(self.work / "outputs" / "motoray")},
            "server": {"max_pending_jobs": 4},
            **extra,
        }
        self.config.write_text(yaml.safe_dump(config))

    def _source_for(self, paths: list[Path]) -> None:
        """Point the `bench` source at `paths` (the service reads the config per request)."""
        self._write_config(self._linked(paths, f"first-{len(paths)}"))

    def _out(self, name: str) -> Path:
        out = self.work / "outputs" / name
        out.mkdir(parents=True, exist_ok=True)
        return out

    def clear(self) -> None:
        """Delete the previous run's outputs: before the clock starts, it is no variant's work."""
        shutil.rmtree(self.work / "outputs", ignore_errors=True)

    def _job_id(self, variant: str) -> str:
        self.runs += 1
        return f"{variant}-{self.runs}"

    # --- the variants ----------------------------------------------------------------------

    def turbo_floor(self, paths: list[Path]) -> None:
        out = str(self._out("turbo_floor"))
        self.pool.map(floors.turbo_floor_one, [(str(p), out) for p in paths], chunksize=16)

    def pillow_floor(self, paths: list[Path]) -> None:
        out = str(self._out("pillow_floor"))
        self.pool.map(floors.pillow_floor_one, [(str(p), out) for p in paths], chunksize=16)

    def naive(self, paths: list[Path]) -> None:
        out = str(self._out("naive"))
        for path in paths:
            floors.naive_one((str(path), out))

    def service(self, paths: list[Path]) -> None:
        self._source_for(paths)
        posted = time.time()
        job_id, status = self._post_and_wait()
        self.last_service_job = {"job_id": job_id, "posted": posted, "seen": time.time(),
                                 "output": status["output"]}  # fmt: skip

    def _post_and_wait(self) -> tuple[str, dict]:
        """POST the request, then wait for the job's end: (its id, its final status)."""
        response = self.http.post("/data_prep", json=REQUEST)
        response.raise_for_status()
        [job_id] = [job["job_id"] for job in response.json()["jobs"]]
        # One request that answers when the job ends, not a poll every fraction of a second:
        # each request through Serve costs CPU (proxy and replica): up to ~30 ms here.
        status = self._status(job_id, wait_s=30)
        while status["state"] not in TERMINAL:
            status = self._status(job_id, wait_s=30)
        if status["state"] != "SUCCEEDED":
            raise RuntimeError(f"service job {job_id}: {status}")
        return job_id, status

    def _status(self, job_id: str, wait_s: float = 0) -> dict:
        response = self.http.get(f"/data_prep/{job_id}", params={"wait_s": wait_s})
        response.raise_for_status()
        return response.json()

    def ray_job_submit(self, paths: list[Path]) -> None:
        self._source_for(paths)
        subprocess.run(self.submit(self.motoray_run()), check=True, capture_output=True)

    def submit(self, entrypoint: list[str]) -> list[str]:
        """`ray job submit` of `entrypoint` on the bench's cluster, as a user types it (the
        environment: Ray's token mode)."""
        auth = [f"{name}={value}" for name, value in self.cluster.env.items()]
        return ["env", *auth, *installed_command("ray"), "job", "submit", "--address",
                self.cluster.dashboard_url, "--", *entrypoint]  # fmt: skip

    def motoray_run(self) -> list[str]:
        """`motoray run` of the bench's request on the current source, a new job id each time."""
        return [*installed_command("motoray"), "run", str(self._request_file()), "--config",
                str(self.config), "--quiet", "--job-id", self._job_id("ray-job")]  # fmt: skip

    @property
    def roots(self) -> tuple[int, ...]:
        """The processes that hold every other of the bench's cluster and service."""
        return (self.cluster.process.pid, self.service_process.pid)

    def one_image_job(self) -> None:
        """A 1-image job through the service, POST -> SUCCEEDED (the source: one frame)."""
        self._post_and_wait()

    def one_image_task_cpu_s(self, paths: list[Path], repeats: int = 5) -> float:
        """The CPU-s of a 1-image job's own work (what its task runs: read, decode, crops,
        encodes, writes, its manifest rows), run bare in this process; median, warm."""
        from motoray.config import load_config
        from motoray.pipeline import source, worker
        from motoray.pipeline.jobspec import job_spec
        from motoray.spec import parse_one_for
        from motoray.storage import LocalStorage

        self._source_for(paths[:1])
        config = load_config(self.config)
        request = parse_one_for(config, REQUEST)
        storage, keys = source.list_source(request, config)
        items = source.items(keys, source.place(request, config, keys))
        spec = job_spec(request, config, storage, LocalStorage(self._out("task-cpu")))
        seconds = []
        for _ in range(repeats + 1):  # the first warms up
            start = time.process_time()
            worker.write_files(spec, items)
            seconds.append(time.process_time() - start)
        return sorted(seconds[1:])[repeats // 2]

    def in_process(self, paths: list[Path]) -> None:
        from motoray.config import load_config

        self._source_for(paths)
        self._run_here(load_config(self.config), "in-process")

    def boxes(self, paths: list[Path]) -> None:
        from motoray.config import CocoAnnotations, Config, OutputConfig, SourceConfig

        folder = self.work / "sources" / f"boxes-{len(paths)}"
        if not (folder / "annotations.json").exists():
            _annotated(self._linked(paths, f"first-{len(paths)}"), paths, folder)
        source = SourceConfig(uri=str(folder), annotations=CocoAnnotations(format="coco"))
        config = Config(sources={"bench": source}, output=OutputConfig(uri=str(self._out("boxes"))))
        self._run_here(config, "boxes")

    def _run_here(self, config, name: str) -> None:
        from motoray.jobs.record import accept
        from motoray.pipeline.job import run_job
        from motoray.spec import parse_for

        requests = parse_for(config, REQUEST)
        [inputs] = accept(requests, config, self._job_id(name))
        run_job(inputs)

    def ray_data(self, paths: list[Path]) -> None:
        import ray

        source = self._linked(paths, f"first-{len(paths)}")
        out = self._out("ray_data")

        def augment(batch: dict) -> dict:
            for path, image in zip(batch["path"], batch["image"]):
                resized = Image.fromarray(image).resize(floors.SIZE, Image.Resampling.BILINEAR)
                floors._save(floors.crops(np.asarray(resized), path), out, Path(path).stem)
            return {"done": np.array([len(batch["path"])])}

        ray.data.read_images(str(source), mode="RGB", include_paths=True).map_batches(
            augment
        ).materialize()

    def video_floor(self, clips: list[Path], deinterlace: bool = False) -> None:
        """At the CPU priority of motoray's workers (`as_batch_work`): on a shared machine a
        floor at a higher priority than the job only measures the neighbours."""
        from motoray.priority import as_batch_work

        if self.video_pool is None:
            context = multiprocessing.get_context("spawn")
            self.video_pool = context.Pool(self.workers, initializer=as_batch_work)
            self._started.callback(self.video_pool.terminate)
        out = self._out("video-floor")
        tasks = [(str(clip), str(out), deinterlace) for clip in clips]
        self.video_pool.map(floors.video_floor_one, tasks, 1)

    def video_motoray(self, clips: list[Path]) -> None:
        from motoray.config import Config, OutputConfig, SourceConfig

        source = SourceConfig(uri=str(clips[0].parent), kind="video", frames=floors.VIDEO_FRAMES)
        config = Config(
            sources={"bench": source}, output=OutputConfig(uri=str(self._out("video-motoray")))
        )
        self._run_here(config, "video")

    def _request_file(self) -> Path:
        path = self.work / "request.json"
        path.write_text(json.dumps(REQUEST))
        return path


UNIQUE_CLIPS = 2  # rendered; the other clips are copies under their own names


def _clips(
    folder: Path, count: int, seconds: float, log: Callable[[str], None], interlaced=False
) -> list[Path]:
    """`count` 1280x720 25 fps clips of `seconds` (made once, then reused): H.264 in MP4, or
    interlaced (two fields a frame, field-coded) in MPEG-TS as broadcast is."""
    from motoray.video.sample import write_sample_videos

    suffix = ".ts" if interlaced else ".mp4"
    marker = folder / f".made-{count}x{seconds:g}s"
    if not marker.exists():
        kind = "interlaced " if interlaced else ""
        log(f"writing {count} {kind}clips of {seconds:g} s (1280x720, H.264) to {folder} ...")
        shutil.rmtree(folder, ignore_errors=True)
        unique = write_sample_videos(
            folder,
            min(count, UNIQUE_CLIPS),
            (1280, 720),
            seconds=seconds,
            suffix=suffix,
            interlaced=interlaced,
        )
        for clip in range(len(unique), count):
            os.link(unique[clip % len(unique)], folder / f"clip{clip:03d}{suffix}")
        marker.touch()
    return sorted(folder.glob(f"clip*{suffix}"))


def _duration(clip: Path) -> float:
    import av

    with av.open(str(clip)) as container:
        stream = container.streams.video[0]
        return float(stream.duration * stream.time_base)


def _annotated(frames: Path, paths: list[Path], folder: Path) -> None:
    """The frames (links to `frames`) with an annotations.json of BOXES_PER_FRAME seeded
    boxes each (riders and bikes of 4% to 30% of a side): a detector's data set."""
    from motoray.imageio import upright_size

    (folder / "frames").mkdir(parents=True)
    for path in paths:
        os.link(frames / path.name, folder / "frames" / path.name)
    width, height = upright_size(paths[0].read_bytes())  # bench frames share one size
    rng = np.random.default_rng(0)
    sizes = rng.uniform(0.04, 0.3, (len(paths), BOXES_PER_FRAME, 2)) * [width, height]
    corners = rng.uniform(0, 1, (len(paths), BOXES_PER_FRAME, 2)) * ([width, height] - sizes)
    images, annotations = [], []
    for n, path in enumerate(paths):
        images.append(
            {"id": n + 1, "file_name": f"frames/{path.name}", "width": width, "height": height}
        )
        for b in range(BOXES_PER_FRAME):
            bbox = [*corners[n, b].round(1).tolist(), *sizes[n, b].round(1).tolist()]
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": n + 1,
                    "category_id": 1 + b % 2,
                    "bbox": bbox,
                }
            )
    categories = [{"id": 1, "name": "rider"}, {"id": 2, "name": "bike"}]
    document = {"images": images, "annotations": annotations, "categories": categories}
    (folder / "annotations.json").write_text(json.dumps(document))
