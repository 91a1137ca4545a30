"""One job, from its inputs to job.json; each module has one reason to change:

    job.py       the driver, top to bottom: list -> split -> process -> manifest -> job.json
    jobspec.py   a request compiled into what every worker needs (JobSpec)
    worker.py    pure: images in, outputs (manifest rows + bytes) out; no Ray
    ray_data.py  the Ray Data adapter: fans items out to tasks, streams rows back
    manifest.py  manifest.parquet: its columns and its writer
    layout.py    where a job's files go and what they are called
    shards.py    WebDataset tar bytes

Nothing is imported here: `motoray.jobs` (in the API replica) reads `layout` without paying for
Ray Data, pyarrow or the JPEG codec.
"""
