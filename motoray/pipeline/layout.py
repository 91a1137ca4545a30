"""Where a job's files go and what they are called.

    <output root>/<source>/<job id>/
        <split>[/<label>]/<stem>.<key hash>.<step>-<operator>-<copy>.jpg   (format "files")
        <split>/shard-000000.tar                                          (format "webdataset")
        manifest.parquet           (a `kind: manifest` source: manifest/part-<hash>.parquet)
        job.json

Names depend only on the source key, the step and the copy: a retried task rewrites the
same file, never a second copy.
"""

from __future__ import annotations

import functools

from motoray.config import Config
from motoray.seeding import stable_hash
from motoray.storage import Storage, open_storage
from motoray.storage.keys import safe_name

JOB_FILE = "job.json"
MANIFEST_FILE = "manifest.parquet"
MANIFEST_FOLDER = "manifest"  # a spread job's manifest: one Parquet part per block of keys


def job_folder(config: Config, source_name: str, job_id: str) -> Storage:
    output = open_storage(config.output.uri, config.output_s3())
    return output.child(f"{safe_name(source_name)}/{safe_name(job_id)}")


@functools.lru_cache(maxsize=4096)
def output_stem(key: str) -> str:
    """The file stem plus a 64-bit hash of the whole key, which keeps video1/frame_1.jpg and
    video2/frame_1.jpg apart: 10 million images collide with odds of about 1 in 400,000
    (32 bits lost a dozen images at that size), and every job checks its names are unique."""
    name = key.rsplit("/", 1)[-1]
    video, mark, time_ms = name.rpartition("#t=")
    if mark and time_ms.isdigit():  # a video's frame: `race.mp4#t=1500` -> race_1500ms
        name = f"{video.rsplit('.', 1)[0]}_{time_ms}ms."
    stem = safe_name(name.rsplit(".", 1)[0], max_length=60)
    return f"{stem}.{stable_hash(key, bits=64):016x}"


def output_name(key: str, suffix: str) -> str:
    """`<stem>.<key hash>.<suffix>`, suffix `<step>-<operator>-<copy>` or `original`."""
    return f"{output_stem(key)}.{suffix}"


def output_folder(split: str, label: str | None) -> str:
    """Where a job writes an image's outputs: `<split>/<label>`, or `<split>` unlabelled."""
    return split if label is None else f"{split}/{safe_name(label)}"


def shard_name(split: str, index: int) -> str:
    """`train/shard-000000.tar`: numbered per split, so `shard-{000000..000009}.tar` works."""
    return f"{split}/shard-{index:06d}.tar"


def sample_key(name: str) -> str:
    """A file name without its extension, made a valid WebDataset sample key (no dots)."""
    return name.replace(".", "_")
